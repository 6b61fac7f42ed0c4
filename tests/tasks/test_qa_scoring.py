"""SQuAD normalisation, EM/F1, ROUGE-1 recall, answer tags: hand-computed values."""

from __future__ import annotations

import doctest
import random

import pytest

import harness.tasks.qa_scoring as qa
from harness.tasks.qa_scoring import (
    answer_contained,
    exact_match,
    f1_score,
    judge_says_yes,
    max_over_answers,
    normalize_answer,
    parse_answer_tag,
    rouge1_recall,
    rouge_tokens,
)


def test_doctests():
    assert doctest.testmod(qa).failed == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  a   cat, AN owl and the dog ", "cat owl and dog"),
        ("U.S.A.", "usa"),
        ("the-end", "theend"),  # punctuation goes before articles, as in SQuAD
        ("Theatre", "theatre"),  # articles only as whole words
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_and_f1_hand_computed():
    assert exact_match("The Beatles", "beatles!") == 1.0
    assert exact_match("Beatles band", "beatles") == 0.0
    # pred {new, york, city}, gold {new, york}: P = 2/3, R = 1, F1 = 0.8
    assert f1_score("New York City", "new york") == pytest.approx(0.8)
    # Multiset overlap: pred [a1, a1, b], gold [a1, b, b] -> common {a1:1, b:1} = 2; P = R = 2/3.
    assert f1_score("x x y", "x y y") == pytest.approx(2 / 3)
    assert f1_score("yes", "no") == 0.0
    assert f1_score("the", "a") == 1.0  # both normalise to nothing
    assert f1_score("", "paris") == 0.0
    assert max_over_answers(f1_score, "paris france", ["Lyon", "Paris"]) == pytest.approx(2 / 3)
    assert max_over_answers(exact_match, "x", []) == 0.0


def _slow_f1(prediction: str, gold: str) -> float:
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(gold).split()
    if not pred and not ref:
        return 1.0
    remaining = list(ref)
    common = 0
    for token in pred:
        if token in remaining:
            remaining.remove(token)
            common += 1
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 2 * p * r / (p + r)


def test_f1_matches_a_slow_reference_on_random_strings():
    rng = random.Random(0)
    vocab = ["a", "the", "cat", "Cat,", "dog", "an", "owl.", "x", "y"]
    for _ in range(500):
        pred = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 6)))
        gold = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 6)))
        assert f1_score(pred, gold) == pytest.approx(_slow_f1(pred, gold))


def test_rouge1_recall_hand_computed():
    needle = "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day."
    assert len(rouge_tokens(needle)) == 21
    assert rouge1_recall(needle, needle.upper()) == 1.0
    # Present: the, best, thing, to, do, in, san, francisco (8 of 21); "in" appears twice in the
    # needle but once in the response, so clipped counts give 8/21.
    assert rouge1_recall(needle, "The best thing to do in San Francisco?") == pytest.approx(8 / 21)
    assert rouge1_recall(needle, "") == 0.0
    assert rouge1_recall("", "anything") == 0.0
    assert rouge_tokens("Dolores-Park, 2024!") == ["dolores", "park", "2024"]


def test_answer_contained_uses_whole_normalised_tokens():
    assert answer_contained("It's a Golden Retriever, I think.", "golden retriever") == 1.0
    assert answer_contained("goldens retrievers", "golden retriever") == 0.0
    assert answer_contained("anything", "the") == 0.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<explanation>e</explanation>\n<answer>TRUE</answer>", "true"),
        ("<answer>\n  False \n</answer> then <answer>true</answer>", "false"),
        ("<answer></answer>", ""),
        ("answer: TRUE", None),
        ("<ANSWER>true</ANSWER>", None),
        ("<answer>true", None),
        (None, None),
    ],
)
def test_parse_answer_tag(text, expected):
    assert parse_answer_tag(text) == expected


def test_judge_rule_is_yes_substring():
    assert judge_says_yes("Yes.") and judge_says_yes("yes") and judge_says_yes("eyes")  # LongMemEval's rule, literally
    assert not judge_says_yes("No") and not judge_says_yes("") and not judge_says_yes(None)
