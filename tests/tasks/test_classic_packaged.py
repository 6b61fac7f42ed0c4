"""The packaged copies of Cranfield and CACM (harness/data/): the same content as the originals,
found with no flag and no shared data, the checked-in BM25 numbers, tamper checks, the converter
and the wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness.cli import main as cli_main
from harness.errors import HarnessError
from harness.results import Result
from harness.tasks import classic
from harness.tasks.classic import (
    MANIFEST,
    PACKAGED_FILES,
    CacmTask,
    CranfieldTask,
    packaged_collection,
    read_packaged,
)

ROOT = Path(__file__).resolve().parents[2]
TASKS = {"cranfield": CranfieldTask, "cacm": CacmTask}
#: The checked-in BM25 results (nDCG@10 0.3516 on Cranfield, 0.4726 on CACM).
BM25_RESULTS = {family: ROOT / "results" / family / "bm25.json" for family in TASKS}


@pytest.fixture
def no_shared_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A machine without ../shared: no $HARNESS_SHARED_DATA, no shared folder anywhere, cwd empty."""
    monkeypatch.delenv("HARNESS_SHARED_DATA", raising=False)
    monkeypatch.setattr(classic, "shared_data_candidates", list)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _ordered(qrels: dict[str, dict[str, int]]) -> list[tuple[str, list[tuple[str, int]]]]:
    return [(q, list(judged.items())) for q, judged in qrels.items()]


@pytest.mark.parametrize("family", list(TASKS))
def test_the_packaged_copy_is_exactly_what_the_readers_make_of_the_originals(
    family: str, shared_data: Path, no_shared_data: Path
) -> None:
    task = TASKS[family]
    original = task(data=str(shared_data / family)).load()
    packaged = task().load()
    assert packaged.provenance["source"] == str(packaged_collection(family).resolve())
    assert original.provenance["source"] == str((shared_data / family).resolve())
    # documents (order, ids, titles, texts, meta), evaluated queries (with meta), qrels (order too)
    assert list(packaged.corpus.items()) == list(original.corpus.items())
    assert packaged.queries == original.queries
    assert _ordered(packaged.qrels) == _ordered(original.qrels)
    assert (packaged.metrics, packaged.ignore_identical_ids) == (original.metrics, original.ignore_identical_ids)
    # the provenance is the same, key order included, but for the folder read
    without_source = [(k, v) for k, v in original.provenance.items() if k != "source"]
    assert [(k, v) for k, v in packaged.provenance.items() if k != "source"] == without_source
    # and every query of the originals (judged or not) is packaged, in order
    corpus, queries, qrels, originals = read_packaged(packaged_collection(family))
    every = task(data=str(shared_data / family)).read_originals(shared_data / family)
    assert (corpus, queries, qrels) == every
    assert originals == original.provenance["sha256"]


def test_the_counts_of_the_packaged_copies(no_shared_data: Path) -> None:
    cran = CranfieldTask().load()
    assert (len(cran.corpus), len(cran.queries)) == (1400, 225)
    assert sum(len(j) for j in cran.qrels.values()) == 1612  # 1,837 lines less 225 code -1
    assert cran.queries[0].meta["orig_id"] == "001"
    cacm = CacmTask().load()
    assert (len(cacm.corpus), len(cacm.queries), cacm.provenance["n_topics"]) == (3204, 52, 64)
    assert sum(len(j) for j in cacm.qrels.values()) == 796
    assert cacm.corpus["CACM-1410"].title == "Interarrival Statistics for Time Sharing Systems"


@pytest.mark.parametrize("family", list(TASKS))
def test_the_packaged_copy_records_the_hashes_of_the_checked_in_results(family: str, no_shared_data: Path) -> None:
    """Results computed from the originals name the same data as runs on the packaged copy."""
    data = TASKS[family]().load()
    for path in sorted((ROOT / "results" / family).glob("*.json")):
        result = Result.from_json(path)
        result.validate(path)
        if result.kind == "measured":
            assert result.task.sha256 == data.provenance["sha256"], path


@pytest.mark.parametrize("family", list(TASKS))
def test_harness_run_bm25_without_shared_data_matches_the_checked_in_result(
    family: str, no_shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = no_shared_data / "bm25.json"
    assert cli_main(["run", "--task", family, "--retriever", "bm25", "--output", str(out)]) == 0
    expected = Result.from_json(BM25_RESULTS[family])
    got = Result.from_json(out)
    nDCG = round(expected.metrics["nDCG@10"], 4)
    assert nDCG == {"cranfield": 0.3516, "cacm": 0.4726}[family]
    assert f"nDCG@10={nDCG:.4f}" in capsys.readouterr().out
    assert got.metrics == pytest.approx(expected.metrics, abs=1e-12)
    assert list(got.per_query) == list(expected.per_query)
    for qid, values in expected.per_query.items():
        assert got.per_query[qid] == pytest.approx(values, abs=1e-12), qid
    assert got.task.sha256 == expected.task.sha256
    assert got.task.source == str(packaged_collection(family).resolve())
    assert sorted(p.name for p in no_shared_data.iterdir() if not p.name.startswith("bm25.")) == []


def test_a_tampered_or_missing_copy_is_refused(no_shared_data: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "data"
    shutil.copytree(packaged_collection("cranfield"), copy / "cranfield")
    monkeypatch.setattr(classic, "PACKAGED_DATA", copy)
    assert len(CranfieldTask().load().corpus) == 1400
    qrels = copy / "cranfield" / "qrels.txt"
    qrels.write_text(qrels.read_text().replace("1 0 184 3", "1 0 184 4", 1))
    with pytest.raises(HarnessError, match=r"qrels\.txt: contents differ from its manifest's SHA-256; regenerate"):
        CranfieldTask().load()
    (copy / "cranfield" / "docs.jsonl.gz").unlink()
    with pytest.raises(HarnessError, match=r"docs\.jsonl\.gz: file not found \(the packaged copy is incomplete\)"):
        CranfieldTask().load()
    (copy / "cranfield" / MANIFEST).unlink()
    with pytest.raises(HarnessError, match=r"looked in .*, the packaged copy .*cranfield\); pass --data DIR"):
        CranfieldTask().load()


def test_data_still_reads_the_original_format_only(tmp_path: Path) -> None:
    """``--data`` names originals; a folder in the packaged format is not taken for them."""
    shutil.copytree(packaged_collection("cacm"), tmp_path / "cacm")
    with pytest.raises(HarnessError, match=r"cacm: files cacm\.tar\.gz, topics\.cacm\.txt, qrels\.cacm\.txt not found"):
        CacmTask(data=str(tmp_path)).load()


def test_the_converter_regenerates_the_same_bytes(shared_data: Path, tmp_path: Path) -> None:
    script = ROOT / "scripts" / "convert_classic_data.py"
    check = subprocess.run([sys.executable, str(script), "--check", "--source", str(shared_data)],
                           check=False, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "packaged copies are up to date" in check.stdout
    # and --check notices a stale copy
    stale = tmp_path / "out"
    shutil.copytree(packaged_collection("cacm"), stale / "cacm")
    (stale / "cacm" / "qrels.txt").write_text("1 0 CACM-1 1\n")
    check = subprocess.run([sys.executable, str(script), "--check", "--source", str(shared_data), "--out", str(stale),
                            "cacm"], check=False, capture_output=True, text=True, timeout=120)
    assert check.returncode == 1 and "stale: " in check.stdout and "qrels.txt" in check.stdout


def test_the_manifests_describe_the_files() -> None:
    for family, task in TASKS.items():
        manifest = json.loads((packaged_collection(family) / MANIFEST).read_text())
        assert manifest["collection"] == family
        assert set(manifest["originals_sha256"]) == set(task.files)
        assert set(manifest["contents_sha256"]) == set(PACKAGED_FILES)
        assert (packaged_collection(family) / "README.md").is_file()


@pytest.mark.slow
def test_the_wheel_ships_the_data_and_runs_anywhere(tmp_path: Path) -> None:
    """Build the wheel, install it into a bare folder and run both tasks from elsewhere."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for family in TASKS:
        for name in (*PACKAGED_FILES, MANIFEST, "README.md"):
            assert f"harness/data/{family}/{name}" in names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    cwd = tmp_path / "stranger"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_SHARED_DATA"}
    env.update(PYTHONPATH=str(site), DISABLE_TQDM="1", HARNESS_CACHE=str(tmp_path / "cache"))
    for family, nDCG in (("cranfield", "0.3516"), ("cacm", "0.4726")):
        run = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--task", family, "--retriever", "bm25",
                              "--output", f"{family}.json"], check=False, cwd=cwd, env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert f"nDCG@10={nDCG}" in run.stdout
        source = json.loads((cwd / f"{family}.json").read_text())["task"]["source"]
        assert source == str((site / "harness" / "data" / family).resolve())
