"""``harness fuse``: ranx's fusion against the formulas written out by hand, and fused rows as results."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("ranx")

from harness.errors import HarnessError
from harness.fusion import FusionSpec, fuse_runs
from harness.results import Result


def _random_runs(seed: int, n_runs: int = 3) -> list[dict[str, dict[str, float]]]:
    """Runs over overlapping document pools, distinct scores (no ties), some queries missing from a run."""
    rng = random.Random(seed)
    runs = []
    for r in range(n_runs):
        run = {}
        for q in range(6):
            if r == 1 and q == 5:
                continue  # a query this input has no list for
            docs = rng.sample([f"d{i}" for i in range(30)], rng.randint(3, 20))
            run[f"q{q}"] = {d: rng.uniform(-5, 5) + 1e-6 * i for i, d in enumerate(docs)}
        runs.append(run)
    return runs


def _ranks(docs: dict[str, float]) -> dict[str, int]:
    return {d: i + 1 for i, (d, _) in enumerate(sorted(docs.items(), key=lambda kv: -kv[1]))}


def _order(run: dict[str, dict[str, float]]) -> dict[str, list[str]]:
    return {q: [d for d, _ in sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))] for q, docs in run.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rrf_is_the_sum_of_reciprocal_ranks(seed: int) -> None:
    runs = _random_runs(seed)
    fused = fuse_runs(runs, FusionSpec(method="rrf", params={"k": 10}))
    for q in {q for run in runs for q in run}:
        expected: dict[str, float] = {}
        for run in runs:
            for d, rank in _ranks(run.get(q, {})).items():
                expected[d] = expected.get(d, 0.0) + 1.0 / (10 + rank)
        assert fused[q] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", [3, 4])
def test_wsum_is_the_weighted_sum_of_min_max_scores(seed: int) -> None:
    runs = _random_runs(seed, n_runs=2)
    spec = FusionSpec(method="wsum", weights=[0.7, 0.3], norm="min-max")
    spec.check(2)
    fused = fuse_runs(runs, spec)
    for q in {q for run in runs for q in run}:
        expected: dict[str, float] = {}
        for weight, run in zip([0.7, 0.3], runs):
            docs = run.get(q, {})
            if not docs:
                continue
            lo, hi = min(docs.values()), max(docs.values())
            for d, s in docs.items():
                expected[d] = expected.get(d, 0.0) + weight * (s - lo) / (hi - lo)
        assert fused[q] == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert _order({q: fused[q]})[q] == _order({q: expected})[q]


def test_depth_cuts_each_fused_list() -> None:
    fused = fuse_runs(_random_runs(5), FusionSpec(method="rrf", params={"k": 60}, depth=4))
    assert all(len(docs) <= 4 for docs in fused.values())


@pytest.mark.parametrize("spec, n, message", [
    (FusionSpec(method="borda"), 2, "--method must be one of"),
    (FusionSpec(method="rrf"), 1, "at least two"),
    (FusionSpec(method="rrf", params={"k": -1}), 2, "non-negative"),
    (FusionSpec(method="rrf", weights=[0.5, 0.5]), 2, "only --param k"),
    (FusionSpec(method="wsum", weights=[1.0]), 2, "1 values for 2 results"),
    (FusionSpec(method="wsum", norm="softmax"), 2, "--norm must be one of"),
])
def test_bad_specs_are_refused(spec: FusionSpec, n: int, message: str) -> None:
    with pytest.raises(HarnessError, match=message):
        spec.check(n)


def _two_runs(cli, beir_dir: Path, root: Path) -> tuple[Path, Path]:
    a, b = root / "a.json", root / "b.json"
    assert cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--output", str(a)).code == 0
    res = cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--set", "k1=3.0", "--set", "b=1.0",
              "--output", str(b))
    assert res.code == 0, res.err
    return a, b


def test_a_fused_row_is_a_result_that_validates_and_ranks(cli, beir_dir: Path, tmp_path: Path) -> None:
    a, b = _two_runs(cli, beir_dir, tmp_path / "results" / "toy")
    res = cli("fuse", str(a), str(b), "--results-root", str(tmp_path / "results"))
    assert res.code == 0, res.err
    out = Path(res.out.strip().splitlines()[-1].removeprefix("wrote "))
    assert out.name == "fusion-rrf__a+b.json" and out.with_name("fusion-rrf__a+b.run.gz").is_file()
    fused = Result.from_json(out)
    assert fused.validate(out) == []  # every metric recomputed from the fused run file
    assert fused.retriever.kind == "fusion" and fused.retriever.params["k"] == 60
    assert [Path(i["file"]).name for i in fused.retriever.params["inputs"]] == ["a.json", "b.json"]
    assert "MAP" not in fused.metrics  # a fused top-100 list says nothing exact about full-depth MAP
    assert set(fused.per_query) == set(Result.from_json(a).per_query)
    # the fused ranking is the hand-computed RRF of the two kept runs
    from harness.runfiles import read_run_files

    run_a, _, _ = read_run_files(a, Result.from_json(a).runs)
    run_b, _, _ = read_run_files(b, Result.from_json(b).runs)
    fused_run, _, _ = read_run_files(out, fused.runs)
    q = min(fused_run)
    expected = {}
    for run in (run_a, run_b):
        for d, rank in _ranks(run[q]).items():
            expected[d] = expected.get(d, 0.0) + 1.0 / (60 + rank)
    assert _order({q: fused_run[q]})[q][:10] == _order({q: expected})[q][:10]
    board = cli("leaderboard", "--results", str(tmp_path / "results"), "--output", str(tmp_path / "board"))
    assert board.code == 0, board.err
    assert "RRF (k=60) of bm25 + bm25" in (tmp_path / "board" / "LEADERBOARD.md").read_text()


def test_fusion_refuses_other_data_and_files_without_runs(cli, beir_dir: Path, tmp_path: Path) -> None:
    a, b = _two_runs(cli, beir_dir, tmp_path)
    c = tmp_path / "c.json"
    assert cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--max-queries", "5", "--output", str(c)).code == 0
    res = cli("fuse", str(a), str(c), "--output", str(tmp_path / "x.json"))
    assert res.code == 2 and "only the same documents and queries can be fused" in res.err
    assert "Traceback" not in res.err and len(res.err.strip().splitlines()) == 1
    old = json.loads(b.read_text())
    old.pop("runs")
    old["schema_version"] = 1
    b.write_text(json.dumps(old))
    res = cli("fuse", str(a), str(b), "--output", str(tmp_path / "y.json"))
    assert res.code == 2 and "keeps no run file" in res.err
    res = cli("fuse", str(a), str(a), "--method", "wsum", "--weights", "1,2,3", "--output", str(tmp_path / "z.json"))
    assert res.code == 2 and "3 values for 2 results" in res.err


def test_checked_in_fused_rows_were_made_from_the_checked_in_inputs() -> None:
    """A fused row is stale once an input is re-run: its recorded input hashes must be the files'."""
    import hashlib

    repo = Path(__file__).resolve().parents[2]
    fused = [p for p in (repo / "results").rglob("fusion-*.json")]
    assert len(fused) >= 3
    for path in fused:
        for entry in Result.from_json(path).retriever.params["inputs"]:
            source = repo / entry["file"]
            assert hashlib.sha256(source.read_bytes()).hexdigest() == entry["sha256"], (
                f"{path.name} was fused from an older {entry['file']}: run its recipe again")
            assert Result.from_json(source).runs["ranking"]["sha256"] == entry["run_sha256"]
