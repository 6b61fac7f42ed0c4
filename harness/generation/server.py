"""A small OpenAI-compatible server over the ``hf:`` backend (stdlib ``http.server``).

Serves ``GET /v1/models`` (with ``max_model_len``, as vLLM does) and
``POST /v1/chat/completions`` (non-streaming, ``n=1``, ``top_p=1``). Meant for tests, demos and
sharing one loaded model between processes on a machine, not for production serving::

    python -m harness.generation.server --model smollm2-135m --port 8000
    harness run ... --generate --generator openai:http://127.0.0.1:8000/v1#smollm2-135m

How it holds load:

- Each connection has a thread (listen backlog 128). A request's headers and body must arrive
  within ``--timeout`` seconds (else 408, or the connection is closed); bodies over
  ``--max-body-bytes`` get 413 unread.
- Requests are checked in their own thread (JSON, field types and ranges, the prompt's token
  count against the context window) and refused with OpenAI's error object
  ``{"error": {"message", "type", "param", "code"}}``: 400 for a bad request, 404 for an
  unknown path, 405 for a wrong method, 500 only for an internal error (logged on one line).
- Valid requests join one queue, served in arrival order by a single worker thread that owns
  the model. Consecutive waiting requests with the same ``max_tokens`` and ``temperature`` are
  generated together in one ``generate`` call (up to ``--max-batch``, default the generator's
  ``batch_size``). In float32, batched and one-by-one greedy answers are identical; in bfloat16
  they may differ (see :mod:`harness.generation.hf`): use ``--max-batch 1`` for bit-exact answers.
- While a request waits, its thread watches the client's socket. A client that hangs up is
  dropped from the queue, and a generation whose clients have all gone stops at the next
  decoding step (a forward pre-hook on the model), so the requests behind it are not kept waiting.

The server never caches: the client-side cache of :mod:`harness.generation` does that.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import logging
import math
import selectors
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.errors import HarnessError
from harness.generation.base import Generation, Generator, Messages, encode, render_chat, validate_messages

log = logging.getLogger(__name__)

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
MODEL_PATHS = ("/v1/models", "/models")
DEFAULT_MAX_TOKENS = 256


class ClientError(Exception):
    """A refused request: HTTP ``status`` and OpenAI's error object."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


class _Cancelled(Exception):
    """Raised inside the model's forward pass once every client of the running batch has gone."""


@dataclass(eq=False)
class Job:
    """One validated chat-completion request on its way through the queue."""

    messages: Messages
    max_tokens: int
    temperature: float
    prompt_tokens: int | None = None
    result: Generation | None = None
    error: ClientError | None = None
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def finish(self, result: Generation | None = None, error: ClientError | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


# -- request validation ----------------------------------------------------------------------------
def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _number(request: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = request.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ClientError(400, f"'{name}' must be a finite number, got {value!r}", param=name, code="invalid_type")
    if not low <= value <= high:
        raise ClientError(400, f"'{name}' must be between {low:g} and {high:g}, got {value!r}", param=name,
                          code="invalid_value")
    return float(value)


def _max_tokens(request: dict[str, Any]) -> int:
    chosen = None
    for name in ("max_completion_tokens", "max_tokens"):  # OpenAI's new name wins over the old one
        value = request.get(name)
        if value is None:
            continue
        if type(value) is not int or value < 1:
            raise ClientError(400, f"'{name}' must be an integer >= 1, got {value!r}", param=name, code="invalid_value")
        chosen = value if chosen is None else chosen
    return DEFAULT_MAX_TOKENS if chosen is None else chosen


def parse_request(body: bytes) -> Job:
    """The :class:`Job` of a chat-completions body; :class:`ClientError` (400) for anything invalid."""
    try:
        request = json.loads(body, parse_constant=_no_constant)  # NaN and Infinity are not JSON
    except (ValueError, RecursionError) as exc:
        raise ClientError(400, f"malformed JSON body: {exc}", code="invalid_json") from None
    if not isinstance(request, dict):
        raise ClientError(400, f"the body must be a JSON object, got {type(request).__name__}", code="invalid_json")
    try:
        messages = validate_messages(request.get("messages"), "'messages'")
    except HarnessError as exc:
        raise ClientError(400, str(exc), param="messages", code="invalid_value") from None
    for name, kinds in (("model", str), ("stream", bool), ("n", int)):
        value = request.get(name)
        if value is not None and (not isinstance(value, kinds) or (kinds is int and isinstance(value, bool))):
            raise ClientError(400, f"'{name}' must be a {kinds.__name__}, got {value!r}", param=name, code="invalid_type")
    if request.get("stream"):
        raise ClientError(400, "stream=true is not supported by this server", param="stream", code="unsupported_value")
    if request.get("n") not in (None, 1):
        raise ClientError(400, "only n=1 is supported by this server", param="n", code="unsupported_value")
    temperature = _number(request, "temperature", 1.0, 0.0, 2.0)
    if _number(request, "top_p", 1.0, 0.0, 1.0) != 1.0:
        raise ClientError(400, "only top_p=1 is supported by this server", param="top_p", code="unsupported_value")
    return Job(messages, _max_tokens(request), temperature)


class _DeadlineReader(io.RawIOBase):
    """Socket reads that fail with ``TimeoutError`` once the request's deadline has passed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.deadline = sock, math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(left)  # never above the per-socket timeout: the deadline is that far at most
        return self.sock.recv_into(buffer)


# -- HTTP ------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server: CompletionServer
    protocol_version = "HTTP/1.1"
    _body_read = False

    def log_message(self, format: str, *args: Any) -> None:  # route access logs through logging
        log.debug("%s - %s", self.address_string(), format % args)

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # per-socket timeout of every read and write
        super().setup()
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.deadline = time.monotonic() + self.server.request_timeout  # headers and body in time
        super().handle_one_request()

    def _send(self, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        try:
            self.connection.settimeout(self.server.request_timeout)
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                                **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError as exc:  # reset, broken pipe, or a client that does not read (timeout)
            log.info("client %s went away before the answer was sent (%s)", self.address_string(), exc)
            self.close_connection = True

    def _refuse(self, error: ClientError, close: bool = False, headers: dict[str, str] | None = None) -> None:
        self._send(error.status, error.body(), {**(headers or {}), **({"Connection": "close"} if close else {})})

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's errors (malformed request line or headers, unknown method) in OpenAI's shape."""
        self._refuse(ClientError(code, message or self.responses.get(code, ("error",))[0], code="invalid_request"),
                     close=True)

    def _route(self, allowed: tuple[str, ...]) -> bool:
        """True when this path is in ``allowed``; otherwise 404 or 405 has been sent."""
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in allowed:
            return True
        close = self.command != "GET"  # a body we did not read may follow
        other = [m for m, paths in (("GET", MODEL_PATHS), ("POST", CHAT_PATHS)) if path in paths and m != self.command]
        if other:
            self._refuse(ClientError(405, f"{self.command} is not allowed on {path}; use {other[0]}",
                                     code="method_not_allowed"), close, {"Allow": other[0]})
        else:
            self._refuse(ClientError(404, f"no route {path}", code="not_found"), close)
        return False

    def do_GET(self) -> None:
        if self._route(MODEL_PATHS):
            entry = {"id": self.server.model_name, "object": "model", "owned_by": "harness",
                     "max_model_len": self.server.generator.context_window()}
            self._send(200, {"object": "list", "data": [entry]})

    def do_PUT(self) -> None:
        self._route(())

    do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_PUT

    def do_POST(self) -> None:
        if not self._route(CHAT_PATHS):
            return
        try:
            job = parse_request(self._read_body())
            self.server.submit(job)
        except ClientError as exc:
            self._refuse(exc, close=not self._body_read)  # unread bytes would be taken as the next request
            return
        except Exception as exc:  # noqa: BLE001 - a bug of ours: 500, one log line, keep serving
            log.error("%s %s failed: %s: %s", self.command, self.path, type(exc).__name__, exc)
            self._refuse(ClientError(500, f"internal error: {type(exc).__name__}: {exc}", code="internal_error"))
            return
        if not self._wait(job):
            log.info("client %s went away; its request was dropped", self.address_string())
            self.close_connection = True
        elif job.error is not None:
            self._refuse(job.error)
        else:
            self._send(200, self.server.response(job))

    def _read_body(self) -> bytes:
        self._body_read = False
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower() or "Content-Length" not in self.headers:
            raise ClientError(411, "send the body with a Content-Length (chunked bodies are not supported)",
                              code="length_required")
        length = self.headers["Content-Length"].strip()
        if not (length.isascii() and length.isdigit() and len(length) <= 18):
            raise ClientError(400, f"bad Content-Length {length!r}", code="invalid_request")
        limit = self.server.max_body_bytes
        if int(length) > limit:
            raise ClientError(413, f"request body of {length} bytes exceeds the limit of {limit} bytes",
                              code="request_too_large")
        try:
            body = self.rfile.read(int(length))
        except TimeoutError:
            raise ClientError(408, f"request not received within {self.server.request_timeout:g} s",
                              code="timeout") from None
        if len(body) < int(length):
            raise ClientError(408, "the body ended before Content-Length bytes", code="timeout")
        self._body_read = True
        return body

    def _wait(self, job: Job) -> bool:
        """Wait for the worker; False (and ``job`` cancelled) when the client hangs up first."""
        with selectors.DefaultSelector() as watch:
            watch.register(self.connection, selectors.EVENT_READ)
            while not job.done.wait(0.05):
                if watch.select(0) and self._hung_up():
                    job.cancelled.set()
                    return False
        return True

    def _hung_up(self) -> bool:
        try:
            return not self.connection.recv(1, socket.MSG_PEEK)  # readable and empty: closed
        except OSError:
            return True


# -- server ----------------------------------------------------------------------------------------
class CompletionServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` answering chat completions with ``generator`` (one worker thread)."""

    daemon_threads = True
    request_queue_size = 128  # listen backlog

    def __init__(self, generator: Generator, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None,
                 *, timeout: float = 30.0, max_body_bytes: int = 8 << 20, max_batch: int | None = None,
                 max_queue: int = 1024) -> None:
        max_batch = int(max_batch or getattr(generator, "batch_size", 1))
        if not (timeout > 0 and max_body_bytes > 0 and max_batch > 0 and max_queue > 0):
            raise HarnessError("server: timeout, max_body_bytes, max_batch and max_queue must be > 0")
        super().__init__((host, port), _Handler)
        self.generator = generator
        self.model_name = model_name or generator.model
        self.request_timeout, self.max_body_bytes = float(timeout), int(max_body_bytes)
        self.max_batch, self.max_queue = max_batch, int(max_queue)
        # handler threads count tokens with a copy: the worker's tokenizer is never shared
        tokenizer = generator.tokenizer
        self._tokenizer = copy.deepcopy(tokenizer) if tokenizer is not None else None
        self._queue: deque[Job] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._running: list[Job] = []
        self._worker = threading.Thread(target=self._work, name="completion-worker", daemon=True)
        self._worker.start()

    @property
    def url(self) -> str:
        """Base URL for an ``openai:`` spec, e.g. ``http://127.0.0.1:8000/v1``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]  # called inside socketserver's except clause
        level = logging.DEBUG if isinstance(exc, OSError) else logging.ERROR  # a dropped client, or a bug of ours
        log.log(level, "connection from %s ended: %s: %s", client_address, type(exc).__name__, exc)

    def server_close(self) -> None:
        super().server_close()
        with self._wake:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._wake.notify_all()
        for job in pending + self._running:
            job.cancelled.set()
        for job in pending:
            job.finish(error=ClientError(503, "the server is shutting down", code="shutting_down"))
        self._worker.join(timeout=10)

    # -- handler side ----------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Check that ``job`` fits the context window (in the caller's thread), then queue it."""
        if self._tokenizer is not None:
            try:
                job.prompt_tokens = len(encode(self._tokenizer, render_chat(self._tokenizer, job.messages)))
            except HarnessError as exc:
                raise ClientError(400, str(exc), param="messages", code="invalid_value") from None
            window = self.generator.context_window()
            if window is not None and self.generator.truncate is None and job.prompt_tokens + job.max_tokens > window:
                raise ClientError(400, f"{job.prompt_tokens} prompt tokens + max_tokens {job.max_tokens} exceed the "
                                  f"context window of {window} tokens", param="messages", code="context_length_exceeded")
        with self._wake:
            if self._closed:
                raise ClientError(503, "the server is shutting down", code="shutting_down")
            if len(self._queue) >= self.max_queue:
                raise ClientError(503, f"{len(self._queue)} requests are waiting; try again later", code="server_busy")
            self._queue.append(job)
            self._wake.notify()

    def response(self, job: Job) -> dict[str, Any]:
        """The chat-completion object of a finished ``job``."""
        assert job.result is not None
        text = job.result.text
        completion = len(encode(self._tokenizer, text)) if self._tokenizer is not None else None
        total = job.prompt_tokens + completion if job.prompt_tokens is not None and completion is not None else None
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": job.result.finish_reason or "stop"}],
            "usage": {"prompt_tokens": job.prompt_tokens, "completion_tokens": completion, "total_tokens": total},
        }

    # -- worker side -----------------------------------------------------------------------------
    def _next_batch(self) -> list[Job] | None:
        """The oldest live job and the live jobs right behind it with the same sampling; None once closed."""
        with self._wake:
            batch: list[Job] = []
            while not batch:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return None
                while self._queue and len(batch) < self.max_batch:
                    job = self._queue[0]
                    if job.cancelled.is_set():
                        self._queue.popleft()
                    elif not batch or (job.max_tokens, job.temperature) == (batch[0].max_tokens, batch[0].temperature):
                        batch.append(self._queue.popleft())
                    else:
                        break
            return batch

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._running = batch
            try:
                self._run(batch)
            finally:
                self._running = []

    def _run(self, batch: list[Job]) -> None:
        try:
            with self._stop_when_abandoned(batch):
                out = self.generator.generate([job.messages for job in batch], max_tokens=batch[0].max_tokens,
                                              temperature=batch[0].temperature, show_progress=False)
        except _Cancelled:
            log.info("generation stopped: its %d client(s) went away", len(batch))
            for job in batch:
                job.finish(error=ClientError(503, "generation cancelled", code="cancelled"))
            return
        except Exception as exc:  # noqa: BLE001 - reported to the clients; the worker keeps serving
            if len(batch) > 1:  # one bad prompt must not fail the others: retry them one by one
                for job in batch:
                    self._run([job])
                return
            if isinstance(exc, HarnessError):
                batch[0].finish(error=ClientError(400, str(exc), param="messages", code="invalid_value"))
            else:
                log.error("generation failed: %s: %s", type(exc).__name__, exc)
                batch[0].finish(error=ClientError(500, f"generation failed: {type(exc).__name__}: {exc}",
                                                  code="internal_error"))
            return
        for job, generation in zip(batch, out):
            if generation.error is not None:
                log.error("generation failed: %s", generation.error)
                job.finish(error=ClientError(500, f"generation failed: {generation.error}", code="internal_error"))
            else:
                job.finish(generation)

    @contextmanager
    def _stop_when_abandoned(self, batch: list[Job]) -> Iterator[None]:
        """Raise :class:`_Cancelled` before the model's next forward pass once every job of ``batch`` is cancelled."""
        lm = getattr(self.generator, "lm", None)
        if not hasattr(lm, "register_forward_pre_hook"):
            yield
            return
        worker = threading.get_ident()

        def check(module: Any, args: Any) -> None:
            if threading.get_ident() == worker and all(job.cancelled.is_set() for job in batch):
                raise _Cancelled

        handle = lm.register_forward_pre_hook(check)  # type: ignore[union-attr]
        try:
            yield
        finally:
            handle.remove()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.generation.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="anything hf: accepts (default: smollm2-135m)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--served-model-name", default=None, help="model id clients send (default: --model)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds for a request's headers and body to arrive, and per socket write (default: 30)")
    parser.add_argument("--max-body-bytes", type=int, default=8 << 20, help="larger bodies get 413 (default: 8 MiB)")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="waiting requests generated together (default: the generator's batch_size; 1: never batch)")
    parser.add_argument("--max-queue", type=int, default=1024, help="waiting requests before 503 (default: 1024)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        from harness.generation import make_generator

        generator = make_generator(f"hf:{args.model}", device=args.device, dtype=args.dtype, cache=False)
        server = CompletionServer(generator, args.host, args.port, args.served_model_name, timeout=args.timeout,
                                  max_body_bytes=args.max_body_bytes, max_batch=args.max_batch, max_queue=args.max_queue)
    except (HarnessError, OSError) as exc:
        parser.exit(2, f"error: {exc}\n")
    log.info("serving %s at %s", server.model_name, server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
