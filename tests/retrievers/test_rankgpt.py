"""RankGPT: the prompt, permutation parsing, sliding windows, and real re-ranking with SmolLM2."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from harness.errors import HarnessError
from harness.generation import Generation, Generator
from harness.retrievers.rankgpt import (
    POST_PROMPT,
    RankGPTRetriever,
    parse_permutation,
    permutation_messages,
    sliding_windows,
)
from harness.types import Document, Instance, Query


def test_prompt_is_rankgpts_chat_prompt():
    docs = [Document("a", "alpha  beta\ngamma", title="T"), Document("b", " ".join(["w"] * 400))]
    messages = permutation_messages("what is x", docs, passage_words=300)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == (
        "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query.")
    assert messages[1]["content"] == ("I will provide you with 2 passages, each indicated by number identifier []. \n"
                                      "Rank the passages based on their relevance to query: what is x.")
    assert messages[2]["content"] == "Okay, please provide the passages."
    assert messages[3]["content"] == "[1] Title: T Content: alpha beta gamma"
    assert messages[4]["content"] == "Received passage [1]."
    assert messages[5]["content"] == "[2] " + " ".join(["w"] * 300)  # first 300 words
    assert messages[7]["content"].startswith("Search Query: what is x. \nRank the 2 passages above")
    assert messages[7]["content"].endswith("e.g., [1] > [2]. Only response the ranking results, do not say any word or explain.")
    assert messages[7]["content"] == POST_PROMPT.format(query="what is x", num=2)


@pytest.mark.parametrize("text, n, order, status, invalid", [
    ("[2] > [3] > [1]", 3, [1, 2, 0], "full", 0),
    ("[3] > [1]", 4, [2, 0, 1, 3], "partial", 0),                  # missing ids appended in input order
    ("[2] > [2] > [7] > [0] > [1]", 3, [1, 0, 2], "partial", 3),   # repeats and out-of-range dropped
    ("2 > 3 > 1", 3, [1, 2, 0], "full", 0),                       # no brackets: bare integers
    ("I cannot rank these passages.", 3, [0, 1, 2], "none", 0),    # nothing usable: input order
    ("", 2, [0, 1], "none", 0),
    ("Ranking: [ 2 ] > [1] (passage 2 is about 1990)", 2, [1, 0], "full", 0),  # brackets win over prose numbers
])
def test_parse_permutation_recovers_partial_answers(text, n, order, status, invalid):
    parsed = parse_permutation(text, n)
    assert parsed.order == order and parsed.status == status and parsed.invalid == invalid
    assert sorted(parsed.order) == list(range(n))


def test_sliding_windows_and_parameter_checks():
    assert sliding_windows(100, 20, 10) == [(80, 100), (70, 90), (60, 80), (50, 70), (40, 60), (30, 50), (20, 40),
                                           (10, 30), (0, 20)]
    assert sliding_windows(25, 20, 10) == [(5, 25), (0, 20)]  # RankGPT's loop would never re-rank 0..4
    assert sliding_windows(5, 20, 10) == [(0, 5)]              # depth below the window (RankGPT#11)
    assert sliding_windows(1, 20, 10) == []
    with pytest.raises(HarnessError, match="stride must be between 1 and the window"):
        RankGPTRetriever(window=10, stride=11)
    with pytest.raises(HarnessError, match="window must be >= 2"):
        RankGPTRetriever(window=1, stride=1)
    with pytest.raises(HarnessError, match="mode 'bubbles' is not one of window, bubble"):
        RankGPTRetriever(mode="bubbles")
    with pytest.raises(HarnessError, match="either generator or model"):
        RankGPTRetriever(generator="hf:smollm2-135m", model="smollm2-135m")
    assert RankGPTRetriever(model="qwen2.5-0.5b").generator_spec == "hf:qwen2.5-0.5b"
    assert RankGPTRetriever(mode="window").windows_for(200) == [(0, 200)]
    assert RankGPTRetriever(depth=30).windows_for(200) == [(10, 30), (0, 20)]


class OracleGenerator(Generator):
    """A deterministic ranker: reads the passages back out of the RankGPT prompt and ranks them by
    the number after 'relevance'; ``drop`` ids are left out of every answer (a partial list)."""

    backend = "oracle"

    def __init__(self, drop: int = 0) -> None:
        super().__init__("oracle:test", "oracle", cache=False)
        self.drop = drop
        self.calls = 0

    def _generate_many(self, prompts, *, max_tokens, temperature, show_progress) -> Iterator[tuple[int, Generation]]:
        for i, messages in enumerate(prompts):
            self.calls += 1
            passages = [re.match(r"\[(\d+)\] .*relevance (\d+)", m["content"]) for m in messages if m["role"] == "user"]
            ranked = sorted((p for p in passages if p), key=lambda p: -int(p.group(2)))
            kept = ranked[: len(ranked) - self.drop] if self.drop else ranked
            yield i, Generation(" > ".join(f"[{p.group(1)}]" for p in kept))


def _instance(qid: str, relevances: list[int]) -> Instance:
    docs = [Document(f"d{i:02d}", f"passage with relevance {r}") for i, r in enumerate(relevances)]
    return Instance(Query(qid, "which passage is most relevant"), docs)


def _reference_bubble(relevances: list[int], window: int, stride: int) -> list[int]:
    """Slow reference: RankGPT's back-to-front pass, each window sorted directly by relevance."""
    order = list(range(len(relevances)))
    end = len(order)
    while True:
        start = max(end - window, 0)
        if start == 0:
            end = min(window, len(order))
        order[start:end] = sorted(order[start:end], key=lambda i: -relevances[i])
        if start == 0:
            return order
        end -= stride


def test_bubble_pass_equals_reference_and_brings_the_best_to_the_top():
    relevances = [(i * 37) % 45 for i in range(45)]  # a shuffled 0..44
    oracle = OracleGenerator()
    ranker = RankGPTRetriever(generator=oracle, window=20, stride=10)
    scores = next(ranker.score([_instance("q1", relevances)]))
    ranked = sorted(scores, key=lambda d: -scores[d])
    assert ranked == [f"d{i:02d}" for i in _reference_bubble(relevances, 20, 10)]
    assert [relevances[int(d[1:])] for d in ranked[:10]] == list(range(44, 34, -1))  # the true top 10, in order
    values = [scores[d] for d in ranked]
    assert values == [-float(r) for r in range(1, 46)]  # strictly decreasing -rank
    assert oracle.calls == 4  # windows (25,45), (15,35), (5,25), (0,20)
    assert ranker.last_stats["q1"]["parse_failure_rate"] == 0.0 and ranker.last_stats["q1"]["rankgpt_windows"] == 4.0


def test_partial_answers_are_counted_and_depth_is_respected():
    ranker = RankGPTRetriever(generator=OracleGenerator(drop=2), mode="window", depth=6)
    relevances = [0, 1, 2, 3, 4, 5, 9, 8]
    out = list(ranker.score([_instance("qa", relevances), _instance("qb", [1])]))
    ranked = sorted(out[0], key=lambda d: -out[0][d])
    # the oracle named the 4 best of the first 6; the 2 it left out follow in input order; 6, 7 untouched
    assert ranked == ["d05", "d04", "d03", "d02", "d00", "d01", "d06", "d07"]
    assert ranker.last_stats["qa"] == {"parse_failure_rate": 1.0, "parse_none_rate": 0.0, "parse_partial_rate": 1.0,
                                       "parse_missing_ids": 2.0, "parse_invalid_ids": 0.0, "rankgpt_windows": 1.0,
                                       "rankgpt_generation_failures": 0.0}
    assert out[1] == {"d00": -1.0} and ranker.last_stats["qb"]["rankgpt_windows"] == 0.0


@pytest.mark.slow
def test_real_smollm2_reranks_and_reports_parse_statistics():
    instances = [
        Instance(Query("q1", "What is the capital of France?"), [
            Document("a", "Bananas are yellow fruit."), Document("b", "Paris is the capital of France."),
            Document("c", "The Moon orbits the Earth."), Document("d", "Berlin is the capital of Germany.")]),
        Instance(Query("q2", "How do plants make food?"), [
            Document("e", "Photosynthesis lets plants make sugar from light."), Document("f", "Cars run on petrol."),
            Document("g", "Rivers flow to the sea.")]),
    ]
    ranker = RankGPTRetriever(generator="hf:smollm2-135m", mode="window", batch_size=2)
    out = list(ranker.score(instances))
    for inst, scores in zip(instances, out):
        assert set(scores) == {d.id for d in inst.candidates}
        values = sorted(scores.values(), reverse=True)
        assert values == [-float(r) for r in range(1, len(values) + 1)]
        stats = ranker.last_stats[inst.query.id]
        assert stats["rankgpt_windows"] == 1.0 and 0.0 <= stats["parse_failure_rate"] <= 1.0
        # the returned order is exactly what the recorded answer parses to
        (answer,) = ranker.last_outputs[inst.query.id]
        parsed = parse_permutation(answer, len(inst.candidates))
        assert sorted(scores, key=lambda d: -scores[d]) == [inst.candidates[i].id for i in parsed.order]
        assert stats["parse_failure_rate"] == (0.0 if parsed.status == "full" else 1.0)
    assert ranker.meta["model"] == "smollm2-135m" and ranker.meta["params"]["mode"] == "window"


def test_failed_generations_keep_the_input_order_and_are_counted():
    import socket

    from harness.generation import make_generator

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = make_generator(f"openai:http://127.0.0.1:{port}/v1#nobody", retries=0, timeout=2, cache=False)
    ranker = RankGPTRetriever(generator=dead, window=3, stride=2)
    scores = next(ranker.score([_instance("q", [1, 2, 3, 4])]))
    assert sorted(scores, key=lambda d: -scores[d]) == ["d00", "d01", "d02", "d03"]
    stats = ranker.last_stats["q"]
    assert stats["rankgpt_windows"] == 2.0 and stats["rankgpt_generation_failures"] == 2.0
    assert stats["parse_none_rate"] == 1.0 and stats["parse_failure_rate"] == 1.0
