"""Result files: the schema, loading, checking and default file names.

One JSON file per (task, retriever, model, heads, first stage). A *measured* file looks like::

    {
      "schema_version": 1, "kind": "measured",
      "task": {"id", "source", "revision", "sha256", "split", "n_queries", "max_queries", "seed",
               "ignore_identical_ids", "query_ids_sha256"},
      "retriever": {"name", "kind", "params", "model", "revision", "heads", ...},
      "first_stage": null | {"name", "params", "depth", "recall": {"R@200": ...}, "run_sha256"},
      "truncate_words": null | int,
      "generation": null | {"generator": {...}, "judge": {...}, "top_k", "full_context", ...},
      "metrics": {"nDCG@10": 0.71, ...},
      "per_query": {"q1": {"nDCG@10": 1.0, ...}, ...},
      "run_sha256": "...", "config_hash": "...",
      "environment": {...}, "timing": {...}, "date": "2026-11-26T23:00:00+00:00"
    }

A *reported* file (numbers copied from a paper) has ``"kind": "reported"``, a non-empty
``"source"`` and ``metrics`` only; it never carries per-query values and is never mixed with
measured rows.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import read_json

SCHEMA_VERSION = 1

MEASURED_FIELDS = (
    "schema_version", "kind", "task", "retriever", "first_stage", "metrics", "per_query",
    "config_hash", "environment", "timing", "date",
)
TASK_FIELDS = ("id", "source", "n_queries")
RETRIEVER_FIELDS = ("name", "kind", "params")
ENVIRONMENT_FIELDS = ("harness", "git_commit", "python", "device", "packages")
REPORTED_FIELDS = ("schema_version", "kind", "source", "task", "retriever", "metrics")


def load_result(path: str | Path) -> dict[str, Any]:
    """Read a result file; a file that is not JSON gives a one-line error naming it."""
    path = Path(path)
    obj = read_json(path, invalid="not valid JSON")
    if not isinstance(obj, dict):
        raise HarnessError(f"{path}: expected a JSON object at the top level")
    return obj


def mean_metrics(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    """The aggregation rule: each metric is the mean over the queries that carry it."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for values in per_query.values():
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + float(value)
            counts[name] = counts.get(name, 0) + 1
    return {name: sums[name] / counts[name] for name in sorted(sums)}


def _require(obj: dict[str, Any], fields: tuple[str, ...], where: str, path: Path) -> None:
    for field in fields:
        if field not in obj:
            raise HarnessError(f"{path}: missing field {where}{field!r}")


def validate_result(obj: dict[str, Any], path: str | Path = "<result>", *, tolerance: float = 1e-6) -> list[str]:
    """Check a result file; raise :class:`HarnessError` on the first defect.

    Checks the schema version, required fields (provenance included), that every evaluated
    query has per-query values, and that each reported metric equals the mean of its per-query
    values. Returns a list of warnings (non-fatal observations).
    """
    path = Path(path)
    version = obj.get("schema_version")
    if not isinstance(version, int):
        raise HarnessError(f"{path}: missing field 'schema_version'")
    if version < SCHEMA_VERSION:
        raise HarnessError(
            f"{path}: schema version {version} is older than the current {SCHEMA_VERSION}; re-run it with this harness"
        )
    if version > SCHEMA_VERSION:
        raise HarnessError(f"{path}: schema version {version} is newer than this harness ({SCHEMA_VERSION}); upgrade")
    kind = obj.get("kind")
    if kind == "reported":
        _require(obj, REPORTED_FIELDS, "", path)
        if not str(obj.get("source") or "").strip():
            raise HarnessError(f"{path}: reported result has an empty 'source'")
        _check_metric_values(obj["metrics"], path, "metrics")
        return []
    if kind != "measured":
        raise HarnessError(f"{path}: field 'kind' must be 'measured' or 'reported', got {kind!r}")
    _require(obj, MEASURED_FIELDS, "", path)
    _require(obj["task"], TASK_FIELDS, "task.", path)
    _require(obj["retriever"], RETRIEVER_FIELDS, "retriever.", path)
    _require(obj["environment"], ENVIRONMENT_FIELDS, "environment.", path)
    metrics, per_query = obj["metrics"], obj["per_query"]
    _check_metric_values(metrics, path, "metrics")
    if not isinstance(per_query, dict) or not per_query:
        raise HarnessError(f"{path}: 'per_query' is empty")
    expected = obj["task"]["n_queries"]
    if len(per_query) != expected:
        raise HarnessError(
            f"{path}: per_query covers {len(per_query)} queries but task.n_queries is {expected}"
        )
    query_ids = obj["task"].get("query_ids")
    if query_ids is not None:
        missing = sorted(set(query_ids) - set(per_query))
        extra = sorted(set(per_query) - set(query_ids))
        if missing:
            raise HarnessError(f"{path}: per_query is missing {len(missing)} queries, e.g. {missing[:3]}")
        if extra:
            raise HarnessError(f"{path}: per_query has {len(extra)} queries not in task.query_ids, e.g. {extra[:3]}")
    for qid, values in per_query.items():
        _check_metric_values(values, path, f"per_query[{qid!r}]")
    recomputed = mean_metrics(per_query)
    for name, value in metrics.items():
        if name not in recomputed:
            raise HarnessError(f"{path}: metric {name!r} has no per-query values")
        if abs(recomputed[name] - value) > tolerance * max(1.0, abs(value)):
            raise HarnessError(
                f"{path}: metric {name!r} is {value!r} but its per-query values average {recomputed[name]!r}"
            )
    warnings = [f"per-query metric {name!r} is not in 'metrics'" for name in recomputed if name not in metrics]
    return warnings


def _check_metric_values(values: Any, path: Path, where: str) -> None:
    if not isinstance(values, dict):
        raise HarnessError(f"{path}: field {where!r} must be an object of metric values")
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise HarnessError(f"{path}: {where}[{name!r}] is not a finite number: {value!r}")


def slug(text: str) -> str:
    """File-name-safe form of a model id or parameter value."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "_"


def default_output_path(result: dict[str, Any], root: str | Path = "results") -> Path:
    """``results/<task id>/<retriever>[__<model>][__<heads>][__<first stage><depth>][__gen-…].json``."""
    task_dir = Path(root).joinpath(*[slug(p) for p in result["task"]["id"].split("/")])
    retriever = result["retriever"]
    parts = [slug(retriever["name"])]
    if retriever.get("model"):
        parts.append(slug(str(retriever["model"]).rstrip("/").split("/")[-1]))
    if retriever.get("heads_name"):
        parts.append(slug(str(retriever["heads_name"])))
    first_stage = result.get("first_stage")
    if first_stage:
        parts.append(f"{slug(first_stage['name'])}{first_stage['depth']}")
    task = result["task"]
    if task.get("excluded_queries_from"):
        parts.append(f"excl-{slug(Path(task['excluded_queries_from']).stem)}")
    if task.get("n_available") and len(task.get("query_ids") or []) < task["n_available"]:
        parts.append(f"q{len(task['query_ids'])}-seed{task.get('seed')}")
    generation = result.get("generation")
    if generation:
        mode = "full" if generation.get("full_context") else f"top{generation.get('top_k')}"
        gen_model = str(generation["generator"].get("spec", "gen")).split(":", 1)[-1].rstrip("/").split("/")[-1]
        mask = generation["generator"].get("mask")
        if mask:
            mode += f"-mask-{slug(str(mask.get('name') or mask.get('sha256', '')[:12]))}-{mask.get('mode', 'output')}"
        parts.append(f"gen-{slug(gen_model)}-{mode}")
    return task_dir / ("__".join(parts) + ".json")
