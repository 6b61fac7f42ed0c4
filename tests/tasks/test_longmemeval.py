"""LongMemEval: round documents, gold, splits, the paper's prompt and the judge scoring."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.metrics import evaluate
from harness.registry import make_task
from harness.tasks.longmemeval import LongMemEvalTask, split_rounds
from harness.tasks.qa_scoring import longmemeval_judge_prompt

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "longmemeval" / "longmemeval_s_tiny.json"


def _by_id(data):
    return {inst.query.id: inst for inst in data.instances}


def test_registry_builds_the_task_and_default_split_excludes_single_session_user():
    task = make_task("longmemeval", data=str(FIXTURE))
    assert isinstance(task, LongMemEvalTask)
    data = task.load()
    assert [q.id for q in data.queries] == ["tr_002", "ku_003_abs", "ssp_004"]
    assert data.metrics == ("R@3", "R@5", "R@10", "R_all@5", "R_any@5", "nDCG@10")
    assert data.provenance["split"] == "eval"
    assert data.provenance["question_types"] == {
        "knowledge-update": 1,
        "single-session-preference": 1,
        "temporal-reasoning": 1,
    }
    assert len(data.provenance["sha256"]["longmemeval_s_tiny.json"]) == 64


def test_detect_split_is_single_session_user_only():
    data = LongMemEvalTask(data=str(FIXTURE), split="detect").load()
    assert [q.id for q in data.queries] == ["ssu_001"]
    assert LongMemEvalTask(data=str(FIXTURE), split="all").load().provenance["n_queries"] == 4
    with pytest.raises(HarnessError, match="unknown split 'dev'"):
        LongMemEvalTask(data=str(FIXTURE), split="dev")


def test_rounds_are_chronological_with_inferred_ids_text_and_gold():
    inst = _by_id(LongMemEvalTask(data=str(FIXTURE), split="all").load())["ssu_001"]
    assert [d.id for d in inst.candidates] == ["ssu_001__s_a__0", "ssu_001__answer_s_b__0", "ssu_001__answer_s_b__1"]
    assert (
        inst.candidates[1].text
        == "user: My golden retriever Max loves the park.\nassistant: Golden retrievers are energetic!"
    )
    assert inst.candidates[1].meta["turns"] == [
        {"role": "user", "content": "My golden retriever Max loves the park."},
        {"role": "assistant", "content": "Golden retrievers are energetic!"},
    ]
    assert inst.gold == {"ssu_001__answer_s_b__0": 1}
    assert inst.meta["order"] == "natural"
    assert inst.answer == "Golden Retriever"


def test_a_leading_assistant_turn_is_its_own_round():
    inst = _by_id(LongMemEvalTask(data=str(FIXTURE)).load())["tr_002"]
    ids = [d.id for d in inst.candidates]
    assert ids == ["tr_002__answer_late__0", "tr_002__filler__0", "tr_002__answer_early__0", "tr_002__answer_early__1"]
    assert inst.gold == {"tr_002__answer_late__0": 1, "tr_002__answer_early__1": 1}
    assert split_rounds([{"role": "assistant"}, {"role": "user"}, {"role": "assistant"}, {"role": "assistant"}]) == [
        [{"role": "assistant"}],
        [{"role": "user"}, {"role": "assistant"}, {"role": "assistant"}],
    ]


def test_question_without_evidence_is_kept_counted_and_warned(caplog):
    with caplog.at_level(logging.WARNING, logger="harness.tasks.longmemeval"):
        data = LongMemEvalTask(data=str(FIXTURE)).load()
    assert data.provenance["n_empty_gold"] == 1
    assert data.provenance["empty_gold_ids"] == ["ku_003_abs"]
    assert data.qrels["ku_003_abs"] == {}
    assert "1 of 3 questions have no evidence round" in caplog.text
    # The metrics keep it: R_all = 1 (all([])), R_any = 0 (docs/PROTOCOL.md §4.2).
    run = {inst.query.id: {d.id: float(-i) for i, d in enumerate(inst.candidates)} for inst in data.instances}
    per_query = evaluate(data.qrels, run, ["R_all@5", "R_any@5"]).per_query
    assert per_query["ku_003_abs"] == {"R_all@5": 1.0, "R_any@5": 0.0}


def test_round_ids_given_by_qrhead_files_are_used(tmp_path):
    entry = json.loads(FIXTURE.read_text())[0]
    for turn, rid in zip(entry["haystack_sessions"][1], ["R1", "R1", "R2", "R2"]):
        turn["round_id"] = rid
    path = tmp_path / "single-session-user_s.json"
    path.write_text(json.dumps([entry]))
    inst = LongMemEvalTask(data=str(tmp_path), split="detect").load().instances[0]
    assert [d.id for d in inst.candidates] == ["ssu_001__s_a__0", "R1", "R2"]
    assert inst.gold == {"R1": 1}
    assert "round_id" not in json.dumps(inst.candidates[1].meta["turns"])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.pop("haystack_dates"), r"question 0 \(ssu_001\): missing field 'haystack_dates'"),
        (lambda e: e["haystack_dates"].pop(), "differ in length"),
        (
            lambda e: e.__setitem__("haystack_sessions", [["x"], []]),
            r"haystack_sessions\[0\] must be a list of turn objects",
        ),
    ],
)
def test_bad_questions_name_file_question_and_field(tmp_path, mutate, message):
    entry = json.loads(FIXTURE.read_text())[0]
    mutate(entry)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(HarnessError, match=message):
        LongMemEvalTask(data=str(path), split="all").load()


def test_icr_format_and_missing_files_are_refused_clearly(tmp_path):
    path = tmp_path / "other_s_original.json"
    path.write_text(json.dumps([{"idx": "q", "question": "?", "paragraphs": []}]))
    with pytest.raises(HarnessError, match="QRHead/ICR paragraphs format"):
        LongMemEvalTask(data=str(path)).load()
    with pytest.raises(HarnessError, match="no LongMemEval file found"):
        LongMemEvalTask(data=str(tmp_path / "..")).load()


def test_generation_prompt_regroups_rounds_by_session_sorted_by_date():
    task = LongMemEvalTask(data=str(FIXTURE))
    inst = _by_id(task.load())["tr_002"]
    docs = {d.id: d for d in inst.candidates}
    # Retriever order (best first) must not matter: sessions by date, rounds chronological.
    top = [docs["tr_002__answer_late__0"], docs["tr_002__answer_early__1"], docs["tr_002__answer_early__0"]]
    messages = task.generation_prompt(inst, top)
    expected = (
        "I will give you several history chats between you and a user. Please answer the question based on "
        "the relevant chat history.\n\n\nHistory Chats:\n\n"
        "\n### Session 1:\nSession Date: 2023/06/01 (Thu) 09:15\nSession Content:\n\n"
        '[{"role": "assistant", "content": "Hello, how can I help?"}, {"role": "user", "content": "I bought a bike today."}, '
        '{"role": "assistant", "content": "Nice purchase."}]\n'
        "\n### Session 2:\nSession Date: 2023/06/04 (Sun) 08:00\nSession Content:\n\n"
        '[{"role": "user", "content": "I finally rode my new bike today!"}, {"role": "assistant", "content": "Congratulations!"}]\n'
        "\n\nCurrent Date: 2023/06/10 (Sat) 12:00\nQuestion: How many days passed between buying the bike and the first ride?\nAnswer:"
    )
    assert messages == [{"role": "user", "content": expected}]


def test_full_context_prompt_holds_every_session():
    task = LongMemEvalTask(data=str(FIXTURE))
    inst = _by_id(task.load())["tr_002"]
    content = task.generation_prompt(inst, inst.candidates)[0]["content"]
    assert content.count("### Session") == 3
    assert content.index("2023/06/01") < content.index("2023/06/02") < content.index("2023/06/04")
    assert "has_answer" not in content


@dataclass
class _Generation:
    text: str
    error: str | None = None
    cached: bool = False


class _KeywordJudge:
    """A real (if simple) judge: says yes when the prompt's model response names the keyword."""

    def __init__(self, keyword: str, fail_on: str | None = None) -> None:
        self.keyword, self.fail_on, self.prompts = keyword, fail_on, []

    def generate(self, prompts, *, max_tokens, temperature=0.0):
        assert max_tokens == 10 and temperature == 0.0
        self.prompts.extend(prompts)
        out = []
        for messages in prompts:
            response = messages[0]["content"].split("Model Response: ")[1]
            if self.fail_on and self.fail_on in response:
                out.append(_Generation("", error="timeout"))
            else:
                out.append(_Generation("Yes." if self.keyword in response.lower() else "No"))
        return out


def test_judged_accuracy_per_type_and_abstention():
    task = LongMemEvalTask(data=str(FIXTURE), split="all")
    instances = task.load().instances
    outputs = ["It is a golden retriever.", "3 days", "I don't know of any cat.", "How about hiking?"]
    judge = _KeywordJudge("golden")
    scores = task.score_generations(instances, outputs, judge=judge)
    assert scores["ssu_001"] == {"accuracy": 1.0, "accuracy/single-session-user": 1.0, "judge_failed": 0.0}
    assert scores["tr_002"] == {"accuracy": 0.0, "accuracy/temporal-reasoning": 0.0, "judge_failed": 0.0}
    assert scores["ku_003_abs"]["accuracy/abstention"] == 0.0
    # The per-type prompts went to the judge.
    assert "do not penalize off-by-one errors" in judge.prompts[1][0]["content"]
    assert "Does the model correctly identify the question as unanswerable?" in judge.prompts[2][0]["content"]
    assert "Rubric: The user would prefer suggestions involving hiking." in judge.prompts[3][0]["content"]


def test_judge_failure_counts_as_incorrect_and_is_flagged(caplog):
    task = LongMemEvalTask(data=str(FIXTURE), split="detect")
    instances = task.load().instances
    with caplog.at_level(logging.WARNING, logger="harness.tasks.longmemeval"):
        scores = task.score_generations(
            instances, ["golden retriever"], judge=_KeywordJudge("golden", fail_on="golden")
        )
    assert scores["ssu_001"]["accuracy"] == 0.0 and scores["ssu_001"]["judge_failed"] == 1.0
    assert "judge failed on 1 of 1" in caplog.text


def test_without_judge_the_metric_is_answer_contains_not_accuracy():
    task = LongMemEvalTask(data=str(FIXTURE), split="all")
    instances = task.load().instances
    scores = task.score_generations(instances, ["Max is a Golden Retriever!", "three days", "", "hiking"], judge=None)
    assert scores["ssu_001"] == {"answer_contains": 1.0, "answer_contains/single-session-user": 1.0}
    assert scores["tr_002"]["answer_contains"] == 0.0
    assert all("accuracy" not in row for row in scores.values())
    with pytest.raises(HarnessError, match="4 instances but 1 outputs"):
        task.score_generations(instances, ["x"])


def test_judge_prompt_builder_picks_the_type_template():
    generic = longmemeval_judge_prompt("multi-session", "q1", "Q?", "A", "R")
    assert generic.startswith("I will give you a question, a correct answer, and a response from a model.")
    assert generic.endswith(
        "\n\nQuestion: Q?\n\nCorrect Answer: A\n\nModel Response: R\n\nIs the model response correct? Answer yes or no only."
    )
    assert "updated answer" in longmemeval_judge_prompt("knowledge-update", "q2", "Q?", "A", "R")
    assert "unanswerable" in longmemeval_judge_prompt("single-session-user", "q3_abs", "Q?", "A", "R")
    with pytest.raises(HarnessError, match="unknown question_type 'weird'"):
        longmemeval_judge_prompt("weird", "q4", "Q?", "A", "R")
