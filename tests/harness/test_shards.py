"""Sharded runs: merge equals an unsharded run; gaps, overlaps and mixed configurations are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.results import Result, load_result
from harness.runner import RunConfig, execute
from harness.shards import merge, parse_shard, shard_path, write_merged
from tests.harness.conftest import comparable, write_beir


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_beir(tmp_path_factory.mktemp("shards") / "toy", n_docs_per_topic=8, n_queries_per_topic=5)


def _run(toy: Path, out: Path, shard=None, depth: int = 20) -> Path:
    _, path = execute(RunConfig(task=str(toy), retriever="dense", first_stage="bm25", depth=depth,
                                output=str(out), shard=shard, show_progress=False))
    return path


def test_parse_shard() -> None:
    assert parse_shard("1/4") == (1, 4)
    assert parse_shard(None) is None
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(HarnessError):
            parse_shard(bad)


def test_merged_shards_equal_an_unsharded_run(toy: Path, tmp_path: Path) -> None:
    whole = load_result(_run(toy, tmp_path / "whole.json"))
    paths = [_run(toy, tmp_path / "part.json", shard=(i, 3)) for i in range(3)]
    assert paths[1] == shard_path(tmp_path / "part.json", 1, 3)
    merged = merge(paths)
    merged.validate()
    write_merged(merged, tmp_path / "merged.json")
    assert Result.from_json(tmp_path / "merged.json").validate(tmp_path / "merged.json") is not None

    # The run files of the merge hold the same bytes as those of the unsharded run.
    assert comparable(load_result(tmp_path / "merged.json")) == comparable(whole)


def test_missing_overlapping_and_mixed_shards_are_refused(toy: Path, tmp_path: Path) -> None:
    a = _run(toy, tmp_path / "p.json", shard=(0, 2))
    b = _run(toy, tmp_path / "p.json", shard=(1, 2))
    with pytest.raises(HarnessError, match="missing shard"):
        merge([a])
    with pytest.raises(HarnessError, match="given twice"):
        merge([a, a, b])
    other = _run(toy, tmp_path / "other.json", shard=(1, 2), depth=10)
    with pytest.raises(HarnessError, match="configuration differs"):
        merge([a, other])
    # A shard that was edited to also claim a query of its sibling.
    tampered = json.loads(b.read_text())
    stolen = next(iter(json.loads(a.read_text())["per_query"]))
    tampered["per_query"][stolen] = json.loads(a.read_text())["per_query"][stolen]
    tampered["task"]["query_ids"].append(stolen)
    tampered["task"]["n_queries"] += 1
    from harness.results import mean_metrics

    tampered["metrics"] = mean_metrics(tampered["per_query"])
    bad = tmp_path / "bad.shard-1-of-2.json"
    bad.write_text(json.dumps(tampered))
    with pytest.raises(HarnessError, match="overlapping shards"):
        merge([a, bad])


def test_torchrun_two_processes_equal_one(toy: Path, tmp_path: Path) -> None:
    # Both runs use one thread per process, so float reductions (and so the run's hash) agree bit for bit.
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    args = ["--no-progress", "run", "--task", str(toy), "--retriever", "dense", "--first-stage", "bm25", "--depth", "20"]
    single = tmp_path / "single.json"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *args, "--output", str(single)],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "dist.json"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "harness.cli",
         *args, "--shard", "auto", "--output", str(out)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.glob("dist.shard-*"))  # the shards stay beside the merged file
    assert comparable(load_result(out)) == comparable(load_result(single))
