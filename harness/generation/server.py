"""A small OpenAI-compatible server over the ``hf:`` backend (stdlib ``http.server``).

Serves ``GET /v1/models`` (with ``max_model_len``, as vLLM does) and
``POST /v1/chat/completions`` (non-streaming, ``n=1``). Requests are handled by one thread each
and generated one at a time under a lock (the model is not re-entrant). Meant for tests, demos
and sharing one loaded model between processes on a machine, not for production serving::

    python -m harness.generation.server --model smollm2-135m --port 8000
    harness run ... --generate --generator openai:http://127.0.0.1:8000/v1#smollm2-135m

The server never caches: the client-side cache of :mod:`harness.generation` does that.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.errors import HarnessError
from harness.generation.base import Generator, encode, validate_messages

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server: CompletionServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # route access logs through logging
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, obj: dict[str, Any]) -> None:
        body = json.dumps(obj).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            log.info("client %s went away before the answer was sent", self.address_string())

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error"}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            window = self.server.generator.context_window()
            entry = {"id": self.server.model_name, "object": "model", "owned_by": "harness", "max_model_len": window}
            self._send(200, {"object": "list", "data": [entry]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route {self.path}")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"null")
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")  # noqa: TRY004 - reported as a 400 below
        except ValueError as exc:
            self._error(400, f"malformed JSON body: {exc}")
            return
        try:
            response = self.server.complete(request)
        except HarnessError as exc:
            self._error(400, str(exc))
            return
        except Exception as exc:  # a generation crash is the server's fault: 500, keep serving
            log.exception("generation failed")
            self._error(500, f"{type(exc).__name__}: {exc}")
            return
        self._send(200, response)


class CompletionServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` answering chat completions with ``generator``."""

    daemon_threads = True

    def __init__(self, generator: Generator, host: str = "127.0.0.1", port: int = 8000, model_name: str | None = None) -> None:
        super().__init__((host, port), _Handler)
        self.generator = generator
        self.model_name = model_name or generator.model
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """Base URL for an ``openai:`` spec, e.g. ``http://127.0.0.1:8000/v1``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        messages = validate_messages(request.get("messages"), "field 'messages'")
        if request.get("stream"):
            raise HarnessError("stream=true is not supported by this server")
        if int(request.get("n") or 1) != 1:
            raise HarnessError("only n=1 is supported by this server")
        max_tokens = request.get("max_completion_tokens") or request.get("max_tokens") or 256
        temperature = request.get("temperature")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise HarnessError(f"field 'max_tokens' must be a positive integer, got {max_tokens!r}")
        temperature = 1.0 if temperature is None else temperature
        if not isinstance(temperature, (int, float)) or temperature < 0:
            raise HarnessError(f"field 'temperature' must be a number >= 0, got {temperature!r}")
        with self._lock:
            generation = self.generator.generate([messages], max_tokens=max_tokens, temperature=float(temperature),
                                                 show_progress=False)[0]
            prompt_tokens = self.generator.count_tokens(messages)
            tokenizer = self.generator.tokenizer
            completion_tokens = len(encode(tokenizer, generation.text)) if tokenizer is not None else None
        if generation.error is not None:
            raise RuntimeError(generation.error)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": generation.text},
                         "finish_reason": generation.finish_reason or "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": (prompt_tokens + completion_tokens)
                      if prompt_tokens is not None and completion_tokens is not None else None},
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.generation.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="anything hf: accepts (default: smollm2-135m)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--served-model-name", default=None, help="model id clients send (default: --model)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        from harness.generation import make_generator

        generator = make_generator(f"hf:{args.model}", device=args.device, dtype=args.dtype, cache=False)
        server = CompletionServer(generator, args.host, args.port, args.served_model_name)
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
