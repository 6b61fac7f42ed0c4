"""Reproduction recipes: the exact ``harness run`` command behind each table cell, and its check.

In the spirit of Pyserini's 2CR (``pyserini/2cr/beir.yaml``): one checked-in YAML file
(``reproduce/paper.yaml``) lists *conditions*. A condition is one printed row (or one of our own
offline configurations): a command template, the result file each cell writes, and each cell's
expected value with a tolerance. ``harness reproduce`` lists them, prints the commands, runs
them, and checks the result files against the expectations::

    harness reproduce --list                      # the conditions
    harness reproduce --table 2 --dry-run         # the exact commands
    harness reproduce --table offline             # run them, then check
    harness reproduce --table 2 --check           # only read the result files and compare

Recipe file layout::

    version: 1
    reported: results/reported/arxiv-2506.09944v2.yaml   # where `expected_from` looks values up
    task_args: {beir/robust04: "--data ${HARNESS_BEIR_LICENSED}/robust04"}
    conditions:
      - name: t2-qr-{lm}                  # {lm} / {model} / {model_slug} come from `for_lm`
        table: "2"
        for_lm: [3B, 8B, 70B, Qwen-7B]
        expected_from: {table: "2", row: "{lm} QRRetriever"}   # expected = the reported cell
        tolerance: 0.01
        command: harness run --task {task} --retriever qr --model {model} --heads nq --output {output}
        output: results/{task}/qr__{model_slug}__nq__bm25200.json
        metric: nDCG@10
        tasks: [beir/nq, beir/trec-covid]          # or `cells: [{task, metric|metrics, expected, top_k}]`

Template fields: ``{task}``, ``{output}``, ``{top_k}``, ``{lm}``, ``{model}``, ``{model_slug}``.
Environment variables (``$VAR`` / ``${VAR}``) are expanded when a command runs.

Statuses: ``OK`` (|measured − expected| <= tolerance), ``FAIL`` (outside the tolerance, or the
file lacks the metric), ``INVALID`` (the file fails :meth:`harness.results.Result.validate` or
is not a measured result), ``MISSING`` (no result file yet) and ``PENDING`` (the recipe has no
expected value yet: measured is shown, nothing is compared). FAIL and INVALID always fail a
check; MISSING and PENDING only with ``strict``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import read_yaml
from harness.results import Result, slug

log = logging.getLogger(__name__)

#: The checked-in recipe file, relative to the repository root.
DEFAULT_RECIPES = Path("reproduce/paper.yaml")

STATUSES = ("OK", "FAIL", "INVALID", "MISSING", "PENDING")
FAILING = frozenset({"FAIL", "INVALID"})
FAILING_STRICT = FAILING | {"MISSING", "PENDING"}


@dataclass(frozen=True)
class Cell:
    """One expected number: a metric of the result file that ``command`` writes."""

    condition: str
    table: str
    task: str
    metric: str
    expected: float | None
    tolerance: float
    output: str
    command: str
    origin: str = ""  # where the expected value comes from ("Table 2, 8B QRRetriever" or "recipe")
    top_k: int | None = None
    full_context: bool = False

    @property
    def label(self) -> str:
        """The metric with its generation setting: ``accuracy (top-5)``, ``accuracy (full)``."""
        if self.full_context:
            return f"{self.metric} (full)"
        return f"{self.metric} (top-{self.top_k})" if self.top_k is not None else self.metric


@dataclass
class Condition:
    name: str
    table: str
    description: str
    requires: str
    cells: list[Cell] = field(default_factory=list)

    @property
    def commands(self) -> list[tuple[str, str]]:
        """(command, output) once per result file, in cell order."""
        seen: dict[str, str] = {}
        for cell in self.cells:
            seen.setdefault(cell.command, cell.output)
        return list(seen.items())


@dataclass(frozen=True)
class CellCheck:
    cell: Cell
    status: str
    measured: float | None = None
    detail: str = ""

    @property
    def difference(self) -> float | None:
        if self.measured is None or self.cell.expected is None:
            return None
        return self.measured - self.cell.expected


def _fill(template: str, values: dict[str, Any], where: str) -> str:
    try:
        return template.format(**values)
    except KeyError as exc:
        raise HarnessError(f"{where}: unknown template field {{{exc.args[0]}}} in {template!r}") from None


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def load_recipes(path: str | Path = DEFAULT_RECIPES) -> list[Condition]:
    """Read a recipe file and expand it into conditions and cells (one-line errors)."""
    path = Path(path)
    raw = read_yaml(path, missing="recipe file not found")
    if not isinstance(raw, dict) or not isinstance(raw.get("conditions"), list):
        raise HarnessError(f"{path}: expected a mapping with a 'conditions' list")
    if raw.get("version", 1) != 1:
        raise HarnessError(f"{path}: recipe version {raw.get('version')!r} is not supported (expected 1)")
    reported = None
    models: dict[str, str] = {}
    if raw.get("reported"):
        from harness.reported import load_tables

        reported_path = Path(raw["reported"])
        if not reported_path.is_absolute():
            # Relative to the repository root the recipe file sits in (its parent's parent), else to the cwd.
            candidate = path.resolve().parent.parent / reported_path
            reported_path = candidate if candidate.exists() else reported_path
        reported = load_tables(reported_path)
        models = reported.models
    global_args = {str(k): str(v) for k, v in (raw.get("task_args") or {}).items()}
    conditions: list[Condition] = []
    names: set[str] = set()
    for index, spec in enumerate(raw["conditions"]):
        where = f"{path}: conditions[{index}]"
        if not isinstance(spec, dict):
            raise HarnessError(f"{where}: expected a mapping")
        for key in ("name", "command", "output"):
            if not spec.get(key):
                raise HarnessError(f"{where}: missing field {key!r}")
        lms = _as_list(spec["for_lm"]) if spec.get("for_lm") else [None]
        for lm in lms:
            values: dict[str, Any] = {}
            if lm is not None:
                if str(lm) not in models:
                    raise HarnessError(
                        f"{where}: for_lm {lm!r} is not a model of the reported tables ({', '.join(models)})"
                    )
                model = models[str(lm)]
                values = {"lm": lm, "model": model, "model_slug": slug(model.rstrip("/").split("/")[-1])}
            name = _fill(str(spec["name"]), values, where)
            if name in names:
                raise HarnessError(f"{where}: condition name {name!r} is used twice")
            names.add(name)
            conditions.append(_condition(spec, name, values, reported, global_args, f"{path}: condition {name!r}"))
    return conditions


def _condition(
    spec: dict[str, Any], name: str, values: dict[str, Any], reported: Any, global_args: dict[str, str], where: str
) -> Condition:
    table = str(spec.get("table", "offline"))
    expected_from = spec.get("expected_from")
    if expected_from is not None and reported is None:
        raise HarnessError(f"{where}: 'expected_from' needs a top-level 'reported' tables file")
    task_args = {**global_args, **{str(k): str(v) for k, v in (spec.get("task_args") or {}).items()}}
    raw_cells: list[dict[str, Any]] = []
    if spec.get("tasks"):
        if not spec.get("metric"):
            raise HarnessError(f"{where}: 'tasks' needs a 'metric'")
        raw_cells = [{"task": t, "metrics": _as_list(spec["metric"])} for t in _as_list(spec["tasks"])]
    for c in spec.get("cells") or []:
        if not isinstance(c, dict) or not c.get("task"):
            raise HarnessError(f"{where}: each cell needs a 'task'")
        metrics = c.get("metrics", c.get("metric", spec.get("metric")))
        if not metrics:
            raise HarnessError(f"{where}: cell {c['task']!r} needs a 'metric'")
        raw_cells.append({**c, "metrics": _as_list(metrics)})
    if not raw_cells:
        raise HarnessError(f"{where}: no 'tasks' or 'cells'")
    cells = []
    for c in raw_cells:
        top_k = c.get("top_k", spec.get("top_k"))
        full_context = bool(c.get("full_context", spec.get("full_context", False)))
        fields = {**values, "task": c["task"], "top_k": top_k if top_k is not None else ""}
        output = _fill(str(spec["output"]), fields, where)
        command = _fill(str(spec["command"]), {**fields, "output": shlex.quote(output)}, where)
        extra = " ".join(x for x in (task_args.get(c["task"]), c.get("args")) if x)
        if extra:
            command = f"{command} {extra}"
        if not command.startswith("harness "):
            raise HarnessError(f"{where}: command must start with 'harness ': {command!r}")
        tolerance = float(c.get("tolerance", spec.get("tolerance", 0.0)))
        for metric in c["metrics"]:
            if "expected" in c:
                expected = None if c["expected"] is None else float(c["expected"])
                origin = "recipe"
            elif expected_from is not None:
                row = _fill(str(expected_from.get("row", "")), values, where)
                number = str(expected_from.get("table", table))
                expected = reported.value(number, row, c["task"], metric, top_k, full_context)
                origin = f"{reported.source}, Table {number}, {row}"
            else:
                expected, origin = None, "recipe"
            cells.append(
                Cell(
                    condition=name,
                    table=table,
                    task=str(c["task"]),
                    metric=str(metric),
                    expected=expected,
                    tolerance=tolerance,
                    output=output,
                    command=command,
                    origin=origin,
                    top_k=int(top_k) if top_k is not None else None,
                    full_context=full_context,
                )
            )
    return Condition(
        name=name,
        table=table,
        description=_fill(str(spec.get("description", "")), values, where),
        requires=_fill(str(spec.get("requires", "")), values, where),
        cells=cells,
    )


def select(
    conditions: list[Condition], tables: list[str] | None = None, patterns: list[str] | None = None
) -> list[Condition]:
    """Conditions of the given tables whose names match any glob pattern (all when none given)."""
    chosen = [c for c in conditions if not tables or c.table in {str(t) for t in tables}]
    if patterns:
        chosen = [c for c in chosen if any(fnmatch.fnmatchcase(c.name, p) for p in patterns)]
    if not chosen:
        known_tables = sorted({c.table for c in conditions})
        raise HarnessError(
            f"no recipe condition matches (tables {tables or 'any'}, conditions {patterns or 'any'}); "
            f"tables in the file: {', '.join(known_tables)}"
        )
    return chosen


def _resolve(output: str, root: Path) -> Path:
    path = Path(os.path.expandvars(output))
    return path if path.is_absolute() else root / path


def check_cell(cell: Cell, root: str | Path = ".") -> CellCheck:
    """Compare one cell with its result file (relative outputs are resolved against ``root``)."""
    path = _resolve(cell.output, Path(root))
    if not path.exists():
        return CellCheck(cell, "MISSING", detail=f"no file {path}")
    try:
        result = Result.from_json(path)
        result.validate(path)
    except HarnessError as exc:
        return CellCheck(cell, "INVALID", detail=str(exc))
    if result.kind != "measured":
        return CellCheck(cell, "INVALID", detail=f"{path} is a {result.kind!r} result, not a measured one")
    value = result.metrics.get(cell.metric)
    variant = result.variant
    if variant and cell.origin != "recipe" and value is not None:
        return CellCheck(cell, "NOT COMPARABLE", float(value),
                         detail=f"{path} ran on a variant of the task ({variant}); the paper's number is for the full data")
    if value is None:
        return CellCheck(cell, "FAIL", detail=f"{path} has no metric {cell.metric!r}")
    if cell.expected is None:
        return CellCheck(cell, "PENDING", float(value), detail="no expected value in the recipe yet")
    ok = abs(float(value) - cell.expected) <= cell.tolerance + 1e-12
    return CellCheck(cell, "OK" if ok else "FAIL", float(value))


def check(conditions: list[Condition], root: str | Path = ".") -> list[CellCheck]:
    return [check_cell(cell, root) for cond in conditions for cell in cond.cells]


def failed(checks: list[CellCheck], strict: bool = False) -> bool:
    bad = FAILING_STRICT if strict else FAILING
    return any(c.status in bad for c in checks)


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def format_checks(checks: list[CellCheck]) -> str:
    """A plain-text table: condition, task, metric, expected ± tolerance, measured, difference, status."""
    header = ("condition", "task", "metric", "expected", "tol", "measured", "diff", "status")
    rows = [header] + [
        (
            c.cell.condition,
            c.cell.task,
            c.cell.label,
            _num(c.cell.expected),
            f"{c.cell.tolerance:g}",
            _num(c.measured),
            _num(c.difference, signed=True),
            c.status,
        )
        for c in checks
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    counts = {s: sum(1 for c in checks if c.status == s) for s in STATUSES}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no cells")
    details = [
        f"  {c.cell.condition} {c.cell.task} {c.cell.label}: {c.detail}"
        for c in checks
        if c.status in ("FAIL", "INVALID") and c.detail
    ]
    return "\n".join(lines + details)


def format_list(conditions: list[Condition]) -> str:
    lines = []
    for cond in conditions:
        tasks = sorted({c.task for c in cond.cells})
        lines.append(
            f"{cond.name}  [table {cond.table}]  {len(cond.cells)} cells over {len(tasks)} tasks"
            + (f"  - {cond.description}" if cond.description else "")
        )
        if cond.requires:
            lines.append(f"    requires: {cond.requires}")
    return "\n".join(lines)


def command_argv(command: str) -> list[str]:
    """``harness run ...`` -> the same program in this interpreter (``python -m harness.cli run ...``)."""
    parts = shlex.split(os.path.expandvars(command))
    if not parts or parts[0] != "harness":
        raise HarnessError(f"recipe command must start with 'harness': {command!r}")
    return [sys.executable, "-m", "harness.cli", *parts[1:]]


def _child_env() -> dict[str, str]:
    """This environment, with the folder holding this ``harness`` package first on ``PYTHONPATH``
    (so commands run from any ``--root`` use this checkout even when it is not installed)."""
    here = str(Path(__file__).resolve().parent.parent)
    paths = [here, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def in_dependency_order(conditions: list[Condition]) -> list[tuple[Condition, str, str]]:
    """Every distinct ``(condition, command, output)``, in recipe order except that a command naming
    another command's output (``harness fuse A.json B.json``) runs after the command that writes it.

    >>> from types import SimpleNamespace as C
    >>> fuse = C(name="f", commands=[("harness fuse a.json b.json --output f.json", "f.json")])
    >>> runs = C(name="r", commands=[("harness run --output a.json", "a.json"), ("harness run --output b.json", "b.json")])
    >>> [out for _, _, out in in_dependency_order([fuse, runs])]
    ['a.json', 'b.json', 'f.json']
    """
    todo = [(cond, command, output) for cond in conditions for command, output in cond.commands]
    writer = {output: i for i, (_, _, output) in enumerate(todo)}
    needs = [{writer[t] for t in shlex.split(command) if t in writer and writer[t] != i}
             for i, (_, command, _) in enumerate(todo)]
    done: set[int] = set()
    order: list[int] = []
    while len(order) < len(todo):
        ready = [i for i in range(len(todo)) if i not in done and needs[i] <= done]
        if not ready:
            stuck = [todo[i][1] for i in range(len(todo)) if i not in done]
            raise HarnessError(f"recipes read each other's outputs in a cycle: {stuck[0]!r} ...")
        order.append(ready[0])
        done.add(ready[0])
    return [todo[i] for i in order]


def run_conditions(
    conditions: list[Condition],
    root: str | Path = ".",
    extra_args: list[str] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> list[str]:
    """Run every distinct command in a subprocess (working folder ``root``); return those that failed.

    ``extra_args`` are global ``harness`` flags (``--no-progress``) put before the verb;
    ``on_start`` is called with each command before it runs.
    """
    failures = []
    for cond, command, output in in_dependency_order(conditions):
        argv = command_argv(command)
        if extra_args:
            argv[3:3] = list(extra_args)  # global flags go before the verb
        log.info("running %s", command)
        if on_start is not None:
            on_start(command)
        code = subprocess.run(argv, cwd=str(root), env=_child_env(), check=False).returncode
        if code != 0:
            log.error("%s: exit status %d (%s not written)", cond.name, code, output)
            failures.append(command)
    return failures
