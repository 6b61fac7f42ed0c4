"""``harness bench speed-quality``: QR's cost against its quality as the deepest allowed head layer grows.

The cost of a QR re-ranking is set by the deepest selected head: the prefix pass stops after its
layer (docs/ARCHITECTURE.md, the attention engine). This target draws the curve that trade-off
makes, one point per ``L`` of ``--layers`` (default for a 30-layer model such as SmolLM2-135M:
8, 12, 16, 20, 24, 29; see :func:`default_layers`):

1. **Detect** QRHeads in layers ``0..L`` only: ``harness detect --max-layer L`` on the detection
   queries (``--task`` cranfield, ``--n-queries`` 32, ``--seed`` 42, the ``--first-stage`` bm25
   top ``--depth`` candidates cut to ``--truncate-words``, shuffled with the seed, objective
   nDCG@10; the same query sample as ``results/heads/smollm2-135m.json``). Through
   :func:`harness.head_detection.detect_head_file`, so each query's head values are cached and a
   killed detection resumes; the head file goes to ``<output stem>/heads-max-layer-L.json`` (with the
   ``harness detect`` command added) and is reused when it exists with the same command.
2. **Evaluate** its top ``--top`` (16) heads with ``qr`` on held-out queries of the same task
   (``--exclude-queries``, default the detection queries; ``--eval-queries`` 32 sampled with the
   seed; same depth and cut; candidates shuffled with ``--shuffle-candidates`` 42, as the
   head-choice runs): :func:`harness.runner.execute` without writing a result file, so the
   scoring resumes from the run cache. Reported: nDCG@10 (the task's main metric), every metric
   and the per-query values.
3. **Measure** the cost of each head set as in :mod:`harness.benchmarks.qr_measure`: *ours*
   (:meth:`AttentionEngine.scores_from_encoded`: prefix stopped after the deepest selected head,
   null and query suffixes with capture) against *plain* (one SDPA forward of the whole base model
   over the query prompt, no LM head), on the same real prompts (the first ``--measure-prompts``
   (2) held-out queries with their candidates, in QR's order), in one process with one loaded
   model. Calls are interleaved (per round and prompt: plain, then every head set's ours), so a
   load change on a shared machine touches all alike; after ``--warmup`` (0) untimed rounds,
   ``--repeats`` (2) timed rounds, the best time per prompt counts (the first round also warms
   up). ``cost_ratio`` = Σ best ours / Σ best plain over the prompts. The measurements are not
   cached: a resumed run measures again (minutes).

With ``--reference`` (default the model's shipped head file ``results/heads/<alias>.json``, when
there is one, the packaged copy outside a clone; ``none`` to skip) that set is evaluated and measured the same way, as the
full-depth reference; a BM25 line (its nDCG@10 on the same held-out queries) and the paper's
Llama-3.1-8B NQ set (deepest layer 20 of 32: 21 of 32 layers run, docs/PROTOCOL.md §3), placed
on the curve by its fraction of layers run, complete the picture.

With ``--output X.json`` it writes the record (machine via :func:`harness.provenance.machine`, the
command, every number), ``X.md`` (the table) and ``X.png`` (cost ratio on x, nDCG@10 on y, one
labelled point per L).

The steps live in their own modules: :mod:`~harness.benchmarks.speed_quality_settings` (the
settings, the default grid, the paper's point), :mod:`~harness.benchmarks.speed_quality_detect`
(1), :mod:`~harness.benchmarks.speed_quality_eval` (2), :mod:`~harness.benchmarks.speed_quality_cost`
(3) and :mod:`~harness.benchmarks.speed_quality_report` (the table and the plot); this module runs
them (:func:`benchmark`) and is the command line.

Example::

    harness bench speed-quality --threads 1 --exclude-queries results/heads/cranfield-detection-queries.txt \\
        --output results/bench/speed-quality-smollm2.json
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.benchmarks._common import add_output_arguments, require_at_least_one, write_and_print
from harness.benchmarks.speed_quality_cost import measure
from harness.benchmarks.speed_quality_detect import (
    curve_point,
    detect_points,
    head_files_dir,
    reference_file,
    same_queries,
)
from harness.benchmarks.speed_quality_eval import bm25_baseline, evaluate, p_values
from harness.benchmarks.speed_quality_report import markdown, plot
from harness.benchmarks.speed_quality_settings import DEFAULT_MODEL, Settings, default_layers, paper_point
from harness.errors import HarnessError
from harness.provenance import load_average, machine

log = logging.getLogger(__name__)


def _num_layers(model: str) -> int:
    """The model's number of layers, from its config alone (no weights loaded)."""
    from transformers import AutoConfig

    from harness.models.resolve import ensure_available, resolve_model

    info = resolve_model(model)
    ensure_available(info)
    config = AutoConfig.from_pretrained(info.path, **({"revision": info.revision} if info.source == "hub" else {}))
    config = getattr(config, "text_config", None) or config
    return int(config.num_hidden_layers)


def _check_layers(layers: Sequence[int], num_layers: int) -> list[int]:
    bad = [x for x in layers if not 0 <= x < num_layers]
    if bad or not layers:
        raise HarnessError(f"--layers {','.join(map(str, layers))}: expected layer indices in 0..{num_layers - 1}")
    return sorted(set(layers))


def benchmark(s: Settings, output: Path | None = None, command: str | None = None) -> dict[str, Any]:
    """Detect, evaluate and measure every point; return the record (see the module docstring)."""
    from harness.attention.heads import load_head_file
    from harness.io import read_json

    if s.threads:
        import torch

        torch.set_num_threads(s.threads)
    host = machine(s.device or "cpu")
    started = time.perf_counter()
    num_layers = _num_layers(s.model)
    layers = _check_layers(list(s.layers) if s.layers else default_layers(num_layers), num_layers)
    points = detect_points(s, layers, head_files_dir(s, output), num_layers)
    detection_file = read_json(points[0]["head_file"])
    exclude = s.exclude_queries or points[0]["head_file"]  # a head file's query_ids: the detection queries
    reference = reference_file(s)
    ref_point = None
    if reference is not None:
        ref_heads, ref_meta = load_head_file(reference)
        ref_point = curve_point("shipped", None, ref_heads, num_layers)
        ref_point.update({"head_file": reference, "detection": {k: ref_meta.get(k) for k in (
            "n", "seed", "truncate_words", "first_stage", "query_ids_sha256", "top")}})
    for point in [*points, *([ref_point] if ref_point else [])]:
        log.info("speed-quality: evaluating %s", point["label"])
        point["evaluation"] = evaluate(s, point["head_file"], exclude)
        point["ndcg@10"] = point["evaluation"]["value"]
    p_values(points, ref_point)
    held_out = set(points[0]["evaluation"]["query_ids"])
    cost = measure(s, {p["label"]: p["head_file"] for p in [*points, *([ref_point] if ref_point else [])]}, exclude)
    for point in [*points, *([ref_point] if ref_point else [])]:
        point["cost"] = cost["ours"][point["label"]]
        point["cost_ratio"] = point["cost"]["cost_ratio"]
    return {
        "benchmark": "speed-quality: QR nDCG@10 against its cost (ours vs plain forward) as the deepest allowed head layer grows",
        "model": s.model,
        "num_layers": num_layers,
        "layers": layers,
        "settings": dataclasses.asdict(s),
        "detection": {"task": s.task, "n_queries": s.n_queries, "seed": s.seed, "first_stage": s.first_stage,
                      "depth": s.depth, "truncate_words": s.truncate_words, "top": s.top, "objective": "ndcg",
                      "query_ids_sha256": detection_file.get("query_ids_sha256"),
                      "same_queries_as_reference": same_queries(detection_file, reference),
                      "held_out_disjoint": not (held_out & set(detection_file.get("query_ids", [])))},
        "evaluation": {"task": s.task, "retriever": "qr", "n_queries": len(held_out), "exclude_queries": exclude,
                       "depth": s.depth, "truncate_words": s.truncate_words, "shuffle_candidates": s.shuffle_candidates,
                       "seed": s.seed, "metric": points[0]["evaluation"]["metric"]},
        "measurement": {k: v for k, v in cost.items() if k != "ours"} | {
            "repeats": s.repeats, "warmup": s.warmup, "threads": s.threads,
            "what": "ours = AttentionEngine.scores_from_encoded (prefix stopped after the deepest head, null + query "
                    "suffixes); plain = one SDPA forward of the whole base model over the query prompt; best per "
                    "prompt over the timed rounds, interleaved; cost_ratio = sum ours / sum plain"},
        "points": points,
        "reference": ref_point,
        "baseline": bm25_baseline(s, exclude),
        "paper": {**paper_point(), "cost_ratio_on_this_curve": _interpolate(points, paper_point()["layers_run_fraction"])},
        "command": command,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {**host, "load_average_at_end": load_average()},
    }


def _interpolate(points: Sequence[dict[str, Any]], fraction: float) -> float | None:
    """The cost ratio at ``fraction`` of the layers run, linear between the measured points (None outside)."""
    pts = sorted((p["layers_run_fraction"], p["cost_ratio"]) for p in points)
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x0 <= fraction <= x1:
            return round(y0 if x1 == x0 else y0 + (y1 - y0) * (fraction - x0) / (x1 - x0), 4)
    return None


def _layers(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise HarnessError(f"--layers {text!r}: expected comma-separated layer indices such as 8,16,24") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``harness bench speed-quality``."""
    a = parser.add_argument
    a("--model", default=DEFAULT_MODEL, help=f"model (default {DEFAULT_MODEL})")
    a("--layers", default=None, help="max layers L, comma-separated (default: 8,12,16,20,24,29 for 30 layers)")
    a("--task", default="cranfield", help="corpus task of detection and evaluation (default cranfield)")
    a("--data", default=None, help="local files of the task")
    a("--n-queries", "--n_queries", type=int, default=32, help="detection queries, sampled with --seed (default 32)")
    a("--eval-queries", "--eval_queries", type=int, default=32, help="held-out evaluation queries (default 32)")
    a("--exclude-queries", "--exclude_queries", default=None,
      help="queries left out of the evaluation (default: the detection queries, from the first head file)")
    a("--seed", type=int, default=42, help="sampling and shuffle seed (default 42)")
    a("--first-stage", "--first_stage", default="bm25", help="first stage (default bm25)")
    a("--depth", type=int, default=10, help="candidates per query (default 10)")
    a("--truncate-words", "--truncate_words", type=int, default=150, help="words kept per candidate (default 150)")
    a("--shuffle-candidates", "--shuffle_candidates", type=int, default=42,
      help="shuffle the evaluation candidates with this seed (default 42; -1 = off)")
    a("--top", type=int, default=16, help="heads kept per detection (default 16)")
    a("--reference", default="auto", help="head file of the full-depth reference (default the model's shipped file; none)")
    a("--measure-prompts", "--measure_prompts", type=int, default=2, help="held-out prompts timed (default 2)")
    a("--repeats", type=int, default=2, help="timed rounds; the best per prompt counts (default 2)")
    a("--warmup", type=int, default=0, help="untimed rounds first (default 0)")
    a("--threads", type=int, default=None, help="torch CPU threads (default torch's; 1 on a busy machine)")
    a("--dtype", default=None, help="float32 / bfloat16 (default fp32 on CPU, bf16 on CUDA)")
    a("--device", default=None, help="cpu, cuda (default: cuda if available)")
    a("--heads-dir", "--heads_dir", default=None, help="folder of the detected head files (default: beside --output)")
    add_output_arguments(parser, json_help="print the record as JSON")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The :class:`Settings` of the parsed options (checked)."""
    require_at_least_one(args, ("n_queries", "eval_queries", "depth", "truncate_words", "top", "measure_prompts", "repeats"))
    if args.warmup < 0:
        raise HarnessError(f"--warmup must be at least 0, got {args.warmup}")
    return Settings(
        model=args.model, layers=_layers(args.layers), task=args.task, data=args.data, n_queries=args.n_queries,
        eval_queries=args.eval_queries, exclude_queries=args.exclude_queries, seed=args.seed,
        first_stage=args.first_stage, depth=args.depth, truncate_words=args.truncate_words,
        shuffle_candidates=None if args.shuffle_candidates < 0 else args.shuffle_candidates, top=args.top,
        reference=args.reference, measure_prompts=args.measure_prompts, repeats=args.repeats, warmup=args.warmup,
        threads=args.threads, dtype=args.dtype, device=args.device, heads_dir=args.heads_dir,
        show_progress=not getattr(args, "no_progress", True),
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print the table (or the record as JSON); write JSON, .md and .png with --output."""
    from harness.io import check_writable

    s = settings_from_args(args)
    if args.output is not None:
        check_writable(args.output)
    record = benchmark(s, args.output, getattr(args, "command_line", None))
    code = write_and_print(args, record, markdown(record))
    if args.output is not None:
        plot(record, Path(args.output).with_suffix(".png"))
    return code


__all__ = ["Settings", "benchmark", "default_layers", "markdown", "paper_point", "plot", "run"]
