"""The example third-party task package ``examples/harness-shelldocs-task``: installed by pip, run through the CLI.

The path a researcher follows to add a collection: package a task with an entry point under
``harness.tasks``, run a retriever on it, have ``harness validate`` accept the result; a task
parameter changes the run, malformed files are one-line errors naming file and line, and the
recorded nDCG@10 equals the one computed here by hand from the run file written beside the result.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from tests.conftest import pip_install_copy

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "harness-shelldocs-task"
FILES = ("docs.tsv", "topics.txt", "qrels.txt")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed by pip into a private folder (built from a copy: the checkout stays clean)."""
    target = pip_install_copy(EXAMPLE, tmp_path_factory.mktemp("shelldocs"))
    for name in FILES:  # the collection is package data: installed with the code
        assert (target / "harness_shelldocs" / "data" / name).is_file(), name
    return target


def _harness(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
        "HARNESS_CACHE": str(cwd / "cache"),
    }
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "--no-progress", *args],
        check=False,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: ")
    return proc.stderr.strip()


@pytest.fixture(scope="module")
def submitted(site: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A result file produced the way a researcher would: `harness run --task shelldocs` in a subprocess."""
    tmp = tmp_path_factory.mktemp("run")
    out = tmp / "x.json"
    proc = _harness(["run", "--task", "shelldocs", "--retriever", "bm25", "--output", str(out)], site, tmp)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("shelldocs  bm25  n=12  ") and "nDCG@10=" in proc.stdout
    return out, json.loads(out.read_text())


def test_entry_point_is_listed(site: Path, tmp_path: Path) -> None:
    proc = _harness(["list", "tasks"], site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "  shelldocs" in proc.stdout.splitlines()


def test_run_writes_a_file_that_validates(submitted, site: Path, tmp_path: Path) -> None:
    out, result = submitted
    task = result["task"]
    data = site / "harness_shelldocs" / "data"
    assert task["id"] == "shelldocs" and task["n_queries"] == 12 and task["n_docs"] == 40
    assert task["query_ids"] == [str(n) for n in range(1, 13)]
    # Real provenance: the folder read and the sha256 of the files in it.
    assert task["source"] == str(data.resolve())
    assert task["sha256"] == {name: _sha256(data / name) for name in FILES}
    assert task["field"] == "title" and task["split"] == "test"
    assert result["main_metric"] == "nDCG@10"
    assert set(result["metrics"]) == {"nDCG@10", "R@10", "MRR@10", "MAP", "P@5"}
    assert result["first_stage"] is None  # BM25 searched the whole corpus
    proc = _harness(["validate", str(out)], site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{out}: ok"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_qrels_by_hand(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            qid, _, docid, grade = line.split()
            qrels.setdefault(qid, {})[docid] = int(grade)
    return qrels


def _read_run_by_hand(path: Path) -> dict[str, list[str]]:
    """``{qid: [docid, ...]}`` in rank order, from the gzipped TREC run (ranks checked contiguous)."""
    rows: dict[str, list[tuple[int, str]]] = {}
    with gzip.open(path, "rt") as handle:
        for line in handle:
            qid, q0, docid, rank, _score, _tag = line.split()
            assert q0 == "Q0"
            rows.setdefault(qid, []).append((int(rank), docid))
    ranked = {}
    for qid, pairs in rows.items():
        pairs.sort()
        assert [r for r, _ in pairs] == list(range(1, len(pairs) + 1)), qid
        ranked[qid] = [d for _, d in pairs]
    return ranked


def _ndcg_at_10(ranking: list[str], judged: dict[str, int]) -> float:
    """trec_eval's ndcg_cut.10: linear gain, discount log2(rank + 1), ideal from every judged grade."""
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg


def test_ndcg_equals_an_independent_computation(submitted, site: Path) -> None:
    out, result = submitted
    assert result["runs"]["ranking"]["file"] == "x.run.gz"
    ranked = _read_run_by_hand(out.with_name("x.run.gz"))
    # The judgements as shipped, not the x.qrels.gz the harness wrote.
    qrels = _read_qrels_by_hand(site / "harness_shelldocs" / "data" / "qrels.txt")
    assert set(ranked) == set(qrels) == set(result["per_query"])
    by_hand = {qid: _ndcg_at_10(ranked[qid], qrels[qid]) for qid in qrels}
    for qid, value in by_hand.items():
        assert result["per_query"][qid]["nDCG@10"] == pytest.approx(value, abs=1e-12), qid
    mean = sum(by_hand.values()) / len(by_hand)
    assert result["metrics"]["nDCG@10"] == pytest.approx(mean, abs=1e-12)
    # pytrec_eval directly, on the file's order (scores replaced by -rank: trec_eval re-sorts by score).
    import pytrec_eval

    as_scored = {qid: {d: float(-i) for i, d in enumerate(docs)} for qid, docs in ranked.items()}
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(as_scored)
    assert {q: v["ndcg_cut_10"] for q, v in trec.items()} == pytest.approx(by_hand, abs=1e-12)
    # The number the example's README quotes.
    assert mean == pytest.approx(0.8185, abs=5e-5)


def test_task_parameter_changes_the_run(submitted, site: Path, tmp_path: Path) -> None:
    _, title_run = submitted
    # No --output: a field other than the declared default makes a variant with a file of its own.
    runs = {}
    for field in ("description", "title"):
        proc = _harness(
            ["run", "--task", "shelldocs", "--retriever", "bm25", "--task-set", f"field={field}"], site, tmp_path
        )
        assert proc.returncode == 0, proc.stderr
        runs[field] = Path(proc.stderr.strip().splitlines()[-1].removeprefix("wrote "))
    assert runs == {
        "description": Path("results/shelldocs/bm25__field-description.json"),
        "title": Path("results/shelldocs/bm25.json"),
    }  # field=title is the official task
    result = json.loads((tmp_path / runs["description"]).read_text())
    assert result["task"]["field"] == "description"
    assert result["task"]["sha256"] == title_run["task"]["sha256"]  # same files, other queries
    assert result["run_sha256"] != title_run["run_sha256"]
    assert result["metrics"]["nDCG@10"] != title_run["metrics"]["nDCG@10"]
    assert json.loads((tmp_path / runs["title"]).read_text())["run_sha256"] == title_run["run_sha256"]
    proc = _harness(["validate", str(runs["description"])], site, tmp_path)
    assert proc.returncode == 0, proc.stderr

    misspelt = _harness(
        ["run", "--task", "shelldocs", "--retriever", "bm25", "--task-set", "fild=description"], site, tmp_path
    )
    assert "unknown parameter of task 'shelldocs' 'fild'; did you mean 'field'?" in _one_line_error(misspelt)
    bad_value = _harness(
        ["run", "--task", "shelldocs", "--retriever", "bm25", "--task-set", "field=summary"], site, tmp_path
    )
    assert _one_line_error(bad_value) == (
        "error: task 'shelldocs': field must be one of title, description, both; got 'summary'"
    )


def test_reranking_uses_the_declared_depth(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "rr.json"
    proc = _harness(
        ["run", "--task", "shelldocs", "--retriever", "bm25", "--first-stage", "bm25", "--output", str(out)],
        site,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["first_stage"]["name"] == "bm25" and result["first_stage"]["depth"] == 20  # default_depth
    assert _harness(["validate", str(out)], site, tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("name", "line", "old", "new", "message"),
    [
        ("docs.tsv", 5, "\t", " ", "expected 3 tab-separated fields 'docid title text', got 2"),
        ("docs.tsv", 7, "crontab\t", "awk\t", "duplicate document id 'awk' (first on line 2)"),
        ("topics.txt", 9, "description:", "description", "expected 'key: value'"),
        ("qrels.txt", 5, "grep 2", "grep 3", "grade 3 is not one of 0, 1, 2"),
        ("qrels.txt", 7, "xargs", "xarg", "document 'xarg' is not in "),
    ],
)
def test_corrupted_data_is_a_one_line_error(
    site: Path, tmp_path: Path, name: str, line: int, old: str, new: str, message: str
) -> None:
    data = shutil.copytree(site / "harness_shelldocs" / "data", tmp_path / "data")
    path = data / name
    lines = path.read_text().split("\n")
    assert old in lines[line - 1], lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_text("\n".join(lines))
    proc = _harness(["run", "--task", "shelldocs", "--data", str(data), "--retriever", "bm25"], site, tmp_path)
    err = _one_line_error(proc)
    assert err.startswith(f"error: {path}:{line}: ") and message in err, err


def test_variant_note(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(site))
    from harness_shelldocs.task import ShelldocsTask, shipped_sha256

    official = {"source": "/anywhere/data", "sha256": shipped_sha256(), "field": "description"}
    assert ShelldocsTask.variant_note(official) is None  # the shipped files, wherever they were read
    edited = {**official, "sha256": {**shipped_sha256(), "qrels.txt": "0" * 64}, "source": "/home/me/mine"}
    assert ShelldocsTask.variant_note(edited) == "local data mine"


@pytest.mark.parametrize(
    ("reader", "text", "message"),
    [
        ("read_docs", "", "1: expected the header 'docid<TAB>title<TAB>text', got ''"),
        ("read_docs", "docid\ttitle\ttext\n", "no documents after the header"),
        ("read_docs", "docid\ttitle\ttext\nmy doc\tt\tx\n", "2: document id 'my doc' is empty or contains whitespace"),
        ("read_docs", "docid\ttitle\ttext\nd1\tt\t \n", "2: document 'd1' has an empty text"),
        ("read_topics", "# only a comment\n", "no topics"),
        ("read_topics", "number: 1\ntitle: a\n\nnumber: 2\n", "1: topic has no 'description' line"),
        (
            "read_topics",
            "number: 1\ntitle: a\ndescription: b\n\nnumber: 1\ntitle: c\ndescription: d\n",
            "5: duplicate topic '1' (first on line 1)",
        ),
        ("read_topics", "number: 1\ntitle: a\ntitle: b\n", "3: 'title' given twice in one topic"),
        (
            "read_topics",
            "number: 1\nnarrative: a\n",
            "2: unknown key 'narrative' (expected number, title or description)",
        ),
    ],
)
def test_readers_refuse_bad_input(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str, text: str, message: str
) -> None:
    monkeypatch.syspath_prepend(str(site))
    from harness_shelldocs import readers

    path = tmp_path / "file"
    path.write_text(text)
    with pytest.raises(HarnessError) as caught:
        getattr(readers, reader)(path)
    expected = f"{path}:{message}" if message[0].isdigit() else f"{path}: {message}"
    assert str(caught.value) == expected


def test_readers_accept_crlf_and_keep_file_order(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(site))
    from harness_shelldocs.readers import read_docs, read_topics

    docs = tmp_path / "docs.tsv"
    docs.write_bytes(b"docid\ttitle\ttext\r\nz\t\tlast  letter\r\na\tA\tfirst\r\n")
    corpus = read_docs(docs)
    assert list(corpus) == ["z", "a"] and corpus["z"].title is None and corpus["z"].text == "last letter"
    topics = tmp_path / "topics.txt"
    topics.write_bytes(b"number: 2\r\ntitle: b: c\r\ndescription: d\r\n")
    assert [(t.number, t.title, t.line) for t in read_topics(topics)] == [("2", "b: c", 1)]
