"""``harness validate FILE...``: check submitted result files (what a maintainer runs)."""

from __future__ import annotations

import argparse
import sys

from harness.errors import HarnessError
from harness.results import Result


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check result files: schema, coverage, metrics vs per-query values", description=__doc__)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Check every file (one line each); exit 2 when any fails, after all were checked."""
    failed = 0
    for path in args.files:
        try:
            warnings = Result.from_json(path).validate(path)
        except HarnessError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        for warning in warnings:
            print(f"{path}: warning: {warning}")
        print(f"{path}: ok")
    if failed and len(args.files) > 1:
        print(f"{failed} of {len(args.files)} files failed", file=sys.stderr)
    return 2 if failed else 0
