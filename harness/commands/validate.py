"""``harness validate FILE|DIR...``: check submitted result files (what a maintainer runs).

A folder stands for every result file under it, as the leaderboard reads them
(``harness validate results/``)."""

from __future__ import annotations

import argparse
import sys

from harness.errors import HarnessError
from harness.results import Result


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check result files: schema, coverage, metrics vs per-query values", description=__doc__)
    p.add_argument("files", nargs="+", metavar="FILE|DIR", help="result files, or folders of them")
    p.add_argument("--answers", action="store_true",
                   help="also re-score the answers generation results record against the task's gold answers "
                        "(needs the task's data where the recorded run spec found it)")
    p.add_argument("--trust-code", action="store_true",
                   help="allow a result's spec to name a task as module:Class, which imports that module "
                        "(never needed for registered tasks)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Check every file (one line each); exit 2 when any fails, after all were checked."""
    from pathlib import Path

    from harness.results import result_files

    failed = 0
    paths = [str(p) for arg in args.files for p in (result_files(arg) if Path(arg).is_dir() else [Path(arg)])]
    for path in paths:
        try:
            result = Result.from_json(path)
            warnings = result.validate(path)
            rescored = 0
            if args.answers:
                from harness.answers import rescore_answers

                rescored, more = rescore_answers(result, path, trust_code=args.trust_code)
                warnings += more
        except HarnessError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        for warning in warnings:
            print(f"{path}: warning: {warning}")
        print(f"{path}: ok" + (f" ({rescored} recorded answers re-scored: same values)" if rescored else ""))
    if failed and len(paths) > 1:
        print(f"{failed} of {len(paths)} files failed", file=sys.stderr)
    return 2 if failed else 0
