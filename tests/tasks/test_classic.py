"""Cranfield and CACM: the real collections (counts from SOURCES.md), tiny fixtures, bad input."""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.registry import make_task
from harness.tasks.classic import (
    CacmTask,
    CranfieldTask,
    cacm_doc_id,
    read_cacm_docs,
    read_cranfield_docs,
    read_cranfield_qrels,
    read_cranfield_queries,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# Hand-written records in Cranfield's format; stored under neutral names and laid out as a
# Cranfield folder (cran.all.1400, cran.qry, cranqrel) at import.
_CRAN_SOURCE = FIXTURES / "cranfield_tiny"
CRAN_TINY = Path(tempfile.mkdtemp(prefix="cranfield-tiny-"))
for _src, _dst in (("docs.txt", "cran.all.1400"), ("queries.txt", "cran.qry"), ("qrels.txt", "cranqrel")):
    shutil.copyfile(_CRAN_SOURCE / _src, CRAN_TINY / _dst)


# --- Cranfield ---------------------------------------------------------------------------------


def test_cranfield_tiny_fixture() -> None:
    assert b"\r\n" in (CRAN_TINY / "cran.qry").read_bytes()
    data = CranfieldTask(data=str(CRAN_TINY)).load()
    assert list(data.corpus) == ["1", "2", "3"]
    assert data.corpus["1"].title == "flow past a flat plate ."
    assert data.corpus["1"].text == "flow past a flat plate . the boundary layer over a flat plate is studied ."
    assert data.corpus["1"].meta == {"authors": "smith,j.", "bibliography": "j. ae. scs. 1, 1950, 1."}
    # stray markers after .W keep their lines in the abstract
    assert data.corpus["2"].text.endswith(
        "a stray author marker inside the abstract . keeps its lines in the abstract ."
    )
    assert data.corpus["2"].meta["authors"] == "doe,j."
    assert data.corpus["3"].text == ""
    # query ids are ordinals (as cranqrel numbers them); the .I ids go to meta
    assert [(q.id, q.meta["orig_id"]) for q in data.queries] == [("1", "001"), ("2", "004")]
    assert data.queries[0].text == "what is the boundary layer over a flat plate ."
    # gain = 5 - code; -1 dropped
    assert data.qrels == {"1": {"1": 4, "2": 1}, "2": {"2": 3}}
    assert data.ignore_identical_ids is False
    assert data.metrics == ("nDCG@10", "R@100", "MRR@10", "MAP", "P@10")


def test_cranfield_real(shared_data: Path) -> None:
    data = make_task("cranfield", data=str(shared_data)).load()
    assert len(data.corpus) == 1400 and len(data.queries) == 225  # SOURCES.md: all 225 judged
    assert data.queries[0].meta["orig_id"] == "001" and data.queries[-1].meta["orig_id"] == "365"
    gains = Counter(g for judged in data.qrels.values() for g in judged.values())
    # cranqrel codes: 1 x128, 2 x387, 3 x734, 4 x363, -1 x225 (1,837 lines)
    assert gains == Counter({4: 128, 3: 387, 2: 734, 1: 363})
    assert sum(gains.values()) + 225 == 1837
    prov = data.provenance
    assert (prov["n_queries"], prov["n_docs"]) == (225, 1400)
    assert set(prov["sha256"]) == {"cran.all.1400", "cran.qry", "cranqrel"}
    # doc 240 has stray .A/.B markers after .W: its abstract keeps the lines after them
    assert "application to turbulent separations" in data.corpus["240"].text
    assert data.corpus["240"].meta["authors"] == "dean r. chapman"


def test_cranfield_finds_shared_data_from_the_environment(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_SHARED_DATA", str(shared_data))
    assert CranfieldTask().load().provenance["source"] == str((shared_data / "cranfield").resolve())


def test_missing_collection_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(
        HarnessError,
        match=r"cranfield: files cran\.all\.1400, cran\.qry, cranqrel not found \(looked in .*\); pass --data DIR",
    ):
        CranfieldTask(data=str(tmp_path)).load()
    # the default search: $HARNESS_SHARED_DATA, ../shared/data beside the repo, ../shared/data from the cwd,
    # then the packaged copy (made absent here; tests/tasks/test_classic_packaged.py reads it)
    import harness.tasks.classic

    monkeypatch.setenv("HARNESS_SHARED_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(harness.tasks.classic, "_REPO", tmp_path / "a" / "repo")
    monkeypatch.setattr(harness.tasks.classic, "PACKAGED_DATA", tmp_path / "no-package")
    (tmp_path / "b" / "cwd").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "b" / "cwd")
    with pytest.raises(HarnessError) as info:
        CacmTask().load()
    message = str(info.value)
    expected = [
        tmp_path / "env" / "cacm",
        tmp_path / "a" / "shared" / "data" / "cacm",
        tmp_path / "b" / "shared" / "data" / "cacm",
    ]
    packaged = tmp_path / "no-package" / "cacm"
    assert f"(looked in {', '.join(map(str, expected))}, the packaged copy {packaged})" in message
    assert "\n" not in message
    # and the cwd-relative place is used when it holds the files
    shutil.copytree(CRAN_TINY, tmp_path / "b" / "shared" / "data" / "cranfield")
    assert len(CranfieldTask().load().corpus) == 3


def test_cranfield_bad_input(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    shutil.copytree(CRAN_TINY, folder)
    (folder / "cranqrel").write_text("1 1 1\n1 9 2\n")
    with pytest.raises(HarnessError, match=r"cranqrel: 1 judged documents not in .*cran\.all\.1400: '9'"):
        CranfieldTask(data=str(folder)).load()
    (folder / "cranqrel").write_text("3 1 1\n")
    with pytest.raises(HarnessError, match=r"cranqrel: 1 judged queries not in .*cran\.qry: '3'"):
        CranfieldTask(data=str(folder)).load()
    (folder / "cranqrel").write_text("1 1 7\n")
    with pytest.raises(HarnessError, match=r"cranqrel:1: relevance code 7 is not one of"):
        read_cranfield_qrels(folder / "cranqrel")
    (folder / "cranqrel").write_text("1 1\n")
    with pytest.raises(HarnessError, match=r"cranqrel:1: expected 3 fields"):
        read_cranfield_qrels(folder / "cranqrel")
    (folder / "cranqrel").write_text("1 1 -1\n")
    with pytest.raises(HarnessError, match=r"no query has a relevant document; empty query set"):
        CranfieldTask(data=str(folder)).load()
    docs = folder / "cran.all.1400"
    docs.write_text(docs.read_text() + ".I 2\n.T\ndup\n.W\nagain\n")
    with pytest.raises(HarnessError, match=r"cran\.all\.1400:31: duplicate document id '2' \(first on line 12\)"):
        read_cranfield_docs(docs)
    docs.write_text("stray text\n.I 1\n.W\nx\n")
    with pytest.raises(HarnessError, match=r"cran\.all\.1400:1: text before the first field marker"):
        read_cranfield_docs(docs)
    docs.write_text("")
    with pytest.raises(HarnessError, match=r"empty corpus"):
        read_cranfield_docs(docs)
    (folder / "cran.qry").write_text(".I 001\n.W\n\n")
    with pytest.raises(HarnessError, match=r"cran\.qry:1: query '001' has no '\.W' text"):
        read_cranfield_queries(folder / "cran.qry")


def test_classic_tasks_take_no_name_or_parameters() -> None:
    with pytest.raises(HarnessError, match=r"no sub-datasets"):
        CranfieldTask(name="x")
    with pytest.raises(HarnessError, match=r"unknown parameter of task .cacm. .split."):
        CacmTask(split="dev")


# --- CACM --------------------------------------------------------------------------------------


def _tiny_cacm(folder: Path, docs: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "cacm.tar.gz", "w:gz") as archive:
        for name, body in docs.items():
            data = body.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (folder / "topics.cacm.txt").write_text(
        "<DOC>\n<DOCNO> 1 </DOCNO>\n\n sorting algorithms\n</DOC>\n<DOC>\n<DOCNO> 2 </DOCNO>\n unjudged topic\n</DOC>\n"
    )
    (folder / "qrels.cacm.txt").write_text("1 Q0 CACM-2 1\n1 Q0 CACM-0010 1\n")


def test_cacm_tiny(tmp_path: Path) -> None:
    _tiny_cacm(
        tmp_path,
        {
            "CACM-0002.html": (
                "<html>\n<pre>\n\n\nQuicksort &amp; Friends\n\nCACM July, 1961\n\nHoare, C. A. R.\n</pre>\n</html>\n"
            ),
            "CACM-0010.html": "<html>\n<pre>\n\nA Sorting Network\n\nCACM 1962\n</pre>\n</html>\n",
        },
    )
    data = CacmTask(data=str(tmp_path)).load()
    assert list(data.corpus) == ["CACM-2", "CACM-10"]
    assert data.corpus["CACM-2"].title == "Quicksort & Friends"
    assert data.corpus["CACM-2"].text == "CACM July, 1961 Hoare, C. A. R."
    assert [q.id for q in data.queries] == ["1"] and data.queries[0].text == "sorting algorithms"
    assert data.qrels == {"1": {"CACM-2": 1, "CACM-10": 1}}  # padded and unpadded ids agree
    assert data.provenance["n_topics"] == 2 and data.provenance["n_queries"] == 1


def test_cacm_id_normalisation() -> None:
    assert cacm_doc_id("CACM-0115") == cacm_doc_id("CACM-115") == "CACM-115"
    assert cacm_doc_id("other") == "other"


def test_cacm_bad_input(tmp_path: Path) -> None:
    _tiny_cacm(tmp_path, {"CACM-0002.html": "<html><pre>T\n</pre></html>", "CACM-0003.html": "<html>\n</html>"})
    with pytest.raises(HarnessError, match=r"cacm\.tar\.gz: CACM-0003\.html holds no text"):
        read_cacm_docs(tmp_path / "cacm.tar.gz")
    _tiny_cacm(tmp_path, {"CACM-0002.html": "<html><pre>T\n</pre></html>"})
    with pytest.raises(HarnessError, match=r"qrels\.cacm\.txt: 1 judged documents not in .*: 'CACM-10'"):
        CacmTask(data=str(tmp_path)).load()
    (tmp_path / "cacm.tar.gz").write_bytes(b"garbage")
    with pytest.raises(HarnessError, match=r"cacm\.tar\.gz: not a readable tar archive"):
        read_cacm_docs(tmp_path / "cacm.tar.gz")


def test_cacm_real(shared_data: Path) -> None:
    data = CacmTask(data=str(shared_data / "cacm")).load()
    assert len(data.corpus) == 3204 and len(data.queries) == 52  # SOURCES.md
    assert sum(len(judged) for judged in data.qrels.values()) == 796
    assert data.provenance["n_topics"] == 64
    doc = data.corpus["CACM-1410"]
    assert doc.title == "Interarrival Statistics for Time Sharing Systems"
    assert doc.text.startswith("The optimization of time-shared system performance")
    assert all(d.title for d in data.corpus.values())
