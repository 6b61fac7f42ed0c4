"""Helpers shared by the retrievers: the indexed text of a document, search-argument checks and a
deterministic top-k (ties broken by doc id, as TREC runs are compared).

>>> import numpy as np
>>> top_k_indices(np.array([0.5, 0.9, 0.5]), 2, doc_id_ranks(["c", "a", "b"])).tolist()
[1, 2]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.types import Document, Query

if TYPE_CHECKING:
    import numpy as np


def document_text(doc: Document) -> str:
    """The text a retriever indexes: ``title + " " + text``, or the text alone without a title."""
    return f"{doc.title} {doc.text}" if doc.title else doc.text


def check_depth(k: int, corpus_size: int) -> None:
    """Reject a retrieval depth ``k`` that is not in ``1..corpus_size`` with a one-line error."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise HarnessError(f"retrieval depth must be an integer, got {k!r}")
    if k <= 0:
        raise HarnessError(f"retrieval depth {k} must be at least 1")
    if k > corpus_size:
        raise HarnessError(f"retrieval depth {k} is larger than the corpus ({corpus_size} documents)")


def check_search(name: str, corpus: Mapping[str, Document], queries: Sequence[Query], k: int) -> None:
    """The one-line errors of a first-stage ``search``: empty corpus, bad depth, no queries."""
    if not corpus:
        raise HarnessError(f"{name}: the corpus is empty")
    check_depth(k, len(corpus))
    if not queries:
        raise HarnessError(f"{name}: no queries to search")


def doc_id_ranks(doc_ids: Sequence[str]) -> np.ndarray:
    """Each document's position in doc-id order: the ``tie_rank`` of :func:`top_k_indices`."""
    import numpy as np

    order = sorted(range(len(doc_ids)), key=doc_ids.__getitem__)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


def top_k_indices(scores: np.ndarray, k: int, tie_rank: np.ndarray) -> np.ndarray:
    """Indices of the ``k`` best ``scores``, ordered by score descending then ``tie_rank``.

    ``tie_rank[i]`` is document ``i``'s position in doc-id order, so ties are broken by doc id,
    including ties across the ``k``-th place (every doc tied with the ``k``-th score is
    considered before cutting). When at least ``k`` scores are positive (the usual case for
    BM25, whose non-matching documents score 0), only those are partitioned.
    """
    import numpy as np

    n = scores.shape[0]
    positive = np.flatnonzero(scores > 0)
    pool = positive if positive.shape[0] >= k else np.arange(n)
    if k >= pool.shape[0]:
        candidates = pool
    else:
        pool_scores = scores[pool]
        kth = np.partition(pool_scores, pool.shape[0] - k)[pool.shape[0] - k]
        candidates = pool[pool_scores >= kth]
    order = np.lexsort((tie_rank[candidates], -scores[candidates]))
    return candidates[order[:k]]
