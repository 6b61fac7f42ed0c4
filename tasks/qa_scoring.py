"""Answer scoring shared by the downstream-QA tasks.

* :func:`normalize_answer`, :func:`exact_match`, :func:`f1_score`: the SQuAD v1.1 evaluation
  (lowercase, strip punctuation, drop the articles *a/an/the*, collapse whitespace; token-level
  F1), with :func:`max_over_answers` taking the best score over several gold answers
  (multi-hop QA, docs/PROTOCOL.md §4.7).
* :func:`rouge1_recall`: ROUGE-1 recall of a reference (the NIAH needle) in a response
  (docs/PROTOCOL.md §4.4), as a fraction in [0, 1]; the NIAH figure reports it ×100.
* :func:`parse_answer_tag`: the first ``<answer>…</answer>`` of a CLIPPER output (docs/PROTOCOL.md §4.3).
* :func:`longmemeval_judge_prompt`: LongMemEval's per-type yes/no judge prompts (docs/PROTOCOL.md §4.2)
  and :func:`judge_says_yes`, its decision rule.

Example:
    >>> normalize_answer("The  Eiffel Tower!")
    'eiffel tower'
    >>> f1_score("Eiffel Tower, Paris", "the Eiffel Tower")
    0.8
    >>> parse_answer_tag("<explanation>…</explanation>\\n<answer> TRUE </answer>")
    'true'
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, drop punctuation and articles, collapse whitespace.

    The steps run in SQuAD's order (lower → remove punctuation → remove articles → whitespace),
    so ``"A.B."`` becomes ``"ab"`` and ``"the-end"`` becomes ``"theend"``.
    """
    text = str(text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    r"""SQuAD token-level F1 over normalised whitespace tokens.

    .. math:: P = \frac{|p \cap g|}{|p|},\quad R = \frac{|p \cap g|}{|g|},\quad F_1 = \frac{2PR}{P+R}

    where :math:`p \cap g` is the multiset intersection. Two empty token lists score 1.0 (as in
    the later SQuAD v2 script; v1.1 would divide by zero); one empty list scores 0.0.
    """
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not pred_tokens and not gold_tokens:
        return 1.0
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def max_over_answers(metric: Callable[[str, str], float], prediction: str, golds: Iterable[str]) -> float:
    """The best ``metric(prediction, gold)`` over the gold answers (0.0 when there are none)."""
    return max((metric(prediction, gold) for gold in golds), default=0.0)


def answer_contained(prediction: str, gold: str) -> float:
    """1.0 when the normalised gold answer occurs in the normalised prediction, as whole tokens.

    A judge-free stand-in for LongMemEval's LM judge (reported as ``answer_contains``, never as
    ``accuracy``). An empty normalised gold never counts as contained.
    """
    gold_norm = normalize_answer(gold)
    if not gold_norm:
        return 0.0
    return float(f" {gold_norm} " in f" {normalize_answer(prediction)} ")


# -- ROUGE-1 recall ------------------------------------------------------------------------------

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """Tokens as the ``rouge_score`` package makes them: lowercase, runs of ``[a-z0-9]``."""
    return _NON_ALNUM.sub(" ", str(text).lower()).split()


def rouge1_recall(reference: str, prediction: str) -> float:
    r"""ROUGE-1 recall of ``reference`` in ``prediction``, a fraction in [0, 1].

    .. math:: R_1 = \frac{\sum_{w} \min(c_{ref}(w), c_{pred}(w))}{\sum_w c_{ref}(w)}

    over the unigram counts of :func:`rouge_tokens` (``rouge_score``'s tokenizer, without its
    optional Porter stemmer). docs/PROTOCOL.md §4.4 reports ``ROUGE-1-R`` = this value ×100. An empty
    reference scores 0.0.

    >>> rouge1_recall("eat a sandwich in Dolores Park", "Eat a sandwich!")
    0.5
    """
    ref = Counter(rouge_tokens(reference))
    total = sum(ref.values())
    if total == 0:
        return 0.0
    pred = Counter(rouge_tokens(prediction))
    return sum((ref & pred).values()) / total


# -- CLIPPER answer tag ------------------------------------------------------------------------

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def parse_answer_tag(text: str | None) -> str | None:
    """The first ``<answer>…</answer>`` content, stripped and lowercased; ``None`` if absent.

    Matches CLIPPER/QRHead scoring (non-greedy, across newlines, case-sensitive tag names).
    """
    if not text:
        return None
    match = _ANSWER_TAG.search(text)
    return match.group(1).strip().lower() if match else None


# -- LongMemEval judge -------------------------------------------------------------------------

_CORRECT_HEAD = (
    "I will give you a question, a correct answer, and a response from a model. Please answer yes "
    "if the response contains the correct answer. Otherwise, answer no."
)
_STEPS = (
    " If the response is equivalent to the correct answer or contains all the intermediate steps "
    "to get the correct answer, you should also answer yes. If the response only contains a subset "
    "of the information required by the answer, answer no."
)
_TAIL = "\n\nQuestion: {question}\n\nCorrect Answer: {answer}\n\nModel Response: {response}\n\nIs the model response correct? Answer yes or no only."

JUDGE_TEMPLATES: dict[str, str] = {
    "generic": _CORRECT_HEAD + _STEPS + " " + _TAIL,
    "temporal-reasoning": _CORRECT_HEAD
    + _STEPS
    + " In addition, do not penalize off-by-one errors for the number of days. If the question asks "
    "for the number of days/weeks/months, etc., and the model makes off-by-one errors (e.g., "
    "predicting 19 days when the answer is 18), the model's response is still correct. " + _TAIL,
    "knowledge-update": _CORRECT_HEAD
    + " If the response contains some previous information along with an updated answer, the "
    "response should be considered as correct as long as the updated answer is the required answer." + _TAIL,
    "single-session-preference": (
        "I will give you a question, a rubric for desired personalized response, and a response from "
        "a model. Please answer yes if the response satisfies the desired response. Otherwise, answer "
        "no. The model does not need to reflect all the points in the rubric. The response is correct "
        "as long as it recalls and utilizes the user's personal information correctly."
        "\n\nQuestion: {question}\n\nRubric: {answer}\n\nModel Response: {response}\n\n"
        "Is the model response correct? Answer yes or no only."
    ),
    "abstention": (
        "I will give you an unanswerable question, an explanation, and a response from a model. "
        "Please answer yes if the model correctly identifies the question as unanswerable. The model "
        "could say that the information is incomplete, or some other information is given but the "
        "asked information is not."
        "\n\nQuestion: {question}\n\nExplanation: {answer}\n\nModel Response: {response}\n\n"
        "Does the model correctly identify the question as unanswerable? Answer yes or no only."
    ),
}
"""LongMemEval's judge prompts, reproduced from knowledge of its ``evaluate_qa.py`` (not copied
from the file, which is not at hand): wording may differ in details from the original."""

GENERIC_JUDGE_TYPES = frozenset({"single-session-user", "single-session-assistant", "multi-session"})


def judge_template_name(question_type: str, question_id: str) -> str:
    """Which judge prompt a LongMemEval question gets.

    Abstention questions (``'_abs' in question_id``) get the abstention prompt whatever their
    type; an unknown type is an error (LongMemEval raises too).
    """
    if "_abs" in question_id:
        return "abstention"
    if question_type in GENERIC_JUDGE_TYPES:
        return "generic"
    if question_type in JUDGE_TEMPLATES:
        return question_type
    from harness.errors import HarnessError

    raise HarnessError(
        f"LongMemEval question {question_id!r}: unknown question_type {question_type!r} (no judge prompt)"
    )


def longmemeval_judge_prompt(question_type: str, question_id: str, question: str, answer: str, response: str) -> str:
    """The yes/no judge prompt for one LongMemEval answer (see :data:`JUDGE_TEMPLATES`)."""
    template = JUDGE_TEMPLATES[judge_template_name(question_type, question_id)]
    return template.format(question=question, answer=answer, response=response)


def judge_says_yes(response: str | None) -> bool:
    """LongMemEval's rule: correct iff ``'yes' in response.lower()``."""
    return bool(response) and "yes" in str(response).lower()
