"""Metrics: hand-computed values, the tie rule, and parity with pytrec_eval on random runs."""

from __future__ import annotations

import math
import random

import pytest
import pytrec_eval

from harness.errors import HarnessError
from harness.metrics import aggregate, canonical_metric, evaluate, parse_metric

# q1: graded labels; d4 is relevant but never retrieved; d3 is judged non-relevant.
QRELS = {
    "q1": {"d1": 3, "d2": 2, "d3": 0, "d4": 1},
    "q2": {"d9": 0},  # judged, but nothing relevant: empty gold set
    "q3": {"d1": 1},  # absent from the run
}
RUN = {
    "q1": {"d3": 3.0, "d2": 2.0, "d1": 1.0, "d5": 0.5},
    "q2": {"d9": 1.0},
    "qx": {"d1": 1.0},  # not in the qrels: ignored
}


def test_parse_metric_names() -> None:
    assert parse_metric("nDCG@10") == ("nDCG", 10)
    assert parse_metric("ndcg@10") == ("nDCG", 10)
    assert parse_metric("MAP") == ("MAP", None)
    assert parse_metric("R_all@5") == ("R_all", 5)
    assert canonical_metric("mrr@10") == "MRR@10"
    with pytest.raises(HarnessError, match="did you mean 'nDCG@10'"):
        parse_metric("nDGC@10")
    with pytest.raises(HarnessError, match="needs a cutoff"):
        parse_metric("R")
    with pytest.raises(HarnessError, match="positive integer"):
        parse_metric("P@0")
    with pytest.raises(HarnessError, match="positive integer"):
        parse_metric("nDCG@ten")


def test_graded_ndcg_by_hand() -> None:
    result = evaluate(QRELS, RUN, ["nDCG@3", "nDCG@1", "nDCG"])
    dcg3 = 0 / math.log2(2) + 2 / math.log2(3) + 3 / math.log2(4)
    idcg3 = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert result.per_query["q1"]["nDCG@3"] == pytest.approx(dcg3 / idcg3)
    assert result.per_query["q1"]["nDCG@1"] == 0.0
    # Whole ranking: d5 unjudged adds nothing; the ideal ranking holds all three relevant docs.
    assert result.per_query["q1"]["nDCG"] == pytest.approx(dcg3 / idcg3)
    # q2 (no relevant document) is skipped; q3 (relevant doc, empty result) counts 0.
    assert set(result.per_query) == {"q1", "q3"}
    assert result.per_query["q3"]["nDCG@3"] == 0.0
    assert result.aggregate["nDCG@3"] == pytest.approx(dcg3 / idcg3 / 2)


def test_mrr_cutoff_map_precision_recall_by_hand() -> None:
    result = evaluate(QRELS, RUN, ["MRR@1", "MRR@2", "MRR", "MAP", "P@2", "R@2", "R@3", "MAP@2"])
    q1 = result.per_query["q1"]
    assert q1["MRR@1"] == 0.0  # d3 (rel 0) is first; the first relevant doc, d2, is at rank 2
    assert q1["MRR@2"] == pytest.approx(0.5)
    assert q1["MRR"] == pytest.approx(0.5)
    # Relevant {d1, d2, d4}; hits at ranks 2 and 3; d4 never retrieved.
    assert q1["MAP"] == pytest.approx((1 / 2 + 2 / 3) / 3)
    assert q1["MAP@2"] == pytest.approx((1 / 2) / 3)
    assert q1["P@2"] == pytest.approx(1 / 2)
    assert q1["R@2"] == pytest.approx(1 / 3)
    assert q1["R@3"] == pytest.approx(2 / 3)
    assert result.per_query["q3"] == {k: 0.0 for k in q1}
    assert result.aggregate["MAP"] == pytest.approx((1 / 2 + 2 / 3) / 3 / 2)


def test_mrr_first_relevant_beyond_cutoff_is_zero() -> None:
    qrels = {"q": {"a": 1}}
    run = {"q": {"x": 5.0, "y": 4.0, "z": 3.0, "a": 2.0}}
    result = evaluate(qrels, run, ["MRR@3", "MRR@4", "MRR"])
    assert result.per_query["q"] == {"MRR@3": 0.0, "MRR@4": 0.25, "MRR": 0.25}


def test_gold_set_recall_variants_with_empty_gold() -> None:
    names = ["R_frac@1", "R_frac@3", "R_all@3", "R_all@4", "R_any@1", "R_any@2"]
    result = evaluate(QRELS, RUN, names)
    assert result.per_query["q1"] == {
        "R_frac@1": 0.0, "R_frac@3": pytest.approx(2 / 3), "R_all@3": 0.0, "R_all@4": 0.0,
        "R_any@1": 0.0, "R_any@2": 1.0,
    }
    # Empty gold: recall 0, all 1, any 0 (the paper's code: all([]) is True).
    assert result.per_query["q2"] == {"R_frac@1": 0.0, "R_frac@3": 0.0, "R_all@3": 1.0, "R_all@4": 1.0, "R_any@1": 0.0, "R_any@2": 0.0}
    assert result.per_query["q3"] == dict.fromkeys(names, 0.0)
    assert result.aggregate["R_all@3"] == pytest.approx(1 / 3)
    assert result.aggregate["R_any@2"] == pytest.approx(1 / 3)
    assert result.aggregate["R_frac@3"] == pytest.approx(2 / 9)


def test_ties_follow_written_order_not_trec_eval_docid_descending() -> None:
    qrels = {"q": {"a": 1}}
    run = {"q": {"b": 1.0, "a": 1.0, "c": 0.5}}
    # trec_eval alone breaks the tie by doc id descending: b before a.
    raw = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)
    assert raw["q"]["recip_rank"] == 0.5
    # We rank by (-score, doc id): a first, as a TREC run file written by the harness says.
    assert evaluate(qrels, run, ["MRR@1", "R_any@1"]).per_query["q"] == {"MRR@1": 1.0, "R_any@1": 1.0}


def test_ignore_identical_ids() -> None:
    qrels = {"q1": {"d1": 1, "q1": 1}}
    run = {"q1": {"q1": 9.0, "d1": 1.0}}
    assert evaluate(qrels, run, ["MRR@10"]).aggregate["MRR@10"] == 1.0
    kept = evaluate(qrels, run, ["MRR@10", "R@10"])
    dropped = evaluate(qrels, run, ["MRR@10", "R@10"], ignore_identical_ids=True)
    assert kept.aggregate["R@10"] == 1.0 and dropped.aggregate["R@10"] == 0.5
    assert dropped.aggregate["MRR@10"] == 1.0


def test_relevance_level() -> None:
    qrels = {"q": {"a": 1, "b": 2}}
    run = {"q": {"a": 2.0, "b": 1.0}}
    assert evaluate(qrels, run, ["MRR@10"], relevance_level=2).aggregate["MRR@10"] == 0.5
    assert evaluate(qrels, run, ["R_any@1"], relevance_level=2).aggregate["R_any@1"] == 0.0


def test_bad_input() -> None:
    with pytest.raises(HarnessError, match="qrels are empty"):
        evaluate({}, RUN, ["MAP"])
    with pytest.raises(HarnessError, match="no query has a document with relevance"):
        evaluate({"q": {"a": 0}}, {"q": {"a": 1.0}}, ["MAP"])
    with pytest.raises(HarnessError, match="unknown metric"):
        evaluate(QRELS, RUN, ["Recall@10x"])


def test_aggregate_mean_rule() -> None:
    per_query = {"a": {"MAP": 1.0, "R_all@5": 1.0}, "b": {"MAP": 0.0, "R_all@5": 0.0}, "c": {"R_all@5": 1.0}}
    assert aggregate(per_query, ["map", "R_all@5"]) == {"MAP": 0.5, "R_all@5": pytest.approx(2 / 3)}
    with pytest.raises(HarnessError, match="no per-query values"):
        aggregate(per_query, ["nDCG@10"])


def test_matches_pytrec_eval_on_random_runs() -> None:
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(60)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q in range(40):
        qid = f"q{q}"
        judged = rng.sample(docs, 15)
        qrels[qid] = {d: rng.choice([0, 0, 1, 2, 3]) for d in judged}
        qrels[qid][judged[0]] = rng.choice([1, 2, 3])  # at least one relevant
        retrieved = rng.sample(docs, rng.randint(1, 50))
        scores = rng.sample(range(10_000), len(retrieved))  # distinct: no ties
        run[qid] = {d: s / 100 for d, s in zip(retrieved, scores)}
    names = ["nDCG@10", "nDCG@5", "nDCG", "R@20", "P@5", "MAP", "MAP@10", "MRR"]
    ours = evaluate(qrels, run, names + ["MRR@5", "R_frac@20"])
    measures = {"ndcg_cut.10", "ndcg_cut.5", "ndcg", "recall.20", "P.5", "map", "map_cut.10", "recip_rank"}
    ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    keys = dict(zip(names, ["ndcg_cut_10", "ndcg_cut_5", "ndcg", "recall_20", "P_5", "map", "map_cut_10", "recip_rank"]))
    for qid, labels in qrels.items():
        for name, key in keys.items():
            assert ours.per_query[qid][name] == pytest.approx(ref[qid][key], abs=1e-12), (qid, name)
        # MRR@5 by its definition: reciprocal rank of the first relevant doc within the top 5.
        top5 = sorted(run[qid], key=lambda d: -run[qid][d])[:5]
        first = next((i + 1 for i, d in enumerate(top5) if labels.get(d, 0) >= 1), None)
        assert ours.per_query[qid]["MRR@5"] == (1 / first if first else 0.0)
        assert ours.per_query[qid]["R_frac@20"] == pytest.approx(ref[qid]["recall_20"])
    for name in names:
        mean = sum(ref[q][keys[name]] for q in qrels) / len(qrels)
        assert ours.aggregate[name] == pytest.approx(mean, abs=1e-12)
