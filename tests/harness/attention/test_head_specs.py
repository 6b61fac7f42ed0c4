"""The --heads spec forms (random:N:SEED, top:N:FILE, full, exclude:FILE) and detect --max-layer."""

from __future__ import annotations

import json

import pytest

from harness.attention.detection import detect_heads
from harness.attention.heads import ModelShape, all_heads, random_heads, resolve_heads
from harness.attention.masking import resolve_mask
from harness.errors import HarnessError
from harness.types import Instance, Query

from .tiny import DOCS, tiny_model, tokenizer

SHAPE = ModelShape("llama", 3, 4, 2, 64)  # the tiny models: 12 heads
RANKED = [["2-1", 0.9], ["0-0", 0.8], ["1-3", 0.7], ["0-2", 0.5], ["2-3", 0.1]]


@pytest.fixture
def head_file(tmp_path):
    path = tmp_path / "heads.json"
    path.write_text(json.dumps({"model": "tiny", "heads": RANKED, "top": 2}))
    return path


def test_random_is_seeded_distinct_and_recorded():
    sel = resolve_heads("random:5:7", SHAPE)
    assert sel.name == "random:5:7" and sel.heads == random_heads(5, SHAPE, 7) and len(set(sel.heads)) == 5
    assert sel.detail == {"spec": "random:5:7", "seed": 7}
    assert resolve_heads("random:5:7", SHAPE).heads == sel.heads  # deterministic
    assert resolve_heads("random:5:8", SHAPE).heads != sel.heads
    assert resolve_heads("random:5", SHAPE).name == "random:5:0"
    assert set(resolve_heads("random:12:3", SHAPE).heads) == set(all_heads(SHAPE))


def test_top_full_and_exclude(head_file):
    top = resolve_heads(f"top:4:{head_file}", SHAPE)  # beyond the file's own top of 2
    assert top.heads == ((2, 1), (0, 0), (1, 3), (0, 2)) and top.name == "top:4:heads.json"
    assert top.detail["spec"] == f"top:4:{head_file}" and len(top.detail["file_sha256"]) == 64
    assert resolve_heads(str(head_file), SHAPE).heads == top.heads[:2]
    assert len(resolve_heads("full", SHAPE).heads) == 12
    excluded = resolve_heads(f"exclude:{head_file}", SHAPE)
    assert len(excluded.heads) == 10 and not {(2, 1), (0, 0)} & set(excluded.heads)
    assert excluded.name == "exclude:heads.json" and excluded.detail["excluded"] == 2
    # an old-form selection records nothing extra (result hashes of existing runs are unchanged)
    assert resolve_heads("0-1,1-1", SHAPE).detail == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("random:0:1", r"--heads='random:0:1': N must be 1..12, the model has 12 heads"),
        ("random:13:1", "the model has 12 heads"),
        ("random:x", "expected random:N or random:N:SEED"),
        ("random:1:2:3", "expected random:N or random:N:SEED"),
        ("top:x:{file}", "expected top:N:FILE"),
        ("top:3", "expected top:N:FILE"),
        ("top:13:{file}", "N must be 1..12, the model has 12 heads"),
        ("top:6:{file}", "lists only 5 heads"),
        ("top:2:{missing}", "head file .*missing.json not found"),
        ("exclude:{missing}", "head file .*missing.json not found"),
        ("exclude:", "expected exclude:FILE"),
        ("random", "expected random:N or random:N:SEED"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, message, head_file, tmp_path):
    spec = spec.format(file=head_file, missing=tmp_path / "missing.json")
    with pytest.raises(HarnessError, match=message) as err:
        resolve_heads(spec, SHAPE)
    assert "\n" not in str(err.value)


def test_file_heads_outside_the_model_are_refused(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"heads": [["5-0", 1.0], ["0-0", 0.5]], "top": 1}))
    for spec in (f"top:1:{path}", f"exclude:{path}"):
        with pytest.raises(HarnessError, match="head 5-0 is outside the model"):
            resolve_heads(spec, SHAPE)


def test_masking_and_qr_take_the_same_forms(head_file):
    from harness.retrievers.qr import QRRetriever

    llama = tiny_model("llama")
    assert resolve_mask(f"top:3:{head_file}", llama).heads == ((2, 1), (0, 0), (1, 3))
    assert len(resolve_mask(f"exclude:{head_file}", llama).heads) == 10
    assert resolve_mask("random:4:2", llama).heads == random_heads(4, SHAPE, 2)
    with pytest.raises(HarnessError, match="mask_heads='random:0:1': N must be 1..12"):
        resolve_mask("random:0:1", llama)
    qr = QRRetriever.from_loaded(llama, tokenizer(), heads="random:3:5", show_progress=False)
    meta = qr.meta
    assert meta["heads_name"] == "random:3:5" and meta["params"]["heads"] == "random:3:5"
    assert meta["heads"]["list"] == [f"{a}-{b}" for a, b in random_heads(3, SHAPE, 5)]
    assert meta["heads"]["seed"] == 5 and len(meta["heads"]["sha256"]) == 64
    qr = QRRetriever.from_loaded(llama, tokenizer(), heads=f"top:2:{head_file}", show_progress=False)
    assert qr.meta["heads"]["list"] == ["2-1", "0-0"] and qr.meta["layers_used"] == 3


QRELS = {"q1": {"d1": 1}, "q2": {"d5": 2, "d4": 1}, "q3": {"d2": 1}}
QUERIES = {"q1": "what is the capital of France?", "q2": "where does the fox jump?", "q3": "cells"}


@pytest.mark.parametrize("objective", ["ndcg", "gold-mass"])
def test_max_layer_scores_only_lower_layers_and_equals_the_full_detection(objective):
    model = tiny_model("qwen2", seed=3)
    instances = [Instance(Query(q, t), list(DOCS), gold=QRELS[q]) for q, t in QUERIES.items()]
    full = detect_heads(model, instances, QRELS, tokenizer=tokenizer(), objective=objective, top=4)
    low = detect_heads(model, instances, QRELS, tokenizer=tokenizer(), objective=objective, top=4, max_layer=1)
    assert low["max_layer"] == 1 and full["max_layer"] is None
    assert len(low["heads"]) == 8 and all(int(h.split("-")[0]) <= 1 for h, _ in low["heads"])
    full_scores = dict(full["heads"])
    for head, score in low["heads"]:
        assert score == pytest.approx(full_scores[head], rel=1e-12, abs=1e-15), head
    scores = [s for _, s in low["heads"]]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(HarnessError, match=r"--max-layer 3: expected 0..2"):
        detect_heads(model, instances, QRELS, tokenizer=tokenizer(), max_layer=3)


def test_max_layer_stops_the_forward_early():
    model = tiny_model("qwen2", seed=3)
    calls = []
    hook = model.model.layers[2].register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        detect_heads(model, [Instance(Query("q1", QUERIES["q1"]), list(DOCS))], QRELS, tokenizer=tokenizer(),
                     max_layer=1, show_progress=False)
    finally:
        hook.remove()
    assert calls == []  # layer 2 never ran


def test_detect_cli_max_layer_on_smollm2(cli, tmp_path):
    """`harness detect --max-layer`: recorded, lower layers only, same scores as a full detection
    (which does not read the restricted detection's resume file)."""
    from tests.harness.conftest import write_beir

    beir = write_beir(tmp_path / "toy", n_docs_per_topic=3, n_queries_per_topic=1)
    args = ["detect", "--model", "smollm2-135m", "--task", str(beir), "--n-queries", "2", "--depth", "3"]
    low, full = tmp_path / "low.json", tmp_path / "full.json"
    res = cli(*args, "--max-layer", "1", "--output", str(low))
    assert res.code == 0, res.err
    assert cli(*args, "--output", str(full)).code == 0
    low_obj, full_obj = json.loads(low.read_text()), json.loads(full.read_text())
    assert low_obj["max_layer"] == 1 and low_obj["shape"]["layers"] == 30 and len(low_obj["heads"]) == 18
    assert all(int(h.split("-")[0]) <= 1 for h, _ in low_obj["heads"][: low_obj["top"]])
    full_scores = dict(full_obj["heads"])
    assert all(score == pytest.approx(full_scores[h], rel=1e-9, abs=1e-12) for h, score in low_obj["heads"])
    assert len(full_obj["heads"]) == 270 and full_obj["max_layer"] is None


def test_detect_cli_exclude_queries_draws_a_disjoint_detection_set(cli, tmp_path):
    """`harness detect --exclude-queries`: a second detection set that shares no query with the first
    (Table 6's two disjoint detection sets), and the exclusion is recorded in the head file."""
    from tests.harness.conftest import write_beir

    beir = write_beir(tmp_path / "toy", n_docs_per_topic=3, n_queries_per_topic=2)
    args = ["detect", "--model", "smollm2-135m", "--task", str(beir), "--n-queries", "4", "--depth", "3",
            "--max-layer", "0"]
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert cli(*args, "--output", str(first)).code == 0
    res = cli(*args, "--exclude-queries", str(first), "--output", str(second))
    assert res.code == 0, res.err
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert len(a["query_ids"]) == len(b["query_ids"]) == 4
    assert not set(a["query_ids"]) & set(b["query_ids"])
    assert b["excluded_queries_from"] == str(first) and "excluded_queries_from" not in a
