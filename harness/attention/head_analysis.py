"""Comparing head files: top-K overlap, rank correlation, and the layer × head heat map.

The paper's Table 6 compares the heads detected on three disjoint NQ detection sets by the
overlap of their top-64 (docs/PROTOCOL.md §5.4), and its head-location figure shows where the
best heads sit. ``harness heads compare`` does both for any head files that ``harness detect``
writes (or hand-made ones ``{"heads": [["layer-head", score], ...], "shape": {...}}``):

- **overlap@K**: ``|top_K(A) ∩ top_K(B)|``, each file's heads ranked by score (ties: layer, head);
- **Spearman's ρ and Kendall's τ-b** (scipy) of the scores over the cells both files score (all
  layers × heads, or fewer for a ``--max-layer`` detection);
- a PNG heat map of one file's scores, layers × heads, its top-K cells outlined (matplotlib Agg,
  no "Software" metadata: the same scores give the same bytes).

Example::

    >>> a = HeadScores.from_obj({"heads": [["0-0", 3.0], ["0-1", 2.0], ["1-0", 1.0], ["1-1", 0.0]]}, "a")
    >>> b = HeadScores.from_obj({"heads": [["0-1", 3.0], ["0-0", 2.0], ["1-1", 1.0], ["1-0", 0.0]]}, "b")
    >>> overlap(a, b, 2), round(rank_correlation(a, b).spearman, 3)
    (2, 0.6)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.attention.heads import Head, parse_head_list
from harness.errors import HarnessError
from harness.io import write_png


@dataclass(frozen=True)
class HeadScores:
    """One head file's score of every head it lists, and the model's shape (layers, heads)."""

    label: str
    scores: dict[Head, float]
    layers: int
    heads: int
    meta: dict[str, Any]

    @classmethod
    def from_obj(cls, obj: Any, label: str) -> HeadScores:
        """Parse a head-file object; every problem is a one-line :class:`HarnessError` naming ``label``."""
        if not isinstance(obj, dict) or not isinstance(obj.get("heads"), list) or not obj["heads"]:
            raise HarnessError(f"{label}: field 'heads' must be a non-empty list of ['layer-head', score]")
        scores: dict[Head, float] = {}
        for i, entry in enumerate(obj["heads"]):
            ok = isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
            value = entry[1] if ok else None
            if not ok or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise HarnessError(f"{label}: heads[{i}] must be ['layer-head', finite score], got {entry!r}")
            (head,) = parse_head_list(entry[0], where=f"{label}: heads[{i}]")
            if head in scores:
                raise HarnessError(f"{label}: head {head[0]}-{head[1]} is listed twice")
            scores[head] = float(value)
        shape = obj.get("shape") if isinstance(obj.get("shape"), dict) else {}
        layers = int(shape.get("layers") or 1 + max(layer for layer, _ in scores))
        heads = int(shape.get("heads") or 1 + max(h for _, h in scores))
        if any(layer >= layers or h >= heads for layer, h in scores):
            raise HarnessError(f"{label}: a head lies outside the recorded shape ({layers} layers x {heads} heads)")
        return cls(label, scores, layers, heads, {k: v for k, v in obj.items() if k != "heads"})

    @classmethod
    def read(cls, path: str | os.PathLike[str], label: str | None = None) -> HeadScores:
        from harness.io import read_json

        if not os.path.isfile(path):
            raise HarnessError(f"head file {path} not found")
        return cls.from_obj(read_json(path, invalid="not valid JSON"), label or str(path))

    def ranked(self) -> list[Head]:
        """Heads best first (ties: layer, then head, as :func:`~harness.attention.detection.detect_heads`)."""
        return sorted(self.scores, key=lambda h: (-self.scores[h], h))

    def top(self, k: int) -> list[Head]:
        if not 1 <= k <= len(self.scores):
            raise HarnessError(f"--top {k}: {self.label} scores {len(self.scores)} heads (expected 1..{len(self.scores)})")
        return self.ranked()[:k]


def overlap(a: HeadScores, b: HeadScores, k: int) -> int:
    """How many heads the top-``k`` of ``a`` and of ``b`` share (the paper's Table 6 uses k = 64)."""
    return len(set(a.top(k)) & set(b.top(k)))


@dataclass(frozen=True)
class Correlation:
    """Spearman's ρ and Kendall's τ-b over ``n`` cells scored by both files (NaN if undefined)."""

    spearman: float
    kendall: float
    n: int


def rank_correlation(a: HeadScores, b: HeadScores) -> Correlation:
    """Rank correlation of the two files' scores over the cells both score."""
    import warnings

    from scipy import stats

    common = sorted(set(a.scores) & set(b.scores))
    if len(common) < 2:
        raise HarnessError(f"{a.label} and {b.label} score fewer than two heads in common")
    x, y = [a.scores[h] for h in common], [b.scores[h] for h in common]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant scores: NaN, reported as such
        rho = float(stats.spearmanr(x, y).statistic)
        tau = float(stats.kendalltau(x, y).statistic)
    return Correlation(rho, tau, len(common))


@dataclass(frozen=True)
class PairRow:
    """One row of ``harness heads compare``."""

    a: str
    b: str
    k: int
    overlap: int
    correlation: Correlation


def compare(files: Sequence[HeadScores], k: int) -> list[PairRow]:
    """Every pair ``(i < j)`` of ``files``: overlap of the top-``k`` and rank correlation.

    Files that record their model's shape must record the same one (heads of different models
    are not comparable cell by cell)."""
    for f in files:
        f.top(k)  # every file must have k heads: fail before any pair
    shapes = {f.label: (f.layers, f.heads) for f in files if "shape" in f.meta}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{label} {n_l}x{n_h}" for label, (n_l, n_h) in shapes.items())
        raise HarnessError(f"head files of models of different shapes cannot be compared ({listed})")
    return [PairRow(a.label, b.label, k, overlap(a, b, k), rank_correlation(a, b))
            for i, a in enumerate(files) for b in files[i + 1:]]


def format_table(rows: Sequence[PairRow]) -> str:
    """The rows as a fixed-width text table.

    >>> print(format_table([PairRow("a", "b", 2, 1, Correlation(0.5, 1 / 3, 4))]))
    A  B  overlap@2  share  spearman  kendall  cells
    a  b  1/2        0.500  0.500     0.333    4
    """
    header = ["A", "B", f"overlap@{rows[0].k}" if rows else "overlap", "share", "spearman", "kendall", "cells"]
    body = [[r.a, r.b, f"{r.overlap}/{r.k}", f"{r.overlap / r.k:.3f}", f"{r.correlation.spearman:.3f}",
             f"{r.correlation.kendall:.3f}", str(r.correlation.n)] for r in rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *body])


def score_grid(scores: HeadScores) -> list[list[float]]:
    """``[layer][head]`` scores, NaN where the file scores no head (e.g. above ``max_layer``)."""
    return [[scores.scores.get((layer, h), math.nan) for h in range(scores.heads)] for layer in range(scores.layers)]


def plot_head_heatmap(scores: HeadScores, png_path: str | os.PathLike[str], *, top: int | None = None,
                      title: str | None = None, dpi: int = 100) -> None:
    """Draw the layers × heads heat map of ``scores`` into ``png_path`` (deterministic bytes,
    written atomically), outlining the ``top`` best heads."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.ma.masked_invalid(np.array(score_grid(scores), dtype=float))
    best = scores.top(top) if top else []
    cmap = plt.get_cmap("viridis").with_extremes(bad="#DDDDDD")
    size = (max(4.0, 1.5 + 0.18 * scores.heads), max(3.0, 1.0 + 0.16 * scores.layers))
    with plt.rc_context({"font.size": 9}):
        fig, ax = plt.subplots(figsize=size, dpi=dpi)
        try:
            image = ax.imshow(grid, cmap=cmap, aspect="auto", interpolation="nearest", origin="lower")
            if best:
                ax.scatter([h for _, h in best], [layer for layer, _ in best], s=14, marker="s",
                           facecolors="none", edgecolors="red", linewidths=0.8)
            ax.set_xlabel("head")
            ax.set_ylabel("layer")
            meta = scores.meta
            ax.set_title(title or f"{meta.get('model') or scores.label}: {meta.get('objective') or 'score'}"
                         f"{' on ' + str(meta['data']) if meta.get('data') else ''}"
                         f"{f' (top {len(best)} outlined)' if best else ''}", fontsize=9)
            fig.colorbar(image, ax=ax, label="head score")
            fig.tight_layout()
            write_png(fig, png_path, dpi=dpi)
        finally:
            plt.close(fig)


__all__ = ["Correlation", "HeadScores", "PairRow", "compare", "format_table", "overlap", "plot_head_heatmap",
           "rank_correlation", "score_grid"]
