#!/usr/bin/env python
"""GPU benchmark of the attention scorer (issue 3, "Performance"), a thin wrapper of ``harness bench qr``.

The workload of the GPU target: the Llama-3.1-8B shape (32 layers, 32 heads, 8 KV heads,
hidden 4096) with random bf16 weights (seed 0, no LM head), the paper's NQ heads (highest layer
20), at each LENGTH in prompt tokens:

- plain: one SDPA prefill of the whole base model over the prompt (the cost floor of any method
  that runs every layer, as the paper's code does);
- ours: end-to-end scoring, tokenised prompt to document scores, null query included;
- ours with 8 queries ("claims") over the same context, against 1;
- naive (eager ``output_attentions=True``): reported as out of memory from its size estimate
  (32 × 32 × T² × 2 bytes: about 2 TiB at 32K tokens), never attempted at these lengths.

One process, one loaded model; peak memory is ``torch.cuda.max_memory_allocated``; each method
gets ``--warmup`` (1) untimed call and ``--repeats`` (1) timed calls. Documents are 100-word
chunks of the Paul Graham essays, tokenised with SmolLM2's tokenizer (the random model needs
only token ids below its vocabulary size).

Usage::

    python scripts/bench_qr_gpu.py [--output FILE] [--repeats N] [LENGTH ...]   # default 32768 131072
    python scripts/bench_qr_gpu.py --dry-run 512      # the tiny random Llama on CPU: checks the script

The JSON record goes to ``--output``, else ``$OUT/qr-gpu.json`` (else ``results/bench/qr-gpu.json``),
with a Markdown summary next to it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.cli import main as harness_main


def build_argv(args: argparse.Namespace) -> list[str]:
    """The ``harness bench qr`` command line this script runs."""
    if args.output is not None:
        output = Path(args.output)
    elif os.environ.get("OUT"):
        output = Path(os.environ["OUT"]) / "qr-gpu.json"
    else:
        output = REPO / "results" / "bench" / "qr-gpu.json"
    lengths = ",".join(str(n) for n in (args.lengths or ([512] if args.dry_run else [32768, 131072])))
    argv = ["-v", "2", "bench", "qr", "--methods", "ours,plain,naive", "--queries", "8", "--lengths", lengths]
    argv += ["--repeats", str(args.repeats), "--warmup", str(args.warmup), "--isolate", "none", "--output", str(output)]
    if args.dry_run:
        argv += ["--random-config", "tiny-llama", "--device", "cpu", "--dtype", "float32"]
    else:
        argv += ["--random-config", "llama-3.1-8b", "--device", "cuda", "--dtype", "bfloat16", "--heads", "nq"]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lengths", nargs="*", type=int, help="prompt lengths in tokens (default 32768 131072)")
    parser.add_argument("--output", default=None, help="JSON record path (default $OUT/qr-gpu.json)")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per method (default 1)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per method (default 1)")
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny random Llama on CPU instead of the 8B shape on CUDA"
    )
    args = parser.parse_args(argv)
    return harness_main(build_argv(args))


if __name__ == "__main__":
    raise SystemExit(main())
