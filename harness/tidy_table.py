"""The tidy leaderboard table: its columns and what both of its views ask of it.

:func:`harness.leaderboard.tidy` builds the table (one row per result file and metric, the
columns :data:`COLUMNS`); :mod:`harness.leaderboard` renders it as markdown, CSV and a plot, and
:mod:`harness.site` as the static page. The questions they share live here: the task families,
one table's files and values (:func:`by_file`), its main metric, the order of its measured rows,
the family matrices, every pair of measured rows tested (:func:`pairwise`) and the formatting of
a score. Both views import this module; it imports neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.stats import Comparison, compare

#: The tidy table: one row per (result file, metric). ``task`` is the row's table (the task id and,
#: for a sample or a cut, its variant: :attr:`harness.leaderboard.Row.section`), ``task_id`` the
#: task id and ``variant`` the variant in words (empty for the full data). ``label`` is the row's
#: display name, ``retriever`` its name; ``first_stage``/``first_stage_depth`` what a re-ranker
#: re-ranked and ``ceiling`` that first stage's recall at the depth; ``generator`` the generation
#: backend spec; ``shown`` whether the metric is a table column (headline, not a breakdown or
#: diagnostic); ``main_metric`` whether it is the task's main metric (the measured table's sort key
#: and the significance test's metric); ``ranked_by`` whether it is the metric this file is ranked
#: by in the family summaries (:attr:`harness.results.Result.ranked_by`); ``significance``
#: ``▲``/``▼``/``(baseline)`` or empty; ``file`` the path relative to the results root. Rows come
#: in :func:`harness.leaderboard.collect` order, metrics by name within a file.
COLUMNS = (
    "family", "task", "task_id", "variant", "kind", "label", "retriever", "model", "heads", "first_stage", "first_stage_depth",
    "ceiling", "truncate_words", "n_queries", "generator", "metric", "value", "shown", "main_metric",
    "ranked_by", "significance", "file", "source", "date",
)
#: The columns that describe a file (the same on each of its metric rows).
FILE_COLUMNS = tuple(c for c in COLUMNS if c not in ("metric", "value", "shown", "main_metric", "ranked_by"))
DTYPES = {"first_stage_depth": "Int64", "truncate_words": "Int64", "n_queries": "Int64", "ceiling": "float64",
          "value": "float64", "shown": "bool", "main_metric": "bool", "ranked_by": "bool"}


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


def family_grid(part: pd.DataFrame, kind: str) -> pd.DataFrame:
    """One family's rows of ``kind``: label × task values of each row's ranking metric (the
    last file of a label wins, as in :func:`harness.leaderboard.collect` order)."""
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
