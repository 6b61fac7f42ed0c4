"""Fusion rows: combine the rankings of measured results into a new result, through ranx.

``harness fuse A.json B.json --method rrf`` reads the run files beside each result (checked
against the sha256 they record), fuses them with `ranx <https://github.com/AmenRa/ranx>`_ and
writes a normal result file with its own run files, so that the leaderboard, ``validate``,
significance tests and further fusion treat it like any other row.

Methods (``d`` a document, ``r_i(d)`` its rank from 1 in input ``i``, ``s_i(d)`` its score there;
a document absent from an input contributes nothing from it):

- ``rrf``, reciprocal rank fusion (Cormack et al., SIGIR 2009):
  ``score(d) = Σ_i 1 / (k + r_i(d))``, ``k`` = 60 unless ``--param k=…``.
- ``wsum``, score interpolation: ``score(d) = Σ_i w_i · norm(s_i)(d)`` with the weights of
  ``--weights`` (equal by default) and ``norm`` one of ranx's normalisations (``min-max`` by
  default: ``(s - min_q) / (max_q - min_q)`` over each query's list in each input).

Only results of the same task *variant* (the same documents and the same evaluated queries,
:attr:`harness.results.Result.variant`) with identical judgements can be fused. Each input's list
is its kept run file (top 100 by default), so the fused ranking is cut to ``depth`` (default the
smallest input depth) and its metrics are computed from exactly the run that is written.
"""

from __future__ import annotations

import copy
import hashlib
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import provenance
from harness.errors import HarnessError
from harness.io import sha256_json
from harness.results import (
    SCHEMA_VERSION,
    Result,
    RetrieverInfo,
    check_same_variant,
    inside,
    mean_metrics,
    read_measured,
)
from harness.spec import RunSpec, run_failures
from harness.types import Qrels, Run

METHODS = ("rrf", "wsum")
_ABSENT = "\x00no list from this input"
NORMS = ("min-max", "max", "sum", "zmuv", "rank", "borda")


@dataclass
class FusionSpec:
    """What to fuse and how: ``method`` (rrf or wsum), its ``params`` (``k`` for rrf), the
    ``weights`` of wsum (one per input; equal when empty), the score ``norm`` of wsum and the
    ``depth`` of the fused ranking (None: the smallest depth the inputs kept)."""

    method: str = "rrf"
    params: dict[str, Any] = field(default_factory=dict)
    weights: list[float] = field(default_factory=list)
    norm: str = "min-max"
    depth: int | None = None

    def check(self, n_inputs: int) -> None:
        if self.method not in METHODS:
            raise HarnessError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if n_inputs < 2:
            raise HarnessError(f"fusion needs at least two results, got {n_inputs}")
        if self.method == "rrf":
            k = self.params.setdefault("k", 60)
            if isinstance(k, bool) or not isinstance(k, (int, float)) or k < 0:
                raise HarnessError(f"--param k must be a non-negative number, got {k!r}")
            unknown = sorted(set(self.params) - {"k"})
            if unknown or self.weights:
                raise HarnessError(f"rrf takes only --param k=…, not {', '.join(unknown) or '--weights'}")
        if self.method == "wsum":
            if self.params:
                raise HarnessError(f"wsum takes --weights and --norm, not --param {', '.join(sorted(self.params))}")
            if not self.weights:
                self.weights = [1.0 / n_inputs] * n_inputs
            if len(self.weights) != n_inputs:
                raise HarnessError(f"--weights has {len(self.weights)} values for {n_inputs} results")
            if self.norm not in NORMS:
                raise HarnessError(f"--norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.depth is not None and self.depth < 1:
            raise HarnessError(f"--depth must be at least 1, got {self.depth}")

    def describe(self) -> str:
        """``RRF (k=60)`` or ``wsum (0.5, 0.5; min-max)``: the method in a row's label."""
        if self.method == "rrf":
            return f"RRF (k={self.params['k']})"
        return f"wsum ({', '.join(f'{w:g}' for w in self.weights)}; {self.norm})"


@dataclass
class _Input:
    path: Path
    result: Result
    run: Run
    qrels: Qrels
    depth: int


def _read(path: str | Path) -> _Input:
    from harness.runfiles import read_run_files

    path = Path(path)
    result = read_measured(path, "rankings to fuse")  # a file that fails the gate is never fused
    if not result.runs:
        raise HarnessError(f"{path}: this result keeps no run file (schema {result.schema_version}); re-run it")
    run, qrels, _ = read_run_files(path, result.runs)
    return _Input(path, result, run, qrels, int(result.runs["ranking"].get("top_k") or 100))


def _same_data(inputs: Sequence[_Input]) -> None:
    """Refuse inputs that ran on other documents, queries or judgements than the first."""
    first = inputs[0]
    check_same_variant([(i.path, i.result) for i in inputs], "only the same documents and queries can be fused")
    for other in inputs[1:]:
        a, b = first.result, other.result
        if sorted(a.per_query or {}) != sorted(b.per_query or {}):
            raise HarnessError(f"{other.path}: evaluates other queries than {first.path}")
        if first.qrels != other.qrels:
            raise HarnessError(f"{other.path}: its judgements differ from {first.path}'s")


def fuse_runs(runs: Sequence[Run], spec: FusionSpec) -> Run:
    """The fused run of ``runs`` (ranx), every query's list cut to ``spec.depth`` when set."""
    try:
        from ranx import Run as RanxRun
        from ranx import fuse
    except ImportError:
        raise HarnessError("fusion needs ranx: pip install 'retrieval-harness[fusion]' (or pip install ranx)") from None
    queries = sorted(set().union(*runs))
    # ranx needs the same queries in every run. A query an input has no list for gets a list holding
    # only a placeholder document: scores are normalised and ranked per input and query, so the
    # placeholder changes no other document's score, and it is dropped from the fused lists.
    ranx_runs = [RanxRun({q: {d: float(s) for d, s in run.get(q, {}).items()} or {_ABSENT: 0.0} for q in queries},
                         name=f"run{i}") for i, run in enumerate(runs)]
    params = {"k": spec.params["k"]} if spec.method == "rrf" else {"weights": list(spec.weights)}
    with warnings.catch_warnings():  # numba's notes on its own integer casts are not the user's concern
        warnings.simplefilter("ignore")
        fused = fuse(runs=ranx_runs, norm=spec.norm if spec.method == "wsum" else None,
                     method=spec.method, params=params).to_dict()
    out: Run = {}
    for q in queries:
        ranked = sorted(((d, v) for d, v in fused.get(q, {}).items() if d != _ABSENT), key=lambda kv: (-kv[1], kv[0]))
        out[q] = dict(ranked[: spec.depth] if spec.depth else ranked)
    return out


def fuse_results(paths: Sequence[str | Path], spec: FusionSpec, *, command: str | None = None,
                 allow_dirty: bool = False) -> tuple[Result, Run, Qrels]:
    """Fuse the rankings of the results at ``paths``: the new result, its run and its qrels."""
    from harness.metric_specs import recomputable
    from harness.metrics import evaluate

    started = time.time()
    commit = provenance.git_commit()
    provenance.refuse_uncommitted(commit, allow_dirty)
    spec.check(len(paths))
    inputs = [_read(p) for p in paths]
    _same_data(inputs)
    spec.depth = spec.depth or min(i.depth for i in inputs)
    fused = fuse_runs([i.run for i in inputs], spec)
    first = inputs[0].result
    ids = list(first.task.query_ids or sorted(first.per_query or {}))
    names = sorted({n for i in inputs for values in (i.result.per_query or {}).values() for n in values
                    if recomputable(n, spec.depth, False)})
    if not names:
        raise HarnessError(f"{inputs[0].path}: no ranking metric to evaluate the fused run with")
    judged = {q: inputs[0].qrels.get(q, {}) for q in ids}
    per_query = evaluate(judged, {q: fused.get(q, {}) for q in ids}, names,
                         ignore_identical_ids=bool(first.task.ignore_identical_ids)).per_query
    per_query = {q: per_query.get(q, {}) for q in ids}
    described = [{"file": str(i.path), "sha256": hashlib.sha256(i.path.read_bytes()).hexdigest(),
                  "label": i.result.run_spec().label(run_failures(i.result.generation)), "run_sha256": i.result.runs["ranking"]["sha256"]}
                 for i in inputs]
    params = {"method": spec.method, **spec.params, **({"weights": spec.weights, "norm": spec.norm}
                                                        if spec.method == "wsum" else {}),
              "depth": spec.depth, "inputs": described}
    task = copy.deepcopy(first.task)  # the same documents and queries as every input
    main = first.declared_main_metric
    result = Result(
        schema_version=SCHEMA_VERSION, kind="measured", task=task,
        retriever=RetrieverInfo(name="fusion", kind="fusion", params=params,
                                revision=f"ranx=={provenance.package_version('ranx')}"),
        main_metric=main if any(main in v for v in per_query.values()) else None,
        metrics=mean_metrics(per_query), per_query=per_query, run_sha256=sha256_json(fused),
        config_hash=sha256_json({"spec": params}),
        environment=provenance.result_environment(commit, command),
        timing={"total_seconds": round(time.time() - started, 3)}, date=provenance.now_iso(),
        order=Result.MEASURED_ORDER,
    )
    result.spec = RunSpec.derive(result).to_dict()
    return result, fused, judged


def default_fusion_path(result: Result, root: str | Path = "results") -> Path:
    """``results/<task>/fusion-<method>__<input stems joined by +>.json`` (a short hash of the
    inputs instead when the name would be too long for a file system)."""
    params = result.retriever.params
    stems = [Path(i["file"]).name.removesuffix(".json") for i in params["inputs"]]
    name = f"fusion-{params['method']}__{'+'.join(stems)}"
    if len(name) > 200:
        digest = hashlib.sha256("\n".join(stems).encode()).hexdigest()[:12]
        name = f"fusion-{params['method']}__{len(stems)}-inputs-{digest}"
    return inside(root, *result.task.id.split("/")) / f"{name}.json"


def write_fusion(result: Result, run: Run, qrels: Qrels, out: Path) -> None:
    """Write the fused result with its run and qrels files beside it."""
    from harness.io import check_writable

    check_writable(out)
    result.write_with_runs(out, run, qrels, tag="fusion", top_k=int(result.retriever.params["depth"]))
