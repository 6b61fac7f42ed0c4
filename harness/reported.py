"""Reported numbers: a paper's tables entered once as data, expanded into per-cell result files.

The tables live in one YAML file (``results/reported/arxiv-2506.09944v2.yaml``), typed in as the
paper prints them (×100, one decimal). :func:`expand` turns every (row, task) of every table
into a *reported* result dictionary (``"kind": "reported"``, a non-empty ``source``, metrics as
fractions: ``58.6 -> 0.586``), and :func:`write_cells` writes them under
``results/reported/<task>/`` where the leaderboard picks them up, in their own "Reported" table,
never averaged with measured rows. Regenerate after editing the YAML::

    python -m harness.reported                 # rewrite results/reported/**.json
    python -m harness.reported --check         # exit 1 if the JSON files are out of date

YAML layout (see the file itself for the full example)::

    source: arXiv 2506.09944v2
    scale: 100                                  # printed value / scale = stored fraction
    models: {8B: meta-llama/Llama-3.1-8B-Instruct}
    methods: {QRRetriever: {name: qr, model: "{model}", heads_name: "{heads}"}}
    tables:
      - table: "2"
        heads: nq
        first_stage: {name: bm25, depth: 200}
        columns: [{task: beir/nq, metric: nDCG@10, header: NQ}, ...]
        rows: [{lm: 8B, method: QRRetriever, values: [58.6, ...], avg: 50.0}, ...]

Columns with ``top_k`` or ``full_context`` are generation accuracies: the row's LM (``lm``) is
the generator. Cells of one row that share a task and generation setting go into one file.

A row's ``heads`` overrides its table's ``heads`` (the ``{heads}`` of its method). A column with
``timing: true`` (e.g. Table 7's seconds per query) is not a metric: its printed value is stored
unscaled in the cell's ``timing`` object and named in its note, never ranked or scaled. When rows of
different tables print the same cell (same task, retriever, first stage and generation: the paper
printing one run twice), they become one file naming every table (``source: "..., Tables 2, 7"``,
``table.also_in``), provided the metrics they share agree; two rows that disagree are an error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import atomic_write_text, read_yaml
from harness.registry import task_main_metric
from harness.results import REPORTED_SCHEMA_VERSION, Result, default_output_path

log = logging.getLogger(__name__)

#: The paper's tables, relative to the repository root.
DEFAULT_TABLES = Path("results/reported/arxiv-2506.09944v2.yaml")
#: Where the per-cell files go, relative to the repository root.
DEFAULT_OUTPUT_ROOT = Path("results/reported")


@dataclass(frozen=True)
class Column:
    """One printed column: a task, a metric and (for accuracies) the generation setting."""

    task: str
    metric: str
    header: str
    top_k: int | None = None
    full_context: bool = False
    timing: bool = False  # a cost (e.g. seconds per query), stored unscaled in the cell's ``timing``

    @property
    def generation_key(self) -> tuple[int | None, bool]:
        return (self.top_k, self.full_context)


@dataclass
class Row:
    """One printed row: ``label`` is ``"<lm> <method>"`` (or the method alone)."""

    lm: str | None
    method: str
    values: list[float | None]
    avg: float | None = None
    note: str | None = None
    first_stage: dict[str, Any] | None = None
    heads: str | None = None  # overrides the table's ``heads``

    @property
    def label(self) -> str:
        return f"{self.lm} {self.method}" if self.lm else self.method


@dataclass
class Table:
    number: str
    caption: str
    columns: list[Column]
    rows: list[Row]
    heads: str | None = None
    first_stage: dict[str, Any] | None = None
    generator: bool = False

    def row(self, label: str) -> Row:
        for row in self.rows:
            if row.label == label:
                return row
        raise HarnessError(f"table {self.number}: no row {label!r} (rows: {', '.join(r.label for r in self.rows)})")

    def cell(
        self, label: str, task: str, metric: str, top_k: int | None = None, full_context: bool = False
    ) -> tuple[Column, float | None]:
        """The column (task, metric, generation) and the printed value of row ``label`` there."""
        row = self.row(label)
        for column, value in zip(self.columns, row.values):
            if (column.task, column.metric, column.top_k, column.full_context) == (task, metric, top_k, full_context):
                return column, value
        raise KeyError((label, task, metric, top_k, full_context))

    def value(
        self, label: str, task: str, metric: str, top_k: int | None = None, full_context: bool = False
    ) -> float | None:
        """The printed value (×scale) of row ``label`` in the column (task, metric, generation)."""
        return self.cell(label, task, metric, top_k, full_context)[1]


@dataclass
class ReportedSource:
    """Everything in one reported-tables file."""

    path: Path
    source: str
    citation: str
    scale: float
    models: dict[str, str]
    methods: dict[str, dict[str, Any]]
    tables: list[Table] = field(default_factory=list)

    def tables_numbered(self, number: str) -> list[Table]:
        return [t for t in self.tables if t.number == str(number)]

    def value(
        self, number: str, label: str, task: str, metric: str, top_k: int | None = None, full_context: bool = False
    ) -> float | None:
        """The stored fraction for a cell of table ``number`` (``None`` for a blank cell); a
        ``timing`` column's value as printed (it is not scaled)."""
        for table in self.tables_numbered(number):
            try:
                table.row(label)
                column, printed = table.cell(label, task, metric, top_k, full_context)
            except (HarnessError, KeyError):
                continue
            if printed is None or column.timing:
                return printed
            return to_fraction(printed, self.scale)
        raise HarnessError(
            f"{self.path}: table {number} has no cell for row {label!r}, task {task!r}, metric {metric!r}"
            + (f", top_k {top_k}" if top_k else "")
            + (", full context" if full_context else "")
        )


def to_fraction(printed: float, scale: float) -> float:
    """``58.6`` printed at scale 100 -> ``0.586`` (rounded to remove float noise)."""
    return round(float(printed) / scale, 6)


def _need(obj: dict[str, Any], key: str, where: str, path: Path) -> Any:
    if key not in obj or obj[key] in (None, ""):
        raise HarnessError(f"{path}: {where} is missing field {key!r}")
    return obj[key]


def load_tables(path: str | Path = DEFAULT_TABLES) -> ReportedSource:
    """Read and check a reported-tables YAML file (one-line errors naming the table and row)."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: expected a mapping at the top level")
    source = str(_need(raw, "source", "the file", path)).strip()
    scale = float(raw.get("scale", 1))
    models = {str(k): str(v) for k, v in (raw.get("models") or {}).items()}
    methods = {str(k): dict(v) for k, v in (raw.get("methods") or {}).items()}
    tables: list[Table] = []
    for t_index, t in enumerate(_need(raw, "tables", "the file", path)):
        number = str(_need(t, "table", f"tables[{t_index}]", path))
        where = f"table {number} (tables[{t_index}])"
        columns = []
        for c in _need(t, "columns", where, path):
            columns.append(
                Column(
                    task=str(_need(c, "task", f"{where} column", path)),
                    metric=str(_need(c, "metric", f"{where} column", path)),
                    header=str(c.get("header") or f"{c['task']} {c['metric']}"),
                    top_k=int(c["top_k"]) if c.get("top_k") is not None else None,
                    full_context=bool(c.get("full_context", False)),
                    timing=bool(c.get("timing", False)),
                )
            )
        rows = []
        for r in _need(t, "rows", where, path):
            method = str(_need(r, "method", f"{where} row", path))
            label = f"{r.get('lm')} {method}" if r.get("lm") else method
            if method not in methods:
                raise HarnessError(f"{path}: {where} row {label!r}: method {method!r} is not in 'methods'")
            if r.get("lm") is not None and str(r["lm"]) not in models:
                raise HarnessError(f"{path}: {where} row {label!r}: lm {r['lm']!r} is not in 'models'")
            values = _need(r, "values", f"{where} row {label!r}", path)
            if len(values) != len(columns):
                raise HarnessError(f"{path}: {where} row {label!r} has {len(values)} values for {len(columns)} columns")
            for v in values:
                if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
                    raise HarnessError(f"{path}: {where} row {label!r}: value {v!r} is not a number")
            rows.append(
                Row(
                    lm=str(r["lm"]) if r.get("lm") is not None else None,
                    method=method,
                    values=list(values),
                    avg=r.get("avg"),
                    note=r.get("note"),
                    first_stage=r["first_stage"] if "first_stage" in r else t.get("first_stage"),
                    heads=str(r["heads"]) if r.get("heads") is not None else None,
                )
            )
        labels = [r.label for r in rows]
        duplicates = sorted({x for x in labels if labels.count(x) > 1})
        if duplicates:
            raise HarnessError(f"{path}: {where} lists row {duplicates[0]!r} twice")
        tables.append(
            Table(
                number=number,
                caption=str(t.get("caption", "")),
                columns=columns,
                rows=rows,
                heads=t.get("heads"),
                first_stage=t.get("first_stage"),
                generator=bool(t.get("generator", False)),
            )
        )
    return ReportedSource(
        path=path,
        source=source,
        citation=str(raw.get("citation", "")).strip(),
        scale=scale,
        models=models,
        methods=methods,
        tables=tables,
    )


def _retriever(src: ReportedSource, table: Table, row: Row) -> dict[str, Any]:
    spec = src.methods[row.method]
    fill = {"model": src.models.get(row.lm or "", ""), "heads": row.heads or table.heads or ""}
    retriever: dict[str, Any] = {"name": spec["name"]}
    for key in ("model", "heads_name"):
        if spec.get(key):
            retriever[key] = str(spec[key]).format(**fill)
    retriever["params"] = dict(spec.get("params") or {})
    return retriever


def row_average(row: Row) -> float | None:
    """Mean of a row's printed values (``None`` when a cell is blank)."""
    if any(v is None for v in row.values):
        return None
    return sum(row.values) / len(row.values)  # type: ignore[arg-type]


def expand(src: ReportedSource) -> list[tuple[Path, Result]]:
    """One (relative path, reported result) per (table, row, task, generation setting); rows of
    several tables that print the same cell become one result (see the module docstring)."""
    cells: dict[Path, dict[str, Any]] = {}
    for table in src.tables:
        for row in table.rows:
            groups: dict[tuple, list[tuple[Column, float]]] = {}
            for column, value in zip(table.columns, row.values):
                if value is None:
                    continue
                groups.setdefault((column.task, column.generation_key), []).append((column, value))
            for (task, (top_k, full_context)), items in groups.items():
                scored = [(c, v) for c, v in items if not c.timing]
                if not scored:
                    raise HarnessError(
                        f"{src.path}: table {table.number} row {row.label!r}: {task} has timing columns but no metric"
                    )
                result: dict[str, Any] = {
                    "schema_version": REPORTED_SCHEMA_VERSION,
                    "kind": "reported",
                    "source": f"{src.source}, Table {table.number}",
                    "citation": src.citation,
                    "table": {
                        "number": table.number,
                        "caption": table.caption,
                        "row": row.label,
                        "columns": [c.header for c, _ in items],
                    },
                    "task": {"id": task},
                    "retriever": _retriever(src, table, row),
                    "first_stage": dict(row.first_stage) if row.first_stage else None,
                    "generation": None,
                    "main_metric": task_main_metric(task),
                    "metrics": {c.metric: to_fraction(v, src.scale) for c, v in scored},
                }
                timing = {c.metric: v for c, v in items if c.timing}
                if timing:
                    result["timing"] = timing
                if table.generator:
                    if not row.lm:
                        raise HarnessError(
                            f"{src.path}: table {table.number} row {row.label!r} needs an 'lm' (the generator)"
                        )
                    model = src.models[row.lm]
                    result["generation"] = {
                        "generator": {"spec": f"vllm:{model}", "model": model},
                        "judge": None,
                        "top_k": top_k,
                        "full_context": full_context,
                    }
                notes = [row.note] if row.note else []
                notes += [f"Table {table.number}: {v:g} {c.header}" for c, v in items if c.timing]
                if notes:
                    result["note"] = "; ".join(notes)
                rel = default_output_path(Result.from_dict(result, src.path), root=".")
                if rel in cells:
                    problem = _merge(cells[rel], result, src)
                    if problem:
                        raise HarnessError(
                            f"{src.path}: table {table.number} row {row.label!r} gives {rel}, which another row "
                            f"also gives ({problem})"
                        )
                else:
                    cells[rel] = result
    return sorted((rel, Result.from_dict(obj, src.path)) for rel, obj in cells.items())


#: What makes two printed cells the same run (everything but the numbers and where they are printed).
_SAME_RUN = ("schema_version", "kind", "citation", "task", "retriever", "first_stage", "generation", "main_metric")


def _merge(into: dict[str, Any], other: dict[str, Any], src: ReportedSource) -> str | None:
    """Merge ``other`` (a later table's row) into ``into`` when both print the same run and agree
    on the numbers they share; otherwise leave ``into`` alone and say why."""
    where = f"table {into['table']['number']} row {into['table']['row']!r}"
    printed_in = [into["table"], *into["table"].get("also_in", [])]
    if other["table"]["number"] in {t["number"] for t in printed_in}:
        return f"{where} of the same table"
    differs = [key for key in _SAME_RUN if into.get(key) != other.get(key)]
    if differs:
        return f"it differs in {', '.join(differs)}"
    for section in ("metrics", "timing"):
        mine, theirs = into.get(section) or {}, other.get(section) or {}
        for name in sorted(set(mine) & set(theirs)):
            if mine[name] != theirs[name]:
                return f"{where} prints {name} {mine[name]!r} there, this row {theirs[name]!r}"
    notes = [n for n in dict.fromkeys([into.pop("note", None), other.get("note")]) if n]
    into["metrics"] = {**into["metrics"], **other["metrics"]}
    if other.get("timing"):
        into["timing"] = {**(into.get("timing") or {}), **other["timing"]}
    if notes:
        into["note"] = "; ".join(notes)  # last, as in an unmerged cell
    also = into["table"].setdefault("also_in", [])
    also.append(other["table"])
    numbers = list(dict.fromkeys([into["table"]["number"], *(t["number"] for t in also)]))
    into["source"] = f"{src.source}, Table{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}"
    return None


def _owned_files(src: ReportedSource, out_root: Path) -> list[Path]:
    """The JSON files under ``out_root`` that came from ``src`` (same source prefix)."""
    owned = []
    for path in sorted(out_root.rglob("*.json")):
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if (
            isinstance(obj, dict)
            and obj.get("kind") == "reported"
            and str(obj.get("source", "")).startswith(src.source + ",")
        ):
            owned.append(path)
    return owned


def write_cells(tables: str | Path = DEFAULT_TABLES, out_root: str | Path = DEFAULT_OUTPUT_ROOT) -> list[Path]:
    """Write every cell of ``tables`` under ``out_root``; remove stale cells of the same source."""
    src = load_tables(tables)
    out_root = Path(out_root)
    written = []
    for rel, result in expand(src):
        path = out_root / rel
        result.validate(path)
        text = result.to_json()
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
        written.append(path)
    keep = set(written)
    for stale in _owned_files(src, out_root):
        if stale not in keep:
            log.info("removing stale reported cell %s", stale)
            stale.unlink()
    return written


def out_of_sync(tables: str | Path = DEFAULT_TABLES, out_root: str | Path = DEFAULT_OUTPUT_ROOT) -> list[str]:
    """Differences between the YAML tables and the JSON files on disk (empty when in sync)."""
    src = load_tables(tables)
    out_root = Path(out_root)
    problems = []
    expected = {out_root / rel: result.to_json() for rel, result in expand(src)}
    for path, text in expected.items():
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from {src.path}")
    for path in _owned_files(src, out_root):
        if path not in expected:
            problems.append(f"{path}: stale (no such cell in {src.path})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.reported", description="Expand reported tables into result files."
    )
    parser.add_argument(
        "--tables", default=str(DEFAULT_TABLES), help=f"reported-tables YAML (default {DEFAULT_TABLES})"
    )
    parser.add_argument(
        "--out", default=str(DEFAULT_OUTPUT_ROOT), help=f"output folder (default {DEFAULT_OUTPUT_ROOT})"
    )
    parser.add_argument("--check", action="store_true", help="only report files that are missing, stale or different")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = out_of_sync(args.tables, args.out)
            for line in problems:
                print(line)
            print("in sync" if not problems else f"{len(problems)} problem(s); run python -m harness.reported")
            return 1 if problems else 0
        paths = write_cells(args.tables, args.out)
        print(f"{len(paths)} reported cells under {args.out}")
        return 0
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
