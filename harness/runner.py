"""Run one (task, retriever) cell end to end and write its result file.

Steps: load the task -> choose the queries (sampling) -> build instances (a first stage over
the corpus for re-rankers) -> score them, appending each query's scores to a resume file as it
finishes -> metrics -> optional downstream generation -> result file (atomic).

A run killed mid-way and started again with the same configuration skips the queries already
in its resume file (``<cache>/runs/<config hash>.jsonl``) and ends with the same result.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import provenance
from harness.errors import HarnessError, unknown_name
from harness.io import atomic_write_json, cache_dir, check_writable, sha256_json
from harness.registry import make_task, retriever_class
from harness.results import SCHEMA_VERSION, default_output_path, mean_metrics
from harness.types import Instance, Qrels, Query, Retriever, Run, Task, TaskData

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """Everything that defines a run (and its config hash)."""

    task: str
    retriever: str
    data: str | None = None
    model: str | None = None
    retriever_params: dict[str, Any] = field(default_factory=dict)
    task_params: dict[str, Any] = field(default_factory=dict)
    first_stage: str | None = None
    depth: int | None = None
    max_queries: int | None = None
    seed: int = 42
    #: A head file (its ``query_ids``) or a text file of query ids (one per line) to leave out,
    #: e.g. the queries used for head detection.
    exclude_queries: str | None = None
    truncate_words: int | None = None
    generate: bool = False
    generator: str | None = None
    judge: str | None = None
    generator_options: dict[str, Any] = field(default_factory=dict)
    judge_options: dict[str, Any] = field(default_factory=dict)
    top_k: int = 5
    full_context: bool = False
    max_tokens: int | None = None
    output: str | None = None
    save_run: str | None = None
    show_progress: bool = True
    results_root: str = "results"
    #: ``(index, count)``: evaluate only the queries ``query_ids[index::count]`` (see :mod:`harness.shards`).
    shard: tuple[int, int] | None = None


def build_retriever(name: str, model: str | None = None, params: dict[str, Any] | None = None) -> Retriever:
    """Instantiate a registered retriever, checking ``params`` against its constructor."""
    cls = retriever_class(name)
    params = dict(params or {})
    if model is not None:
        params["model"] = model
    signature = inspect.signature(cls.__init__)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    declared = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
    if not accepts_any:
        for key in params:
            if key not in declared:
                if key == "model":
                    raise HarnessError(f"retriever {name!r} takes no --model")
                raise unknown_name(f"parameter of retriever {name!r}", key, declared)
    try:
        return cls(**params)
    except TypeError as exc:
        raise HarnessError(f"retriever {name!r}: {exc}") from None


def _task_default(task: Task, attribute: str, value: Any) -> Any:
    return value if value is not None else getattr(task, attribute, None)


def select_queries(task: Task, data: TaskData, max_queries: int | None, seed: int) -> tuple[list[Query], int]:
    """The evaluated queries (judged ones, sampled down to ``max_queries``; 0 = all) and how many were available."""
    judged = [q for q in data.queries if q.id in data.qrels] if data.corpus is not None else list(data.queries)
    available = len(judged)
    limit = _task_default(task, "default_max_queries", max_queries)
    # The sampling unit is the query, or the task's ``sample_group`` (CLIPPER's claim pairs:
    # paired queries are drawn together, never half a pair).
    group_key = getattr(task, "sample_group", None)
    def unit(q: Query) -> str:
        return str(q.meta.get(group_key, q.id)) if group_key else q.id

    units = list(dict.fromkeys(unit(q) for q in judged))
    if limit and len(units) > limit:
        from tasks.sampling import sample_queries

        keep = set(sample_queries(units, limit, seed))
        judged = [q for q in judged if unit(q) in keep]
        log.info("sampled %d of the task's %d %s (%d queries) with seed %d",
                 limit, len(units), f"{group_key} groups" if group_key else "queries", len(judged), seed)
    if not judged:
        raise HarnessError(f"task {task.id!r} has no queries to evaluate")
    return judged, available


def read_query_id_file(path: str) -> set[str]:
    """Query ids from a head file (its ``query_ids``) or a text file with one id per line."""
    from harness.io import read_text

    text = read_text(path)
    if path.endswith(".json"):
        try:
            ids = json.loads(text).get("query_ids")
        except (json.JSONDecodeError, AttributeError):
            raise HarnessError(f"{path}: expected a JSON object with a 'query_ids' list") from None
        if not isinstance(ids, list):
            raise HarnessError(f"{path}: missing field 'query_ids'")
        return {str(i) for i in ids}
    return {line.strip() for line in text.splitlines() if line.strip()}


def truncate_words(text: str, words: int | None) -> str:
    """The first ``words`` whitespace-separated words of ``text`` (PROTOCOL: 400 for BEIR)."""
    if not words:
        return text
    parts = text.split()
    return text if len(parts) <= words else " ".join(parts[:words])


def _top_ids(scores: dict[str, float], k: int | None = None) -> list[str]:
    ranked = sorted(scores, key=lambda d: (-scores[d], d))
    return ranked if k is None else ranked[:k]


def build_instances(
    queries: Sequence[Query], data: TaskData, first_run: Run, depth: int, words: int | None
) -> list[Instance]:
    """Instances whose candidates are each query's first-stage top ``depth``, best first."""
    assert data.corpus is not None
    instances = []
    for query in queries:
        docs = []
        for doc_id in _top_ids(first_run.get(query.id, {}), depth):
            doc = data.corpus[doc_id]
            docs.append(replace(doc, text=truncate_words(doc.text, words)) if words else doc)
        instances.append(Instance(query=query, candidates=docs, gold=dict(data.qrels.get(query.id, {}))))
    return instances


class ResumeFile:
    """Append-only JSONL of finished queries; a half-written last line (a kill) is ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("%s: ignoring a truncated line (interrupted run)", path)
                    continue
                self.done[row["qid"]] = row
            if self.done:
                log.info("resuming: %d queries already scored (%s)", len(self.done), path)
        self._handle = None

    def append(self, qid: str, scores: dict[str, float], stats: dict[str, float] | None) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Close a half-written line left by a kill before appending.
            if self.path.exists() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
                with open(self.path, "ab") as fix:
                    fix.write(b"\n")
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open across appends; close())
        row = {"qid": qid, "scores": scores, "stats": stats or {}}
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.done[qid] = row

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _progress(items: Sequence[Any], show: bool, desc: str) -> Iterator[Any]:
    if not show or os.environ.get("DISABLE_TQDM") == "1":
        return iter(items)
    from tqdm.auto import tqdm

    return iter(tqdm(items, desc=desc, unit="q"))


def score_with_resume(
    retriever: Retriever, instances: list[Instance], resume: ResumeFile, show_progress: bool, chunk: int = 8
) -> Run:
    """Score the instances not yet in ``resume``, appending each as soon as it is scored."""
    todo = [inst for inst in instances if inst.query.id not in resume.done]
    retriever.check(todo)
    try:
        chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
        bar = _progress(chunks, show_progress and len(chunks) > 1, f"scoring ({retriever.name})")
        for batch in bar:
            for inst, scores in zip(batch, retriever.score(batch), strict=True):
                stats = getattr(retriever, "last_stats", {}).get(inst.query.id)
                resume.append(inst.query.id, {d: float(s) for d, s in scores.items()}, stats)
    finally:
        resume.close()
    return {inst.query.id: resume.done[inst.query.id]["scores"] for inst in instances}


def _silence_library_progress() -> None:
    """Switch off the progress bars of transformers / huggingface_hub / datasets too."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def execute(config: RunConfig) -> tuple[dict[str, Any], Path]:
    """Run ``config``; return the result dictionary and the path it was written to."""
    from harness.first_stage import cached_search
    from harness.metrics import evaluate

    started = time.time()
    if not config.show_progress or os.environ.get("DISABLE_TQDM") == "1":
        _silence_library_progress()
    if config.output:
        check_writable(config.output)
    if config.save_run:
        check_writable(config.save_run)
    if config.depth is not None and config.depth <= 0:
        raise HarnessError(f"--depth must be a positive number of candidates, got {config.depth}")
    if config.top_k <= 0:
        raise HarnessError(f"--top-k must be positive, got {config.top_k}")
    task = make_task(config.task, data=config.data, **config.task_params)
    retriever = build_retriever(config.retriever, config.model, config.retriever_params)
    generator = judge = None
    if config.generate:
        if not task.supports_generation:
            raise HarnessError(f"task {task.id!r} has no downstream QA; drop --generate")
        if not config.generator:
            raise HarnessError("--generate needs --generator BACKEND:MODEL (e.g. hf:smollm2-135m)")
        from harness.generation import make_generator

        generator = make_generator(config.generator, **config.generator_options)
        judge = make_generator(config.judge, **config.judge_options) if config.judge else None

    t0 = time.time()
    data = task.load()
    load_seconds = time.time() - t0
    if config.exclude_queries:
        excluded = read_query_id_file(config.exclude_queries)
        kept = [q for q in data.queries if q.id not in excluded]
        log.info("left out %d queries listed in %s", len(data.queries) - len(kept), config.exclude_queries)
        data.queries = kept
        if data.instances is not None:
            data.instances = [inst for inst in data.instances if inst.query.id not in excluded]
    queries, n_available = select_queries(task, data, config.max_queries, config.seed)
    all_query_ids = [q.id for q in queries]
    if config.shard:
        index, count = config.shard
        keep = set(all_query_ids[index::count])
        shard_queries = [q for q in queries if q.id in keep]
    else:
        shard_queries = queries
    query_ids = [q.id for q in shard_queries]
    qrels: Qrels = {q: data.qrels.get(q, {}) for q in query_ids}
    all_qrels: Qrels = {q: data.qrels.get(q, {}) for q in all_query_ids}

    first_stage_info: dict[str, Any] | None = None
    words = config.truncate_words
    t0 = time.time()
    if data.corpus is not None:
        n_docs = len(data.corpus)
        reranking = config.first_stage is not None or not retriever.first_stage
        if reranking:
            fs_name = config.first_stage or "bm25"
            depth = _task_default(task, "default_depth", config.depth) or 100
            words = _task_default(task, "default_truncate_words", config.truncate_words)
            if depth > n_docs:
                raise HarnessError(f"--depth {depth} is larger than the corpus ({n_docs} documents)")
            fs = build_retriever(fs_name)
            # The first stage covers every selected query (shards included), so its ceiling is the same
            # in every shard and in an unsharded run.
            fs_run = cached_search(fs, data.corpus, queries, depth)
            fs_metrics = evaluate(all_qrels, fs_run, [f"R@{depth}"], ignore_identical_ids=data.ignore_identical_ids)
            first_stage_info = {
                "name": fs_name, "params": fs.meta.get("params", {}), "depth": depth,
                "recall": fs_metrics.aggregate, "run_sha256": sha256_json(fs_run),
            }
            instances = build_instances(shard_queries, data, fs_run, depth, words)
        else:
            depth = config.depth or min(1000, n_docs)
            if depth > n_docs:
                raise HarnessError(f"--depth {depth} is larger than the corpus ({n_docs} documents)")
            instances = []
    else:
        assert data.instances is not None
        keep = set(query_ids)
        instances = [inst for inst in data.instances if inst.query.id in keep]
        if words:
            for inst in instances:
                inst.candidates = [replace(d, text=truncate_words(d.text, words)) for d in inst.candidates]
    prepare_seconds = time.time() - t0

    config_hash = sha256_json({
        "schema": SCHEMA_VERSION, "task": task.id, "provenance": data.provenance, "queries": all_query_ids,
        "retriever": retriever.meta, "first_stage": first_stage_info and {k: v for k, v in first_stage_info.items() if k != "recall"},
        "truncate_words": words,
    })
    t0 = time.time()
    stats: dict[str, dict[str, float]] = {}
    if instances or data.corpus is None:
        shard_tag = f".shard-{config.shard[0]}-of-{config.shard[1]}" if config.shard else ""
        resume = ResumeFile(cache_dir("runs") / f"{config_hash}{shard_tag}.jsonl")
        run = score_with_resume(retriever, instances, resume, config.show_progress)
        stats = {qid: row["stats"] for qid, row in resume.done.items() if row.get("stats") and qid in qrels}
    else:
        assert data.corpus is not None
        run = cached_search(retriever, data.corpus, shard_queries, depth)
    score_seconds = time.time() - t0

    result_metrics = evaluate(qrels, run, list(data.metrics), ignore_identical_ids=data.ignore_identical_ids)
    per_query = {qid: dict(result_metrics.per_query.get(qid, {})) for qid in query_ids}
    for qid, values in stats.items():
        per_query[qid].update(values)

    generation_info = None
    gen_seconds = 0.0
    if generator is not None:
        from harness.downstream import generate_and_score

        t0 = time.time()
        _, gen_per_query, info = generate_and_score(
            task, instances, run, generator, top_k=config.top_k, full_context=config.full_context,
            judge=judge, max_tokens=_task_default(task, "max_tokens", config.max_tokens), show_progress=config.show_progress,
        )
        gen_seconds = time.time() - t0
        for qid, values in gen_per_query.items():
            per_query.setdefault(qid, {}).update(values)
        generation_info = {
            "generator": generator.meta, "judge": judge.meta if judge else None, "top_k": config.top_k,
            "full_context": config.full_context, "max_tokens": _task_default(task, "max_tokens", config.max_tokens), **info,
        }
        config_hash = sha256_json({"retrieval": config_hash, "generation": {
            k: generation_info[k] for k in ("generator", "judge", "top_k", "full_context", "max_tokens")}})

    retriever_meta = dict(retriever.meta)
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "measured",
        "task": {
            "id": task.id, **{k: v for k, v in data.provenance.items() if k != "id"},
            "n_queries": len(query_ids), "n_available": n_available, "max_queries": _task_default(task, "default_max_queries", config.max_queries),
            "seed": config.seed, "ignore_identical_ids": data.ignore_identical_ids,
            "excluded_queries_from": config.exclude_queries,
            "query_ids": query_ids,
        },
        "retriever": retriever_meta,
        "first_stage": first_stage_info,
        "truncate_words": words,
        "generation": generation_info,
        "metrics": mean_metrics(per_query),
        "per_query": per_query,
        "run_sha256": sha256_json(run),
        "config_hash": config_hash,
        "environment": provenance.environment(),
        "timing": {
            "load_seconds": round(load_seconds, 3), "prepare_seconds": round(prepare_seconds, 3),
            "score_seconds": round(score_seconds, 3), "generation_seconds": round(gen_seconds, 3),
            "total_seconds": round(time.time() - started, 3),
        },
        "date": provenance.now_iso(),
    }
    # Shards share the default name of the whole run (shard_path adds the suffix).
    whole = {**result, "task": {**result["task"], "query_ids": all_query_ids}}
    out = Path(config.output) if config.output else default_output_path(whole, config.results_root)
    if config.shard:
        from harness.shards import shard_path

        result["shard"] = {"index": config.shard[0], "count": config.shard[1], "all_query_ids": all_query_ids}
        result["run"] = run
        out = shard_path(out, *config.shard)
    check_writable(out)
    atomic_write_json(out, result)
    if config.save_run and not config.shard:
        from tasks.trec import write_trec_run

        write_trec_run(run, config.save_run, tag=retriever.name)
    log.info("wrote %s", out)
    return result, out
