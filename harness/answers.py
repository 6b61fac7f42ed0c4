"""Re-score the answers a result records: ``harness validate --answers``.

A generation result keeps every answer it scored (``generation.records[*].output``, the empty
answer where the generation failed). Its answer metrics (EM/F1, ROUGE-1 recall, CLIPPER's claim
accuracy…) are not functions of the run and qrels, so :func:`harness.runfiles.check_against_runs`
cannot check them; this module can, given the task's data: it rebuilds the task from the run
spec the result records (:class:`harness.spec.RunSpec`; registered task names only, never code a
file names), checks that the data has the sha256 the result records, scores the recorded answers
with the task's own :meth:`~harness.types.Task.score_generations`, and compares each
per-query value with the file's. LM-judged answers (a ``judge``) are not re-scored: that would mean
calling the judge again.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.results import Result


def _task_of(result: Result, where: str, trust_code: bool = False) -> Any:
    """The task the result evaluated, rebuilt from its recorded :class:`~harness.spec.RunSpec`
    (its task id, data path and parameters) through the registry. A task named as
    ``module:Class`` in the file is code the file names: refused unless ``trust_code``."""
    from harness.registry import make_task, registered_task

    spec = result.run_spec()
    if not trust_code and not registered_task(spec.task):
        raise HarnessError(f"{where}: task {spec.task!r} is not a registered task name; a result file never names "
                           "code to import (pass --trust-code to allow it)")
    data = None if spec.data is None else str(spec.data)
    return make_task(spec.task, data=data, **dict(spec.task_params))


def rescore_answers(result: Result, path: str | Path, tolerance: float = 1e-9,
                    trust_code: bool = False) -> tuple[int, list[str]]:
    """Re-score the recorded answers of ``result`` against its task's gold answers.

    Raises :class:`HarnessError` when the data differs from the recorded data, an answer is
    missing, or a per-query answer metric differs from the re-scored one by more than
    ``tolerance``; returns the number of answers re-scored and warnings (answers judged by an
    LM are not re-scored).
    """
    where = str(path)
    generation = result.generation or {}
    records = generation.get("records")
    if result.kind != "measured" or not records:
        return 0, []
    if generation.get("judge"):
        return 0, ["answers judged by an LM: not re-scored (that would call the judge again)"]
    task = _task_of(result, where, trust_code)
    try:
        data = task.load()
    except HarnessError as exc:
        raise HarnessError(f"{where}: cannot load its task data to re-score the answers ({exc}); run from the "
                           "folder the recorded command ran in") from None
    recorded, loaded = result.task.sha256, data.provenance.get("sha256")
    if recorded and recorded != loaded:
        raise HarnessError(f"{where}: the task data found now ({task.id}, sha256 {loaded}) is not the data the "
                           f"result ran on (sha256 {recorded})")
    if data.instances is None:
        raise HarnessError(f"{where}: task {task.id!r} has no instances with answers to re-score")
    by_id = {inst.query.id: inst for inst in data.instances}
    missing = [r.get("query_id") for r in records if r.get("query_id") not in by_id]
    if missing:
        raise HarnessError(f"{where}: {len(missing)} recorded answers are for queries the task data lacks, "
                           f"e.g. {missing[0]!r}")
    instances = [by_id[r["query_id"]] for r in records]
    outputs = [str(r.get("output") or "") if r.get("error") is None else "" for r in records]
    rescored = task.score_generations(instances, outputs, None)
    per_query = result.per_query or {}
    for unit, values in rescored.items():
        kept = per_query.get(unit)
        if kept is None:
            raise HarnessError(f"{where}: per_query lacks {unit!r}, which its recorded answer scores")
        for metric, value in values.items():
            if metric not in kept or not math.isclose(kept[metric], value, rel_tol=0, abs_tol=tolerance):
                raise HarnessError(f"{where}: per_query[{unit!r}][{metric!r}] is {kept.get(metric)!r}, but its "
                                   f"recorded answer scores {value!r}")
    answer_metrics = {metric for values in rescored.values() for metric in values}
    extra = sorted(unit for unit, values in per_query.items() if unit not in rescored and answer_metrics & set(values))
    if extra:
        raise HarnessError(f"{where}: per_query has answer metrics for {len(extra)} units without a recorded answer, "
                           f"e.g. {extra[0]!r}")
    return len(records), []
