"""Head detection: vectorised objectives against pytrec_eval and a plain loop."""

from __future__ import annotations

import json
import math

import pytest
import pytrec_eval
import torch

from harness.attention.detection import detect_heads, ndcg_at_k
from harness.attention.engine import AttentionEngine
from harness.attention.heads import ModelShape, resolve_heads
from harness.attention.prompts import detect_template
from harness.errors import HarnessError
from harness.types import Instance, Query

from .tiny import DOCS, tiny_model, tokenizer

QUERIES = {"q1": "what is the capital of France?", "q2": "where does the fox jump?", "q3": "cells", "q4": "nothing"}
QRELS = {"q1": {"d1": 1, "d4": 0}, "q2": {"d5": 2, "d4": 1, "zz-not-a-candidate": 1}, "q3": {"d2": 1}}


@pytest.fixture(scope="module")
def setup():
    model = tiny_model("qwen2", seed=3)
    instances = [Instance(Query(q, t), list(DOCS)) for q, t in QUERIES.items()]
    engine = AttentionEngine(model, tokenizer(), detect_template(model.config, tokenizer()), None)
    per_head = {q: engine.score_heads(DOCS, [t])[0] for q, t in QUERIES.items()}  # [docs, L, H]
    return model, instances, per_head


def test_ndcg_objective_equals_pytrec_eval_per_head(setup):
    model, instances, per_head = setup
    result = detect_heads(model, instances, QRELS, tokenizer=tokenizer(), objective="ndcg", shuffle=False, top=4)
    assert result["n"] == 3 and result["skipped"] == 1  # q4 has no qrels
    got = {label: score for label, score in result["heads"]}
    evaluator = pytrec_eval.RelevanceEvaluator(QRELS, {"ndcg_cut_10"})
    for layer in range(3):
        for head in range(4):
            run = {q: {d.id: float(per_head[q][i, layer, head]) for i, d in enumerate(DOCS)} for q in QRELS}
            expected = sum(v["ndcg_cut_10"] for v in evaluator.evaluate(run).values()) / 3
            assert abs(got[f"{layer}-{head}"] - expected) < 1e-9, (layer, head)
    scores = [s for _, s in result["heads"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 12 and result["top"] == 4


def test_gold_mass_objective_is_the_mean_gold_sum(setup, tmp_path):
    model, instances, per_head = setup
    gold_instances = [
        Instance(i.query, i.candidates, gold={k: v for k, v in QRELS.get(i.query.id, {}).items()}) for i in instances
    ]
    result = detect_heads(model, gold_instances, tokenizer=tokenizer(), objective="gold-mass", shuffle=False, top=3)
    assert result["n"] == 4  # queries without gold add 0 but count
    got = {label: score for label, score in result["heads"]}
    for layer in range(3):
        for head in range(4):
            total = 0.0
            for q in QUERIES:
                for i, d in enumerate(DOCS):
                    if QRELS.get(q, {}).get(d.id, 0) > 0:
                        total += float(per_head[q][i, layer, head])
            assert abs(got[f"{layer}-{head}"] - total / 4) < 1e-9
    path = tmp_path / "heads.json"
    path.write_text(json.dumps(result))
    sel = resolve_heads(str(path), ModelShape.from_config(model.config))
    assert sel.as_strings() == [label for label, _ in result["heads"][:3]]


def test_ndcg_ties_follow_trec_eval_docid_descending():
    scores = torch.tensor([[1.0], [1.0], [0.5]], dtype=torch.float64)  # docs a, b, c (sorted by id)
    rels = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    # tie a/b: trec_eval puts b first, so a is at rank 2
    ours = float(ndcg_at_k(scores, rels, [1.0])[0])
    assert abs(ours - 1 / math.log2(3)) < 1e-12
    trec = pytrec_eval.RelevanceEvaluator({"q": {"a": 1}}, {"ndcg_cut_10"}).evaluate(
        {"q": {"a": 1.0, "b": 1.0, "c": 0.5}}
    )
    assert abs(ours - trec["q"]["ndcg_cut_10"]) < 1e-9


def test_detection_shuffle_is_seeded_and_bad_objective_refused(setup):
    model, instances, _ = setup
    a = detect_heads(model, instances[:2], QRELS, tokenizer=tokenizer(), shuffle=True, seed=7)
    b = detect_heads(model, instances[:2], QRELS, tokenizer=tokenizer(), shuffle=True, seed=7)
    assert a["heads"] == b["heads"] and a["seed"] == 7
    with pytest.raises(HarnessError, match="unknown detection objective 'ndgc'"):
        detect_heads(model, instances, QRELS, tokenizer=tokenizer(), objective="ndgc")
    with pytest.raises(HarnessError, match="no usable query"):
        detect_heads(model, instances[3:], QRELS, tokenizer=tokenizer())


def test_interrupted_detection_resumes_from_its_file(setup, tmp_path):
    """Queries already in the resume file are read back, not run again; the result is unchanged."""
    from harness.resume import ResumeFile

    model, instances, _ = setup
    path = tmp_path / "detect.jsonl"
    whole = detect_heads(model, instances, QRELS, tokenizer=tokenizer(), shuffle=True, seed=3)
    # An "interrupted" run: only the first two queries finished.
    detect_heads(model, instances[:2], QRELS, tokenizer=tokenizer(), shuffle=True, seed=3, resume=ResumeFile(path))
    assert len(path.read_text().splitlines()) == 2
    resumed = detect_heads(model, instances, QRELS, tokenizer=tokenizer(), shuffle=True, seed=3,
                           resume=ResumeFile(path))
    assert len(path.read_text().splitlines()) == 3  # q4 has no qrels: skipped, never run
    for (name_a, a), (name_b, b) in zip(whole["heads"], resumed["heads"]):
        assert name_a == name_b and a == pytest.approx(b, rel=1e-9)
    # An edited entry fails its checksum: it is discarded and recomputed, never used.
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["scores"]["0-0"] += 3
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    edited = detect_heads(model, instances, QRELS, tokenizer=tokenizer(), shuffle=True, seed=3,
                          resume=ResumeFile(path))
    assert dict(edited["heads"])["0-0"] == pytest.approx(dict(whole["heads"])["0-0"], rel=1e-9)
    # The saved values really are used: a correctly sealed entry with another value moves the mean.
    rows = list(ResumeFile(path).done.values())  # the valid entries, one per query
    rows[0]["scores"]["0-0"] += 3
    rows[0]["sha256"] = ResumeFile(path)._seal(rows[0]["qid"], rows[0]["scores"], rows[0]["stats"])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sealed = detect_heads(model, instances, QRELS, tokenizer=tokenizer(), shuffle=True, seed=3,
                          resume=ResumeFile(path))
    assert dict(sealed["heads"])["0-0"] == pytest.approx(dict(whole["heads"])["0-0"] + 1.0)


def test_too_long_prompt_fails_before_detection_starts(tmp_path):
    from harness.resume import ResumeFile
    from harness.types import Document

    model = tiny_model("qwen2", seed=3)
    long_docs = [Document("l1", " ".join(["fox"] * 2000)), Document("l2", "Paris is in France.")]
    instances = [Instance(Query("q1", QUERIES["q1"]), list(DOCS)), Instance(Query("q2", "fox?"), long_docs)]
    path = tmp_path / "detect.jsonl"
    with pytest.raises(HarnessError, match=r"query q2: the prompt has \d+ tokens, more than the model's context"):
        detect_heads(model, instances, QRELS, tokenizer=tokenizer(), resume=ResumeFile(path))
    assert not path.exists()  # q1 was not scored first
