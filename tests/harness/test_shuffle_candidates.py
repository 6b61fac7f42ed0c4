"""`--shuffle-candidates SEED`: first-stage candidates in a per-query seeded order (the paper's Table 3)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from harness.results import default_output_path
from harness.runner import RunConfig, execute, prepare, shuffled
from harness.types import Instance, Retriever

SEEN: dict[str, list[str]] = {}


class PositionRetriever(Retriever):
    """Scores candidates by position only (first is best) and remembers the order it was given."""

    name = "position"
    kind = "test"

    def score(self, instances: Sequence[Instance]) -> Iterator[dict[str, float]]:
        for inst in instances:
            SEEN[inst.query.id] = [d.id for d in inst.candidates]
            yield {d.id: -float(i) for i, d in enumerate(inst.candidates)}


POSITION = f"{__name__}:PositionRetriever"


def _config(beir_dir: Path, **kw) -> RunConfig:
    return RunConfig(task=str(beir_dir), retriever=POSITION, first_stage="bm25", depth=10, show_progress=False, **kw)


def test_shuffle_is_per_query_deterministic():
    ids = [f"d{i}" for i in range(20)]
    a = shuffled(ids, 7, "q1")
    assert sorted(a) == sorted(ids) and a != ids
    assert a == shuffled(ids, 7, "q1") and a != shuffled(ids, 8, "q1") and a != shuffled(ids, 7, "q2")


def test_candidates_are_the_shuffled_top_depth(beir_dir):
    plain = prepare(_config(beir_dir))
    mixed = prepare(_config(beir_dir, shuffle_candidates=7))
    assert plain.shuffle_candidates is None and mixed.shuffle_candidates == 7
    changed = 0
    for a, b in zip(plain.instances, mixed.instances):
        top = [d.id for d in a.candidates]
        assert [d.id for d in b.candidates] == shuffled(top, 7, a.query.id)  # after the depth cut
        changed += top != [d.id for d in b.candidates]
    assert changed >= len(plain.instances) - 1


def test_shuffled_run_records_the_seed_in_task_hash_and_file_name(beir_dir, tmp_path):
    SEEN.clear()
    plain, _ = execute(_config(beir_dir), write=False)
    mixed, _ = execute(_config(beir_dir, shuffle_candidates=7), write=False)
    assert mixed.task.extra["shuffle_candidates"] == 7 and "shuffle_candidates" not in plain.task.extra
    assert mixed.config_hash != plain.config_hash
    # position cannot help: the position-only ranker's first-stage order is gone
    assert mixed.metrics["nDCG@10"] != pytest.approx(plain.metrics["nDCG@10"])
    assert default_output_path(mixed, tmp_path).name == "position__bm2510__local-data-toy__cut400__shuffled7.json"
    assert default_output_path(plain, tmp_path).name == "position__bm2510__local-data-toy__cut400.json"
    saved = json.loads(mixed.to_json())
    assert saved["task"]["shuffle_candidates"] == 7


def test_cli_flag_and_order_independent_reranker(cli, beir_dir, tmp_path):
    plain, mixed = tmp_path / "plain.json", tmp_path / "mixed.json"
    args = ["run", "--task", str(beir_dir), "--retriever", "bm25", "--first-stage", "bm25", "--depth", "10"]
    assert cli(*args, "--output", str(plain)).code == 0
    res = cli(*args, "--shuffle-candidates", "3", "--output", str(mixed))
    assert res.code == 0, res.err
    a, b = json.loads(plain.read_text()), json.loads(mixed.read_text())
    assert b["task"]["shuffle_candidates"] == 3
    assert b["metrics"] == pytest.approx(a["metrics"])  # BM25 ignores position


def test_shuffle_without_first_stage_candidates_is_an_error(cli, beir_dir, tmp_path):
    res = cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--shuffle-candidates", "1",
              "--output", str(tmp_path / "o.json"))
    assert res.code == 2 and "--shuffle-candidates shuffles the first-stage candidates" in res.err
    assert len(res.err.strip().splitlines()) == 1
