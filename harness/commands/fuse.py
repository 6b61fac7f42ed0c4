"""``harness fuse A.json B.json ... --method rrf|wsum``: a fusion row from the rankings of measured results.

Examples::

    harness fuse results/cranfield/bm25.json results/cranfield/dense__minilm.json            # RRF, k=60
    harness fuse A.json B.json --method rrf --param k=10
    harness fuse A.json B.json --method wsum --weights 0.7,0.3 --norm min-max --output fused.json

The inputs must be results of the same task variant (same documents, queries and judgements) that
keep their run files. The fused result is a normal result file with its own run files: the
leaderboard shows it, ``harness validate`` recomputes its metrics, and it can be fused again.
Formulas: ``harness.fusion``'s docstring and the README.
"""

from __future__ import annotations

import argparse

from harness.commands._common import parse_assignments, positive_int


def _weights(text: str) -> list[float]:
    try:
        return [float(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fuse", help="fuse the rankings of results (RRF, score interpolation) into a new result",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", metavar="RESULT", help="measured result files (two or more)")
    p.add_argument("--method", default="rrf", help="rrf (reciprocal rank fusion, default) or wsum (weighted sum)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="method parameter: k for rrf (default 60)")
    p.add_argument("--weights", type=_weights, default=[], help="wsum: one weight per result, e.g. 0.7,0.3 (default equal)")
    p.add_argument("--norm", default="min-max", help="wsum: score normalisation per query (ranx; default min-max)")
    p.add_argument("--depth", type=positive_int, help="documents kept per query (default: the smallest input depth)")
    p.add_argument("--output", help="result path (default results/<task>/fusion-<method>__<inputs>.json)")
    p.add_argument("--results-root", default="results", help="root of the default output path (default results)")
    p.add_argument("--allow-dirty", action="store_true", help="write even from uncommitted code (recorded)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.fusion import FusionSpec, default_fusion_path, fuse_results, write_fusion

    spec = FusionSpec(method=args.method, params=parse_assignments(args.param, "--param"), weights=args.weights,
                      norm=args.norm, depth=args.depth)
    result, run, qrels = fuse_results(args.results, spec, command=getattr(args, "command_line", None),
                                      allow_dirty=args.allow_dirty)
    out = Path(args.output) if args.output else default_fusion_path(result, args.results_root)
    write_fusion(result, run, qrels, out)
    shown = "  ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items()))
    print(f"{result.task.id}  {spec.describe()}  n={result.task.n_queries}  {shown}")
    print(f"wrote {out}")
    return 0
