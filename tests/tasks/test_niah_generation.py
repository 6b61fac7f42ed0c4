"""NIAH downstream: prompts in reading order, the script's ROUGE-1 recall, real SmolLM2 answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.tasks.niah import GKAMRADT_SYSTEM, NEEDLE, NEEDLE_ANSWER, QUESTION, NiahTask, first_line
from harness.types import Document


@pytest.fixture(scope="module")
def essays(shared_data: Path) -> Path:
    return shared_data / "paul_graham_essays"


@pytest.fixture(scope="module")
def data(essays: Path):
    return NiahTask(data=str(essays), lengths=[500, 1000], depths=[0, 50, 100]).load()


def _context(message: str) -> str:
    assert message.startswith("<book>")
    return message[len("<book>") : message.index("</book>")]


def test_generation_contract():
    assert NiahTask.supports_generation is True and NiahTask.max_tokens == 50
    assert NEEDLE_ANSWER in NEEDLE


def test_prompt_puts_chunks_in_reading_order(data):
    task = NiahTask(lengths=[500, 1000], depths=[0, 50, 100])
    inst = data.instances[4]  # L1000_D50
    chunks = inst.candidates
    ranked = [chunks[7], chunks[inst.meta["needle_chunk"]], chunks[1]]  # a retriever's order
    (message,) = task.generation_prompt(inst, ranked)
    assert message["role"] == "user"
    order = sorted([7, inst.meta["needle_chunk"], 1])
    assert _context(message["content"]) == " ".join(chunks[i].text for i in order)
    assert message["content"].endswith(f"</book>\nBased on the content of the book, Question: {QUESTION}\nAnswer:")
    # the full context is the haystack with the needle, word for word
    (full,) = task.generation_prompt(inst, list(reversed(chunks)))
    context = _context(full["content"])
    assert len(context.split()) == 1000 and NEEDLE in context
    assert context.split() == " ".join(c.text for c in chunks).split()


def test_gkamradt_prompt(data):
    task = NiahTask(prompt="gkamradt")
    inst = data.instances[0]
    messages = task.generation_prompt(inst, inst.candidates[:2])
    assert [m["role"] for m in messages] == ["system", "user", "user"]
    assert messages[0]["content"] == GKAMRADT_SYSTEM
    assert messages[1]["content"] == inst.candidates[0].text + " " + inst.candidates[1].text
    assert messages[2]["content"] == (
        "What is the best thing to do in San Francisco? Don't give information outside the document or repeat your findings"
    )


def test_prompt_refuses_foreign_documents(data):
    inst = data.instances[0]
    with pytest.raises(HarnessError, match=r"document 'x' is not a chunk of L500_D0"):
        NiahTask().generation_prompt(inst, [inst.candidates[0], Document("x", "text")])


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("The best thing to do in San Francisco is to eat a sandwich and sit in Dolores Park on a sunny day.", 1.0),
        ("Eat a sandwich.", 3 / 12),  # eat, a, sandwich of 12 answer tokens ('a' twice)
        ("a a a", 2 / 12),  # clipped counts
        ("eat a sandwich\n\nand sit in Dolores Park on a sunny day", 3 / 12),  # the first line only
        ("\nEat a sandwich and sit in Dolores Park on a sunny day.", 0.0),  # the script stops at once
        ("The best thing to do in San Francisco is", 1 / 12),  # of the question's words only 'in' counts
        ("", 0.0),
        ("EATING a sandwich", 2 / 12),  # no stemming
    ],
)
def test_rouge1_recall_of_the_answer_words(data, response, expected):
    task = NiahTask()
    inst = data.instances[0]
    assert task.score_generations([inst], [response]) == {inst.query.id: {"ROUGE-1-R": pytest.approx(expected)}}


def test_custom_needle_is_scored_whole(data):
    task = NiahTask(needle="The secret code is blue falcon.", question="What is the secret code?")
    assert task.answer == "The secret code is blue falcon."
    scores = task.score_generations(data.instances[:1], ["blue falcon"])
    assert scores[data.instances[0].query.id]["ROUGE-1-R"] == pytest.approx(2 / 6)
    with pytest.raises(HarnessError, match="prompt must be one of retrieval-head, gkamradt"):
        NiahTask(prompt="chat")
    with pytest.raises(HarnessError, match="answer .* must not be empty"):
        NiahTask(answer="  ")
    with pytest.raises(HarnessError, match="2 outputs for 1 instances"):
        task.score_generations(data.instances[:1], ["a", "b"])


def test_first_line():
    assert first_line("  eat a sandwich \nmore") == "eat a sandwich"
    assert first_line("\nDolores") == ""


@pytest.mark.slow
def test_real_answers_from_bm25_top3_and_full_context(essays, tmp_path):
    """SmolLM2-135M answers the needle from BM25's top-3 chunks; all heads masked, it cannot."""
    from harness.downstream import generate_and_score
    from harness.generation import make_generator
    from harness.retrievers.bm25 import BM25Retriever

    task = NiahTask(data=str(essays), lengths=[500], depths=[50])
    instances = task.load().instances
    run = {inst.query.id: scores for inst, scores in zip(instances, BM25Retriever().score(instances))}
    cache = str(tmp_path / "gen.sqlite")
    generator = make_generator("hf:smollm2-135m", cache=cache)
    agg, per_query, info = generate_and_score(
        task, instances, run, generator, top_k=3, full_context=False, judge=None, show_progress=False
    )
    assert per_query == {"L500_D50": {"ROUGE-1-R": 1.0}} and agg == {"ROUGE-1-R": 1.0}
    record = info["records"][0]
    assert "Dolores Park" in record["output"] and len(record["doc_ids"]) == 3
    assert f"L500_D50_c{instances[0].meta['needle_chunk']:03d}" in record["doc_ids"]
    assert generator.meta["sampling"]["max_tokens"] == 50
    masked = make_generator("hf:smollm2-135m", cache=cache, mask_heads="full")
    _, masked_per_query, masked_info = generate_and_score(
        task, instances, run, masked, top_k=3, full_context=False, judge=None, max_tokens=12, show_progress=False
    )
    assert masked_info["cached"] == 0 and masked_per_query["L500_D50"]["ROUGE-1-R"] < 0.5
