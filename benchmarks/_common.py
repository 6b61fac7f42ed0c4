"""What the ``harness bench`` targets share: the machine sentence, option checks and the record's output.

Not a target itself: it has no ``add_arguments``, so ``harness bench`` lists no target for it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def machine_line(m: dict[str, Any], note: str = "") -> str:
    """The ``Machine: ...`` sentence of a summary, from a :func:`harness.provenance.machine` record
    (with ``load_average_at_end`` added); ``note`` ends the parenthesis after "the machine may be shared"."""
    threads = f" ({m['torch_threads']} torch threads)" if m.get("torch_threads") else ""
    gpu = f", GPU {m['gpu']} ({m['gpu_memory_gib']} GiB)" if m.get("gpu") else ""
    versions = ", ".join(f"{name} {version}" for name, version in m.get("versions", {}).items())
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores{threads}, {m.get('memory_gib')} GiB RAM{gpu}; {m['platform']}; "
        f"Python {m['python']}{', ' + versions if versions else ''}; load average (1, 5, 15 min) "
        f"{m.get('load_average_at_start')} at start, {m.get('load_average_at_end')} at end "
        f"(the machine may be shared{'; ' + note if note else ''})."
    )


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
