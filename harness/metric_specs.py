"""What a metric is: one :class:`MetricSpec` per metric family, looked up by name.

Validation (bounds), run-file recomputation (which metrics a ranking determines, and how deep a
ranking each reads), the leaderboard (which metrics are columns) and averaging all ask here. A
task with a metric of its own declares its spec (:attr:`harness.types.Task.metric_specs`) and
the metric then works everywhere.

A name is ``FAMILY``, ``FAMILY@K`` (a cut-off) or ``FAMILY/SUBTYPE`` (a breakdown, e.g.
``accuracy/temporal``): the family decides.

>>> lookup("nDCG@10").kind, lookup("nDCG@10").reads(10), lookup("MAP").reads(None)
('ranking', 10, None)
>>> lookup("EM").kind, lookup("parse_failure_rate").kind, lookup("parse_none_rate").shown
('answer', 'diagnostic', False)
>>> lookup("accuracy/temporal").family, lookup("latency_ms") is None
('accuracy', True)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

KINDS = ("ranking", "answer", "diagnostic")


@dataclass(frozen=True)
class MetricSpec:
    """One metric family.

    ``kind``: ``ranking`` (a function of the run and the judgements), ``answer`` (scored from
    generated answers) or ``diagnostic`` (a count of what went wrong, e.g. parse failures).
    ``bounds``: the range every value must lie in (None: unbounded). ``depth``: for ranking
    metrics, ``cutoff`` when the metric reads the top K of its ``@K`` (and the whole ranking
    without one) or ``full`` when it always reads the whole ranking. ``shown``: a leaderboard
    column (breakdowns ``x/y`` never are).
    """

    family: str
    kind: str
    bounds: tuple[float, float] | None = (0.0, 1.0)
    higher_is_better: bool = True
    depth: str = "cutoff"
    shown: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.family!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def reads(self, cutoff: int | None) -> int | None:
        """How many ranked documents per query the metric reads (None: the whole ranking, or not a ranking)."""
        if self.kind != "ranking" or self.depth == "full":
            return None
        return cutoff

    def in_bounds(self, value: float) -> bool:
        return self.bounds is None or self.bounds[0] <= value <= self.bounds[1]


def _ranking(family: str, description: str) -> MetricSpec:
    return MetricSpec(family, "ranking", description=description)


BUILTIN: tuple[MetricSpec, ...] = (
    _ranking("nDCG", "normalised discounted cumulative gain (trec_eval ndcg_cut)"),
    _ranking("R", "recall: judged relevant documents retrieved / all judged relevant"),
    _ranking("P", "precision at the cut-off"),
    _ranking("MRR", "reciprocal rank of the first relevant document"),
    _ranking("MAP", "mean average precision"),
    _ranking("R_frac", "gold-set recall: share of the gold set in the top K (docs/PROTOCOL.md §4.2)"),
    _ranking("R_all", "gold-set recall: 1 when the whole gold set is in the top K"),
    _ranking("R_any", "gold-set recall: 1 when any gold document is in the top K"),
    MetricSpec("accuracy", "answer", description="share of answers judged correct"),
    MetricSpec("claim_accuracy", "answer", description="CLIPPER: share of claims judged correctly"),
    MetricSpec("pair_accuracy", "answer", description="CLIPPER: share of claim pairs with both claims right"),
    MetricSpec("EM", "answer", description="exact match after normalisation"),
    MetricSpec("F1", "answer", description="token F1 against the gold answer"),
    MetricSpec("ROUGE-1", "answer", description="ROUGE-1 F"),
    MetricSpec("ROUGE-1-R", "answer", description="ROUGE-1 recall of the gold answer"),
    MetricSpec("judge_failed", "diagnostic", higher_is_better=False, description="the LM judge gave no verdict"),
    MetricSpec("missing_answer_tag", "diagnostic", higher_is_better=False,
               description="the answer lacks the tag the task asks for"),
    MetricSpec("parse_failure_rate", "diagnostic", higher_is_better=False,
               description="RankGPT: share of windows whose permutation could not be parsed"),
    MetricSpec("parse_none_rate", "diagnostic", higher_is_better=False, shown=False),
    MetricSpec("parse_partial_rate", "diagnostic", higher_is_better=False, shown=False),
    MetricSpec("parse_invalid_ids", "diagnostic", bounds=None, higher_is_better=False, shown=False),
    MetricSpec("parse_missing_ids", "diagnostic", bounds=None, higher_is_better=False, shown=False),
)

_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*?)(?:@(\d+))?(?:/.*)?$")
#: Families whose every name is a hidden diagnostic (``rankgpt_windows``...).
_HIDDEN_PREFIXES = ("rankgpt_",)


def _families(extra: Iterable[MetricSpec]) -> dict[str, MetricSpec]:
    table = {spec.family.lower(): spec for spec in BUILTIN}
    table.update({spec.family.lower(): spec for spec in extra})
    return table


def parse(name: str) -> tuple[str, int | None, bool]:
    """``"nDCG@10"`` -> ``("nDCG", 10, False)``; ``"accuracy/x"`` -> ``("accuracy", None, True)``."""
    match = _NAME.match(str(name))
    if not match:
        return str(name), None, "/" in str(name)
    cutoff = int(match.group(2)) if match.group(2) else None
    return match.group(1), cutoff, "/" in str(name)


def lookup(name: str, extra: Iterable[MetricSpec] = ()) -> MetricSpec | None:
    """The spec of metric ``name`` (built-ins, then ``extra``: a task's own), or None when unknown."""
    family, _, _ = parse(name)
    return _families(extra).get(family.lower())


def shown(name: str, extra: Iterable[MetricSpec] = ()) -> bool:
    """A leaderboard column: not a breakdown (``x/y``), not a hidden diagnostic; unknown metrics
    (a plug-in's) are shown."""
    if "/" in name or name.startswith(_HIDDEN_PREFIXES):
        return False
    spec = lookup(name, extra)
    return spec is None or spec.shown


def check_bounds(name: str, value: float, extra: Iterable[MetricSpec] = ()) -> bool:
    """True when ``value`` lies in the bounds of ``name``'s spec (always for unknown metrics)."""
    spec = lookup(name, extra)
    return spec is None or spec.in_bounds(value)


def recomputable(name: str, top_k: int, complete: bool) -> bool:
    """True when ranking metric ``name`` is determined exactly by a run cut at ``top_k`` per query
    (``complete``: the run holds every retrieved document)."""
    spec = lookup(name)
    if spec is None or spec.kind != "ranking":
        return False
    _, cutoff, breakdown = parse(name)
    if breakdown:
        return False
    reads = spec.reads(cutoff)
    return complete or (reads is not None and reads <= top_k)


def average(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The one aggregation rule: each metric is the mean over the queries that carry it.

    >>> average({"q1": {"R@1": 1.0}, "q2": {"R@1": 0.0, "acc": 1.0}})
    {'R@1': 0.5, 'acc': 1.0}
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for values in per_query.values():
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + float(value)
            counts[name] = counts.get(name, 0) + 1
    return {name: sums[name] / counts[name] for name in sorted(sums)}
