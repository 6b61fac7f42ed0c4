"""TREC topics, qrels and runs: the fixtures, round trips, the real Anserini/CACM files, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.trec import (
    format_trec_run,
    read_trec_qrels,
    read_trec_run,
    read_trec_topics,
    write_trec_qrels,
    write_trec_run,
)

TREC = Path(__file__).resolve().parent.parent / "fixtures" / "trec"


def test_read_run_fixture() -> None:
    run = read_trec_run(TREC / "run.trec")
    assert run == {"q1": {"d1": 2.5, "d3": 1.25, "d2": 1.25}, "q2": {"d2": 0.75}}


def test_write_run_orders_by_score_then_docid_with_1_based_ranks(tmp_path: Path) -> None:
    run = {"q2": {"b": 1.0}, "q1": {"z": 3.0, "d3": 1.25, "d2": 1.25, "a": -0.5}}
    path = tmp_path / "out" / "run.trec"
    write_trec_run(run, path, tag="mine")
    assert path.read_text() == (
        "q1 Q0 z 1 3.0 mine\nq1 Q0 d2 2 1.25 mine\nq1 Q0 d3 3 1.25 mine\nq1 Q0 a 4 -0.5 mine\nq2 Q0 b 1 1.0 mine\n"
    )
    assert not list(path.parent.glob(".*.tmp"))  # atomic: no temporary left behind


def test_run_round_trip_is_exact(tmp_path: Path) -> None:
    run = {"q1": {"d1": 0.1 + 0.2, "d2": 1e-12, "d3": -3.5e10}, "q10": {"d1": 1 / 3}}
    write_trec_run(run, tmp_path / "r.trec")
    assert read_trec_run(tmp_path / "r.trec") == run
    fixture = read_trec_run(TREC / "run.trec")
    write_trec_run(fixture, tmp_path / "f.trec", tag="bm25")
    assert read_trec_run(tmp_path / "f.trec") == fixture


def test_run_top_k() -> None:
    text = format_trec_run({"q": {"a": 1.0, "b": 2.0, "c": 3.0}}, k=2)
    assert [line.split()[2] for line in text.splitlines()] == ["c", "b"]


def test_qrels_fixture_and_round_trip(tmp_path: Path) -> None:
    qrels = read_trec_qrels(TREC / "qrels.txt")
    assert qrels == {"q1": {"d1": 2, "d3": 0}, "q2": {"d2": 1}}
    write_trec_qrels(qrels, tmp_path / "q.txt")
    assert (tmp_path / "q.txt").read_text() == "q1 0 d1 2\nq1 0 d3 0\nq2 0 d2 1\n"
    assert read_trec_qrels(tmp_path / "q.txt") == qrels


def test_crlf_run_and_qrels(tmp_path: Path) -> None:
    for name in ("run.trec", "qrels.txt", "topics.sgml", "topics.doc.txt", "topics.tsv"):
        (tmp_path / name).write_bytes((TREC / name).read_bytes().replace(b"\n", b"\r\n"))
    assert read_trec_run(tmp_path / "run.trec") == read_trec_run(TREC / "run.trec")
    assert read_trec_qrels(tmp_path / "qrels.txt") == read_trec_qrels(TREC / "qrels.txt")
    for name in ("topics.sgml", "topics.doc.txt", "topics.tsv"):
        assert read_trec_topics(tmp_path / name) == read_trec_topics(TREC / name)


def test_topics_tsv_and_gz() -> None:
    expected = {"101": "does aspirin prevent heart attacks", "102": "how to lower cholesterol"}
    assert read_trec_topics(TREC / "topics.tsv") == expected
    assert read_trec_topics(TREC / "topics.tsv.gz") == expected


def test_topics_sgml_fields() -> None:
    assert read_trec_topics(TREC / "topics.sgml") == {
        "301": "International Organized Crime",
        "302": "Poliomyelitis and Post-Polio",
    }
    desc = read_trec_topics(TREC / "topics.sgml", field="desc")
    assert desc["301"] == "Identify organizations that participate in international criminal activity."
    narr = read_trec_topics(TREC / "topics.sgml", field="narr")
    assert narr["302"] == "Relevant documents discuss outbreaks."


def test_topics_doc_layout() -> None:
    topics = read_trec_topics(TREC / "topics.doc.txt")
    assert topics == {
        "1": "What articles exist which deal with TSS (Time Sharing System), an operating system for IBM computers?",
        "2": "I am interested in articles written by Prieve & Pooch",
    }


def test_real_anserini_topics_and_qrels(shared_data: Path) -> None:
    folder = shared_data / "beir_queries_qrels_only"
    topics = read_trec_topics(folder / "scifact" / "anserini" / "topics.beir-v1.0.0-scifact.test.tsv.gz")
    qrels = read_trec_qrels(folder / "scifact" / "anserini" / "qrels.beir-v1.0.0-scifact.test.txt")
    assert len(topics) == 300 and len(qrels) == 300  # SOURCES.md: 300 topics, 339 qrels lines
    assert sum(len(v) for v in qrels.values()) == 339
    assert set(qrels) <= set(topics)
    covid = read_trec_qrels(folder / "trec-covid" / "anserini" / "qrels.beir-v1.0.0-trec-covid.test.txt")
    levels = [rel for judged in covid.values() for rel in judged.values()]
    assert (levels.count(0), levels.count(1), levels.count(2)) == (41_661, 10_456, 14_217)
    assert len(read_trec_topics(folder / "trec-covid" / "anserini" / "topics.beir-v1.0.0-trec-covid.test.tsv.gz")) == 50


def test_real_cacm_topics(shared_data: Path) -> None:
    topics = read_trec_topics(shared_data / "cacm" / "topics.cacm.txt")
    assert len(topics) == 64 and list(topics)[:3] == ["1", "2", "3"]
    assert topics["2"] == "I am interested in articles written either by Prieve or Udo Pooch Prieve, B. Pooch, U."


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reader", "text", "message"),
    [
        (read_trec_run, "q1 Q0 d1 1 2.5\n", r"bad:1: expected 6 fields 'qid Q0 docid rank score tag', got 5"),
        (read_trec_run, "q1 Q0 d1 1 2.5 t\nq1 Q0 d1 2 1.0 t\n", r"bad:2: document 'd1' listed twice for query 'q1'"),
        (read_trec_run, "q1 Q0 d1 one 2.5 t\n", r"bad:1: field 'rank' must be an integer, got 'one'"),
        (read_trec_run, "q1 Q0 d1 1 high t\n", r"bad:1: field 'score' must be a number, got 'high'"),
        (read_trec_run, "q1 Q0 d1 1 nan t\n", r"bad:1: field 'score' is NaN"),
        (read_trec_qrels, "q1 0 d1\n", r"bad:1: expected 4 fields 'qid iter docid rel', got 3"),
        (read_trec_qrels, "q1 0 d1 x\n", r"bad:1: field 'rel': relevance grade must be an integer, got 'x'"),
        (read_trec_qrels, "\nq1 0 d1 1\nq1 0 d1 2\n", r"bad:3: query 'q1' document 'd1' judged 2 here but 1 on line 2"),
        (read_trec_topics, "101 no tab here\n", r"bad:1: expected 'qid<TAB>text' \(no tab found\)"),
        (read_trec_topics, "1\ta\n1\tb\n", r"bad:2: duplicate topic id '1'"),
        (read_trec_topics, "<top>\n<title> t\n</top>\n", r"bad:1: <top> without <num>"),
        (read_trec_topics, "<DOC>\n text\n</DOC>\n", r"bad:1: <DOC> without <DOCNO>"),
        (read_trec_topics, "", r"bad: no topics found"),
    ],
)
def test_bad_input(tmp_path: Path, reader, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad"
    path.write_text(text)
    with pytest.raises(HarnessError, match=message):
        reader(path)


def test_missing_file_and_bad_gzip(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"file not found"):
        read_trec_run(tmp_path / "none.trec")
    (tmp_path / "t.tsv.gz").write_bytes(b"not gzip")
    with pytest.raises(HarnessError, match=r"t\.tsv\.gz: cannot read gzip file"):
        read_trec_topics(tmp_path / "t.tsv.gz")


def test_unwritable_values(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"document id 'a b' is empty or contains whitespace"):
        write_trec_run({"q": {"a b": 1.0}}, tmp_path / "r")
    with pytest.raises(HarnessError, match=r"NaN score"):
        write_trec_run({"q": {"a": float("nan")}}, tmp_path / "r")
    with pytest.raises(HarnessError, match=r"run tag"):
        write_trec_run({"q": {"a": 1.0}}, tmp_path / "r", tag="my tag")
    with pytest.raises(HarnessError, match=r"topics field must be one of"):
        read_trec_topics(TREC / "topics.sgml", field="body")
