"""Needle-in-a-haystack heat-maps: context length × needle depth, coloured by a per-query metric.

The grid comes from a result file's ``per_query`` (:func:`niah_grid`): query ids
``L{length}_D{depth}`` (:mod:`harness.tasks.niah`) give the cell; the value is the metric ×100 (the
paper's Figure 1 shows ROUGE-1 recall ×100). :func:`plot_heatmap` draws it in the style of the
needle-test figures (red→yellow→green, 0..100, depth down the y axis, length along the x axis,
each cell annotated) and writes a PNG whose bytes depend only on the grid and the labels
(matplotlib's Agg backend, no "Software" metadata, fixed size and dpi).

Example::

    >>> grid = niah_grid({"per_query": {"L500_D0": {"R@1": 1.0}, "L500_D100": {"R@1": 0.0}}}, "R@1")
    >>> grid.lengths, grid.depths, grid.values
    ([500], [0.0, 100.0], [[100.0], [0.0]])
"""

from __future__ import annotations

import logging
import math
import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import read_json, write_png

log = logging.getLogger(__name__)

_QID = re.compile(r"^L(\d+)_D(\d+(?:\.\d+)?)$")
#: The colours of the original needle-test heat-maps: red (0) → yellow → green (100).
COLOURS = ("#F0496E", "#EBB839", "#0CD79F")
#: The default metric: ROUGE-1-R where the run generated answers, else retrieval R@1.
AUTO_METRICS = ("ROUGE-1-R", "R@1")


@dataclass(frozen=True)
class NiahGrid:
    """``values[i][j]`` is the metric ×100 at ``depths[i]`` and ``lengths[j]`` (NaN: no query there)."""

    lengths: list[int]
    depths: list[float]
    values: list[list[float]]
    metric: str

    @property
    def mean(self) -> float:
        """Mean over the cells that hold a value (×100)."""
        cells = [v for row in self.values for v in row if not math.isnan(v)]
        return sum(cells) / len(cells) if cells else math.nan


def load_result(result: str | os.PathLike[str] | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A result dictionary and a label for messages (the path, or ``"result"``)."""
    if isinstance(result, dict):
        return result, "result"
    path = Path(result)
    if not path.is_file():
        raise HarnessError(f"{path}: no such result file")
    obj = read_json(path, invalid="not valid JSON")
    if not isinstance(obj, dict):
        raise HarnessError(f"{path}: a result file is a JSON object")
    return obj, str(path)


def pick_metric(per_query: dict[str, dict[str, float]], metric: str | None) -> str:
    """``metric``, or with None the first of :data:`AUTO_METRICS` that the queries report."""
    reported = {name for values in per_query.values() for name in values}
    if metric is None:
        for name in AUTO_METRICS:
            if name in reported:
                return name
        raise HarnessError(f"no {' or '.join(AUTO_METRICS)} in per_query; name one with --metric")
    if metric not in reported:
        raise HarnessError(f"metric {metric!r} is not in per_query (has: {', '.join(sorted(reported)) or 'nothing'})")
    return metric


def niah_grid(result: str | os.PathLike[str] | dict[str, Any], metric: str | None = "ROUGE-1-R") -> NiahGrid:
    """The lengths × depths grid of ``metric`` ×100 from a NIAH result file (or its dictionary).

    Every ``per_query`` id must be ``L{length}_D{depth}``; a query without the metric is an
    error (an answer metric is never silently missing), a (length, depth) cell without a query
    is NaN.
    """
    obj, where = load_result(result)
    per_query = obj.get("per_query")
    if not isinstance(per_query, dict) or not per_query:
        raise HarnessError(f"{where}: field 'per_query' must be a non-empty object")
    metric = pick_metric(per_query, metric)
    cells: dict[tuple[int, float], float] = {}
    for qid, values in per_query.items():
        match = _QID.match(qid)
        if not match:
            raise HarnessError(f"{where}: per_query id {qid!r} is not a NIAH cell L{{length}}_D{{depth}}")
        if not isinstance(values, dict) or metric not in values:
            raise HarnessError(f"{where}: per_query[{qid!r}] has no {metric!r}")
        value = values[metric]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise HarnessError(f"{where}: per_query[{qid!r}][{metric!r}] is not a finite number: {value!r}")
        cells[(int(match.group(1)), float(match.group(2)))] = 100.0 * float(value)
    lengths = sorted({length for length, _ in cells})
    depths = sorted({depth for _, depth in cells})
    values = [[cells.get((length, depth), math.nan) for length in lengths] for depth in depths]
    return NiahGrid(lengths=lengths, depths=depths, values=values, metric=metric)


def default_title(obj: dict[str, Any], metric: str) -> str:
    """``"smollm2-135m from bm25 top-3; ROUGE-1-R"``-style title (generator, context, mask, metric)."""
    retriever = str((obj.get("retriever") or {}).get("name", "?"))
    generation = obj.get("generation") or {}
    generator = generation.get("generator") or {}
    if not generator:
        return f"{retriever}; {metric}"
    model = generator.get("model", "?")
    parts = [
        f"{model}, full context"
        if generation.get("full_context")
        else f"{model} from {retriever} top-{generation.get('top_k')}"
    ]
    mask = generator.get("mask")
    if mask:
        parts.append(f"{mask.get('n_heads')} heads masked ({mask.get('name')}, {mask.get('mode')})")
    return "; ".join([*parts, metric])


def plot_heatmap(
    result: str | os.PathLike[str] | dict[str, Any],
    png_path: str | os.PathLike[str],
    metric: str | None = "ROUGE-1-R",
    *,
    title: str | None = None,
    dpi: int = 100,
) -> NiahGrid:
    """Draw the NIAH heat-map of ``result`` into ``png_path`` (deterministic bytes); return the grid.

    ``metric=None`` picks ROUGE-1-R if the run generated answers, else R@1. The PNG is written
    atomically (temporary file, then rename).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    obj, _ = load_result(result)
    grid = niah_grid(obj, metric)
    cmap = LinearSegmentedColormap.from_list("needle", list(COLOURS)).with_extremes(bad="#DDDDDD")
    n_l, n_d = len(grid.lengths), len(grid.depths)
    with plt.rc_context({"svg.hashsalt": "niah", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(max(4.0, 1.0 + 0.9 * n_l), max(3.0, 1.0 + 0.5 * n_d)), dpi=dpi)
        try:
            image = ax.imshow(grid.values, cmap=cmap, vmin=0, vmax=100, aspect="auto", interpolation="nearest")
            for i, row in enumerate(grid.values):
                for j, value in enumerate(row):
                    if not math.isnan(value):
                        ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8, color="black")
            ax.set_xticks(range(n_l), [str(length) for length in grid.lengths])
            ax.set_yticks(range(n_d), [f"{depth:g}" for depth in grid.depths])
            unit = str((obj.get("task") or {}).get("unit") or "words")
            ax.set_xlabel(f"context length ({unit})")
            ax.set_ylabel("needle depth (%)")
            text = title if title is not None else default_title(obj, grid.metric)
            ax.set_title(textwrap.fill(text, width=int(fig.get_figwidth() * 12)), fontsize=9)
            fig.colorbar(image, ax=ax, label=f"{grid.metric} ×100")
            fig.tight_layout()
            write_png(fig, png_path, dpi=dpi)
        finally:
            plt.close(fig)
    log.info("wrote %s (%s, %d lengths × %d depths, mean %.1f)", png_path, grid.metric, n_l, n_d, grid.mean)
    return grid


__all__ = ["AUTO_METRICS", "COLOURS", "NiahGrid", "niah_grid", "pick_metric", "plot_heatmap"]
