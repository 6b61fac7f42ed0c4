"""Result-file validation and the leaderboard, on result files from real runs of the toy collection."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.leaderboard import build, write
from harness.results import SCHEMA_VERSION, load_result, mean_metrics, validate_result
from harness.runner import RunConfig, execute


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.harness.conftest import write_beir

    root = tmp_path_factory.mktemp("lb")
    beir = write_beir(root / "toy", n_docs_per_topic=10, n_queries_per_topic=8)
    results = root / "results"
    for retriever, first_stage, depth in (("bm25", None, None), ("dense", None, None), ("dense", "bm25", 20)):
        execute(RunConfig(task=str(beir), retriever=retriever, first_stage=first_stage, depth=depth,
                          results_root=str(results), show_progress=False))
    return results


def _one(results_dir: Path, retriever: str) -> tuple[Path, dict]:
    """The result of ``retriever`` alone (no first stage): ``<retriever>__<variant>.json``."""
    path = min(p for p in results_dir.rglob(f"{retriever}__*.json") if p.name.count("__") == 1)
    return path, load_result(path)


def test_results_validate(results_dir: Path) -> None:
    files = sorted(results_dir.rglob("*.json"))
    assert len(files) == 3
    for path in files:
        assert validate_result(load_result(path), path) == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["metrics"].__setitem__("nDCG@10", r["metrics"]["nDCG@10"] + 0.05), "per-query values average"),
        (lambda r: r["per_query"].pop(min(r["per_query"])), "per_query covers"),
        (lambda r: r["environment"].pop("git_commit"), "missing field environment.'git_commit'"),
        (lambda r: r.pop("config_hash"), "missing field 'config_hash'"),
        (lambda r: r.__setitem__("schema_version", 0), "older than this harness reads"),
        (lambda r: r["metrics"].__setitem__("MAP", float("nan")), "not a finite number"),
    ],
)
def test_tampered_files_are_rejected(results_dir: Path, tmp_path: Path, mutate, message: str) -> None:
    _, result = _one(results_dir, "bm25")
    bad = copy.deepcopy(result)
    mutate(bad)
    with pytest.raises(HarnessError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_result(bad, tmp_path / "bad.json")


def test_reported_rows_need_a_source(tmp_path: Path) -> None:
    reported = {"schema_version": SCHEMA_VERSION, "kind": "reported", "source": " ",
                "task": {"id": "beir/nq"}, "retriever": {"name": "qr"}, "metrics": {"nDCG@10": 0.586}}
    with pytest.raises(HarnessError, match="empty 'source'"):
        validate_result(reported, tmp_path / "r.json")
    reported["source"] = "Zhang et al. 2025, Table 2"
    assert validate_result(reported, tmp_path / "r.json") == []


def test_mean_rule_averages_over_queries_that_carry_a_metric() -> None:
    per_query = {"a": {"x": 1.0, "y": 0.0}, "b": {"x": 0.0}, "c": {"x": 0.5, "y": 1.0}}
    assert mean_metrics(per_query) == {"x": 0.5, "y": 0.5}


def test_leaderboard_is_deterministic_and_marks_significance(results_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "results"
    shutil.copytree(results_dir, root)
    outputs = write(root)
    first = {p.name: p.read_bytes() for p in outputs}
    assert {"LEADERBOARD.md", "leaderboard.csv", "leaderboard.png"} <= set(first)
    again = {p.name: p.read_bytes() for p in write(root)}
    assert again == first
    markdown = first["LEADERBOARD.md"].decode()
    assert "(baseline)" in markdown  # the BM25 row
    assert "bm25@20 (R " in markdown  # the re-ranker's first stage and its ceiling
    csv_text = first["leaderboard.csv"].decode()
    assert csv_text.count("\n") == 4  # header + 3 rows


def test_newer_file_for_the_same_cell_wins(results_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "results"
    shutil.copytree(results_dir, root)
    path, result = _one(root, "bm25")
    newer = copy.deepcopy(result)
    newer["date"] = "2999-01-01T00:00:00+00:00"  # a rerun: same numbers, same run files, a later date
    copy_path = path.with_name("bm25-rerun.json")
    copy_path.write_text(json.dumps(newer))
    markdown, _, _ = build(root)
    assert f"supersedes `{path.relative_to(root)}`" in markdown
    assert markdown.count("(baseline)") == 1


def _respecced(obj: dict) -> dict:
    """A result whose sections were edited, with the spec those sections now imply (validate
    refuses a spec that disagrees with its sections)."""
    from harness.results import Result
    from harness.spec import RunSpec

    return {**obj, "spec": RunSpec.derive(Result.from_dict(obj)).to_dict()}


def test_runs_that_differ_only_in_masked_heads_or_truncation_are_different_rows(results_dir: Path, tmp_path: Path) -> None:
    """A head-masked generation run must not supersede the unmasked one (or another mask), nor a
    run over documents cut to N words the run over whole documents."""
    root = tmp_path / "results"
    shutil.copytree(results_dir, root)
    path, result = _one(root, "bm25")
    base_gen = {"generator": {"spec": "hf:smollm2-135m", "backend": "hf", "sampling": {"max_tokens": 50}},
                "full_context": True, "top_k": 5, "records": []}
    variants = {
        "plain": None,
        "qrheads": {"name": "file:heads.json@top16", "n_heads": 16, "mode": "output", "sha256": "a" * 64},
        "random": {"name": "random:16:0", "n_heads": 16, "mode": "output", "sha256": "b" * 64},
    }
    for i, (name, mask) in enumerate(variants.items()):
        variant = copy.deepcopy(result)
        variant["generation"] = copy.deepcopy(base_gen)
        if mask:
            variant["generation"]["generator"]["mask"] = mask
        variant["date"] = f"299{i}-01-01T00:00:00+00:00"
        path.with_name(f"bm25-gen-{name}.json").write_text(json.dumps(_respecced(variant)))
    cut = copy.deepcopy(result)
    cut["truncate_words"] = 300
    cut["date"] = "2999-01-01T00:00:00+00:00"
    path.with_name("bm25-cut.json").write_text(json.dumps(_respecced(cut)))
    markdown, _, _ = build(root)
    assert "supersedes" not in markdown
    assert "→ hf:smollm2-135m [full context] |" in markdown
    assert "[full context, 16 heads masked: file:heads.json@top16]" in markdown
    assert "[full context, 16 heads masked: random:16:0]" in markdown
    # documents cut for every retriever: a variant of the task, in a table of its own
    assert "### beir/toy [local data toy, ≤300 words/doc]" in markdown


def test_a_sample_is_its_own_variant_with_its_own_baseline(results_dir: Path, tmp_path: Path) -> None:
    """A sampled run is never compared with the full-data rows; without a BM25 run on the same
    queries its table says so instead of marking."""
    root = tmp_path / "results"
    shutil.copytree(results_dir, root)
    beir = results_dir.parent / "toy"
    execute(RunConfig(task=str(beir), retriever="dense", max_queries=12, results_root=str(root), show_progress=False))
    markdown, _, _ = build(root)
    sections = markdown.split("\n### ")
    sample = next(s for s in sections if s.startswith("beir/toy [local data toy, 12 of 40 queries, seed 42]"))
    assert "No BM25 run on these documents and queries" in sample and "(baseline)" not in sample
    full = next(s for s in sections if s.startswith("beir/toy [local data toy]\n"))
    assert "(baseline)" in full and "12 of 40" not in full
    execute(RunConfig(task=str(beir), retriever="bm25", max_queries=12, results_root=str(root), show_progress=False))
    sample = next(s for s in build(root)[0].split("\n### ") if s.startswith("beir/toy [local data toy, 12 of 40"))
    assert "(baseline)" in sample and "No BM25 run" not in sample


def test_reproduce_calls_a_variant_not_comparable_with_the_paper(results_dir: Path, tmp_path: Path) -> None:
    from harness.reproduce import Cell, check_cell

    beir = results_dir.parent / "toy"
    _, path = execute(RunConfig(task=str(beir), retriever="bm25", max_queries=12, output=str(tmp_path / "s.json"),
                                show_progress=False))
    paper = Cell("c", "2", "beir/toy", "nDCG@10", 0.99, 0.01, str(path), "harness run ...", origin="Table 2, BM25")
    assert check_cell(paper).status == "NOT COMPARABLE"
    recipe = Cell("c", "offline", "beir/toy", "nDCG@10", 0.99, 0.01, str(path), "harness run ...", origin="recipe")
    assert check_cell(recipe).status == "FAIL"
