"""Step 1 of ``harness bench speed-quality``: detect QRHeads in layers ``0..L`` only, once per ``L``.

Each point is ``harness detect --max-layer L`` (:func:`harness.head_detection.detect_head_file`, so
each query's head values are cached and a killed detection resumes); its head file goes to
``<output stem>/heads-max-layer-L.json`` with the ``harness detect`` command that reproduces it, and
is reused when it exists with the same command. Also here: the full-depth reference head file
(``--reference``) and whether a detection used its query sample.

A helper of the ``speed-quality`` target (no ``add_arguments``: ``harness bench`` lists no target for it).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.benchmarks.speed_quality_settings import Settings
from harness.head_detection import Detection, detect_head_file, summary

log = logging.getLogger("harness.benchmarks.speed_quality")  # the target's logger, as before the split


def detect_argv(s: Settings, max_layer: int, output: Path) -> list[str]:
    """The ``harness detect`` arguments of one point (after the global options)."""
    argv = ["detect", "--model", s.model, "--task", s.task, *(["--data", s.data] if s.data else []),
            "--n-queries", str(s.n_queries), "--seed", str(s.seed), "--first-stage", s.first_stage,
            "--depth", str(s.depth), "--truncate-words", str(s.truncate_words), "--top", str(s.top),
            "--max-layer", str(max_layer)]
    argv += [*(["--dtype", s.dtype] if s.dtype else []), *(["--device", s.device] if s.device else [])]
    return [*argv, "--output", str(output)]


def detection(s: Settings, max_layer: int, output: Path) -> Detection:
    """The :class:`~harness.head_detection.Detection` that :func:`detect_argv` spells as a command."""
    return Detection(
        model=s.model, task=s.task, output=str(output), data=s.data, n_queries=s.n_queries, seed=s.seed,
        first_stage=s.first_stage, depth=s.depth, truncate_words=s.truncate_words, top=s.top, max_layer=max_layer,
        dtype=s.dtype, device=s.device, show_progress=s.show_progress,
    )


def detect(s: Settings, max_layer: int, output: Path) -> dict[str, Any]:
    """Run (or reuse) the detection of one point; return its head file with ``seconds`` and ``reused``."""
    from harness.io import atomic_write_json, read_json

    argv = detect_argv(s, max_layer, output)
    command = shlex.join(["harness", *argv])
    if output.is_file():
        existing = read_json(output)
        if isinstance(existing, dict) and existing.get("command") == command:
            log.info("speed-quality: L=%d: reusing %s", max_layer, output)
            return {**existing, "seconds": None, "reused": True}
    log.info("speed-quality: L=%d: %s", max_layer, command)
    started = time.perf_counter()
    found = detect_head_file(detection(s, max_layer, output))
    print(summary(found), file=sys.stderr)  # what `harness detect` prints; keep --json's stdout clean
    print(f"wrote {output}", file=sys.stderr)
    seconds = time.perf_counter() - started
    head_file = {**read_json(output), "command": command}
    atomic_write_json(output, head_file)
    return {**head_file, "seconds": round(seconds, 1), "reused": False}


def curve_point(label: str, max_layer: int | None, heads: Sequence[tuple[int, int]], num_layers: int) -> dict[str, Any]:
    """A point of the curve before evaluation: its heads, deepest layer and the fraction of layers run."""
    deepest = max(layer for layer, _ in heads)
    return {
        "label": label,
        "max_layer": max_layer,
        "heads": [f"{layer}-{h}" for layer, h in heads],
        "deepest_layer": deepest,
        "layers_run": deepest + 1,
        "layers_run_fraction": round((deepest + 1) / num_layers, 3),
    }


def detect_points(s: Settings, layers: Sequence[int], heads_dir: Path, num_layers: int) -> list[dict[str, Any]]:
    """Step 1 for every L: the points with their head files."""
    from harness.attention.heads import load_head_file

    points = []
    for max_layer in layers:
        path = heads_dir / f"heads-max-layer-{max_layer}.json"
        found = detect(s, max_layer, path)
        heads, _ = load_head_file(path)
        point = curve_point(f"L<={max_layer}", max_layer, heads, num_layers)
        point.update({"head_file": str(path), "detection": {
            "n": found.get("n"), "skipped": found.get("skipped"), "query_ids_sha256": found.get("query_ids_sha256"),
            "top_head_scores": [score for _, score in found["heads"][: found["top"]]],
            "seconds": found["seconds"], "reused": found["reused"], "command": found["command"]}})
        points.append(point)
    return points


def reference_file(s: Settings) -> str | None:
    """The reference head file: ``--reference`` as given, the model's shipped file for ``auto``."""
    if s.reference in (None, "", "none"):
        return None
    if s.reference != "auto":
        return s.reference
    from harness.attention.heads import default_head_file

    path = default_head_file(s.model)
    if path is None:
        return None
    # In a clone, the checked-in results/heads/<alias>.json (byte-identical to the packaged copy) that the
    # head-choice runs name: the same spelling, so their run cache is shared.
    checked_in = Path(__file__).resolve().parents[1] / "results" / "heads" / path.name
    if not os.environ.get("HARNESS_HEADS_DIR") and checked_in.is_file():
        path = checked_in
    try:  # the relative spelling of the head-choice runs
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def head_files_dir(s: Settings, output: Path | None) -> Path:
    """Where the detected head files go: ``--heads-dir``, else beside ``--output``, else the cache."""
    if s.heads_dir:
        return Path(s.heads_dir)
    if output is not None:
        return output.with_suffix("")
    from harness.io import cache_dir

    return cache_dir("bench", "speed-quality")


def same_queries(head_file: dict[str, Any], reference: str | None) -> bool | None:
    """Whether the detection used the reference head file's query sample (None without one)."""
    if reference is None:
        return None
    from harness.io import read_json

    ref = read_json(reference)
    return isinstance(ref, dict) and ref.get("query_ids_sha256") == head_file.get("query_ids_sha256")
