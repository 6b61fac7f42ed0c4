"""Leaderboard tables: a pure function of the result files under ``results/``.

``tidy(root)`` reads every result JSON (measured and reported) into one pandas DataFrame, one
row per (result file, metric) cell (columns: :data:`COLUMNS`); it is the single source of every
view. ``build(root)`` renders the markdown (``DataFrame.to_markdown``), the CSV text and the
data for the plot from it; ``write(root, output)`` writes ``LEADERBOARD.md``,
``leaderboard.csv``, ``leaderboard.png`` and the static page ``site/index.html``
(:mod:`harness.site`) into ``output`` (default: ``root``). Regenerating from the same files
gives the same bytes.

Rules:
- one row per cell (task, retriever, model, heads, first stage, generation); when two files
  describe the same cell the newer ``date`` wins and the table says so in a note;
- measured and reported rows live in separate tables and are never averaged together;
- significance: each measured row is compared with the BM25 row of the same task on the
  queries both evaluated (paired randomization test on the main metric, Holm-corrected over
  the rows of the task): ``▲``/``▼`` mark a significant gain/loss at 0.05;
- re-rankers show their first stage and its recall at the re-ranking depth (the ceiling);
- family averages are shown only for rows that cover every task of the family;
- measured rows are grouped by base model (retrievers without a model first).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import tabulate

from harness.errors import HarnessError
from harness.io import atomic_write_text, write_png
from harness.results import Result, result_files
from harness.stats import Comparison, compare

log = logging.getLogger(__name__)

ALPHA = 0.05


@dataclass
class Row:
    path: Path
    result: Result
    superseded: list[Path] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.result.task.id

    @property
    def variant(self) -> str:
        """How the documents and queries of this row differ from the task's full data, in words
        (empty for the full data): rows of different variants are never compared."""
        return self.result.variant

    @property
    def section(self) -> str:
        """The table the row belongs to: ``clipper [2 books, 20 of 50 pairs, ≤300 words/doc]``."""
        return f"{self.task} [{self.variant}]" if self.variant else self.task

    @property
    def family(self) -> str:
        return self.result.family

    @property
    def kind(self) -> str:
        return self.result.kind

    @property
    def label(self) -> str:
        r = self.result.retriever
        if r.kind == "fusion":  # harness.fusion: the method and the rows it fused
            return fusion_label(r.params)
        label = r.name
        details = [r.model] if r.model else []
        if r.heads_name:
            details.append(f"heads {r.heads_name}")
        if self.result.truncate_words and self.result.first_stage:  # a re-ranker's own cut
            details.append(f"≤{self.result.truncate_words} words/doc")
        shuffle = self.result.task.extra.get("shuffle_candidates")
        if shuffle is not None:  # the same documents and queries, presented in shuffled order
            details.append(f"shuffled candidates, seed {shuffle}")
        if details:
            label += f" ({', '.join(details)})"
        gen = self.result.generation
        if gen:
            source = "full context" if gen.get("full_context") else f"top-{gen.get('top_k')}"
            mask = (gen.get("generator") or {}).get("mask")
            if mask:
                source += f", {mask.get('n_heads')} heads masked: {mask.get('name')}"
            failures = int(gen.get("generation_failures") or 0) + int(gen.get("judge_failures") or 0)
            if failures:
                source += f", {failures} failed"
            label += f" → {gen['generator'].get('spec', 'generator')} [{source}]"
        return label

    @property
    def cell(self) -> tuple:
        r = self.result.retriever
        fs = self.result.first_stage
        gen = self.result.generation or {}
        return (
            self.kind, self.result.source, self.task, r.name, r.model, r.heads_name,
            json.dumps(r.params, sort_keys=True), fs and fs.name, fs and fs.depth,
            (gen.get("generator") or {}).get("spec"), gen.get("top_k"), gen.get("full_context"),
            json.dumps((gen.get("generator") or {}).get("mask"), sort_keys=True),
            json.dumps((gen.get("generator") or {}).get("sampling"), sort_keys=True),
            self.result.truncate_words,
            self.result.task.n_queries, self.result.task.excluded_queries_from,
            self.result.task.extra.get("shuffle_candidates"),
        )


def fusion_label(params: dict) -> str:
    """``RRF (k=60) of bm25 + qr (smollm2-135m, heads …)``: a fusion row's label."""
    from harness.fusion import FusionSpec

    spec = FusionSpec(method=params.get("method", "?"), params={"k": params.get("k")},
                      weights=list(params.get("weights") or []), norm=str(params.get("norm")))
    inputs = " + ".join(str(i.get("label", i.get("file"))) for i in params.get("inputs") or [])
    return f"{spec.describe()} of {inputs}"


#: Per-query diagnostics kept in result files but left out of the leaderboard tables.
HIDDEN_PREFIXES = ("parse_invalid", "parse_missing", "parse_none", "parse_partial", "rankgpt_")


def _shown(metric: str) -> bool:
    """Table columns: headline metrics, not per-type breakdowns (``accuracy/x``) or diagnostics."""
    return "/" not in metric and not metric.startswith(HIDDEN_PREFIXES)


def collect(root: str | Path) -> tuple[list[Row], list[str]]:
    """All valid result files under ``root``, one per cell (newest wins), and notes."""
    root = Path(root)
    if not root.is_dir():
        raise HarnessError(f"{root}: no such results folder")
    rows: dict[tuple, Row] = {}
    notes: list[str] = []
    for path in result_files(root):
        rel = path.relative_to(root)
        result = Result.from_json(path)
        result.validate(path)
        row = Row(path=rel, result=result)
        old = rows.get(row.cell)
        if old is None:
            rows[row.cell] = row
            continue
        if str(result.date or "") == str(old.result.date or ""):
            raise HarnessError(f"{root / rel} and {root / old.path} describe the same cell with the same date; "
                               "remove one")
        newer, older = (row, old) if str(result.date or "") > str(old.result.date or "") else (old, row)
        newer.superseded = old.superseded + row.superseded + [older.path]
        rows[row.cell] = newer
        notes.append(f"`{newer.path}` supersedes `{older.path}` (same cell, newer date)")
    return sorted(rows.values(), key=lambda r: (r.section, r.kind, r.label, str(r.path))), sorted(set(notes))


#: The tidy table: one row per (result file, metric). ``task`` is the row's table (the task id and,
#: for a sample or a cut, its variant: :attr:`Row.section`), ``task_id`` the task id and ``variant``
#: the variant in words (empty for the full data). ``label`` is the row's display name,
#: ``retriever`` its name; ``first_stage``/``first_stage_depth`` what a re-ranker re-ranked and
#: ``ceiling`` that first stage's recall at the depth; ``generator`` the generation backend spec;
#: ``shown`` whether the metric is a table column (headline, not a breakdown or diagnostic);
#: ``main_metric`` whether it is the task's main metric (the measured table's sort key and the
#: significance test's metric); ``ranked_by`` whether it is the metric this file is ranked by in
#: the family summaries (:attr:`Result.ranked_by`); ``significance`` ``▲``/``▼``/``(baseline)``
#: or empty; ``file`` the path relative to the results root. Rows come in :func:`collect` order,
#: metrics by name within a file.
COLUMNS = (
    "family", "task", "task_id", "variant", "kind", "label", "retriever", "model", "heads", "first_stage", "first_stage_depth",
    "ceiling", "truncate_words", "n_queries", "generator", "metric", "value", "shown", "main_metric",
    "ranked_by", "significance", "file", "source", "date",
)
#: The columns that describe a file (the same on each of its metric rows).
FILE_COLUMNS = tuple(c for c in COLUMNS if c not in ("metric", "value", "shown", "main_metric", "ranked_by"))
DTYPES = {"first_stage_depth": "Int64", "truncate_words": "Int64", "n_queries": "Int64", "ceiling": "float64",
          "value": "float64", "shown": "bool", "main_metric": "bool", "ranked_by": "bool"}


def tidy(root: str | Path) -> pd.DataFrame:
    """The leaderboard as one tidy table (:data:`COLUMNS`) of the result files under ``root``."""
    return table_of(collect(root)[0])


def table_of(rows: list[Row]) -> pd.DataFrame:
    """The tidy table of collected rows: main metrics and significance marks resolved per task."""
    mains, marks = _mains_and_marks(rows)
    records: list[dict[str, Any]] = []
    for row in rows:
        columns = _file_columns(row, marks.get(row.path, ""))
        ranked_by = row.result.ranked_by
        for metric, value in sorted(row.result.metrics.items()):
            records.append({**columns, "metric": metric, "value": float(value), "shown": _shown(metric),
                            "main_metric": metric == mains[row.section], "ranked_by": metric == ranked_by})
    return pd.DataFrame.from_records(records, columns=list(COLUMNS)).astype(DTYPES)


def _mains_and_marks(rows: list[Row]) -> tuple[dict[str, str], dict[Path, str]]:
    """Each task's main metric (the first row's declared one if shown, else the first shown
    metric) and the significance mark of each measured row."""
    by_task: dict[str, list[Row]] = {}
    for row in rows:
        by_task.setdefault(row.section, []).append(row)
    mains: dict[str, str] = {}
    marks: dict[Path, str] = {}
    for task, task_rows in by_task.items():
        names = sorted({m for r in task_rows for m in r.result.metrics if _shown(m)})
        declared = task_rows[0].result.declared_main_metric
        mains[task] = declared if declared in names else next(iter(names), "")
        measured = [r for r in task_rows if r.kind == "measured"]
        if measured:
            marks.update(_significance(measured, mains[task]))
    return mains, marks


def _file_columns(row: Row, mark: str) -> dict[str, Any]:
    result, fs = row.result, row.result.first_stage
    recall = list((fs.recall or {}).values()) if fs else []
    return {
        "family": row.family, "task": row.section, "task_id": row.task, "variant": row.variant,
        "kind": row.kind, "label": row.label,
        "retriever": result.retriever.name, "model": result.retriever.model, "heads": result.retriever.heads_name,
        "first_stage": fs.name if fs else None, "first_stage_depth": fs.depth if fs else None,
        "ceiling": recall[0] if recall else None, "truncate_words": result.truncate_words,
        "n_queries": result.task.n_queries,
        "generator": ((result.generation or {}).get("generator") or {}).get("spec"),
        "significance": mark, "file": row.path.as_posix(), "source": result.source, "date": result.date,
    }


def per_query_main(rows: list[Row], table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per measured file, its per-query values of the task's main metric (the site's drill-down)."""
    main = table[table["main_metric"]].drop_duplicates("task")
    mains = dict(zip(main["task"], main["metric"]))
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        metric = mains.get(row.section)
        if row.kind == "measured" and metric:
            per_query = row.result.per_query or {}
            out[row.path.as_posix()] = {q: v[metric] for q, v in sorted(per_query.items()) if metric in v}
    return out


def pairwise(part: pd.DataFrame, per_query: dict[str, dict[str, float]]) -> list[Comparison]:
    """Every pair of the measured rows of one table (one task variant), on its main metric:
    paired randomization test, Holm-corrected over all the table's pairs, with the effect size
    ``d_z`` and a bootstrap 95 % CI of the difference (:func:`harness.stats.compare`). Pairs come
    in :func:`measured_order`; ``a``/``b`` are result files."""
    files, values = by_file(part)
    measured = files[files["kind"] == "measured"]
    main = task_main(part)
    if len(measured) < 2 or not main:
        return []
    order = [f.file for f in measured_order(measured, values, main) if f.file in per_query]
    return compare({f: per_query[f] for f in order}, main)


def by_file(part: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A slice of the tidy table, wide: one row per file (in table order, indexed by file) with
    its :data:`FILE_COLUMNS`, and its values (file × metric, NaN where a file lacks a metric)."""
    files = part.drop_duplicates("file").set_index("file", drop=False)[list(FILE_COLUMNS)]
    values = part.pivot(index="file", columns="metric", values="value").reindex(files.index)
    return files, values


def measured_order(files: pd.DataFrame, values: pd.DataFrame, main: str) -> list[Any]:
    """Measured files grouped by base model (model-free retrievers first), best first within a group."""
    def key(f: Any) -> tuple[str, float]:
        value = num(values.at[f.file, main]) if main in values.columns else None
        return text(f.model), (-value if value is not None else math.inf)

    return sorted(files.itertuples(index=False), key=key)


def num(value: Any) -> float | None:
    """A table value as a float, or None when missing (None, NaN, NA)."""
    return None if value is None or pd.isna(value) else float(value)


def text(value: Any) -> str:
    """A table value as text, empty when missing."""
    return "" if value is None or pd.isna(value) else str(value)


def fmt(value: Any) -> str:
    """A score ×100 with one decimal, ``–`` when missing."""
    value = num(value)
    return "–" if value is None else f"{100 * value:.1f}"


def ceiling_label(f: Any) -> str:
    """``bm25@20 (R 46.1)``: a re-ranker's first stage, depth and recall there; ``–`` for none."""
    if not text(f.first_stage):
        return "–"
    label = f"{f.first_stage}@{f.first_stage_depth}"
    return label if num(f.ceiling) is None else f"{label} (R {fmt(f.ceiling)})"


def _significance(rows: list[Row], metric: str) -> dict[Path, str]:
    """Marks per row vs the BM25 run on the same documents and queries (the rows of one table
    are one variant): ``▲`` better, ``▼`` worse. A generation row's ranking serves as the
    baseline when no retrieval-only BM25 row exists; with no BM25 row there are no marks."""
    candidates = [r for r in rows if r.result.retriever.name == "bm25" and not r.result.first_stage]
    baseline = min(candidates, key=lambda r: (bool(r.result.generation), str(r.path)), default=None)
    if baseline is None:
        return {}

    def values(row: Row) -> dict[str, float]:
        return {q: v[metric] for q, v in (row.result.per_query or {}).items() if metric in v}

    others = [r for r in rows if r is not baseline and r.kind == "measured"]
    runs = {str(baseline.path): values(baseline)} | {str(r.path): values(r) for r in others}
    comparisons = compare(runs, metric, baseline=str(baseline.path), alpha=ALPHA)
    marks = {baseline.path: "(baseline)"}
    marks.update({Path(c.a): c.mark for c in comparisons})
    return marks


#: Pipe tables as GitHub renders them, without padding: ``| a | b |`` over ``|---|---|``.
MARKDOWN = tabulate.TableFormat(
    lineabove=None, linebelowheader=lambda widths, _aligns: "|" + "---|" * len(widths), linebetweenrows=None,
    linebelow=None, headerrow=tabulate.DataRow("|", "|", "|"), datarow=tabulate.DataRow("|", "|", "|"),
    padding=1, with_header_hide=None,
)


def markdown_table(header: list[str], cells: list[list[str]]) -> list[str]:
    """The lines of a markdown table of text cells."""
    frame = pd.DataFrame(cells, columns=header)
    text = frame.to_markdown(index=False, tablefmt=MARKDOWN, disable_numparse=True, stralign=None, numalign=None)
    return text.split("\n")


def build(root: str | Path) -> tuple[str, str, list[dict[str, Any]]]:
    """Markdown, CSV and plot data for all result files under ``root``."""
    rows, notes = collect(root)
    return render(table_of(rows), notes, Path(root).as_posix())


def render(table: pd.DataFrame, notes: list[str], folder: str = "results") -> tuple[str, str, list[dict[str, Any]]]:
    """Markdown, CSV text and plot data from the tidy table; ``folder`` is named in the header."""
    md = ["# Leaderboard", "",
          f"Generated by `harness leaderboard` from the result files under `{folder}/`; do not edit by hand.",
          ("Scores ×100. ▲/▼: significantly better/worse than BM25 on the same documents and queries "
           "(paired randomization test, exact when small, Holm-corrected per table, α = 0.05). A sample, "
           "a document cut or local data is a variant of its task, in its own table; reported rows are "
           "copied from their source, shown only beside the full data and never mixed with measured ones."), ""]
    csv_rows: list[dict[str, Any]] = []
    plot: list[dict[str, Any]] = []
    for family, tasks in families(table).items():
        md += [f"## {family}", ""]
        full = full_tasks(table, tasks)
        matrix = len(full) > 1  # a family of several tasks: a summary over their full data
        if matrix:
            part = table[table["task"].isin(full)]
            md += _family_summary(part, full, "measured") + _family_summary(part, full, "reported")
        for task in tasks:
            lines, task_csv, points = _task_section(table[table["task"] == task], matrix)
            md, csv_rows, plot = md + lines, csv_rows + task_csv, plot + points
    if notes:
        md += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(md).rstrip() + "\n", _csv_text(csv_rows), plot


def families(table: pd.DataFrame) -> dict[str, list[str]]:
    """Task families in order of their first task (tasks sorted), each with its tasks."""
    out: dict[str, list[str]] = {}
    for family, task in sorted(set(zip(table["family"], table["task"])), key=lambda ft: ft[1]):
        out.setdefault(family, []).append(task)
    return out


def full_tasks(table: pd.DataFrame, tasks: list[str]) -> list[str]:
    """The tables among ``tasks`` that hold a task's full data (no sample, cut or local copy):
    the columns of a family summary. Variants are never averaged with other data."""
    full = set(table.loc[table["variant"] == "", "task"])
    return [t for t in tasks if t in full]


def task_main(part: pd.DataFrame) -> str:
    """The main metric of one task's slice of the tidy table ("" when it has no shown metric)."""
    return next(iter(part.loc[part["main_metric"], "metric"]), "")


def _task_section(part: pd.DataFrame, matrix: bool) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """One task: its measured table and (outside a family matrix) its reported table."""
    files, values = by_file(part)
    measured, reported = files[files["kind"] == "measured"], files[files["kind"] == "reported"]
    names = sorted(set(part.loc[part["shown"], "metric"]))
    lines: list[str] = []
    csv_rows: list[dict[str, Any]] = []
    plot: list[dict[str, Any]] = []
    if len(measured) or not matrix:
        lines += [f"### {part['task'].iloc[0]}", ""]
    if len(measured):
        lines, csv_rows, plot = _measured_table(measured, values, names, task_main(part), lines)
    if len(reported) and matrix:
        csv_rows += [_reported_csv(f, values) for f in reported.itertuples(index=False)]
    elif len(reported):
        lines += ["Reported (not measured here):", "", *markdown_table(["Retriever", *names, "source"], [
            [f.label, *[fmt(values.at[f.file, m]) for m in names], str(f.source)]
            for f in reported.itertuples(index=False)]), ""]
        csv_rows += [{"kind": "reported", "task": f.task, "retriever": f.label, "first_stage": "",
                      **{m: num(values.at[f.file, m]) for m in names}, "significance": "", "file": f.file,
                      "source": f.source} for f in reported.itertuples(index=False)]
    return lines, csv_rows, plot


def _measured_table(measured: pd.DataFrame, values: pd.DataFrame, names: list[str], main: str,
                    lines: list[str]) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    n = sorted({int(v) for v in measured["n_queries"].dropna()})
    lines = lines + [f"Measured (main metric {main}; queries: {', '.join(map(str, n))}):", ""]
    if "(baseline)" not in set(measured["significance"]):
        lines += ["No BM25 run on these documents and queries: no significance marks.", ""]
    cells: list[list[str]] = []
    csv_rows: list[dict[str, Any]] = []
    plot: list[dict[str, Any]] = []
    for f in measured_order(measured, values, main):
        ceiling = ceiling_label(f)
        n_queries = "–" if pd.isna(f.n_queries) else str(f.n_queries)
        cells.append([f.label, ceiling, n_queries, *[fmt(values.at[f.file, m]) for m in names],
                      f.significance, f"`{f.file}`"])
        csv_rows.append({"kind": "measured", "task": f.task, "retriever": f.label, "first_stage": ceiling,
                         **{m: num(values.at[f.file, m]) for m in names},
                         "significance": f.significance, "file": f.file, "source": ""})
        value = num(values.at[f.file, main]) if main in values.columns else None
        if value is not None:
            plot.append({"task": f.task, "label": f.label, "value": value, "metric": main})
    header = ["Retriever", "First stage (ceiling)", "n", *names, "sig.", "file"]
    return lines + markdown_table(header, cells) + [""], csv_rows, plot


def _reported_csv(f: Any, values: pd.DataFrame) -> dict[str, Any]:
    metrics = {m: float(v) for m, v in sorted(values.loc[f.file].dropna().items())}
    return {"kind": "reported", "task": f.task, "retriever": f.label, "first_stage": "", **metrics,
            "significance": "", "file": f.file, "source": f.source}


def _csv_text(csv_rows: list[dict[str, Any]]) -> str:
    fields: list[str] = []
    for row in csv_rows:
        fields += [k for k in row if k not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in csv_rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    return buffer.getvalue()


def family_grid(part: pd.DataFrame, kind: str) -> pd.DataFrame:
    """One family's rows of ``kind``: label × task values of each row's ranking metric (the
    last file of a label wins, as in :func:`collect` order)."""
    ranked = part[(part["kind"] == kind) & part["ranked_by"]].drop_duplicates(["label", "task"], keep="last")
    grid = ranked.pivot(index="label", columns="task", values="value")
    return grid.reindex(sorted(set(ranked["label"])))


@dataclass
class FamilySummary:
    """A family's matrix of one kind: ``title`` (Measured, or Reported by its sources), the ranking
    ``metric`` names, and per row label its value per task plus the average (None unless the row
    covers every task)."""

    title: str
    metric: str
    rows: list[tuple[str, list[float | None], float | None]]


def family_summary(part: pd.DataFrame, tasks: list[str], kind: str) -> FamilySummary | None:
    """The label × task matrix of a family's rows of ``kind`` (None when it has none)."""
    grid = family_grid(part, kind)
    if grid.empty:
        return None
    rows = part[part["kind"] == kind]
    metric = ", ".join(sorted(set(rows.loc[rows["ranked_by"], "metric"])))
    sources = sorted({str(s).split(",")[0] for s in rows["source"]})
    title = "Measured" if kind == "measured" else f"Reported by {', '.join(sources)} (not measured here)"
    out = []
    for label in grid.index:
        values = [num(grid.at[label, t]) if t in grid.columns else None for t in tasks]
        avg = sum(values) / len(values) if all(v is not None for v in values) else None  # type: ignore[arg-type]
        out.append((str(label), values, avg))
    return FamilySummary(title, metric, out)


def _family_summary(part: pd.DataFrame, tasks: list[str], kind: str) -> list[str]:
    summary = family_summary(part, tasks, kind)
    if summary is None:
        return []
    header = ["Retriever", *[t.removeprefix(f"{t.split('/')[0]}/") for t in tasks], "Avg"]
    cells = [[label, *[fmt(v) for v in values], fmt(avg)] for label, values, avg in summary.rows]
    return [f"{summary.title} — {summary.metric}; Avg only over rows that cover every task:", "",
            *markdown_table(header, cells), ""]


def plot_png(plot: list[dict[str, Any]], path: Path) -> None:
    """Horizontal bars of each row's main metric, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({p["task"] for p in plot})
    if not tasks:
        return
    heights = [0.9 + 0.3 * sum(1 for p in plot if p["task"] == t) for t in tasks]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(9, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, task in zip(axes[:, 0], tasks):
        items = sorted((p for p in plot if p["task"] == task), key=lambda p: p["value"])
        ax.barh([p["label"] for p in items], [100 * p["value"] for p in items], color="#4C72B0")
        ax.set_title(f"{task} ({items[0]['metric']})", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlim(0, 100)
    fig.tight_layout()
    write_png(fig, path, dpi=90)
    plt.close(fig)


def write(root: str | Path = "results", output: str | Path | None = None) -> list[Path]:
    """Regenerate ``LEADERBOARD.md``, ``leaderboard.csv``, ``leaderboard.png`` and
    ``site/index.html`` from the result files under ``root``, into ``output`` (default ``root``)."""
    from harness import site

    root = Path(root)
    output = root if output is None else Path(output)
    rows, notes = collect(root)
    table = table_of(rows)
    markdown, csv_text, plot = render(table, notes, root.as_posix())
    outputs = [output / "LEADERBOARD.md", output / "leaderboard.csv"]
    atomic_write_text(outputs[0], markdown)
    atomic_write_text(outputs[1], csv_text)
    if plot:
        outputs.append(output / "leaderboard.png")
        plot_png(plot, outputs[-1])
    outputs.append(site.write(table, per_query_main(rows, table), root, output / "site", notes))
    return outputs
