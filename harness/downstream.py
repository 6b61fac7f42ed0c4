"""The generation stage of a run: answer each query from its top-k documents, then score.

For every instance the documents are either

- the top ``top_k`` candidates of the run, ordered by score descending with ties broken by
  document id (the deterministic ``(-score, doc_id)`` order of TREC run files), or
- all candidates (``full_context=True``: the "full context" baseline of the paper).

The task turns them into chat messages (:meth:`harness.types.Task.generation_prompt`: it
decides the order inside the prompt, e.g. chronological for LongMemEval), the generator answers
(greedy, cached on disk), and the task scores the answers
(:meth:`harness.types.Task.score_generations`, with the optional LM ``judge``). A generation
that failed (``Generation.error``) is scored as the empty answer and counted, never dropped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from harness.errors import HarnessError
from harness.generation import Generator
from harness.io import sha256_json
from harness.results import mean_metrics
from harness.types import Document, Instance, Run, Task

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256


def top_documents(instance: Instance, scores: dict[str, float] | None, k: int) -> list[Document]:
    """The ``k`` best candidates of ``instance`` under ``scores``, in ``(-score, doc_id)`` order.

    Candidates without a score rank after every scored one (in ``(doc_id)`` order). Run entries
    that are not candidates of the instance are ignored.
    """
    if k < 1:
        raise HarnessError(f"--top-k must be >= 1, got {k}")
    scores = scores or {}
    def key(doc: Document) -> tuple[int, float, str]:
        value = scores.get(doc.id)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return (1, 0.0, doc.id)
        return (0, -float(value), doc.id)
    return sorted(instance.candidates, key=key)[:k]


def generate_and_score(
    task: Task,
    instances: Sequence[Instance],
    run: Run,
    generator: Generator,
    *,
    top_k: int,
    full_context: bool,
    judge: Generator | None,
    max_tokens: int | None = None,
    show_progress: bool = True,
) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, Any]]:
    """Generate answers for ``instances`` and score them.

    Returns ``(aggregate, per_query, info)``: the mean of each answer metric, the task's
    per-unit metrics (``{query_id: {"accuracy": 1.0}}``; CLIPPER returns one entry per claim
    pair), and ``info`` with ``n_prompts``, ``generation_failures`` (count),
    ``failed_query_ids``, ``cached`` (count of cache hits), ``empty_contexts`` (queries with no
    document to answer from) and ``records`` (one per query: the document ids used, the prompt's
    SHA-256, the answer, its error and finish reason).
    """
    if not getattr(task, "supports_generation", False):
        raise HarnessError(f"task {task.id!r} has no downstream QA; drop --generate")
    if not full_context and (top_k is None or top_k < 1):
        raise HarnessError(f"--generate needs --top-k >= 1 (or --full-context), got {top_k}")
    if max_tokens is None:
        max_tokens = getattr(task, "max_tokens", None) or DEFAULT_MAX_TOKENS
    instances = list(instances)
    contexts: list[list[Document]] = []
    for inst in instances:
        docs = list(inst.candidates) if full_context else top_documents(inst, run.get(inst.query.id), top_k)
        contexts.append(docs)
    prompts = [task.generation_prompt(inst, docs) for inst, docs in zip(instances, contexts)]
    generations = generator.generate(prompts, max_tokens=max_tokens, show_progress=show_progress)
    outputs = [g.text if g.error is None else "" for g in generations]
    failed = [inst.query.id for inst, g in zip(instances, generations) if g.error is not None]
    if failed:
        log.warning("%d of %d generations failed and are scored as empty answers (first: %s)",
                    len(failed), len(instances), failed[0])
    per_query = task.score_generations(instances, outputs, judge)
    records = [
        {"query_id": inst.query.id, "doc_ids": [d.id for d in docs], "prompt_sha256": sha256_json(prompt),
         "output": g.text, "error": g.error, "cached": g.cached, "finish_reason": g.finish_reason}
        for inst, docs, prompt, g in zip(instances, contexts, prompts, generations)
    ]
    info: dict[str, Any] = {
        "n_prompts": len(prompts),
        "generation_failures": len(failed),
        "failed_query_ids": failed,
        "cached": sum(1 for g in generations if g.cached),
        "empty_contexts": sum(1 for docs in contexts if not docs),
        "records": records,
    }
    return mean_metrics(per_query), per_query, info
