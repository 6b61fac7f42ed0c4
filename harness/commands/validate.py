"""``harness validate FILE...``: check submitted result files (what a maintainer runs)."""

from __future__ import annotations

import argparse

from harness.results import load_result, validate_result


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check result files: schema, coverage, metrics vs per-query values", description=__doc__)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    for path in args.files:
        warnings = validate_result(load_result(path), path)
        for warning in warnings:
            print(f"{path}: warning: {warning}")
        print(f"{path}: ok")
    return 0
