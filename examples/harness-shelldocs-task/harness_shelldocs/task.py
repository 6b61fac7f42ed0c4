"""The ``shelldocs`` task: 40 short descriptions of Unix shell commands, 12 topics, graded qrels.

A *corpus task*: ``load()`` returns the whole collection as ``TaskData.corpus``, so a first-stage
retriever (``--retriever bm25``) searches it, and a re-ranker (``--retriever X --first-stage
bm25``) re-ranks the first stage's top :attr:`ShelldocsTask.default_depth`.

The files ship inside this package (``harness_shelldocs/data/``); ``--data DIR`` reads another
folder holding the same three files instead (an edited copy, a bigger version). The file formats
and their readers are in :mod:`harness_shelldocs.readers`; this module only puts them together.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError
from harness.io import sha256_file
from harness.types import Query, Task, TaskData

from .readers import Topic, read_docs, read_qrels, read_topics

log = logging.getLogger(__name__)

#: The copy shipped with the package (package data, see pyproject.toml).
DATA = Path(__file__).resolve().parent / "data"
#: The three files of the collection, in the order they are read.
DOCS, TOPICS, QRELS = "docs.tsv", "topics.txt", "qrels.txt"
FILES: tuple[str, ...] = (DOCS, TOPICS, QRELS)
#: What ``--task-set field=...`` accepts: which part of a topic becomes the query text.
FIELDS: tuple[str, ...] = ("title", "description", "both")


def shipped_sha256() -> dict[str, str]:
    """The SHA-256 of the shipped files: the official data of this task."""
    return {name: sha256_file(DATA / name) for name in FILES}


def query_text(topic: Topic, field: str) -> str:
    """The text a retriever sees for ``topic`` (``field`` is one of :data:`FIELDS`)."""
    if field == "both":
        return f"{topic.title} {topic.description}"
    return topic.title if field == "title" else topic.description


class ShelldocsTask(Task):
    """``shelldocs``: which shell command does what I need? (40 documents, 12 topics, grades 0-2)."""

    #: The task id on the command line (``--task shelldocs``) and in result files.
    family: ClassVar[str] = "shelldocs"
    #: Computed for every run; R@100 of the default would be 1 on 40 documents, so R@10 instead.
    metrics: ClassVar[tuple[str, ...]] = ("nDCG@10", "R@10", "MRR@10", "MAP", "P@5")
    #: The leaderboard ranks this task's rows by it (graded judgements: nDCG uses the grades).
    main_metric: ClassVar[str] = "nDCG@10"
    #: ``--task-set field=title|description|both``.
    parameters: ClassVar[frozenset[str]] = frozenset({"field"})
    #: The official task queries by title; ``load`` records the field used under the same name in
    #: the provenance, so a run with another field is a variant of the task (``field=description``).
    parameter_defaults: ClassVar[Mapping[str, Any]] = {"field": "title"}
    #: A re-ranker gets the first stage's top 20 (the harness's fallback, 100, exceeds the corpus).
    default_depth: ClassVar[int] = 20

    def __init__(self, name: str | None = None, data: str | None = None, **params: Any) -> None:
        super().__init__(name=name, data=data, **params)  # checks the parameter names
        if name:
            raise HarnessError(f"task {self.family!r} has no sub-datasets; got {self.family}/{name}")
        self.field = params.get("field", self.parameter_defaults["field"])
        if self.field not in FIELDS:
            raise HarnessError(f"task {self.family!r}: field must be one of {', '.join(FIELDS)}; got {self.field!r}")

    @classmethod
    def variant_note(cls, provenance: Mapping[str, Any]) -> str | None:
        """None when the files read are the shipped ones (same SHA-256, wherever they were read
        from): they are the official data. Otherwise (``--data`` with an edited or bigger copy)
        ``local data <folder>``, so those results never share a leaderboard table or a file name
        with the official ones. The query field is a parameter: :attr:`parameter_defaults`."""
        if provenance.get("sha256") == shipped_sha256():
            return None
        return f"local data {Path(str(provenance.get('source') or '?')).name}"

    def load(self) -> TaskData:
        folder = Path(self.data) if self.data is not None else DATA
        if not folder.is_dir():
            raise HarnessError(f"{folder}: no such folder (--data must hold {', '.join(FILES)})")
        docs_path, topics_path, qrels_path = (folder / name for name in FILES)
        corpus = read_docs(docs_path)
        topics = read_topics(topics_path)
        qrels = read_qrels(qrels_path, topics, corpus, topics_path, docs_path)
        # Only topics with a relevant document are evaluated (trec_eval skips the others anyway).
        evaluated = [t for t in topics if any(grade > 0 for grade in qrels.get(t.number, {}).values())]
        if not evaluated:
            raise HarnessError(f"{qrels_path}: no topic has a relevant document")
        log.info("%s: %d documents, %d of %d topics judged", self.family, len(corpus), len(evaluated), len(topics))
        provenance = {
            "source": str(folder.resolve()),  # the folder read
            "revision": None,  # no hub revision: the SHA-256 of the files pins the data
            "sha256": {name: sha256_file(folder / name) for name in FILES},
            "split": "test",
            "n_queries": len(evaluated),
            "n_docs": len(corpus),
            "n_topics": len(topics),
            "field": self.field,  # the parameter, under its name: the result says what ran
            "relevance": "graded: 2 = answers the need, 1 = part of an answer, 0 = judged not relevant",
            "ignore_identical_ids": False,
        }
        return TaskData(
            queries=[Query(id=t.number, text=query_text(t, self.field)) for t in evaluated],
            qrels={t.number: qrels[t.number] for t in evaluated},
            corpus=corpus,
            metrics=self.metrics,
            ignore_identical_ids=False,  # topic numbers and command names never coincide
            provenance=provenance,
        )
