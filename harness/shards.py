"""Data-parallel runs: query shards, their files, and the merge that checks coverage.

``harness run ... --shard i/n`` evaluates the queries ``query_ids[i::n]`` (after sampling, so
every shard agrees on the query list) and writes ``<output>.shard-i-of-n.json``. ``harness merge``
checks that the shards share one configuration hash, cover every query exactly once and that
none is missing, then writes the same result file an unsharded run writes.

Under ``torchrun`` / ``accelerate launch`` use ``--shard auto``: the shard comes from ``RANK`` and
``WORLD_SIZE``; after writing its shard each process waits at a barrier (gloo, CPU-only is
fine) and rank 0 merges::

    torchrun --standalone --nproc-per-node 8 -m harness.cli run --task beir/nq --retriever qr --shard auto
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from harness.errors import HarnessError
from harness.io import sha256_json
from harness.results import Result, mean_metrics

_SHARD = re.compile(r"^(\d+)/(\d+)$")


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"1/4"`` -> ``(1, 4)`` (0-based index); ``"auto"`` -> from RANK/WORLD_SIZE; None -> None."""
    if spec is None:
        return None
    if spec == "auto":
        count = int(os.environ.get("WORLD_SIZE", "1"))
        index = int(os.environ.get("RANK", "0"))
        return (index, count) if count > 1 else None
    match = _SHARD.match(spec)
    if not match:
        raise HarnessError(f"--shard expects INDEX/COUNT such as 0/4 (0-based) or 'auto', got {spec!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise HarnessError(f"--shard {spec}: the shard count must be at least 1")
    if not 0 <= index < count:
        raise HarnessError(f"--shard {spec}: index must be in 0..{count - 1}")
    return index, count


def shard_path(output: Path, index: int, count: int) -> Path:
    return output.with_name(f"{output.stem}.shard-{index}-of-{count}{output.suffix}")


def merge(paths: Sequence[str | Path]) -> Result:
    """Merge shard files into one result; raise on mixed configurations, gaps or overlaps."""
    if not paths:
        raise HarnessError("merge needs at least one shard file")
    shards: list[tuple[Path, Result]] = []
    for path in paths:
        result = Result.from_json(path)
        if result.shard is None:
            raise HarnessError(f"{path}: not a shard file (no 'shard' field)")
        if result.run is None:
            raise HarnessError(f"{path}: shard file carries no 'run'")
        result.validate(path)
        shards.append((Path(path), result))
    first_path, first = shards[0]
    assert first.shard is not None
    count, all_ids = first.shard.count, first.shard.all_query_ids
    seen: dict[int, Path] = {}
    owner: dict[str, Path] = {}
    for path, result in shards:
        assert result.shard is not None
        if result.config_hash != first.config_hash:
            raise HarnessError(f"{path}: configuration differs from {first_path} (config hash {str(result.config_hash)[:12]} "
                               f"vs {str(first.config_hash)[:12]})")
        if result.shard.count != count or result.shard.all_query_ids != all_ids:
            raise HarnessError(f"{path}: shard layout differs from {first_path}")
        index = result.shard.index
        if index in seen:
            raise HarnessError(f"{path}: shard {index}/{count} given twice (also {seen[index]})")
        seen[index] = path
        for qid in result.per_query or {}:
            if qid in owner:
                raise HarnessError(f"{path}: query {qid!r} is also in {owner[qid]} (overlapping shards)")
            owner[qid] = path
    missing_shards = sorted(set(range(count)) - set(seen))
    if missing_shards:
        raise HarnessError(f"missing shard(s) {', '.join(f'{i}/{count}' for i in missing_shards)}")
    missing = [q for q in all_ids if q not in owner]
    if missing:
        raise HarnessError(f"{len(missing)} queries are in no shard, e.g. {missing[:3]}")
    by_index = [result for _, result in sorted(shards, key=lambda s: s[1].shard.index)]  # type: ignore[union-attr]
    per_query: dict[str, dict[str, float]] = {}
    run: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    first_stage: dict[str, dict[str, float]] | None = None
    for result in by_index:
        per_query.update(result.per_query or {})
        run.update(result.run or {})
        qrels.update(result.qrels or {})
        if result.first_stage_run is not None:
            first_stage = {**(first_stage or {}), **result.first_stage_run}
    per_query = {q: per_query[q] for q in all_ids}
    inline = ("shard", "run", "qrels", "first_stage_run")
    return replace(
        by_index[0], shard=None, per_query=per_query, metrics=mean_metrics(per_query),
        run={q: run[q] for q in all_ids}, qrels={q: qrels.get(q, {}) for q in all_ids},
        first_stage_run=first_stage and {q: first_stage.get(q, {}) for q in all_ids},
        task=replace(by_index[0].task, query_ids=all_ids, n_queries=len(all_ids)),
        run_sha256=sha256_json({q: run[q] for q in all_ids}),
        timing={**(by_index[0].timing or {}), "shards": [r.timing for r in by_index]},
        order=tuple(k for k in by_index[0].order if k not in inline),
    )


def write_merged(result: Result, out: Path, top_k: int = 100) -> None:
    """Write a merged result with its run files; the inline shard fields move into the files."""
    run, qrels, first_stage = result.run or {}, result.qrels or {}, result.first_stage_run
    result.run = result.qrels = result.first_stage_run = None
    result.write_with_runs(out, run, qrels, tag=result.retriever.name, top_k=top_k, first_stage=first_stage)


def merged_path(shard_file: Path) -> Path:
    """``x.shard-0-of-2.json`` -> ``x.json``."""
    return shard_file.with_name(re.sub(r"\.shard-\d+-of-\d+", "", shard_file.name))


def distributed_merge(shard_file: Path, index: int, count: int) -> Path | None:
    """Under torchrun: wait for every rank's shard, then merge on rank 0. Returns the merged path on rank 0."""
    import torch.distributed as dist

    initialised_here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
        initialised_here = True
    try:
        dist.barrier()
        if index != 0:
            return None
        paths = [shard_path(merged_path(shard_file), i, count) for i in range(count)]
        out = merged_path(shard_file)
        write_merged(merge(paths), out)
        return out
    finally:
        if initialised_here:
            dist.barrier()
            dist.destroy_process_group()
