"""``harness bench TARGET``: side-by-side throughput and memory benchmarks.

Targets live in ``benchmarks/<target>.py`` (the package ``harness.benchmarks``) with
``add_arguments(parser)`` and ``run(args)``; modules without ``add_arguments`` are helpers. A
module name's underscores become hyphens (``speed_quality.py``: ``harness bench speed-quality``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import harness.benchmarks


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks (bm25, qr, generation, speed-quality)", description=__doc__)
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    for info in pkgutil.iter_modules(harness.benchmarks.__path__):
        module = importlib.import_module(f"harness.benchmarks.{info.name}")
        if hasattr(module, "add_arguments"):
            name = info.name.replace("_", "-")  # speed_quality.py -> `harness bench speed-quality`
            aliases = [info.name] if name != info.name else []
            tp = targets.add_parser(name, aliases=aliases,
                                    help=(module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else None)
            module.add_arguments(tp)
            tp.set_defaults(func=module.run)
