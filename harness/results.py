"""Result files: the :class:`Result` class is the schema.

One JSON file per (task, retriever, model, heads, first stage, generation). :class:`Result` is
the one place the schema is defined: every reader (runner, leaderboard, shards, merge,
reproduce, validate) goes through :meth:`Result.from_json` / :meth:`Result.from_dict`, every
writer through :meth:`Result.to_json` / :meth:`Result.write`, and :meth:`Result.validate` is the
single gate for ``harness validate``, the leaderboard, merge and reproduce.

A *measured* result carries per-query values; its metrics must equal their means. A *reported*
result (numbers copied from a paper) has ``kind: "reported"``, a non-empty ``source`` and
``metrics`` only, and is never mixed with measured rows.

Schema versions: 1 (no ``main_metric``; read, upgraded in memory from the task's declaration),
2 (adds ``main_metric``, the metric the leaderboard ranks by) and 3 (current: adds ``spec``, the
run's identity as data, :class:`harness.spec.RunSpec`; older files get it derived from their
sections).

>>> r = Result.from_dict({"schema_version": 2, "kind": "reported", "source": "a paper, Table 1",
...                       "task": {"id": "beir/nq"}, "retriever": {"name": "bm25", "params": {}},
...                       "first_stage": None, "generation": None, "metrics": {"nDCG@10": 0.3},
...                       "main_metric": "nDCG@10"})
>>> r.task.id, r.family, r.metrics["nDCG@10"], r.validate()
('beir/nq', 'beir', 0.3, [])
>>> Result.from_dict(json.loads(r.to_json())) == r
True
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError
from harness.io import atomic_write_text, read_json
from harness.metric_specs import MetricSpec, lookup
from harness.metric_specs import average as mean_metrics
from harness.spec import RunSpec, slug

SCHEMA_VERSION = 3
#: Versions this harness reads (older ones are upgraded in memory).
READABLE_VERSIONS = (1, 2, 3)
#: Schema 3 adds a measured result's ``spec``; a reported row's format is the same since version 2.
REPORTED_SCHEMA_VERSION = 2
KINDS = ("measured", "reported")


@dataclass
class Record:
    """A JSON object with declared fields; unknown keys are kept in ``extra`` and the key order
    of the file in ``order``, so that reading and writing a file changes nothing."""

    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def declared(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name not in ("extra", "order")]

    @classmethod
    def from_dict(cls, obj: Any, where: str, path: str | Path = "<result>") -> Any:
        if not isinstance(obj, dict):
            raise HarnessError(f"{path}: field {where!r} must be an object, got {type(obj).__name__}")
        for name in cls.REQUIRED:
            if name not in obj:
                raise HarnessError(f"{path}: missing field {where}.{name!r}" if where else
                                   f"{path}: missing field {name!r}")
        names = cls.declared()
        known = {k: obj[k] for k in names if k in obj}
        extra = {k: v for k, v in obj.items() if k not in names}
        return cls(**known, extra=extra, order=tuple(obj))  # type: ignore[call-arg]

    def to_dict(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in self.declared()}
        values = {k: (v.to_dict() if isinstance(v, Record) else v) for k, v in values.items()}
        out: dict[str, Any] = {}
        order = list(self.order) + [k for k in values if k not in self.order]  # type: ignore[attr-defined]
        for key in order + [k for k in self.extra if k not in order]:  # type: ignore[attr-defined]
            if key in values and (values[key] is not None or key in self.order):  # type: ignore[attr-defined]
                out[key] = values[key]
            elif key in self.extra:  # type: ignore[attr-defined]
                out[key] = self.extra[key]  # type: ignore[attr-defined]
        return out


@dataclass
class TaskInfo(Record):
    """What was evaluated: task id, data provenance (source, revision or sha256, split) and the
    evaluated queries. Task-specific provenance (the NIAH grid, CLIPPER's books) is in ``extra``."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("id",)
    id: str = ""
    source: str | None = None
    split: str | None = None
    revision: str | None = None
    sha256: str | None = None
    n_queries: int | None = None
    n_available: int | None = None
    max_queries: int | None = None
    seed: int | None = None
    ignore_identical_ids: bool | None = None
    excluded_queries_from: str | None = None
    query_ids: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    order: tuple[str, ...] = ()


@dataclass
class RetrieverInfo(Record):
    """The retriever's ``meta``: name, kind, parameters, model, revision and head set."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("name",)
    name: str = ""
    kind: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    revision: str | None = None
    heads_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    order: tuple[str, ...] = ()


@dataclass
class FirstStageInfo(Record):
    """The first stage a re-ranker re-ranked: its name, depth and recall at that depth (the ceiling)."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("name", "depth")
    name: str = ""
    depth: int = 0
    params: dict[str, Any] | None = None
    recall: dict[str, float] | None = None
    run_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    order: tuple[str, ...] = ()


@dataclass
class ShardInfo(Record):
    """Which slice ``query_ids[index::count]`` of ``all_query_ids`` a shard file holds."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("index", "count", "all_query_ids")
    index: int = 0
    count: int = 1
    all_query_ids: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    order: tuple[str, ...] = ()


@dataclass
class Result(Record):
    """One result file (see the module docstring).

    ``generation`` (generator/judge meta, top-k, full context, failures), ``environment``
    (:func:`harness.provenance.environment`) and ``timing`` are free-form objects.
    """

    schema_version: int = SCHEMA_VERSION
    kind: str = "measured"
    task: TaskInfo = field(default_factory=TaskInfo)
    retriever: RetrieverInfo = field(default_factory=RetrieverInfo)
    first_stage: FirstStageInfo | None = None
    truncate_words: int | None = None
    generation: dict[str, Any] | None = None
    #: Schema 3: the run's identity as plain data (:meth:`harness.spec.RunSpec.to_dict`).
    spec: dict[str, Any] | None = None
    main_metric: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    per_query: dict[str, dict[str, float]] | None = None
    run_sha256: str | None = None
    config_hash: str | None = None
    environment: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None
    date: str | None = None
    #: The files beside the result: ranking, qrels, first-stage candidates (:mod:`harness.runfiles`).
    runs: dict[str, Any] | None = None
    shard: ShardInfo | None = None
    #: Shard files only: the shard's ranking, judgements and candidate lists, inline until merged.
    run: dict[str, dict[str, float]] | None = None
    qrels: dict[str, dict[str, int]] | None = None
    first_stage_run: dict[str, dict[str, float]] | None = None
    source: str | None = None
    citation: str | None = None
    table: dict[str, Any] | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    order: tuple[str, ...] = ()

    MEASURED: ClassVar[tuple[str, ...]] = (
        "task", "retriever", "first_stage", "metrics", "per_query", "config_hash", "environment", "timing", "date",
    )
    REPORTED: ClassVar[tuple[str, ...]] = ("source", "task", "retriever", "metrics")
    #: The key order of a measured result file as written (null sections included).
    MEASURED_ORDER: ClassVar[tuple[str, ...]] = (
        "schema_version", "kind", "task", "retriever", "first_stage", "truncate_words", "generation", "spec",
        "main_metric", "metrics", "per_query", "run_sha256", "config_hash", "environment", "timing", "date",
    )
    TASK_FIELDS: ClassVar[tuple[str, ...]] = ("id", "source", "n_queries")
    RETRIEVER_FIELDS: ClassVar[tuple[str, ...]] = ("name", "kind", "params")
    ENVIRONMENT_FIELDS: ClassVar[tuple[str, ...]] = ("harness", "git_commit", "python", "device", "packages")

    # -- reading and writing -------------------------------------------------------------------
    @classmethod
    def from_json(cls, path: str | Path) -> Result:
        """Read a result file; a file that is not a JSON object gives a one-line error naming it."""
        return cls.from_dict(load_result(path), path)

    @classmethod
    def from_dict(cls, obj: Any, path: str | Path = "<result>", where: str = "") -> Result:  # type: ignore[override]
        """Build a result from its JSON object, checking the version, kind and section types."""
        if not isinstance(obj, dict):
            raise HarnessError(f"{path}: expected a JSON object at the top level")
        version = obj.get("schema_version")
        if "schema_version" not in obj:
            raise HarnessError(f"{path}: not a result file (missing field 'schema_version')")
        if isinstance(version, bool) or not isinstance(version, int):
            raise HarnessError(f"{path}: field 'schema_version' must be an integer, got {version!r}")
        if version not in READABLE_VERSIONS:
            newer = version > SCHEMA_VERSION
            raise HarnessError(f"{path}: schema version {version} is {'newer' if newer else 'older'} than this harness "
                               f"reads ({', '.join(map(str, READABLE_VERSIONS))}); "
                               + ("upgrade the harness" if newer else "re-run it with this harness"))
        kind = obj.get("kind")
        if kind not in KINDS:
            raise HarnessError(f"{path}: field 'kind' must be 'measured' or 'reported', got {kind!r}")
        required = cls.MEASURED if kind == "measured" else cls.REPORTED
        for name in required:
            if name not in obj:
                raise HarnessError(f"{path}: missing field {name!r}")
        result = super().from_dict(obj, where, path)
        result.task = TaskInfo.from_dict(obj["task"], "task", path)
        result.retriever = RetrieverInfo.from_dict(obj["retriever"], "retriever", path)
        if obj.get("first_stage") is not None:
            result.first_stage = FirstStageInfo.from_dict(obj["first_stage"], "first_stage", path)
        if obj.get("shard") is not None:
            result.shard = ShardInfo.from_dict(obj["shard"], "shard", path)
        return result

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict()

    def to_json(self) -> str:
        """The file's text: measured results key-sorted, indent 2; reported ones in insertion order, indent 1."""
        if self.kind == "reported":
            return json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def write(self, path: str | Path) -> None:
        """Write atomically (a temporary file and a rename)."""
        atomic_write_text(path, self.to_json())

    def write_with_runs(self, path: str | Path, run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]],
                        *, tag: str, top_k: int = 100, first_stage: dict[str, dict[str, float]] | None = None) -> None:
        """Write the run files beside ``path``, record them in ``runs``, then write the result."""
        from harness.runfiles import write_run_files

        path = Path(path)
        depth = self.first_stage.depth if self.first_stage else None
        self.runs = write_run_files(path, run, qrels, tag=tag, top_k=top_k,
                                    ignore_identical_ids=bool(self.task.ignore_identical_ids),
                                    first_stage=first_stage, first_stage_depth=depth)
        if "runs" not in self.order:
            self.order = (*self.order, "runs")
        self.write(path)

    # -- derived views ---------------------------------------------------------------------------
    @property
    def family(self) -> str:
        """The task family: the part of the task id before the first ``/``."""
        return self.task.id.split("/")[0]

    @property
    def declared_main_metric(self) -> str:
        """``main_metric``; for a version-1 file (which predates the field), the main metric its
        task class declares (:attr:`harness.types.Task.main_metric`)."""
        if self.main_metric:
            return self.main_metric
        from harness.registry import task_main_metric

        return task_main_metric(self.task.id)

    @property
    def ranked_by(self) -> str | None:
        """The metric the leaderboard ranks this row by: the declared main metric when the row
        has it, else the first of its metrics in name order."""
        main = self.declared_main_metric
        if main in self.metrics:
            return main
        return next(iter(sorted(self.metrics)), None)

    def metric_specs(self) -> tuple[MetricSpec, ...]:
        """The metric specs the result's task declares beyond the built-ins (:mod:`harness.metric_specs`)."""
        from harness.registry import task_class_of

        return tuple(task_class_of(self.task.id).metric_specs)

    def run_spec(self) -> RunSpec:
        """The run's identity (:class:`harness.spec.RunSpec`): recorded (schema 3) or derived."""
        return RunSpec.from_result(self)

    @property
    def variant(self) -> str:
        """:meth:`harness.spec.RunSpec.variant` for measured rows; reported rows are the full task."""
        return self.run_spec().variant() if self.kind == "measured" else ""

    # -- the one gate ------------------------------------------------------------------------------
    def validate(self, path: str | Path = "<result>", *, tolerance: float = 1e-6) -> list[str]:
        """Check the result; raise :class:`HarnessError` on the first defect, return warnings.

        Checks required fields (provenance included), that every evaluated query has per-query
        values, and that each metric equals the mean of its per-query values.
        """
        _check_metric_values(self.metrics, Path(path), "metrics", self.metric_specs())
        if self.main_metric is not None and not isinstance(self.main_metric, str):
            raise HarnessError(f"{path}: field 'main_metric' must be a metric name, got {self.main_metric!r}")
        if self.kind == "reported":
            if not str(self.source or "").strip():
                raise HarnessError(f"{path}: reported result has an empty 'source'")
            return []
        warnings = _validate_measured(self, Path(path), tolerance)
        return warnings + self._check_runs(Path(path))

    def _check_runs(self, path: Path) -> list[str]:
        """Recompute the ranking metrics from the run files (schema 2); older files predate them."""
        if self.shard is not None or self.run is not None:
            return []  # a shard, or a merge not yet written: the ranking is still inline
        if self.runs is None:
            if self.schema_version >= 2:
                raise HarnessError(f"{path}: a measured result must record its run files (field 'runs')")
            return ["schema version 1: no run file, so the metrics were not recomputed from a ranking"]
        if not path.is_file():
            return ["not read from a file: its run files were not checked"]
        from harness.runfiles import check_against_runs

        return check_against_runs(self, path)


def _validate_measured(result: Result, path: Path, tolerance: float) -> list[str]:
    task = result.task.to_dict()
    for name in Result.TASK_FIELDS:
        if name not in task:
            raise HarnessError(f"{path}: missing field task.{name!r}")
    retriever = result.retriever.to_dict()
    for name in Result.RETRIEVER_FIELDS:
        if name not in retriever:
            raise HarnessError(f"{path}: missing field retriever.{name!r}")
    environment = result.environment if isinstance(result.environment, dict) else {}
    for name in Result.ENVIRONMENT_FIELDS:
        if name not in environment:
            raise HarnessError(f"{path}: missing field environment.{name!r}")
    per_query = result.per_query
    if not isinstance(per_query, dict) or not per_query:
        raise HarnessError(f"{path}: 'per_query' is empty")
    if not result.metrics:
        raise HarnessError(f"{path}: 'metrics' is empty")
    expected = result.task.n_queries
    available = result.task.n_available
    if isinstance(available, int) and isinstance(expected, int) and expected > available:
        raise HarnessError(f"{path}: task.n_queries is {expected} but only {available} queries were available")
    if len(per_query) != expected:
        raise HarnessError(f"{path}: per_query covers {len(per_query)} queries but task.n_queries is {expected}")
    query_ids = result.task.query_ids
    if query_ids is not None:
        missing = sorted(set(query_ids) - set(per_query))
        extra = sorted(set(per_query) - set(query_ids))
        if missing:
            raise HarnessError(f"{path}: per_query is missing {len(missing)} queries, e.g. {missing[:3]}")
        if extra:
            raise HarnessError(f"{path}: per_query has {len(extra)} queries not in task.query_ids, e.g. {extra[:3]}")
    for qid, values in per_query.items():
        _check_metric_values(values, path, f"per_query[{qid!r}]", result.metric_specs())
    recomputed = mean_metrics(per_query)
    for name, value in result.metrics.items():
        if name not in recomputed:
            raise HarnessError(f"{path}: metric {name!r} has no per-query values")
        if abs(recomputed[name] - value) > tolerance * max(1.0, abs(value)):
            raise HarnessError(
                f"{path}: metric {name!r} is {value!r} but its per-query values average {recomputed[name]!r}"
            )
    if result.schema_version >= 3:
        _check_spec(result, path)
    return [f"per-query metric {name!r} is not in 'metrics'" for name in recomputed if name not in result.metrics]


def _check_spec(result: Result, path: Path) -> None:
    """A schema-3 result records its spec, and that spec is the one its sections imply."""
    if result.spec is None:
        raise HarnessError(f"{path}: a schema-{result.schema_version} measured result must record its 'spec'")
    recorded = RunSpec.from_dict(result.spec, f"{path}: spec").to_dict()
    derived = RunSpec.derive(result).to_dict()
    for name, value in derived.items():
        if recorded.get(name) != value:
            raise HarnessError(f"{path}: spec.{name} is {recorded.get(name)!r}, but the result's sections say {value!r}")


#: Folders under a results root that hold no result files (``site/``: the generated page;
#: ``heads/``: head files; ``bench/``: benchmark records).
NOT_RESULTS = frozenset({"bench", "heads", "site"})


def result_files(root: str | Path) -> list[Path]:
    """The result files under the folder ``root``, sorted: every ``*.json`` outside
    :data:`NOT_RESULTS` (at the top level) and not hidden."""
    root = Path(root)
    return [p for p in sorted(root.rglob("*.json"))
            if p.relative_to(root).parts[0] not in NOT_RESULTS and not p.name.startswith(".")]


def read_measured(path: str | Path, purpose: str) -> Result:
    """A measured result file through the one gate (:meth:`Result.validate`); ``purpose`` names
    what the caller needs it for in the error about any other kind ("rankings to fuse")."""
    result = Result.from_json(path)
    result.validate(path)
    if result.kind != "measured":
        raise HarnessError(f"{path}: only measured results have {purpose}")
    return result


def check_same_variant(results: Sequence[tuple[str | Path, Result]], hint: str) -> None:
    """Refuse results whose task or variant (documents and queries) differs from the first's:
    only those can be compared or fused query by query; ``hint`` ends the error."""
    (first_path, first), *others = results
    for path, other in others:
        if (other.task.id, other.variant) != (first.task.id, first.variant):
            raise HarnessError(f"{path}: task {other.task.id} [{other.variant or 'full data'}] differs from "
                               f"{first_path}'s {first.task.id} [{first.variant or 'full data'}]: {hint}")


def load_result(path: str | Path) -> dict[str, Any]:
    """The raw JSON object of a result file (no schema checks; see :meth:`Result.from_json`)."""
    path = Path(path)
    obj = read_json(path, invalid="not valid JSON")
    if not isinstance(obj, dict):
        raise HarnessError(f"{path}: expected a JSON object at the top level")
    return obj


def validate_result(obj: dict[str, Any], path: str | Path = "<result>", *, tolerance: float = 1e-6) -> list[str]:
    """``Result.from_dict(obj, path).validate(path)``: the gate, for a raw JSON object."""
    return Result.from_dict(obj, path).validate(path, tolerance=tolerance)


def _check_metric_values(values: Any, path: Path, where: str, extra: Sequence[MetricSpec] = ()) -> None:
    """Every value a finite number within its metric's bounds (:mod:`harness.metric_specs`)."""
    if not isinstance(values, dict):
        raise HarnessError(f"{path}: field {where!r} must be an object of metric values")
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise HarnessError(f"{path}: {where}[{name!r}] is not a finite number: {value!r}")
        spec = lookup(str(name), extra)
        if spec is not None and not spec.in_bounds(value):
            low, high = spec.bounds or (0, 0)
            raise HarnessError(f"{path}: {where}[{name!r}] is {value!r}, outside [{low:g}, {high:g}]")


def inside(root: str | Path, *parts: str) -> Path:
    """``root/part/...`` with every part slugged, checked to stay inside ``root``."""
    base = Path(root)
    path = base.joinpath(*[slug(p) for p in parts])
    if not path.resolve().is_relative_to(base.resolve()):
        raise HarnessError(f"{path}: a path built from data must stay inside {base}")
    return path


def default_output_path(result: Result, root: str | Path = "results") -> Path:
    """``results/<task id>/<RunSpec.filename()>``: everything that changes a result's numbers is in
    its name (:meth:`harness.spec.RunSpec.filename`), so two runs that differ never share a file."""
    return inside(root, *result.task.id.split("/")) / result.run_spec().filename()
