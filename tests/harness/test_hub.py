"""Without a network, tasks and models that load by id fail at once with one line."""

from __future__ import annotations

import time

import pytest

from harness.errors import HarnessError
from harness.hub import require_hub


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch):
    """Online mode with a hub that cannot be reached (nothing listens on 127.0.0.1:9)."""
    from harness import hub

    for name in hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(hub, "_probe", {})
    return hub


def test_no_network_names_the_upstream_and_the_alternative(cli, no_network) -> None:
    started = time.monotonic()
    res = cli("run", "--task", "beir/scifact", "--retriever", "bm25")
    assert res.code == 2 and time.monotonic() - started < 5
    (line,) = [x for x in res.err.splitlines() if x.strip()]
    assert "BeIR/scifact" in line and "cannot reach 127.0.0.1" in line and "--data DIR" in line


@pytest.mark.parametrize("task", ["longmemeval", "clipper", "hotpotqa", "musique", "2wikimultihopqa"])
def test_every_hub_task_fails_fast_without_network(cli, no_network, task: str) -> None:
    started = time.monotonic()
    res = cli("run", "--task", task, "--retriever", "bm25")
    assert res.code == 2 and time.monotonic() - started < 5, res.err
    assert "from the Hugging Face hub" in res.err and "--data" in res.err


def test_an_unreachable_hub_is_probed_once(no_network) -> None:
    started = time.monotonic()
    for _ in range(3):
        with pytest.raises(HarnessError, match=r"model org/some-model: needs org/some-model .* cannot reach 127\.0\.0\.1"):
            require_hub("model org/some-model", "org/some-model", "use an offline alias")
    assert time.monotonic() - started < 5 and list(no_network._probe) == ["127.0.0.1:9"]


def test_a_hub_model_that_cannot_be_downloaded_names_the_offline_aliases(cli, no_network) -> None:
    res = cli("run", "--task", "niah", "--retriever", "qr", "--model", "meta-llama/Llama-3.1-8B-Instruct")
    assert res.code == 2 and "smollm2-135m" in res.err
