"""``harness leaderboard``: regenerate results/LEADERBOARD.md, leaderboard.csv and the plot."""

from __future__ import annotations

import argparse

from harness.leaderboard import write


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="regenerate the leaderboard from result files", description=__doc__)
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--print", action="store_true", help="also print the markdown")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    outputs = write(args.results)
    if args.print:
        print(outputs[0].read_text(encoding="utf-8"), end="")
    for path in outputs:
        print(f"wrote {path}")
    return 0
