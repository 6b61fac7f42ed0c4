"""First-stage cache: hits, misses on any change, corrupt files, order preserved."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from harness.first_stage import cache_key, cache_path, cached_search, corpus_sha256
from harness.retrievers.bm25 import BM25Retriever
from harness.types import Document, Query, Run


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an empty first-stage cache."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


class CountingBM25(BM25Retriever):
    """The real BM25 retriever, counting how often it actually searches."""

    def __init__(self, **params: object) -> None:
        super().__init__(show_progress=False, **params)  # type: ignore[arg-type]
        self.calls = 0

    def search(self, corpus: Mapping[str, Document], queries: Sequence[Query], k: int) -> Run:
        self.calls += 1
        return super().search(corpus, queries, k)


CORPUS = {
    "d3": Document("d3", "heat transfer in laminar boundary layers"),
    "d1": Document("d1", "boundary layer transition at high speed", title="Transition"),
    "d2": Document("d2", "supersonic flow over a flat plate boundary"),
    "d4": Document("d4", "the lift of a wing in a slipstream"),
}
QUERIES = [Query("q2", "boundary layer heat"), Query("q1", "wing lift"), Query("q3", "zebra")]


def test_cache_hit_returns_the_same_run_without_searching(caplog: pytest.LogCaptureFixture) -> None:
    retriever = CountingBM25()
    first = cached_search(retriever, CORPUS, QUERIES, 3)
    assert retriever.calls == 1
    assert list(first) == ["q2", "q1", "q3"] and first["q3"] == {}
    assert first == retriever.search(CORPUS, QUERIES, 3)
    retriever.calls = 0
    with caplog.at_level(logging.INFO, logger="harness.first_stage"):
        again = cached_search(retriever, CORPUS, QUERIES, 3)
    assert retriever.calls == 0 and "cache hit" in caplog.text
    assert again == first
    for qid in first:  # ranking order survives the round trip
        assert list(again[qid]) == list(first[qid])
    # A fresh retriever object with the same parameters shares the cache.
    other = CountingBM25()
    assert cached_search(other, dict(reversed(list(CORPUS.items()))), QUERIES, 3) == first and other.calls == 0
    leftovers = [p.name for p in cache_path("x").parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize(
    "change",
    ["k", "query text", "query order", "document text", "title", "retriever params"],
)
def test_any_change_misses_the_cache(change: str) -> None:
    retriever = CountingBM25()
    cached_search(retriever, CORPUS, QUERIES, 3)
    corpus, queries, k = dict(CORPUS), list(QUERIES), 3
    if change == "k":
        k = 2
    elif change == "query text":
        queries[0] = Query("q2", "boundary layer heating")
    elif change == "query order":
        queries = queries[::-1]
    elif change == "document text":
        corpus["d4"] = Document("d4", "the lift of a wing in a propeller slipstream")
    elif change == "title":
        corpus["d1"] = Document("d1", "boundary layer transition at high speed", title="Other")
    else:
        retriever = CountingBM25(k1=1.2)
    retriever.calls = 0
    run = cached_search(retriever, corpus, queries, k)
    assert retriever.calls == 1
    assert list(run) == [q.id for q in queries]


def test_corrupt_cache_file_is_recomputed(caplog: pytest.LogCaptureFixture) -> None:
    retriever = CountingBM25()
    first = cached_search(retriever, CORPUS, QUERIES, 2)
    path = cache_path(cache_key(retriever, corpus_sha256(CORPUS), QUERIES, 2))
    path.write_text('{"key": "trunc', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="harness.first_stage"):
        again = cached_search(retriever, CORPUS, QUERIES, 2)
    assert "unreadable" in caplog.text and retriever.calls == 2 and again == first
    assert cached_search(retriever, CORPUS, QUERIES, 2) == first and retriever.calls == 2  # rewritten


def test_corpus_hash_ignores_order_and_sees_content() -> None:
    base = corpus_sha256(CORPUS)
    assert base == corpus_sha256(dict(sorted(CORPUS.items())))
    assert len(base) == 64
    changed = dict(CORPUS, d4=Document("d4", "the lift of a wing in a slipstream", title="Wing"))
    assert corpus_sha256(changed) != base
    renamed = {("x" + k): Document("x" + k, d.text, d.title) for k, d in CORPUS.items()}
    assert corpus_sha256(renamed) != base


def test_caller_supplied_corpus_hash_is_used() -> None:
    retriever = CountingBM25()
    digest = corpus_sha256(CORPUS)
    first = cached_search(retriever, CORPUS, QUERIES, 3, corpus_hash=digest)
    assert cached_search(retriever, CORPUS, QUERIES, 3) == first and retriever.calls == 1
