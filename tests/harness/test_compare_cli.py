"""``harness compare``: the paired tests of harness.stats between result files, from the command line."""

from __future__ import annotations

from pathlib import Path

from harness.results import Result
from harness.stats import compare


def _runs(cli, beir_dir: Path, root: Path) -> list[Path]:
    paths = []
    for name, extra in (("a", []), ("b", ["--set", "k1=3.0", "--set", "b=1.0"]), ("c", ["--set", "k1=0.1"])):
        path = root / f"{name}.json"
        res = cli("run", "--task", str(beir_dir), "--retriever", "bm25", *extra, "--output", str(path))
        assert res.code == 0, res.err
        paths.append(path)
    return paths


def test_all_pairs_and_baseline_match_harness_stats(cli, beir_dir: Path, tmp_path: Path) -> None:
    a, b, c = _runs(cli, beir_dir, tmp_path)
    scores = {str(p): {q: v["nDCG@10"] for q, v in Result.from_json(p).per_query.items()} for p in (a, b, c)}
    res = cli("compare", str(a), str(b), str(c))
    assert res.code == 0, res.err
    pairs = res.out.strip().split("\n\n")[-1].splitlines()[1:]
    expected = compare(scores, "nDCG@10")
    assert len(pairs) == len(expected) == 3
    for line, comparison in zip(pairs, expected):
        assert f"{comparison.p_holm:.3g}" in line.split()
    res = cli("compare", str(b), str(c), "--baseline", str(a), "--markdown", "--metric", "MRR@10")
    assert res.code == 0, res.err
    assert "Holm over 2 comparisons" in res.out and "| A | B | n | Δ (A − B) |" in res.out
    assert len([line for line in res.out.splitlines() if line.startswith("| bm25")]) == 3 + 2
    assert "| bm25 (b=1, k1=3) | bm25 |" in res.out  # parameters changed from their defaults name the row


def test_other_queries_or_a_missing_metric_are_one_line_errors(cli, beir_dir: Path, tmp_path: Path) -> None:
    a, b, _ = _runs(cli, beir_dir, tmp_path)
    few = tmp_path / "few.json"
    assert cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--max-queries", "5", "--output", str(few)).code == 0
    res = cli("compare", str(a), str(few))
    assert res.code == 2 and "compare runs on the same queries" in res.err and len(res.err.strip().splitlines()) == 1
    res = cli("compare", str(a), str(b), "--metric", "accuracy")
    assert res.code == 2 and "has no per-query 'accuracy'" in res.err
    assert cli("compare", str(a)).code == 2
