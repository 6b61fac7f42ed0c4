"""harness.generation.server under load and abuse, on 127.0.0.1 with a tiny random-weight model:
concurrency, cancellation of abandoned generations, body cap, slow clients, strict validation;
and the openai: client's rule for where an API key may be sent."""

from __future__ import annotations

import json
import logging
import math
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.generation import make_generator
from harness.generation.hf import HFGenerator
from harness.generation.openai_api import key_allowed, request_headers
from harness.generation.server import CompletionServer
from tests.harness.attention.tiny import tiny_model, tokenizer
from tests.harness.test_generation_openai import serve, stop

ASK = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def backend():
    model = tiny_model("llama", max_position_embeddings=2048)
    return HFGenerator.from_loaded("hf:tiny", model, tokenizer(), cache=False)


@pytest.fixture()
def start(backend):
    """``start(**options)`` -> a running server on 127.0.0.1; all are stopped after the test."""
    running = []

    def _start(**options):
        server = CompletionServer(backend, "127.0.0.1", 0, model_name="tiny", **options)
        running.append((server, serve(server)))
        return server

    yield _start
    for server, thread in running:
        stop(server, thread)


def post(server, body, timeout: float = 20.0, path: str = "/chat/completions", method: str = "POST"):
    """``(status, headers, parsed body)``; ``body`` is an object to encode or raw bytes."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read())


def raw(server, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(server.server_address[:2], timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def head(length: int) -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def assert_error_shape(body, status: int) -> dict:
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    return error


def test_64_concurrent_requests_are_all_answered(start):
    server = start()
    payload = {"model": "tiny", "messages": ASK, "max_tokens": 3, "temperature": 0}
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=64) as pool:
        answers = list(pool.map(lambda _: post(server, payload, timeout=30), range(64)))
    elapsed = time.monotonic() - began
    assert [status for status, _, _ in answers] == [200] * 64
    assert len({body["choices"][0]["message"]["content"] for _, _, body in answers}) == 1  # greedy: batching agrees
    assert elapsed < 30
    status, _, body = post(server, payload)  # still serving afterwards
    assert status == 200 and body["choices"][0]["finish_reason"] == "length" and body["usage"]["prompt_tokens"] > 0


def test_abandoned_long_generation_stops_and_the_next_request_is_served(start, backend):
    lm, eos = backend.lm, backend.stop_ids
    steps = []

    def slow(module, args):  # 10 ms per decoding step: 1,000 tokens would take 10 s or more
        steps.append(time.monotonic())
        time.sleep(0.01)

    def no_eos(module, args, output):  # random weights must not stop early by chance
        output[..., eos] = -math.inf

    hooks = [lm.register_forward_pre_hook(slow), lm.lm_head.register_forward_hook(no_eos)]
    try:
        server = start()
        body = json.dumps({"messages": ASK, "max_tokens": 1000, "temperature": 0}).encode()
        sock = socket.create_connection(server.server_address[:2], timeout=5)
        sock.sendall(head(len(body)) + body)
        deadline = time.monotonic() + 10
        while len(steps) < 5 and time.monotonic() < deadline:  # generation has started
            time.sleep(0.01)
        assert len(steps) >= 5
        sock.close()
        closed_at, steps_at_close = time.monotonic(), len(steps)
        status, _, answer = post(server, {"messages": ASK, "max_tokens": 3, "temperature": 0}, timeout=15)
        waited = time.monotonic() - closed_at
    finally:
        for hook in hooks:
            hook.remove()
    assert status == 200 and answer["choices"][0]["finish_reason"] == "length"
    assert waited < 3, f"the short request waited {waited:.1f} s behind an abandoned one"
    assert len(steps) - steps_at_close < 40  # a few steps of the long one, then the 3-token one


def test_body_over_the_cap_is_413(start):
    server = start(max_body_bytes=2000)
    reply = raw(server, head(5000))  # the body is never read: 413 at once, then the connection closes
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert_error_shape(json.loads(reply.split(b"\r\n\r\n", 1)[1]), 413)
    status, _, _ = post(server, {"messages": ASK, "max_tokens": 2})
    assert status == 200


def test_slow_or_short_requests_are_dropped_within_the_timeout(start):
    server = start(timeout=0.5)
    began = time.monotonic()
    reply = raw(server, head(100) + b'{"messages": ', timeout=5)  # a body shorter than announced
    assert reply.startswith(b"HTTP/1.1 408 ") and time.monotonic() - began < 3

    began = time.monotonic()  # headers that never end: one line every 0.1 s
    with socket.create_connection(server.server_address[:2], timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")
        closed = False
        for i in range(50):  # 5 s at most
            try:
                sock.sendall(f"X-Slow-{i}: y\r\n".encode())
                sock.settimeout(0.1)
                closed = sock.recv(1024) == b""
            except TimeoutError:
                continue
            except OSError:  # reset by the server
                closed = True
            if closed:
                break
    assert closed and time.monotonic() - began < 3
    assert post(server, {"messages": ASK, "max_tokens": 2})[0] == 200


BAD = {
    "not JSON": b"{not json",
    "a list": b"[1, 2]",
    "NaN temperature": b'{"messages": [{"role": "user", "content": "q"}], "temperature": NaN}',
    "Infinity top_p": b'{"messages": [{"role": "user", "content": "q"}], "top_p": Infinity}',
    "overflowing temperature": b'{"messages": [{"role": "user", "content": "q"}], "temperature": 1e999}',
    "messages a string": {"messages": "hi"},
    "no content": {"messages": [{"role": "user"}]},
    "content not a string": {"messages": [{"role": "user", "content": 5}]},
    "bad role": {"messages": [{"role": "bot", "content": "x"}]},
    "max_tokens 0": {"messages": ASK, "max_tokens": 0},
    "max_tokens float": {"messages": ASK, "max_tokens": 1.5},
    "max_tokens string": {"messages": ASK, "max_tokens": "4"},
    "max_tokens bool": {"messages": ASK, "max_tokens": True},
    "max_completion_tokens -1": {"messages": ASK, "max_completion_tokens": -1},
    "temperature negative": {"messages": ASK, "temperature": -0.1},
    "temperature too high": {"messages": ASK, "temperature": 3},
    "temperature string": {"messages": ASK, "temperature": "hot"},
    "top_p 0.5": {"messages": ASK, "top_p": 0.5},
    "n 2": {"messages": ASK, "n": 2},
    "stream": {"messages": ASK, "stream": True},
    "stream string": {"messages": ASK, "stream": "yes"},
    "model number": {"messages": ASK, "model": 5},
    "too long for the window": {"messages": [{"role": "user", "content": "fox " * 3000}], "max_tokens": 4},
}


@pytest.fixture(scope="module")
def shared_server(backend):
    server = CompletionServer(backend, "127.0.0.1", 0, model_name="tiny", timeout=10)
    thread = serve(server)
    yield server
    stop(server, thread)


@pytest.mark.parametrize("name", list(BAD))
def test_bad_requests_are_400_with_openai_error_shape(shared_server, name):
    status, _, body = post(shared_server, BAD[name])
    assert status == 400, body
    error = assert_error_shape(body, 400)
    field = name.split()[0]
    if field in ("temperature", "top_p", "max_completion_tokens", "max_tokens", "stream", "model", "n", "messages"):
        assert error["param"] == field


def test_routes_methods_and_internal_errors(shared_server, backend, monkeypatch, caplog):
    status, _, body = post(shared_server, b"", path="/models", method="GET")
    assert status == 200 and body["data"][0]["max_model_len"] == 2048
    assert post(shared_server, b"", path="/nothing", method="GET")[0] == 404
    status, headers, body = post(shared_server, b"", path="/chat/completions", method="GET")
    assert status == 405 and headers["Allow"] == "POST" and assert_error_shape(body, 405)["code"] == "method_not_allowed"
    assert post(shared_server, {"x": 1}, path="/models")[0] == 405
    assert post(shared_server, {"x": 1}, method="PUT")[0] == 405

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(backend, "generate", boom)
    with caplog.at_level(logging.ERROR, logger="harness.generation.server"):
        status, _, body = post(shared_server, {"messages": ASK, "max_tokens": 2})
    assert status == 500 and assert_error_shape(body, 500)["code"] == "internal_error"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == ["generation failed: RuntimeError: boom"]
    monkeypatch.undo()
    assert post(shared_server, {"messages": ASK, "max_tokens": 2})[0] == 200


# -- the openai: client's API key ------------------------------------------------------------------
@pytest.mark.parametrize("url, sent", [
    ("http://example.invalid/v1", False),
    ("http://10.0.0.5:8000/v1", False),
    ("http://127.0.0.1:8000/v1", True),
    ("http://127.1.2.3:8000/v1", True),
    ("http://localhost:8000/v1", True),
    ("http://[::1]:8000/v1", True),
    ("https://example.invalid/v1", True),
])
def test_api_key_goes_only_to_https_or_loopback(url, sent):
    assert ("Authorization" in request_headers(url, "sk-secret")) is sent
    assert request_headers(url, "sk-secret", send_key_over_http=True)["Authorization"] == "Bearer sk-secret"
    assert "Authorization" not in request_headers(url, None)
    assert key_allowed(url) is sent


def test_withheld_key_is_one_warning_and_opt_in_sends_it(monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.delenv("HARNESS_SEND_KEY_OVER_HTTP", raising=False)
    with caplog.at_level(logging.WARNING, logger="harness.generation.openai_api"):
        client = make_generator("openai:http://example.invalid/v1#m", cache=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "withheld" in warnings[0] and "sk-secret" not in warnings[0]
    assert client.send_key_over_http is False
    assert make_generator("openai:http://example.invalid/v1#m", cache=False, send_key_over_http=True).send_key_over_http
    monkeypatch.setenv("HARNESS_SEND_KEY_OVER_HTTP", "1")
    assert make_generator("openai:http://example.invalid/v1#m", cache=False).send_key_over_http is True


def test_key_reaches_a_loopback_server_but_not_a_redirect(monkeypatch):
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            if self.path == "/v1/models":  # same host, but a redirect never carries the key
                self.send_response(302)
                self.send_header("Location", "/other/models")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b'{"data": []}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = serve(server)
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
        client = make_generator(f"openai:http://127.0.0.1:{server.server_address[1]}/v1#m", cache=False, retries=0)
        assert client.context_window() is None
    finally:
        stop(server, thread)
    assert seen == [("/v1/models", "Bearer sk-secret"), ("/other/models", None)]

