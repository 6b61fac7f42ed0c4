"""``harness leaderboard``: regenerate LEADERBOARD.md, leaderboard.csv, the plot and the static page
site/index.html from the result files under results/."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="regenerate the leaderboard from result files", description=__doc__)
    p.add_argument("--results", default="results", help="results folder to read (default results/)")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="folder to write LEADERBOARD.md, leaderboard.csv, leaderboard.png and site/ into "
                        "(default: the results folder)")
    p.add_argument("--print", action="store_true", help="also print the markdown")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from harness.leaderboard import write

    outputs = write(args.results, args.output)
    if args.print:
        print(outputs[0].read_text(encoding="utf-8"), end="")
    for path in outputs:
        print(f"wrote {path}")
    return 0
