"""``harness plot niah RESULT.json``: the lengths × depths heat-map of a needle-in-a-haystack result."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw figures from result files (niah heat-map)", description=__doc__)
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    niah = kinds.add_parser(
        "niah",
        help="lengths × depths heat-map of a NIAH result file",
        description="Heat-map of a NIAH result file: context length × needle depth, coloured by a per-query "
        "metric ×100 (ROUGE-1-R of the generated answers, or retrieval R@1 for a run without --generate).",
    )
    niah.add_argument("result", help="a NIAH result JSON (results/niah/*.json)")
    niah.add_argument("--metric", default=None, help="per-query metric (default: ROUGE-1-R if present, else R@1)")
    niah.add_argument("--output", "-o", default=None, help="PNG path (default: the result path with .png)")
    niah.add_argument("--title", default=None, help="figure title (default: retriever, generator, mask, metric)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from harness.io import check_writable
    from harness.niah_plot import plot_heatmap

    output = Path(args.output) if args.output else Path(args.result).with_suffix(".png")
    check_writable(output)
    grid = plot_heatmap(args.result, output, args.metric, title=args.title)
    print(
        f"wrote {output} ({grid.metric}, {len(grid.lengths)} lengths × {len(grid.depths)} depths, mean {grid.mean:.1f})"
    )
    return 0
