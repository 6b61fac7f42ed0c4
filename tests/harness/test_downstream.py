"""The generation stage: top-k selection, real answers on the shared HotpotQA sample, failures."""

from __future__ import annotations

import math
import socket

import pytest

from harness.downstream import generate_and_score, top_documents
from harness.errors import HarnessError
from harness.generation import make_generator
from harness.generation.hf import HFGenerator
from harness.results import mean_metrics as aggregate
from harness.types import Document, Instance, Query


def test_top_documents_orders_by_score_then_doc_id():
    docs = [Document(i, i) for i in ("d3", "d1", "d2", "d4", "d5")]
    inst = Instance(Query("q", "q"), docs)
    scores = {"d3": 1.0, "d1": 2.0, "d2": 1.0, "d5": math.nan, "not-a-candidate": 9.0}
    assert [d.id for d in top_documents(inst, scores, 3)] == ["d1", "d2", "d3"]
    assert [d.id for d in top_documents(inst, scores, 10)] == ["d1", "d2", "d3", "d4", "d5"]  # unscored last
    assert [d.id for d in top_documents(inst, None, 2)] == ["d1", "d2"]
    with pytest.raises(HarnessError, match="--top-k must be >= 1"):
        top_documents(inst, scores, 0)


def test_aggregate_means_each_metric_over_the_entries_that_have_it():
    per_query = {"a": {"accuracy": 1.0, "accuracy/temporal": 1.0}, "b": {"accuracy": 0.0}, "c": {"accuracy": 0.5}}
    assert aggregate(per_query) == {"accuracy": 0.5, "accuracy/temporal": 1.0}


@pytest.fixture(scope="module")
def hotpot(shared_data):
    from harness.tasks.multihop import HotpotQATask

    path = shared_data / "hotpotqa_dev_distractor_sample100_hfschema" / "hotpot_dev_distractor_v1.json"
    task = HotpotQATask(data=str(path))
    return task, task.load().instances[:2]


def _gold_run(instances):
    """A run that ranks the supporting paragraphs first (all tied at 1.0) and the rest at 0.0."""
    return {inst.query.id: {d.id: float(d.id in inst.gold) for d in inst.candidates} for inst in instances}


@pytest.mark.slow
def test_real_answers_from_the_top_k_then_from_the_cache(hotpot):
    from harness.models import load_causal_lm

    task, instances = hotpot
    generator = HFGenerator.from_loaded("hf:smollm2-135m", *load_causal_lm("smollm2-135m", device="cpu"), batch_size=2)
    run = _gold_run(instances)
    agg, per_query, info = generate_and_score(task, instances, run, generator, top_k=2, full_context=False,
                                              judge=None, show_progress=False)
    assert set(per_query) == {inst.query.id for inst in instances}
    assert all(set(v) == {"EM", "F1"} and 0.0 <= v["F1"] <= 1.0 for v in per_query.values())
    assert agg == pytest.approx({m: sum(v[m] for v in per_query.values()) / 2 for m in ("EM", "F1")})
    assert info["n_prompts"] == 2 and info["generation_failures"] == 0 and info["cached"] == 0
    for inst, record in zip(instances, info["records"]):
        assert record["doc_ids"] == sorted(inst.gold)  # the two supporting paragraphs, tie broken by id
        assert record["output"] and record["error"] is None
        assert task.score_generations([inst], [record["output"]])[inst.query.id] == per_query[inst.query.id]
    # a second pass (a re-run, or a judge pass) is free
    agg2, per_query2, info2 = generate_and_score(task, instances, run, generator, top_k=2, full_context=False,
                                                 judge=None, show_progress=False)
    assert info2["cached"] == 2 and per_query2 == per_query and agg2 == agg

    # full context that does not fit the (deliberately small) window: one clear error, no generation
    small = HFGenerator.from_loaded("hf:smollm2-135m", generator.lm, generator.tokenizer, context_window=300)
    with pytest.raises(HarnessError, match="exceed the context window of 300 tokens"):
        generate_and_score(task, instances, run, small, top_k=2, full_context=True, judge=None, show_progress=False)


def test_failed_generations_are_scored_empty_and_counted(hotpot):
    task, instances = hotpot
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = make_generator(f"openai:http://127.0.0.1:{port}/v1#nobody", retries=0, timeout=2, cache=False)
    agg, _, info = generate_and_score(task, instances, {}, dead, top_k=3, full_context=True,
                                              judge=None, show_progress=False)
    assert info["generation_failures"] == 2 and info["failed_query_ids"] == [i.query.id for i in instances]
    assert agg == {"EM": 0.0, "F1": 0.0}
    assert [len(r["doc_ids"]) for r in info["records"]] == [len(i.candidates) for i in instances]  # full context
    assert all(r["error"] and r["output"] == "" for r in info["records"])
