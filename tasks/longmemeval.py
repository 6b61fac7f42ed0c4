"""LongMemEval-S (docs/PROTOCOL.md §4.2): retrieve chat *rounds*, answer from them, judge the answers.

Data
----
The original LongMemEval-S file (``xiaowu0162/longmemeval``, file ``longmemeval_s``, the version
before the Sept-2025 cleanup), a JSON list of questions::

    {"question_id", "question_type", "question", "answer", "question_date",
     "haystack_session_ids": [...], "haystack_dates": [...],
     "haystack_sessions": [[{"role", "content", "has_answer"?}, ...], ...],
     "answer_session_ids": [...]}

``data=`` may name such a file, or a folder holding ``longmemeval_s`` (or ``longmemeval_s.json``)
or the QRHead generation files ``other_s_original.json`` / ``single-session-user_s.json`` (the
same schema, with a ``round_id`` on each turn). Without ``data`` the file is downloaded from the
hub with :func:`huggingface_hub.hf_hub_download` (parameter ``revision`` pins it).

Split (parameter ``split``)
---------------------------
``eval`` (default): every question type except ``single-session-user`` (the paper's
``other_s_original.json``, ≈430 questions); ``detect``: ``single-session-user`` (70, used for
head detection); ``all``: everything.

Documents
---------
One document per *round*: a user turn and the assistant turns that follow it (a leading
assistant turn forms a round on its own), in chronological (haystack) order, untruncated.

* id ``{question_id}__{session_id}__{round_index}``, ``round_index`` 0-based within the session
  (the format is inferred from QRHead's example ids, docs/PROTOCOL.md §4.2). When the turns carry a
  ``round_id`` (QRHead's files) that id is used instead.
* text: the round's turns as ``"{role}: {content}"`` lines joined by ``"\\n"`` (our choice; the
  paper's serialisation is unconfirmed).
* ``meta``: ``session_id``, ``session_index``, ``date``, ``round_index`` and ``turns`` (the turns
  without ``has_answer``/``round_id``, for the generation prompt).

Gold = the rounds containing a turn with ``has_answer: true``. A question without such a round
is kept with an empty gold set (``R_all`` counts it as 1, ``R@k``/``R_any`` as 0; docs/PROTOCOL.md §4.2);
their number is logged as a warning and recorded as ``provenance["n_empty_gold"]``.

Generation and judging
----------------------
:meth:`LongMemEvalTask.generation_prompt` regroups the given rounds by session, sorts the
sessions by date (stable, on the date string, as QRHead does) and fills the paper's prompt.
:meth:`LongMemEvalTask.score_generations` asks a judge (LongMemEval's per-type yes/no prompts,
:mod:`harness.tasks.qa_scoring`) and reports ``accuracy`` plus ``accuracy/{question_type}`` and
``accuracy/abstention`` on the queries of that type, so the plain mean over the queries that
have a key is the per-type accuracy. Without a judge it reports ``answer_contains``
(normalised containment of the gold answer), never ``accuracy``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError
from harness.hub import require_hub
from harness.io import read_json, sha256_file
from harness.tasks.qa_scoring import answer_contained, judge_says_yes, judge_template_name, longmemeval_judge_prompt
from harness.types import Document, Instance, Query, Task, TaskData

log = logging.getLogger(__name__)

HUB_REPO = "xiaowu0162/longmemeval"
HUB_FILE = "longmemeval_s"
DETECT_TYPE = "single-session-user"
SPLITS = ("eval", "detect", "all")
LOCAL_NAMES = {
    "detect": ("single-session-user_s.json", "longmemeval_s", "longmemeval_s.json"),
    "eval": ("other_s_original.json", "longmemeval_s", "longmemeval_s.json"),
    "all": ("longmemeval_s", "longmemeval_s.json"),
}

PROMPT_TEMPLATE = (
    "I will give you several history chats between you and a user. Please answer the question "
    "based on the relevant chat history.\n\n\nHistory Chats:\n\n{history}\n\nCurrent Date: {date}\n"
    "Question: {question}\nAnswer:"
)
SESSION_TEMPLATE = "\n### Session {index}:\nSession Date: {date}\nSession Content:\n\n{content}\n"
_HIDDEN_TURN_KEYS = ("has_answer", "round_id")
REQUIRED_FIELDS = (
    "question_id",
    "question_type",
    "question",
    "answer",
    "question_date",
    "haystack_session_ids",
    "haystack_dates",
    "haystack_sessions",
)


def round_text(turns: Sequence[Mapping[str, Any]]) -> str:
    """A round's document text: ``"role: content"`` lines."""
    return "\n".join(f"{turn.get('role', '')}: {turn.get('content', '')}" for turn in turns)


def split_rounds(turns: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Group a session's turns into rounds: each user turn opens a round, others join it."""
    rounds: list[list[Mapping[str, Any]]] = []
    for turn in turns:
        if turn.get("role") == "user" or not rounds:
            rounds.append([turn])
        else:
            rounds[-1].append(turn)
    return rounds


def _clean_turn(turn: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in turn.items() if key not in _HIDDEN_TURN_KEYS}


def question_to_instance(entry: Mapping[str, Any], where: str) -> Instance:
    """One LongMemEval question (original schema) as an :class:`Instance` of rounds.

    ``where`` names the file and question for error messages.
    """
    for name in REQUIRED_FIELDS:
        if name not in entry:
            raise HarnessError(f"{where}: missing field {name!r}")
    qid = str(entry["question_id"])
    sessions, session_ids, dates = entry["haystack_sessions"], entry["haystack_session_ids"], entry["haystack_dates"]
    if not (isinstance(sessions, list) and isinstance(session_ids, list) and isinstance(dates, list)):
        raise HarnessError(f"{where}: haystack_sessions, haystack_session_ids and haystack_dates must be lists")
    if not len(sessions) == len(session_ids) == len(dates):
        raise HarnessError(
            f"{where}: haystack_sessions ({len(sessions)}), haystack_session_ids ({len(session_ids)}) "
            f"and haystack_dates ({len(dates)}) differ in length"
        )
    docs: list[Document] = []
    gold: dict[str, int] = {}
    seen: set[str] = set()
    for s_index, (session, session_id, date) in enumerate(zip(sessions, session_ids, dates)):
        if not isinstance(session, list) or not all(isinstance(t, dict) for t in session):
            raise HarnessError(f"{where}: haystack_sessions[{s_index}] must be a list of turn objects")
        for r_index, turns in enumerate(split_rounds(session)):
            given = {t["round_id"] for t in turns if "round_id" in t}
            if len(given) > 1:
                raise HarnessError(f"{where}: session {session_id!r} round {r_index} mixes round_ids {sorted(given)}")
            doc_id = str(given.pop()) if given else f"{qid}__{session_id}__{r_index}"
            if doc_id in seen:
                raise HarnessError(f"{where}: duplicate round id {doc_id!r}")
            seen.add(doc_id)
            meta = {
                "session_id": str(session_id),
                "session_index": s_index,
                "date": str(date),
                "round_index": r_index,
                "turns": [_clean_turn(t) for t in turns],
            }
            docs.append(Document(id=doc_id, text=round_text(turns), meta=meta))
            if any(t.get("has_answer") is True for t in turns):
                gold[doc_id] = 1
    query = Query(
        id=qid,
        text=str(entry["question"]),
        meta={"question_type": str(entry["question_type"]), "question_date": str(entry["question_date"])},
    )
    return Instance(
        query=query,
        candidates=docs,
        gold=gold,
        answer=entry["answer"],
        meta={
            "order": "natural",
            "question_type": str(entry["question_type"]),
            "question_date": str(entry["question_date"]),
            "abstention": "_abs" in qid,
            "answer_session_ids": list(entry.get("answer_session_ids") or []),
        },
    )


def render_history(docs: Sequence[Document]) -> str:
    """The ``History Chats`` block: rounds regrouped by session, sessions sorted by date.

    Within a session the rounds keep their chronological order; sessions are ordered by their
    date string (a stable sort over the haystack order, like QRHead's ``list.sort``).
    """
    sessions: dict[int, tuple[str, list[tuple[int, list[dict[str, Any]]]]]] = {}
    for doc in docs:
        meta = doc.meta
        try:
            key, date, r_index, turns = meta["session_index"], meta["date"], meta["round_index"], meta["turns"]
        except KeyError as exc:
            raise HarnessError(f"document {doc.id!r} is not a LongMemEval round (no {exc.args[0]!r} in meta)") from None
        sessions.setdefault(key, (date, []))[1].append((r_index, list(turns)))
    ordered = sorted(sessions.items(), key=lambda item: (item[1][0], item[0]))
    parts = []
    for number, (_, (date, rounds)) in enumerate(ordered, start=1):
        turns = [turn for _, round_turns in sorted(rounds, key=lambda r: r[0]) for turn in round_turns]
        parts.append(SESSION_TEMPLATE.format(index=number, date=date, content=json.dumps(turns)))
    return "".join(parts)


class LongMemEvalTask(Task):
    """``longmemeval``: LongMemEval-S rounds, recall@k variants, judged QA accuracy.

    Parameters: ``split`` (``eval`` | ``detect`` | ``all``), ``revision`` (hub revision),
    ``limit`` (first N questions, for smoke runs).
    """

    family: ClassVar[str] = "longmemeval"
    main_metric: ClassVar[str] = "R@5"
    metrics: ClassVar[tuple[str, ...]] = ("R@3", "R@5", "R@10", "R_all@5", "R_any@5", "nDCG@10")
    supports_generation: ClassVar[bool] = True
    #: Generation settings of the paper (docs/PROTOCOL.md §4.2).
    max_tokens: ClassVar[int] = 500
    judge_max_tokens: ClassVar[int] = 10

    parameters: ClassVar[frozenset[str]] = frozenset({"limit", "revision", "split"})

    def __init__(self, name: str | None = None, data: str | None = None, **params: Any) -> None:
        super().__init__(name=name, data=data, **params)
        split = str(params.get("split", "eval"))
        if split not in SPLITS:
            raise HarnessError(f"longmemeval: unknown split {split!r} (known: {', '.join(SPLITS)})")
        self.split = split

    # -- loading -------------------------------------------------------------------------------
    def _source_file(self) -> tuple[Path, str]:
        if self.data is None:
            from huggingface_hub import hf_hub_download
            from huggingface_hub.errors import EntryNotFoundError

            revision = self.params.get("revision")
            require_hub("task longmemeval", f"{HUB_REPO}/{HUB_FILE}", "pass --data FILE with the LongMemEval JSON file")
            try:
                path = hf_hub_download(HUB_REPO, HUB_FILE, repo_type="dataset", revision=revision)
            except (OSError, ValueError, EntryNotFoundError) as exc:  # network, offline mode, missing revision
                raise HarnessError(
                    f"longmemeval: cannot download {HUB_REPO}/{HUB_FILE} ({type(exc).__name__}: {exc}); "
                    "pass --data with a local copy"
                ) from None
            return Path(path), f"hf:{HUB_REPO}/{HUB_FILE}" + (f"@{revision}" if revision else "")
        path = Path(self.data)
        if path.is_dir():
            for candidate in LOCAL_NAMES[self.split]:
                if (path / candidate).is_file():
                    return path / candidate, str(path / candidate)
            raise HarnessError(f"{path}: no LongMemEval file found (looked for {', '.join(LOCAL_NAMES[self.split])})")
        if not path.is_file():
            raise HarnessError(f"{path}: no such file or folder")
        return path, str(path)

    def load(self) -> TaskData:
        path, source = self._source_file()
        entries = read_json(path)
        if not isinstance(entries, list):
            raise HarnessError(f"{path}: expected a JSON list of questions, got {type(entries).__name__}")
        if (
            entries
            and isinstance(entries[0], dict)
            and "paragraphs" in entries[0]
            and "haystack_sessions" not in entries[0]
        ):
            raise HarnessError(
                f"{path}: this is the QRHead/ICR paragraphs format, not LongMemEval's; use --task icr-json "
                "for retrieval on it, or the original LongMemEval file (with sessions and dates) here"
            )
        instances: list[Instance] = []
        ids: set[str] = set()
        for number, entry in enumerate(entries):
            where = f"{path}: question {number}"
            if not isinstance(entry, dict):
                raise HarnessError(f"{where}: expected an object, got {type(entry).__name__}")
            if "question_id" in entry:
                where += f" ({entry['question_id']})"
            qtype = entry.get("question_type")
            if self.split == "detect" and qtype != DETECT_TYPE:
                continue
            if self.split == "eval" and qtype == DETECT_TYPE:
                continue
            instance = question_to_instance(entry, where)
            if instance.query.id in ids:
                raise HarnessError(f"{where}: duplicate question_id {instance.query.id!r}")
            ids.add(instance.query.id)
            instances.append(instance)
        limit = self.params.get("limit")
        if limit is not None:
            instances = instances[: int(limit)]
        if not instances:
            raise HarnessError(f"{path}: no questions for split {self.split!r}")
        empty = [inst.query.id for inst in instances if not inst.gold]
        if empty:
            log.warning(
                "longmemeval: %d of %d questions have no evidence round (has_answer); they stay in with an "
                "empty gold set (R_all counts them as 1, R@k and R_any as 0), e.g. %s",
                len(empty),
                len(instances),
                ", ".join(empty[:3]),
            )
        types: dict[str, int] = {}
        for inst in instances:
            types[inst.meta["question_type"]] = types.get(inst.meta["question_type"], 0) + 1
        provenance = {
            "source": source,
            "file": path.name,
            "sha256": {path.name: sha256_file(path)},
            "split": self.split,
            "n_queries": len(instances),
            "n_documents": sum(len(inst.candidates) for inst in instances),
            "n_empty_gold": len(empty),
            "empty_gold_ids": empty,
            "n_abstention": sum(1 for inst in instances if inst.meta["abstention"]),
            "question_types": dict(sorted(types.items())),
            "document": "round = user turn + following assistant turns; id {question_id}__{session_id}__{round_index} (0-based); text 'role: content' lines",
        }
        if limit is not None:
            provenance["limit"] = int(limit)
        return TaskData.from_instances(instances, self.metrics, provenance)

    # -- generation ----------------------------------------------------------------------------
    def generation_prompt(self, instance: Instance, docs: Sequence[Document]) -> list[dict[str, str]]:
        """The paper's non-CoT prompt over ``docs`` regrouped by session and sorted by date."""
        prompt = PROMPT_TEMPLATE.format(
            history=render_history(docs),
            date=instance.meta.get("question_date", instance.query.meta.get("question_date", "")),
            question=instance.query.text,
        )
        return [{"role": "user", "content": prompt}]

    def judge_prompts(self, instances: Sequence[Instance], outputs: Sequence[str]) -> list[list[dict[str, str]]]:
        """The judge's chat messages for each (instance, output)."""
        return [
            [
                {
                    "role": "user",
                    "content": longmemeval_judge_prompt(
                        inst.meta["question_type"], inst.query.id, inst.query.text, str(inst.answer), output or ""
                    ),
                }
            ]
            for inst, output in zip(instances, outputs)
        ]

    def score_generations(
        self, instances: Sequence[Instance], outputs: Sequence[str], judge: Any | None = None
    ) -> dict[str, dict[str, float]]:
        """Judged accuracy (overall, per type, abstention) or, without a judge, ``answer_contains``.

        A judge call that fails (its ``Generation.error`` is set) counts as incorrect and is
        flagged by ``judge_failed`` = 1.0 for that query.
        """
        if len(instances) != len(outputs):
            raise HarnessError(f"longmemeval: {len(instances)} instances but {len(outputs)} outputs")
        scores: dict[str, dict[str, float]] = {}
        if judge is None:
            for inst, output in zip(instances, outputs):
                value = answer_contained(output or "", str(inst.answer))
                scores[inst.query.id] = {
                    "answer_contains": value,
                    f"answer_contains/{inst.meta['question_type']}": value,
                }
            return scores
        for inst in instances:  # unknown types fail before any judge call
            judge_template_name(inst.meta["question_type"], inst.query.id)
        verdicts = judge.generate(
            self.judge_prompts(instances, outputs), max_tokens=self.judge_max_tokens, temperature=0.0
        )
        if len(verdicts) != len(instances):
            raise HarnessError(f"longmemeval judge returned {len(verdicts)} answers for {len(instances)} prompts")
        for inst, verdict in zip(instances, verdicts):
            failed = bool(getattr(verdict, "error", None))
            text = getattr(verdict, "text", verdict if isinstance(verdict, str) else None)
            value = 0.0 if failed else float(judge_says_yes(text))
            row = {"accuracy": value, f"accuracy/{inst.meta['question_type']}": value, "judge_failed": float(failed)}
            if inst.meta.get("abstention"):
                row["accuracy/abstention"] = value
            scores[inst.query.id] = row
        n_failed = sum(int(row["judge_failed"]) for row in scores.values())
        if n_failed:
            log.warning(
                "longmemeval: the judge failed on %d of %d answers (counted as incorrect)", n_failed, len(scores)
            )
        return scores
