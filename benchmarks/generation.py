"""``harness bench generation``: hf: backend throughput, batched against one-by-one, and the cache.

What is timed
    The same ``--prompts`` (16) short questions, greedy, ``--max-tokens`` (32) new tokens at
    most, through one loaded model (``--model``, default the offline ``smollm2-135m``):

    1. *batched*: ``batch_size=--batch-size`` (16), prompts sorted by length, left padding;
    2. *one-by-one*: ``batch_size=1``, the same prompts in turn.

    Both run with the cache off, alternately, ``--repeats`` (2) rounds after one untimed warm-up
    generation; the best time of each counts (the usual estimate on a shared machine). Reported:
    seconds, prompts/s and generated tokens/s (tokens counted with the model's tokenizer), and
    how many answers are identical between the two (greedy decoding; left padding can flip a
    near-tie in low precision).

    3. *cache*: a fresh cache file; a first pass fills it (cold, batched), a second pass over the
       same prompts is timed and must be served entirely from it (``cached=True`` hits counted).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.benchmarks._common import add_output_arguments, machine_line, require_at_least_one, write_and_print
from harness.errors import HarnessError
from harness.provenance import load_average, machine

log = logging.getLogger(__name__)

QUESTIONS = (
    "What is the capital of France?",
    "Name three primary colors.",
    "How many legs does a spider have?",
    "What is the boiling point of water in Celsius?",
    "Who wrote Romeo and Juliet?",
    "What gas do plants absorb from the air?",
    "Give a synonym for happy.",
    "What is 12 times 12?",
    "Which planet is known as the Red Planet?",
    "What language is spoken in Brazil?",
    "Describe a cat in one sentence.",
    "What is the largest ocean on Earth?",
    "How many days are in a leap year?",
    "What is the chemical symbol for gold?",
    "Name a famous composer.",
    "Why is the sky blue? Answer briefly.",
)


def benchmark(model: str = "smollm2-135m", *, n_prompts: int = 16, max_tokens: int = 32, batch_size: int = 16,
              repeats: int = 2, device: str | None = "cpu", dtype: str | None = None) -> dict[str, Any]:
    """Run the three measurements (see the module docstring) and return the record."""
    from harness.generation.base import encode
    from harness.generation.hf import HFGenerator
    from harness.models.load import load_causal_lm

    if not 1 <= n_prompts <= len(QUESTIONS):
        raise HarnessError(f"--prompts must be between 1 and {len(QUESTIONS)}, got {n_prompts}")
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS[:n_prompts]]
    started = time.perf_counter()
    loaded = load_causal_lm(model, dtype=dtype, device=device)
    load_seconds = time.perf_counter() - started
    spec = f"hf:{model}"
    host = machine(str(next(loaded[0].parameters()).device))
    batched = HFGenerator.from_loaded(spec, *loaded, batch_size=batch_size, cache=False)
    single = HFGenerator.from_loaded(spec, *loaded, batch_size=1, cache=False)
    single.generate(prompts[:1], max_tokens=4, show_progress=False)  # warm-up, untimed

    def timed(generator: HFGenerator) -> tuple[float, list[str]]:
        t0 = time.perf_counter()
        out = generator.generate(prompts, max_tokens=max_tokens, show_progress=False)
        return time.perf_counter() - t0, [g.text for g in out]

    times: dict[str, list[float]] = {"batched": [], "one_by_one": []}
    texts: dict[str, list[str]] = {}
    for round_ in range(repeats):
        order = (("batched", batched), ("one_by_one", single)) if round_ % 2 == 0 else (("one_by_one", single), ("batched", batched))
        for name, generator in order:
            seconds, texts[name] = timed(generator)
            times[name].append(seconds)
            log.info("round %d %s: %.2f s", round_ + 1, name, seconds)
    tokenizer = loaded[1]
    generated_tokens = sum(len(encode(tokenizer, t)) for t in texts["batched"])
    best = {name: min(values) for name, values in times.items()}

    with tempfile.TemporaryDirectory() as tmp:
        cached = HFGenerator.from_loaded(spec, *loaded, batch_size=batch_size, cache=Path(tmp) / "bench.sqlite")
        t0 = time.perf_counter()
        first = cached.generate(prompts, max_tokens=max_tokens, show_progress=False)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = cached.generate(prompts, max_tokens=max_tokens, show_progress=False)
        warm = time.perf_counter() - t0
    hits = sum(g.cached for g in second)
    if hits != len(prompts) or [g.text for g in second] != [g.text for g in first]:
        raise HarnessError(f"cache check failed: {hits} of {len(prompts)} prompts served from the cache")

    return {
        "benchmark": "generation",
        "backend": "hf", "model": model, "revision": getattr(loaded[2], "revision", None),
        "device": str(next(loaded[0].parameters()).device), "dtype": str(next(loaded[0].parameters()).dtype),
        "prompts": n_prompts, "max_tokens": max_tokens, "batch_size": batch_size, "repeats": repeats,
        "load_seconds": round(load_seconds, 3),
        "seconds": {name: [round(v, 3) for v in values] for name, values in times.items()},
        "best_seconds": {name: round(v, 3) for name, v in best.items()},
        "generated_tokens": generated_tokens,
        "tokens_per_second": {name: round(generated_tokens / v, 2) for name, v in best.items()},
        "prompts_per_second": {name: round(n_prompts / v, 3) for name, v in best.items()},
        "speedup_batched": round(best["one_by_one"] / best["batched"], 2),
        "identical_answers": sum(a == b for a, b in zip(texts["batched"], texts["one_by_one"])),
        "cache": {"cold_seconds": round(cold, 3), "warm_seconds": round(warm, 4), "hits": hits,
                  "prompts": n_prompts, "speedup": round(cold / warm, 1) if warm > 0 else None},
        "machine": {**host, "load_average_at_end": load_average()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def markdown(result: dict[str, Any]) -> str:
    """A short human-readable summary of a result record."""
    m, b, c = result["machine"], result["best_seconds"], result["cache"]
    tps, pps = result["tokens_per_second"], result["prompts_per_second"]
    return "\n".join([
        f"# Generation benchmark: hf:{result['model']} on {result['device']} ({result['dtype']})",
        "",
        (f"{result['prompts']} prompts, greedy, at most {result['max_tokens']} new tokens "
         f"({result['generated_tokens']} generated); best of {result['repeats']} rounds."),
        "",
        "| mode | seconds | prompts/s | tokens/s |",
        "|---|---|---|---|",
        f"| batched (batch {result['batch_size']}) | {b['batched']:.2f} | {pps['batched']:.2f} | {tps['batched']:.1f} |",
        f"| one-by-one | {b['one_by_one']:.2f} | {pps['one_by_one']:.2f} | {tps['one_by_one']:.1f} |",
        "",
        (f"Batching speed-up: **{result['speedup_batched']}x**; identical answers: "
         f"{result['identical_answers']}/{result['prompts']}."),
        "",
        (f"Cache: first pass {c['cold_seconds']:.2f} s, second pass over the same prompts "
         f"{c['warm_seconds'] * 1000:.1f} ms with {c['hits']}/{c['prompts']} cache hits ({c['speedup']}x)."),
        "",
        machine_line(m),
        "",
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``harness bench generation``."""
    parser.add_argument("--model", default="smollm2-135m", help="anything hf: accepts (default smollm2-135m)")
    parser.add_argument("--prompts", type=int, default=16, help=f"number of prompts, at most {len(QUESTIONS)} (default 16)")
    parser.add_argument("--max-tokens", "--max_tokens", type=int, default=32, help="new tokens per answer (default 32)")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=16, help="batch size of the batched mode")
    parser.add_argument("--repeats", type=int, default=2, help="timing rounds; the best time counts (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16 (default: fp32 on CPU, bf16 on CUDA)")
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print a summary (or JSON) and optionally write the record."""
    from harness.io import check_writable

    require_at_least_one(args, ("max_tokens", "batch_size", "repeats"))
    if args.output is not None:
        check_writable(args.output)
    result = benchmark(args.model, n_prompts=args.prompts, max_tokens=args.max_tokens, batch_size=args.batch_size,
                       repeats=args.repeats, device=None if args.device == "auto" else args.device, dtype=args.dtype)
    return write_and_print(args, result, markdown(result))

