"""Slow, obviously-correct reference of the QRHead/ICR scores (tests and benchmarks only).

Two full forwards per query (the real query and the null query) with eager attention and
``output_attentions=True``; every formula of docs/PROTOCOL.md §1.4 evaluated naively in float64 from
the returned ``[layers][1, heads, T, T]`` attention tensors, one document at a time. Spans are
mapped to tokens by a plain loop over the offsets. It is O(T²) per layer in memory: only for short
prompts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from harness.attention.heads import Head
from harness.attention.prompts import PromptTemplate, build_prompt
from harness.types import Document


def _token_range(offsets: Sequence[tuple[int, int]], start: int, end: int) -> list[int]:
    return [i for i, (a, b) in enumerate(offsets) if a < end and b > start]


def attention_scores(model: Any, tokenizer: Any, text: str) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    """Eager attention maps of every layer (float64, ``[heads, T, T]``) and the token offsets."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]], device=model.get_input_embeddings().weight.device)
    config = model.config
    saved = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        with torch.inference_mode():
            out = getattr(model, "base_model", model)(input_ids=ids, output_attentions=True)
    finally:
        config._attn_implementation = saved
    return [a[0].to(torch.float64).cpu() for a in out.attentions], [tuple(o) for o in enc["offset_mapping"]]


def reference_head_scores(
    model: Any,
    tokenizer: Any,
    template: PromptTemplate,
    docs: Sequence[Document],
    query: str,
    heads: Sequence[Head] | None = None,
    null_query: str = "N/A",
    *,
    per_head: bool = False,
) -> torch.Tensor:
    """Document scores ``[n_docs]``, or per head ``[n_docs, |heads|]`` (mask per head) when ``per_head``."""
    q_prompt = build_prompt(template, docs, query)
    n_prompt = build_prompt(template, docs, null_query)
    att_q, off_q = attention_scores(model, tokenizer, q_prompt.text)
    att_n, off_n = attention_scores(model, tokenizer, n_prompt.text)
    if heads is None:
        heads = [(layer, h) for layer in range(len(att_q)) for h in range(att_q[0].shape[0])]
    rows_q = _token_range(off_q, *q_prompt.query_span)
    rows_n = _token_range(off_n, *n_prompt.query_span)
    shared = min(len(off_q), len(off_n))

    def calibrated(layer: int, h: int) -> torch.Tensor:
        s_q = att_q[layer][h][rows_q, :].mean(dim=0)[:shared]
        s_n = att_n[layer][h][rows_n, :].mean(dim=0)[:shared]
        return s_q - s_n

    cs = [calibrated(layer, h) for layer, h in heads]
    doc_token_lists = [_token_range(off_n, s, e) for s, e in n_prompt.doc_spans]

    def masked_sum(s: torch.Tensor) -> list[float]:
        scores = []
        for toks in doc_token_lists:
            vals = s[toks]
            if len(toks) == 1:
                scores.append(float(vals[0]))
                continue
            mu = float(vals.mean())
            sd = float(vals.std())
            total = 0.0
            for v in vals.tolist():
                if v > mu - 2 * sd:
                    total += v
            assert math.isfinite(total) or not math.isfinite(sd)
            scores.append(total)
        return scores

    if per_head:
        return torch.tensor([masked_sum(c) for c in cs], dtype=torch.float64).T
    return torch.tensor(masked_sum(torch.stack(cs).sum(dim=0)), dtype=torch.float64)
