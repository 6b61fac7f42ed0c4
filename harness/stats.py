"""Significance tests for paired per-query scores.

:func:`paired_randomization_test` is the two-sided paired randomization (sign-flip) test used
by ranx and PyTerrier: under H0 the sign of each per-query difference is exchangeable, so

    p = (1 + #{i : |mean(s_i * d)| >= |mean(d)|}) / (1 + n_permutations)

with ``s_i`` random sign vectors. :func:`holm` adjusts a family of p-values (Holm-Bonferroni).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def paired_randomization_test(a: Sequence[float], b: Sequence[float], n_permutations: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value that the mean of ``a - b`` differs from 0 (paired by position).

    Eight queries all improved by 1: the exact p-value is 2 / 2**8 = 0.0078.

    >>> round(paired_randomization_test([1, 1, 1, 1, 1, 1, 1, 1], [0] * 8), 3)
    0.007
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.size == 0 or not np.any(diff):
        return 1.0
    observed = abs(diff.mean())
    rng = np.random.default_rng(seed)
    hits = 0
    remaining = n_permutations
    while remaining:
        size = min(remaining, 2000)
        signs = rng.integers(0, 2, size=(size, diff.size), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ diff) / diff.size >= observed - 1e-12))
        remaining -= size
    return (hits + 1) / (n_permutations + 1)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

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
