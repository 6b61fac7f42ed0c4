"""docs/API.md runs as written: its Python blocks, in order, in one namespace, from an empty
folder, with the shared data hidden (the page promises any machine), writing nothing there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import harness.tasks.classic

DOC = Path(__file__).resolve().parents[1] / "docs" / "API.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_the_block_finder_finds_every_block() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert len(python_blocks(text)) == text.count("```python") >= 5


def test_every_python_block_of_the_api_doc_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("HARNESS_SHARED_DATA", raising=False)
    monkeypatch.setattr(harness.tasks.classic, "shared_data_candidates", list)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "api_doc"}
    for number, block in enumerate(python_blocks(DOC.read_text(encoding="utf-8")), start=1):
        # the file name in tracebacks says which block failed
        exec(compile(block, f"docs/API.md, python block {number}", "exec"), namespace)  # noqa: S102
    assert list(tmp_path.iterdir()) == [], "the examples wrote into the working directory"
    out = capsys.readouterr().out
    assert "0.3516" in out and "1400 225" in out and "3204 52 64" in out
    assert namespace["cranfield"].provenance["source"] == str(harness.tasks.classic.packaged_collection("cranfield"))
