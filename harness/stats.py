"""Significance tests, effect sizes and confidence intervals for paired per-query scores.

Two runs ``a`` and ``b`` scored on the same queries give per-query differences ``d = a - b``.

* :func:`paired_randomization_test` is the two-sided paired randomization (sign-flip) test used by
  ranx and PyTerrier: under H0 the sign of each ``d_j`` is exchangeable. With ``n`` queries and
  ``2**n <= n_permutations`` all sign vectors ``s`` are enumerated and the p-value is exact,

      p = #{s in {-1, +1}^n : |mean(s * d)| >= |mean(d)|} / 2**n,

  otherwise ``n_permutations`` random sign vectors ``s_i`` give the Monte-Carlo estimate

      p = (1 + #{i : |mean(s_i * d)| >= |mean(d)|}) / (1 + n_permutations).

* :func:`paired_t_test` is the two-sided paired t-test, ``t = mean(d) / (sd(d) / sqrt(n))`` with
  ``n - 1`` degrees of freedom.
* :func:`holm` adjusts a family of p-values (Holm-Bonferroni).
* :func:`effect_size` gives the mean difference and Cohen's ``d_z = mean(d) / sd(d)``;
  :func:`bootstrap_ci` a percentile bootstrap interval for ``mean(d)``.
* :func:`compare` runs all of these for pairs of runs given as ``{run: {query_id: score}}``.

``sd`` is the sample standard deviation (``ddof=1``) throughout.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy import stats as _scipy_stats

Scores = Sequence[float] | npt.NDArray[np.floating]
Test = Literal["randomization", "t"]

# Sign-flipped sums that equal the observed sum up to this relative tolerance (times sum(|d|)) count
# as ties: floating-point rounding must not decide whether a tie is "as extreme".
_TIE_RTOL = 1e-9
# A standard deviation below this times max(|d|) is rounding noise (0.5 - 0.3 != 0.6 - 0.4 in floats)
# and counts as 0 for the t-test and d_z.
_ZERO_SD_RTOL = 1e-9
# Largest number of float64 cells held at once by the enumeration, the Monte-Carlo and the bootstrap.
_BLOCK = 1 << 20


def _differences(a: Scores, b: Scores) -> npt.NDArray[np.float64]:
    """``a - b`` as float64, after checking the shapes match and every value is finite."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"paired scores need two 1-D sequences of one length, got shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("paired scores must be finite (no NaN or inf)")
    return x - y


def _sd(diff: npt.NDArray[np.float64]) -> float:
    """Sample standard deviation (``ddof=1``) of ``diff``; 0 for one value or rounding noise."""
    if diff.size < 2:
        return 0.0
    sd = float(diff.std(ddof=1))
    return 0.0 if sd <= _ZERO_SD_RTOL * float(np.abs(diff).max()) else sd


def _sign_sums(diff: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``sum(s * diff)`` for all ``2**len(diff)`` sign vectors ``s`` (built one element at a time)."""
    sums = np.zeros(1)
    for value in diff:
        sums = np.concatenate((sums + value, sums - value))
    return sums


def _threshold(diff: npt.NDArray[np.float64]) -> float:
    """``|sum(d)|`` less the tie tolerance: sign-flipped sums at least this large are "as extreme"."""
    return abs(float(diff.sum())) - _TIE_RTOL * float(np.abs(diff).sum())


def _exact_p_value(diff: npt.NDArray[np.float64]) -> float:
    """Exact sign-flip p-value ``#{s : |sum(s * d)| >= |sum(d)|} / 2**n`` by full enumeration.

    The sign vectors split into a low part (all ``2**k`` sums held in memory) and a high part
    walked in blocks, so memory stays bounded while time is ``O(2**n)``.
    """
    threshold = _threshold(diff)
    k = min(diff.size, 16)
    low, high = _sign_sums(diff[:k]), _sign_sums(diff[k:])
    step = max(1, _BLOCK // low.size)
    hits = 0
    for start in range(0, high.size, step):
        block = np.abs(high[start:start + step, None] + low[None, :])
        hits += int(np.count_nonzero(block >= threshold))
    return hits / 2.0 ** diff.size


def _monte_carlo_p_value(diff: npt.NDArray[np.float64], n_permutations: int, seed: int) -> float:
    """Monte-Carlo sign-flip p-value ``(1 + #{i : |sum(s_i * d)| >= |sum(d)|}) / (1 + n_permutations)``."""
    threshold = _threshold(diff)
    rng = np.random.default_rng(seed)
    step = max(1, min(2000, _BLOCK // diff.size))
    hits = 0
    remaining = n_permutations
    while remaining:
        size = min(remaining, step)
        signs = rng.integers(0, 2, size=(size, diff.size), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ diff) >= threshold))
        remaining -= size
    return (hits + 1) / (n_permutations + 1)


def paired_randomization_test(a: Scores, b: Scores, n_permutations: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value that the mean of ``d = a - b`` differs from 0 (paired by position).

    With ``n = len(d)``: if ``2**n <= n_permutations`` every sign vector is enumerated and the
    exact p-value ``#{s in {-1, +1}^n : |mean(s * d)| >= |mean(d)|} / 2**n`` is returned;
    otherwise the Monte-Carlo estimate ``(1 + hits) / (1 + n_permutations)`` over
    ``n_permutations`` random sign vectors drawn with ``seed``. All-zero (or no) differences give 1.

    Eight queries all improved by 1: only ``s = +1`` and ``s = -1`` are as extreme, so the
    exact p-value is 2 / 2**8.

    >>> paired_randomization_test([1, 1, 1, 1, 1, 1, 1, 1], [0] * 8)
    0.0078125
    >>> paired_randomization_test([0.5, 0.2], [0.5, 0.2])
    1.0
    """
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1, got {n_permutations}")
    diff = _differences(a, b)
    if diff.size == 0 or not np.any(diff):
        return 1.0
    if diff.size < n_permutations.bit_length():  # 2**n <= n_permutations
        return _exact_p_value(diff)
    return _monte_carlo_p_value(diff, n_permutations, seed)


def paired_t_test(a: Scores, b: Scores) -> float:
    """Two-sided paired t-test p-value for ``d = a - b`` (``scipy.stats.ttest_rel``).

    ``t = mean(d) / (sd(d) / sqrt(n))`` with ``n - 1`` degrees of freedom and
    ``p = 2 * (1 - F_t(|t|; n - 1))``. Where scipy would answer NaN -- all differences zero,
    or fewer than two pairs -- the p-value is 1. Differences that are all equal but not zero
    have ``sd = 0`` and ``|t| = inf``; scipy's limit ``p = 0`` is kept (also when ``sd`` is mere
    rounding noise, below ``1e-9 * max(|d|)``).

    >>> round(paired_t_test([0.5, 0.7, 0.4, 0.9], [0.4, 0.5, 0.4, 0.6]), 4)
    0.1027
    >>> paired_t_test([0.3, 0.6], [0.3, 0.6])
    1.0
    """
    diff = _differences(a, b)
    if diff.size < 2 or not np.any(diff):
        return 1.0
    if _sd(diff) == 0:
        return 0.0
    return float(_scipy_stats.ttest_rel(diff, np.zeros_like(diff)).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With ``p_(1) <= ... <= p_(m)`` sorted, ``p~_(k) = min(1, max_{j <= k} (m - j + 1) * p_(j))``.

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = round(running, 12)
    return adjusted


class EffectSize(NamedTuple):
    """Mean paired difference and Cohen's ``d_z`` (see :func:`effect_size`)."""

    mean_diff: float
    d_z: float


def effect_size(a: Scores, b: Scores) -> EffectSize:
    """Mean difference ``mean(d)`` and Cohen's ``d_z = mean(d) / sd(d)`` of ``d = a - b``.

    ``sd`` is the sample standard deviation (``ddof=1``); ``d_z`` is 0 when ``sd`` is 0
    (a single pair, or ``sd`` below ``1e-9 * max(|d|)``, rounding noise of equal differences).

    >>> [round(x, 6) for x in effect_size([0.5, 0.7, 0.9], [0.4, 0.5, 0.6])]
    [0.2, 2.0]
    """
    diff = _differences(a, b)
    if diff.size == 0:
        raise ValueError("effect_size needs at least one pair")
    mean = float(diff.mean())
    sd = _sd(diff)
    return EffectSize(mean, mean / sd if sd > 0 else 0.0)


def bootstrap_ci(
    a: Scores, b: Scores, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean paired difference ``mean(a - b)``.

    Each of ``n_resamples`` resamples draws ``n`` queries with replacement (``seed`` fixes the
    draws) and takes ``m_r = mean(d[idx_r])``; the interval is the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles of the ``m_r`` (linear interpolation).

    >>> [round(x, 6) for x in bootstrap_ci([0.4, 0.6], [0.1, 0.3])]
    [0.3, 0.3]
    >>> [round(x, 3) for x in bootstrap_ci([0.5, 0.7, 0.9, 0.6], [0.4, 0.4, 0.5, 0.6])]
    [0.05, 0.35]
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    diff = _differences(a, b)
    if diff.size == 0:
        raise ValueError("bootstrap_ci needs at least one pair")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    step = max(1, _BLOCK // diff.size)
    for start in range(0, n_resamples, step):
        size = min(step, n_resamples - start)
        means[start:start + size] = diff[rng.integers(0, diff.size, size=(size, diff.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Run ``a`` against run ``b`` on the ``n`` queries both scored (``delta = mean_a - mean_b``).

    ``p``, ``p_holm``, ``effect_size`` (Cohen's ``d_z``), ``ci_low`` and ``ci_high`` are None when
    fewer than two queries are shared (no test); the means and ``delta`` are None when none is.
    """

    metric: str
    a: str
    b: str
    n: int
    mean_a: float | None
    mean_b: float | None
    delta: float | None
    p: float | None
    p_holm: float | None
    significant: bool
    effect_size: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def mark(self) -> str:
        """``▲`` when ``a`` is significantly better than ``b``, ``▼`` when worse, else empty."""
        return ("▲" if (self.delta or 0) > 0 else "▼") if self.significant else ""


def _pairs(runs: Mapping[str, Mapping[str, float]], baseline: str | None) -> list[tuple[str, str]]:
    """All pairs of runs in their given order, or each other run against ``baseline``."""
    if baseline is None:
        return list(itertools.combinations(runs, 2))
    if baseline not in runs:
        raise ValueError(f"baseline {baseline!r} is not among the runs {sorted(runs)}")
    return [(name, baseline) for name in runs if name != baseline]


def _compare_pair(metric: str, a: str, b: str, xs: list[float], ys: list[float], test: Test) -> Comparison:
    """One unadjusted comparison (``p_holm`` None, not significant) of paired scores ``xs``, ``ys``."""
    n = len(xs)
    mean_a = float(np.mean(xs)) if n else None
    mean_b = float(np.mean(ys)) if n else None
    delta = float(np.mean(np.subtract(xs, ys))) if n else None
    if n < 2:
        return Comparison(metric, a, b, n, mean_a, mean_b, delta, None, None, False, None, None, None)
    p = paired_randomization_test(xs, ys) if test == "randomization" else paired_t_test(xs, ys)
    low, high = bootstrap_ci(xs, ys)
    d_z = effect_size(xs, ys).d_z
    return Comparison(metric, a, b, n, mean_a, mean_b, delta, p, None, False, d_z, low, high)


def compare(
    runs: Mapping[str, Mapping[str, float]],
    metric_name: str = "",
    baseline: str | None = None,
    test: Test = "randomization",
    alpha: float = 0.05,
) -> list[Comparison]:
    """Paired comparisons of runs given as ``{run: {query_id: score}}``, Holm-adjusted as one family.

    With ``baseline`` None every pair ``(a, b)`` of runs (in the given order, ``a`` first) is
    compared, ``m * (m - 1) / 2`` records; otherwise each other run ``a`` against ``b = baseline``.
    Each pair is matched on the query ids both score with finite values; with at least two such
    queries ``test`` (``"randomization"``: :func:`paired_randomization_test`, ``"t"``:
    :func:`paired_t_test`) gives ``p``, and :func:`holm` over all those p-values gives ``p_holm``;
    ``significant`` is ``p_holm < alpha``. :func:`effect_size` and :func:`bootstrap_ci` (95 %) fill in
    ``effect_size``, ``ci_low`` and ``ci_high``.

    >>> runs = {"bm25": {"q1": 0.2, "q2": 0.4}, "dense": {"q1": 0.5, "q2": 0.6, "q3": 0.1}}
    >>> [(c.a, c.b, c.n, round(c.delta, 6), c.p) for c in compare(runs, "ndcg@10", baseline="bm25")]
    [('dense', 'bm25', 2, 0.25, 0.5)]
    """
    if test not in ("randomization", "t"):
        raise ValueError(f"test must be 'randomization' or 't', got {test!r}")
    records = []
    for a, b in _pairs(runs, baseline):
        common = [q for q in runs[a] if q in runs[b] and math.isfinite(runs[a][q]) and math.isfinite(runs[b][q])]
        xs, ys = [float(runs[a][q]) for q in common], [float(runs[b][q]) for q in common]
        records.append(_compare_pair(metric_name, a, b, xs, ys, test))
    adjusted = iter(holm([r.p for r in records if r.p is not None]))
    return [r if r.p is None else _with_holm(r, next(adjusted), alpha) for r in records]


def _with_holm(record: Comparison, p_holm: float, alpha: float) -> Comparison:
    """``record`` with its Holm-adjusted p-value and the significance decision at ``alpha``."""
    return dataclasses.replace(record, p_holm=p_holm, significant=p_holm < alpha)
