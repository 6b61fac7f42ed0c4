"""Runs as files: every measured result keeps its ranking beside it.

``x.json`` is accompanied by

- ``x.run.gz``: the ranking, a gzipped TREC run (``qid Q0 docid rank score tag``, ranks from 1,
  rows by ``(-score, docid)``), the top ``k`` per query (default 100; one more when identical
  query/document ids are ignored, so that every cut-off up to ``k`` stays exact);
- ``x.first-stage.run.gz``: for re-rankers, the candidate lists they re-ranked (the first
  stage's top ``depth``), so that anyone can re-rank, fuse or re-score our candidates;
- ``x.qrels.gz``: the judgements of the evaluated queries (TREC qrels).

The result records each file's name and sha256 under ``runs``. :func:`recompute` reads them back
and recomputes every ranking metric that the kept depth determines exactly; ``harness validate``
rejects a result whose files or numbers disagree. Files are written deterministically (gzip
without a timestamp), so rewriting the same run gives the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import atomic_write_bytes
from harness.metric_specs import recomputable
from harness.types import Qrels, Run

#: Rows per query kept in a run file unless ``--run-depth`` says otherwise.
DEFAULT_RUN_DEPTH = 100
SUFFIXES = {"ranking": ".run.gz", "first_stage": ".first-stage.run.gz", "qrels": ".qrels.gz"}


def sibling(result_path: Path, kind: str) -> Path:
    """``x.json`` -> ``x.run.gz`` (``kind``: ranking, first_stage or qrels)."""
    return result_path.with_name(result_path.name.removesuffix(".json") + SUFFIXES[kind])


def _write_gz(path: Path, text: str) -> str:
    data = gzip.compress(text.encode("utf-8"), mtime=0)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _qrels_text(qrels: Qrels) -> str:
    return "".join(f"{qid} 0 {doc} {rel}\n" for qid in sorted(qrels) for doc, rel in sorted(qrels[qid].items()))


def write_run_files(result_path: Path, run: Run, qrels: Qrels, *, tag: str, top_k: int = DEFAULT_RUN_DEPTH,
                    ignore_identical_ids: bool = False, first_stage: Run | None = None,
                    first_stage_depth: int | None = None) -> dict[str, Any]:
    """Write the run files of the result at ``result_path``; return the ``runs`` record."""
    from harness.trec import format_trec_run

    if top_k < 1:
        raise HarnessError(f"--run-depth must be at least 1, got {top_k}")
    kept = top_k + (1 if ignore_identical_ids else 0)
    longest = max((len(r) for r in run.values()), default=0)
    record: dict[str, Any] = {}
    path = sibling(result_path, "ranking")
    record["ranking"] = {"file": path.name, "sha256": _write_gz(path, format_trec_run(run, tag=tag, k=kept)),
                         "top_k": top_k, "complete": longest <= kept}
    if first_stage is not None:
        path = sibling(result_path, "first_stage")
        sha = _write_gz(path, format_trec_run(first_stage, tag="first-stage", k=first_stage_depth))
        record["first_stage"] = {"file": path.name, "sha256": sha, "top_k": first_stage_depth}
    path = sibling(result_path, "qrels")
    record["qrels"] = {"file": path.name, "sha256": _write_gz(path, _qrels_text(qrels))}
    return record


def _checked(folder: Path, entry: Mapping[str, Any], where: str) -> Path:
    """The run file of ``entry``, after checking that it sits beside the result and matches its sha256."""
    name = str(entry.get("file", ""))
    if not name or Path(name).name != name or name.startswith("."):
        raise HarnessError(f"{where}: run file name {name!r} must be a plain file name beside the result")
    path = folder / name
    if not path.is_file():
        raise HarnessError(f"{where}: its run file {name} is missing")
    if hashlib.sha256(path.read_bytes()).hexdigest() != entry.get("sha256"):
        raise HarnessError(f"{where}: {name} does not match the sha256 the result records")
    return path


def read_run_files(result_path: Path, runs: Mapping[str, Any]) -> tuple[Run, Qrels, Run | None]:
    """The ranking, qrels and (for re-rankers) first-stage run recorded in ``runs``, checked."""
    from harness.trec import read_trec_qrels, read_trec_run

    folder, where = result_path.parent, str(result_path)
    try:
        ranking = read_trec_run(_checked(folder, runs["ranking"], where))
        qrels = read_trec_qrels(_checked(folder, runs["qrels"], where))
    except KeyError as exc:
        raise HarnessError(f"{where}: field runs.{exc.args[0]} is missing") from None
    first = read_trec_run(_checked(folder, runs["first_stage"], where)) if runs.get("first_stage") else None
    return ranking, qrels, first


def check_against_runs(result: Any, result_path: Path, tolerance: float = 1e-9) -> list[str]:
    """Recompute the result's ranking metrics from its run and qrels files; raise on a mismatch.

    Returns warnings (metrics that the kept depth cannot determine are named, not checked).
    """
    from harness.io import sha256_json
    from harness.metrics import evaluate

    ranking, qrels, first = read_run_files(result_path, result.runs)
    per_query: dict[str, dict[str, float]] = result.per_query or {}
    ids = list(result.task.query_ids or per_query)
    stray = sorted(set(ranking) - set(ids))
    if stray:
        raise HarnessError(f"{result_path}: the run has {len(stray)} queries the result does not evaluate, e.g. {stray[:3]}")
    entry = result.runs["ranking"]
    names = sorted({n for values in per_query.values() for n in values
                    if recomputable(n, int(entry.get("top_k", 0)), bool(entry.get("complete")))})
    judged = {q: qrels.get(q, {}) for q in ids}
    if names:
        fresh = evaluate(judged, ranking, names, ignore_identical_ids=bool(result.task.ignore_identical_ids)).per_query
        for qid in ids:
            for name in names:
                stored, value = per_query.get(qid, {}).get(name), fresh.get(qid, {}).get(name)
                if stored is not None and (value is None or abs(stored - value) > tolerance):
                    raise HarnessError(f"{result_path}: per_query[{qid!r}][{name!r}] is {stored!r} but its run "
                                       f"and qrels give {value!r}")
    if entry.get("complete") and result.run_sha256 and sha256_json(ranking) != result.run_sha256:
        raise HarnessError(f"{result_path}: the run file does not hash to the recorded run_sha256")
    if first is not None and set(first) != set(ids):
        raise HarnessError(f"{result_path}: the first-stage file covers other queries than the result")
    unchecked = sorted({n for values in per_query.values() for n in values} - set(names))
    return [(f"not recomputed from the run (answer metrics, diagnostics or cut-offs past the kept depth): "
            f"{', '.join(unchecked)}")] if unchecked else []
