"""``icr-json``: instances in the QRHead/ICR JSON format (docs/PROTOCOL.md §1.4 I/O).

The file is a JSON list of::

    {"idx": 0, "question": "...", "num_gold_docs": 1, "gt_docs": [3],
     "paragraphs": [{"idx": 3, "title": "..." | null, "paragraph_text": "...", "is_supporting": true}, ...]}

Each item becomes one :class:`~harness.types.Instance`: the query is ``question`` (id
``str(idx)``), the candidates are ``paragraphs`` in file order (for the paper's BEIR files that
is the BM25 order, best first; ids ``str(paragraph idx)``, ``title`` kept as ``None`` when
null), and the gold set is the union of the ``is_supporting`` paragraphs and ``gt_docs``
(relevance 1). ``gt_docs`` may name documents that are not among the candidates (a relevant
document the first stage missed): they stay in the qrels and count as misses.

``qrels=PATH`` (TREC qrels, or a BEIR ``.tsv``) replaces the gold labels with graded ones, for
files built from graded collections such as TREC-COVID.

Items without any gold document are dropped with a warning (the paper evaluates only queries
with qrels); the count is in the provenance. Metric defaults: ``nDCG@10, R@5, R@10, R_all@5,
MRR@10`` (see docs/PROTOCOL.md §4.2 for the recall variants).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError
from harness.io import read_json, sha256_file
from harness.types import Document, Instance, Qrels, Query, Task, TaskData

log = logging.getLogger(__name__)


def _item_id(value: Any, where: str, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise HarnessError(f"{where}: field {field!r} must be a non-empty string or integer, got {json.dumps(value)}")
    return str(value)


def read_icr_json(path: str | Path) -> tuple[list[Instance], int]:
    """Read an ICR/QRHead JSON file into instances; also return how many had no gold."""
    path = Path(path)
    items = read_json(path)
    if not isinstance(items, list):
        raise HarnessError(f"{path}: expected a JSON list of instances, got {type(items).__name__}")
    if not items:
        raise HarnessError(f"{path}: empty list, no instances")
    instances: list[Instance] = []
    seen: dict[str, int] = {}
    no_gold = 0
    for index, item in enumerate(items):
        where = f"{path}: item {index}"
        if not isinstance(item, dict):
            raise HarnessError(f"{where}: expected an object, got {type(item).__name__}")
        for required in ("idx", "question", "paragraphs"):
            if required not in item:
                raise HarnessError(f"{where}: missing required field {required!r}")
        qid = _item_id(item["idx"], where, "idx")
        if qid in seen:
            raise HarnessError(f"{where}: duplicate idx {qid!r} (first at item {seen[qid]})")
        seen[qid] = index
        if not isinstance(item["question"], str) or not item["question"].strip():
            raise HarnessError(f"{where}: field 'question' must be a non-empty string")
        paragraphs = item["paragraphs"]
        if not isinstance(paragraphs, list) or not paragraphs:
            raise HarnessError(f"{where}: field 'paragraphs' must be a non-empty list")
        candidates: list[Document] = []
        gold: dict[str, int] = {}
        doc_seen: set[str] = set()
        for p_index, para in enumerate(paragraphs):
            p_where = f"{where} (idx {qid}) paragraph {p_index}"
            if not isinstance(para, dict):
                raise HarnessError(f"{p_where}: expected an object")
            for required in ("idx", "paragraph_text"):
                if required not in para:
                    raise HarnessError(f"{p_where}: missing required field {required!r}")
            doc_id = _item_id(para["idx"], p_where, "idx")
            if doc_id in doc_seen:
                raise HarnessError(f"{p_where}: duplicate paragraph idx {doc_id!r}")
            doc_seen.add(doc_id)
            text, title = para["paragraph_text"], para.get("title")
            if not isinstance(text, str):
                raise HarnessError(f"{p_where}: field 'paragraph_text' must be a string")
            if title is not None and not isinstance(title, str):
                raise HarnessError(f"{p_where}: field 'title' must be a string or null")
            supporting = para.get("is_supporting", False)
            if not isinstance(supporting, bool):
                raise HarnessError(f"{p_where}: field 'is_supporting' must be true or false")
            candidates.append(Document(id=doc_id, text=text, title=title))
            if supporting:
                gold[doc_id] = 1
        gt_docs = item.get("gt_docs", [])
        if not isinstance(gt_docs, list):
            raise HarnessError(f"{where}: field 'gt_docs' must be a list")
        for doc in gt_docs:
            gold[_item_id(doc, where, "gt_docs")] = 1
        expected = item.get("num_gold_docs")
        if expected is not None and expected != len(gold):
            log.warning("%s: num_gold_docs is %s but %d gold documents are named", where, expected, len(gold))
        if not gold:
            no_gold += 1
            continue
        instances.append(
            Instance(
                query=Query(id=qid, text=item["question"]),
                candidates=candidates,
                gold=gold,
                answer=item.get("answer"),
                meta={"order": "file"},
            )
        )
    if no_gold:
        log.warning("%s: %d of %d instances have no gold document and are skipped", path, no_gold, len(items))
    if not instances:
        raise HarnessError(f"{path}: no instance has a gold document; empty query set")
    return instances, no_gold


def _read_qrels_any(path: Path) -> Qrels:
    if path.suffix == ".tsv":
        from harness.tasks.beir import read_beir_qrels

        return read_beir_qrels(path)
    from harness.trec import read_trec_qrels

    return read_trec_qrels(path)


class IcrJsonTask(Task):
    """``icr-json``: a QRHead/ICR JSON file as an instance task (``--data FILE`` required).

    Parameters: ``qrels`` (optional TREC or BEIR-tsv qrels replacing the gold labels) and
    ``ignore_identical_ids`` (default False; True for files built from BEIR, to match
    ``beir.EvaluateRetrieval``). The optional name (``icr-json/<label>``) is only a label.
    """

    family: ClassVar[str] = "icr-json"
    metrics: ClassVar[tuple[str, ...]] = ("nDCG@10", "R@5", "R@10", "R_all@5", "MRR@10")

    parameters: ClassVar[frozenset[str]] = frozenset({"qrels", "ignore_identical_ids"})

    def __init__(self, name: str | None = None, data: str | None = None, **params: Any) -> None:
        super().__init__(name=name, data=data, **params)
        if data is None:
            raise HarnessError("task icr-json needs --data FILE (a QRHead/ICR JSON list of instances)")

    def load(self) -> TaskData:
        assert self.data is not None
        path = Path(self.data)
        if path.is_dir():
            raise HarnessError(f"{path}: is a folder; icr-json needs a JSON file")
        instances, no_gold = read_icr_json(path)
        sha = {path.name: sha256_file(path)}
        qrels_path = self.params.get("qrels")
        if qrels_path:
            external = _read_qrels_any(Path(qrels_path))
            missing = [inst.query.id for inst in instances if inst.query.id not in external]
            if missing:
                raise HarnessError(
                    f"{qrels_path}: no judgements for {len(missing)} instances, e.g. "
                    f"{', '.join(map(repr, missing[:3]))}"
                )
            for inst in instances:
                inst.gold = {d: rel for d, rel in external[inst.query.id].items() if rel > 0}
            instances = [inst for inst in instances if inst.gold]
            sha[Path(qrels_path).name] = sha256_file(qrels_path)
        return TaskData.from_instances(
            instances,
            self.metrics,
            ignore_identical_ids=bool(self.params.get("ignore_identical_ids", False)),
            provenance={
                "source": str(path.resolve()),
                "revision": None,
                "sha256": sha,
                "split": "test",
                "label": self.name,
                "n_queries": len(instances),
                "n_docs": sum(len(inst.candidates) for inst in instances),
                "skipped_no_gold": no_gold,
            },
        )
