"""The wheel claims one top-level import name, ``harness``: tasks and retrievers live inside it. Installed
outside the clone, it carries what a run needs: the offline models' detected heads give the same result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from harness.attention.heads import HEAD_FILE_ALIASES
from harness.models.aliases import ALIAS_TABLE, locate_alias_files

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once per module (no dependencies, no build isolation: offline)."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(folder), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (built,) = folder.glob("*.whl")
    return built


def test_the_wheel_installs_only_harness_at_the_top_level(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"harness"}
    for module in ("harness/tasks/beir.py", "harness/retrievers/qr.py", "harness/attention/engine.py",
                   "harness/results.py"):
        assert module in names
    # every source module of the three folders is in the wheel
    for folder, package in (("harness", "harness"), ("tasks", "harness/tasks"), ("retrievers", "harness/retrievers")):
        for path in (ROOT / folder).rglob("*.py"):
            assert f"{package}/{path.relative_to(ROOT / folder).as_posix()}" in names, path
    # the detected heads of the offline models, byte for byte those of results/heads
    with zipfile.ZipFile(wheel) as archive:
        for alias in HEAD_FILE_ALIASES:
            assert archive.read(f"harness/data/heads/{alias}.json") == (ROOT / "results" / "heads" / f"{alias}.json").read_bytes()



def test_the_wheel_carries_the_benchmarks_and_the_leaderboard_page(wheel: Path) -> None:
    """The ``harness bench`` targets and the page's static files (package data read by harness.site)."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for path in (ROOT / "benchmarks").rglob("*.py"):
            assert f"harness/benchmarks/{path.relative_to(ROOT / 'benchmarks').as_posix()}" in names, path
        static = sorted(p for p in (ROOT / "harness" / "site_static").iterdir() if p.is_file())
        assert {p.name for p in static} >= {"page.html", "page.css", "page.js"}
        for path in static:
            assert archive.read(f"harness/site_static/{path.name}") == path.read_bytes(), path

QR_RUN = ["run", "--task", "cranfield", "--retriever", "qr", "--max-queries", "2", "--depth", "5", "--allow-dirty"]


@pytest.mark.slow
def test_qr_from_the_installed_wheel_uses_the_packaged_heads(wheel: Path, tmp_path: Path) -> None:
    """`harness run --retriever qr` (SmolLM2, no --heads) from a wheel installed outside the clone: the same
    detected heads and the same nDCG@10 as from the clone (no fall-back to every head)."""
    try:
        locate_alias_files(ALIAS_TABLE["smollm2-135m"])
    except Exception as exc:  # noqa: BLE001 - the offline model package is optional
        pytest.skip(f"smollm2-135m not installed ({exc})")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_HEADS_DIR", "PYTHONPATH")}
    env["OMP_NUM_THREADS"] = "1"
    # Each its own cache: a shared run cache would let the second run resume the first one's scores.
    installed = {**env, "HARNESS_CACHE": str(tmp_path / "cache-wheel"),
                 "PYTHONPATH": str(site)}  # before .venv's editable install (its finder comes last)
    env["HARNESS_CACHE"] = str(tmp_path / "cache-clone")

    where = subprocess.run(
        [sys.executable, "-c", "import harness, harness.retrievers.qr as q; print(harness.__file__, q.__file__)"],
        cwd=outside, env=installed, check=True, capture_output=True, text=True, timeout=120,
    ).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where

    def run(cwd: Path, run_env: dict[str, str], output: Path) -> dict:
        proc = subprocess.run(
            [sys.executable, "-m", "harness.cli", "--no-progress", *QR_RUN, "--output", str(output)],
            check=False, cwd=cwd, env=run_env, capture_output=True, text=True, timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(output.read_text())

    from_wheel = run(outside, installed, tmp_path / "wheel.json")
    from_clone = run(ROOT, env, tmp_path / "clone.json")
    top16 = [h for h, _ in json.loads((ROOT / "results" / "heads" / "smollm2-135m.json").read_text())["heads"][:16]]
    for result in (from_wheel, from_clone):
        assert result["retriever"]["name"] == "qr"
        heads = result["retriever"]["heads"]
        assert (heads["name"], heads["n"], heads["list"]) == ("file:smollm2-135m.json", 16, top16)
    assert from_wheel["retriever"]["heads"] == from_clone["retriever"]["heads"]
    assert from_wheel["metrics"]["nDCG@10"] == from_clone["metrics"]["nDCG@10"]
    assert from_wheel["per_query"] == from_clone["per_query"]
