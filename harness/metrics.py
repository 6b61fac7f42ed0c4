"""Ranking metrics with ir_measures-style names, computed through ``pytrec_eval``.

Names
-----
========== ============================================ ==========================
name       definition                                    backend
========== ============================================ ==========================
nDCG@k     trec_eval ``ndcg_cut.k`` (linear gain)        pytrec_eval
nDCG       trec_eval ``ndcg`` (whole ranking)            pytrec_eval
R@k        trec_eval ``recall.k``: |top-k ∩ rel| / |rel|  pytrec_eval
P@k        trec_eval ``P.k``: |top-k ∩ rel| / k           pytrec_eval
MRR@k      ``recip_rank`` of the run cut to its top k    pytrec_eval
MRR        ``recip_rank`` of the whole ranking           pytrec_eval
MAP        trec_eval ``map``                             pytrec_eval
MAP@k      trec_eval ``map_cut.k``                       pytrec_eval
R_frac@k   |top-k ∩ gold| / |gold|; empty gold -> 0      here (docs/PROTOCOL.md §4.2)
R_all@k    [gold ⊆ top-k]; empty gold -> 1 (``all([])``)  here (docs/PROTOCOL.md §4.2)
R_any@k    [top-k ∩ gold ≠ ∅]; empty gold -> 0            here (docs/PROTOCOL.md §4.2)
========== ============================================ ==========================

A document is *relevant* (in the gold set) when its label is ``>= relevance_level``.

Which queries count
-------------------
* Queries are those of the qrels; run entries for other queries are ignored.
* trec_eval metrics (everything but the ``R_*`` gold-set variants) skip queries whose qrels hold
  no relevant document, as trec_eval and BEIR do.
* Gold-set variants keep every qrels query, including those with an empty gold set (LongMemEval
  abstention questions), with the values above.
* A query with no retrieved document (absent from the run, or an empty ranking) scores 0 on
  every metric (``R_all`` with an empty gold set scores 1), instead of being skipped as
  trec_eval would.

Ties
----
trec_eval re-sorts a run by score, breaking ties by document id *descending* (pytrec_eval#56),
while the harness writes and cuts rankings in ``(-score, doc_id)`` order (ties by id
ascending). :func:`evaluate` first orders each query's ranking by ``(-score, doc_id)`` and
replaces the scores by strictly decreasing ones (``n - rank``), so every metric sees exactly the
order written to TREC run files, and ``MRR@k``/``R_*@k`` cut the same top k.

Example
-------
>>> qrels = {"q1": {"d1": 1, "d2": 0}}
>>> run = {"q1": {"d2": 2.0, "d1": 1.0}}
>>> evaluate(qrels, run, ["MRR@10", "P@1"]).aggregate
{'MRR@10': 0.5, 'P@1': 0.0}
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from harness.errors import HarnessError, unknown_name
from harness.types import Qrels, Run

log = logging.getLogger(__name__)

#: Metric name -> (pytrec_eval measure or None when computed here, cutoff rule).
#: The cutoff rule is "required", "optional" or "none".
_FAMILIES: dict[str, tuple[str | None, str]] = {
    "nDCG": ("ndcg_cut", "optional"),
    "R": ("recall", "required"),
    "P": ("P", "required"),
    "MRR": ("recip_rank", "optional"),
    "MAP": ("map_cut", "optional"),
    "R_frac": (None, "required"),
    "R_all": (None, "required"),
    "R_any": (None, "required"),
}
_BY_LOWER = {name.lower(): name for name in _FAMILIES}
_NAME_RE = re.compile(r"^\s*([A-Za-z_]+)\s*(?:@\s*([^\s]+))?\s*$")

#: Example names, for error messages and ``harness list``.
KNOWN_EXAMPLES: tuple[str, ...] = (
    "nDCG@10", "nDCG", "R@100", "P@10", "MRR@10", "MRR", "MAP", "MAP@100", "R_frac@5", "R_all@5", "R_any@5",
)


@dataclass
class MetricResult:
    """Mean values (``aggregate``) and the per-query values they are the mean of."""

    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]


def parse_metric(name: str) -> tuple[str, int | None]:
    """Split a metric name into its family and cutoff.

    >>> parse_metric("nDCG@10")
    ('nDCG', 10)
    >>> parse_metric("map")
    ('MAP', None)

    Family names are matched case-insensitively and returned in canonical spelling. Unknown
    names, missing or forbidden cutoffs and cutoffs that are not positive integers raise
    :class:`HarnessError`.
    """
    match = _NAME_RE.match(name) if isinstance(name, str) else None
    family = _BY_LOWER.get(match.group(1).lower()) if match else None
    if match is None or family is None:
        raise unknown_name("metric", str(name), KNOWN_EXAMPLES)
    rule = _FAMILIES[family][1]
    raw_cutoff = match.group(2)
    if raw_cutoff is None:
        if rule == "required":
            raise HarnessError(f"metric {name!r} needs a cutoff, e.g. {family}@10")
        return family, None
    if not raw_cutoff.isdigit() or int(raw_cutoff) <= 0:
        raise HarnessError(f"metric {name!r}: the cutoff must be a positive integer, got {raw_cutoff!r}")
    return family, int(raw_cutoff)


def format_metric(family: str, cutoff: int | None) -> str:
    """The canonical name: ``format_metric("nDCG", 10) == "nDCG@10"``."""
    return family if cutoff is None else f"{family}@{cutoff}"


def canonical_metric(name: str) -> str:
    """``"ndcg@10"`` -> ``"nDCG@10"``; raises :class:`HarnessError` for unknown names."""
    return format_metric(*parse_metric(name))


# --------------------------------------------------------------------------------------------
# Run preparation
# --------------------------------------------------------------------------------------------


def ranked_ids(ranking: Mapping[str, float]) -> list[str]:
    """Document ids in the harness order: score descending, then doc id ascending."""
    return sorted(ranking, key=lambda doc: (-float(ranking[doc]), doc))


def strict_run(run: Run, *, ignore_identical_ids: bool = False) -> dict[str, list[str]]:
    """Each query's ranked doc ids, optionally without the doc whose id equals the query id."""
    ordered: dict[str, list[str]] = {}
    for qid, ranking in run.items():
        docs = ranked_ids(ranking)
        if ignore_identical_ids:
            docs = [doc for doc in docs if doc != qid]
        ordered[qid] = docs
    return ordered


def _as_scored(ranked: Mapping[str, list[str]], cutoff: int | None = None) -> Run:
    """Strictly decreasing synthetic scores (``n - rank``) so trec_eval keeps our order."""
    out: Run = {}
    for qid, docs in ranked.items():
        docs = docs[:cutoff] if cutoff is not None else docs
        n = len(docs)
        out[qid] = {doc: float(n - i) for i, doc in enumerate(docs)}
    return out


# --------------------------------------------------------------------------------------------
# Gold-set variants (docs/PROTOCOL.md §4.2)
# --------------------------------------------------------------------------------------------


def gold_recall(family: str, topk: Sequence[str], gold: set[str]) -> float:
    """One query's ``R_frac``, ``R_all`` or ``R_any`` for its top-k ids and gold set.

    .. math:: R_{frac} = |T \\cap G| / |G|,\\quad R_{all} = [G \\subseteq T],\\quad R_{any} = [T \\cap G \\neq \\emptyset]

    with ``R_frac = 0`` and ``R_all = 1`` when ``G`` is empty (as the paper's code does).
    """
    hits = len(gold.intersection(topk))
    if family == "R_frac":
        return hits / len(gold) if gold else 0.0
    if family == "R_all":
        return 1.0 if hits == len(gold) else 0.0
    if family == "R_any":
        return 1.0 if hits > 0 else 0.0
    raise HarnessError(f"not a gold-set recall metric: {family!r}")


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def evaluate(
    qrels: Qrels,
    run: Run,
    metrics: Sequence[str],
    *,
    ignore_identical_ids: bool = False,
    relevance_level: int = 1,
) -> MetricResult:
    """Compute ``metrics`` of ``run`` against ``qrels``: means and per-query values.

    See the module docstring for the names, the queries that count and the tie rule.
    """
    import pytrec_eval

    if not metrics:
        raise HarnessError("no metrics requested")
    if not qrels:
        raise HarnessError("qrels are empty: nothing to evaluate")
    parsed: dict[str, tuple[str, int | None]] = {}
    for name in metrics:
        family, cutoff = parse_metric(name)
        parsed[format_metric(family, cutoff)] = (family, cutoff)

    ranked = strict_run(run, ignore_identical_ids=ignore_identical_ids)
    ignored = sorted(set(run) - set(qrels))
    if ignored:
        log.debug("%d run queries are not in the qrels and are ignored", len(ignored))
    gold = {qid: {doc for doc, rel in labels.items() if rel >= relevance_level} for qid, labels in qrels.items()}
    judged = [qid for qid in qrels if gold[qid]]
    retrieved = {qid: ranked.get(qid, []) for qid in qrels}
    per_query: dict[str, dict[str, float]] = {qid: {} for qid in qrels}

    trec = {key: fc for key, fc in parsed.items() if _FAMILIES[fc[0]][0] is not None}
    if trec:
        if not judged:
            raise HarnessError(
                f"no query has a document with relevance >= {relevance_level}: cannot compute {', '.join(trec)}"
            )
        skipped = len(qrels) - len(judged)
        if skipped:
            log.info("%d of %d queries have no relevant document and are skipped by trec_eval metrics", skipped, len(qrels))
        judged_qrels = {qid: {doc: int(rel) for doc, rel in qrels[qid].items()} for qid in judged}
        with_docs = {qid: retrieved[qid] for qid in judged if retrieved[qid]}
        _trec_eval(pytrec_eval, judged_qrels, with_docs, trec, per_query, relevance_level)
        for qid in judged:
            if not retrieved[qid]:  # empty result: every metric 0
                for key in trec:
                    per_query[qid][key] = 0.0

    for key, (family, cutoff) in parsed.items():
        if _FAMILIES[family][0] is None:
            assert cutoff is not None
            for qid in qrels:
                per_query[qid][key] = gold_recall(family, retrieved[qid][:cutoff], gold[qid])

    per_query = {qid: values for qid, values in per_query.items() if values}
    return MetricResult(aggregate=aggregate(per_query, list(parsed)), per_query=per_query)


def _trec_eval(
    pytrec_eval: object,
    qrels: Qrels,
    ranked: dict[str, list[str]],
    trec: dict[str, tuple[str, int | None]],
    per_query: dict[str, dict[str, float]],
    relevance_level: int,
) -> None:
    """Fill ``per_query`` with the pytrec_eval-backed metrics for queries with a ranking."""
    if not ranked:
        return
    measures: set[str] = set()
    keys: dict[str, str] = {}  # our name -> pytrec_eval result key
    mrr_cutoffs: set[int] = set()
    for name, (family, cutoff) in trec.items():
        measure = _FAMILIES[family][0]
        if family == "MRR":
            if cutoff is not None:
                mrr_cutoffs.add(cutoff)
            else:
                measures.add("recip_rank")
                keys[name] = "recip_rank"
        elif cutoff is None:  # nDCG, MAP over the whole ranking
            plain = {"nDCG": "ndcg", "MAP": "map"}[family]
            measures.add(plain)
            keys[name] = plain
        else:
            measures.add(f"{measure}.{cutoff}")
            keys[name] = f"{measure}_{cutoff}"
    evaluator_cls = pytrec_eval.RelevanceEvaluator  # type: ignore[attr-defined]
    if measures:
        results = evaluator_cls(qrels, measures, relevance_level=relevance_level).evaluate(_as_scored(ranked))
        for qid, values in results.items():
            for name, key in keys.items():
                per_query[qid][name] = float(values[key])
    for cutoff in sorted(mrr_cutoffs):
        results = evaluator_cls(qrels, {"recip_rank"}, relevance_level=relevance_level).evaluate(
            _as_scored(ranked, cutoff)
        )
        for qid, values in results.items():
            per_query[qid][format_metric("MRR", cutoff)] = float(values["recip_rank"])


def aggregate(per_query: Mapping[str, Mapping[str, float]], metrics: Iterable[str]) -> dict[str, float]:
    """The mean of each metric over the queries whose per-query values include it
    (:func:`harness.metric_specs.average`, the one rule that ``harness validate`` re-applies).
    A metric that no query has raises :class:`HarnessError` (a mean never silently skips one)."""
    from harness.metric_specs import average

    means = average(per_query)
    out: dict[str, float] = {}
    for name in metrics:
        key = canonical_metric(name)
        if key not in means:
            raise HarnessError(f"metric {key!r}: no per-query values to average")
        out[key] = means[key]
    return out
