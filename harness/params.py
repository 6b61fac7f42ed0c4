"""Values of task and retriever parameters (``--set key=value`` or keyword arguments)."""

from __future__ import annotations

from typing import Any

from harness.errors import HarnessError


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
