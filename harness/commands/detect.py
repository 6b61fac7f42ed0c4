"""``harness detect``: find the query-focused retrieval heads of a model on a task.

Writes a head file that ``--heads FILE`` accepts, recording the model, revision, data,
objective, number of queries, seed and the score of every head (docs/PROTOCOL.md §2). The
options become a :class:`harness.head_detection.Detection`; the work is
:func:`harness.head_detection.detect_head_file`.
"""

from __future__ import annotations

import argparse
import sys

from harness.commands._common import parse_assignments, positive_int
from harness.head_detection import OBJECTIVES, Detection, detect_head_file, summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="detect QRHeads of a model on a task", description=__doc__)
    p.add_argument("--model", required=True, help="model id, folder, GGUF file or offline alias")
    p.add_argument("--task", required=True, help="task id or BEIR folder whose queries form the detection set")
    p.add_argument("--data", help="local files of the task")
    p.add_argument("--task-set", action="append", metavar="KEY=VALUE", help="task parameter (repeatable)")
    p.add_argument("--objective", default="ndcg", choices=list(OBJECTIVES),
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
    head_file = detect_head_file(Detection(
        model=args.model, task=args.task, output=args.output, data=args.data,
        task_params=parse_assignments(args.task_set, "--task-set"), objective=args.objective,
        n_queries=args.n_queries, exclude_queries=args.exclude_queries, top=args.top, seed=args.seed,
        first_stage=args.first_stage, depth=args.depth, truncate_words=args.truncate_words,
        shuffle=not args.no_shuffle, max_layer=args.max_layer, dtype=args.dtype, device=args.device,
        show_progress=not args.no_progress,
    ))
    print(summary(head_file))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
