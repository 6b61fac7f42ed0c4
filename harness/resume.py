"""Resume files: finished queries survive a crash or Ctrl-C, and a rerun skips them.

A run appends each query's scores to ``<cache>/runs/<config hash>.jsonl`` as soon as they are
computed (one JSON line, flushed and fsynced); detection does the same under ``<cache>/detect``.
A rerun with the same configuration reads the file back and scores only what is missing.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import Any

from harness.io import seal
from harness.progress import progress
from harness.types import Instance, Retriever, Run

log = logging.getLogger(__name__)


@functools.cache
def _commit() -> str | None:
    """The code version that computes scores now: each entry records it, so a result assembled
    from cached entries names the code that computed them, not only the code that wrote it."""
    from harness.provenance import git_commit

    return git_commit()


def scored_by(rows: list[dict[str, Any]]) -> list[str]:
    """The code versions recorded by ``rows`` (``unknown`` for entries that predate the field)."""
    return sorted({str(row.get("commit") or "unknown") for row in rows})


class ResumeFile:
    """Append-only JSONL of finished queries.

    Each line is ``{"qid", "scores": {name: float}, "stats": {name: float}, "sha256"}`` where
    ``sha256`` seals the entry to this file's key (its name, the configuration hash): a
    half-written last line (a kill), an edited value, a line of the wrong shape or one copied
    from another configuration is discarded with a warning and the query is scored again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.key = path.name
        self.done: dict[str, dict[str, Any]] = {}
        if path.exists():
            for number, line in enumerate(path.read_bytes().decode("utf-8", errors="replace").splitlines(), start=1):
                row = self._check(line)
                if isinstance(row, str):
                    log.warning("%s:%d: %s; that query is scored again", path, number, row)
                    continue
                self.done[row["qid"]] = row
            if self.done:
                log.info("resuming: %d queries already scored (%s)", len(self.done), path)
        self._handle = None

    def _seal(self, qid: str, scores: dict[str, float], stats: dict[str, float]) -> str:
        return seal(self.key, [qid, scores, stats])

    def _check(self, line: str) -> dict[str, Any] | str:
        """The entry of ``line``, or why it cannot be used."""
        if not line.strip():
            return "blank line"
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            return "a truncated or malformed line (interrupted run?)"
        if not isinstance(row, dict) or not isinstance(row.get("qid"), str):
            return "not a resume entry"
        scores, stats = row.get("scores"), row.get("stats")
        for values in (scores, stats):
            if not isinstance(values, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in values.items()
            ):
                return "scores or stats of the wrong shape"
        if row.get("sha256") != self._seal(row["qid"], scores, stats):
            return "checksum mismatch (edited, or from another configuration)"
        return row

    def append(self, qid: str, scores: dict[str, float], stats: dict[str, float] | None) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Close a half-written line left by a kill before appending.
            if self.path.exists() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
                with open(self.path, "ab") as fix:
                    fix.write(b"\n")
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open across appends; close())
        stats = stats or {}
        row = {"qid": qid, "scores": scores, "stats": stats, "sha256": self._seal(qid, scores, stats),
               "commit": _commit()}
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.done[qid] = row

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def score_with_resume(
    retriever: Retriever, instances: list[Instance], resume: ResumeFile, show_progress: bool, chunk: int = 8
) -> Run:
    """Score the instances not yet in ``resume``, appending each as soon as it is scored."""
    todo = [inst for inst in instances if inst.query.id not in resume.done]
    retriever.check(todo)
    try:
        chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
        bar = progress(chunks, show=show_progress and len(chunks) > 1, desc=f"scoring ({retriever.name})", unit="batch")
        for batch in bar:
            for inst, scores in zip(batch, retriever.score(batch), strict=True):
                stats = retriever.last_stats.get(inst.query.id)
                resume.append(inst.query.id, {d: float(s) for d, s in scores.items()}, stats)
    finally:
        resume.close()
    return {inst.query.id: resume.done[inst.query.id]["scores"] for inst in instances}
