"""Readers of the shelldocs files: each original format in, the harness's types out.

The readers know nothing about the task: they turn a file into :class:`~harness.types.Document`,
:class:`Topic` or qrels, and refuse malformed input with a one-line
:class:`~harness.errors.HarnessError` that names the file and the line (the CLI prints it as
``error: <message>`` and exits with status 2, without a traceback). They lean on the harness's
helpers: :func:`harness.io.read_text` (strict UTF-8, CRLF normalised, a missing file is a one-line
error) and :func:`harness.trec.read_trec_qrels` (the TREC qrels format).

``docs.tsv``
    A header line ``docid<TAB>title<TAB>text``, then one document per line with exactly these
    three tab-separated fields. A document id is one token (no whitespace: TREC run files cannot
    hold it); the title may be empty; the text may not. Blank lines are skipped.

``topics.txt``
    Blocks of ``key: value`` lines separated by blank lines; ``#`` starts a comment line. Every
    block has exactly the keys ``number``, ``title`` and ``description``, each on one line.

``qrels.txt``
    TREC qrels ``topic 0 docid grade``, grades 0, 1 or 2 (:data:`GRADES`); every topic and
    document it names must exist in the other two files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.io import read_text
from harness.trec import read_trec_qrels
from harness.types import Document, Qrels

DOCS_HEADER: tuple[str, ...] = ("docid", "title", "text")
TOPIC_KEYS: tuple[str, ...] = ("number", "title", "description")
#: The relevance scale of the collection: 2 answers the need, 1 is part of an answer, 0 was judged
#: and is not relevant.
GRADES: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class Topic:
    """One topic of ``topics.txt``; ``line`` is where its block starts (for error messages)."""

    number: str
    title: str
    description: str
    line: int


def _numbered_lines(path: Path) -> list[tuple[int, str]]:
    """Every line of the file with its 1-based number (blank ones included)."""
    return list(enumerate(read_text(path).split("\n"), start=1))


def _check_id(value: str, what: str, where: str) -> None:
    if not value or any(ch.isspace() for ch in value):
        raise HarnessError(f"{where}: {what} {value!r} is empty or contains whitespace")


def read_docs(path: str | os.PathLike[str]) -> dict[str, Document]:
    """Read ``docs.tsv`` into ``{docid: Document}``, in file order."""
    path = Path(path)
    corpus: dict[str, Document] = {}
    first_seen: dict[str, int] = {}
    for number, line in _numbered_lines(path):
        if number == 1:
            if tuple(line.split("\t")) != DOCS_HEADER:
                raise HarnessError(f"{path}:1: expected the header 'docid<TAB>title<TAB>text', got {line[:60]!r}")
            continue
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(DOCS_HEADER):
            raise HarnessError(
                f"{path}:{number}: expected 3 tab-separated fields 'docid title text', got {len(fields)}"
            )
        doc_id, title, text = (" ".join(field.split()) for field in fields)
        _check_id(doc_id, "document id", f"{path}:{number}")
        if doc_id in first_seen:
            raise HarnessError(
                f"{path}:{number}: duplicate document id {doc_id!r} (first on line {first_seen[doc_id]})"
            )
        if not text:
            raise HarnessError(f"{path}:{number}: document {doc_id!r} has an empty text")
        corpus[doc_id] = Document(id=doc_id, text=text, title=title or None)
        first_seen[doc_id] = number
    if not corpus:
        raise HarnessError(f"{path}: no documents after the header")
    return corpus


def read_topics(path: str | os.PathLike[str]) -> list[Topic]:
    """Read ``topics.txt`` into topics, in file order."""
    path = Path(path)
    blocks: list[tuple[int, dict[str, str]]] = []
    current: dict[str, str] | None = None
    for number, line in _numbered_lines(path):
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if not stripped:
            current = None  # a blank line ends the block
            continue
        key, colon, value = stripped.partition(":")
        if not colon:
            raise HarnessError(f"{path}:{number}: expected 'key: value', got {stripped[:60]!r}")
        key, value = key.strip().lower(), " ".join(value.split())
        if key not in TOPIC_KEYS:
            raise HarnessError(f"{path}:{number}: unknown key {key!r} (expected number, title or description)")
        if current is None:
            current = {}
            blocks.append((number, current))
        if key in current:
            raise HarnessError(f"{path}:{number}: {key!r} given twice in one topic")
        if not value:
            raise HarnessError(f"{path}:{number}: {key!r} is empty")
        current[key] = value
    topics: list[Topic] = []
    first_seen: dict[str, int] = {}
    for start, fields in blocks:
        missing = [key for key in TOPIC_KEYS if key not in fields]
        if missing:
            raise HarnessError(f"{path}:{start}: topic has no {missing[0]!r} line")
        topic_id = fields["number"]
        _check_id(topic_id, "topic number", f"{path}:{start}")
        if topic_id in first_seen:
            raise HarnessError(f"{path}:{start}: duplicate topic {topic_id!r} (first on line {first_seen[topic_id]})")
        first_seen[topic_id] = start
        topics.append(Topic(topic_id, fields["title"], fields["description"], start))
    if not topics:
        raise HarnessError(f"{path}: no topics")
    return topics


def read_qrels(
    path: str | os.PathLike[str],
    topics: list[Topic],
    corpus: dict[str, Document],
    topics_path: str | os.PathLike[str],
    docs_path: str | os.PathLike[str],
) -> Qrels:
    """Read ``qrels.txt``: the TREC format through the harness, then this collection's rules
    (grades in :data:`GRADES`, known topics and documents), each violation naming its line."""
    path = Path(path)
    qrels = read_trec_qrels(path)  # 4 fields, integer grades, no pair judged twice differently
    known_topics = {t.number for t in topics}
    for number, line in _numbered_lines(path):
        if not line.strip():
            continue
        topic_id, _, doc_id, _ = line.split()
        if topic_id not in known_topics:
            raise HarnessError(f"{path}:{number}: topic {topic_id!r} is not in {topics_path}")
        if doc_id not in corpus:
            raise HarnessError(f"{path}:{number}: document {doc_id!r} is not in {docs_path}")
        grade = qrels[topic_id][doc_id]
        if grade not in GRADES:
            raise HarnessError(f"{path}:{number}: grade {grade} is not one of {', '.join(map(str, GRADES))}")
    return qrels
