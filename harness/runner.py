"""Run one (task, retriever) cell end to end and write its result file.

The pipeline, one step per function::

    prepare(config, reranker)            task, data, queries (sampled, sharded), instances
                                         (a cached first stage over the corpus for re-rankers)
    score(config, prepared, retriever)   the run, each query appended to a resume file as it finishes
    evaluate(config, prepared, scored,   per-query metrics, then optional downstream generation
             generator, judge)
    assemble(config, prepared, ...)      the typed :class:`~harness.results.Result`

:func:`execute` validates the configuration, builds the retriever and generators, calls the four
steps and writes the file atomically. ``harness detect`` reuses :func:`prepare`.

A run killed mid-way and started again with the same configuration skips the queries already
in its resume file (``<cache>/runs/<config hash>.jsonl``) and ends with the same result.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import provenance
from harness.errors import HarnessError
from harness.io import cache_dir, check_writable, sha256_json
from harness.params import check_names
from harness.progress import progress_disabled_by_env, silence_library_progress
from harness.registry import make_task, retriever_class
from harness.results import (
    SCHEMA_VERSION,
    FirstStageInfo,
    Result,
    RetrieverInfo,
    TaskInfo,
    default_output_path,
    mean_metrics,
)
from harness.resume import ResumeFile, score_with_resume, scored_by
from harness.sampling import sample_queries
from harness.spec import RunSpec, plain
from harness.text import truncate_words
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
    #: Sampling seed; None takes the task's ``default_seed`` (42).
    seed: int | None = None
    #: A head file (its ``query_ids``) or a text file of query ids (one per line) to leave out,
    #: e.g. the queries used for head detection.
    exclude_queries: str | None = None
    truncate_words: int | None = None
    #: Shuffle each query's first-stage candidates (after the depth cut) with a seed derived from
    #: this and the query id, so position cannot help (the paper's Table 3); corpus tasks only.
    shuffle_candidates: int | None = None
    generate: bool = False
    generator: str | None = None
    judge: str | None = None
    generator_options: dict[str, Any] = field(default_factory=dict)
    judge_options: dict[str, Any] = field(default_factory=dict)
    top_k: int = 5
    full_context: bool = False
    max_tokens: int | None = None
    #: Write the result even when generations or judgements failed (counted as wrong answers, the
    #: counts recorded); without it such a run is an error.
    allow_failures: bool = False
    #: Rows per query kept in the run file written beside the result (see :mod:`harness.runfiles`).
    run_depth: int = 100
    #: Write a result from a checkout with uncommitted changes (recorded); also HARNESS_ALLOW_DIRTY=1.
    allow_dirty: bool = False
    #: The command line that made the run, recorded in the result (the CLI fills it in).
    command: str | None = None
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
        if "model" in params and "model" not in declared:
            raise HarnessError(f"retriever {name!r} takes no --model")
        check_names(f"parameter of retriever {name!r}", params, declared)
    try:
        return cls(**params)
    except TypeError as exc:
        raise HarnessError(f"retriever {name!r}: {exc}") from None


def _task_default(value: Any, task: Task, attribute: str) -> Any:
    """``value`` when given, else the task's declared default (see :class:`~harness.types.Task`)."""
    return value if value is not None else getattr(task, attribute)


def select_queries(task: Task, data: TaskData, max_queries: int | None, seed: int) -> tuple[list[Query], int]:
    """The evaluated queries (judged ones, sampled down to ``max_queries``; 0 = all) and how many were available.

    The sampling unit is the query, or the task's ``sample_group`` (CLIPPER's claim pairs: paired
    queries are drawn together, never half a pair).
    """
    judged = [q for q in data.queries if q.id in data.qrels] if data.corpus is not None else list(data.queries)
    available = len(judged)
    limit = _task_default(max_queries, task, "default_max_queries")
    group_key = task.sample_group

    def unit(q: Query) -> str:
        return str(q.meta.get(group_key, q.id)) if group_key else q.id

    units = list(dict.fromkeys(unit(q) for q in judged))
    if limit and len(units) > limit:
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


def _top_ids(scores: dict[str, float], k: int | None = None) -> list[str]:
    ranked = sorted(scores, key=lambda d: (-scores[d], d))
    return ranked if k is None else ranked[:k]


def _cut(doc: Any, words: int | None) -> Any:
    return replace(doc, text=truncate_words(doc.text, words)) if words else doc


def shuffled(ids: list[str], seed: int, query_id: str) -> list[str]:
    """``ids`` in an order fixed by ``seed`` and ``query_id`` alone (any process, any shard).

    >>> shuffled(["a", "b", "c"], 7, "q1") == shuffled(["a", "b", "c"], 7, "q1")
    True
    """
    import hashlib
    import random

    out = list(ids)
    random.Random(int.from_bytes(hashlib.sha256(f"{seed}\0{query_id}".encode()).digest()[:8], "big")).shuffle(out)
    return out


def build_instances(
    queries: list[Query], data: TaskData, first_run: Run, depth: int, words: int | None, shuffle: int | None = None
) -> list[Instance]:
    """Instances whose candidates are each query's first-stage top ``depth``, best first (or
    :func:`shuffled` with seed ``shuffle``)."""
    assert data.corpus is not None

    def ids(query: Query) -> list[str]:
        top = _top_ids(first_run.get(query.id, {}), depth)
        return top if shuffle is None else shuffled(top, shuffle, query.id)

    return [
        Instance(query=query, candidates=[_cut(data.corpus[d], words) for d in ids(query)],
                 gold=dict(data.qrels.get(query.id, {})))
        for query in queries
    ]


# -- step 1: prepare ---------------------------------------------------------------------------------
@dataclass
class Prepared:
    """What :func:`prepare` hands to the later steps."""

    task: Task
    data: TaskData
    #: Every selected query (all shards), in evaluation order.
    queries: list[Query]
    #: The queries this process evaluates (its shard, or all).
    evaluated: list[Query]
    n_available: int
    seed: int
    instances: list[Instance]
    #: Re-rankers: the first stage's record (name, params, depth, recall, run hash); else None.
    first_stage: dict[str, Any] | None
    #: Full-corpus retrieval depth (first-stage retrievers run on their own); else None.
    search_depth: int | None
    words: int | None
    seconds: dict[str, float] = field(default_factory=dict)
    #: Re-rankers: the first stage's ranking of every selected query (the candidate lists).
    first_stage_run: Run | None = None
    #: The seed the candidates were shuffled with (``RunConfig.shuffle_candidates``), else None.
    shuffle_candidates: int | None = None

    @property
    def query_ids(self) -> list[str]:
        return [q.id for q in self.evaluated]

    @property
    def all_query_ids(self) -> list[str]:
        return [q.id for q in self.queries]

    def qrels(self, every_shard: bool = False) -> Qrels:
        ids = self.all_query_ids if every_shard else self.query_ids
        return {q: self.data.qrels.get(q, {}) for q in ids}


def _exclude(data: TaskData, path: str | None) -> None:
    if not path:
        return
    excluded = read_query_id_file(path)
    kept = [q for q in data.queries if q.id not in excluded]
    log.info("left out %d queries listed in %s", len(data.queries) - len(kept), path)
    data.queries = kept
    if data.instances is not None:
        data.instances = [inst for inst in data.instances if inst.query.id not in excluded]


def _check_depth(depth: int, data: TaskData) -> None:
    assert data.corpus is not None
    if depth > len(data.corpus):
        raise HarnessError(f"--depth {depth} is larger than the corpus ({len(data.corpus)} documents)")


def _first_stage(config: RunConfig, prepared: Prepared) -> tuple[list[Instance], dict[str, Any], Run]:
    """Re-ranking a corpus task: the cached first-stage top-``depth`` of every selected query."""
    from harness.first_stage import cached_search
    from harness.metrics import evaluate as evaluate_run

    task, data = prepared.task, prepared.data
    assert data.corpus is not None
    name = config.first_stage or "bm25"
    fs = build_retriever(name)
    if not fs.first_stage:
        raise HarnessError(f"--first-stage {name}: retriever {name!r} cannot search a whole corpus")
    depth = _task_default(config.depth, task, "default_depth") or 100
    _check_depth(depth, data)
    # The first stage covers every selected query (shards included), so its ceiling is the same
    # in every shard and in an unsharded run.
    fs_run = cached_search(fs, data.corpus, prepared.queries, depth)
    recall = evaluate_run(prepared.qrels(every_shard=True), fs_run, [f"R@{depth}"],
                          ignore_identical_ids=data.ignore_identical_ids)
    info = {"name": name, "params": fs.meta.get("params", {}), "depth": depth,
            "recall": recall.aggregate, "run_sha256": sha256_json(fs_run)}
    instances = build_instances(prepared.evaluated, data, fs_run, depth, prepared.words, config.shuffle_candidates)
    return instances, info, fs_run


def prepare(config: RunConfig, reranker: bool = True, task: Task | None = None) -> Prepared:
    """Load the task, choose the queries (exclusion, sampling, shard) and build the instances.

    ``reranker``: the retriever scores candidates (a first stage builds them on corpus tasks);
    False for a first-stage retriever that searches the corpus itself. ``task``: the task of
    ``config.task`` when the caller has built it already.
    """
    task = task or make_task(config.task, data=config.data, **config.task_params)
    t0 = time.time()
    data = task.load()
    load_seconds = time.time() - t0
    _exclude(data, config.exclude_queries)
    seed = _task_default(config.seed, task, "default_seed")
    queries, n_available = select_queries(task, data, config.max_queries, seed)
    evaluated = queries
    if config.shard:
        index, count = config.shard
        keep = {q.id for q in queries[index::count]}
        evaluated = [q for q in queries if q.id in keep]
    prepared = Prepared(task=task, data=data, queries=queries, evaluated=evaluated, n_available=n_available, seed=seed,
                        instances=[], first_stage=None, search_depth=None, words=config.truncate_words)
    t0 = time.time()
    if data.corpus is not None and (config.first_stage is not None or reranker):
        prepared.words = _task_default(config.truncate_words, task, "default_truncate_words")
        prepared.instances, prepared.first_stage, prepared.first_stage_run = _first_stage(config, prepared)
        prepared.shuffle_candidates = config.shuffle_candidates
    elif config.shuffle_candidates is not None:
        raise HarnessError("--shuffle-candidates shuffles the first-stage candidates a re-ranker gets on a corpus task; "
                           "this run has none")
    elif data.corpus is not None:
        prepared.search_depth = config.depth or min(1000, len(data.corpus))
        _check_depth(prepared.search_depth, data)
    else:
        assert data.instances is not None
        keep_ids = set(prepared.query_ids)
        prepared.instances = [inst for inst in data.instances if inst.query.id in keep_ids]
        if prepared.words:
            for inst in prepared.instances:
                inst.candidates = [_cut(d, prepared.words) for d in inst.candidates]
    prepared.seconds = {"load_seconds": load_seconds, "prepare_seconds": time.time() - t0}
    return prepared


# -- step 2: score -------------------------------------------------------------------------------------
@dataclass
class Scored:
    """The run, the retriever's per-query diagnostics and the retrieval configuration hash."""

    run: Run
    stats: dict[str, dict[str, float]]
    config_hash: str
    seconds: float
    #: The code versions that computed the scores (resume entries record theirs); empty when the
    #: scores were computed in this process by a full-corpus search.
    scored_by: list[str] = field(default_factory=list)


def retrieval_hash(prepared: Prepared, retriever: Retriever) -> str:
    """Everything that changes the run: task, data, queries, retriever, first stage, document cut."""
    first_stage = prepared.first_stage and {k: v for k, v in prepared.first_stage.items() if k != "recall"}
    return sha256_json({
        "schema": SCHEMA_VERSION, "task": prepared.task.id, "provenance": prepared.data.provenance,
        "queries": prepared.all_query_ids, "retriever": retriever.meta, "bound": retriever.bound_params,
        "task_params": plain(prepared.task.params), "first_stage": first_stage,
        "truncate_words": prepared.words,
        **({"shuffle_candidates": prepared.shuffle_candidates} if prepared.shuffle_candidates is not None else {}),
    })


def score(config: RunConfig, prepared: Prepared, retriever: Retriever) -> Scored:
    """Score the instances with resume (re-rankers, instance tasks) or search the whole corpus."""
    from harness.first_stage import cached_search

    if prepared.data.corpus is not None and prepared.search_depth is None:
        retriever.index_corpus(prepared.data.corpus)  # corpus statistics for re-ranking (BM25's IDF)
    config_hash = retrieval_hash(prepared, retriever)
    t0 = time.time()
    stats: dict[str, dict[str, float]] = {}
    if prepared.search_depth is None:
        shard_tag = f".shard-{config.shard[0]}-of-{config.shard[1]}" if config.shard else ""
        resume = ResumeFile(cache_dir("runs") / f"{config_hash}{shard_tag}.jsonl")
        run = score_with_resume(retriever, prepared.instances, resume, config.show_progress)
        wanted = set(prepared.query_ids)
        stats = {qid: row["stats"] for qid, row in resume.done.items() if row.get("stats") and qid in wanted}
        commits = scored_by([row for qid, row in resume.done.items() if qid in wanted])
    else:
        assert prepared.data.corpus is not None
        run = cached_search(retriever, prepared.data.corpus, prepared.evaluated, prepared.search_depth)
        commits = []
    return Scored(run=run, stats=stats, config_hash=config_hash, seconds=time.time() - t0, scored_by=commits)


# -- step 3: evaluate ------------------------------------------------------------------------------------
@dataclass
class Evaluated:
    """Per-query metrics (ranking, diagnostics, answers) and the generation record."""

    per_query: dict[str, dict[str, float]]
    generation: dict[str, Any] | None = None
    config_hash: str = ""
    seconds: float = 0.0


def evaluate(config: RunConfig, prepared: Prepared, scored: Scored, generator: Any = None,
             judge: Any = None) -> Evaluated:
    """Ranking metrics per query, the retriever's diagnostics, then downstream QA when asked."""
    from harness.metrics import evaluate as evaluate_run

    data = prepared.data
    ranking = evaluate_run(prepared.qrels(), scored.run, list(data.metrics), ignore_identical_ids=data.ignore_identical_ids)
    per_query = {qid: dict(ranking.per_query.get(qid, {})) for qid in prepared.query_ids}
    for qid, values in scored.stats.items():
        per_query[qid].update(values)
    evaluated = Evaluated(per_query=per_query, config_hash=scored.config_hash)
    if generator is None:
        return evaluated
    from harness.downstream import generate_and_score

    t0 = time.time()
    max_tokens = _task_default(config.max_tokens, prepared.task, "max_tokens")
    _, gen_per_query, info = generate_and_score(
        prepared.task, prepared.instances, scored.run, generator, top_k=config.top_k, full_context=config.full_context,
        judge=judge, max_tokens=max_tokens, show_progress=config.show_progress,
    )
    evaluated.seconds = time.time() - t0
    info["judge_failures"] = int(sum(v.get("judge_failed", 0.0) for v in gen_per_query.values()))
    _check_failures(config, info)
    for qid, values in gen_per_query.items():
        per_query.setdefault(qid, {}).update(values)
    evaluated.generation = {
        "generator": generator.meta, "judge": judge.meta if judge else None, "top_k": config.top_k,
        "full_context": config.full_context, "max_tokens": max_tokens, **info,
    }
    evaluated.config_hash = sha256_json({"retrieval": scored.config_hash, "generation": {
        k: evaluated.generation[k] for k in ("generator", "judge", "top_k", "full_context", "max_tokens")}})
    return evaluated


def _check_failures(config: RunConfig, info: dict[str, Any]) -> None:
    """A run whose generations or judgements failed is an error unless ``--allow-failures``,
    which records the counts in the result (and the leaderboard shows them)."""
    failed, judged = info.get("generation_failures", 0), info.get("judge_failures", 0)
    if not (failed or judged):
        return
    if config.allow_failures:
        info["allow_failures"] = True
        return
    first = next((r for r in info.get("records", []) if r.get("error")), None)
    detail = f"; first: {first['query_id']}: {first['error']}" if first else ""
    raise HarnessError(
        f"{failed} of {info.get('n_prompts', '?')} generations and {judged} judgements failed{detail}. "
        "Answers that were produced are cached; fix the generator and run again, or pass --allow-failures "
        "to record the failures as wrong answers"
    )


# -- step 4: assemble ------------------------------------------------------------------------------------
def assemble(config: RunConfig, prepared: Prepared, retriever: Retriever, scored: Scored, evaluated: Evaluated,
             started: float, commit: str | None = None) -> Result:
    """The typed result of the run (not yet written); ``commit`` is the checkout's state read before scoring."""
    commit = commit or provenance.git_commit()
    task, data = prepared.task, prepared.data
    task_info = {
        "id": task.id, **{k: v for k, v in data.provenance.items() if k != "id"},
        "n_queries": len(prepared.evaluated), "n_available": prepared.n_available,
        "max_queries": _task_default(config.max_queries, task, "default_max_queries"),
        "seed": prepared.seed, "ignore_identical_ids": data.ignore_identical_ids,
        "excluded_queries_from": config.exclude_queries, "query_ids": prepared.query_ids,
        **({"shuffle_candidates": prepared.shuffle_candidates} if prepared.shuffle_candidates is not None else {}),
        **({"data": config.data} if config.data is not None else {}),
        **_given_task_params(task),
    }
    retriever_info = dict(retriever.meta)
    if retriever.changed_params:
        retriever_info["changed_params"] = retriever.changed_params
    seconds = {**prepared.seconds, "score_seconds": scored.seconds, "generation_seconds": evaluated.seconds}
    result = Result(
        schema_version=SCHEMA_VERSION, kind="measured",
        task=TaskInfo.from_dict(task_info, "task"),
        retriever=RetrieverInfo.from_dict(retriever_info, "retriever"),
        first_stage=FirstStageInfo.from_dict(prepared.first_stage, "first_stage") if prepared.first_stage else None,
        truncate_words=prepared.words, generation=evaluated.generation, main_metric=task.main_metric,
        metrics=mean_metrics(evaluated.per_query), per_query=evaluated.per_query,
        run_sha256=sha256_json(scored.run), config_hash=evaluated.config_hash,
        environment={**provenance.result_environment(commit, config.command),
                     # a cache hit never restamps: the versions that computed the scores
                     **({"scored_by": scored.scored_by} if scored.scored_by else {})},
        timing={**{k: round(v, 3) for k, v in seconds.items()}, "total_seconds": round(time.time() - started, 3)},
        date=provenance.now_iso(),
        order=Result.MEASURED_ORDER,
    )
    # The identity of the whole run (every shard's queries), recorded as data.
    whole = replace(result, task=replace(result.task, query_ids=prepared.all_query_ids))
    result.spec = RunSpec.derive(whole).to_dict()
    return result


def _given_task_params(task: Task) -> dict[str, Any]:
    """The task parameters given without a declared default, for the task record (a declared
    default's value is recorded by the task itself: :attr:`Task.parameter_defaults`)."""
    given = {k: v for k, v in task.params.items() if k not in task.parameter_defaults}
    return {"task_params": plain(given)} if given else {}


def _check_config(config: RunConfig, write: bool = True, commit: str | None = None) -> None:
    """Refuse a configuration that cannot work before any loading or scoring."""
    commit = commit or provenance.git_commit()
    for path in (config.output, config.save_run):
        if path:
            check_writable(path)
    if write and not config.output:
        check_writable(Path(config.results_root) / ".write-check")
    if config.depth is not None and config.depth <= 0:
        raise HarnessError(f"--depth must be a positive number of candidates, got {config.depth}")
    if config.top_k <= 0:
        raise HarnessError(f"--top-k must be positive, got {config.top_k}")
    if config.generate and not config.generator:
        raise HarnessError("--generate needs --generator BACKEND:MODEL (e.g. hf:smollm2-135m)")
    if config.run_depth < 1:
        raise HarnessError(f"--run-depth must be at least 1, got {config.run_depth}")
    if write:
        provenance.refuse_uncommitted(commit, config.allow_dirty)


def _generators(config: RunConfig, task: Task) -> tuple[Any, Any]:
    if not config.generate:
        return None, None
    if not task.supports_generation:
        raise HarnessError(f"task {task.id!r} has no downstream QA; drop --generate")
    from harness.generation import make_generator

    generator = make_generator(config.generator, **config.generator_options)  # type: ignore[arg-type]
    judge = make_generator(config.judge, **config.judge_options) if config.judge else None
    return generator, judge


def _write(config: RunConfig, prepared: Prepared, result: Result, run: Run, retriever: Retriever) -> Path:
    # Shards share the default name of the whole run (its spec; shard_path adds the suffix).
    out = Path(config.output) if config.output else default_output_path(result, config.results_root)
    first_stage = None
    if prepared.first_stage_run is not None:
        first_stage = {q: prepared.first_stage_run.get(q, {}) for q in prepared.query_ids}
    if config.shard:
        from harness.results import ShardInfo
        from harness.shards import shard_path

        result.shard = ShardInfo(index=config.shard[0], count=config.shard[1], all_query_ids=prepared.all_query_ids)
        result.run, result.qrels, result.first_stage_run = run, prepared.qrels(), first_stage
        out = shard_path(out, *config.shard)
        check_writable(out)
        result.write(out)
    else:
        check_writable(out)
        result.write_with_runs(out, run, prepared.qrels(), tag=retriever.name, top_k=config.run_depth,
                               first_stage=first_stage)
    if config.save_run and not config.shard:
        from harness.trec import write_trec_run

        write_trec_run(run, config.save_run, tag=retriever.name)
    log.info("wrote %s", out)
    return out


def execute(config: RunConfig, *, write: bool = True) -> tuple[Result, Path | None]:
    """Run ``config`` through the four steps; return the result and the path it was written to
    (with ``write=False``, as ``harness.evaluate`` by default, nothing is written and the path is None)."""
    started = time.time()
    if not config.show_progress or progress_disabled_by_env():
        silence_library_progress()
    commit = provenance.git_commit()   # one reading: later edits or written results do not change it
    _check_config(config, write, commit)
    retriever = build_retriever(config.retriever, config.model, config.retriever_params)
    task = make_task(config.task, data=config.data, **config.task_params)
    generator, judge = _generators(config, task)
    prepared = prepare(config, reranker=not retriever.first_stage, task=task)
    scored = score(config, prepared, retriever)
    evaluated = evaluate(config, prepared, scored, generator, judge)
    result = assemble(config, prepared, retriever, scored, evaluated, started, commit)
    return result, (_write(config, prepared, result, scored.run, retriever) if write else None)
