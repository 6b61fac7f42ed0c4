"""User-facing errors: one line, naming the file, line or field at fault."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HarnessError(Exception):
    """An error caused by bad input or configuration.

    The CLI prints ``error: <message>`` on one line and exits with status 2; no traceback.
    """


def unknown_name(kind: str, name: str, known: Iterable[str]) -> HarnessError:
    """Build the "unknown X 'y'; did you mean ...?" error with the closest known names."""
    known = sorted(set(known))
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    listing = f" (known: {', '.join(known)})" if len(known) <= 20 else ""
    return HarnessError(f"unknown {kind} {name!r}{hint}{listing}")
