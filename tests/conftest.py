"""Shared fixtures.

Tests that read the real evaluation data use the ``shared_data`` fixture: it points at
``../shared/data`` (or ``$HARNESS_SHARED_DATA``). On a fresh clone without it they skip with a
reason; with ``HARNESS_REQUIRE_SHARED_DATA=1`` (set by ``.ci/run``) the skip becomes a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# A developer's checkout is usually dirty; module-scoped fixtures run before per-test settings, so
# this is process-wide. The refusal itself is tested in tests/harness/test_hardening.py.
os.environ["HARNESS_ALLOW_DIRTY"] = "1"


def pip_install_copy(package: Path, work: Path) -> Path:
    """``package`` (a folder with a pyproject.toml) installed by pip into ``work/site``, built from a
    copy in ``work/src`` so that the checkout stays clean; returns the site folder."""
    source = shutil.copytree(package, work / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    return target


def _shared_data_dir() -> Path:
    return Path(os.environ.get("HARNESS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = _shared_data_dir()
    if not path.is_dir():
        reason = f"real evaluation data not found at {path} (set HARNESS_SHARED_DATA)"
        if os.environ.get("HARNESS_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(reason + "; HARNESS_REQUIRE_SHARED_DATA=1 makes this a failure")
        pytest.skip(reason)
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test session gets its own harness cache, except for converted model weights."""
    cache = tmp_path_factory.getbasetemp() / "harness-cache"
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("DISABLE_TQDM", "1")
