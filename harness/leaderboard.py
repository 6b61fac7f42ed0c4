"""Leaderboard tables: a pure function of the result files under ``results/``.

``build(root)`` reads every result JSON (measured and reported) and returns the markdown, the
CSV text and the data for the plot; ``write(root)`` writes ``LEADERBOARD.md``,
``leaderboard.csv`` and ``leaderboard.png`` beside them. Regenerating from the same files
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
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import atomic_write_text
from harness.results import Result
from harness.stats import holm, paired_randomization_test

log = logging.getLogger(__name__)

SKIP_DIRS = {"bench", "heads"}
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
    def family(self) -> str:
        return self.result.family

    @property
    def kind(self) -> str:
        return self.result.kind

    @property
    def label(self) -> str:
        r = self.result.retriever
        label = r.name
        details = [r.model] if r.model else []
        if r.heads_name:
            details.append(f"heads {r.heads_name}")
        if self.result.truncate_words:
            details.append(f"≤{self.result.truncate_words} words/doc")
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
        )


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
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root)
        if rel.parts[0] in SKIP_DIRS or path.name.startswith("."):
            continue
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
    return sorted(rows.values(), key=lambda r: (r.task, r.kind, r.label, str(r.path))), sorted(set(notes))


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _significance(rows: list[Row], metric: str) -> dict[Path, str]:
    """Marks per row vs the task's BM25 first-stage row (``▲`` better, ``▼`` worse)."""
    baseline = next(
        (r for r in rows if r.result.retriever.name == "bm25" and not r.result.first_stage
         and not r.result.generation), None,
    )
    if baseline is None:
        return {}
    base_pq = baseline.result.per_query or {}
    tested: list[tuple[Row, float, float]] = []
    for row in rows:
        if row is baseline or row.kind != "measured":
            continue
        pq = row.result.per_query or {}
        common = sorted(q for q in pq if q in base_pq and metric in pq[q] and metric in base_pq[q])
        if len(common) < 2:
            continue
        a = [pq[q][metric] for q in common]
        b = [base_pq[q][metric] for q in common]
        tested.append((row, paired_randomization_test(a, b), sum(a) - sum(b)))
    adjusted = holm([p for _, p, _ in tested])
    marks = {baseline.path: "(baseline)"}
    for (row, _, delta), p in zip(tested, adjusted):
        marks[row.path] = ("▲" if delta > 0 else "▼") if p < ALPHA else ""
    return marks


def build(root: str | Path) -> tuple[str, str, list[dict[str, Any]]]:
    """Markdown, CSV and plot data for all result files under ``root``."""
    rows, notes = collect(root)
    by_task: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_task[row.task].append(row)
    families: dict[str, list[str]] = defaultdict(list)
    for task in sorted(by_task):
        families[task.split("/")[0]].append(task)

    md = ["# Leaderboard", "",
          "Generated by `harness leaderboard` from the result files under `results/`; do not edit by hand.",
          ("Scores ×100. ▲/▼: significantly better/worse than BM25 on the same queries "
           "(paired randomization test, Holm-corrected per task, α = 0.05). Reported rows are copied "
           "from their source and are never mixed with measured ones."), ""]
    csv_rows: list[dict[str, Any]] = []
    plot: list[dict[str, Any]] = []
    for family, tasks in families.items():
        md += [f"## {family}", ""]
        matrix = len(tasks) > 1
        if matrix:
            md += _family_summary(family, tasks, by_task, "measured")
            md += _family_summary(family, tasks, by_task, "reported")
        for task in tasks:
            task_rows = by_task[task]
            measured = [r for r in task_rows if r.kind == "measured"]
            reported = [r for r in task_rows if r.kind == "reported"]
            if matrix and not measured:
                for r in reported:  # shown in the family's reported matrix
                    csv_rows.append(_reported_csv(r, task))
                continue
            metric_names = sorted({m for r in task_rows for m in r.result.metrics if _shown(m)})
            declared = task_rows[0].result.declared_main_metric
            main = declared if declared in metric_names else next(iter(metric_names), "")
            marks = _significance(measured, main) if measured else {}
            md += [f"### {task}", ""]
            if measured:
                n = sorted({r.result.task.n_queries for r in measured})
                md.append(f"Measured (main metric {main}; queries: {', '.join(map(str, n))}):")
                md.append("")
                header = ["Retriever", "First stage (ceiling)", "n", *metric_names, "sig.", "file"]
                md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                # Grouped by base model (model-free retrievers first), best first within a group.
                for r in sorted(measured, key=lambda r: (str(r.result.retriever.model or ""),
                                                         -r.result.metrics.get(main, float("-inf")))):
                    fs = r.result.first_stage
                    ceiling = "–"
                    if fs:
                        rec = fs.recall or {}
                        ceiling = f"{fs.name}@{fs.depth}" + (
                            f" (R {_fmt(next(iter(rec.values())))})" if rec else "")
                    cells = [r.label, ceiling, str(r.result.task.n_queries),
                             *[_fmt(r.result.metrics.get(m)) for m in metric_names],
                             marks.get(r.path, ""), f"`{r.path}`"]
                    md.append("| " + " | ".join(cells) + " |")
                    csv_rows.append({"kind": "measured", "task": task, "retriever": r.label, "first_stage": ceiling,
                                     **{m: r.result.metrics.get(m) for m in metric_names},
                                     "significance": marks.get(r.path, ""), "file": str(r.path), "source": ""})
                    if main in r.result.metrics:
                        plot.append({"task": task, "label": r.label, "value": r.result.metrics[main], "metric": main})
                md.append("")
            if reported and matrix:
                csv_rows.extend(_reported_csv(r, task) for r in reported)
            elif reported:
                md.append("Reported (not measured here):")
                md.append("")
                header = ["Retriever", *metric_names, "source"]
                md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                for r in reported:
                    cells = [r.label, *[_fmt(r.result.metrics.get(m)) for m in metric_names], str(r.result.source)]
                    md.append("| " + " | ".join(cells) + " |")
                    csv_rows.append({"kind": "reported", "task": task, "retriever": r.label, "first_stage": "",
                                     **{m: r.result.metrics.get(m) for m in metric_names},
                                     "significance": "", "file": str(r.path), "source": r.result.source})
                md.append("")
    if notes:
        md += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    fields: list[str] = []
    for row in csv_rows:
        fields += [k for k in row if k not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in csv_rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    return "\n".join(md).rstrip() + "\n", buffer.getvalue(), plot


def _reported_csv(r: Row, task: str) -> dict[str, Any]:
    return {"kind": "reported", "task": task, "retriever": r.label, "first_stage": "",
            **dict(sorted(r.result.metrics.items())), "significance": "", "file": str(r.path),
            "source": r.result.source}


def _family_summary(family: str, tasks: list[str], by_task: dict[str, list[Row]], kind: str) -> list[str]:
    table: dict[str, dict[str, float]] = defaultdict(dict)
    sources: set[str] = set()
    declared: set[str] = set()
    for task in tasks:
        for r in by_task[task]:
            if r.kind != kind:
                continue
            if kind == "reported":
                sources.add(str(r.result.source).split(",")[0])
            main = r.result.ranked_by
            if main:
                table[r.label][task] = r.result.metrics[main]
            declared.add(r.result.declared_main_metric)
    if not table:
        return []
    metric = ", ".join(sorted(declared))
    header = ["Retriever", *[t.split("/", 1)[-1] for t in tasks], "Avg"]
    title = "Measured" if kind == "measured" else f"Reported by {', '.join(sorted(sources))} (not measured here)"
    lines = [f"{title} — {metric}; Avg only over rows that cover every task:", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label in sorted(table):
        values = [table[label].get(t) for t in tasks]
        avg = sum(values) / len(values) if all(v is not None for v in values) else None  # type: ignore[arg-type]
        lines.append("| " + " | ".join([label, *[_fmt(v) for v in values], _fmt(avg)]) + " |")
    return lines + [""]


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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    path.write_bytes(buffer.getvalue())


def write(root: str | Path = "results") -> list[Path]:
    """Regenerate ``LEADERBOARD.md``, ``leaderboard.csv`` and ``leaderboard.png`` in ``root``."""
    root = Path(root)
    markdown, csv_text, plot = build(root)
    outputs = [root / "LEADERBOARD.md", root / "leaderboard.csv"]
    atomic_write_text(outputs[0], markdown)
    atomic_write_text(outputs[1], csv_text)
    if plot:
        outputs.append(root / "leaderboard.png")
        plot_png(plot, outputs[-1])
    return outputs
