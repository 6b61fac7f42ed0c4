"""Query sampling must reproduce the paper's ``np.random.seed(42); np.random.choice(...)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.sampling import sample_queries
from harness.trec import read_trec_topics


def _paper_reference(ids: list[str], n: int, seed: int) -> list[str]:
    """The paper's code path, literally: the legacy *global* RNG."""
    saved = np.random.get_state()
    try:
        np.random.seed(seed)
        idx = np.random.choice(len(ids), n, replace=False)
        return [ids[i] for i in idx]
    finally:
        np.random.set_state(saved)


@pytest.mark.parametrize(("size", "n", "seed"), [(10, 3, 42), (648, 512, 42), (3452, 512, 42), (1000, 512, 7)])
def test_matches_the_global_legacy_rng(size: int, n: int, seed: int) -> None:
    ids = [f"q{i}" for i in range(size)]
    assert sample_queries(ids, n, seed) == _paper_reference(ids, n, seed)


def test_leaves_global_state_untouched() -> None:
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    sample_queries([str(i) for i in range(100)], 10, 42)
    assert np.random.rand() == expected


def test_draw_order_and_small_files() -> None:
    ids = [f"q{i}" for i in range(10)]
    assert sample_queries(ids, 3, 42) == ["q8", "q1", "q5"]  # draw order, not file order
    assert sample_queries(ids, 10, 42) == ids  # a file with <= n queries is kept whole, in order
    assert sample_queries(ids, None, 42) == ids
    with pytest.raises(HarnessError, match="at least 1"):
        sample_queries(ids, 0, 42)
    with pytest.raises(HarnessError, match="not unique"):
        sample_queries(["a", "a"], 1, 42)


def test_real_fiqa_file_order(shared_data: Path) -> None:
    # FiQA has 648 test topics (docs/PROTOCOL.md §4.1): the paper evaluates 512 of them.
    path = shared_data / "beir_queries_qrels_only" / "fiqa" / "anserini" / "topics.beir-v1.0.0-fiqa.test.tsv.gz"
    ids = list(read_trec_topics(path))
    picked = sample_queries(ids, 512, 42)
    assert len(ids) == 648 and len(picked) == len(set(picked)) == 512
    assert picked == _paper_reference(ids, 512, 42)
