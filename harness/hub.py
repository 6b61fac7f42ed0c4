"""The Hugging Face hub, or its absence: decide once, fail fast with one line.

Tasks and models that load by id call :func:`require_hub` before touching the hub client. When
a short probe cannot reach the hub's host, the user gets one line at once — naming the upstream
id and what to pass instead — rather than half a minute of retries and a page of warnings. In
offline mode (``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set) the hub
clients look in their local cache without any network and fail fast on their own.

>>> import os

>>> _probe["127.0.0.1:9"] = "cannot reach 127.0.0.1 (Connection refused)"  # what the probe found
>>> os.environ["HF_ENDPOINT"], saved = "http://127.0.0.1:9", {v: os.environ.pop(v, None) for v in OFFLINE_VARIABLES}
>>> require_hub("task beir/scifact", "BeIR/scifact", "pass --data DIR (a BEIR folder)")
Traceback (most recent call last):
...
harness.errors.HarnessError: task beir/scifact: needs BeIR/scifact from the Hugging Face hub, but cannot reach 127.0.0.1 (Connection refused); pass --data DIR (a BEIR folder) (or set HF_HUB_OFFLINE=1 to use a copy already in the Hugging Face cache)
>>> del os.environ["HF_ENDPOINT"]; os.environ.update({k: v for k, v in saved.items() if v is not None})
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from harness.errors import HarnessError

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
#: Seconds the reachability probe may take.
PROBE_SECONDS = 3.0
_probe: dict[str, str | None] = {}


def offline_variable() -> str | None:
    """The offline switch that is set, if any."""
    return next((name for name in OFFLINE_VARIABLES
                 if os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}), None)


def unreachable() -> str | None:
    """Why the hub cannot be reached (probed once per process and host), or None when it can."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    key = f"{host}:{port}"
    if key not in _probe:
        try:
            with socket.create_connection((host, port), timeout=PROBE_SECONDS):
                _probe[key] = None
        except OSError as exc:
            _probe[key] = f"cannot reach {host} ({exc.strerror or exc.__class__.__name__})"
    return _probe[key]


def require_hub(what: str, upstream: str, instead: str) -> None:
    """Raise a one-line :class:`HarnessError` when the hub is needed but cannot be reached.

    In offline mode the hub client itself looks in its local cache (fast, no network), so this
    returns and lets it; otherwise an unreachable hub fails here at once.
    """
    if offline_variable():
        return
    reason = unreachable()
    if reason:
        raise HarnessError(f"{what}: needs {upstream} from the Hugging Face hub, but {reason}; {instead} "
                           "(or set HF_HUB_OFFLINE=1 to use a copy already in the Hugging Face cache)")
