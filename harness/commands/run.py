"""``harness run``: evaluate one retriever on one task and write a result file."""

from __future__ import annotations

import argparse
import sys

from harness.commands._common import parse_assignments, positive_int
from harness.runner import RunConfig, execute
from harness.shards import distributed_merge, parse_shard


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="evaluate a retriever on a task", description=__doc__)
    p.add_argument("--task", required=True, help="task id (beir/scifact, niah, ...), module:Class, or a BEIR-format folder")
    p.add_argument("--retriever", required=True, help="retriever name (bm25, dense, qr, icr, ...) or module:Class")
    p.add_argument("--model", help="model id, local folder, GGUF file or offline alias for the retriever")
    p.add_argument("--heads", help="head set for qr: a set name (nq, lme), 'full', a list '14-22,13-16', a head file, "
                   "'random:N:SEED', 'top:N:FILE' or 'exclude:FILE'")
    p.add_argument("--data", help="local files of the task in their original format, instead of the hub")
    p.add_argument("--first-stage", help="first-stage retriever whose top --depth candidates are re-ranked (default bm25 for re-rankers)")
    p.add_argument("--depth", type=int, help="first-stage depth (BEIR default 200); for first-stage runs, how many to keep")
    p.add_argument("--max-queries", type=positive_int, help="sample this many queries (0 = all; BEIR default 512; CLIPPER: claim pairs)")
    p.add_argument("--exclude-queries", metavar="FILE", help="leave out these queries: a head file (its query_ids) or one id per line")
    p.add_argument("--seed", type=int, default=42, help="sampling seed (default 42, as the paper)")
    p.add_argument("--truncate-words", type=positive_int, help="keep the first W words of each candidate (BEIR re-ranking default 400)")
    p.add_argument("--shuffle-candidates", type=int, metavar="SEED",
                   help="re-rankers on corpus tasks: shuffle each query's first-stage candidates (seeded by SEED and the "
                   "query id), so position cannot help (the paper's Table 3)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="retriever parameter, e.g. --set k1=1.2 (repeatable)")
    p.add_argument("--task-set", action="append", metavar="KEY=VALUE", help="task parameter, e.g. --task-set lengths=[1000,2000]")
    p.add_argument("--output", help="result JSON path (default results/<task>/<retriever>....json)")
    p.add_argument("--save-run", metavar="FILE.trec", help="also write the run in TREC format")
    p.add_argument("--shard", metavar="I/N", help="evaluate only shard I of N (0-based) of the queries; 'auto' under torchrun")
    p.add_argument("--results-root", default="results", help="folder for default output paths (default results/)")
    g = p.add_argument_group("downstream QA")
    g.add_argument("--generate", action="store_true", help="answer from the retrieved documents and score the answers")
    g.add_argument("--generator", help="BACKEND:MODEL, e.g. hf:smollm2-135m, vllm:meta-llama/Llama-3.1-8B-Instruct, openai:URL#MODEL")
    g.add_argument("--judge", help="BACKEND:MODEL of the LM judge (LongMemEval)")
    g.add_argument("--generator-set", action="append", metavar="KEY=VALUE",
                   help="generator option, e.g. truncate=middle, batch_size=4, timeout=60 (repeatable)")
    g.add_argument("--judge-set", action="append", metavar="KEY=VALUE", help="judge option (repeatable)")
    g.add_argument("--top-k", type=int, default=5, help="documents given to the generator (default 5)")
    g.add_argument("--full-context", action="store_true", help="give the generator every candidate instead of the top-k")
    g.add_argument("--max-tokens", type=int, help="generation length limit")
    p.add_argument("--run-depth", type=int, default=100,
                   help="rows per query kept in the gzipped TREC run written beside the result (default 100)")
    p.add_argument("--allow-dirty", action="store_true",
                   help="write a result from a checkout with uncommitted changes (recorded in the result)")
    g.add_argument("--allow-failures", action="store_true",
                   help="write the result even if some generations or judgements failed (counted as wrong, recorded)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    params = parse_assignments(args.set)
    if args.heads is not None:
        params["heads"] = args.heads
    config = RunConfig(
        task=args.task, retriever=args.retriever, data=args.data, model=args.model,
        retriever_params=params, task_params=parse_assignments(args.task_set, "--task-set"),
        first_stage=args.first_stage, depth=args.depth, max_queries=args.max_queries, seed=args.seed,
        exclude_queries=args.exclude_queries,
        truncate_words=args.truncate_words, shuffle_candidates=args.shuffle_candidates, generate=args.generate, generator=args.generator, judge=args.judge,
        generator_options=parse_assignments(args.generator_set, "--generator-set"),
        judge_options=parse_assignments(args.judge_set, "--judge-set"), top_k=args.top_k, full_context=args.full_context, max_tokens=args.max_tokens,
        allow_failures=args.allow_failures, run_depth=args.run_depth, allow_dirty=args.allow_dirty,
        command=getattr(args, "command_line", None),
        output=args.output,
        save_run=args.save_run, show_progress=not args.no_progress, results_root=args.results_root,
        shard=parse_shard(args.shard),
    )
    result, path = execute(config)
    if config.shard and args.shard == "auto":
        merged = distributed_merge(path, *config.shard)
        if merged is not None:
            print(f"merged {config.shard[1]} shards into {merged}", file=sys.stderr)
    metrics = "  ".join(f"{k}={v:.4f}" for k, v in result.metrics.items() if "/" not in k)
    print(f"{result.task.id}  {result.retriever.name}  n={result.task.n_queries}  {metrics}")
    print(f"wrote {path}", file=sys.stderr)
    return 0
