"""``harness list [tasks|retrievers|models|heads]``: what can be run."""

from __future__ import annotations

import argparse

from harness.registry import available, task_ids


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list tasks, retrievers, models or head sets", description=__doc__)
    p.add_argument("what", nargs="?", default="all", choices=["all", "tasks", "retrievers", "models", "heads"])
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    what = args.what
    if what in ("all", "tasks"):
        print("tasks:")
        for tid in task_ids():
            print(f"  {tid}")
    if what in ("all", "retrievers"):
        print("retrievers:")
        for name, ref in sorted(available("retriever").items()):
            print(f"  {name:16s} {ref}")
    if what in ("all", "models"):
        from harness.models.resolve import ALIASES

        print("models (offline aliases; any Hugging Face id or local folder also works):")
        for alias, description in ALIASES.items():
            print(f"  {alias:16s} {description}")
    if what in ("all", "heads"):
        from harness.attention.heads import list_head_sets

        print("head sets:")
        for line in list_head_sets():
            print(f"  {line}")
    return 0
