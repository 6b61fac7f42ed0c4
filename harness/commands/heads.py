"""``harness heads compare A.json B.json ... [--top K] [--heatmap OUT.png]``: compare head files.

For every pair of head files (``harness detect`` output): the overlap of their top-K heads (the
paper's Table 6 compares the top-64 of three detection sets) and the Spearman and Kendall rank
correlation of their scores over the heads both score. ``--heatmap`` draws the first file's
scores as a layers × heads heat map with its top-K heads outlined (the paper's head-location
figure).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import HarnessError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("heads", help="compare head files (top-K overlap, rank correlation, heat map)",
                       description=__doc__)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    compare = actions.add_parser("compare", help="top-K overlap and rank correlation of head files, and a heat map",
                                 description=__doc__)
    compare.add_argument("files", nargs="+", metavar="HEADS.json", help="head files (harness detect --output)")
    compare.add_argument("--top", type=int, default=64, metavar="K",
                         help="size of the compared top sets (default 64, the paper's Table 6)")
    compare.add_argument("--heatmap", metavar="OUT.png", help="also draw the first file's layers x heads heat map")
    p.set_defaults(func=main)


def _labels(paths: list[str]) -> list[str]:
    """File names, or the paths as given when two files share a name."""
    names = [Path(p).name for p in paths]
    return names if len(set(names)) == len(names) else list(paths)


def main(args: argparse.Namespace) -> int:
    from harness.attention.head_analysis import HeadScores, compare, format_table, plot_head_heatmap

    if len(args.files) < 2 and not args.heatmap:
        raise HarnessError("heads compare needs at least two head files (or one with --heatmap)")
    if args.heatmap:
        from harness.io import check_writable

        check_writable(args.heatmap)
    files = [HeadScores.read(path, label) for path, label in zip(args.files, _labels(args.files))]
    rows = compare(files, args.top)
    for f in files:
        meta = f.meta
        scored = f"{len(f.scores)} of {f.layers}x{f.heads} heads scored"
        print(f"{f.label}: {meta.get('model') or '?'}, {meta.get('objective') or '?'} on {meta.get('data') or '?'}, "
              f"n={meta.get('n', '?')}, {scored}")
    if rows:
        print(format_table(rows))
    if args.heatmap:
        plot_head_heatmap(files[0], args.heatmap, top=args.top)
        print(f"wrote {args.heatmap}", file=sys.stderr)
    return 0
