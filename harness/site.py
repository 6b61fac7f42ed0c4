"""The leaderboard as one static page: ``results/site/index.html``, written by ``harness leaderboard``.

One self-contained file (inline CSS and JavaScript, no network, no external fonts) rendered from
the tidy table (:func:`harness.leaderboard.tidy`): one tab per task family, measured and reported
tables apart, sortable columns (click a header), a filter box that hides non-matching rows,
significance marks with their legend, the first stage's ceiling, a per-query drill-down (click a
measured row: its per-query values of the main metric, from an inline JSON blob, against the BM25
baseline, and a link to its result file by relative path) and the NIAH heat maps
(``<root>/niah/*.png``) inline as data URIs. The same inputs give the same bytes (no timestamps).
The page's fixed parts are package data beside this module, in ``site_static/``: ``page.html``
(the frame, legend, filter box and drill-down panel), ``page.css`` and ``page.js``; this module
renders the tables from the tidy table (:mod:`harness.tidy_table`) and fills the frame.

The page reads a few actions from its URL hash, applied in this order once it has loaded:
``tab=FAMILY``, ``filter=TEXT``, ``sort=TABLE-ID:COLUMN`` (repeatable; each one is a click on that
header), ``open=FILE`` (a click on that measured row). When they have run, the root element
gets ``data-actions="done"``. The browser test drives the page this way.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import string
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from harness.io import atomic_write_text
from harness.stats import Comparison
from harness.tidy_table import (
    by_file,
    families,
    family_summary,
    fmt,
    full_tasks,
    measured_order,
    num,
    pairwise,
    task_main,
    text,
)

#: The page's fixed parts, shipped beside this module as package data: ``page.html`` (the page,
#: with ``${name}`` slots for :class:`string.Template`), ``page.css`` and ``page.js`` (inlined).
STATIC = "site_static"


def write(table: pd.DataFrame, per_query: dict[str, dict[str, float]], root: str | Path, site_dir: str | Path,
          notes: Iterable[str] = ()) -> Path:
    """Write ``site_dir/index.html`` for the tidy table of the result files under ``root``."""
    root, site_dir = Path(root), Path(site_dir)
    path = site_dir / "index.html"

    def link(file: str) -> str:
        return Path(os.path.relpath(root / file, site_dir)).as_posix()

    atomic_write_text(path, page(table, per_query, heatmaps(root), link, root.as_posix(), notes))
    return path


def heatmaps(root: str | Path) -> list[tuple[str, str]]:
    """The NIAH heat maps ``<root>/niah/*.png``: (path relative to ``root``, base64 of the PNG)."""
    root = Path(root)
    return [(p.relative_to(root).as_posix(), base64.b64encode(p.read_bytes()).decode("ascii"))
            for p in sorted((root / "niah").glob("*.png"))]


def page(table: pd.DataFrame, per_query: dict[str, dict[str, float]], maps: list[tuple[str, str]],
         link: Callable[[str], str], folder: str = "results", notes: Iterable[str] = ()) -> str:
    """The page's HTML; ``link`` maps a result file (relative to the root) to its href."""
    tabs = families(table)
    if maps and "niah" not in tabs:
        tabs["niah"] = []
    nav = "".join(
        f'<button type="button" role="tab" id="tab-{_id(family)}" data-tab="{_e(family)}" '
        f'aria-controls="panel-{_id(family)}">{_e(family)} '
        f'<small>{table.loc[table["task"].isin(tasks), "file"].nunique()}</small></button>'
        for family, tasks in tabs.items())
    panels = "".join(_panel(family, tasks, table, link, maps if family == "niah" else [], per_query)
                     for family, tasks in tabs.items())
    blob = json.dumps(per_query, sort_keys=True, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    notes_html = "".join(f"<li>{_code(n)}</li>" for n in notes)
    return string.Template(static("page.html")).substitute(
        css=static("page.css"), js=static("page.js"), n_files=table["file"].nunique(), folder=_e(folder),
        nav=nav, panels=panels, per_query=blob,
        notes=f'<details class="notes"><summary>Notes</summary><ul>{notes_html}</ul></details>\n' if notes_html else "",
    )


def static(name: str) -> str:
    """The text of one of the page's static files (``page.html``, ``page.css``, ``page.js``)."""
    return resources.files("harness").joinpath(STATIC, name).read_text(encoding="utf-8")


def _panel(family: str, tasks: list[str], table: pd.DataFrame, link: Callable[[str], str],
           maps: list[tuple[str, str]], per_query: dict[str, dict[str, float]]) -> str:
    full = full_tasks(table, tasks)
    body = [_summaries(family, table[table["task"].isin(full)], full)] if len(full) > 1 else []
    body += [_task(table[table["task"] == task], link, per_query, open_=len(tasks) <= 4) for task in tasks]
    if maps:
        body.append(_heatmaps(maps, set(table["file"]), link))
    return (f'<section class="panel" role="tabpanel" id="panel-{_id(family)}" data-family="{_e(family)}" '
            f'aria-labelledby="tab-{_id(family)}">\n' + "".join(body) + "</section>\n")


def _summaries(family: str, part: pd.DataFrame, tasks: list[str]) -> str:
    """The family's matrices (label × task, each row's main metric), measured and reported apart."""
    out = []
    for kind in ("measured", "reported"):
        summary = family_summary(part, tasks, kind)
        if summary is None:
            continue
        header = [("Retriever", "Retriever", False), *[(t, t.removeprefix(f"{family}/"), True) for t in tasks],
                  ("Avg", "Avg", True)]
        body = ["<tr>" + _td(label) + "".join(_num_td(v) for v in [*values, avg]) + "</tr>"
                for label, values, avg in summary.rows]
        caption = f"{summary.title} — {summary.metric} per task; Avg only over rows that cover every task"
        out.append(_table(f"t-{_id(family)}-summary-{kind}", f"data summary {kind}", caption, header, body))
    return f'<section class="task summary"><h3>{_e(family)}: all tasks</h3>{"".join(out)}</section>\n'


def _task(part: pd.DataFrame, link: Callable[[str], str], per_query: dict[str, dict[str, float]],
          open_: bool) -> str:
    files, values = by_file(part)
    names = sorted(set(part.loc[part["shown"], "metric"]))
    main, task = task_main(part), str(part["task"].iloc[0])
    measured, reported = files[files["kind"] == "measured"], files[files["kind"] == "reported"]
    tables = []
    if len(measured):
        tables.append(_measured(measured, values, names, main, link))
    pairs = pairwise(part, per_query)
    if pairs:
        tables.append(_pairs(task, pairs, dict(zip(files["file"], files["label"]))))
    if len(reported):
        tables.append(_reported(reported, values, names, task))
    meta = f"{len(measured)} measured · {len(reported)} reported · main metric {main or '–'}"
    return (f'<details class="task" id="task-{_id(task)}"{" open" if open_ else ""}><summary><h3>{_e(task)}</h3> '
            f'<span class="meta">{_e(meta)}</span></summary>{"".join(tables)}</details>\n')


def _measured(measured: pd.DataFrame, values: pd.DataFrame, names: list[str], main: str,
              link: Callable[[str], str]) -> str:
    task = str(measured["task"].iloc[0])
    baseline = next((f for f, m in zip(measured["file"], measured["significance"]) if m == "(baseline)"), "")
    header = [("Retriever", "Retriever", False), ("First stage", "First stage", False),
              ("Ceiling", "Ceiling", True), ("n", "n", True), *[(m, m, True) for m in names],
              ("sig.", "sig.", False), ("file", "file", False)]
    body = []
    for f in measured_order(measured, values, main):
        stage = f"{f.first_stage}@{f.first_stage_depth}" if text(f.first_stage) else "–"
        n = None if pd.isna(f.n_queries) else int(f.n_queries)
        cells = [_td(f.label), _td(stage), _num_td(f.ceiling), _num_td(n, str(n) if n is not None else "–"),
                 *[_num_td(values.at[f.file, m], cls="main" if m == main else "") for m in names],
                 f'<td>{_mark(f.significance)}</td>', f'<td class="file"><a href="{_e(link(f.file))}" title="{_e(f.file)}">{_e(f.file)}</a></td>']
        body.append(f'<tr class="drill" tabindex="0" data-file="{_e(f.file)}" data-href="{_e(link(f.file))}">'
                    + "".join(cells) + "</tr>")
    n_all = ", ".join(str(n) for n in sorted({int(v) for v in measured["n_queries"].dropna()}))
    caption = (f"Measured — main metric {main}; queries: {n_all}. Ceiling: the first stage's recall at the "
               "re-ranking depth. Click a row for its per-query values.")
    attrs = f' data-task="{_e(task)}" data-main="{_e(main)}" data-baseline="{_e(baseline)}"'
    return _table(f"t-{_id(task)}-measured", "data measured", caption, header, body, attrs, main)


def _pairs(task: str, pairs: list[Comparison], labels: dict[str, str]) -> str:
    """All pairs of measured rows (collapsed): who beats whom on the main metric, and how surely."""
    header = [("A", "A", False), ("B", "B", False), ("n", "n", True), ("Δ", "Δ (A − B)", True),
              ("d_z", "d_z", True), ("CI", "95% CI of Δ", False), ("p", "p", True), ("p_holm", "p (Holm)", True),
              ("sig.", "sig.", False)]
    body = []
    for c in pairs:
        ci = "–" if c.ci_low is None else f"[{fmt(c.ci_low)}, {fmt(c.ci_high)}]"
        body.append("<tr>" + _td(labels.get(c.a, c.a)) + _td(labels.get(c.b, c.b))
                    + _num_td(c.n, str(c.n)) + _num_td(c.delta)
                    + _num_td(c.effect_size, "–" if c.effect_size is None else f"{c.effect_size:.2f}")
                    + _td(ci) + _num_td(c.p, "–" if c.p is None else f"{c.p:.3g}")
                    + _num_td(c.p_holm, "–" if c.p_holm is None else f"{c.p_holm:.3g}")
                    + f"<td>{_mark(c.mark)}</td></tr>")
    metric = pairs[0].metric
    caption = (f"All {len(pairs)} pairs on {metric} (×100): paired randomization test on the queries both rows "
               "scored, Holm-corrected over this table's pairs (α = 0.05); d_z = mean(Δ) / sd(Δ); bootstrap 95% CI. "
               "▲/▼: A significantly better/worse than B.")
    table = _table(f"t-{_id(task)}-pairs", "data pairs", caption, header, body)
    return f'<details class="pairs"><summary>All pairs ({len(pairs)})</summary>{table}</details>\n'


def _reported(reported: pd.DataFrame, values: pd.DataFrame, names: list[str], task: str) -> str:
    header = [("Retriever", "Retriever", False), *[(m, m, True) for m in names], ("source", "source", False)]
    body = ["<tr>" + _td(f.label) + "".join(_num_td(values.at[f.file, m]) for m in names) + _td(text(f.source))
            + "</tr>" for f in reported.itertuples(index=False)]
    caption = "Reported (not measured here): copied from their source, never mixed with measured rows."
    return _table(f"t-{_id(task)}-reported", "data reported", caption, header, body)


def _table(table_id: str, cls: str, caption: str, header: list[tuple[str, str, bool]], body: list[str],
           attrs: str = "", main: str = "") -> str:
    """A sortable table; ``header`` holds (sort key, text, numeric) per column."""
    ths = []
    for key, label, numeric in header:
        th_class = (' class="num main"' if key == main else ' class="num"') if numeric else ""
        ths.append(f'<th scope="col" data-key="{_e(key)}" data-type="{"num" if numeric else "text"}"{th_class} '
                   f'title="Sort by {_e(label)}">{_e(label)}</th>')
    return (f'<div class="scroll"><table id="{_e(table_id)}" class="{cls}"{attrs}><caption>{_e(caption)}</caption>'
            f'<thead><tr>{"".join(ths)}</tr></thead><tbody>\n' + "\n".join(body) + "\n</tbody></table></div>\n")


def _heatmaps(maps: list[tuple[str, str]], files: set[str], link: Callable[[str], str]) -> str:
    figures = []
    for name, data in maps:
        result = re.sub(r"\.png$", ".json", name)
        caption = f'<a href="{_e(link(result))}">{_e(result)}</a>' if result in files else _e(name)
        figures.append(f'<figure><img alt="NIAH heat map {_e(name)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{caption}</figcaption></figure>")
    return ('<section class="task heatmaps"><h3>Needle in a haystack: heat maps</h3><p class="meta">Context '
            "length × needle depth, coloured by the per-query metric ×100 (<code>harness plot niah</code>).</p>"
            f'<div class="maps">{"".join(figures)}</div></section>\n')


def _td(value: str) -> str:
    return f"<td>{_e(value)}</td>"


def _num_td(value: Any, shown: str | None = None, cls: str = "") -> str:
    """A numeric cell: the score ×100 (or ``shown``), the raw value in ``data-v`` for sorting."""
    value = num(value)
    raw = "" if value is None else repr(value)
    label = shown if shown is not None else fmt(value)
    return f'<td class="num{" " + cls if cls else ""}" data-v="{raw}">{_e(label)}</td>'


def _mark(mark: str) -> str:
    cls = {"▲": "up", "▼": "down", "(baseline)": "base"}.get(mark, "")
    return f'<span class="{cls}">{_e(mark)}</span>' if mark else ""


def _id(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "x"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _code(note: str) -> str:
    """A markdown note as HTML: `code` spans kept."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", _e(note))

