"""BEIR loading from local folders: the tiny fixtures, CRLF, bad input, hub errors offline."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.registry import make_task
from harness.tasks.beir import (
    CQADUPSTACK_FORUMS,
    PAPER_DATASETS,
    BeirTask,
    read_beir_corpus,
    read_beir_qrels,
    read_beir_queries,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TINY = FIXTURES / "beir_tiny"
TINY_CRLF = FIXTURES / "beir_tiny_crlf"


def _copy(tmp_path: Path, src: Path = TINY) -> Path:
    dst = tmp_path / "ds"
    shutil.copytree(src, dst)
    return dst


def test_tiny_folder_loads_with_protocol_conventions() -> None:
    data = BeirTask("tiny", data=str(TINY)).load()
    # q4 has only a rel-0 judgement and q5 only train qrels: both are not part of the test task.
    assert [q.id for q in data.queries] == ["q1", "q2", "q3"]
    assert data.qrels == {"q1": {"d1": 2}, "q2": {"d2": 1}, "q3": {"d3": 1, "q3": 1}}
    assert list(data.corpus) == ["d1", "d2", "d3", "q3", "d5"]
    assert data.corpus["d1"].title == "Aspirin" and data.corpus["d1"].text.startswith("Aspirin reduces")
    assert data.corpus["d2"].title == ""  # empty titles are kept as given
    assert data.corpus["d5"].title is None  # absent titles are None
    assert data.corpus["d3"].meta == {"extra": 7}
    assert data.queries[1].meta == {"metadata": {"src": "hand"}}
    assert data.ignore_identical_ids is True
    assert data.metrics == ("nDCG@10", "nDCG@5", "R@100", "MRR@10", "MAP")
    prov = data.provenance
    assert prov["split"] == "test" and prov["n_queries"] == 3 and prov["n_docs"] == 5
    assert prov["qrels_dropped_nonpositive"] == 2
    assert set(prov["sha256"]) == {"corpus.jsonl", "queries.jsonl", "qrels/test.tsv"}
    assert all(len(h) == 64 for h in prov["sha256"].values())


def test_protocol_defaults_are_class_attributes() -> None:
    assert (BeirTask.default_depth, BeirTask.default_truncate_words) == (200, 400)
    assert (BeirTask.default_max_queries, BeirTask.default_seed) == (512, 42)
    assert set(PAPER_DATASETS) <= set(BeirTask.names)
    assert len(PAPER_DATASETS) == 11
    assert {"msmarco", "arguana", "quora", "cqadupstack/android"} <= set(BeirTask.names)
    assert len([n for n in BeirTask.names if n.startswith("cqadupstack/")]) == len(CQADUPSTACK_FORUMS) == 12


def test_other_split() -> None:
    data = BeirTask("tiny", data=str(TINY), split="train").load()
    assert [q.id for q in data.queries] == ["q5"] and data.provenance["split"] == "train"


def test_missing_split_names_present_ones() -> None:
    with pytest.raises(HarnessError, match=r"qrels/dev\.tsv: file not found .*present: test, train"):
        BeirTask("tiny", data=str(TINY), split="dev").load()


def test_crlf_folder_parses_identically() -> None:
    assert b"\r\n" in (TINY_CRLF / "corpus.jsonl").read_bytes()
    assert b"\r\n" in (TINY_CRLF / "qrels" / "test.tsv").read_bytes()
    lf, crlf = BeirTask("t", data=str(TINY)).load(), BeirTask("t", data=str(TINY_CRLF)).load()
    assert lf.corpus == crlf.corpus
    assert lf.queries == crlf.queries
    assert lf.qrels == crlf.qrels
    assert lf.provenance["sha256"] != crlf.provenance["sha256"]  # the bytes differ, the data does not


def test_registry_accepts_a_folder_path() -> None:
    task = make_task(str(TINY))
    assert isinstance(task, BeirTask) and task.id == "beir/beir_tiny"
    assert len(task.load().queries) == 3


def test_data_may_point_at_a_root_holding_the_dataset(tmp_path: Path) -> None:
    shutil.copytree(TINY, tmp_path / "cqadupstack" / "android")
    data = BeirTask("cqadupstack/android", data=str(tmp_path / "cqadupstack")).load()
    assert len(data.queries) == 3
    data = BeirTask("cqadupstack/android", data=str(tmp_path / "cqadupstack" / "android")).load()
    assert len(data.corpus) == 5


def test_readers_individually() -> None:
    assert list(read_beir_queries(TINY / "queries.jsonl")) == ["q1", "q2", "q3", "q4", "q5"]
    assert len(read_beir_corpus(TINY / "corpus.jsonl", show_progress=False)) == 5
    assert read_beir_qrels(TINY / "qrels" / "test.tsv")["q1"] == {"d1": 2, "d3": 0}


def test_qrels_without_header_and_integer_ids(tmp_path: Path) -> None:
    ds = _copy(tmp_path)
    (ds / "corpus.jsonl").write_text('{"_id": 10, "title": "t", "text": "x"}\n{"_id": 11, "text": "y"}\n')
    (ds / "queries.jsonl").write_text('{"_id": 1, "text": "q"}\n')
    (ds / "qrels" / "test.tsv").write_text("1\t10\t1\n1\t11\t1.0\n")
    data = BeirTask("x", data=str(ds)).load()
    assert data.qrels == {"1": {"10": 1, "11": 1}} and list(data.corpus) == ["10", "11"]


# --- bad input --------------------------------------------------------------------------------


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    ds = _copy(tmp_path)
    lines = (ds / "corpus.jsonl").read_text().splitlines()
    lines[2] = '{"_id": "d3", "text": "unterminated'
    (ds / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(HarnessError, match=r"corpus\.jsonl:3: malformed JSON"):
        BeirTask("x", data=str(ds)).load()


def test_duplicate_document_id_names_both_lines(tmp_path: Path) -> None:
    ds = _copy(tmp_path)
    with (ds / "corpus.jsonl").open("a") as handle:
        handle.write('{"_id": "d2", "title": "", "text": "again"}\n')
    with pytest.raises(HarnessError, match=r"corpus\.jsonl:6: duplicate document id 'd2' \(first on line 2\)"):
        BeirTask("x", data=str(ds)).load()


def test_duplicate_query_id(tmp_path: Path) -> None:
    ds = _copy(tmp_path)
    with (ds / "queries.jsonl").open("a") as handle:
        handle.write('{"_id": "q1", "text": "again"}\n')
    with pytest.raises(HarnessError, match=r"queries\.jsonl:6: duplicate query id 'q1' \(first on line 1\)"):
        BeirTask("x", data=str(ds)).load()


@pytest.mark.parametrize(
    ("filename", "line", "field"),
    [
        ("corpus.jsonl", '{"title": "t", "text": "no id"}', "_id"),
        ("corpus.jsonl", '{"_id": "d9"}', "text"),
        ("queries.jsonl", '{"text": "no id"}', "_id"),
        ("queries.jsonl", '{"_id": "q9"}', "text"),
    ],
)
def test_missing_required_field(tmp_path: Path, filename: str, line: str, field: str) -> None:
    ds = _copy(tmp_path)
    with (ds / filename).open("a") as handle:
        handle.write(line + "\n")
    with pytest.raises(HarnessError, match=rf"{filename}:6: missing required field '{field}'"):
        BeirTask("x", data=str(ds)).load()


def test_non_string_text_is_an_error(tmp_path: Path) -> None:
    ds = _copy(tmp_path)
    with (ds / "corpus.jsonl").open("a") as handle:
        handle.write('{"_id": "d9", "text": 5}\n')
    with pytest.raises(HarnessError, match=r"corpus\.jsonl:6: field 'text' must be a string"):
        BeirTask("x", data=str(ds)).load()


def test_qrels_naming_unknown_documents(tmp_path: Path) -> None:
    ds = _copy(tmp_path)
    with (ds / "qrels" / "test.tsv").open("a") as handle:
        handle.write("q1\tnope1\t1\nq2\tnope2\t1\nq2\tnope3\t1\nq2\tnope4\t1\n")
    with pytest.raises(
        HarnessError, match=r"test\.tsv:8: 4 documents not in .*corpus\.jsonl: 'nope1', 'nope2', 'nope3' and 1 more"
    ):
        BeirTask("x", data=str(ds)).load()
    data = BeirTask("x", data=str(ds), unknown_ids="drop").load()
    assert data.qrels["q1"] == {"d1": 2} and data.provenance["qrels_dropped_unknown"] == 4


def test_qrels_naming_unknown_queries(tmp_path: Path) -> None:
    ds = _copy(tmp_path)
    with (ds / "qrels" / "test.tsv").open("a") as handle:
        handle.write("q99\td1\t1\n")
    with pytest.raises(HarnessError, match=r"test\.tsv:8: 1 query not in .*queries\.jsonl: 'q99'"):
        BeirTask("x", data=str(ds)).load()


def test_conflicting_duplicate_judgement(tmp_path: Path) -> None:
    ds = _copy(tmp_path)
    with (ds / "qrels" / "test.tsv").open("a") as handle:
        handle.write("q1\td1\t1\n")
    with pytest.raises(HarnessError, match=r"test\.tsv:8: query 'q1' document 'd1' scored 1 here but 2 on line 2"):
        BeirTask("x", data=str(ds)).load()


def test_bad_qrels_rows(tmp_path: Path) -> None:
    ds = _copy(tmp_path)
    (ds / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    with pytest.raises(HarnessError, match=r"test\.tsv:2: field 'score': relevance grade must be an integer, got 'high'"):
        BeirTask("x", data=str(ds)).load()
    (ds / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1 d1 1\n")
    with pytest.raises(HarnessError, match=r"test\.tsv:2: expected 3 tab-separated fields"):
        BeirTask("x", data=str(ds)).load()


def test_empty_corpus(tmp_path: Path) -> None:
    ds = _copy(tmp_path)
    (ds / "corpus.jsonl").write_text("\n")
    with pytest.raises(HarnessError, match=r"corpus\.jsonl: empty corpus"):
        BeirTask("x", data=str(ds)).load()


def test_empty_query_file(tmp_path: Path) -> None:
    ds = _copy(tmp_path)
    (ds / "queries.jsonl").write_text("")
    with pytest.raises(HarnessError, match=r"queries\.jsonl: no queries"):
        BeirTask("x", data=str(ds)).load()


def test_no_query_with_a_relevant_document(tmp_path: Path) -> None:
    ds = _copy(tmp_path)
    (ds / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t0\n")
    with pytest.raises(HarnessError, match=r"test\.tsv: no query has a relevant document .*empty query set"):
        BeirTask("x", data=str(ds)).load()


def test_not_a_beir_folder(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"no corpus\.jsonl found"):
        BeirTask("x", data=str(tmp_path)).load()
    with pytest.raises(HarnessError, match=r"no such folder"):
        BeirTask("x", data=str(tmp_path / "missing")).load()


def test_unknown_names_and_parameters() -> None:
    with pytest.raises(HarnessError, match=r"unknown task 'beir/scifakt'; did you mean 'beir/scifact'"):
        BeirTask("scifakt")
    with pytest.raises(HarnessError, match=r"unknown parameter of task 'beir' 'splt'"):
        BeirTask("scifact", splt="dev")
    with pytest.raises(HarnessError, match=r"needs a dataset name"):
        BeirTask(None)


def test_licensed_dataset_needs_local_data() -> None:
    with pytest.raises(HarnessError, match=r"beir/robust04 is not distributed on the Hugging Face hub.*--data"):
        BeirTask("robust04").load()


def test_hub_failure_is_one_line_when_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # conftest sets HF_HUB_OFFLINE=1: with an empty datasets cache the hub path must fail fast
    # with one line that says what to do (never a traceback, never a network call).
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    start = time.monotonic()
    with pytest.raises(HarnessError) as info:
        BeirTask("scifact").load()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("beir/scifact: cannot load BeIR/scifact from the Hugging Face hub")
    assert "--data DIR" in message
    assert time.monotonic() - start < 30


def test_real_crlf_beir_qrels_match_anserini_trec_qrels(shared_data: Path) -> None:
    from harness.trec import read_trec_qrels

    folder = shared_data / "beir_queries_qrels_only" / "scifact"
    assert b"\r\n" in (folder / "qrels" / "test.tsv").read_bytes()  # stored with CRLF endings
    beir = read_beir_qrels(folder / "qrels" / "test.tsv")
    trec = read_trec_qrels(folder / "anserini" / "qrels.beir-v1.0.0-scifact.test.txt")
    assert beir == trec
    assert len(beir) == 300 and sum(len(v) for v in beir.values()) == 339
    fiqa = read_beir_qrels(shared_data / "beir_queries_qrels_only" / "fiqa" / "qrels" / "test.tsv")
    assert len(fiqa) == 648 and sum(len(v) for v in fiqa.values()) == 1_706


_HUB_README = """---
configs:
- config_name: corpus
  data_files:
  - split: corpus
    path: corpus/corpus-*
- config_name: queries
  data_files:
  - split: queries
    path: queries/queries-*
---
"""


def test_hub_code_path_on_a_local_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The datasets-based loader, run offline on a folder laid out like BeIR/<name> + -qrels."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    repo = tmp_path / "mirror" / "scifact"
    (repo / "corpus").mkdir(parents=True)
    (repo / "queries").mkdir()
    (repo / "README.md").write_text(_HUB_README)
    shutil.copy(TINY / "corpus.jsonl", repo / "corpus" / "corpus-00000.jsonl")
    # the hub's queries carry an empty title column
    (repo / "queries" / "queries-00000.jsonl").write_text(
        "".join(line.rstrip()[:-1] + ', "title": ""}\n' for line in (TINY / "queries.jsonl").read_text().splitlines())
    )
    shutil.copytree(TINY / "qrels", tmp_path / "mirror" / "scifact-qrels")
    hub = BeirTask("scifact", hub_prefix=str(tmp_path / "mirror")).load()
    local = BeirTask("scifact", data=str(TINY)).load()
    assert [q.id for q in hub.queries] == [q.id for q in local.queries]
    assert [q.text for q in hub.queries] == [q.text for q in local.queries]
    assert hub.qrels == local.qrels
    assert {k: (d.title, d.text) for k, d in hub.corpus.items()} == {
        k: (d.title, d.text) for k, d in local.corpus.items()
    }
    prov = hub.provenance
    assert prov["source"] == str(repo) and prov["n_queries"] == 3 and prov["ignore_identical_ids"] is True
    assert set(prov["sha256"]) == {"corpus", "queries", "qrels"} and all(len(h) == 64 for h in prov["sha256"].values())
    assert BeirTask("scifact", hub_prefix=str(tmp_path / "mirror"), split="train").load().qrels == {"q5": {"d5": 1}}
    # a hub-side duplicate id is caught too
    shutil.copytree(tmp_path / "mirror", tmp_path / "mirror2")
    with (tmp_path / "mirror2" / "scifact" / "corpus" / "corpus-00000.jsonl").open("a") as handle:
        handle.write('{"_id": "d1", "title": "", "text": "again"}\n')
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache2")
    with pytest.raises(HarnessError, match=r"scifact\[corpus\] row 5: duplicate document id 'd1'"):
        BeirTask("scifact", hub_prefix=str(tmp_path / "mirror2")).load()
