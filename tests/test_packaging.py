"""The wheel claims one top-level import name, ``harness``: tasks and retrievers live inside it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_only_harness_at_the_top_level(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
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
