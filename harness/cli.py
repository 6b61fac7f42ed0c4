"""The ``harness`` console script: one program, several verbs.

Each verb lives in ``harness/commands/<verb>.py`` with ``register(subparsers)``; a verb's
module is imported only when the program starts, and heavy libraries only when a verb runs.
Bad input prints ``error: <one line>`` and exits with status 2; Ctrl-C exits with 130 and loses
nothing already finished (runs resume).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import __version__
from harness.errors import HarnessError

VERBS = ("run", "list", "leaderboard", "validate", "detect", "heads", "bench", "merge", "fuse", "compare", "reproduce", "plot")


class _Parser(argparse.ArgumentParser):
    """argparse that also accepts ``--snake_case`` spellings of ``--kebab-case`` flags."""

    def _parse_optional(self, arg_string):  # type: ignore[override]
        if arg_string.startswith("--") and "_" in arg_string.split("=", 1)[0]:
            name, sep, value = arg_string.partition("=")
            arg_string = name.replace("_", "-") + sep + value
        return super()._parse_optional(arg_string)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="Benchmark harness and leaderboard for retrievers.")
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    parser.add_argument("-v", "--verbosity", type=int, default=1, choices=range(4), metavar="0-3",
                        help="0 errors only, 1 progress (default), 2 info, 3 debug")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars (or set DISABLE_TQDM=1)")
    parser.add_argument("--debug", action="store_true",
                        help="print the Python traceback of an unexpected internal error (or set HARNESS_DEBUG=1)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for verb in VERBS:
        try:
            module = importlib.import_module(f"harness.commands.{verb}")
        except ModuleNotFoundError as exc:
            if exc.name == f"harness.commands.{verb}":
                continue
            raise
        module.register(sub)
    return parser


def parse_command(command: str) -> argparse.Namespace:
    """The parsed options of a ``harness …`` command line, as a result records it (one-line errors).

    >>> parse_command("harness --no-progress run --task cranfield --retriever bm25").task
    'cranfield'
    """
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise HarnessError(f"command cannot be split into words ({exc}): {command!r}") from None
    if not words or words[0] != "harness":
        raise HarnessError(f"not a harness command: {command!r}")
    try:
        return build_parser().parse_args(words[1:])
    except SystemExit:
        raise HarnessError(f"command cannot be parsed: {command!r}") from None


def _configure_logging(verbosity: int) -> None:
    level = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}[verbosity]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbosity < 3:
        for noisy in ("bm25s", "httpx", "urllib3", "filelock", "huggingface_hub", "datasets", "transformers", "sentence_transformers"):
            logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def _rank() -> int:
    """This process's rank under torchrun / accelerate (0 when not distributed)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["harness", *argv])  # recorded in result files
    if args.verb is None:
        parser.print_help()
        return 2
    _configure_logging(args.verbosity)
    if args.no_progress or args.verbosity == 0:
        os.environ["DISABLE_TQDM"] = "1"
    try:
        return int(args.func(args) or 0)
    except HarnessError as exc:
        if _rank() == 0:  # under torchrun every rank fails alike: one line, from rank 0
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `harness list | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted: finished queries are kept; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # an internal error: one line, the traceback only on request
        if args.debug or os.environ.get("HARNESS_DEBUG", "").strip().lower() in ("1", "true", "yes", "on"):
            raise
        where = exc.__traceback__
        while where is not None and where.tb_next is not None:
            where = where.tb_next
        at = f" at {Path(where.tb_frame.f_code.co_filename).name}:{where.tb_lineno}" if where else ""
        print(f"internal error: {type(exc).__name__}: {exc}{at} (a bug: rerun with --debug for the traceback "
              "and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
