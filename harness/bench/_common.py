"""What the ``harness bench`` targets share: the host description, option checks and the record's output.

Not a target itself: it has no ``add_arguments``, so ``harness bench`` lists no target for it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, ``"unknown"`` where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def load_average_1m() -> float | None:
    """The 1-minute load average (rounded), ``None`` where the platform has none."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def require_at_least_one(args: argparse.Namespace, names: tuple[str, ...] | list[str]) -> None:
    """One-line error for the first option in ``names`` (attribute names) that is below 1."""
    for name in names:
        if getattr(args, name) < 1:
            raise HarnessError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")


def add_output_arguments(parser: argparse.ArgumentParser, json_help: str = "print the result as JSON") -> None:
    """``--json`` and ``--output``, the last options of every target."""
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.add_argument(
        "--output", type=Path, default=None, help="write the record as JSON here (and a .md summary next to it)"
    )


def write_and_print(args: argparse.Namespace, record: dict[str, Any], summary: str, printed: Any = None) -> int:
    """Write ``record`` (and ``summary`` as a ``.md`` next to it) to ``--output`` when given, then print
    ``printed`` (default: the record) as JSON with ``--json``, else the summary; returns exit status 0."""
    from harness.io import atomic_write_json, atomic_write_text

    if args.output is not None:
        atomic_write_json(args.output, record)
        atomic_write_text(Path(args.output).with_suffix(".md"), summary)
    sys.stdout.write(json.dumps(record if printed is None else printed, indent=2) + "\n" if args.json else summary)
    return 0
