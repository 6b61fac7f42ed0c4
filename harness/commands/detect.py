"""``harness detect``: find the query-focused retrieval heads of a model on a task.

Writes a head file that ``--heads FILE`` accepts, recording the model, revision, data,
objective, number of queries, seed and the score of every head (docs/PROTOCOL.md §2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.commands._common import parse_assignments, positive_int
from harness.errors import HarnessError
from harness.io import atomic_write_json, cache_dir, check_writable, sha256_json
from harness.resume import ResumeFile
from harness.runner import RunConfig, prepare


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect QRHeads of a model on a task", description=__doc__)
    p.add_argument("--model", required=True, help="model id, folder, GGUF file or offline alias")
    p.add_argument("--task", required=True, help="task id or BEIR folder whose queries form the detection set")
    p.add_argument("--data", help="local files of the task")
    p.add_argument("--task-set", action="append", metavar="KEY=VALUE", help="task parameter (repeatable)")
    p.add_argument("--objective", default="ndcg", choices=["ndcg", "gold-mass", "retrieval-head"],
                   help="ndcg: per-head nDCG@10 (QRHead's BEIR detection); gold-mass: attention mass on gold (LongMemEval); "
                        "retrieval-head: RetHead's copy-paste score while answering NIAH prompts (--task niah)")
    p.add_argument("--n-queries", type=positive_int, default=128, help="detection queries, sampled with --seed (0 = all)")
    p.add_argument("--exclude-queries", metavar="FILE",
                   help="never detect on these queries: a head file (its query_ids) or one id per line, e.g. the "
                        "evaluation queries, or another detection set to draw a disjoint one")
    p.add_argument("--top", type=int, default=16, help="heads kept by --heads (default 16; the paper uses 32 for 70B)")
    p.add_argument("--seed", type=int, default=42, help="sampling and candidate-shuffle seed (default 42)")
    p.add_argument("--first-stage", default="bm25", help="first stage for corpus tasks (default bm25)")
    p.add_argument("--depth", type=int, default=20, help="candidates per query for corpus tasks (default 20)")
    p.add_argument("--truncate-words", type=positive_int, help="keep the first W words of each candidate (default: the task's, e.g. 400 on BEIR)")
    p.add_argument("--no-shuffle", action="store_true", help="keep candidates in first-stage order")
    p.add_argument("--max-layer", type=positive_int, metavar="L",
                   help="score only the heads of layers 0..L (the forward stops after layer L; recorded in the file)")
    p.add_argument("--dtype", help="float32, bfloat16, ... (default fp32 on CPU, bf16 on GPU)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--output", required=True, help="head file to write (JSON)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from harness.attention.detection import detect_heads

    check_writable(args.output)
    if args.depth <= 0:
        raise HarnessError(f"--depth must be a positive number of candidates, got {args.depth}")
    config = RunConfig(
        task=args.task, retriever="", data=args.data, task_params=parse_assignments(args.task_set, "--task-set"),
        first_stage=args.first_stage, depth=args.depth, max_queries=args.n_queries, seed=args.seed,
        truncate_words=args.truncate_words, show_progress=not args.no_progress, exclude_queries=args.exclude_queries,
    )
    prepared = prepare(config)
    task, data, queries, instances = prepared.task, prepared.data, prepared.queries, prepared.instances
    qrels = prepared.qrels()
    resume = ResumeFile(cache_dir("detect") / f"{_detection_hash(args, task.id, data.provenance, instances, prepared.words)}.jsonl")
    if args.objective == "retrieval-head":
        head_file = _retrieval_heads(args, task, data.provenance, instances, resume)
    else:
        head_file = detect_heads(
            args.model, instances, qrels, objective=args.objective, top=args.top, shuffle=not args.no_shuffle,
            seed=args.seed, truncate_words=prepared.words, data=task.id, dtype=args.dtype, device=args.device,
            show_progress=not args.no_progress, resume=resume, max_layer=args.max_layer,
        )
    head_file["task"] = {"id": task.id, **{k: v for k, v in data.provenance.items() if k in ("source", "sha256", "split")}}
    if args.exclude_queries:
        head_file["excluded_queries_from"] = args.exclude_queries
    head_file["query_ids"] = [q.id for q in queries]
    head_file["query_ids_sha256"] = sha256_json(head_file["query_ids"])
    if data.corpus is not None:
        head_file["first_stage"] = {"name": args.first_stage, "depth": args.depth}
    atomic_write_json(Path(args.output), head_file)
    best = ", ".join(h for h, _ in head_file["heads"][: head_file["top"]])
    print(f"top {head_file['top']} heads of {head_file['model']} on {task.id} ({head_file['n']} queries): {best}")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _retrieval_heads(args: argparse.Namespace, task: Any, provenance: dict, instances: list, resume: ResumeFile) -> dict:
    """RetHead detection (harness.attention.retrieval_heads): the task's generation prompt over every
    candidate, the task's answer (NIAH: the needle's answer part) as the scored span."""
    from harness.attention.retrieval_heads import detect_retrieval_heads

    if args.max_layer is not None:
        raise HarnessError("--max-layer does not apply to --objective retrieval-head (answering needs every layer)")
    if not getattr(task, "supports_generation", False) or not instances:
        raise HarnessError(f"--objective retrieval-head needs a task with generation prompts and instances (niah); got {task.id}")
    head_file = detect_retrieval_heads(
        args.model, instances, prompt=lambda inst: task.generation_prompt(inst, list(inst.candidates)),
        answer=getattr(task, "answer", None), top=args.top, seed=args.seed, data=task.id, dtype=args.dtype,
        device=args.device, show_progress=not args.no_progress, resume=resume,
    )
    if "lengths" in provenance and "depths" in provenance:
        head_file["grid"] = {"lengths": provenance["lengths"], "depths": provenance["depths"],
                             "unit": provenance.get("unit"), "prompt": provenance.get("prompt")}
    return head_file


def _detection_hash(args: argparse.Namespace, task_id: str, provenance: dict, instances: list, words: int | None) -> str:
    """Key of the resume file: everything that changes a query's head values."""
    return sha256_json({
        "model": args.model, "task": task_id, "data": provenance.get("sha256"), "objective": args.objective,
        "seed": args.seed, "shuffle": not args.no_shuffle, "truncate_words": words,
        "dtype": args.dtype, "first_stage": args.first_stage, "depth": args.depth,
        **({"max_layer": args.max_layer} if args.max_layer is not None else {}),
        **({"prompts": sha256_json([[i.answer, [d.text for d in i.candidates]] for i in instances]),
            "niah": {k: provenance.get(k) for k in ("needle", "question", "prompt", "answer")}}
           if args.objective == "retrieval-head" else {}),
        "instances": [[inst.query.id, inst.query.text, [d.id for d in inst.candidates]] for inst in instances],
    })[:24]
