"""Progress bars: one switch for the whole harness.

Every long loop shows a tqdm bar unless the caller says ``show=False`` (``harness --no-progress``)
or the environment sets ``DISABLE_TQDM`` to a true value (``1``, ``true``, ``yes``, ``on``): the
environment is the global switch and wins over ``show=True``.

>>> import os
>>> saved = os.environ.pop("DISABLE_TQDM", None)
>>> progress_enabled(None), progress_enabled(False)
(True, False)
>>> os.environ["DISABLE_TQDM"] = "1"
>>> progress_enabled(None), progress_enabled(True)
(False, False)
>>> list(progress([1, 2, 3], desc="demo"))
[1, 2, 3]
>>> if saved is None: del os.environ["DISABLE_TQDM"]
... else: os.environ["DISABLE_TQDM"] = saved
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}


def progress_disabled_by_env() -> bool:
    """True when ``DISABLE_TQDM`` is set to a true value."""
    return os.environ.get("DISABLE_TQDM", "").strip().lower() in _TRUE


def progress_enabled(show: bool | None = None) -> bool:
    """Off when ``show`` is False or ``DISABLE_TQDM`` is set; on otherwise."""
    return show is not False and not progress_disabled_by_env()


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    show: bool | None = None,
    leave: bool = True,
) -> Any:
    """A tqdm bar over ``iterable`` (or a manual bar with ``total`` and ``update``), hidden when
    :func:`progress_enabled` says so. A hidden bar still iterates and accepts ``update``.

    """
    from tqdm.auto import tqdm

    disable = not progress_enabled(show)
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, disable=disable)


def silence_library_progress() -> None:
    """Switch off the progress bars of transformers, huggingface_hub and datasets too."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    with contextlib.suppress(ImportError):
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
