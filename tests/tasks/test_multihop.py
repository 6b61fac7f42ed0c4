"""Multi-hop QA: original and HF layouts, supporting-paragraph gold, prompt, EM/F1."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.registry import make_task
from harness.tasks.multihop import HotpotQATask, MusiqueTask, TwoWikiTask, extract_answer, join_sentences

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "multihop"
HOTPOT = FIXTURES / "hotpotqa_tiny.json"


def test_registry_names_map_to_the_three_classes():
    assert isinstance(make_task("hotpotqa", data=str(HOTPOT)), HotpotQATask)
    assert isinstance(make_task("musique", data=str(FIXTURES / "musique_ans_dev_tiny.jsonl")), MusiqueTask)
    assert isinstance(make_task("2wikimultihopqa", data=str(FIXTURES / "2wiki_dev_tiny.json")), TwoWikiTask)


def test_hotpot_original_layout(caplog):
    with caplog.at_level(logging.WARNING, logger="harness.tasks.multihop"):
        data = HotpotQATask(data=str(HOTPOT)).load()
    first = data.instances[0]
    assert first.query.id == "5a8b57f25542995d1e6f1371"
    assert [(d.id, d.title) for d in first.candidates] == [("0", "Gamma"), ("1", "Alpha (band)"), ("2", "Beta (band)")]
    assert first.candidates[1].text == "Alpha is a band formed in 1970. It plays rock."
    assert first.gold == {"1": 1, "2": 1}
    assert first.answer == ["Alpha"] and first.meta["order"] == "natural"
    assert data.metrics == ("R@2", "R@5", "R_all@2", "R_all@5", "nDCG@10")
    assert data.provenance["n_missing_support_titles"] == 1  # "Missing Page"
    assert data.provenance["synthetic_ids"] is False
    assert "1 supporting-fact titles are not in" in caplog.text


def test_twowiki_joins_sentences_without_leading_spaces():
    inst = TwoWikiTask(data=str(FIXTURES / "2wiki_dev_tiny.json")).load().instances[0]
    assert inst.candidates[0].text == "Film Y is a 1999 film. It was directed by Luca Bianchi."
    assert inst.gold == {"0": 1, "1": 1}
    assert join_sentences(["A.", " B.", "C."]) == "A. B. C."


def test_musique_jsonl_uses_idx_is_supporting_and_aliases():
    inst = MusiqueTask(data=str(FIXTURES / "musique_ans_dev_tiny.jsonl")).load().instances[0]
    assert inst.query.id == "2hop__1_2"
    assert inst.gold == {"0": 1, "2": 1}
    assert inst.answer == ["France", "French Republic"]


def test_bad_entries_name_file_question_and_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"question": "q?", "answer": "a", "context": [["t", ["s"]]]}]))
    with pytest.raises(HarnessError, match=r"bad.json: question 0: missing field 'supporting_facts'"):
        HotpotQATask(data=str(path)).load()
    path.write_text(json.dumps([{"question": "q?", "answer": "a", "supporting_facts": [], "context": [["t"]]}]))
    with pytest.raises(HarnessError, match=r"context\[0\] must be \[title, \[sentences\]\]"):
        HotpotQATask(data=str(path)).load()
    path.write_text(json.dumps([{"question": "q?"}]))
    with pytest.raises(HarnessError, match="missing field 'answer'"):
        HotpotQATask(data=str(path)).load()


def test_prompt_lists_passages_in_the_given_order():
    task = HotpotQATask(data=str(HOTPOT))
    inst = task.load().instances[0]
    content = task.generation_prompt(inst, [inst.candidates[2], inst.candidates[1]])[0]["content"]
    instruction = (
        "Answer the question based on the given passages. Only give me the answer and do not output any other words."
    )
    assert content == (
        f"{instruction}\n\nThe following are given passages.\n"
        "Passage 1:\nBeta (band)\nBeta is a band. It was formed in 1985.\n\n"
        "Passage 2:\nAlpha (band)\nAlpha is a band formed in 1970. It plays rock.\n\n"
        f"{instruction}\n\nQuestion: Which band was formed first, Alpha or Beta?\nAnswer:"
    )


def test_em_and_f1_max_over_answers_on_the_first_line():
    task = MusiqueTask(data=str(FIXTURES / "musique_ans_dev_tiny.jsonl"))
    inst = task.load().instances[0]
    assert task.score_generations([inst], ["\nAnswer: The French Republic.\nBecause Paris..."]) == {
        "2hop__1_2": {"EM": 1.0, "F1": 1.0}
    }
    # "in france" vs "france": P = 1/2, R = 1 -> F1 = 2/3; EM 0.
    scores = task.score_generations([inst], ["in France"])["2hop__1_2"]
    assert scores["EM"] == 0.0 and scores["F1"] == pytest.approx(2 / 3)
    assert task.score_generations([inst], [""])["2hop__1_2"] == {"EM": 0.0, "F1": 0.0}
    assert extract_answer("  \n answer: Lyon \n more") == "Lyon"


def test_shared_hotpot_sample_hf_layout(shared_data):
    path = shared_data / "hotpotqa_dev_distractor_sample100_hfschema" / "hotpot_dev_distractor_v1.json"
    data = HotpotQATask(data=str(path)).load()
    prov = data.provenance
    assert prov["n_queries"] == 100 and prov["candidates_per_query"] == {2: 1, 10: 99}
    assert prov["synthetic_ids"] is True and prov["n_missing_support_titles"] == 0 and prov["n_empty_gold"] == 0
    first = data.instances[0]
    question = "Were Scott Derrickson and Ed Wood of the same nationality?"
    assert first.query.text == question
    assert first.query.id == "00000-" + hashlib.sha1(question.encode()).hexdigest()[:10]
    titles = {d.id: d.title for d in first.candidates}
    assert {titles[i] for i in first.gold} == {"Scott Derrickson", "Ed Wood"}
    assert first.candidates[1].text.startswith("Scott Derrickson (born July 16, 1966) is an American director")
    assert len({q.id for q in data.queries}) == 100
    # Ids are stable across loads.
    assert [q.id for q in HotpotQATask(data=str(path)).load().queries] == [q.id for q in data.queries]
