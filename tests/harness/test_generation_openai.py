"""The openai: backend against real HTTP servers on 127.0.0.1: ours over the hf: backend
(SmolLM2-135M-Instruct, real weights) and a tiny misbehaving one (garbage, HTTP 500, hangs)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.generation import make_generator
from harness.generation.hf import HFGenerator
from harness.generation.server import CompletionServer

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer in one short sentence."}, {"role": "user", "content": "Name a fruit."}],
]


@pytest.fixture(scope="module")
def hf_backend():
    from harness.models import load_causal_lm

    return HFGenerator.from_loaded("hf:smollm2-135m", *load_causal_lm("smollm2-135m", device="cpu"), cache=False)


def serve(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


def stop(server: ThreadingHTTPServer, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.slow
def test_openai_client_through_our_server_equals_hf_and_then_hits_the_cache(hf_backend):
    server = CompletionServer(hf_backend, "127.0.0.1", 0, model_name="smollm2-135m")
    thread = serve(server)
    try:
        client = make_generator(f"openai:{server.url}#smollm2-135m", concurrency=2, retries=1, backoff=0.01)
        assert client.context_window() == 8192  # read from GET /v1/models (max_model_len)
        remote = client.generate(PROMPTS, max_tokens=12, show_progress=False)
        local = hf_backend.generate(PROMPTS, max_tokens=12, show_progress=False)
        assert [g.error for g in remote] == [None, None]
        assert [g.text for g in remote] == [g.text for g in local]
        assert [g.finish_reason for g in remote] == [g.finish_reason for g in local]
        assert "Paris" in remote[0].text and not any(g.cached for g in remote)

        # malformed requests get a 400 with a JSON error, and the server keeps serving
        bad = urllib.request.Request(server.url + "/chat/completions", data=b'{"messages": [{"role": "bot"}]}',
                                     headers={"Content-Type": "application/json"}, method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=10)
        assert err.value.code == 400 and "role 'bot'" in json.loads(err.value.read())["error"]["message"]
    finally:
        stop(server, thread)

    # the server is gone: the same prompts come from the cache without any contact
    offline = make_generator(f"openai:{server.url}#smollm2-135m", retries=0, timeout=2)
    again = offline.generate(PROMPTS, max_tokens=12, show_progress=False)
    assert [g.cached for g in again] == [True, True]
    assert [g.text for g in again] == [g.text for g in remote]
    # ... while a new prompt fails (connection refused), is recorded, and does not raise
    new = offline.generate([[{"role": "user", "content": "Say hi."}]], max_tokens=4, show_progress=False)[0]
    assert new.text == "" and "cannot reach" in new.error and not new.cached


class _BadHandler(BaseHTTPRequestHandler):
    """Misbehaves by path prefix: /garbage, /http500, /hang, /flaky (500 once, then fine), /reject (400)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def _reply(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the "hang" mode)
            pass

    def do_GET(self):
        self._reply(404, b"{}")

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = self.path.split("/")[1]
        self.server.hits[mode] += 1
        good = json.dumps({"choices": [{"message": {"role": "assistant", "content": "ok " + request["messages"][-1]["content"]},
                                        "finish_reason": "stop"}]}).encode()
        if mode == "garbage":
            self._reply(200, b"<html>not json")
        elif mode == "http500":
            self._reply(500, b'{"error": "boom"}')
        elif mode == "hang":
            time.sleep(1.0)  # longer than the client's timeout; bounded so the thread ends
            self._reply(200, good)
        elif mode == "flaky":
            self._reply(500 if self.server.hits[mode] == 1 else 200, b"{}" if self.server.hits[mode] == 1 else good)
        elif mode == "reject":
            self._reply(400, b'{"error": {"message": "context too long"}}')
        elif mode == "mixed":  # fails only the prompts that ask for it
            self._reply(500, b"{}") if "fail" in request["messages"][-1]["content"] else self._reply(200, good)


@pytest.fixture()
def bad_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BadHandler)
    server.daemon_threads = True
    server.hits = Counter()
    thread = serve(server)
    yield server
    stop(server, thread)


def _client(server, mode: str, **options):
    host, port = server.server_address[:2]
    return make_generator(f"openai:http://{host}:{port}/{mode}/v1#tiny", backoff=0.01, cache=False, **options)


@pytest.mark.parametrize("mode, message", [("garbage", "malformed completion"), ("http500", "HTTP 500"),
                                           ("hang", "timed out")])
def test_misbehaving_server_is_retried_then_recorded_as_failure(bad_server, mode, message):
    client = _client(bad_server, mode, retries=2, timeout=0.3)
    out = client.generate([[{"role": "user", "content": "q"}]], max_tokens=4, show_progress=False)[0]
    assert out.text == "" and out.error.startswith("gave up after 3 attempts") and message in out.error
    assert bad_server.hits[mode] == 3


def test_retry_recovers_and_4xx_is_not_retried(bad_server):
    out = _client(bad_server, "flaky", retries=2).generate([[{"role": "user", "content": "q"}]], show_progress=False)[0]
    assert out.error is None and out.text == "ok q" and bad_server.hits["flaky"] == 2
    out = _client(bad_server, "reject", retries=2).generate([[{"role": "user", "content": "q"}]], show_progress=False)[0]
    assert "HTTP 400" in out.error and "context too long" in out.error and bad_server.hits["reject"] == 1


def test_failures_do_not_stop_the_run_and_are_not_cached(bad_server):
    client = _client(bad_server, "mixed", retries=1, concurrency=3)
    client._cache = None
    prompts = [[{"role": "user", "content": c}] for c in ("a", "fail b", "c")]
    out = client.generate(prompts, max_tokens=4, show_progress=False)
    assert [g.text for g in out] == ["ok a", "", "ok c"]
    assert out[1].error is not None and out[0].error is None
    assert bad_server.hits["mixed"] == 4  # a, c once; "fail b" twice
