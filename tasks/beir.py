"""BEIR tasks: ``beir/<name>`` from the Hugging Face hub or from a local BEIR folder.

Local layout (the BEIR zip files)::

    corpus.jsonl        {"_id": "d1", "title": "...", "text": "..."}   one per line
    queries.jsonl       {"_id": "q1", "text": "..."}
    qrels/test.tsv      query-id<TAB>corpus-id<TAB>score, with that header line

On the hub the same data is ``BeIR/<name>`` (configs ``corpus`` and ``queries``) plus
``BeIR/<name>-qrels`` (one split per qrels file), loaded with :mod:`datasets` and cached by it.

Conventions, pinned for every BEIR task and recorded in the provenance:

- **Relevance**: qrels entries with score <= 0 are dropped (as Pyserini's BEIR qrels do), and
  only queries left with at least one relevant document are evaluated (the paper skips
  queries without qrels). ``queries.jsonl`` holds the queries of every split, so queries absent
  from the split's qrels are simply not part of the task.
- ``ignore_identical_ids = True``: ``beir.EvaluateRetrieval``'s default, which the paper's
  numbers use (a document whose id equals the query id is removed from the run).
- Qrels naming a query missing from ``queries.jsonl`` or a document missing from
  ``corpus.jsonl`` are an error naming the file, line and the first offending ids (pass
  ``unknown_ids="drop"`` to drop them with a warning instead).
- Query order is the order of ``queries.jsonl`` (the hub's row order), which is the "file
  order" that :func:`harness.sampling.sample_queries` indexes.

The paper's re-ranking protocol (docs/PROTOCOL.md §4.1) is applied by the runner from the class
attributes :attr:`BeirTask.default_depth` (BM25 top-200), :attr:`BeirTask.default_truncate_words`
(400 space-split words per document), :attr:`BeirTask.default_max_queries` (512) and
:attr:`BeirTask.default_seed` (42); LM re-rankers see the candidates in reversed order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError, unknown_name
from harness.hub import require_hub
from harness.io import iter_jsonl, parse_grade, read_text, sha256_file
from harness.progress import progress
from harness.types import Document, Qrels, Query, Task, TaskData

log = logging.getLogger(__name__)

#: The eleven BEIR datasets of the paper's Table 2.
PAPER_DATASETS: tuple[str, ...] = (
    "trec-covid",
    "nfcorpus",
    "scifact",
    "robust04",
    "dbpedia-entity",
    "fiqa",
    "trec-news",
    "scidocs",
    "fever",
    "climate-fever",
    "nq",
)
#: The CQADupStack forums, each its own task ``beir/cqadupstack/<forum>``.
CQADUPSTACK_FORUMS: tuple[str, ...] = (
    "android",
    "english",
    "gaming",
    "gis",
    "mathematica",
    "physics",
    "programmers",
    "stats",
    "tex",
    "unix",
    "webmasters",
    "wordpress",
)
#: The rest of BEIR.
OTHER_DATASETS: tuple[str, ...] = (
    "msmarco",
    "hotpotqa",
    "arguana",
    "webis-touche2020",
    "quora",
    "signal1m",
    "bioasq",
    *(f"cqadupstack/{forum}" for forum in CQADUPSTACK_FORUMS),
)
#: Datasets BEIR cannot redistribute: they need ``--data`` pointing at a local BEIR folder.
NOT_ON_HUB: frozenset[str] = frozenset({"robust04", "trec-news", "signal1m", "bioasq"})
#: Datasets whose evaluation split is not ``test``.
DEFAULT_SPLIT: dict[str, str] = {"msmarco": "dev"}


@dataclass
class QrelRow:
    qid: str
    docid: str
    rel: int
    line: int


def _as_id(value: Any, where: str, field: str) -> str:
    if value is None or isinstance(value, (dict, list, bool)):
        raise HarnessError(f"{where}: field {field!r} must be a string or integer, got {json.dumps(value)}")
    text = str(value)
    if not text.strip():
        raise HarnessError(f"{where}: field {field!r} is empty")
    return text


def _as_text(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise HarnessError(f"{where}: field {field!r} must be a string, got {json.dumps(value)[:40]}")
    return value


def _new_line_id(obj: dict[str, Any], where: str, kind: str, lines: dict[str, int]) -> str:
    """The ``_id`` of a JSONL record that must hold ``_id`` and ``text``; ``lines`` maps the ids
    seen so far to their line, so a duplicate names both lines."""
    for required in ("_id", "text"):
        if required not in obj:
            raise HarnessError(f"{where}: missing required field {required!r}")
    record_id = _as_id(obj["_id"], where, "_id")
    if record_id in lines:
        raise HarnessError(f"{where}: duplicate {kind} id {record_id!r} (first on line {lines[record_id]})")
    return record_id


def _new_row_id(row: dict[str, Any], where: str, kind: str, seen: Mapping[str, Any]) -> str:
    """The ``_id`` of a Hub dataset row, which must be set and not among ``seen``."""
    if row.get("_id") is None:
        raise HarnessError(f"{where}: missing required field '_id'")
    record_id = _as_id(row["_id"], where, "_id")
    if record_id in seen:
        raise HarnessError(f"{where}: duplicate {kind} id {record_id!r}")
    return record_id


# ---------------------------------------------------------------------------------------------
# Local BEIR files
# ---------------------------------------------------------------------------------------------


def read_beir_corpus(path: str | os.PathLike[str], show_progress: bool | None = None) -> dict[str, Document]:
    """Read ``corpus.jsonl`` into ``{id: Document}`` in file order.

    ``_id`` and ``text`` are required; ``title`` is optional (kept as given, ``""`` included;
    ``None`` when absent); other fields go to ``Document.meta``. A duplicate ``_id`` is an error
    naming both lines.
    """
    corpus: dict[str, Document] = {}
    lines: dict[str, int] = {}
    for number, obj in progress(iter_jsonl(path), desc="corpus", unit="rows", show=show_progress):
        where = f"{path}:{number}"
        doc_id = _new_line_id(obj, where, "document", lines)
        title = obj.get("title")
        meta = {k: v for k, v in obj.items() if k not in ("_id", "title", "text")}
        corpus[doc_id] = Document(
            id=doc_id,
            text=_as_text(obj["text"], where, "text"),
            title=None if title is None else _as_text(title, where, "title"),
            meta=meta,
        )
        lines[doc_id] = number
    return corpus


def read_beir_queries(path: str | os.PathLike[str]) -> dict[str, Query]:
    """Read ``queries.jsonl`` into ``{id: Query}`` in file order (``_id`` and ``text`` required)."""
    queries: dict[str, Query] = {}
    lines: dict[str, int] = {}
    for number, obj in iter_jsonl(path):
        where = f"{path}:{number}"
        qid = _new_line_id(obj, where, "query", lines)
        meta = {k: v for k, v in obj.items() if k not in ("_id", "text")}
        queries[qid] = Query(id=qid, text=_as_text(obj["text"], where, "text"), meta=meta)
        lines[qid] = number
    return queries


_HEADER_NAMES = (
    {"query-id", "query_id", "queryid", "qid", "query"},
    {"corpus-id", "corpus_id", "corpusid", "doc-id", "doc_id", "docid", "document-id", "document"},
    {"score", "relevance", "rel", "label", "grade"},
)


def _is_qrels_header(*fields: str) -> bool:
    """True when the three fields are column names (``query-id corpus-id score`` and spellings)."""
    return all(field.lower() in names for field, names in zip(fields, _HEADER_NAMES))


def _read_qrels_rows(path: str | os.PathLike[str]) -> list[QrelRow]:
    rows: list[QrelRow] = []
    first = True
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        is_first, first = first, False
        fields = line.split("\t")
        if len(fields) != 3:
            raise HarnessError(
                f"{path}:{number}: expected 3 tab-separated fields 'query-id corpus-id score', got {len(fields)}"
            )
        qid, docid, score = (f.strip() for f in fields)
        if is_first and _is_qrels_header(qid, docid, score):
            continue  # the header line ``query-id<TAB>corpus-id<TAB>score``, recognised by its names
        if not qid or not docid:
            raise HarnessError(f"{path}:{number}: empty {'query-id' if not qid else 'corpus-id'}")
        rows.append(QrelRow(qid, docid, parse_grade(score, f"{path}:{number}: field 'score'"), number))
    return rows


def read_beir_qrels(path: str | os.PathLike[str]) -> Qrels:
    """Read a BEIR ``qrels/<split>.tsv`` (header optional) into ``{qid: {docid: score}}``.

    All scores are kept, zeros included; :class:`BeirTask` drops the non-positive ones.
    """
    return _rows_to_qrels(_read_qrels_rows(path), str(path))


def _rows_to_qrels(rows: Iterable[QrelRow], source: str) -> Qrels:
    qrels: Qrels = {}
    first: dict[tuple[str, str], int] = {}
    for row in rows:
        judged = qrels.setdefault(row.qid, {})
        if row.docid in judged and judged[row.docid] != row.rel:
            raise HarnessError(
                f"{source}:{row.line}: query {row.qid!r} document {row.docid!r} scored {row.rel} here "
                f"but {judged[row.docid]} on line {first[(row.qid, row.docid)]}"
            )
        judged[row.docid] = row.rel
        first.setdefault((row.qid, row.docid), row.line)
    return qrels


def _examples(ids: list[str], limit: int = 3) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def assemble(
    corpus: Mapping[str, Document],
    queries: Mapping[str, Query],
    rows: list[QrelRow],
    *,
    corpus_source: str,
    queries_source: str,
    qrels_source: str,
    unknown_ids: str = "error",
) -> tuple[list[Query], Qrels, dict[str, int]]:
    """Check qrels against queries and corpus, drop non-positive judgements and unjudged queries.

    Returns the evaluated queries (in ``queries`` order), the positive qrels, and counts for the
    provenance (``qrels_dropped_nonpositive``, ``qrels_dropped_unknown``).
    """
    if unknown_ids not in ("error", "drop"):
        raise HarnessError(f"unknown_ids must be 'error' or 'drop', got {unknown_ids!r}")
    if not corpus:
        raise HarnessError(f"{corpus_source}: empty corpus (no documents)")
    if not queries:
        raise HarnessError(f"{queries_source}: no queries")
    if not rows:
        raise HarnessError(f"{qrels_source}: no relevance judgements")
    bad_queries = [r for r in rows if r.qid not in queries]
    bad_docs = [r for r in rows if r.docid not in corpus]
    for bad, what, source in ((bad_queries, "quer", queries_source), (bad_docs, "document", corpus_source)):
        if not bad:
            continue
        ids = list(dict.fromkeys(r.qid if what == "quer" else r.docid for r in bad))
        noun = (
            ("query" if len(ids) == 1 else "queries")
            if what == "quer"
            else ("document" if len(ids) == 1 else "documents")
        )
        message = f"{qrels_source}:{bad[0].line}: {len(ids)} {noun} not in {source}: {_examples(ids)}"
        if unknown_ids == "error":
            raise HarnessError(message)
        log.warning("%s; dropping %d judgements", message, len(bad))
    dropped_unknown = len({id(r) for r in bad_queries + bad_docs})
    kept = [r for r in rows if r.qid in queries and r.docid in corpus]
    full = _rows_to_qrels(kept, qrels_source)
    qrels: Qrels = {}
    nonpositive = 0
    for qid, judged in full.items():
        positive = {d: rel for d, rel in judged.items() if rel > 0}
        nonpositive += len(judged) - len(positive)
        if positive:
            qrels[qid] = positive
    evaluated = [q for qid, q in queries.items() if qid in qrels]
    if not evaluated:
        raise HarnessError(f"{qrels_source}: no query has a relevant document (score > 0); empty query set")
    qrels = {q.id: qrels[q.id] for q in evaluated}
    return evaluated, qrels, {"qrels_dropped_nonpositive": nonpositive, "qrels_dropped_unknown": dropped_unknown}


def find_beir_dir(data: str | os.PathLike[str], name: str | None = None) -> Path:
    """The folder holding ``corpus.jsonl``: ``data`` itself, or ``data/<name>`` (e.g. a BEIR
    datasets root, or the ``cqadupstack`` folder for ``cqadupstack/<forum>``)."""
    root = Path(data)
    if not root.exists():
        raise HarnessError(f"{root}: no such folder")
    if not root.is_dir():
        raise HarnessError(f"{root}: not a folder; a BEIR dataset is a folder with corpus.jsonl, queries.jsonl, qrels/")
    candidates = [root]
    if name:
        candidates += [root / name, root / name.split("/")[-1]]
    for candidate in candidates:
        if (candidate / "corpus.jsonl").is_file():
            return candidate
    raise HarnessError(
        f"{root}: no corpus.jsonl found (a BEIR folder holds corpus.jsonl, queries.jsonl, qrels/<split>.tsv)"
    )


# ---------------------------------------------------------------------------------------------
# Hugging Face hub
# ---------------------------------------------------------------------------------------------


def _hub_ids(name: str, prefix: str = "BeIR") -> tuple[str, str, str | None]:
    """(corpus repo, qrels repo, data sub-folder) for a dataset name.

    ``prefix`` is the hub organisation, or a local folder mirroring the hub repositories
    (``<prefix>/<name>`` and ``<prefix>/<name>-qrels``).
    """
    if name.startswith("cqadupstack/"):
        return f"{prefix}/cqadupstack", f"{prefix}/cqadupstack-qrels", name.split("/", 1)[1]
    return f"{prefix}/{name}", f"{prefix}/{name}-qrels", None


def _hub_error(name: str, what: str, exc: Exception) -> HarnessError:
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return HarnessError(
        f"beir/{name}: cannot load {what} from the Hugging Face hub ({type(exc).__name__}: {detail}); "
        "check the network or pass --data DIR with a local BEIR folder"
    )


def _iter_rows(dataset: Any, show_progress: bool | None, desc: str) -> Iterator[dict[str, Any]]:
    batches = dataset.iter(batch_size=10_000)
    total = (len(dataset) + 9_999) // 10_000
    for batch in progress(batches, total=total, desc=desc, unit="rows", show=show_progress):
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys)):
            yield dict(zip(keys, values))


def _row_hasher() -> tuple[Any, Any]:
    digest = hashlib.sha256()

    def update(row: Mapping[str, Any]) -> None:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")

    return digest, update


def load_from_hub(
    name: str,
    split: str,
    revision: str | None = None,
    qrels_revision: str | None = None,
    show_progress: bool | None = None,
    hub_prefix: str = "BeIR",
) -> tuple[dict[str, Document], dict[str, Query], list[QrelRow], dict[str, Any]]:
    """Load corpus, queries and qrels rows of ``beir/<name>`` with :func:`datasets.load_dataset`.

    Returns the three parts and a provenance fragment (repos, revisions, content sha256 of each
    part computed over its rows). CQADupStack forums are read as ``<forum>/...`` data files of
    ``BeIR/cqadupstack`` and ``BeIR/cqadupstack-qrels``.
    """
    if name in NOT_ON_HUB and hub_prefix == "BeIR":
        raise HarnessError(
            f"beir/{name} is not distributed on the Hugging Face hub (licensed data); "
            "build its BEIR folder yourself and pass --data DIR"
        )
    corpus_repo, qrels_repo, forum = _hub_ids(name, hub_prefix)
    if not Path(hub_prefix).is_dir():
        require_hub(f"task beir/{name}", f"{corpus_repo} and {qrels_repo}",
                    "pass --data DIR with a local BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    import datasets

    try:
        if forum is None:
            corpus_ds = datasets.load_dataset(corpus_repo, "corpus", split="corpus", revision=revision)
            queries_ds = datasets.load_dataset(corpus_repo, "queries", split="queries", revision=revision)
        else:
            files = {"corpus": f"{forum}/corpus.jsonl.gz", "queries": f"{forum}/queries.jsonl.gz"}
            corpus_ds = datasets.load_dataset(corpus_repo, data_files=files, split="corpus", revision=revision)
            queries_ds = datasets.load_dataset(corpus_repo, data_files=files, split="queries", revision=revision)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; the user needs one line
        raise _hub_error(name, corpus_repo, exc) from None
    local = Path(hub_prefix).is_dir()
    try:
        if forum is None:
            qrels_ds = datasets.load_dataset(qrels_repo, split=split, revision=qrels_revision)
        else:
            qrels_ds = datasets.load_dataset(
                qrels_repo,
                data_files={split: f"{forum}/{split}.tsv"},
                split=split,
                delimiter="\t",
                revision=qrels_revision,
            )
    except Exception as exc:  # noqa: BLE001
        raise _hub_error(name, f"{qrels_repo} split {split!r}", exc) from None

    corpus: dict[str, Document] = {}
    corpus_digest, corpus_update = _row_hasher()
    for index, row in enumerate(_iter_rows(corpus_ds, show_progress, "corpus")):
        doc_id = _new_row_id(row, f"{corpus_repo}[corpus] row {index}", "document", corpus)
        corpus_update(row)
        corpus[doc_id] = Document(id=doc_id, text=row.get("text") or "", title=row.get("title"))
    queries: dict[str, Query] = {}
    queries_digest, queries_update = _row_hasher()
    for index, row in enumerate(_iter_rows(queries_ds, False, "queries")):
        where = f"{corpus_repo}[queries] row {index}"
        qid = _new_row_id(row, where, "query", queries)
        queries_update(row)
        queries[qid] = Query(id=qid, text=_as_text(row.get("text"), where, "text"))
    rows: list[QrelRow] = []
    qrels_digest, qrels_update = _row_hasher()
    for index, row in enumerate(_iter_rows(qrels_ds, False, "qrels")):
        where = f"{qrels_repo}[{split}] row {index}"
        for required in ("query-id", "corpus-id", "score"):
            if row.get(required) is None:
                raise HarnessError(f"{where}: missing required field {required!r}")
        qrels_update(row)
        rows.append(
            QrelRow(
                _as_id(row["query-id"], where, "query-id"),
                _as_id(row["corpus-id"], where, "corpus-id"),
                parse_grade(row["score"], f"{where}: field 'score'"),
                index,
            )
        )
    provenance = {
        "source": ("" if local else "hf:") + corpus_repo + (f"/{forum}" if forum else ""),
        "qrels_source": ("" if local else "hf:") + qrels_repo,
        "revision": {"corpus": revision or "main", "qrels": qrels_revision or "main"},
        "fingerprint": {
            "corpus": getattr(corpus_ds, "_fingerprint", None),
            "queries": getattr(queries_ds, "_fingerprint", None),
            "qrels": getattr(qrels_ds, "_fingerprint", None),
        },
        "sha256": {
            "corpus": corpus_digest.hexdigest(),
            "queries": queries_digest.hexdigest(),
            "qrels": qrels_digest.hexdigest(),
        },
    }
    return corpus, queries, rows, provenance


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------


class BeirTask(Task):
    """``beir/<name>``: a BEIR dataset as a corpus task.

    Parameters (besides ``name`` and ``data``):
        split: qrels split (default ``test``; ``dev`` for msmarco).
        revision, qrels_revision: hub revisions (commit, tag or branch) to pin.
        unknown_ids: ``"error"`` (default) or ``"drop"`` for qrels naming unknown ids.
        show_progress: progress bars while reading (default: on unless ``DISABLE_TQDM=1``).
        hub_prefix: hub organisation (default ``BeIR``) or a local folder mirroring its repos.

    Example::

        data = BeirTask("scifact", data="~/beir/scifact").load()
        data.corpus["4983"].title, len(data.queries), data.ignore_identical_ids
    """

    family: ClassVar[str] = "beir"
    names: ClassVar[tuple[str, ...]] = PAPER_DATASETS + OTHER_DATASETS
    metrics: ClassVar[tuple[str, ...]] = ("nDCG@10", "nDCG@5", "R@100", "MRR@10", "MAP")
    #: The paper's first stage: BM25 top-200 (docs/PROTOCOL.md §4.1).
    default_depth: ClassVar[int] = 200
    #: Each candidate keeps its first 400 space-split words.
    default_truncate_words: ClassVar[int] = 400
    #: Files with more queries are sampled down to 512 ...
    default_max_queries: ClassVar[int] = 512
    #: ... with NumPy's legacy RNG seeded 42 (see :func:`harness.sampling.sample_queries`).
    default_seed: ClassVar[int] = 42
    #: beir.EvaluateRetrieval's default, pinned for every BEIR task.
    ignore_identical_ids: ClassVar[bool] = True

    parameters: ClassVar[frozenset[str]] = frozenset(
        {"split", "revision", "qrels_revision", "unknown_ids", "show_progress", "hub_prefix"}
    )

    def __init__(self, name: str | None = None, data: str | None = None, **params: Any) -> None:
        super().__init__(name=name, data=data, **params)
        if not name and data is None:
            raise HarnessError("task 'beir' needs a dataset name, e.g. beir/scifact (see `harness list tasks`)")
        if data is None and name not in self.names:
            raise unknown_name("task", f"beir/{name}", [f"beir/{n}" for n in self.names])
        self.split: str = params.get("split") or DEFAULT_SPLIT.get(name or "", "test")

    def load(self) -> TaskData:
        show = self.params.get("show_progress")
        unknown_ids = self.params.get("unknown_ids", "error")
        if self.data is not None:
            folder = find_beir_dir(self.data, self.name)
            corpus_path, queries_path = folder / "corpus.jsonl", folder / "queries.jsonl"
            qrels_path = folder / "qrels" / f"{self.split}.tsv"
            if not qrels_path.is_file():
                present = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
                raise HarnessError(
                    f"{qrels_path}: file not found (split {self.split!r}; present: {', '.join(present) or 'none'})"
                )
            corpus = read_beir_corpus(corpus_path, show_progress=show)
            queries = read_beir_queries(queries_path)
            rows = _read_qrels_rows(qrels_path)
            sources = (str(corpus_path), str(queries_path), str(qrels_path))
            provenance: dict[str, Any] = {
                "source": str(folder.resolve()),
                "revision": None,
                "sha256": {
                    "corpus.jsonl": sha256_file(corpus_path),
                    "queries.jsonl": sha256_file(queries_path),
                    f"qrels/{self.split}.tsv": sha256_file(qrels_path),
                },
            }
        else:
            assert self.name is not None
            prefix = self.params.get("hub_prefix") or "BeIR"
            corpus, queries, rows, provenance = load_from_hub(
                self.name, self.split, self.params.get("revision"), self.params.get("qrels_revision"), show, prefix
            )
            corpus_repo, qrels_repo, _ = _hub_ids(self.name, prefix)
            sources = (f"{corpus_repo}[corpus]", f"{corpus_repo}[queries]", f"{qrels_repo}[{self.split}] row")
        evaluated, qrels, counts = assemble(
            corpus,
            queries,
            rows,
            corpus_source=sources[0],
            queries_source=sources[1],
            qrels_source=sources[2],
            unknown_ids=unknown_ids,
        )
        provenance.update(
            {
                "split": self.split,
                "n_queries": len(evaluated),
                "n_docs": len(corpus),
                "ignore_identical_ids": True,
                "relevance": "score > 0; non-positive qrels dropped, unjudged queries skipped",
                **counts,
            }
        )
        log.info("%s: %d documents, %d judged queries (split %s)", self.id, len(corpus), len(evaluated), self.split)
        return TaskData(
            queries=evaluated,
            qrels=qrels,
            corpus=dict(corpus),
            metrics=self.metrics,
            ignore_identical_ids=True,
            provenance=provenance,
        )
