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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import tabulate

from harness.errors import HarnessError
from harness.io import atomic_write_text, write_png
from harness.metric_specs import shown
from harness.results import Result, result_files
from harness.spec import run_failures
from harness.stats import compare
from harness.tidy_table import (
    COLUMNS,
    DTYPES,
    by_file,
    families,
    family_summary,
    fmt,
    full_tasks,
    measured_order,
    num,
    task_main,
    text,
)

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
        """The row's name (:meth:`harness.spec.RunSpec.label`), with its failed generations."""
        return self.result.run_spec().label(run_failures(self.result.generation))

    @property
    def cell(self) -> tuple:
        """What makes two files the same row (the newer supersedes the older): a measured row's
        run identity (:meth:`harness.spec.RunSpec.hash`); a reported row's source and set-up."""
        if self.kind == "measured":
            return (self.kind, self.result.run_spec().hash())
        r = self.result.retriever
        fs = self.result.first_stage
        gen = self.result.generation or {}
        return (self.kind, self.result.source, self.task, r.name, r.model, r.heads_name,
                json.dumps(r.params, sort_keys=True), fs and fs.name, fs and fs.depth,
                json.dumps(gen, sort_keys=True))


def _shown(metric: str) -> bool:
    """Table columns: headline metrics, not per-type breakdowns or hidden diagnostics
    (:func:`harness.metric_specs.shown`)."""
    return shown(metric)



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
