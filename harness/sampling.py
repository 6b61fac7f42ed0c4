"""Query sampling exactly as the paper's BEIR evaluation does it.

The paper (docs/PROTOCOL.md §4.1) keeps at most 512 queries per BEIR file, drawn without
replacement by NumPy's *legacy global* RNG::

    np.random.seed(42)
    idx = np.random.choice(len(queries), 512, replace=False)

over the file's query order. :func:`sample_queries` reproduces the same picks with a private
``np.random.RandomState(seed)`` (the legacy Mersenne-Twister generator that ``np.random.seed``
seeds), so NumPy's global state is left untouched. The ids come back in **draw order**
(``queries[idx[0]], queries[idx[1]], ...``), the order the paper's list comprehension produces;
a list of ``n`` ids or fewer is returned unchanged, in file order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.errors import HarnessError

__all__ = ["sample_queries"]


def sample_queries(query_ids: Sequence[str], n: int | None, seed: int = 42) -> list[str]:
    """Draw ``n`` of ``query_ids`` without replacement, reproducing ``np.random.seed(seed)``
    followed by ``np.random.choice(len(query_ids), n, replace=False)``.

    Args:
        query_ids: ids in the file's order (the order matters: it is what the indices index).
        n: how many to keep; ``None`` or ``n >= len(query_ids)`` keeps all, in file order.
        seed: the legacy-RNG seed (the paper uses 42).

    Returns:
        The sampled ids in draw order.

    Example:
        >>> ids = [f"q{i}" for i in range(10)]
        >>> sample_queries(ids, 3, seed=42)
        ['q8', 'q1', 'q5']
    """
    ids = list(query_ids)
    if len(set(ids)) != len(ids):
        raise HarnessError("sample_queries: query ids are not unique")
    if n is not None and n < 1:
        raise HarnessError(f"--max-queries must be at least 1, got {n}")
    if n is None or n >= len(ids):
        return ids
    picks = np.random.RandomState(seed).choice(len(ids), n, replace=False)
    return [ids[int(i)] for i in picks]
