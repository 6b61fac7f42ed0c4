"""``harness detect`` as a function: find a model's query-focused retrieval heads on a task and
write the head file that ``--heads FILE`` accepts.

The detection queries are prepared as a run prepares them (:func:`harness.runner.prepare`:
sampling, excluded queries, first-stage candidates, the word cut); each query's head values are
appended to ``<cache>/detect/<hash>.jsonl`` so a killed detection resumes; the head file records
the model, revision, data, objective, number of queries, seed and the score of every head
(docs/PROTOCOL.md §2). The command (:mod:`harness.commands.detect`) and ``harness bench
speed-quality`` (:mod:`harness.benchmarks.speed_quality_detect`) both call :func:`detect_head_file`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import atomic_write_json, cache_dir, check_writable, sha256_json
from harness.resume import ResumeFile
from harness.runner import RunConfig, prepare

OBJECTIVES = ("ndcg", "gold-mass", "retrieval-head")


@dataclasses.dataclass(frozen=True)
class Detection:
    """One detection: the options of ``harness detect`` (see its ``--help``), checked on use.

    ``n_queries`` 0 takes every query; ``truncate_words`` None the task's own cut; ``max_layer``
    scores only the heads of layers ``0..max_layer``; ``shuffle`` shuffles the candidates with
    ``seed`` (``--no-shuffle`` turns it off).
    """

    model: str
    task: str
    output: str
    data: str | None = None
    task_params: dict[str, Any] = dataclasses.field(default_factory=dict)
    objective: str = "ndcg"
    n_queries: int = 128
    exclude_queries: str | None = None
    top: int = 16
    seed: int = 42
    first_stage: str = "bm25"
    depth: int = 20
    truncate_words: int | None = None
    shuffle: bool = True
    max_layer: int | None = None
    dtype: str | None = None
    device: str | None = None
    show_progress: bool = True


def detect_head_file(d: Detection) -> dict[str, Any]:
    """Detect, write the head file to ``d.output`` and return it."""
    from harness.attention.detection import detect_heads

    check_writable(d.output)
    if d.depth <= 0:
        raise HarnessError(f"--depth must be a positive number of candidates, got {d.depth}")
    config = RunConfig(
        task=d.task, retriever="", data=d.data, task_params=dict(d.task_params), first_stage=d.first_stage,
        depth=d.depth, max_queries=d.n_queries, seed=d.seed, truncate_words=d.truncate_words,
        show_progress=d.show_progress, exclude_queries=d.exclude_queries,
    )
    prepared = prepare(config)
    task, data, queries, instances = prepared.task, prepared.data, prepared.queries, prepared.instances
    qrels = prepared.qrels()
    resume = ResumeFile(cache_dir("detect") / f"{_detection_hash(d, task.id, data.provenance, instances, prepared.words)}.jsonl")
    if d.objective == "retrieval-head":
        head_file = _retrieval_heads(d, task, data.provenance, instances, resume)
    else:
        head_file = detect_heads(
            d.model, instances, qrels, objective=d.objective, top=d.top, shuffle=d.shuffle,
            seed=d.seed, truncate_words=prepared.words, data=task.id, dtype=d.dtype, device=d.device,
            show_progress=d.show_progress, resume=resume, max_layer=d.max_layer,
        )
    head_file["task"] = {"id": task.id, **{k: v for k, v in data.provenance.items() if k in ("source", "sha256", "split")}}
    if d.exclude_queries:
        head_file["excluded_queries_from"] = d.exclude_queries
    head_file["query_ids"] = [q.id for q in queries]
    head_file["query_ids_sha256"] = sha256_json(head_file["query_ids"])
    if data.corpus is not None:
        head_file["first_stage"] = {"name": d.first_stage, "depth": d.depth}
    atomic_write_json(Path(d.output), head_file)
    return head_file


def summary(head_file: dict[str, Any]) -> str:
    """``top 16 heads of MODEL on TASK (N queries): 14-22, ...``: what ``harness detect`` prints."""
    best = ", ".join(h for h, _ in head_file["heads"][: head_file["top"]])
    task = head_file["task"]["id"]
    return f"top {head_file['top']} heads of {head_file['model']} on {task} ({head_file['n']} queries): {best}"


def _retrieval_heads(d: Detection, task: Any, provenance: dict, instances: list, resume: ResumeFile) -> dict:
    """RetHead detection (harness.attention.retrieval_heads): the task's generation prompt over every
    candidate, the task's answer (NIAH: the needle's answer part) as the scored span."""
    from harness.attention.retrieval_heads import detect_retrieval_heads

    if d.max_layer is not None:
        raise HarnessError("--max-layer does not apply to --objective retrieval-head (answering needs every layer)")
    if not getattr(task, "supports_generation", False) or not instances:
        raise HarnessError(f"--objective retrieval-head needs a task with generation prompts and instances (niah); got {task.id}")
    head_file = detect_retrieval_heads(
        d.model, instances, prompt=lambda inst: task.generation_prompt(inst, list(inst.candidates)),
        answer=getattr(task, "answer", None), top=d.top, seed=d.seed, data=task.id, dtype=d.dtype,
        device=d.device, show_progress=d.show_progress, resume=resume,
    )
    if "lengths" in provenance and "depths" in provenance:
        head_file["grid"] = {"lengths": provenance["lengths"], "depths": provenance["depths"],
                             "unit": provenance.get("unit"), "prompt": provenance.get("prompt")}
    return head_file


def _detection_hash(d: Detection, task_id: str, provenance: dict, instances: list, words: int | None) -> str:
    """Key of the resume file: everything that changes a query's head values."""
    return sha256_json({
        "model": d.model, "task": task_id, "data": provenance.get("sha256"), "objective": d.objective,
        "seed": d.seed, "shuffle": d.shuffle, "truncate_words": words,
        "dtype": d.dtype, "first_stage": d.first_stage, "depth": d.depth,
        **({"max_layer": d.max_layer} if d.max_layer is not None else {}),
        **({"prompts": sha256_json([[i.answer, [doc.text for doc in i.candidates]] for i in instances]),
            "niah": {k: provenance.get(k) for k in ("needle", "question", "prompt", "answer")}}
           if d.objective == "retrieval-head" else {}),
        "instances": [[inst.query.id, inst.query.text, [doc.id for doc in inst.candidates]] for inst in instances],
    })[:24]
