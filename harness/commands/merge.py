"""``harness merge SHARD... --output FILE``: check shard coverage and write the result file."""

from __future__ import annotations

import argparse

from harness.shards import merge, merged_path, write_merged


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="merge --shard outputs into one result file", description=__doc__)
    p.add_argument("shards", nargs="+", metavar="SHARD")
    p.add_argument("--output", help="merged result path (default: the shard name without .shard-i-of-n)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    result = merge(args.shards)
    out = Path(args.output) if args.output else merged_path(Path(args.shards[0]))
    write_merged(result, out)
    print(f"merged {len(args.shards)} shards ({result.task.n_queries} queries) into {out}")
    return 0
