"""Task and retriever parameters (``--set key=value``, ``--task-set key=value`` or keyword arguments).

One rule for both: a name the task or retriever does not declare is an error that suggests the
closest declared names.

>>> check_names("parameter of task 'niah'", {"lenghts": "1000"}, ["lengths", "depths"])
Traceback (most recent call last):
...
harness.errors.HarnessError: unknown parameter of task 'niah' 'lenghts'; did you mean 'lengths'? (known: depths, lengths)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.errors import HarnessError, unknown_name


def check_names(what: str, given: Iterable[str], declared: Iterable[str]) -> None:
    """Raise the one-line \"unknown ...; did you mean ...?\" error for the first undeclared name."""
    declared = list(declared)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise unknown_name(what, unknown[0], declared)


def as_bool(value: Any, message: str) -> bool:
    """``value`` as a boolean: a bool, or ``1/true/yes/on`` / ``0/false/no/off`` in any case;
    anything else raises ``HarnessError(message)``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise HarnessError(message)
