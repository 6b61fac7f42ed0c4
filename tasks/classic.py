"""The classic test collections Cranfield 1400 and CACM, read from their original files.

Both are corpus tasks (a first-stage retriever searches the whole collection) with metrics
``nDCG@10, R@100, MRR@10, MAP, P@10`` and ``ignore_identical_ids = False`` (query and document
ids live in different spaces).

Where the files are: ``data=`` (``--data``) names the collection folder (or a folder holding
``cranfield/`` / ``cacm/``) in the original format; without it the loader looks for the original
files in ``$HARNESS_SHARED_DATA``, then ``../shared/data`` next to the repository, then
``../shared/data`` from the working directory, and, when none holds them, reads the copy packaged
with the harness (``harness/data/<family>/``, see below), so both tasks run on any machine.

**The packaged copy** (written by ``scripts/convert_classic_data.py`` from the original files
through the readers below, so it holds exactly what they produce): ``docs.jsonl.gz`` (one
``{"id", "title", "text", "meta"}`` object per line, in file order), ``queries.jsonl.gz`` (every
query or topic, judged or not, ``{"id", "text", "meta"}``), ``qrels.txt`` (TREC qrels as the
readers return them: Cranfield gains, CACM ids unpadded) and ``manifest.json`` (the SHA-256 of
the original files, and of the packaged files' contents, checked on every load). A task read
from the packaged copy records the original files' SHA-256 in its provenance, as a task read
from the originals does: the same content has the same hashes either way; only ``source``
(the folder read) differs.

**Cranfield** (``cran.all.1400``, ``cran.qry``, ``cranqrel``):

- Documents ``.I n`` with fields ``.T`` title, ``.A`` authors, ``.B`` bibliography and ``.W``
  abstract. Document ids are the ``.I`` numbers (``"1"`` ... ``"1400"``); ``Document.title`` is
  ``.T``, ``Document.text`` is ``.W`` (which, in this collection, starts by repeating the
  title), authors and bibliography go to ``meta``. Three records of the standard file (240, 576,
  578) have stray field markers after ``.W``; a marker after ``.W`` does not open a new field,
  so its lines stay in the abstract and no text is lost.
- Queries: ``cran.qry`` numbers them with ``.I`` ids 001-365 (not contiguous), but ``cranqrel``
  numbers them 1..225 **in file order**. Query ids are therefore the ordinals ``"1"`` ...
  ``"225"`` (so they match the qrels); the original ``.I`` id is kept in ``Query.meta["orig_id"]``.
- Relevance codes (Cleverdon): 1 = complete answer ... 4 = minimum interest, 5 = no interest,
  ``-1`` = unjudged marker. They become graded gains ``5 - code`` (1->4, 2->3, 3->2, 4->1,
  5->0), and ``-1`` lines are dropped.

**CACM** (``cacm.tar.gz`` of ``CACM-NNNN.html``, ``topics.cacm.txt``, ``qrels.cacm.txt``), as
Anserini packages it:

- Document ids are ``CACM-<n>`` without zero padding, as the qrels write them (the archive's
  file names are padded: ``CACM-0001.html`` is ``CACM-1``); the HTML tags are stripped and entities
  unescaped; ``title`` is the first non-blank line and ``text`` the rest (date, authors, the
  abstract when there is one, and the citation lines), whitespace collapsed.
- 64 topics in the ``<DOC><DOCNO>`` layout; only the 52 topics with relevance judgements
  (TREC qrels, binary) are evaluated.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import io
import json
import logging
import os
import re
import tarfile
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import harness
from harness.errors import HarnessError
from harness.io import atomic_write_bytes, atomic_write_json, read_json, read_text, sha256_file
from harness.trec import read_trec_qrels, read_trec_topics
from harness.types import Document, Qrels, Query, Task, TaskData

log = logging.getLogger(__name__)

CLASSIC_METRICS: tuple[str, ...] = ("nDCG@10", "R@100", "MRR@10", "MAP", "P@10")
_REPO = Path(__file__).resolve().parent.parent
#: Where the packaged copies live: ``harness/data/<family>/`` (package data of the wheel).
PACKAGED_DATA = Path(harness.__file__).resolve().parent / "data"
#: The packaged copy's files: documents, queries and qrels (in the order of ``_ClassicTask.files``).
PACKAGED_FILES: tuple[str, str, str] = ("docs.jsonl.gz", "queries.jsonl.gz", "qrels.txt")
MANIFEST = "manifest.json"
PACKAGED_FORMAT = 1


def shared_data_candidates() -> list[Path]:
    """Where the shared evaluation data may be, in the order searched."""
    places = []
    if os.environ.get("HARNESS_SHARED_DATA"):
        places.append(Path(os.environ["HARNESS_SHARED_DATA"]))
    places += [_REPO.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    return list(dict.fromkeys(places))


def packaged_collection(family: str) -> Path:
    """The folder of the copy of ``family`` packaged with the harness (``harness/data/<family>``)."""
    return PACKAGED_DATA / family


def locate_collection(family: str, data: str | None, required: tuple[str, ...]) -> Path:
    """The folder holding ``required`` files: ``data`` or ``data/<family>``, else the shared data,
    else (no ``data``) the packaged copy, recognised by its ``manifest.json``."""
    if data is not None:
        places = [Path(data), Path(data) / family]
    else:
        places = [root / family for root in shared_data_candidates()]
    for place in places:
        if all((place / name).is_file() for name in required):
            return place
    looked = ", ".join(str(p) for p in places)
    if data is None:
        packaged = packaged_collection(family)
        if (packaged / MANIFEST).is_file():
            return packaged
        looked += f", the packaged copy {packaged}"
    raise HarnessError(
        f"{family}: files {', '.join(required)} not found (looked in {looked}); "
        f"pass --data DIR pointing at them or set HARNESS_SHARED_DATA"
    )


# ---------------------------------------------------------------------------------------------
# Cranfield
# ---------------------------------------------------------------------------------------------

_ID_LINE = re.compile(r"^\.I(?:\s+(\S+))?\s*$")
_FIELD_LINE = re.compile(r"^\.([TABW])\s*$")


def _squash(text: str) -> str:
    return " ".join(text.split())


def _read_smart_records(path: Path) -> list[tuple[int, str, dict[str, list[str]]]]:
    """Split a SMART-format file into ``(line, .I id, {field: lines})`` records.

    Fields come in the order ``.T .A .B .W``; once ``.W`` (the last) has started, further bare
    markers are stray and ignored, so the abstract keeps all its lines.
    """
    records: list[tuple[int, str, dict[str, list[str]]]] = []
    current: dict[str, list[str]] | None = None
    field: str | None = None
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        id_match = _ID_LINE.match(line)
        if id_match:
            if not id_match.group(1):
                raise HarnessError(f"{path}:{number}: '.I' without an id")
            current, field = {}, None
            records.append((number, id_match.group(1), current))
            continue
        field_match = _FIELD_LINE.match(line)
        if field_match:
            if current is None:
                raise HarnessError(f"{path}:{number}: field '.{field_match.group(1)}' before the first '.I'")
            if field != "W":
                field = field_match.group(1)
                current.setdefault(field, [])
            continue
        if not line.strip():
            continue
        if current is None or field is None:
            raise HarnessError(f"{path}:{number}: text before the first field marker")
        current[field].append(line)
    return records


def read_cranfield_docs(path: str | os.PathLike[str]) -> dict[str, Document]:
    """Read ``cran.all.1400`` into ``{id: Document}`` (see the module docstring)."""
    path = Path(path)
    corpus: dict[str, Document] = {}
    lines: dict[str, int] = {}
    for number, raw_id, fields in _read_smart_records(path):
        doc_id = str(int(raw_id)) if raw_id.isdigit() else raw_id
        if doc_id in corpus:
            raise HarnessError(f"{path}:{number}: duplicate document id {doc_id!r} (first on line {lines[doc_id]})")
        if "W" not in fields:
            raise HarnessError(f"{path}:{number}: document {doc_id!r} has no '.W' field")
        corpus[doc_id] = Document(
            id=doc_id,
            text=_squash(" ".join(fields["W"])),
            title=_squash(" ".join(fields.get("T", []))),
            meta={
                "authors": _squash(" ".join(fields.get("A", []))),
                "bibliography": _squash(" ".join(fields.get("B", []))),
            },
        )
        lines[doc_id] = number
    if not corpus:
        raise HarnessError(f"{path}: empty corpus (no '.I' records)")
    return corpus


def read_cranfield_queries(path: str | os.PathLike[str]) -> list[Query]:
    """Read ``cran.qry``: ids are the ordinals 1..N (as ``cranqrel`` uses), ``.I`` in meta."""
    path = Path(path)
    queries: list[Query] = []
    seen: dict[str, int] = {}
    for ordinal, (number, raw_id, fields) in enumerate(_read_smart_records(path), start=1):
        if raw_id in seen:
            raise HarnessError(f"{path}:{number}: duplicate query id {raw_id!r} (first on line {seen[raw_id]})")
        seen[raw_id] = number
        text = _squash(" ".join(fields.get("W", [])))
        if not text:
            raise HarnessError(f"{path}:{number}: query {raw_id!r} has no '.W' text")
        queries.append(Query(id=str(ordinal), text=text, meta={"orig_id": raw_id}))
    if not queries:
        raise HarnessError(f"{path}: no queries")
    return queries


#: Cleverdon's relevance code -> graded gain (-1 lines are dropped).
CRANFIELD_GAIN: dict[int, int] = {1: 4, 2: 3, 3: 2, 4: 1, 5: 0}


def read_cranfield_qrels(path: str | os.PathLike[str]) -> Qrels:
    """Read ``cranqrel`` (``query-ordinal doc code``) into graded qrels (gain = 5 - code)."""
    path = Path(path)
    qrels: Qrels = {}
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3:
            raise HarnessError(f"{path}:{number}: expected 3 fields 'query doc code', got {len(fields)}")
        qid, docid, code_text = fields
        try:
            code = int(code_text)
        except ValueError:
            raise HarnessError(f"{path}:{number}: relevance code must be an integer, got {code_text!r}") from None
        if code == -1:
            continue
        if code not in CRANFIELD_GAIN:
            raise HarnessError(f"{path}:{number}: relevance code {code} is not one of -1, 1, 2, 3, 4, 5")
        judged = qrels.setdefault(str(int(qid)), {})
        docid = str(int(docid))
        gain = CRANFIELD_GAIN[code]
        if docid in judged and judged[docid] != gain:
            raise HarnessError(f"{path}:{number}: query {qid} document {docid} judged twice with different codes")
        judged[docid] = gain
    return qrels


def _check_qrels(
    qrels: Qrels,
    queries: list[Query],
    corpus: dict[str, Document],
    qrels_path: Path,
    queries_path: Path,
    corpus_path: Path,
) -> tuple[list[Query], Qrels]:
    known = {q.id for q in queries}
    bad_q = [q for q in qrels if q not in known]
    if bad_q:
        raise HarnessError(
            f"{qrels_path}: {len(bad_q)} judged queries not in {queries_path}: {', '.join(map(repr, bad_q[:3]))}"
        )
    bad_d = sorted({d for judged in qrels.values() for d in judged if d not in corpus})
    if bad_d:
        raise HarnessError(
            f"{qrels_path}: {len(bad_d)} judged documents not in {corpus_path}: {', '.join(map(repr, bad_d[:3]))}"
        )
    positive = {q: {d: r for d, r in judged.items() if r > 0} for q, judged in qrels.items()}
    positive = {q: judged for q, judged in positive.items() if judged}
    evaluated = [q for q in queries if q.id in positive]
    if not evaluated:
        raise HarnessError(f"{qrels_path}: no query has a relevant document; empty query set")
    return evaluated, {q.id: positive[q.id] for q in evaluated}


# ---------------------------------------------------------------------------------------------
# The packaged copy (harness/data/<family>/)
# ---------------------------------------------------------------------------------------------


def _gzip(data: bytes) -> bytes:
    """Deterministic gzip (no file name, mtime 0): regenerating a file gives the same bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as handle:
        handle.write(data)
    return buffer.getvalue()


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records).encode("utf-8")


def _without_defaults(record: dict[str, Any]) -> dict[str, Any]:
    """Drop ``title: None`` and empty ``meta`` (the dataclass defaults), to keep the files small."""
    return {k: v for k, v in record.items() if not (k == "title" and v is None) and not (k == "meta" and not v)}


def packaged_contents(corpus: dict[str, Document], queries: list[Query], qrels: Qrels) -> dict[str, bytes]:
    """The uncompressed contents of :data:`PACKAGED_FILES` for a collection as the readers return it."""
    docs = [_without_defaults({"id": d.id, "title": d.title, "text": d.text, "meta": dict(d.meta)})
            for d in corpus.values()]
    qs = [_without_defaults({"id": q.id, "text": q.text, "meta": dict(q.meta)}) for q in queries]
    rows = "".join(f"{qid} 0 {docid} {rel}\n" for qid, judged in qrels.items() for docid, rel in judged.items())
    return dict(zip(PACKAGED_FILES, (_jsonl(docs), _jsonl(qs), rows.encode("utf-8")), strict=True))


def write_packaged(
    folder: str | os.PathLike[str],
    family: str,
    originals: dict[str, str],
    corpus: dict[str, Document],
    queries: list[Query],
    qrels: Qrels,
) -> dict[str, Any]:
    """Write the packaged copy of a collection to ``folder``; return its manifest.

    ``originals`` maps the original file names to their SHA-256 (the provenance of the copy).
    """
    folder = Path(folder)
    contents = packaged_contents(corpus, queries, qrels)
    for name, data in contents.items():
        atomic_write_bytes(folder / name, _gzip(data) if name.endswith(".gz") else data)
    manifest = {
        "collection": family,
        "format": PACKAGED_FORMAT,
        "converter": "scripts/convert_classic_data.py",
        "originals_sha256": dict(originals),
        "contents_sha256": {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()},
        "counts": {"docs": len(corpus), "queries": len(queries),
                   "qrels": sum(len(judged) for judged in qrels.values())},
    }
    atomic_write_json(folder / MANIFEST, manifest)
    for name in (*contents, MANIFEST):
        (folder / name).chmod(0o644)  # package data: readable by everyone (the temporary file was 0600)
    return manifest


def _packaged_bytes(path: Path, expected: str | None) -> bytes:
    """A packaged file's contents (gunzipped), checked against the manifest's SHA-256."""
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except FileNotFoundError:
        raise HarnessError(f"{path}: file not found (the packaged copy is incomplete)") from None
    except (OSError, EOFError) as exc:
        raise HarnessError(f"{path}: cannot read ({exc})") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise HarnessError(
            f"{path}: contents differ from its manifest's SHA-256; regenerate the packaged copy with "
            "scripts/convert_classic_data.py"
        )
    return data


def _packaged_records(path: Path, expected: str | None) -> list[dict[str, Any]]:
    records = []
    # split on "\n" only: JSON escapes it inside strings, but not U+2028 or U+0085 (str.splitlines would)
    for number, line in enumerate(_packaged_bytes(path, expected).decode("utf-8").split("\n"), start=1):
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str) or "text" not in record:
            raise HarnessError(f"{path}:{number}: expected an object with 'id' and 'text'")
        records.append(record)
    return records


def read_packaged(folder: str | os.PathLike[str]) -> tuple[dict[str, Document], list[Query], Qrels, dict[str, str]]:
    """Read a packaged copy: ``(corpus, queries, qrels, SHA-256 of the original files)``."""
    folder = Path(folder)
    manifest = read_json(folder / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != PACKAGED_FORMAT:
        raise HarnessError(f"{folder / MANIFEST}: not a format-{PACKAGED_FORMAT} manifest of a packaged collection")
    hashes = manifest.get("contents_sha256") or {}
    docs_file, queries_file, qrels_file = (folder / name for name in PACKAGED_FILES)
    corpus: dict[str, Document] = {}
    for r in _packaged_records(docs_file, hashes.get(docs_file.name)):
        corpus[r["id"]] = Document(id=r["id"], text=r["text"], title=r.get("title"), meta=r.get("meta", {}))
    queries = [Query(id=r["id"], text=r["text"], meta=r.get("meta", {}))
               for r in _packaged_records(queries_file, hashes.get(queries_file.name))]
    _packaged_bytes(qrels_file, hashes.get(qrels_file.name))
    qrels = read_trec_qrels(qrels_file)
    return corpus, queries, qrels, dict(manifest.get("originals_sha256") or {})


# ---------------------------------------------------------------------------------------------
# The tasks
# ---------------------------------------------------------------------------------------------


class _ClassicTask(Task):
    metrics: ClassVar[tuple[str, ...]] = CLASSIC_METRICS
    #: The original files: documents, queries and qrels, in that order.
    files: ClassVar[tuple[str, ...]]
    #: How relevance was derived (recorded in the provenance).
    relevance: ClassVar[str]

    @classmethod
    def variant_note(cls, provenance: Mapping[str, Any]) -> str | None:
        """The packaged copy and the original files are the official collection (same sha256)."""
        return None

    def __init__(self, name: str | None = None, data: str | None = None, **params: Any) -> None:
        super().__init__(name=name, data=data, **params)
        if name:
            raise HarnessError(f"task {self.family!r} has no sub-datasets; got {self.family}/{name}")

    @abstractmethod
    def read_originals(self, folder: Path) -> tuple[dict[str, Document], list[Query], Qrels]:
        """``(corpus, every query, qrels)`` from the original files in ``folder``."""

    def load(self) -> TaskData:
        folder = locate_collection(self.family, self.data, self.files)
        if all((folder / name).is_file() for name in self.files):
            corpus, queries, qrels = self.read_originals(folder)
            paths = tuple(folder / name for name in self.files)
            originals = {name: sha256_file(folder / name) for name in self.files}
        else:
            corpus, queries, qrels, recorded = read_packaged(folder)
            paths = tuple(folder / name for name in PACKAGED_FILES)
            if set(recorded) != set(self.files):
                raise HarnessError(f"{folder / MANIFEST}: originals_sha256 must name {', '.join(self.files)}")
            originals = {name: recorded[name] for name in self.files}
        return self._task_data(folder, paths, originals, queries, qrels, corpus)

    def _extra(self, queries: list[Query]) -> dict[str, Any]:
        """Task-specific provenance after the common fields."""
        return {"relevance": self.relevance}

    def _task_data(
        self,
        folder: Path,
        paths: tuple[Path, ...],
        originals: dict[str, str],
        queries: list[Query],
        qrels: Qrels,
        corpus: dict[str, Document],
    ) -> TaskData:
        """The judged ``queries`` (checked against ``corpus``) as a task, with provenance;
        ``paths`` are the documents, queries and qrels files read (for error messages) and
        ``originals`` the SHA-256 of the original files."""
        docs_path, queries_path, qrels_path = paths
        evaluated, judged = _check_qrels(qrels, queries, corpus, qrels_path, queries_path, docs_path)
        log.info("%s: %d documents, %d of %d queries judged", self.family, len(corpus), len(evaluated), len(queries))
        provenance = {
            "source": str(folder.resolve()),
            "revision": None,
            "sha256": originals,
            "split": "test",
            "n_queries": len(evaluated),
            "n_docs": len(corpus),
            "ignore_identical_ids": False,
            **self._extra(queries),
        }
        return TaskData(
            queries=evaluated,
            qrels=judged,
            corpus=corpus,
            metrics=self.metrics,
            ignore_identical_ids=False,
            provenance=provenance,
        )


class CranfieldTask(_ClassicTask):
    """``cranfield``: Cranfield 1400 (1,400 abstracts, 225 judged queries, graded qrels)."""

    family: ClassVar[str] = "cranfield"
    files: ClassVar[tuple[str, ...]] = ("cran.all.1400", "cran.qry", "cranqrel")
    relevance: ClassVar[str] = (
        "gain = 5 - Cleverdon code (1->4 ... 4->1); code -1 dropped; query ids = ordinals in cran.qry"
    )

    def read_originals(self, folder: Path) -> tuple[dict[str, Document], list[Query], Qrels]:
        return (
            read_cranfield_docs(folder / "cran.all.1400"),
            read_cranfield_queries(folder / "cran.qry"),
            read_cranfield_qrels(folder / "cranqrel"),
        )


_TAGS = re.compile(r"<[^>]*>")
_CACM_ID = re.compile(r"^CACM-0*(\d+)$")


def cacm_doc_id(raw: str) -> str:
    """``CACM-0115`` (archive file name) and ``CACM-115`` (qrels) -> ``CACM-115``."""
    match = _CACM_ID.match(raw)
    return f"CACM-{match.group(1)}" if match else raw


def _add_cacm_doc(corpus: dict[str, Document], path: Path, name: str, data: bytes) -> None:
    doc_id = cacm_doc_id(Path(name).stem)
    if doc_id in corpus:
        raise HarnessError(f"{path}: duplicate document {name}")
    raw = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    lines = [line.strip() for line in html.unescape(_TAGS.sub(" ", raw)).split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        raise HarnessError(f"{path}: {name} holds no text")
    corpus[doc_id] = Document(id=doc_id, title=_squash(lines[0]), text=_squash(" ".join(lines[1:])))


def read_cacm_docs(path: str | os.PathLike[str]) -> dict[str, Document]:
    """Read the ``CACM-NNNN.html`` members of ``cacm.tar.gz`` (see the module docstring)."""
    path = Path(path)
    corpus: dict[str, Document] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(".html"):
                    handle = archive.extractfile(member)
                    assert handle is not None
                    _add_cacm_doc(corpus, path, member.name, handle.read())
    except FileNotFoundError:
        raise HarnessError(f"{path}: file not found") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise HarnessError(f"{path}: not a readable tar archive ({exc})") from None
    if not corpus:
        raise HarnessError(f"{path}: empty corpus (no .html members)")
    return corpus


class CacmTask(_ClassicTask):
    """``cacm``: CACM (3,204 documents, 64 topics of which 52 are judged, binary qrels)."""

    family: ClassVar[str] = "cacm"
    files: ClassVar[tuple[str, ...]] = ("cacm.tar.gz", "topics.cacm.txt", "qrels.cacm.txt")
    relevance: ClassVar[str] = "binary TREC qrels; unjudged topics skipped"

    def read_originals(self, folder: Path) -> tuple[dict[str, Document], list[Query], Qrels]:
        corpus = read_cacm_docs(folder / "cacm.tar.gz")
        topics = read_trec_topics(folder / "topics.cacm.txt")
        queries = [Query(id=qid, text=text) for qid, text in topics.items()]
        qrels = {
            q: {cacm_doc_id(d): rel for d, rel in judged.items()}
            for q, judged in read_trec_qrels(folder / "qrels.cacm.txt").items()
        }
        return corpus, queries, qrels

    def _extra(self, queries: list[Query]) -> dict[str, Any]:
        return {"n_topics": len(queries), "relevance": self.relevance}
