"""``openai:URL#MODEL``: any OpenAI-compatible chat-completions server (``vllm serve``, our own
:mod:`harness.generation.server`, llama.cpp's server, a hosted API).

Each prompt is one ``POST {URL}/chat/completions`` with ``temperature``, ``top_p=1`` and
``max_tokens``; up to ``concurrency`` requests are in flight at once (stdlib ``urllib``, no
extra dependency). A request that times out, fails to connect, gets HTTP 408/429/5xx or a body
that is not a well-formed completion is retried ``retries`` times with exponential backoff
(``backoff * 2**attempt`` seconds); after that the item is returned as
``Generation(text="", error=...)`` and the run goes on. Other 4xx answers (a bad request will
not get better) fail the item at once.

The context window is read from ``GET {URL}/models`` when the server reports ``max_model_len``
(vLLM and our server do), or given as the ``context_window`` option. Token counting (for the
window check and truncation) needs a local tokenizer: the ``tokenizer`` option takes anything
:func:`harness.models.load_tokenizer` resolves. The cache identity is the model name (and the
``revision`` option), not the URL, so moving a server to another port keeps its cache.
An ``api_key`` option, or the ``OPENAI_API_KEY`` environment variable, is sent as a bearer token,
but only to an ``https://`` URL or a loopback one (``localhost``, ``127.0.0.0/8``, ``::1``): over
plain http to another host anyone on the path could read it, so it is withheld there, with a
one-line warning, unless the ``send_key_over_http=true`` option (or the environment variable
``HARNESS_SEND_KEY_OVER_HTTP=1``) says to send it anyway. It is never forwarded to a redirect target.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from harness.errors import HarnessError
from harness.generation.base import Generation, Generator, Messages
from harness.progress import progress

log = logging.getLogger(__name__)

SEND_KEY_ENV = "HARNESS_SEND_KEY_OVER_HTTP"


class _Retryable(Exception):
    """A failure worth another attempt (timeout, connection error, 5xx, garbage body)."""


class _Fatal(Exception):
    """A failure that another attempt will not fix (HTTP 400, 401, 404, ...)."""


def parse_completion(body: bytes) -> tuple[str, str | None]:
    """``(content, finish_reason)`` of a chat-completions response body; :class:`_Retryable` if malformed."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        content = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        snippet = body[:80].decode("utf-8", "replace")
        raise _Retryable(f"malformed completion ({type(exc).__name__}): {snippet!r}") from None
    if not isinstance(content, str):
        raise _Retryable(f"malformed completion: content is {type(content).__name__}")
    finish = choice.get("finish_reason")
    return content, finish if isinstance(finish, str) else None


def is_loopback(host: str | None) -> bool:
    """``localhost``, an address in ``127.0.0.0/8`` or ``::1`` (IPv4-mapped included)."""
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def key_allowed(url: str, send_key_over_http: bool = False) -> bool:
    """Whether a bearer token may be sent to ``url``: https, loopback http, or any http when opted in."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and (send_key_over_http or is_loopback(parts.hostname)))


def request_headers(url: str, api_key: str | None, *, send_key_over_http: bool = False) -> dict[str, str]:
    """The headers of a request to ``url``; ``Authorization`` only where :func:`key_allowed` says so."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key and key_allowed(url, send_key_over_http):
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


class OpenAIGenerator(Generator):
    """Client of an OpenAI-compatible ``/chat/completions`` endpoint."""

    backend = "openai"

    def __init__(self, spec: str, model: str, *, url: str, timeout: float = 120.0, retries: int = 3,
                 backoff: float = 1.0, concurrency: int = 4, api_key: str | None = None,
                 tokenizer: str | None = None, context_window: int | None = None, revision: str | None = None,
                 truncate: str | None = None, cache: Any = True, send_key_over_http: bool | None = None) -> None:
        super().__init__(spec, model, truncate=truncate, cache=cache, revision=revision)
        if not url.startswith(("http://", "https://")):
            raise HarnessError(f"generator {spec!r}: the URL must start with http:// or https://")
        if float(timeout) <= 0 or int(retries) < 0 or float(backoff) < 0 or int(concurrency) < 1:
            raise HarnessError(f"generator {spec!r}: need timeout > 0, retries >= 0, backoff >= 0, concurrency >= 1")
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.concurrency = int(concurrency)
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if send_key_over_http is None:
            send_key_over_http = os.environ.get(SEND_KEY_ENV, "").strip().lower() in ("1", "true", "yes", "on")
        if not isinstance(send_key_over_http, bool):
            raise HarnessError(f"generator {spec!r}: send_key_over_http must be true or false, got {send_key_over_http!r}")
        self.send_key_over_http = send_key_over_http
        if self.api_key and not key_allowed(self.url, send_key_over_http):
            log.warning("%s: API key withheld from plain-http %s (not loopback); set send_key_over_http=true or "
                        "%s=1 to send it anyway", spec, self.url, SEND_KEY_ENV)
        self._window: int | None = int(context_window) if context_window is not None else None
        self._window_probed = context_window is not None
        if tokenizer is not None:
            from harness.models.load import load_tokenizer

            self.tokenizer = load_tokenizer(tokenizer)

    # -- HTTP --------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> bytes:
        headers = request_headers(self.url, self.api_key, send_key_over_http=self.send_key_over_http)
        authorization = headers.pop("Authorization", None)
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        if authorization is not None:  # unredirected: urllib does not copy it to a redirect target
            request.add_unredirected_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace") if exc.fp is not None else ""
            message = f"HTTP {exc.code} from {self.url + path}: {detail}".strip()
            if exc.code in (408, 409, 425, 429) or exc.code >= 500:
                raise _Retryable(message) from None
            raise _Fatal(message) from None
        except TimeoutError as exc:
            raise _Retryable(f"timed out after {self.timeout:g} s ({exc})") from None
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"timed out after {self.timeout:g} s") from None
            raise _Retryable(f"cannot reach {self.url}: {reason}") from None

    def _complete(self, messages: Messages, max_tokens: int, temperature: float) -> Generation:
        payload = {"model": self.model, "messages": messages, "max_tokens": int(max_tokens),
                   "temperature": float(temperature), "top_p": 1.0, "n": 1, "stream": False}
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                text, finish = parse_completion(self._request("POST", "/chat/completions", payload))
                return Generation(text=text, finish_reason=finish)
            except _Fatal as exc:
                log.warning("%s: request failed, not retried: %s", self.spec, exc)
                return Generation(text="", error=str(exc))
            except _Retryable as exc:
                last = str(exc)
                log.warning("%s: attempt %d/%d failed: %s", self.spec, attempt + 1, self.retries + 1, last)
        return Generation(text="", error=f"gave up after {self.retries + 1} attempts: {last}")

    def _generate_many(self, prompts: list[Messages], *, max_tokens: int, temperature: float,
                       show_progress: bool) -> Iterator[tuple[int, Generation]]:
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(prompts)))) as pool:
            futures = {pool.submit(self._complete, p, max_tokens, temperature): i for i, p in enumerate(prompts)}
            for future in progress(as_completed(futures), total=len(futures), desc=f"generate {self.model}",
                                   show=show_progress, leave=False):
                yield futures[future], future.result()

    # -- limits ------------------------------------------------------------------------------------
    def context_window(self) -> int | None:
        if not self._window_probed:
            self._window_probed = True
            try:
                listing = json.loads(self._request("GET", "/models"))
                for entry in listing.get("data", []):
                    if entry.get("id") == self.model and entry.get("max_model_len"):
                        self._window = int(entry["max_model_len"])
            except (_Retryable, _Fatal, ValueError, AttributeError, TypeError) as exc:
                log.debug("%s: no context window from %s/models: %s", self.spec, self.url, exc)
        return self._window
