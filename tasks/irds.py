"""``irds:<id>``: any dataset of the ``ir_datasets`` package with docs, queries and qrels, as a corpus task.

``harness run --task irds:beir/scifact/test``, ``irds:cranfield``,
``irds:msmarco-passage/trec-dl-2019/judged``: the id after ``irds:`` is an ``ir_datasets`` id
(https://ir-datasets.com), loaded with ``ir_datasets.load(id)`` (``docs_iter``, ``queries_iter``,
``qrels_iter``). ``ir_datasets`` is an optional extra: ``pip install 'retrieval-harness[irds]'``.

Conversions, pinned and recorded in the provenance:

- **Documents**: ``text`` (or else ``body``) is the text and ``title``, when the record has one,
  the title (so ``beir/*`` documents are exactly what a BEIR folder gives); a record with neither
  uses its ``default_text()`` (which ``ir_datasets`` builds from the fields it documents, title
  included) and no title.
- **Queries**: ``text``, else ``default_text()``, else ``title`` (TREC topics); the other scalar
  fields (description, narrative, ...) go to ``Query.meta``.
- **Relevance**: as ``ir_datasets`` gives it, with BEIR's convention (:func:`harness.tasks.beir.assemble`):
  judgements <= 0 are dropped and queries left without a relevant document are not evaluated.
  Grades are not remapped: ``irds:cranfield`` keeps ``ir_datasets``' reading of ``cranqrel``
  (4 = complete answer), which is the reverse of the Cleverdon codes that ``--task cranfield``
  converts (1 = complete answer), so the two do not score alike.
- ``ignore_identical_ids`` (a document whose id equals the query id is not ranked): on for
  ``beir/*`` ids, as BEIR evaluates, off otherwise (MS MARCO's numeric query and passage ids
  overlap); ``--task-set ignore_identical_ids=...`` overrides it.
- Provenance: ``source`` ``irds:<id>``, the ``ir_datasets`` version and a SHA-256 over the
  records read (documents, queries, qrels, each in ``ir_datasets``' order).

``ir_datasets`` downloads a dataset's files on first use into ``$IR_DATASETS_HOME`` (default
``~/.ir_datasets``). When that fails (no network) the task fails with one line naming the id and
where the files belong; ``--data DIR`` instead reads a local BEIR folder (``corpus.jsonl``,
``queries.jsonl``, ``qrels/<split>.tsv``) under the same task id, without ``ir_datasets``.

>>> from typing import NamedTuple
>>> class Doc(NamedTuple):
...     doc_id: str
...     title: str
...     body: str
>>> document_of(Doc("d1", "Wings", "Lift and drag."), "irds:x")
Document(id='d1', text='Lift and drag.', title='Wings', meta={})
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError, unknown_name
from harness.io import parse_grade
from harness.params import as_bool
from harness.progress import progress
from harness.tasks.beir import BeirTask, QrelRow, assemble
from harness.types import Document, Query, Task, TaskData

log = logging.getLogger(__name__)

INSTALL_HINT = "ir_datasets is not installed; pip install 'retrieval-harness[irds]' (or pip install ir_datasets) to use irds: tasks"
#: ir_datasets' messages that a failure's one line already covers: its downloader's per-attempt
#: errors and its step bookkeeping. They go to this module's log at INFO (``harness -v 2``); the rest
#: of its messages (data-use agreements, where to put files it cannot download) pass unchanged.
_CHATTER = ("download error", "Download failed", "[starting]", "[finished]", "[error]")


def import_irds() -> Any:
    """The ``ir_datasets`` module, or the one-line install hint."""
    try:
        import ir_datasets
    except ImportError:
        raise HarnessError(INSTALL_HINT) from None
    return ir_datasets


def document_of(doc: Any, task_id: str) -> Document:
    """An ``ir_datasets`` document record as a :class:`Document` (see the module docstring)."""
    title = getattr(doc, "title", None)
    title = title if isinstance(title, str) else None
    for name in ("text", "body"):
        value = getattr(doc, name, None)
        if isinstance(value, str):
            return Document(id=str(doc.doc_id), text=value, title=title)
    if callable(getattr(doc, "default_text", None)):
        return Document(id=str(doc.doc_id), text=str(doc.default_text()))
    fields = ", ".join(getattr(doc, "_fields", ()))
    raise HarnessError(f"{task_id}: documents of type {type(doc).__name__} ({fields}) have no text, body "
                       "or default_text(); this adapter cannot read them")


def query_of(query: Any, task_id: str) -> Query:
    """An ``ir_datasets`` query record as a :class:`Query` (see the module docstring)."""
    record = query._asdict() if hasattr(query, "_asdict") else {}
    if isinstance(getattr(query, "text", None), str):
        used, text = "text", query.text
    elif callable(getattr(query, "default_text", None)):
        used, text = None, str(query.default_text())
    elif isinstance(getattr(query, "title", None), str):
        used, text = "title", query.title
    else:
        fields = ", ".join(record)
        raise HarnessError(f"{task_id}: queries of type {type(query).__name__} ({fields}) have no text, "
                           "default_text() or title; this adapter cannot read them")
    meta = {k: v for k, v in record.items()
            if k not in ("query_id", used) and isinstance(v, (str, int, float, bool))}
    return Query(id=str(query.query_id), text=text, meta=meta)


def _record_hasher() -> tuple[Any, Any]:
    digest = hashlib.sha256()

    def update(record: Any) -> None:
        row = record._asdict() if hasattr(record, "_asdict") else record
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")

    return digest, update


class _Chatter(logging.Filter):
    """Moves ir_datasets' :data:`_CHATTER` to this module's log (INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(_CHATTER):
            log.info("ir_datasets: %s", message)
            return False
        return True


def _is_download_failure(exc: BaseException) -> bool:
    """An error of ir_datasets getting a file: an OSError, or its "All download sources failed"."""
    return isinstance(exc, OSError) or bool(exc.args and exc.args[0] == "All download sources failed")


def _failure(exc: BaseException) -> str:
    """What failed, in a few words: the URL or file ir_datasets could not get, and why."""
    if isinstance(exc, RuntimeError) and len(exc.args) > 1 and isinstance(exc.args[1], list):
        parts = [_one_failure(getattr(source, "url", None), error) for source, error in exc.args[1]]
        return "; ".join(parts[:2])
    return _one_failure(None, exc)


def _one_failure(url: str | None, exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename or exc} not found"
    url = url or getattr(getattr(exc, "request", None), "url", None)
    detail = (str(exc).strip().splitlines() or [""])[0]
    if url:
        return f"cannot download {url} ({type(exc).__name__})"
    return f"{type(exc).__name__}: {detail[:160]}" if detail else type(exc).__name__


class IrdsTask(Task):
    """``irds:<ir_datasets id>``: an ``ir_datasets`` dataset as a corpus task.

    Parameters (besides ``name``, the ir_datasets id, and ``data``):
        ignore_identical_ids: drop a document whose id equals the query id from the ranking
            (default: on for ``beir/*`` ids, off otherwise).
        unknown_ids: ``"error"`` (default) or ``"drop"`` for qrels naming unknown queries or documents.
        show_progress: a progress bar while reading the documents.
        split: with ``--data``, the BEIR folder's qrels split (default ``test``).

    Example::

        data = IrdsTask("beir/scifact/test").load()
        data.provenance["source"], data.provenance["ir_datasets_version"]
    """

    family: ClassVar[str] = "irds"
    parameters: ClassVar[frozenset[str]] = frozenset({"ignore_identical_ids", "unknown_ids", "show_progress", "split"})

    @classmethod
    def variant_note(cls, provenance: Mapping[str, Any]) -> str | None:
        """The data ``ir_datasets`` provides is the dataset the id names; a ``--data`` folder is a variant."""
        if str(provenance.get("source") or "").startswith("irds:"):
            return None
        return super().variant_note(provenance)

    def __init__(self, name: str | None = None, data: str | None = None, **params: Any) -> None:
        super().__init__(name=name, data=data, **params)
        if not name:
            raise HarnessError("task 'irds' needs an ir_datasets id, e.g. irds:beir/scifact/test or irds:cranfield "
                               "(the ids are listed at https://ir-datasets.com)")
        default = name.startswith("beir/")
        value = params.get("ignore_identical_ids", default)
        self.ignore_identical_ids = as_bool(value, f"task {self.id}: ignore_identical_ids must be true or false, "
                                                   f"got {value!r}")
        if data is None:
            self._dataset()  # a misspelt id or a missing package fails here, before any work

    @property
    def id(self) -> str:
        return f"{self.family}:{self.name}" if self.name else self.family

    def _dataset(self) -> Any:
        irds = import_irds()
        assert self.name is not None
        try:
            dataset = irds.load(self.name)
        except KeyError:
            raise unknown_name("task", self.id, [f"irds:{n}" for n in irds.registry]) from None
        missing = [part for part in ("docs", "queries", "qrels") if not getattr(dataset, f"has_{part}")()]
        if missing:
            children = [f"irds:{n}" for n in irds.registry if n.startswith(f"{self.name}/")][:3]
            hint = f"; try {', '.join(children)}" if children else ""
            raise HarnessError(f"task {self.id}: ir_datasets has no {' or '.join(missing)} for {self.name!r} "
                               f"(a corpus task needs docs, queries and qrels){hint}")
        return dataset

    @contextmanager
    def _fetching(self, irds: Any, what: str) -> Iterator[None]:
        """Turn ir_datasets' failure to get its files into one line naming the id and where they belong."""
        logger, chatter = logging.getLogger("ir_datasets"), _Chatter()
        logger.addFilter(chatter)
        try:
            yield
        except HarnessError:
            raise
        except (OSError, RuntimeError) as exc:  # requests' errors and HashVerificationError are OSErrors
            if not _is_download_failure(exc):
                raise
            home = Path(irds.util.home_path())
            raise HarnessError(
                f"task {self.id}: ir_datasets cannot get the {what} of {self.name!r} ({_failure(exc)}); without a "
                f"network its files belong under {home / self.name.split('/')[0]}/ (ir_datasets' cache: "
                f"$IR_DATASETS_HOME, default ~/.ir_datasets), or pass --data DIR with a BEIR folder"
            ) from None
        finally:
            logger.removeFilter(chatter)

    def _read(self, irds: Any, dataset: Any) -> tuple[dict[str, Document], dict[str, Query], list[QrelRow], dict]:
        corpus: dict[str, Document] = {}
        queries: dict[str, Query] = {}
        rows: list[QrelRow] = []
        hashes = {part: _record_hasher() for part in ("docs", "queries", "qrels")}
        with self._fetching(irds, "documents"):
            try:
                total = dataset.docs_count()
            except Exception:  # noqa: BLE001 - a count is only for the progress bar
                total = None
            docs = progress(dataset.docs_iter(), total=total, desc="documents", unit="docs",
                            show=self.params.get("show_progress"))
            for doc in docs:
                document = document_of(doc, self.id)
                if document.id in corpus:
                    raise HarnessError(f"task {self.id}: duplicate document id {document.id!r}")
                hashes["docs"][1](doc)
                corpus[document.id] = document
        with self._fetching(irds, "queries"):
            for record in dataset.queries_iter():
                query = query_of(record, self.id)
                if query.id in queries:
                    raise HarnessError(f"task {self.id}: duplicate query id {query.id!r}")
                hashes["queries"][1](record)
                queries[query.id] = query
        with self._fetching(irds, "qrels"):
            for number, qrel in enumerate(dataset.qrels_iter(), 1):
                hashes["qrels"][1](qrel)
                rel = parse_grade(qrel.relevance, f"task {self.id}: qrels record {number}")
                rows.append(QrelRow(str(qrel.query_id), str(qrel.doc_id), rel, number))
        return corpus, queries, rows, {part: digest.hexdigest() for part, (digest, _) in hashes.items()}

    def load(self) -> TaskData:
        if self.data is not None:
            return self._load_beir_folder()
        irds = import_irds()
        corpus, queries, rows, sha256 = self._read(irds, self._dataset())
        evaluated, qrels, counts = assemble(
            corpus, queries, rows,
            corpus_source=f"{self.id} docs", queries_source=f"{self.id} queries", qrels_source=f"{self.id} qrels",
            unknown_ids=self.params.get("unknown_ids", "error"),
        )
        provenance = {
            "source": self.id,
            "revision": None,
            "irds_id": self.name,
            "ir_datasets_version": getattr(irds, "__version__", None),
            "sha256": sha256,
            "n_queries": len(evaluated),
            "n_docs": len(corpus),
            "ignore_identical_ids": self.ignore_identical_ids,
            "relevance": "ir_datasets grades; score > 0 relevant, non-positive qrels dropped, unjudged queries skipped",
            "text": "documents: text or body (+ title), else default_text(); queries: text, else default_text(), "
                    "else title",
            **counts,
        }
        log.info("%s: %d documents, %d judged queries", self.id, len(corpus), len(evaluated))
        return TaskData(queries=evaluated, qrels=qrels, corpus=corpus, metrics=self.metrics,
                        ignore_identical_ids=self.ignore_identical_ids, provenance=provenance)

    def _load_beir_folder(self) -> TaskData:
        """``--data DIR``: a local BEIR folder under this task's id (read as ``--task DIR`` reads it)."""
        params = {k: v for k, v in self.params.items() if k in ("split", "unknown_ids", "show_progress")}
        data = BeirTask(name=self.name, data=self.data, **params).load()
        data.ignore_identical_ids = self.ignore_identical_ids
        data.provenance.update({"irds_id": self.name, "ignore_identical_ids": self.ignore_identical_ids})
        return data

