"""Step 2 of ``harness bench speed-quality``: the quality of each head set on held-out queries.

``qr`` with the set's top heads on ``--eval-queries`` queries of the same task, none of them a
detection query (:func:`harness.runner.execute` without a result file, so the scoring resumes from
the run cache); the first stage's own nDCG@10 on the same queries; and each point's paired
randomization test against the deepest detected point.

A helper of the ``speed-quality`` target (no ``add_arguments``: ``harness bench`` lists no target for it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from harness.benchmarks.speed_quality_settings import Settings


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


def p_values(points: Sequence[dict[str, Any]], ref_point: dict[str, Any] | None) -> None:
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
