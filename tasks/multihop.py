"""Multi-hop QA: HotpotQA (distractor), MuSiQue and 2WikiMultihopQA (docs/PROTOCOL.md §4.7).

The paper has no multi-hop protocol: everything here is a **harness convention**. Each question's
given paragraphs are its candidates (in the file's order), the supporting paragraphs are gold,
and answers are scored by SQuAD-normalised ``EM`` and ``F1``, the max over the gold answers.

Layouts (a ``.json`` list or ``.jsonl`` file via ``data=``; the hub otherwise)
---------------------------------------------------------------------------------
* **HotpotQA / 2Wiki original**: ``{_id, question, answer, supporting_facts: [[title, sent_id],
  ...], context: [[title, [sentences]], ...]}`` (2Wiki adds ``type``, ``evidences``).
* **Hugging Face** (``hotpot_qa`` and its 2Wiki look-alikes): ``supporting_facts: {title: [...],
  sent_id: [...]}``, ``context: {title: [...], sentences: [[...], ...]}`` (``content`` is accepted
  for ``sentences``).
* **MuSiQue** (JSONL): ``{id, question, answer, answer_aliases, paragraphs: [{idx, title,
  paragraph_text, is_supporting}]}``.

Documents: id = the paragraph's position ``"0"``, ``"1"``, … (MuSiQue: its ``idx``), ``title`` =
its title, text = its sentences joined (HotpotQA sentences carry their own leading spaces; a
space is inserted only where neither side has one). Gold = every paragraph whose title is a
supporting-fact title (MuSiQue: ``is_supporting``). A supporting title missing from the context is
counted in ``provenance["n_missing_support_titles"]`` and logged.

Ids: ``_id``/``id`` when present. Rows without one (``shared/data``'s HotpotQA sample) get the
stable synthetic id ``{row:05d}-{sha1(question)[:10]}`` and ``provenance["synthetic_ids"]``.

Generation: a LongBench-style QA prompt over the given passages in the order given (ranked order
for top-k). The answer is the first non-empty line of the output, with a leading ``Answer:``
removed, then scored against every gold answer.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError
from harness.hub import require_hub
from harness.io import iter_jsonl, read_json, sha256_file
from harness.tasks.qa_scoring import exact_match, f1_score, max_over_answers
from harness.types import Document, Instance, Query, Task, TaskData

log = logging.getLogger(__name__)

INSTRUCTION = (
    "Answer the question based on the given passages. Only give me the answer and do not output any other words."
)
PROMPT_TEMPLATE = (
    INSTRUCTION
    + "\n\nThe following are given passages.\n{passages}\n\n"
    + INSTRUCTION
    + "\n\nQuestion: {question}\nAnswer:"
)
PASSAGE_TEMPLATE = "Passage {index}:\n{title}\n{text}"


def join_sentences(sentences: Sequence[str]) -> str:
    """Concatenate sentences, adding a space only where neither side has whitespace."""
    out = ""
    for sentence in sentences:
        sentence = str(sentence)
        if out and sentence and not out[-1].isspace() and not sentence[0].isspace():
            out += " "
        out += sentence
    return out


def extract_answer(output: str | None) -> str:
    """The first non-empty line of a generation, without a leading ``Answer:``."""
    for line in (output or "").strip().splitlines():
        line = line.strip()
        if line:
            if line.lower().startswith("answer:"):
                line = line[len("answer:") :].strip()
            return line
    return ""


def _pairs_from_context(context: Any, where: str) -> list[tuple[str, list[str]]]:
    if isinstance(context, Mapping):
        titles = context.get("title")
        sentences = context.get("sentences", context.get("content"))
        if not isinstance(titles, list) or not isinstance(sentences, list) or len(titles) != len(sentences):
            raise HarnessError(f"{where}: field 'context' needs equal-length lists 'title' and 'sentences'")
        pairs = list(zip(titles, sentences))
    elif isinstance(context, list):
        pairs = []
        for number, item in enumerate(context):
            if not (isinstance(item, (list, tuple)) and len(item) == 2):
                raise HarnessError(f"{where}: context[{number}] must be [title, [sentences]]")
            pairs.append((item[0], item[1]))
    else:
        raise HarnessError(
            f"{where}: field 'context' must be a list of [title, sentences] or a {{title, sentences}} object"
        )
    out = []
    for number, (title, sents) in enumerate(pairs):
        if isinstance(sents, str):
            sents = [sents]
        if not isinstance(sents, list):
            raise HarnessError(f"{where}: context paragraph {number} sentences must be a list")
        out.append((str(title), [str(s) for s in sents]))
    return out


def _support_titles(facts: Any, where: str) -> list[str]:
    if isinstance(facts, Mapping):
        titles = facts.get("title")
        if not isinstance(titles, list):
            raise HarnessError(f"{where}: field 'supporting_facts' needs a 'title' list")
        return [str(t) for t in titles]
    if isinstance(facts, list):
        out = []
        for number, item in enumerate(facts):
            if not (isinstance(item, (list, tuple)) and item):
                raise HarnessError(f"{where}: supporting_facts[{number}] must be [title, sent_id]")
            out.append(str(item[0]))
        return out
    raise HarnessError(f"{where}: field 'supporting_facts' must be a list or a {{title, sent_id}} object")


def entry_to_instance(entry: Mapping[str, Any], row: int, where: str) -> tuple[Instance, dict[str, int]]:
    """One question in any supported layout; returns the instance and counters for provenance."""
    for name in ("question", "answer"):
        if name not in entry:
            raise HarnessError(f"{where}: missing field {name!r}")
    stats = {"synthetic_id": 0, "missing_support_titles": 0}
    raw_id = entry.get("_id", entry.get("id"))
    if raw_id is None or str(raw_id) == "":
        digest = hashlib.sha1(str(entry["question"]).encode("utf-8")).hexdigest()[:10]
        qid = f"{row:05d}-{digest}"
        stats["synthetic_id"] = 1
    else:
        qid = str(raw_id)
    answers = [str(entry["answer"])] + [str(a) for a in entry.get("answer_aliases") or []]
    docs: list[Document] = []
    gold: dict[str, int] = {}
    if "paragraphs" in entry:
        for number, para in enumerate(entry["paragraphs"]):
            if not isinstance(para, Mapping) or "paragraph_text" not in para:
                raise HarnessError(f"{where}: paragraphs[{number}] needs 'paragraph_text'")
            doc_id = str(para.get("idx", number))
            docs.append(Document(id=doc_id, text=str(para["paragraph_text"]), title=para.get("title")))
            if para.get("is_supporting") is True:
                gold[doc_id] = 1
    elif "context" in entry:
        if "supporting_facts" not in entry:
            raise HarnessError(f"{where}: missing field 'supporting_facts'")
        support = set(_support_titles(entry["supporting_facts"], where))
        context = _pairs_from_context(entry["context"], where)
        for number, (title, sentences) in enumerate(context):
            doc_id = str(number)
            docs.append(Document(id=doc_id, text=join_sentences(sentences), title=title))
            if title in support:
                gold[doc_id] = 1
        missing = support - {title for title, _ in context}
        stats["missing_support_titles"] = len(missing)
    else:
        raise HarnessError(f"{where}: needs 'context' (HotpotQA/2Wiki) or 'paragraphs' (MuSiQue)")
    if len({d.id for d in docs}) != len(docs):
        raise HarnessError(f"{where}: duplicate paragraph ids")
    instance = Instance(
        query=Query(id=qid, text=str(entry["question"]), meta={"type": entry.get("type")}),
        candidates=docs,
        gold=gold,
        answer=answers,
        meta={"order": "natural", "type": entry.get("type")},
    )
    return instance, stats


class MultiHopTask(Task):
    """Shared loader and QA scoring of the three multi-hop families.

    Parameters: ``split`` and ``revision`` (hub), ``hub_id`` (override the dataset id),
    ``limit`` (first N questions).
    """

    family: ClassVar[str] = "multihop"
    main_metric: ClassVar[str] = "R@2"
    metrics: ClassVar[tuple[str, ...]] = ("R@2", "R@5", "R_all@2", "R_all@5", "nDCG@10")
    supports_generation: ClassVar[bool] = True
    max_tokens: ClassVar[int] = 32
    hub_id: ClassVar[str] = ""
    hub_config: ClassVar[str | None] = None
    hub_split: ClassVar[str] = "validation"
    parameters: ClassVar[frozenset[str]] = frozenset({"hub_id", "limit", "revision", "split"})

    def _read_local(self, path: Path) -> list[Mapping[str, Any]]:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl"))
            if len(files) != 1:
                raise HarnessError(f"{path}: expected exactly one .json or .jsonl file, found {len(files)}")
            path = files[0]
            self._file = path
        if not path.is_file():
            raise HarnessError(f"{path}: no such file")
        if path.suffix == ".jsonl":
            return [obj for _, obj in iter_jsonl(path)]
        entries = read_json(path)
        if not isinstance(entries, list):
            raise HarnessError(f"{path}: expected a JSON list of questions, got {type(entries).__name__}")
        return entries

    def _read_hub(self) -> list[Mapping[str, Any]]:
        import datasets
        from datasets.exceptions import DatasetsError

        hub_id = self.params.get("hub_id", self.hub_id)
        split = self.params.get("split", self.hub_split)
        require_hub(f"task {self.family}", f"{hub_id} (split {split})",
                    "pass --data FILE with the dataset's JSON or JSONL file")
        try:
            rows = datasets.load_dataset(hub_id, self.hub_config, split=split, revision=self.params.get("revision"))
        except (OSError, ValueError, DatasetsError) as exc:  # network, offline mode, unknown id
            raise HarnessError(
                f"{self.family}: cannot load {hub_id} ({type(exc).__name__}: {exc}); pass --data with a local file"
            ) from None
        return list(rows)

    def load(self) -> TaskData:
        self._file: Path | None = None
        if self.data is None:
            entries = self._read_hub()
            hub_id = self.params.get("hub_id", self.hub_id)
            provenance: dict[str, Any] = {
                "source": f"hf:{hub_id}" + (f"/{self.hub_config}" if self.hub_config else ""),
                "split": self.params.get("split", self.hub_split),
                "revision": self.params.get("revision"),
            }
        else:
            path = Path(self.data)
            self._file = path
            entries = self._read_local(path)
            assert self._file is not None
            provenance = {
                "source": str(path),
                "sha256": {self._file.name: sha256_file(self._file)},
                "split": self.params.get("split", "file"),
            }
        limit = self.params.get("limit")
        if limit is not None:
            entries = entries[: int(limit)]
        instances: list[Instance] = []
        totals = {"synthetic_id": 0, "missing_support_titles": 0}
        where_file = str(self._file or provenance["source"])
        for row, entry in enumerate(entries):
            where = f"{where_file}: question {row}"
            if not isinstance(entry, Mapping):
                raise HarnessError(f"{where}: expected an object, got {type(entry).__name__}")
            instance, stats = entry_to_instance(entry, row, where)
            for key, value in stats.items():
                totals[key] += value
            instances.append(instance)
        if not instances:
            raise HarnessError(f"{where_file}: no questions")
        ids = [inst.query.id for inst in instances]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise HarnessError(f"{where_file}: duplicate question id {dup!r}")
        empty = [inst.query.id for inst in instances if not inst.gold]
        if empty:
            log.warning("%s: %d questions have no supporting paragraph among their candidates", self.family, len(empty))
        if totals["missing_support_titles"]:
            log.warning(
                "%s: %d supporting-fact titles are not in their question's context",
                self.family,
                totals["missing_support_titles"],
            )
        sizes: dict[int, int] = {}
        for inst in instances:
            sizes[len(inst.candidates)] = sizes.get(len(inst.candidates), 0) + 1
        provenance.update(
            n_queries=len(instances),
            n_empty_gold=len(empty),
            n_missing_support_titles=totals["missing_support_titles"],
            synthetic_ids=bool(totals["synthetic_id"]),
            candidates_per_query=dict(sorted(sizes.items())),
            convention="harness (PROTOCOL 4.7: the paper has no multi-hop protocol)",
        )
        if limit is not None:
            provenance["limit"] = int(limit)
        return TaskData.from_instances(instances, self.metrics, provenance)

    def generation_prompt(self, instance: Instance, docs: Sequence[Document]) -> list[dict[str, str]]:
        """The QA prompt over ``docs`` in the order given."""
        passages = "\n\n".join(
            PASSAGE_TEMPLATE.format(index=i, title=d.title or "", text=d.text) for i, d in enumerate(docs, start=1)
        )
        return [{"role": "user", "content": PROMPT_TEMPLATE.format(passages=passages, question=instance.query.text)}]

    def score_generations(
        self, instances: Sequence[Instance], outputs: Sequence[str], judge: Any | None = None
    ) -> dict[str, dict[str, float]]:
        """``EM`` and ``F1`` of each output's extracted answer, max over the gold answers."""
        if len(instances) != len(outputs):
            raise HarnessError(f"{self.family}: {len(instances)} instances but {len(outputs)} outputs")
        scores = {}
        for inst, output in zip(instances, outputs):
            prediction = extract_answer(output)
            golds = inst.answer if isinstance(inst.answer, list) else [str(inst.answer)]
            scores[inst.query.id] = {
                "EM": max_over_answers(exact_match, prediction, golds),
                "F1": max_over_answers(f1_score, prediction, golds),
            }
        return scores


class HotpotQATask(MultiHopTask):
    """``hotpotqa``: HotpotQA distractor setting (10 paragraphs, 2 supporting)."""

    family: ClassVar[str] = "hotpotqa"
    hub_id: ClassVar[str] = "hotpotqa/hotpot_qa"
    hub_config: ClassVar[str | None] = "distractor"


class MusiqueTask(MultiHopTask):
    """``musique``: MuSiQue-Ans (20 paragraphs, 2–4 supporting). Hub id unconfirmed."""

    family: ClassVar[str] = "musique"
    hub_id: ClassVar[str] = "dgslibisey/MuSiQue"


class TwoWikiTask(MultiHopTask):
    """``2wikimultihopqa``: 2WikiMultihopQA (10 paragraphs). Hub id unconfirmed."""

    family: ClassVar[str] = "2wikimultihopqa"
    hub_id: ClassVar[str] = "xanhho/2WikiMultihopQA"
    hub_split: ClassVar[str] = "dev"
