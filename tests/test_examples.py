"""The example third-party package ``examples/harness-tfidf-retriever``: installed by pip, run through the CLI.

This is the path a submitter follows (docs/SUBMITTING.md): package a retriever with an entry point,
run the harness on it, and have ``harness validate`` accept the result file, which a maintainer's
``harness validate`` must reject once tampered with.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.cli import main as harness_main
from harness.types import Document, Instance, Query
from tests.conftest import pip_install_copy
from tests.harness.conftest import write_beir

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "harness-tfidf-retriever"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed by pip into a private folder (built from a copy: the checkout stays clean)."""
    target = pip_install_copy(EXAMPLE, tmp_path_factory.mktemp("tfidf"))
    assert (target / "harness_tfidf" / "retriever.py").is_file()
    return target


def _harness(args: list[str], site: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
        "HARNESS_CACHE": str(tmp_path / "cache"),
    }
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "--no-progress", *args],
        check=False,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def submitted(site: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A result file produced the way a submitter would: `harness run --retriever tfidf` in a subprocess."""
    tmp = tmp_path_factory.mktemp("run")
    beir = write_beir(tmp / "toy")
    out = tmp / "x.json"
    proc = _harness(["run", "--task", str(beir), "--retriever", "tfidf", "--output", str(out)], site, tmp)
    assert proc.returncode == 0, proc.stderr
    assert "tfidf" in proc.stdout and "nDCG@10=" in proc.stdout
    return out, json.loads(out.read_text())


def test_entry_point_is_listed(site: Path, tmp_path: Path) -> None:
    proc = _harness(["list", "retrievers"], site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "tfidf            harness_tfidf.retriever:TfidfRetriever" in proc.stdout


def test_run_writes_a_file_that_validates(submitted, site: Path, tmp_path: Path) -> None:
    out, result = submitted
    assert result["retriever"]["name"] == "tfidf" and result["retriever"]["params"] == {"sublinear_tf": True}
    assert result["task"]["id"] == "beir/toy" and result["task"]["n_queries"] == 15
    assert result["metrics"]["nDCG@10"] > 0.5  # the toy topics are separable by vocabulary
    proc = _harness(["validate", str(out)], site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{out}: ok"


def test_reranking_and_parameters_through_the_cli(site: Path, tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "toy")
    out = tmp_path / "rr.json"
    proc = _harness(
        [
            "run",
            "--task",
            str(beir),
            "--retriever",
            "tfidf",
            "--set",
            "sublinear_tf=false",
            "--first-stage",
            "bm25",
            "--depth",
            "10",
            "--output",
            str(out),
        ],
        site,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["retriever"]["params"] == {"sublinear_tf": False}
    assert result["first_stage"]["name"] == "bm25" and result["first_stage"]["depth"] == 10
    bad = _harness(["run", "--task", str(beir), "--retriever", "tfidf", "--set", "sublinear_tf=maybe"], site, tmp_path)
    assert bad.returncode == 2 and "sublinear_tf must be true or false" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda r: r["metrics"].__setitem__("nDCG@10", r["metrics"]["nDCG@10"] + 0.01), "per-query values average"),
        (
            lambda r: r["per_query"].pop(min(r["per_query"])),
            "per_query covers 14 queries but task.n_queries is 15",
        ),
        # Dropping a query everywhere a careless editor would still leaves it in task.query_ids.
        (
            lambda r: (r["per_query"].pop("q-aero-0"), r["task"].__setitem__("n_queries", 14)),
            "per_query is missing 1 queries",
        ),
        (lambda r: r["environment"].pop("git_commit"), "missing field environment.'git_commit'"),
        (lambda r: r["task"].pop("source"), "missing field task.'source'"),
        (lambda r: r.pop("config_hash"), "missing field 'config_hash'"),
    ],
)
def test_validate_rejects_a_tampered_submission(submitted, tmp_path: Path, capsys, tamper, message: str) -> None:
    _, result = submitted
    bad = copy.deepcopy(result)
    tamper(bad)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(bad))
    code = harness_main(["validate", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {path}: ") and message in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ the scores themselves, against a slow reference


def _reference_cosines(texts: list[str], query: str, sublinear: bool = True) -> list[float]:
    """TF-IDF cosine written the obvious way, with dictionaries (the module docstring's formulas)."""
    import re

    def toks(t: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", t.lower())

    docs = [Counter(toks(t)) for t in texts]
    n = len(docs)
    idf = {t: math.log((1 + n) / (1 + sum(1 for d in docs if t in d))) + 1 for d in docs for t in d}

    def vec(c: Counter[str]) -> dict[str, float]:
        return {t: ((1 + math.log(k)) if sublinear else k) * idf[t] for t, k in c.items() if t in idf}

    q = vec(Counter(toks(query)))
    out = []
    for d in docs:
        v = vec(d)
        dot = sum(w * v.get(t, 0.0) for t, w in q.items())
        nq, nd = math.sqrt(sum(w * w for w in q.values())), math.sqrt(sum(w * w for w in v.values()))
        out.append(dot / (nq * nd) if nq and nd else 0.0)
    return out


@pytest.mark.parametrize("sublinear", [True, False])
def test_scores_equal_the_slow_reference(site: Path, tmp_path: Path, monkeypatch, sublinear: bool) -> None:
    monkeypatch.syspath_prepend(str(site))
    from harness_tfidf.retriever import TfidfRetriever

    beir = write_beir(tmp_path / "toy", seed=3)
    corpus = {}
    for line in (beir / "corpus.jsonl").read_text().splitlines():
        d = json.loads(line)
        corpus[d["_id"]] = Document(d["_id"], d["text"], d["title"])
    corpus["dup-a"] = Document("dup-a", "melody melody chord")  # exact ties, broken by id
    corpus["dup-b"] = Document("dup-b", "melody melody chord")
    queries = [
        Query(json.loads(x)["_id"], json.loads(x)["text"]) for x in (beir / "queries.jsonl").read_text().splitlines()
    ]
    queries += [Query("tie", "melody chord"), Query("oov", "zzz unknown")]
    retriever = TfidfRetriever(sublinear_tf=sublinear)
    ids = list(corpus)
    texts = [f"{d.title} {d.text}" if d.title else d.text for d in corpus.values()]
    run = retriever.search(corpus, queries, k=7)
    for q in queries:
        ref = _reference_cosines(texts, q.text, sublinear)
        expected = sorted(((s, i) for i, s in zip(ids, ref) if s > 0), key=lambda x: (-x[0], x[1]))[:7]
        assert list(run[q.id]) == [i for _, i in expected], q.id
        assert [run[q.id][i] for _, i in expected] == pytest.approx([s for s, _ in expected], abs=1e-12)
    assert run["oov"] == {}
    assert list(run["tie"])[:2] == ["dup-a", "dup-b"]
    # Re-ranking: idf over the candidates only.
    cands = [corpus[i] for i in ids[:12]]
    scores = next(retriever.score([Instance(query=queries[0], candidates=cands)]))
    ref = _reference_cosines(texts[:12], queries[0].text, sublinear)
    assert [scores[d.id] for d in cands] == pytest.approx(ref, abs=1e-12)
    assert next(retriever.score([Instance(query=queries[0], candidates=[])])) == {}
