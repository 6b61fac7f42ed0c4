"""End-to-end CLI tests: runs, result files, validation, bad input, plug-ins and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results import load_result, validate_result
from tests.harness.conftest import comparable, harness_subprocess, write_beir


def test_bm25_on_beir_folder_writes_valid_result(cli, beir_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    run_file = tmp_path / "x.trec"
    res = cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--output", str(out), "--save-run", str(run_file))
    assert res.code == 0, res.err
    result = load_result(out)
    assert validate_result(result, out) == []
    for name in ("nDCG@10", "R@100", "MRR@10", "MAP"):
        assert name in result["metrics"]
    assert result["task"]["n_queries"] == 15
    assert result["first_stage"] is None
    # The toy collection is separable by topic: BM25 must find the relevant documents.
    assert result["metrics"]["nDCG@10"] > 0.5
    rows = run_file.read_text().splitlines()
    assert rows[0].split()[1] == "Q0" and rows[0].split()[3] == "1"
    assert "nDCG@10=" in res.out


def test_dense_on_beir_folder(cli, beir_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    res = cli("run", "--task", str(beir_dir), "--retriever", "dense", "--output", str(out))
    assert res.code == 0, res.err
    result = load_result(out)
    validate_result(result, out)
    assert result["retriever"]["name"] == "dense"
    assert result["metrics"]["nDCG@10"] > 0.3


def test_reranking_records_first_stage_and_ceiling(cli, beir_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = cli("run", "--task", str(beir_dir), "--retriever", "dense", "--first-stage", "bm25", "--depth", "10",
              "--output", str(out))
    assert res.code == 0, res.err
    result = load_result(out)
    assert result["first_stage"]["name"] == "bm25" and result["first_stage"]["depth"] == 10
    assert 0 < result["first_stage"]["recall"]["R@10"] <= 1
    # A re-ranker cannot find what the first stage missed: its R@100 equals the first stage's R@10.
    assert result["metrics"]["R@100"] == pytest.approx(result["first_stage"]["recall"]["R@10"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--retriever", "bm52"], "unknown retriever 'bm52'; did you mean 'bm25'"),
        (["--retriever", "bm25", "--depth", "0", "--first-stage", "bm25"], "--depth must be a positive"),
        (["--retriever", "dense", "--first-stage", "bm25", "--depth", "100000"], "larger than the corpus"),
        (["--retriever", "bm25", "--set", "k3=1.0"], "unknown parameter of retriever 'bm25' 'k3'"),
        (["--retriever", "bm25", "--model", "x"], "takes no --model"),
    ],
)
def test_bad_arguments_give_one_line_errors(cli, beir_dir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    res = cli("run", "--task", str(beir_dir), *args, "--output", str(tmp_path / "o.json"))
    assert res.code == 2
    assert message in res.err
    assert len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
    assert not (tmp_path / "o.json").exists()


def test_unknown_task_suggests(cli) -> None:
    res = cli("run", "--task", "beir/scifakt", "--retriever", "bm25")
    assert res.code == 2
    assert "did you mean 'beir/scifact'" in res.err


def test_unwritable_output_fails_before_work(cli, beir_dir: Path, tmp_path: Path) -> None:
    # /proc takes no new files, whoever runs the tests (root included).
    res = cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--output", "/proc/harness-test.json")
    assert res.code == 2 and "/proc/harness-test.json: not writable" in res.err
    assert len(res.err.strip().splitlines()) == 1


def test_output_in_a_read_only_folder_fails(cli, beir_dir: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        res = cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--output", str(locked / "x.json"))
        writable_anyway = res.code == 0  # root ignores permission bits: then the file must really exist
    finally:
        locked.chmod(0o700)
    if writable_anyway:
        assert (locked / "x.json").exists()
    else:
        assert res.code == 2 and "not writable" in res.err


def test_output_that_is_a_directory_fails(cli, beir_dir: Path, tmp_path: Path) -> None:
    res = cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--output", str(tmp_path))
    assert res.code == 2 and "is a directory" in res.err


def test_list_shows_builtins(cli) -> None:
    res = cli("list", "retrievers")
    assert res.code == 0
    for name in ("bm25", "dense", "qr", "icr"):
        assert f"  {name} " in res.out
    res = cli("list", "tasks")
    assert "beir/scifact" in res.out and "niah" in res.out


def test_plugin_package_runs_through_cli(plugin_site: Path, beir_dir: Path, tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]),
           "HARNESS_CACHE": str(tmp_path / "cache")}
    listing = harness_subprocess(["list", "retrievers"], env, stdout=subprocess.PIPE, text=True)
    assert "overlap" in listing.communicate(timeout=120)[0]
    out = tmp_path / "plugin.json"
    proc = harness_subprocess(["run", "--task", str(beir_dir), "--retriever", "overlap", "--depth", "20",
                               "--output", str(out)], env, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    result = load_result(out)
    assert result["retriever"]["name"] == "overlap"
    assert result["first_stage"]["name"] == "bm25"
    validate_result(result, out)


def test_duplicate_plugin_name_is_an_error(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "dup_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dup-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harness.retrievers]\nbm25 = dup_plugin:Other\n")
    env = {"PYTHONPATH": str(site)}
    proc = harness_subprocess(["list", "retrievers"], env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "registered twice" in err and "dup-plugin" in err


def test_killed_run_resumes_to_the_same_result(plugin_site: Path, tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "big", n_docs_per_topic=10, n_queries_per_topic=6)
    base_env = {"PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")])}
    args = ["run", "--task", str(beir), "--retriever", "overlap", "--depth", "20"]

    # Uninterrupted reference run, in its own cache.
    ref_out = tmp_path / "ref.json"
    ref = harness_subprocess([*args, "--output", str(ref_out)], {**base_env, "HARNESS_CACHE": str(tmp_path / "c1")})
    assert ref.wait(timeout=300) == 0

    # A slow run, killed with SIGKILL once some queries are finished.
    cache = tmp_path / "c2"
    env = {**base_env, "HARNESS_CACHE": str(cache)}
    out = tmp_path / "resumed.json"
    slow = harness_subprocess([*args, "--set", "delay=0.3", "--output", str(out)], env)
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline:
        files = list((cache / "runs").glob("*.jsonl")) if (cache / "runs").exists() else []
        done = len(files[0].read_text().splitlines()) if files else 0
        if done >= 5:
            break
        time.sleep(0.1)
    slow.send_signal(signal.SIGKILL)
    slow.wait(timeout=30)
    assert 5 <= done < 30, f"kill came too late or never ({done} queries finished)"
    assert not out.exists()

    resumed = harness_subprocess(["-v", "2", *args, "--output", str(out)], env, stderr=subprocess.PIPE, text=True)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resuming:" in err
    assert comparable(load_result(out)) == comparable(load_result(ref_out))
    lines = next((cache / "runs").glob("*.jsonl")).read_text().splitlines()
    assert len({json.loads(line)["qid"] for line in lines if line.strip().endswith("}")}) == 30


def test_validate_cli(cli, beir_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.json"
    assert cli("run", "--task", str(beir_dir), "--retriever", "bm25", "--output", str(out)).code == 0
    assert cli("validate", str(out)).code == 0
    result = json.loads(out.read_text())
    result["metrics"]["nDCG@10"] += 0.01
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(result))
    res = cli("validate", str(bad))
    assert res.code == 2 and "per-query values average" in res.err


def test_cli_module_runs_without_arguments() -> None:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "run" in proc.stdout


def test_old_built_in_module_names_still_work_on_the_command_line() -> None:
    from harness.registry import retriever_class

    assert retriever_class("retrievers.bm25:BM25Retriever") is retriever_class("bm25")
    assert retriever_class("harness.retrievers.bm25:BM25Retriever") is retriever_class("bm25")


def test_under_torchrun_only_rank_0_prints_an_error(cli, monkeypatch) -> None:
    monkeypatch.setenv("RANK", "1")
    res = cli("run", "--task", "no-such-task", "--retriever", "bm25")
    assert res.code == 2 and res.err.strip() == ""
    monkeypatch.setenv("RANK", "0")
    res = cli("run", "--task", "no-such-task", "--retriever", "bm25")
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1 and "unknown task" in res.err
