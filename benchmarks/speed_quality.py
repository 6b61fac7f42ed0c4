"""``harness bench speed-quality``: QR's cost against its quality as the deepest allowed head layer grows.

The cost of a QR re-ranking is set by the deepest selected head: the prefix pass stops after its
layer (docs/ARCHITECTURE.md, the attention engine). This target draws the curve that trade-off
makes, one point per ``L`` of ``--layers`` (default for a 30-layer model such as SmolLM2-135M:
8, 12, 16, 20, 24, 29; see :func:`default_layers`):

1. **Detect** QRHeads in layers ``0..L`` only: ``harness detect --max-layer L`` on the detection
   queries (``--task`` cranfield, ``--n-queries`` 32, ``--seed`` 42, the ``--first-stage`` bm25
   top ``--depth`` candidates cut to ``--truncate-words``, shuffled with the seed, objective
   nDCG@10; the same query sample as ``results/heads/smollm2-135m.json``). Through
   :func:`harness.commands.detect.main`, so each query's head values are cached and a killed
   detection resumes; the head file goes to ``<output stem>/heads-max-layer-L.json`` (with the
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
there is one; ``none`` to skip) that set is evaluated and measured the same way, as the
full-depth reference; a BM25 line (its nDCG@10 on the same held-out queries) and the paper's
Llama-3.1-8B NQ set (deepest layer 20 of 32: 21 of 32 layers run, docs/PROTOCOL.md §3), placed
on the curve by its fraction of layers run, complete the picture.

With ``--output X.json`` it writes the record (machine via :func:`harness.provenance.machine`, the
command, every number), ``X.md`` (the table) and ``X.png`` (cost ratio on x, nDCG@10 on y, one
labelled point per L).

Example::

    harness bench speed-quality --threads 1 --exclude-queries results/heads/cranfield-detection-queries.txt \\
        --output results/bench/speed-quality-smollm2.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.benchmarks._common import add_output_arguments, machine_line, require_at_least_one, write_and_print
from harness.errors import HarnessError
from harness.provenance import load_average, machine

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
#: fractions of the deepest layer index that make the default grid (30 layers: 8, 12, 16, 20, 24, 29)
DEFAULT_FRACTIONS = (0.28, 0.41, 0.55, 0.69, 0.83, 1.0)
#: the paper's set placed on the curve (docs/PROTOCOL.md §3)
PAPER_SET = ("llama-3.1-8b", "nq")
PAPER_LAYERS = 32


def default_layers(num_layers: int) -> list[int]:
    """The default ``--layers`` grid of a model with ``num_layers`` layers.

    >>> default_layers(30)
    [8, 12, 16, 20, 24, 29]
    >>> default_layers(4)
    [1, 2, 3]
    """
    return sorted({round(f * (num_layers - 1)) for f in DEFAULT_FRACTIONS})


def paper_point() -> dict[str, Any]:
    """The paper's Llama-3.1-8B NQ set: its deepest layer and the fraction of layers it runs.

    >>> p = paper_point(); p["deepest_layer"], p["layers"], p["layers_run_fraction"]
    (20, 32, 0.656)
    """
    from harness.attention.heads import PAPER_HEAD_SETS, parse_head_list

    deepest = max(layer for layer, _ in parse_head_list(PAPER_HEAD_SETS[PAPER_SET]))
    return {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "set": f"{PAPER_SET[0]}:{PAPER_SET[1]}",
        "deepest_layer": deepest,
        "layers": PAPER_LAYERS,
        "layers_run_fraction": round((deepest + 1) / PAPER_LAYERS, 3),
        "source": "docs/PROTOCOL.md §3",
    }


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that defines a speed-quality benchmark (see the module docstring)."""

    model: str = DEFAULT_MODEL
    layers: tuple[int, ...] | None = None
    task: str = "cranfield"
    data: str | None = None
    n_queries: int = 32
    eval_queries: int = 32
    exclude_queries: str | None = None
    seed: int = 42
    first_stage: str = "bm25"
    depth: int = 10
    truncate_words: int = 150
    shuffle_candidates: int | None = 42
    top: int = 16
    reference: str | None = "auto"
    measure_prompts: int = 2
    repeats: int = 2
    warmup: int = 0
    threads: int | None = None
    dtype: str | None = None
    device: str | None = None
    heads_dir: str | None = None
    show_progress: bool = False


# --------------------------------------------------------------------------- 1. detection


def detect_argv(s: Settings, max_layer: int, output: Path) -> list[str]:
    """The ``harness detect`` arguments of one point (after the global options)."""
    argv = ["detect", "--model", s.model, "--task", s.task, *(["--data", s.data] if s.data else []),
            "--n-queries", str(s.n_queries), "--seed", str(s.seed), "--first-stage", s.first_stage,
            "--depth", str(s.depth), "--truncate-words", str(s.truncate_words), "--top", str(s.top),
            "--max-layer", str(max_layer)]
    argv += [*(["--dtype", s.dtype] if s.dtype else []), *(["--device", s.device] if s.device else [])]
    return [*argv, "--output", str(output)]


def detect(s: Settings, max_layer: int, output: Path) -> dict[str, Any]:
    """Run (or reuse) the detection of one point; return its head file with ``seconds`` and ``reused``."""
    from harness.cli import build_parser
    from harness.commands import detect as detect_command
    from harness.io import atomic_write_json, read_json

    argv = detect_argv(s, max_layer, output)
    command = shlex.join(["harness", *argv])
    if output.is_file():
        existing = read_json(output)
        if isinstance(existing, dict) and existing.get("command") == command:
            log.info("speed-quality: L=%d: reusing %s", max_layer, output)
            return {**existing, "seconds": None, "reused": True}
    args = build_parser().parse_args([*([] if s.show_progress else ["--no-progress"]), *argv])
    log.info("speed-quality: L=%d: %s", max_layer, command)
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # detect prints its summary; keep --json's stdout clean
        detect_command.main(args)
    seconds = time.perf_counter() - started
    head_file = {**read_json(output), "command": command}
    atomic_write_json(output, head_file)
    return {**head_file, "seconds": round(seconds, 1), "reused": False}


# --------------------------------------------------------------------------- 2. evaluation


def eval_config(s: Settings, heads: str, exclude: str | None) -> Any:
    """The :class:`~harness.runner.RunConfig` of the held-out ``qr`` run with ``heads``."""
    from harness.runner import RunConfig

    params: dict[str, Any] = {"heads": heads}
    params.update({k: v for k, v in (("dtype", s.dtype), ("device", s.device)) if v})
    return RunConfig(
        task=s.task, retriever="qr", data=s.data, model=s.model, retriever_params=params,
        first_stage=s.first_stage, depth=s.depth, max_queries=s.eval_queries, seed=s.seed, exclude_queries=exclude,
        truncate_words=s.truncate_words, shuffle_candidates=s.shuffle_candidates, show_progress=s.show_progress,
    )


def evaluate(s: Settings, heads: str, exclude: str | None) -> dict[str, Any]:
    """nDCG@10 (the task's main metric), every metric and the per-query values of ``qr`` with ``heads``."""
    from harness.runner import execute

    started = time.perf_counter()
    result, _ = execute(eval_config(s, heads, exclude), write=False)
    metric = result.main_metric or "nDCG@10"
    return {
        "metric": metric,
        "value": result.metrics[metric],
        "metrics": {k: v for k, v in result.metrics.items() if "/" not in k},
        "per_query": {q: m.get(metric) for q, m in (result.per_query or {}).items()},
        "n_queries": result.task.n_queries,
        "query_ids": list(result.task.query_ids or []),
        "first_stage_recall": (result.first_stage.recall if result.first_stage else None),
        "config_hash": result.config_hash,
        "seconds": round(time.perf_counter() - started, 1),
    }


def bm25_baseline(s: Settings, exclude: str | None) -> dict[str, Any]:
    """The first stage's own nDCG@10 on the held-out queries (the floor a re-ranker must beat)."""
    from harness.runner import RunConfig, execute

    config = RunConfig(task=s.task, retriever=s.first_stage, data=s.data, depth=s.depth, max_queries=s.eval_queries,
                       seed=s.seed, exclude_queries=exclude, show_progress=s.show_progress)
    result, _ = execute(config, write=False)
    metric = result.main_metric or "nDCG@10"
    return {"retriever": s.first_stage, "metric": metric, "value": result.metrics[metric],
            "n_queries": result.task.n_queries}


# --------------------------------------------------------------------------- 3. cost


def measurement_prompts(s: Settings, exclude: str | None, tokenizer: Any, template: Any) -> list[dict[str, Any]]:
    """The first ``measure_prompts`` held-out queries with their candidates in QR's (reversed) order."""
    from harness.attention.prompts import build_prompt, tokenize_prompt
    from harness.runner import prepare

    prepared = prepare(eval_config(s, "full", exclude))
    prompts = []
    for inst in prepared.instances[: s.measure_prompts]:
        docs = list(reversed(inst.candidates))
        tokens = len(tokenize_prompt(tokenizer, build_prompt(template, docs, inst.query.text)).ids)
        prompts.append({"query_id": inst.query.id, "docs": docs, "query": inst.query.text, "tokens": tokens})
    if not prompts:
        raise HarnessError("speed-quality: no held-out query with candidates to measure")
    return prompts


def measure(s: Settings, head_sets: dict[str, str], exclude: str | None) -> dict[str, Any]:
    """Time plain and every head set's ours on the same prompts, interleaved (see the module docstring)."""
    import torch

    from harness.attention.heads import resolve_heads
    from harness.benchmarks.qr_measure import load, method_runner, sync_device

    loaded = load({"model": s.model, "heads": "full", "device": s.device, "dtype": s.dtype})
    prompts = measurement_prompts(s, exclude, loaded.tokenizer, loaded.template)
    calls: dict[str, list[Any]] = {"plain": [method_runner("plain", loaded, p["docs"], [p["query"]]) for p in prompts]}
    for label, spec in head_sets.items():
        with_heads = dataclasses.replace(loaded, heads=resolve_heads(spec, loaded.shape))
        calls[label] = [method_runner("ours", with_heads, p["docs"], [p["query"]]) for p in prompts]
    times: dict[str, list[list[float]]] = {name: [[] for _ in prompts] for name in calls}
    for round_ in range(s.warmup + s.repeats):
        for i in range(len(prompts)):
            for name, fns in calls.items():
                sync_device(loaded.device)
                start = time.perf_counter()
                with torch.inference_mode():
                    fns[i]()
                sync_device(loaded.device)
                if round_ >= s.warmup:
                    times[name][i].append(round(time.perf_counter() - start, 4))
        log.info("speed-quality: measured round %d of %d", round_ + 1, s.warmup + s.repeats)
    best = {name: [min(t) for t in per_prompt] for name, per_prompt in times.items()}
    plain = sum(best["plain"])
    return {
        "prompts": [{k: p[k] for k in ("query_id", "tokens")} for p in prompts],
        "device": loaded.device,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "plain": {"best_seconds": best["plain"], "all_seconds": times["plain"], "total_seconds": round(plain, 4)},
        "ours": {
            label: {"best_seconds": best[label], "all_seconds": times[label], "total_seconds": round(sum(best[label]), 4),
                    "cost_ratio": round(sum(best[label]) / plain, 4)}
            for label in head_sets
        },
    }


# --------------------------------------------------------------------------- the benchmark


def _num_layers(model: str) -> int:
    """The model's number of layers, from its config alone (no weights loaded)."""
    from transformers import AutoConfig

    from harness.models.resolve import ensure_available, resolve_model

    info = resolve_model(model)
    ensure_available(info)
    config = AutoConfig.from_pretrained(info.path, **({"revision": info.revision} if info.source == "hub" else {}))
    config = getattr(config, "text_config", None) or config
    return int(config.num_hidden_layers)


def _reference(s: Settings) -> str | None:
    """The reference head file: ``--reference`` as given, the model's shipped file for ``auto``."""
    if s.reference in (None, "", "none"):
        return None
    if s.reference != "auto":
        return s.reference
    from harness.attention.heads import HEAD_FILE_ALIASES, default_heads_dir

    path = default_heads_dir() / f"{s.model}.json"
    if s.model not in HEAD_FILE_ALIASES or not path.is_file():
        return None
    try:  # the relative spelling of the head-choice runs, so their run cache is shared
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _heads_dir(s: Settings, output: Path | None) -> Path:
    if s.heads_dir:
        return Path(s.heads_dir)
    if output is not None:
        return output.with_suffix("")
    from harness.io import cache_dir

    return cache_dir("bench", "speed-quality")


def _point(label: str, max_layer: int | None, heads: Sequence[tuple[int, int]], num_layers: int) -> dict[str, Any]:
    deepest = max(layer for layer, _ in heads)
    return {
        "label": label,
        "max_layer": max_layer,
        "heads": [f"{layer}-{h}" for layer, h in heads],
        "deepest_layer": deepest,
        "layers_run": deepest + 1,
        "layers_run_fraction": round((deepest + 1) / num_layers, 3),
    }


def _detect_points(s: Settings, layers: Sequence[int], heads_dir: Path, num_layers: int) -> list[dict[str, Any]]:
    """Step 1 for every L: the points with their head files."""
    from harness.attention.heads import load_head_file

    points = []
    for max_layer in layers:
        path = heads_dir / f"heads-max-layer-{max_layer}.json"
        found = detect(s, max_layer, path)
        heads, _ = load_head_file(path)
        point = _point(f"L<={max_layer}", max_layer, heads, num_layers)
        point.update({"head_file": str(path), "detection": {
            "n": found.get("n"), "skipped": found.get("skipped"), "query_ids_sha256": found.get("query_ids_sha256"),
            "top_head_scores": [score for _, score in found["heads"][: found["top"]]],
            "seconds": found["seconds"], "reused": found["reused"], "command": found["command"]}})
        points.append(point)
    return points


def _check_layers(layers: Sequence[int], num_layers: int) -> list[int]:
    bad = [x for x in layers if not 0 <= x < num_layers]
    if bad or not layers:
        raise HarnessError(f"--layers {','.join(map(str, layers))}: expected layer indices in 0..{num_layers - 1}")
    return sorted(set(layers))


def _same_queries(head_file: dict[str, Any], reference: str | None) -> bool | None:
    """Whether the detection used the reference head file's query sample (None without one)."""
    if reference is None:
        return None
    from harness.io import read_json

    ref = read_json(reference)
    return isinstance(ref, dict) and ref.get("query_ids_sha256") == head_file.get("query_ids_sha256")


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
    points = _detect_points(s, layers, _heads_dir(s, output), num_layers)
    detection_file = read_json(points[0]["head_file"])
    exclude = s.exclude_queries or points[0]["head_file"]  # a head file's query_ids: the detection queries
    reference = _reference(s)
    ref_point = None
    if reference is not None:
        ref_heads, ref_meta = load_head_file(reference)
        ref_point = _point("shipped", None, ref_heads, num_layers)
        ref_point.update({"head_file": reference, "detection": {k: ref_meta.get(k) for k in (
            "n", "seed", "truncate_words", "first_stage", "query_ids_sha256", "top")}})
    for point in [*points, *([ref_point] if ref_point else [])]:
        log.info("speed-quality: evaluating %s", point["label"])
        point["evaluation"] = evaluate(s, point["head_file"], exclude)
        point["ndcg@10"] = point["evaluation"]["value"]
    _p_values(points, ref_point)
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
                      "same_queries_as_reference": _same_queries(detection_file, reference),
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


def _p_values(points: Sequence[dict[str, Any]], ref_point: dict[str, Any] | None) -> None:
    """``p_vs_deepest``: two-sided paired randomization test (:mod:`harness.stats`) of each point's
    per-query metric against the deepest detected point's, on the same held-out queries."""
    from harness.stats import paired_randomization_test

    deepest = points[-1]["evaluation"]["per_query"]
    queries = sorted(deepest)
    for point in [*points, *([ref_point] if ref_point else [])]:
        values = point["evaluation"]["per_query"]
        if point is points[-1] or sorted(values) != queries:
            point["p_vs_deepest"] = None
            continue
        p = paired_randomization_test([values[q] for q in queries], [deepest[q] for q in queries])
        point["p_vs_deepest"] = round(p, 4)


def _interpolate(points: Sequence[dict[str, Any]], fraction: float) -> float | None:
    """The cost ratio at ``fraction`` of the layers run, linear between the measured points (None outside)."""
    pts = sorted((p["layers_run_fraction"], p["cost_ratio"]) for p in points)
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x0 <= fraction <= x1:
            return round(y0 if x1 == x0 else y0 + (y1 - y0) * (fraction - x0) / (x1 - x0), 4)
    return None


# --------------------------------------------------------------------------- report


def markdown(record: dict[str, Any]) -> str:
    """The table and the settings of a :func:`benchmark` record."""
    d, e, m = record["detection"], record["evaluation"], record["measurement"]
    rows = [*record["points"], *([record["reference"]] if record.get("reference") else [])]
    tokens = ", ".join(str(p["tokens"]) for p in m["prompts"])
    lines = [
        f"# Speed against quality: QR on {record['model']} ({record['num_layers']} layers), {e['task']}",
        "",
        f"Generated by `{record.get('command') or 'harness bench speed-quality'}`.",
        "",
        (f"| heads | deepest layer | layers run | ours s | plain s | cost ratio | {e['metric']} ({e['n_queries']} "
         f"held-out) | p vs layers <= {record['points'][-1]['max_layer']} |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    plain = m["plain"]["total_seconds"]
    for p in rows:
        name = (f"detected, layers <= {p['max_layer']}" if p["max_layer"] is not None
                else f"shipped ({p['head_file']}{_detected_with(p)})")
        lines.append(
            f"| {name} | {p['deepest_layer']} | {p['layers_run']} ({p['layers_run_fraction']:.2f}) | "
            f"{p['cost']['total_seconds']:.2f} | {plain:.2f} | {p['cost_ratio']:.3f} | {p['ndcg@10']:.4f} | "
            + (f"{p['p_vs_deepest']:.3f} |" if p.get("p_vs_deepest") is not None else "— |")
        )
    base, paper = record["baseline"], record["paper"]
    at = paper.get("cost_ratio_on_this_curve")
    lines += [
        f"| {base['retriever']} (first stage, its own order) | — | — | — | — | — | {base['value']:.4f} | — |",
        "",
        (f"Detection: `harness detect --max-layer L` on {d['n_queries']} {d['task']} queries (seed {d['seed']}, "
        f"{d['first_stage']} top {d['depth']}, {d['truncate_words']} words, objective nDCG@10, top {d['top']} heads kept; "
        f"same query sample as the reference: {d['same_queries_as_reference']}). Evaluation: `qr` on {e['n_queries']} "
        f"held-out queries (--exclude-queries {e['exclude_queries']}, disjoint: {d['held_out_disjoint']}), "
        f"top {e['depth']}, {e['truncate_words']} words, candidates shuffled with seed {e['shuffle_candidates']}."),
        "",
        (f"Cost: time of ours (prefix stopped after the deepest selected head, null + query suffixes) over a plain "
        f"full-model forward, on {len(m['prompts'])} held-out prompts ({tokens} tokens), {m['dtype']} on {m['device']}, "
        f"{m['threads'] or 'default'} torch thread(s), best of {m['repeats']} interleaved rounds after {m['warmup']} warm-up. "
         "p: two-sided paired randomization test of the per-query values against the deepest detected set."),
        "",
        f"The paper's {paper['set']} set ({paper['model']}) has its deepest head in layer {paper['deepest_layer']} of "
        f"{paper['layers']}: {paper['layers_run_fraction']:.2f} of the layers run ({paper['source']})"
        + (f"; at that fraction this curve costs {at:.3f}x a plain forward." if at is not None else "."),
        "",
        machine_line(record["machine"]),
        "",
    ]
    return "\n".join(lines)


def _detected_with(point: dict[str, Any]) -> str:
    """``"; detected on top 20, 250 words"`` from a reference point's head-file record, else ``""``."""
    d = point.get("detection") or {}
    depth = (d.get("first_stage") or {}).get("depth")
    return f"; detected on top {depth}, {d['truncate_words']} words" if depth and d.get("truncate_words") else ""


def plot(record: dict[str, Any], png_path: str | os.PathLike[str]) -> None:
    """Cost ratio on x, nDCG@10 on y, one labelled point per L; the reference, BM25 and the paper's depth."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    points, ref, paper = record["points"], record.get("reference"), record["paper"]
    with plt.rc_context({"font.size": 9}):
        fig, ax = plt.subplots(figsize=(7.0, 4.6), dpi=100)
        try:
            xs, ys = [p["cost_ratio"] for p in points], [p["ndcg@10"] for p in points]
            ax.plot(xs, ys, "o-", color="#1f77b4", label="detected with --max-layer L")
            for p in points:
                ax.annotate(f"L<={p['max_layer']}\n(deepest {p['deepest_layer']})", (p["cost_ratio"], p["ndcg@10"]),
                            textcoords="offset points", xytext=(6, -12), fontsize=8)
            if ref:
                ax.plot([ref["cost_ratio"]], [ref["ndcg@10"]], "*", ms=13, color="#d62728",
                        label=f"shipped heads (deepest {ref['deepest_layer']}){_detected_with(ref)}")
            ax.axhline(record["baseline"]["value"], ls="--", color="grey", lw=1,
                       label=f"{record['baseline']['retriever']} (the first stage's own order)")
            at = paper.get("cost_ratio_on_this_curve")
            if at is not None:
                ax.axvline(at, ls=":", color="#2ca02c", lw=1.2,
                           label=f"paper 8B NQ set depth: {paper['deepest_layer'] + 1}/{paper['layers']} layers "
                                 f"({paper['layers_run_fraction']:.2f})")
            ax.axvline(1.0, ls="-", color="black", lw=0.5, alpha=0.4)
            ax.margins(y=0.12)
            ax.set_xlim(0.0, max(1.05, *(x + 0.08 for x in xs), *([ref["cost_ratio"] + 0.08] if ref else [])))
            ax.set_xlabel("cost: time of QR's scorer / plain full-model forward")
            ax.set_ylabel(f"{record['evaluation']['metric']} ({record['evaluation']['n_queries']} held-out queries)")
            ax.set_title(f"QR speed vs quality: {record['model']} ({record['num_layers']} layers) on "
                         f"{record['evaluation']['task']}", fontsize=10)
            ax.legend(loc="center left", fontsize=8)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            out = Path(png_path)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
            fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
            os.replace(tmp, out)
        finally:
            plt.close(fig)


# --------------------------------------------------------------------------- CLI


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
