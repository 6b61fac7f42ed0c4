"""The Python API (harness/api.py): cheap import, evaluate / load_task / load_retriever, what is
written and what is not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.errors import HarnessError
from harness.results import Result
from harness.types import Instance, Query, Retriever, Task

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "DISABLE_TQDM": "1", "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=300, check=False)


def test_import_harness_stays_cheap(tmp_path: Path) -> None:
    code = (
        "import sys, harness\n"
        "heavy = ('torch', 'numpy', 'transformers', 'harness.runner', 'harness.api')\n"
        "assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]\n"
        "from harness import evaluate, load_task, load_retriever, Result\n"
        "assert not [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print('ok')\n"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_issue_command_prints_cranfield_bm25(tmp_path: Path) -> None:
    """python -c "from harness import evaluate; print(evaluate(task='cranfield', retriever='bm25').metrics['nDCG@10'])" """
    code = "from harness import evaluate; print(evaluate(task='cranfield', retriever='bm25').metrics['nDCG@10'])"
    done = _python(code, tmp_path, HARNESS_CACHE=str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    assert round(float(done.stdout.strip()), 4) == 0.3516
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no results/ in the working directory


def test_the_public_names() -> None:
    from harness.api import evaluate, load_retriever, load_task

    assert (harness.evaluate, harness.load_task, harness.load_retriever) == (evaluate, load_task, load_retriever)
    assert harness.Result is Result
    assert {"evaluate", "load_task", "load_retriever", "Result"} <= set(dir(harness)) & set(harness.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'evaluat'"):
        harness.evaluat  # noqa: B018


def test_evaluate_writes_nothing_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = harness.evaluate("cranfield", "bm25", max_queries=20, show_progress=False)
    assert isinstance(result, Result) and result.task.n_queries == 20 and result.task.seed == 42
    assert list(tmp_path.iterdir()) == []
    assert set(result.metrics) == {"nDCG@10", "R@100", "MRR@10", "MAP", "P@10"}


def test_evaluate_writes_where_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "one" / "x.json"
    result = harness.evaluate("cranfield", "bm25", max_queries=10, output=str(out), save_run=str(tmp_path / "x.trec"),
                              show_progress=False)
    assert Result.from_json(out).metrics == result.metrics and (tmp_path / "x.trec").is_file()
    harness.evaluate("cranfield", "bm25", max_queries=10, results_root=str(tmp_path / "root"), show_progress=False)
    assert (tmp_path / "root" / "cranfield" / "bm25__q10-seed42.json").is_file()
    assert not (tmp_path / "results").exists()


def test_evaluate_options_are_checked() -> None:
    with pytest.raises(HarnessError, match=r"unknown option of evaluate 'max_query'; did you mean 'max_queries'"):
        harness.evaluate("cranfield", "bm25", max_query=5)
    with pytest.raises(HarnessError, match=r"save_run= is written beside the result file; give output="):
        harness.evaluate("cranfield", "bm25", save_run="x.trec")
    with pytest.raises(HarnessError, match=r"unknown parameter of retriever 'bm25' 'k'"):
        harness.evaluate("cranfield", "bm25", retriever_params={"k": 1})


def test_evaluate_passes_options_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = harness.evaluate("cranfield", "bm25", retriever_params={"k1": 1.2}, max_queries=5, seed=7, depth=50,
                              show_progress=False)
    assert result.retriever.params["k1"] == 1.2 and result.task.seed == 7 and result.task.n_queries == 5


def test_load_task() -> None:
    task = harness.load_task("cranfield")
    assert isinstance(task, Task) and task.id == "cranfield"
    with pytest.raises(HarnessError, match=r"unknown parameter of task 'cacm'"):
        harness.load_task("cacm", split="dev")
    with pytest.raises(HarnessError, match=r"files cran\.all\.1400, cran\.qry, cranqrel not found"):
        harness.load_task("cranfield", data="/nonexistent").load()


def test_load_retriever_is_usable_on_its_own() -> None:
    bm25 = harness.load_retriever("bm25", k1=1.5)
    assert isinstance(bm25, Retriever) and bm25.meta["params"]["k1"] == 1.5
    data = harness.load_task("cranfield").load()
    query = data.queries[0]
    candidates = [data.corpus[d] for d in ("184", "29", "1", "500")]
    (scores,) = list(bm25.score([Instance(query=query, candidates=candidates)]))
    assert set(scores) == {"184", "29", "1", "500"}
    run = bm25.search(data.corpus, [Query(id="q", text=query.text)], k=3)
    assert len(run["q"]) == 3
    with pytest.raises(HarnessError, match=r"retriever 'bm25' takes no --model"):
        harness.load_retriever("bm25", model="x")
    with pytest.raises(HarnessError, match=r"unknown retriever"):
        harness.load_retriever("bm52")


def test_evaluating_uncommitted_code_is_refused_only_when_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A result file must come from committed code (or say allow_dirty); a result kept in memory need not."""
    from harness import provenance

    monkeypatch.delenv("HARNESS_ALLOW_DIRTY", raising=False)
    monkeypatch.setattr(provenance, "git_commit", lambda: "0123abc+dirty")
    monkeypatch.chdir(tmp_path)
    assert harness.evaluate("cranfield", "bm25", max_queries=5, show_progress=False).task.n_queries == 5
    with pytest.raises(HarnessError, match=r"uncommitted changes"):
        harness.evaluate("cranfield", "bm25", max_queries=5, output="x.json", show_progress=False)
    harness.evaluate("cranfield", "bm25", max_queries=5, output="x.json", allow_dirty=True, show_progress=False)
    assert (tmp_path / "x.json").is_file()
