"""Step 3 of ``harness bench speed-quality``: the cost of each head set against a plain forward.

*ours* (:meth:`AttentionEngine.scores_from_encoded`: the prefix stopped after the deepest selected
head, null and query suffixes with capture) against *plain* (one SDPA forward of the whole base
model over the query prompt, no LM head), as in :mod:`harness.benchmarks.qr_measure`, on the same
real held-out prompts, interleaved per round and prompt; the best time per prompt counts.

A helper of the ``speed-quality`` target (no ``add_arguments``: ``harness bench`` lists no target for it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from harness.benchmarks.speed_quality_eval import eval_config
from harness.benchmarks.speed_quality_settings import Settings
from harness.errors import HarnessError

log = logging.getLogger("harness.benchmarks.speed_quality")  # the target's logger, as before the split


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
