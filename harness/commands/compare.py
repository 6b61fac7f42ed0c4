"""``harness compare A.json B.json ... [--baseline A.json]``: paired significance tests between result files.

Examples::

    harness compare results/cranfield/bm25.json results/cranfield/dense__minilm.json   # every pair
    harness compare QRHEAD.json RETHEAD.json RANDOM.json FULL.json --baseline QRHEAD.json --markdown

The files must be measured results of the same task variant (the same documents and queries).
For each pair, on the queries both scored: the mean difference of ``--metric`` (default: the task's
main metric), Cohen's d_z, a bootstrap 95% CI, and the p-value of the paired randomization test
(``--test t`` for the paired t-test), Holm-corrected over all the pairs printed (harness.stats).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import HarnessError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="paired significance tests between result files (all pairs or vs a baseline)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", metavar="RESULT", help="measured result files (two or more)")
    p.add_argument("--baseline", metavar="RESULT", help="compare each other file with this one (default: all pairs)")
    p.add_argument("--metric", help="per-query metric to compare (default: the task's main metric)")
    p.add_argument("--test", default="randomization", choices=["randomization", "t"],
                   help="paired randomization test (default) or paired t-test")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm (default 0.05)")
    p.add_argument("--markdown", action="store_true", help="print markdown tables")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from harness.leaderboard import Row, fmt
    from harness.results import check_same_variant, read_measured
    from harness.stats import compare

    paths = list(dict.fromkeys([*([args.baseline] if args.baseline else []), *args.results]))
    if len(paths) < 2:
        raise HarnessError("compare needs at least two different result files")
    rows = [Row(Path(path), read_measured(path, "per-query values to compare")) for path in paths]
    first = rows[0].result
    metric = args.metric or first.declared_main_metric
    check_same_variant([(r.path, r.result) for r in rows], "compare runs on the same queries")
    scores = {}
    for row in rows:
        values = {q: v[metric] for q, v in (row.result.per_query or {}).items() if metric in v}
        if not values:
            raise HarnessError(f"{row.path}: has no per-query {metric!r} (its metrics: {', '.join(sorted(row.result.metrics))})")
        scores[str(row.path)] = values
    comparisons = compare(scores, metric, baseline=args.baseline and str(Path(args.baseline)), test=args.test,
                          alpha=args.alpha)
    labels = {str(r.path): r.label for r in rows}
    if len(set(labels.values())) < len(labels):  # rows that only their files tell apart
        labels = {path: f"{label} [{Path(path).stem}]" for path, label in labels.items()}
    means = [[labels[str(r.path)], str(r.path), str(len(scores[str(r.path)])), fmt(r.result.metrics.get(metric))]
             for r in rows]
    pairs = [[labels[c.a], labels[c.b], str(c.n), fmt(c.delta), "–" if c.effect_size is None else f"{c.effect_size:.2f}",
              "–" if c.ci_low is None else f"[{fmt(c.ci_low)}, {fmt(c.ci_high)}]",
              "–" if c.p is None else f"{c.p:.3g}", "–" if c.p_holm is None else f"{c.p_holm:.3g}",
              c.mark] for c in comparisons]
    test = "paired randomization test" if args.test == "randomization" else "paired t-test"
    print(f"{first.task.id} [{rows[0].variant or 'full data'}], {metric} ×100; {test}, Holm over "
          f"{len(comparisons)} comparisons, α = {args.alpha:g}\n")
    _print(["row", "file", "n", metric], means, args.markdown)
    print()
    _print(["A", "B", "n", "Δ (A − B)", "d_z", "95% CI of Δ", "p", "p (Holm)", "sig."], pairs, args.markdown)
    return 0


def _print(header: list[str], cells: list[list[str]], markdown: bool) -> None:
    """A table: markdown, or columns padded with spaces."""
    from harness.leaderboard import markdown_table

    if markdown:
        print("\n".join(markdown_table(header, cells)))
        return
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    for line in [header, *cells]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
