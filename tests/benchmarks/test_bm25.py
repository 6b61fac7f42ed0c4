"""``harness bench bm25``: the whole benchmark on a tiny copy of the shared data (seconds), and the
plumbing on the real data when it is there."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from harness.benchmarks import bm25 as bench
from harness.cli import main
from harness.errors import HarnessError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ESSAY = " ".join(f"startups grow when founders talk to users every week number {i}." for i in range(12))


def _tiny_cacm(folder: Path) -> None:
    folder.mkdir(parents=True)
    with tarfile.open(folder / "cacm.tar.gz", "w:gz") as archive:
        for name, body in (
            ("CACM-0001.html", "<pre>\nTime Sharing Systems\n\nCACM 1965\nScheduling of users on one processor\n</pre>"),
            ("CACM-0002.html", "<pre>\nSorting Networks &amp; Merging\n\nCACM 1962\n</pre>"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body.encode())
            archive.addfile(info, io.BytesIO(body.encode()))
    (folder / "topics.cacm.txt").write_text(
        "<DOC>\n<DOCNO> 1 </DOCNO>\ntime sharing processor scheduling\n</DOC>\n"
        "<DOC>\n<DOCNO> 2 </DOCNO>\nan unjudged topic\n</DOC>\n"
    )
    (folder / "qrels.cacm.txt").write_text("1 Q0 CACM-1 1\n")


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """The shared data's layout, each source a few documents from tests/fixtures."""
    data = tmp_path / "data"
    (data / "cranfield").mkdir(parents=True)
    for src, dst in (("docs.txt", "cran.all.1400"), ("queries.txt", "cran.qry"), ("qrels.txt", "cranqrel")):
        shutil.copyfile(FIXTURES / "cranfield_tiny" / src, data / "cranfield" / dst)
    _tiny_cacm(data / "cacm")
    (data / "paul_graham_essays").mkdir()
    (data / "paul_graham_essays" / "growth.txt").write_text(ESSAY)
    shutil.copytree(FIXTURES / "clipper" / "csv" / "books", data / "clipper_sample" / "books")
    (data / bench.HOTPOT_FILE).parent.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "multihop" / "hotpotqa_tiny.json", data / bench.HOTPOT_FILE)
    for name in bench.BEIR_TOPICS:
        folder = data / "beir_queries_qrels_only" / name / "anserini"
        folder.mkdir(parents=True)
        shutil.copyfile(FIXTURES / "trec" / "topics.tsv.gz", folder / f"topics.beir-v1.0.0-{name}.test.tsv.gz")
    return data


def test_collection_reads_every_source_through_the_tasks(tiny_data: Path) -> None:
    docs, queries = bench.build_collection(tiny_data, passage_words=20)
    ids = [d for d, _ in docs]
    assert len(set(ids)) == len(ids) and all(text for doc_id, text in docs if doc_id != "cran-3")  # cran-3: no abstract
    assert ids[:5] == ["cran-1", "cran-2", "cran-3", "CACM-1", "CACM-2"]
    assert dict(docs)["CACM-1"] == "Time Sharing Systems CACM 1965 Scheduling of users on one processor"
    assert [d for d in ids if d.startswith("pg-")] == [f"pg-{i}" for i in range(7)]  # 132 words
    assert len(dict(docs)["pg-0"].split()) == 20
    assert [d for d in ids if d.startswith("clipper-")] == [f"clipper-tiny_book-{n}-0" for n in (1, 2, 3)]
    assert dict(docs)["hotpot-0-0"] == "Gamma. Gamma is a city. It has a river."
    prefixes = [q.split("-q")[0] for q, _ in queries]
    assert prefixes == ["cran", "cran", "cacm", *[n for n in bench.BEIR_TOPICS for _ in (0, 1)], "hotpot", "hotpot"]
    assert ("cacm-q1", "time sharing processor scheduling") in queries  # the judged topic only
    assert ("scifact-q102", "how to lower cholesterol") in queries


def test_tiny_benchmark_reports_both_implementations_side_by_side(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench" / "bm25.json"
    argv = ["bench", "bm25", "--data", str(tiny_data), "--depth", "5", "--passage-words", "20", "--repeats", "2"]
    assert main([*argv, "--output", str(out), "--json"]) == 0
    record = json.loads(out.read_text())
    assert record == json.loads(capsys.readouterr().out)
    docs, queries = bench.build_collection(tiny_data, passage_words=20)
    assert record["corpus"]["documents"] == len(docs) and record["queries"] == len(queries) == 13
    assert record["corpus"]["tokens"] > 0 and record["depth"] == 5 and record["repeats"] == 2
    seconds = record["seconds"]
    assert set(seconds) == {"tokenize_once", "ours", "rank_bm25"} and all(v > 0 for v in seconds.values())
    assert [len(record["seconds_all_rounds"][k]) for k in ("ours", "rank_bm25")] == [2, 2]
    assert min(record["seconds_all_rounds"]["ours"]) == pytest.approx(seconds["ours"], abs=1e-4)
    assert set(record["queries_per_s"]) == {"ours", "rank_bm25"} and all(v > 0 for v in record["queries_per_s"].values())
    assert record["speedup"] > 0  # the ratio of best times (rounded to 0.1 ms here, so not recomputed)
    # same tokens, same BM25 variant, same tie rule: the same rankings
    assert record["identical_top10_pct"] == record["identical_top10_set_pct"] == 100.0
    assert record["ours_default_search_seconds"] > 0
    machine = record["machine"]
    assert machine["cores"] >= 1 and machine["memory_gib"] > 0 and machine["gpu"] is None
    assert {"bm25s", "rank-bm25", "numpy"} <= set(machine["versions"])
    assert len(machine["load_average_at_start"]) == len(machine["load_average_at_end"]) == 3
    summary = out.with_suffix(".md").read_text()
    assert "Speed-up" in summary and "rank_bm25 BM25Okapi" in summary and "Machine: " in summary


def test_bad_options_and_missing_data_are_one_line_errors(tiny_data: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    with pytest.raises(HarnessError, match="--depth 0 must be at least 1"):
        bench.run(parser.parse_args(["--data", str(tiny_data), "--depth", "0"]))
    with pytest.raises(HarnessError, match=r"--depth 500 is larger than the benchmark corpus \(\d+ documents\)"):
        bench.run(parser.parse_args(["--data", str(tiny_data), "--depth", "500"]))
    with pytest.raises(HarnessError, match="shared data folder not found"):
        bench.build_collection(tmp_path / "nowhere")
    shutil.rmtree(tiny_data / "cacm")
    with pytest.raises(HarnessError, match="cacm: files cacm.tar.gz, topics.cacm.txt, qrels.cacm.txt not found"):
        bench.build_collection(tiny_data)


def test_bench_command_quick_run(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmark's plumbing on the real data and a subset of queries (the recorded run uses all of them)."""
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = tmp_path / "bench" / "bm25.json"
    args = parser.parse_args(["--data", str(shared_data), "--max-queries", "30", "--repeats", "1", "--output", str(out), "--json"])
    assert bench.run(args) == 0
    record = json.loads(out.read_text())
    assert record == json.loads(capsys.readouterr().out)
    assert record["corpus"]["documents"] >= 10_000 and record["queries"] == 30 and record["depth"] == 200
    assert record["identical_top10_pct"] >= 99.0
    assert record["seconds"]["ours"] > 0 and record["seconds"]["rank_bm25"] > 0
    assert "Speed-up" in out.with_suffix(".md").read_text()
