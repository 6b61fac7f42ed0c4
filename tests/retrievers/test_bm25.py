"""BM25: a pure-Python reference of the Lucene formula, rank_bm25 parity, ties, errors."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest

from harness.benchmarks import bm25 as bench
from harness.errors import HarnessError
from harness.registry import make_task
from harness.retrievers.bm25 import BM25Retriever
from harness.types import Document, Instance, Query


def lucene_reference(doc_tokens: dict[str, list[str]], query: list[str], k1: float, b: float) -> dict[str, float]:
    """Obviously-correct BM25 (Lucene variant): every doc that shares a term with the query."""
    n = len(doc_tokens)
    avgdl = sum(map(len, doc_tokens.values())) / n
    df = Counter(t for toks in doc_tokens.values() for t in set(toks))
    out: dict[str, float] = {}
    for doc, toks in doc_tokens.items():
        tf = Counter(toks)
        score = 0.0
        for term in query:
            if tf[term]:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf[term] / (tf[term] + k1 * (1 - b + b * len(toks) / avgdl))
        if score > 0:
            out[doc] = score
    return out


@pytest.fixture(scope="module")
def cranfield(shared_data: Path) -> tuple[dict[str, Document], list[Query]]:
    """The Cranfield abstracts (``.W``, which opens with the title) without separate titles, and the queries."""
    data = make_task("cranfield", data=str(shared_data)).load()
    assert data.corpus is not None
    return {d.id: Document(d.id, d.text) for d in data.corpus.values()}, data.queries


def test_scores_equal_the_lucene_formula(cranfield: tuple[dict[str, Document], list[Query]]) -> None:
    docs, queries = cranfield
    corpus = dict(list(docs.items())[:300])
    retriever = BM25Retriever(k1=0.9, b=0.4, show_progress=False)
    run = retriever.search(corpus, queries[:15], k=300)
    tokens = dict(zip(corpus, retriever.tokenize([d.text for d in corpus.values()])))
    for query in queries[:15]:
        expected = lucene_reference(tokens, retriever.tokenize([query.text])[0], 0.9, 0.4)
        assert set(run[query.id]) == set(expected), query.id  # exactly the matching documents
        for doc, score in run[query.id].items():
            assert score == pytest.approx(expected[doc], rel=1e-5)
        ranked = list(run[query.id])
        assert ranked == sorted(ranked, key=lambda d: (-run[query.id][d], d))


def test_identical_top10_with_rank_bm25_on_cranfield(cranfield: tuple[dict[str, Document], list[Query]]) -> None:
    """Parity on identical tokens: bm25s robertson vs rank_bm25 BM25Okapi(epsilon=0)."""
    docs, queries = cranfield
    retriever = BM25Retriever(method="robertson", show_progress=False)
    ids = list(docs)
    doc_tokens = retriever.tokenize([docs[d].text for d in ids])
    query_tokens = retriever.tokenize([q.text for q in queries])
    ours = bench.ours_top_k(ids, doc_tokens, query_tokens, 10, 0.9, 0.4)
    ref = bench.rank_bm25_top_k(ids, doc_tokens, query_tokens, 10, 0.9, 0.4)
    same = sum(a == r for a, r in zip(ours, ref))
    assert len(queries) == 225 and same / len(queries) >= 0.99, f"{same}/{len(queries)} identical"
    # The retriever's own search agrees with the index on the same method.
    run = retriever.search(docs, queries[:20], k=10)
    for query, top in zip(queries[:20], ours[:20]):
        assert list(run[query.id]) == top[: len(run[query.id])]


def test_ties_broken_by_doc_id_also_at_the_cut() -> None:
    texts = {"b": "apple pie", "c": "apple pie", "a": "apple pie", "d": "pear", "e": "apple apple pie"}
    retriever = BM25Retriever(show_progress=False)
    for order in (list(texts), sorted(texts), sorted(texts, reverse=True)):
        corpus = {d: Document(d, texts[d]) for d in order}
        run = retriever.search(corpus, [Query("q", "apple")], k=3)
        assert list(run["q"]) == ["e", "a", "b"]
        assert run["q"]["a"] == run["q"]["b"]


def test_stemming_stopwords_and_titles() -> None:
    corpus = {
        "1": Document("1", "the dog barked at night"),
        "2": Document("2", "a quiet evening", title="Barking"),
        "3": Document("3", "cats sleep"),
    }
    stemmed = BM25Retriever(show_progress=False).search(corpus, [Query("q", "barks"), Query("s", "the")], k=3)
    assert set(stemmed["q"]) == {"1", "2"}  # barked / Barking / barks share the stem; title indexed
    assert stemmed["s"] == {}  # only a stopword
    plain = BM25Retriever(stemmer=None, stopwords=None, show_progress=False).search(
        corpus, [Query("q", "barks"), Query("s", "the")], k=3
    )
    assert plain["q"] == {} and set(plain["s"]) == {"1"}


def test_score_candidates_uses_the_candidate_list_as_collection() -> None:
    docs = [
        Document("x", "solar wind and solar flares"),
        Document("y", "wind turbines"),
        Document("z", "tidal energy"),
    ]
    retriever = BM25Retriever(show_progress=False)
    instance = Instance(Query("q", "solar wind"), docs)
    empty = Instance(Query("e", "solar"), [])
    scores, none = list(retriever.score([instance, empty]))
    assert none == {}
    assert list(scores) == ["x", "y", "z"] and scores["z"] == 0.0
    assert scores["x"] > scores["y"] > 0
    run = retriever.search({d.id: d for d in docs}, [instance.query], k=3)
    assert run["q"] == pytest.approx({d: s for d, s in scores.items() if s > 0})


def test_bad_input() -> None:
    corpus = {"a": Document("a", "one"), "b": Document("b", "two")}
    retriever = BM25Retriever(show_progress=False)
    with pytest.raises(HarnessError, match="retrieval depth 0 must be at least 1"):
        retriever.search(corpus, [Query("q", "one")], k=0)
    with pytest.raises(HarnessError, match=r"retrieval depth 3 is larger than the corpus \(2 documents\)"):
        retriever.search(corpus, [Query("q", "one")], k=3)
    with pytest.raises(HarnessError, match="corpus is empty"):
        retriever.search({}, [Query("q", "one")], k=1)
    with pytest.raises(HarnessError, match="no queries"):
        retriever.search(corpus, [], k=1)
    with pytest.raises(HarnessError, match="unknown method"):
        BM25Retriever(method="okapi")
    with pytest.raises(HarnessError, match="unknown stemmer"):
        BM25Retriever(stemmer="klingon")
    with pytest.raises(HarnessError, match="unknown stopword list"):
        BM25Retriever(stopwords="klingon")
    with pytest.raises(HarnessError, match="k1 >= 0"):
        BM25Retriever(b=1.5)


def test_meta_records_parameters() -> None:
    meta = BM25Retriever(k1="1.2", show_progress=False).meta
    assert meta["name"] == "bm25" and meta["kind"] == "sparse"
    assert meta["params"] == {"k1": 1.2, "b": 0.4, "method": "lucene", "stemmer": "english", "stopwords": "en"}
    assert meta["revision"].startswith("bm25s==")


def test_bm25_re_ranking_its_own_top_k_reproduces_the_first_stage(tmp_path) -> None:
    """Re-ranking uses corpus statistics: BM25 over the BM25 top-20 is the first-stage ranking itself,
    not a strawman scored with the 20 candidates' own IDF and length."""
    from harness.results import Result
    from harness.runner import RunConfig, execute
    from tests.harness.conftest import write_beir

    data = write_beir(tmp_path / "toy", n_docs_per_topic=12, n_queries_per_topic=4)
    first, _ = execute(RunConfig(task=str(data), retriever="bm25", output=str(tmp_path / "a.json"), show_progress=False))
    again, _ = execute(RunConfig(task=str(data), retriever="bm25", first_stage="bm25", depth=20, truncate_words=5,
                                 output=str(tmp_path / "b.json"), show_progress=False))
    assert again.retriever.extra["statistics"] == "corpus"
    for qid, values in (first.per_query or {}).items():
        assert again.per_query[qid]["nDCG@10"] == pytest.approx(values["nDCG@10"], abs=1e-12), qid
    assert Result.from_json(tmp_path / "b.json").validate(tmp_path / "b.json") is not None
