"""harness.stats against scipy (and statsmodels where installed) and against hand-computed values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from harness.stats import (
    Comparison,
    _exact_p_value,
    _monte_carlo_p_value,
    bootstrap_ci,
    compare,
    effect_size,
    holm,
    paired_randomization_test,
    paired_t_test,
)

_RNG = np.random.default_rng(12345)
_NOISY_A = _RNG.uniform(0.2, 0.8, 11)

# (a, b) pairs with ties in |d|, a zero difference, negative effects and a mean-zero case.
SMALL = {
    "ties": ([0.5, 0.75, 0.25, 1.0, 0.5, 0.75, 0.5], [0.25, 0.5, 0.5, 0.75, 0.25, 0.5, 0.75]),
    "zero_difference": ([0.5, 0.6, 0.3, 0.9, 0.4, 0.7, 0.2, 0.8], [0.4, 0.6, 0.35, 0.6, 0.5, 0.55, 0.1, 0.8]),
    "negative": ([0.1, 0.3, 0.2, 0.4, 0.25, 0.05, 0.3, 0.5, 0.2], [0.4, 0.5, 0.3, 0.45, 0.6, 0.2, 0.25, 0.8, 0.6]),
    "negative_ties": ([0.0, 0.25, 0.5, 0.25, 0.0, 0.5], [0.5, 0.5, 0.75, 0.0, 0.25, 0.75]),
    "mean_zero": ([0.5, 0.25, 0.75, 0.5], [0.25, 0.5, 0.5, 0.75]),
    "noisy": (_NOISY_A, _NOISY_A + _RNG.normal(0.05, 0.1, 11)),
    "one_query_decides": ([0.9, 0.5, 0.5, 0.5, 0.5], [0.1, 0.5, 0.5, 0.5, 0.5]),
}


def _scipy_exact_p(a, b) -> float:
    result = scipy.stats.permutation_test(
        (np.asarray(a, float), np.asarray(b, float)),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples", alternative="two-sided", n_resamples=np.inf, vectorized=True,
    )
    return float(result.pvalue)


def _shifted(n: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    b = rng.uniform(0.2, 0.8, n)
    return b + shift + rng.normal(0.0, 0.15, n), b


# --- paired randomization test -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SMALL))
def test_exact_randomization_p_value_equals_scipy_permutation_test(name: str) -> None:
    a, b = SMALL[name]
    assert len(a) <= 13  # 2**n <= 10_000: the exact path
    assert paired_randomization_test(a, b) == pytest.approx(_scipy_exact_p(a, b), abs=1e-12)


def test_exact_randomization_p_value_by_hand() -> None:
    # d = (1, 2, 3): the sign sums are +-6, +-4, +-2, 0, 0; only +-6 reach |6|, so p = 2/8.
    assert paired_randomization_test([1, 2, 3], [0, 0, 0]) == 0.25
    assert paired_randomization_test([0] * 8, [1] * 8) == 2 / 2**8  # no +1 in the exact p-value
    assert paired_randomization_test([0.2, 0.1], [0.1, 0.2]) == 1.0  # mean zero: every flip is as extreme
    assert SMALL["ties"][0] != SMALL["ties"][1] and _scipy_exact_p(*SMALL["ties"]) < 1.0


def test_zero_differences_give_p_one() -> None:
    assert paired_randomization_test([0.3, 0.5, 0.7], [0.3, 0.5, 0.7]) == 1.0
    assert paired_randomization_test([0.3] * 40, [0.3] * 40) == 1.0  # Monte-Carlo size, same answer
    assert paired_randomization_test([], []) == 1.0


def test_exact_path_is_taken_iff_two_to_the_n_fits_in_n_permutations() -> None:
    a, b = _shifted(16, 0.05, seed=3)
    diff = a - b
    assert paired_randomization_test(a, b, n_permutations=2**16) == _exact_p_value(diff)
    assert paired_randomization_test(a, b, n_permutations=2**16 - 1, seed=4) == _monte_carlo_p_value(
        diff, 2**16 - 1, 4
    )
    # the Monte-Carlo estimate carries the +1 and so never equals a count over 2**16 here
    assert paired_randomization_test(a, b, n_permutations=2**16 - 1) != _exact_p_value(diff)


def test_monte_carlo_is_within_0_01_of_the_exact_p_value() -> None:
    a, b = _shifted(16, 0.06, seed=7)
    exact = _scipy_exact_p(a, b)
    assert 0.02 < exact < 0.5  # a p-value where the estimate has room to be wrong
    assert _exact_p_value(a - b) == pytest.approx(exact, abs=1e-12)
    assert abs(_monte_carlo_p_value(a - b, 100_000, seed=0) - exact) < 0.01
    # n = 17 with 100k permutations goes through the public function's Monte-Carlo path
    a17, b17 = _shifted(17, 0.06, seed=8)
    assert 2**17 > 100_000
    assert abs(paired_randomization_test(a17, b17, n_permutations=100_000) - _exact_p_value(a17 - b17)) < 0.01


def test_monte_carlo_is_deterministic_by_seed() -> None:
    a, b = _shifted(30, 0.03, seed=1)
    first = paired_randomization_test(a, b, seed=5)
    assert paired_randomization_test(a, b, seed=5) == first
    assert paired_randomization_test(a, b, seed=6) != first


def test_randomization_test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="one length"):
        paired_randomization_test([0.1], [0.1, 0.2, 0.3])  # would broadcast silently
    with pytest.raises(ValueError, match="finite"):
        paired_randomization_test([0.1, float("nan")], [0.1, 0.2])  # would look significant
    with pytest.raises(ValueError, match="n_permutations"):
        paired_randomization_test([0.1], [0.2], n_permutations=0)


# --- paired t-test ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ties", "zero_difference", "negative", "noisy", "mean_zero"])
def test_paired_t_test_equals_scipy_ttest_rel(name: str) -> None:
    a, b = SMALL[name]
    expected = scipy.stats.ttest_rel(a, b).pvalue
    assert paired_t_test(a, b) == pytest.approx(expected, rel=1e-10, abs=1e-15)


def test_paired_t_test_by_hand_and_degenerate_cases() -> None:
    # d = (0.1, 0.2, 0, 0.3): mean 0.15, sd sqrt(0.05 / 3), t = 0.15 / (sd / 2) on 3 df
    t = 0.15 / (math.sqrt(0.05 / 3) / 2)
    assert paired_t_test([0.5, 0.7, 0.4, 0.9], [0.4, 0.5, 0.4, 0.6]) == pytest.approx(2 * scipy.stats.t.sf(t, 3))
    assert paired_t_test([0.3, 0.6, 0.9], [0.3, 0.6, 0.9]) == 1.0  # scipy: NaN
    assert paired_t_test([0.3], [0.1]) == 1.0  # scipy: NaN
    assert paired_t_test([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == 0.0  # sd 0, |t| = inf, scipy's limit
    assert paired_t_test([0.5, 0.6, 0.9], [0.3, 0.4, 0.7]) == 0.0  # sd 0 up to rounding


# --- Holm ---------------------------------------------------------------------------------------------------

HOLM_CASES = [
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 -> 5*0.005, 4*0.01, 3*0.03, max(0.09, 2*0.04), 0.5
    ([0.01, 0.04, 0.03, 0.005, 0.5], [0.04, 0.09, 0.09, 0.025, 0.5]),
    ([0.3, 0.4], [0.6, 0.6]),  # step-down monotonicity: 0.4 is raised to 0.6
    ([0.6, 0.7], [1.0, 1.0]),  # capped at 1
    ([0.02, 0.02, 0.02], [0.06, 0.06, 0.06]),  # ties
    ([0.001], [0.001]),
    ([], []),
]


@pytest.mark.parametrize(("p_values", "expected"), HOLM_CASES)
def test_holm_by_hand(p_values: list[float], expected: list[float]) -> None:
    assert holm(p_values) == pytest.approx(expected, abs=1e-12)


def test_holm_equals_statsmodels_multipletests() -> None:
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(0)
    for p_values in [case for case, _ in HOLM_CASES if case] + [list(rng.uniform(0, 0.2, 12))]:
        expected = multipletests(p_values, method="holm")[1]
        assert holm(p_values) == pytest.approx(list(expected), abs=1e-12)


def test_holm_equals_its_definition_on_random_families() -> None:
    rng = np.random.default_rng(1)
    for m in (2, 5, 17):
        p = list(rng.uniform(0, 0.1, m))
        ranked = sorted(range(m), key=lambda i: p[i])
        expected = [0.0] * m
        for k, i in enumerate(ranked):
            expected[i] = min(1.0, max((m - j) * p[ranked[j]] for j in range(k + 1)))
        assert holm(p) == pytest.approx(expected, abs=1e-12)


# --- effect size and bootstrap CI ---------------------------------------------------------------------------


def test_effect_size() -> None:
    mean, d_z = effect_size([0.5, 0.7, 0.9], [0.4, 0.5, 0.6])  # d = (0.1, 0.2, 0.3): sd 0.1
    assert mean == pytest.approx(0.2) and d_z == pytest.approx(2.0)
    assert effect_size([0.1, 0.2], [0.4, 0.6]) == pytest.approx((-0.35, -0.35 / math.sqrt(0.005)))
    assert effect_size([0.5, 0.6], [0.3, 0.4]).d_z == 0.0  # sd 0 (up to rounding: 0.5-0.3 != 0.6-0.4)
    assert effect_size([0.5, 0.75], [0.25, 0.5]).d_z == 0.0  # sd exactly 0
    assert effect_size([0.5], [0.3]) == pytest.approx((0.2, 0.0))


def test_bootstrap_ci_covers_the_true_difference_and_excludes_zero() -> None:
    rng = np.random.default_rng(2)
    b = rng.uniform(0.2, 0.6, 40)
    a = b + 0.3 + rng.normal(0.0, 0.05, 40)
    low, high = bootstrap_ci(a, b)
    assert low < 0.3 < high and low < float(np.mean(a - b)) < high
    assert low > 0 and high - low < 0.06
    # close to scipy's percentile bootstrap (different random draws, so not equal)
    ref = scipy.stats.bootstrap((a - b,), np.mean, n_resamples=10_000, method="percentile", random_state=0)
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.005)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.005)
    low90, high90 = bootstrap_ci(a, b, confidence=0.9)
    assert low < low90 < high90 < high
    worse_low, worse_high = bootstrap_ci(b, a)
    assert worse_high < 0 and worse_low == pytest.approx(-high) and worse_high == pytest.approx(-low)


def test_bootstrap_ci_quantiles_match_the_binomial_law() -> None:
    # d is 50 ones and 50 zeros: a resample's mean is Binomial(100, 1/2) / 100, so the percentile
    # interval sits at that law's 2.5 % and 97.5 % quantiles (0.40, 0.60), 90 % at (0.42, 0.58).
    d = [1.0] * 50 + [0.0] * 50
    for confidence in (0.95, 0.9):
        tail = (1 - confidence) / 2
        expected = scipy.stats.binom.ppf([tail, 1 - tail], 100, 0.5) / 100
        assert bootstrap_ci(d, [0.0] * 100, confidence=confidence) == pytest.approx(tuple(expected), abs=0.005)


def test_bootstrap_ci_is_deterministic_by_seed() -> None:
    a, b = _shifted(25, 0.05, seed=9)
    assert bootstrap_ci(a, b, seed=3) == bootstrap_ci(a, b, seed=3)
    assert bootstrap_ci(a, b, seed=3) != bootstrap_ci(a, b, seed=4)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(a, b, confidence=95)


# --- compare ------------------------------------------------------------------------------------------------


def _runs(n: int = 20) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(4)
    base = rng.uniform(0.3, 0.6, n)
    qids = [f"q{i:02d}" for i in range(n)]
    columns = {
        "bm25": base,
        "better": base + 0.3 + rng.normal(0.0, 0.05, n),
        "worse": base - 0.3 + rng.normal(0.0, 0.05, n),
        "same": base.copy(),
    }
    return {name: {q: float(v) for q, v in zip(qids, values)} for name, values in columns.items()}


@pytest.mark.parametrize("test", ["randomization", "t"])
def test_compare_against_a_baseline(test: str) -> None:
    runs = _runs()
    records = {c.a: c for c in compare(runs, "ndcg@10", baseline="bm25", test=test)}
    assert set(records) == {"better", "worse", "same"}
    better, worse, same = records["better"], records["worse"], records["same"]
    assert all(c.b == "bm25" and c.n == 20 and c.metric == "ndcg@10" for c in records.values())
    assert better.significant and better.delta > 0.25 and better.p_holm < 0.05 and better.ci_low > 0
    assert worse.significant and worse.delta < -0.25 and worse.p_holm < 0.05 and worse.ci_high < 0
    assert not same.significant and same.delta == 0 and same.p == 1.0 and same.p_holm == 1.0
    assert better.effect_size > 2 and worse.effect_size < -2 and same.effect_size == 0
    assert better.mean_a == pytest.approx(np.mean(list(runs["better"].values())))
    assert better.mean_b == pytest.approx(np.mean(list(runs["bm25"].values())))
    assert [c.p_holm for c in records.values()] == holm([c.p for c in records.values()])


def test_compare_all_pairs() -> None:
    runs = _runs()
    records = compare(runs)
    assert len(records) == 4 * 3 // 2
    assert [(c.a, c.b) for c in records] == list(itertools.combinations(runs, 2))
    by_pair = {(c.a, c.b): c for c in records}
    assert by_pair[("better", "worse")].significant and by_pair[("better", "worse")].delta > 0.5
    assert not by_pair[("bm25", "same")].significant
    assert [c.p_holm for c in records] == holm([c.p for c in records])
    assert all(isinstance(c, Comparison) for c in records)


def test_compare_pairs_on_shared_query_ids() -> None:
    runs = _runs()
    runs["partial"] = {q: v for q, v in reversed(list(runs["better"].items())[:12])}  # other order, fewer ids
    runs["tiny"] = {"q00": 0.9, "zzz": 0.1}  # one shared query: no test
    records = {c.a: c for c in compare(runs, baseline="bm25")}
    partial, tiny = records["partial"], records["tiny"]
    shared = list(runs["partial"])
    assert partial.n == 12
    assert partial.delta == pytest.approx(np.mean([runs["partial"][q] - runs["bm25"][q] for q in shared]))
    assert partial.significant
    assert tiny.n == 1 and tiny.p is None and tiny.p_holm is None and not tiny.significant
    assert tiny.delta == pytest.approx(0.9 - runs["bm25"]["q00"]) and tiny.ci_low is None
    tested = [c for c in records.values() if c.p is not None]
    assert len(tested) == 4 and [c.p_holm for c in tested] == holm([c.p for c in tested])


def test_compare_decides_on_the_holm_adjusted_p_value() -> None:
    # d = +0.25 on 6 queries: exact p = 2 / 2**6 = 0.03125 < 0.05, but three such tests Holm to 0.09375.
    base = {f"q{i}": 0.25 for i in range(6)}
    lifted = {q: v + 0.25 for q, v in base.items()}
    alone = compare({"base": base, "r1": lifted}, baseline="base")
    assert alone[0].p == 0.03125 and alone[0].p_holm == 0.03125 and alone[0].significant
    family = compare({"base": base, "r1": lifted, "r2": dict(lifted), "r3": dict(lifted)}, baseline="base")
    assert [(c.p, c.p_holm, c.significant) for c in family] == [(0.03125, 0.09375, False)] * 3
    assert compare({"base": base, "r1": lifted}, baseline="base", alpha=0.01)[0].significant is False


def test_compare_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="baseline"):
        compare(_runs(), baseline="missing")
    with pytest.raises(ValueError, match="test"):
        compare(_runs(), test="wilcoxon")  # type: ignore[arg-type]
