"""results/ANALYSES.md is what scripts/analyses.sh makes of the checked-in result and head files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_checked_in_analyses_are_regenerated_unchanged(tmp_path: Path) -> None:
    out = tmp_path / "ANALYSES.md"
    env = {**os.environ, "HARNESS": f"{sys.executable} -m harness.cli", "DISABLE_TQDM": "1"}
    subprocess.run(["bash", str(REPO / "scripts" / "analyses.sh"), str(out)], cwd=REPO, env=env, check=True,
                   capture_output=True, timeout=600)
    text = out.read_text(encoding="utf-8")
    assert text == (REPO / "results" / "ANALYSES.md").read_text(encoding="utf-8")
    # every table came out: three comparisons with their pairs, two overlap tables
    assert text.count("| A | B | n |") == 3 and text.count("overlap@16") == 1 and text.count("overlap@64") == 1
