"""First-stage runs, cached on disk and reused.

A first-stage run (BM25 or dense top-k over a whole corpus) is the expensive, deterministic part
of a re-ranking experiment. :func:`cached_search` stores it under
``harness.io.cache_dir("first_stage")`` in a file named by the SHA-256 of

* the corpus content (:func:`corpus_sha256`: ids, titles and texts),
* the queries (ids and texts, in order),
* the retriever's ``meta`` (name, model, revision, parameters), and
* the depth ``k``,

so any change to one of them computes a new run, and the same request is answered from disk
("cache hit" in the log). Files are written atomically; an unreadable or mismatching cache file
is ignored (logged) and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.io import atomic_write_json, cache_dir, seal, sha256_json
from harness.types import Document, Query, Retriever, Run

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def corpus_sha256(corpus: Mapping[str, Document]) -> str:
    """SHA-256 of a corpus's content, independent of the dict's order.

    Each document contributes the canonical JSON ``[id, title, text]``, one per line, in doc-id
    order. ``Document.meta`` is not part of it (retrievers index ``title`` and ``text`` only).
    """
    digest = hashlib.sha256()
    for doc_id in sorted(corpus):
        doc = corpus[doc_id]
        digest.update(json.dumps([doc_id, doc.title, doc.text], ensure_ascii=False, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def cache_key(retriever: Retriever, corpus_hash: str, queries: Sequence[Query], k: int) -> str:
    """The cache file's key for this (corpus, queries, retriever, depth)."""
    return sha256_json(
        {
            "format": CACHE_FORMAT,
            "corpus": corpus_hash,
            "queries": [[q.id, q.text] for q in queries],
            "retriever": retriever.meta,
            "k": k,
        }
    )


def cache_path(key: str) -> Path:
    return cache_dir("first_stage") / f"{key}.json"


def _load(path: Path, key: str, query_ids: list[str]) -> Run | None:
    try:
        stored: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        log.warning("first-stage cache %s is unreadable (%s); recomputing", path, exc)
        return None
    try:
        if stored["key"] != key:
            raise ValueError("key mismatch")
        if stored.get("sha256") != seal(key, stored["run"]):
            raise ValueError("checksum mismatch: the entry was edited or is incomplete")
        run = {str(qid): {str(doc): float(score) for doc, score in ranking} for qid, ranking in stored["run"]}
        if list(run) != query_ids:
            raise ValueError("query mismatch")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("first-stage cache %s does not match its request (%s); recomputing", path, exc)
        return None
    return run


def cached_search(
    retriever: Retriever,
    corpus: dict[str, Document],
    queries: list[Query],
    k: int,
    *,
    corpus_hash: str | None = None,
) -> Run:
    """``retriever.search(corpus, queries, k)``, answered from the on-disk cache when possible.

    ``corpus_hash`` skips hashing the corpus when the caller already knows it (it must be
    :func:`corpus_sha256` of ``corpus``). The returned run has one entry per query, in query
    order, each ranking in the retriever's order.
    """
    corpus_hash = corpus_hash or corpus_sha256(corpus)
    key = cache_key(retriever, corpus_hash, queries, k)
    path = cache_path(key)
    query_ids = [q.id for q in queries]
    run = _load(path, key, query_ids)
    if run is not None:
        log.info("first stage %s: cache hit (%s)", retriever.name, path.name)
        return run
    log.info("first stage %s: searching %d documents for %d queries (top %d)", retriever.name, len(corpus), len(queries), k)
    found = retriever.search(corpus, queries, k)
    run = {qid: {doc: float(score) for doc, score in found.get(qid, {}).items()} for qid in query_ids}
    # Rankings are stored as lists: the JSON writer sorts object keys, which would lose the order.
    rows = [[qid, [[doc, score] for doc, score in ranking.items()]] for qid, ranking in run.items()]
    atomic_write_json(path, {"key": key, "retriever": retriever.meta, "corpus_sha256": corpus_hash, "k": k, "run": rows,
                             "sha256": seal(key, rows)})
    return run
