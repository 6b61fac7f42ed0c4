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
An ``api_key`` option, or the ``OPENAI_API_KEY`` environment variable, is sent as a bearer token.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from harness.errors import HarnessError
from harness.generation.base import Generation, Generator, Messages, progress

log = logging.getLogger(__name__)


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


class OpenAIGenerator(Generator):
    """Client of an OpenAI-compatible ``/chat/completions`` endpoint."""

    backend = "openai"

    def __init__(self, spec: str, model: str, *, url: str, timeout: float = 120.0, retries: int = 3,
                 backoff: float = 1.0, concurrency: int = 4, api_key: str | None = None,
                 tokenizer: str | None = None, context_window: int | None = None, revision: str | None = None,
                 truncate: str | None = None, cache: Any = True) -> None:
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
        self._window: int | None = int(context_window) if context_window is not None else None
        self._window_probed = context_window is not None
        if tokenizer is not None:
            from harness.models import load_tokenizer

            self.tokenizer = load_tokenizer(tokenizer)

    # -- HTTP --------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
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
                                   show=show_progress):
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
