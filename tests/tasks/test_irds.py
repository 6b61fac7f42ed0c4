"""``irds:<id>``: ir_datasets datasets as corpus tasks (tasks/irds.py).

No network: the datasets run here are registered with ir_datasets from local files. Tests that
need ir_datasets skip when it is not installed (``pip install 'retrieval-harness[irds]'``); the
install hint, the id routing, the text conversions and ``--data`` are tested without it.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.registry import make_task, split_task_id, task_class_of, task_variant_note
from harness.tasks.irds import INSTALL_HINT, IrdsTask, document_of, query_of
from tests.harness.conftest import write_beir


def _have_irds() -> bool:
    try:  # find_spec, not import: importing ir_datasets creates folders under its home
        return importlib.util.find_spec("ir_datasets") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["ir_datasets"] is None
        return False


HAVE_IRDS = _have_irds()
needs_irds = pytest.mark.skipif(
    not HAVE_IRDS, reason="ir_datasets is not installed (pip install 'retrieval-harness[irds]' to run these)"
)
_ids = itertools.count()


class TitledDoc(NamedTuple):
    doc_id: str
    title: str
    text: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["--no-progress", *args])
    return code, capsys.readouterr().err


def register_beir_copy(beir: Path, folder: Path, ir_datasets: Any) -> str:
    """Register the BEIR folder ``beir``'s data with ir_datasets as TSV docs (id, title, text),
    TSV queries and TREC qrels written under ``folder``; returns the new ir_datasets id."""
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries
    from ir_datasets.util import LocalDownload

    folder.mkdir(parents=True, exist_ok=True)
    docs = [json.loads(line) for line in (beir / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line) for line in (beir / "queries.jsonl").read_text().splitlines()]
    qrels = [line.split("\t") for line in (beir / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    (folder / "docs.tsv").write_text("".join(f"{d['_id']}\t{d['title']}\t{d['text']}\n" for d in docs))
    (folder / "queries.tsv").write_text("".join(f"{q['_id']}\t{q['text']}\n" for q in queries))
    (folder / "qrels.txt").write_text("".join(f"{q} 0 {d} {r}\n" for q, d, r in qrels))
    dataset = Dataset(
        TsvDocs(LocalDownload(folder / "docs.tsv"), doc_cls=TitledDoc),
        TsvQueries(LocalDownload(folder / "queries.tsv")),
        TrecQrels(LocalDownload(folder / "qrels.txt"), {}),
    )
    name = f"harness-test/tiny-{next(_ids)}"  # ir_datasets' registry refuses a name twice per process
    ir_datasets.registry.register(name, dataset)
    return name


@pytest.fixture
def ir_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    if not HAVE_IRDS:
        pytest.skip("ir_datasets is not installed (pip install 'retrieval-harness[irds]' to run this)")
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "irds-home"))
    import ir_datasets

    return ir_datasets


# -- without ir_datasets ------------------------------------------------------------------------


def test_task_ids_route_to_the_irds_family() -> None:
    assert split_task_id("irds:beir/scifact/test") == ("irds", "beir/scifact/test")
    assert split_task_id("irds:cranfield") == ("irds", "cranfield")
    assert split_task_id("beir/scifact") == ("beir", "scifact")
    assert task_class_of("irds:msmarco-passage/trec-dl-2019/judged") is IrdsTask
    assert task_variant_note("irds:cranfield", {"source": "irds:cranfield"}) is None
    # module:Class references still resolve (not taken for a family because of the ":")
    with pytest.raises(HarnessError, match="needs a dataset name"):
        make_task("harness.tasks.beir:BeirTask")


def test_missing_ir_datasets_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ir_datasets", None)  # import ir_datasets -> ImportError
    with pytest.raises(HarnessError) as err:
        make_task("irds:cranfield")
    assert str(err.value) == INSTALL_HINT and "pip install 'retrieval-harness[irds]'" in INSTALL_HINT
    code, stderr = run_cli(capsys, "run", "--task", "irds:cranfield", "--retriever", "bm25")
    assert code == 2 and stderr.strip().splitlines() == [f"error: {INSTALL_HINT}"]


def test_an_id_is_required() -> None:
    for task_id in ("irds", "irds:"):
        with pytest.raises(HarnessError, match="needs an ir_datasets id, e.g. irds:beir/scifact/test"):
            make_task(task_id)


def test_data_reads_a_beir_folder_without_ir_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ir_datasets", None)
    beir = write_beir(tmp_path / "toy")
    task = make_task("irds:beir/toy/test", data=str(beir))
    data = task.load()
    assert task.id == "irds:beir/toy/test" and data.ignore_identical_ids  # beir/* ids: BEIR's convention
    assert data.provenance["irds_id"] == "beir/toy/test" and data.provenance["source"] == str(beir.resolve())
    assert IrdsTask.variant_note(data.provenance) == "local data toy"
    assert len(data.corpus or {}) == 40 and data.queries


def test_document_text_fields() -> None:
    class BodyDoc(NamedTuple):
        doc_id: str
        title: str
        body: str

    class AbstractDoc(NamedTuple):
        doc_id: str
        title: str
        abstract: str

        def default_text(self) -> str:
            return f"{self.title} {self.abstract}"

    class UrlDoc(NamedTuple):
        doc_id: str
        url: str

    doc = document_of(TitledDoc("d1", "T", "x y"), "irds:t")
    assert (doc.id, doc.title, doc.text) == ("d1", "T", "x y")
    doc = document_of(BodyDoc("d2", "Wings", "lift"), "irds:t")
    assert (doc.title, doc.text) == ("Wings", "lift")
    doc = document_of(AbstractDoc("d3", "Wings", "lift"), "irds:t")
    assert (doc.title, doc.text) == (None, "Wings lift")  # default_text() holds the title already
    with pytest.raises(HarnessError, match=r"irds:t: documents of type UrlDoc \(doc_id, url\) have no text"):
        document_of(UrlDoc("d4", "http://x"), "irds:t")


def test_query_text_fields() -> None:
    class Topic(NamedTuple):
        query_id: str
        title: str
        description: str

        def default_text(self) -> str:
            return self.title

    class TitleOnly(NamedTuple):
        query_id: str
        title: str

    class Nothing(NamedTuple):
        query_id: str
        number: int

    class Plain(NamedTuple):
        query_id: str
        text: str

    query = query_of(Topic("7", "wing lift", "Find documents on lift."), "irds:t")
    assert (query.id, query.text, dict(query.meta)) == ("7", "wing lift", {"title": "wing lift",
                                                                           "description": "Find documents on lift."})
    assert query_of(TitleOnly("8", "drag"), "irds:t").text == "drag"
    assert query_of(Plain("9", "boundary layer"), "irds:t").meta == {}
    with pytest.raises(HarnessError, match="queries of type Nothing"):
        query_of(Nothing("10", 3), "irds:t")


# -- with ir_datasets ---------------------------------------------------------------------------


@needs_irds
def test_run_matches_the_same_data_as_a_beir_folder(ir_datasets, tmp_path: Path, capsys) -> None:
    beir = write_beir(tmp_path / "toy")
    name = register_beir_copy(beir, tmp_path / "irds-files", ir_datasets)
    irds_out, beir_out = tmp_path / "irds.json", tmp_path / "beir.json"
    code, stderr = run_cli(capsys, "run", "--task", f"irds:{name}", "--retriever", "bm25", "--output", str(irds_out))
    assert code == 0, stderr
    code, stderr = run_cli(capsys, "run", "--task", str(beir), "--retriever", "bm25", "--output", str(beir_out))
    assert code == 0, stderr
    irds_result, beir_result = json.loads(irds_out.read_text()), json.loads(beir_out.read_text())
    irds_ndcg = {q: m["nDCG@10"] for q, m in irds_result["per_query"].items()}
    beir_ndcg = {q: m["nDCG@10"] for q, m in beir_result["per_query"].items()}
    assert len(irds_ndcg) == 15 and irds_ndcg == beir_ndcg
    task = irds_result["task"]
    assert task["id"] == f"irds:{name}" and task["source"] == f"irds:{name}"
    extra = {**task, **task.get("extra", {})}
    assert extra["irds_id"] == name and extra["ir_datasets_version"] == ir_datasets.__version__
    assert set(extra["sha256"]) == {"docs", "queries", "qrels"}
    assert code == 0 and main(["validate", str(irds_out)]) == 0


@needs_irds
def test_load_conventions_and_stable_sha256(ir_datasets, tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "toy", n_docs_per_topic=3, n_queries_per_topic=1)
    qrels = beir / "qrels" / "test.tsv"
    # a grade-0 judgement is dropped, and a query judged only 0 is not evaluated
    qrels.write_text(qrels.read_text() + "q-aero-0\tbio-0\t0\nq-extra\taero-0\t0\n")
    (beir / "queries.jsonl").write_text((beir / "queries.jsonl").read_text() + '{"_id": "q-extra", "text": "x"}\n')
    name = register_beir_copy(beir, tmp_path / "irds-files", ir_datasets)
    first, second = IrdsTask(name).load(), IrdsTask(name).load()
    assert "q-extra" not in {q.id for q in first.queries} and "bio-0" not in first.qrels["q-aero-0"]
    assert first.provenance["qrels_dropped_nonpositive"] == 2
    assert first.ignore_identical_ids is False and first.provenance["ignore_identical_ids"] is False
    assert first.corpus is not None and first.corpus["aero-0"].title == "aero study 0"
    assert first.provenance["sha256"] == second.provenance["sha256"]
    assert IrdsTask(name, ignore_identical_ids="true").load().ignore_identical_ids is True


@needs_irds
def test_misspelt_id_is_one_line_with_suggestions(ir_datasets, capsys) -> None:
    code, stderr = run_cli(capsys, "run", "--task", "irds:cranfeld", "--retriever", "bm25")
    assert code == 2
    assert stderr.strip().splitlines() == [stderr.strip()]
    assert "unknown task 'irds:cranfeld'; did you mean 'irds:cranfield'" in stderr


@needs_irds
def test_an_id_without_qrels_names_subsets(ir_datasets) -> None:
    with pytest.raises(HarnessError, match=r"no queries or qrels for 'msmarco-passage'.*try irds:msmarco-passage/"):
        make_task("irds:msmarco-passage")


@needs_irds
def test_download_failure_is_one_line_naming_id_and_place(ir_datasets, tmp_path: Path, capsys) -> None:
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries
    from ir_datasets.util import Download, LocalDownload, RequestsDownload

    (tmp_path / "q.tsv").write_text("q1\twing\n")
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\n")
    unreachable = Download([RequestsDownload("http://127.0.0.1:9/docs.tsv", tries=1)])
    name = f"harness-test/offline-{next(_ids)}"
    ir_datasets.registry.register(name, Dataset(
        TsvDocs(unreachable), TsvQueries(LocalDownload(tmp_path / "q.tsv")), TrecQrels(LocalDownload(tmp_path / "qrels.txt"), {})
    ))
    code, stderr = run_cli(capsys, "run", "--task", f"irds:{name}", "--retriever", "bm25",
                           "--output", str(tmp_path / "x.json"))
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, lines  # ir_datasets' retry warnings are not shown
    home = ir_datasets.util.home_path()
    assert lines[0].startswith(f"error: task irds:{name}: ir_datasets cannot get the documents of {name!r}")
    assert "cannot download http://127.0.0.1:9/docs.tsv" in lines[0]
    assert f"belong under {home / 'harness-test'}/" in lines[0]
    assert "$IR_DATASETS_HOME" in lines[0] and "--data DIR with a BEIR folder" in lines[0]
