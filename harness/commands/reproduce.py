"""``harness reproduce``: run or check the recipes that regenerate the paper's tables (2CR style).

Examples::

    harness reproduce --list                     # conditions of reproduce/paper.yaml
    harness reproduce --table 2 --dry-run        # the exact commands, one per result file
    harness reproduce --table offline            # run them, then compare with the expected values
    harness reproduce --table 2 --check          # only compare the result files already there
    harness reproduce --all                      # run every condition (GPUs and the paper's models needed)

Exit status: 0 when every cell is OK (MISSING/PENDING cells are allowed unless --strict), 1 when a
cell FAILs (outside its tolerance), is INVALID, or a command failed; 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys

from harness.errors import HarnessError
from harness.reproduce import (
    DEFAULT_RECIPES,
    check,
    failed,
    format_checks,
    format_list,
    in_dependency_order,
    load_recipes,
    run_conditions,
    select,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="run or check the reproduction recipes of the paper's tables",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipes", default=str(DEFAULT_RECIPES), help=f"recipe YAML (default {DEFAULT_RECIPES})")
    p.add_argument(
        "--table", action="append", metavar="T", help="only conditions of this table: 1, 2, offline (repeatable)"
    )
    p.add_argument(
        "--condition", action="append", metavar="NAME", help="only conditions matching this glob (repeatable)"
    )
    p.add_argument(
        "--root", default=".", help="folder the commands run in and relative result paths start from (default .)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="list the conditions and exit")
    mode.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    mode.add_argument(
        "--check", action="store_true", help="only read the result files and compare them with the expected values"
    )
    p.add_argument(
        "--all", action="store_true", help="run every condition (running needs --table, --condition or --all)"
    )
    p.add_argument("--strict", action="store_true", help="also fail on MISSING result files and PENDING expectations")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    running = not (args.list or args.dry_run or args.check)
    if running and not (args.table or args.condition or args.all):
        raise HarnessError("running recipes needs --table, --condition or --all (or use --check, --dry-run, --list)")
    conditions = select(load_recipes(args.recipes), args.table, args.condition)
    if args.list:
        print(format_list(conditions))
        return 0
    if args.dry_run:  # in the order a run takes: a command reading another's output comes after it
        previous = None
        for cond, command, _ in in_dependency_order(conditions):
            if cond is not previous:
                print(f"# {cond.name} (table {cond.table})" + (f": {cond.description}" if cond.description else ""))
                previous = cond
            print(command)
        return 0
    run_failures: list[str] = []
    if not args.check:
        flags = ["--no-progress"] if args.no_progress else []
        flags += ["--verbosity", str(args.verbosity)]
        run_failures = run_conditions(
            conditions, args.root, flags, on_start=lambda command: print(f"$ {command}", file=sys.stderr, flush=True)
        )
    checks = check(conditions, args.root)
    print(format_checks(checks))
    for command in run_failures:
        print(f"failed: {command}", file=sys.stderr)
    return 1 if run_failures or failed(checks, strict=args.strict) else 0
