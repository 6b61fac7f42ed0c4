"""Readers and writers for the TREC file formats: topics, qrels and runs.

Formats (whitespace-separated unless stated):

- **qrels**: ``qid iter docid rel`` (``iter`` is ignored, usually ``0`` or ``Q0``).
- **run**: ``qid Q0 docid rank score tag``. :func:`write_trec_run` writes rows in the
  deterministic ``(-score, docid)`` order with 1-based ranks, as Pyserini does (trec_eval
  re-sorts by score anyway and breaks ties by docid *descending*, pytrec_eval#56, so rankers
  with ties should emit strictly decreasing scores).
- **topics**, three dialects, told apart by their content:

  * Anserini's TSV ``qid<TAB>text`` (optionally ``.gz``), e.g. ``topics.beir-v1.0.0-*.tsv.gz``;
  * the classic TREC SGML ``<top><num> Number: 301 <title> ... <desc> ... </top>``;
  * the ``<DOC><DOCNO> 1 </DOCNO> text </DOC>`` layout of ``topics.cacm.txt``.

Every reader accepts CRLF files and gives a one-line :class:`HarnessError` naming the file and
line for malformed input.

Example::

    >>> run = {"q1": {"d2": 1.5, "d1": 1.5, "d3": 0.2}}
    >>> print(format_trec_run(run, tag="bm25"), end="")
    q1 Q0 d1 1 1.5 bm25
    q1 Q0 d2 2 1.5 bm25
    q1 Q0 d3 3 0.2 bm25
"""

from __future__ import annotations

import gzip
import html
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

from harness.errors import HarnessError
from harness.io import atomic_write_text, decode_utf8, parse_grade, read_text
from harness.types import Qrels, Run

__all__ = [
    "format_trec_run",
    "read_text_any",
    "read_trec_qrels",
    "read_trec_run",
    "read_trec_topics",
    "write_trec_qrels",
    "write_trec_run",
]


def read_text_any(path: str | os.PathLike[str]) -> str:
    """Read a text file, gunzipping ``*.gz``, with CRLF/CR line endings normalised to LF."""
    path = Path(path)
    if path.suffix != ".gz":
        return read_text(path)
    try:
        with gzip.open(path, "rb") as handle:
            data = decode_utf8(handle.read(), path)
    except FileNotFoundError:
        raise HarnessError(f"{path}: file not found") from None
    except (OSError, EOFError) as exc:
        raise HarnessError(f"{path}: cannot read gzip file ({exc})") from None
    return data.replace("\r\n", "\n").replace("\r", "\n")


def _lines(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based line numbers."""
    return [(n, line) for n, line in enumerate(read_text_any(path).split("\n"), start=1) if line.strip()]


# ---------------------------------------------------------------------------------------------
# qrels
# ---------------------------------------------------------------------------------------------


def _parse_int(value: str, path: str | os.PathLike[str], number: int, field: str) -> int:
    try:
        return int(value)
    except ValueError:
        try:
            as_float = float(value)
        except ValueError:
            as_float = math.nan
        if as_float.is_integer():
            return int(as_float)
        raise HarnessError(f"{path}:{number}: field {field!r} must be an integer, got {value!r}") from None


def read_trec_qrels(path: str | os.PathLike[str]) -> Qrels:
    """Read TREC qrels ``qid iter docid rel``; queries and documents keep file order.

    A pair judged twice with the same relevance is accepted; with different relevance it is an
    error (the file is ambiguous).
    """
    qrels: Qrels = {}
    seen_at: dict[tuple[str, str], int] = {}
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) != 4:
            raise HarnessError(f"{path}:{number}: expected 4 fields 'qid iter docid rel', got {len(fields)}")
        qid, _, docid, rel_text = fields
        rel = parse_grade(rel_text, f"{path}:{number}: field 'rel'")
        judged = qrels.setdefault(qid, {})
        if docid in judged and judged[docid] != rel:
            raise HarnessError(
                f"{path}:{number}: query {qid!r} document {docid!r} judged {rel} here "
                f"but {judged[docid]} on line {seen_at[(qid, docid)]}"
            )
        judged[docid] = rel
        seen_at.setdefault((qid, docid), number)
    return qrels


def write_trec_qrels(qrels: Mapping[str, Mapping[str, int]], path: str | os.PathLike[str]) -> None:
    """Write qrels as ``qid 0 docid rel``, queries and documents sorted, atomically."""
    rows = []
    for qid in sorted(qrels):
        for docid in sorted(qrels[qid]):
            _check_token(qid, "query id")
            _check_token(docid, "document id")
            rows.append(f"{qid} 0 {docid} {int(qrels[qid][docid])}\n")
    atomic_write_text(path, "".join(rows))


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------


def read_trec_run(path: str | os.PathLike[str]) -> Run:
    """Read a TREC run ``qid Q0 docid rank score tag`` into ``{qid: {docid: score}}``.

    The rank column is checked to be an integer but otherwise ignored (scores decide the order,
    as in trec_eval). A document listed twice for one query is an error.
    """
    run: Run = {}
    for number, line in _lines(path):
        fields = line.split()
        if len(fields) != 6:
            raise HarnessError(f"{path}:{number}: expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}")
        qid, _, docid, rank_text, score_text, _tag = fields
        _parse_int(rank_text, path, number, "rank")
        try:
            score = float(score_text)
        except ValueError:
            raise HarnessError(f"{path}:{number}: field 'score' must be a number, got {score_text!r}") from None
        if math.isnan(score):
            raise HarnessError(f"{path}:{number}: field 'score' is NaN")
        ranked = run.setdefault(qid, {})
        if docid in ranked:
            raise HarnessError(f"{path}:{number}: document {docid!r} listed twice for query {qid!r}")
        ranked[docid] = score
    return run


def _check_token(value: str, what: str) -> None:
    if not value or any(ch.isspace() for ch in value):
        raise HarnessError(f"{what} {value!r} is empty or contains whitespace; TREC files cannot hold it")


def _format_score(score: float) -> str:
    score = float(score)
    if math.isnan(score):
        raise HarnessError("run holds a NaN score; TREC runs need comparable scores")
    return repr(score)  # shortest text that reads back to the same float


def format_trec_run(run: Mapping[str, Mapping[str, float]], tag: str = "harness", k: int | None = None) -> str:
    """The text of a TREC run: queries sorted by id, rows by ``(-score, docid)``, ranks from 1.

    ``k`` keeps only the top ``k`` rows of each query.
    """
    _check_token(tag, "run tag")
    rows: list[str] = []
    for qid in sorted(run):
        _check_token(qid, "query id")
        ranked = sorted(run[qid].items(), key=lambda item: (-float(item[1]), item[0]))
        if k is not None:
            ranked = ranked[:k]
        for rank, (docid, score) in enumerate(ranked, start=1):
            _check_token(docid, "document id")
            rows.append(f"{qid} Q0 {docid} {rank} {_format_score(score)} {tag}\n")
    return "".join(rows)


def write_trec_run(
    run: Mapping[str, Mapping[str, float]], path: str | os.PathLike[str], tag: str = "harness", k: int | None = None
) -> None:
    """Write ``run`` as a TREC run file atomically (see :func:`format_trec_run`)."""
    atomic_write_text(path, format_trec_run(run, tag=tag, k=k))


# ---------------------------------------------------------------------------------------------
# topics
# ---------------------------------------------------------------------------------------------

_SGML_FIELDS = ("num", "title", "desc", "narr")
_TAG = re.compile(r"<(/?)(top|num|title|desc|narr)>", re.IGNORECASE)
_DOC = re.compile(r"<DOC>(.*?)</DOC>", re.IGNORECASE | re.DOTALL)
_DOCNO = re.compile(r"<DOCNO>(.*?)</DOCNO>", re.IGNORECASE | re.DOTALL)
_LABEL = re.compile(r"^\s*(Number|Topic|Description|Narrative)\s*:\s*", re.IGNORECASE)


def _squash(text: str) -> str:
    return " ".join(html.unescape(text).split())


def read_trec_topics(path: str | os.PathLike[str], field: str = "title") -> dict[str, str]:
    """Read topics as ``{qid: text}`` in file order (TSV, TREC SGML or CACM ``<DOC>`` layout).

    ``field`` picks the SGML field (``title``, ``desc`` or ``narr``); it is ignored for the TSV
    and ``<DOC>`` layouts, which have one text per topic. Whitespace inside a text is collapsed
    to single spaces. Duplicate ids and empty texts are errors.
    """
    if field not in _SGML_FIELDS[1:]:
        raise HarnessError(f"topics field must be one of title, desc, narr; got {field!r}")
    text = read_text_any(path)
    if re.search(r"<top>", text, re.IGNORECASE):
        return _read_sgml_topics(path, text, field)
    if re.search(r"<DOC>", text, re.IGNORECASE):
        return _read_doc_topics(path, text)
    return _read_tsv_topics(path, text)


def _add_topic(topics: dict[str, str], qid: str, body: str, path: str | os.PathLike[str], number: int) -> None:
    if not qid:
        raise HarnessError(f"{path}:{number}: topic without an id")
    if qid in topics:
        raise HarnessError(f"{path}:{number}: duplicate topic id {qid!r}")
    if not body:
        raise HarnessError(f"{path}:{number}: topic {qid!r} has an empty text")
    topics[qid] = body


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _read_tsv_topics(path: str | os.PathLike[str], text: str) -> dict[str, str]:
    topics: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise HarnessError(f"{path}:{number}: expected 'qid<TAB>text' (no tab found)")
        qid, body = line.split("\t", 1)
        _add_topic(topics, qid.strip(), _squash(body), path, number)
    if not topics:
        raise HarnessError(f"{path}: no topics found")
    return topics


def _read_doc_topics(path: str | os.PathLike[str], text: str) -> dict[str, str]:
    topics: dict[str, str] = {}
    for match in _DOC.finditer(text):
        number = _line_of(text, match.start())
        body = match.group(1)
        docno = _DOCNO.search(body)
        if not docno:
            raise HarnessError(f"{path}:{number}: <DOC> without <DOCNO>")
        qid = docno.group(1).strip()
        _add_topic(topics, qid, _squash(body[: docno.start()] + " " + body[docno.end() :]), path, number)
    if not topics:
        raise HarnessError(f"{path}: no <DOC> topics found")
    return topics


def _read_sgml_topics(path: str | os.PathLike[str], text: str, field: str) -> dict[str, str]:
    topics: dict[str, str] = {}
    starts = [m for m in re.finditer(r"<top>", text, re.IGNORECASE)]
    for index, start in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
        block = text[start.end() : end]
        number = _line_of(text, start.start())
        fields: dict[str, str] = {}
        tags = [m for m in _TAG.finditer(block) if not m.group(1) and m.group(2).lower() != "top"]
        for t_index, tag in enumerate(tags):
            stop = tags[t_index + 1].start() if t_index + 1 < len(tags) else len(block)
            value = _TAG.sub(" ", block[tag.end() : stop])
            fields[tag.group(2).lower()] = _LABEL.sub("", value.strip())
        qid = fields.get("num", "").split()
        if not qid:
            raise HarnessError(f"{path}:{number}: <top> without <num>")
        if field not in fields:
            raise HarnessError(f"{path}:{number}: topic {qid[0]!r} has no <{field}> field")
        _add_topic(topics, qid[0], _squash(fields[field]), path, number)
    return topics
