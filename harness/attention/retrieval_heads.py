"""Retrieval heads (RetHead; Wu et al. 2024, "Retrieval Head Mechanistically Explains Long-Context
Factuality", ``nightdessert/Retrieval_Head``'s ``retrieval_head_detection.py``): the copy-paste
retrieval score on needle-in-a-haystack prompts (``harness detect --objective retrieval-head``).

For each prompt (a NIAH instance rendered with the task's generation prompt and the model's chat
template), the model answers greedily, one token at a time from a KV cache, for at most the
needle's length + ``extra_tokens`` tokens (it stops at an end-of-turn token or a token holding a
line break, as the script stops at a newline). At decoding step ``s`` the query row is the
position whose logits produce the token ``g_s`` (the last prompt token for the first answer
token, then each answer token in turn, as in the script, which prefills ``prompt[:-1]`` and
decodes from the last prompt token). A head *retrieves* at step ``s`` when its arg-max attention
from that row lands on a position ``a`` of the needle span ``N`` of the prompt and the token there
is the one generated (a copy):

.. math:: \\mathrm{score}_{l,h} = \\frac{1}{|N|} \\sum_s [\\arg\\max_t A^{l,h}_{s,t} \\in N
          \\wedge x_{\\arg\\max_t A^{l,h}_{s,t}} = g_s]

averaged over the prompts. Steps whose token is not a needle token never count. ``N`` is the
tokens of the needle's answer part (the task's ``answer``, the script's ``real_needle``: "eat a
sandwich and sit in Dolores Park on a sunny day" for the paper's needle; the whole needle when the
answer is not inside it), located in the prompt by character offsets (the script searches token
overlap). A needle token copied twice counts twice, as in the script. Differences from the
script: every prompt counts (the script keeps only answers with ROUGE-1 recall above 50), the
answer budget is the needle's length + a few tokens instead of 50, and ties of the arg-max take
the first position.

Attention rows are captured through the engine's ``qr_capture`` attention (fp32 softmax rows of
every head for the one query row of each decoding step, :mod:`.capture`), so memory stays one
row per head per step; only the arg-max position of each head is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from harness.errors import HarnessError
from harness.progress import progress
from harness.resume import ResumeFile
from harness.types import Instance

log = logging.getLogger(__name__)

OBJECTIVE = "retrieval-head"
#: Answer tokens allowed beyond the needle's length.
EXTRA_TOKENS = 8

Messages = list[dict[str, str]]


def copy_hits(argmax: torch.Tensor, generated: torch.Tensor, context_ids: torch.Tensor,
              span: tuple[int, int]) -> torch.Tensor:
    """Per-head copy-paste retrieval score of one prompt, ``[layers, heads]`` float64.

    ``argmax`` ``[steps, layers, heads]``: each head's arg-max key position at each step;
    ``generated`` ``[steps]``: the token produced at that step; ``context_ids`` ``[P]``: the prompt;
    ``span`` ``(start, end)``: the needle tokens in the prompt. A hit is an arg-max inside the span
    on a token equal to the generated one; the score is hits / span length.
    """
    start, end = span
    if not 0 <= start < end <= context_ids.shape[0]:
        raise HarnessError(f"needle span {span} is not inside the prompt of {context_ids.shape[0]} tokens")
    if argmax.shape[0] == 0:
        return torch.zeros(argmax.shape[1:], dtype=torch.float64)
    copying = torch.isin(generated, context_ids[start:end])  # [S]: the step copies a needle token
    in_span = (argmax >= start) & (argmax < end)
    pointed = context_ids[argmax.clamp(0, context_ids.shape[0] - 1)]  # token under each arg-max
    hit = in_span & (pointed == generated[:, None, None]) & copying[:, None, None]
    return hit.sum(dim=0).to(torch.float64) / (end - start)


def retrieval_scores(attentions: Sequence[torch.Tensor], generated: Sequence[int], context_ids: Sequence[int],
                     span: tuple[int, int]) -> torch.Tensor:
    """:func:`copy_hits` from attention rows: ``attentions[s]`` is ``[layers, heads, keys_s]``, the
    row of decoding step ``s`` over every key it sees (the prompt first)."""
    if not attentions:
        raise HarnessError("retrieval_scores: no decoding step")
    argmax = torch.stack([a.argmax(dim=-1) for a in attentions])
    return copy_hits(argmax, torch.as_tensor(list(generated), dtype=torch.long),
                     torch.as_tensor(list(context_ids), dtype=torch.long), span)


# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class NeedlePrompt:
    """One tokenised prompt: its ids, the needle span scored, and the answer budget."""

    qid: str
    ids: list[int]
    span: tuple[int, int]
    max_new: int


def book_prompt(inst: Instance) -> Messages:
    """Retrieval_Head's chat prompt over every candidate in order (``niah``'s default prompt)."""
    context = " ".join(d.text for d in inst.candidates)
    question = inst.query.text
    return [{"role": "user",
             "content": f"<book>{context}</book>\nBased on the content of the book, Question: {question}\nAnswer:"}]


def _token_span(offsets: Sequence[tuple[int, int]], a: int, b: int) -> tuple[int, int] | None:
    """Tokens whose characters overlap ``[a, b)``, as ``(first, last + 1)``."""
    hits = [i for i, (s, e) in enumerate(offsets) if e > s and s < b and e > a]
    return (hits[0], hits[-1] + 1) if hits else None


def needle_prompt(tokenizer: Any, inst: Instance, messages: Messages, answer: str | None,
                  extra_tokens: int = EXTRA_TOKENS) -> NeedlePrompt:
    """Render ``messages`` with the chat template, tokenise, and find the needle (``inst.answer``)
    and its answer part ``answer`` in the prompt by character offsets."""
    from harness.models.chat import render_chat

    needle = (inst.answer or "").strip()
    if not needle:
        raise HarnessError(f"query {inst.query.id}: retrieval-head detection needs the needle (the instance's answer)")
    text = render_chat(tokenizer, messages)
    at = text.find(needle)
    if at < 0 or text.find(needle, at + 1) >= 0:
        found = "not found in" if at < 0 else "found twice in"
        raise HarnessError(f"query {inst.query.id}: the needle is {found} the prompt (retrieval-head detection)")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    whole = _token_span(offsets, at, at + len(needle))
    inner = needle.find(answer.strip()) if answer and answer.strip() else -1
    a, b = (at + inner, at + inner + len(answer.strip())) if inner >= 0 else (at, at + len(needle))
    span = _token_span(offsets, a, b)
    if whole is None or span is None:
        raise HarnessError(f"query {inst.query.id}: the needle has no token in the prompt")
    return NeedlePrompt(inst.query.id, list(enc["input_ids"]), span, whole[1] - whole[0] + extra_tokens)


# --------------------------------------------------------------------------- decoding with capture


@dataclass
class Decoded:
    """Greedy answer of one prompt: its tokens, each head's arg-max key per step ``[S, L, H]``,
    and (``keep_rows``) the attention rows ``[L, H, keys]`` per step."""

    generated: list[int]
    argmax: torch.Tensor
    rows: list[torch.Tensor] | None = None


def _cache_kw(module: Any) -> str:
    import inspect

    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


class CopyDecoder:
    """Greedy decoding of a causal LM from a KV cache, capturing every head's attention row of the
    query of each step through the ``qr_capture`` attention (SDPA output unchanged)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        from harness.attention import capture
        from harness.attention.heads import ModelShape
        from harness.models.chat import stop_token_ids

        if getattr(model, "_supports_attention_backend", None) is False:
            raise HarnessError(f"model type {type(model).__name__!r} does not route attention through transformers' "
                               "attention interface; retrieval-head detection cannot capture it")
        self.model, self.tokenizer = model, tokenizer
        self.shape = ModelShape.from_config(model.config)
        self.base = getattr(model, "base_model", model)
        self.stops = set(stop_token_ids(model, tokenizer))
        text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.max_context = getattr(text_config, "max_position_embeddings", None)
        self.heads = {layer: list(range(self.shape.num_heads)) for layer in range(self.shape.num_layers)}
        self._breaks: dict[int, bool] = {}
        self._kw = {id(m): _cache_kw(m) for m in (model, self.base)}  # transformers 5 renames past_key_values
        capture.register()

    def _capture_impl(self) -> Any:
        from harness.attention import capture

        return capture.implementation(self.model, self.base)

    def _device(self) -> torch.device:
        from harness.attention import capture

        return capture.device_of(self.base)

    def _step(self, token: int, cache: Any) -> tuple[int, torch.Tensor]:
        """One decoding step: the next token and the rows ``[L, H, keys]`` of ``token``'s query."""
        from harness.attention import capture

        session = capture.CaptureSession(heads_by_layer=self.heads, stop_after=self.shape.num_layers,
                                         keep_keys=cache.get_seq_length() + 1, capture=True, per_head=True)
        with capture.active(session):
            out = self.model(input_ids=torch.tensor([[token]], device=self._device()), use_cache=True,
                             **{self._kw[id(self.model)]: cache})
        if len(session.results) != self.shape.num_layers:
            missing = sorted(set(range(self.shape.num_layers)) - set(session.results))
            raise HarnessError(f"attention of layer(s) {missing[:5]} did not go through the attention interface; "
                               "retrieval-head detection cannot capture it")
        rows = torch.stack([session.results[layer] for layer in range(self.shape.num_layers)])
        return int(out.logits[0, -1].argmax()), rows

    def _ends(self, token: int) -> bool:
        if token not in self._breaks:
            self._breaks[token] = token in self.stops or "\n" in self.tokenizer.decode([token])
        return self._breaks[token]

    def decode(self, ids: Sequence[int], max_new: int, *, keep_rows: bool = False) -> Decoded:
        """Prefill ``ids[:-1]``, then decode from ``ids[-1]`` for at most ``max_new`` tokens."""
        from transformers import DynamicCache

        generated: list[int] = []
        argmax: list[torch.Tensor] = []
        kept: list[torch.Tensor] = []
        with torch.inference_mode(), self._capture_impl():
            cache = DynamicCache()
            if len(ids) > 1:  # no capture session: qr_capture is plain SDPA here
                self.base(input_ids=torch.tensor([list(ids[:-1])], device=self._device()), use_cache=True,
                          **{self._kw[id(self.base)]: cache})
            token = int(ids[-1])
            for _ in range(max_new):
                token, rows = self._step(token, cache)
                generated.append(token)
                argmax.append(rows.argmax(dim=-1).cpu())
                if keep_rows:
                    kept.append(rows.cpu())
                if self._ends(token):
                    break
        n_l, n_h = self.shape.num_layers, self.shape.num_heads
        stacked = torch.stack(argmax) if argmax else torch.zeros((0, n_l, n_h), dtype=torch.long)
        return Decoded(generated, stacked, kept if keep_rows else None)


# --------------------------------------------------------------------------- detection


def _load(model: Any, tokenizer: Any, dtype: str | None, device: str | None) -> tuple[Any, Any, str, Any]:
    if isinstance(model, str):
        from harness.models.load import load_causal_lm

        spec = model
        model, tokenizer, info = load_causal_lm(spec, dtype=dtype, device=device)
        return model, tokenizer, spec, info
    if tokenizer is None:
        raise HarnessError("detect_retrieval_heads: a loaded model needs its tokenizer")
    return model, tokenizer, getattr(model.config, "_name_or_path", "") or type(model).__name__, None


def detect_retrieval_heads(
    model: Any,
    instances: Sequence[Instance],
    *,
    tokenizer: Any = None,
    prompt: Callable[[Instance], Messages] | None = None,
    answer: str | None = None,
    top: int = 16,
    extra_tokens: int = EXTRA_TOKENS,
    seed: int | None = None,
    data: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
    show_progress: bool = True,
    resume: ResumeFile | None = None,
) -> dict[str, Any]:
    """Retrieval heads of ``model`` (a spec, or a loaded model with ``tokenizer``) on NIAH instances.

    ``prompt(inst)`` gives each instance's chat messages (default :func:`book_prompt`; ``harness
    detect`` passes the task's ``generation_prompt`` over every candidate); ``answer`` is the part of
    the needle scored (default: the whole needle). Every prompt is tokenised and checked against
    the model's context first. With ``resume``, each prompt's head scores are appended as soon as
    they are computed and prompts already in the file are not decoded again. Returns the head-file
    object (``--heads FILE``): every head sorted by its mean score, ``top`` the number used.
    """
    from harness.attention.detection import _ranked

    if top < 1:
        raise HarnessError(f"top must be a positive integer, got {top}")
    if not instances:
        raise HarnessError("detect_retrieval_heads: no instance")
    model, tokenizer, spec, info = _load(model, tokenizer, dtype, device)
    decoder = CopyDecoder(model, tokenizer)
    build = prompt or book_prompt
    prompts = _prepare(decoder, instances, build, answer, extra_tokens, resume)
    total, stats = _RetrievalPass(decoder, resume).run(prompts, show_progress)
    n_h = decoder.shape.num_heads
    flat = _ranked(total / len(prompts), n_h)
    return {
        "model": getattr(info, "spec", None) or spec,
        "revision": getattr(info, "revision", None),
        "objective": OBJECTIVE,
        "data": data,
        "n": len(prompts),
        "seed": seed,
        "answer_tokens": f"needle tokens + {extra_tokens}",
        "scored_span": answer.strip() if answer and answer.strip() else "needle",
        **stats,
        "shape": {"layers": decoder.shape.num_layers, "heads": n_h, "kv_heads": decoder.shape.num_kv_heads},
        "top": min(top, len(flat)),
        "heads": [[f"{layer}-{h}", score] for (layer, h), score in flat],
    }


def _prepare(decoder: CopyDecoder, instances: Sequence[Instance], build: Callable[[Instance], Messages],
             answer: str | None, extra_tokens: int, resume: ResumeFile | None) -> list[NeedlePrompt | str]:
    """Tokenise and check every prompt still to run (one over the model's context fails now, not
    after an hour of decoding); prompts already in ``resume`` stay as their query id."""
    out: list[NeedlePrompt | str] = []
    for inst in instances:
        if resume is not None and inst.query.id in resume.done:
            out.append(inst.query.id)
            continue
        p = needle_prompt(decoder.tokenizer, inst, build(inst), answer, extra_tokens)
        if decoder.max_context is not None and len(p.ids) + p.max_new > decoder.max_context:
            raise HarnessError(f"query {p.qid}: the prompt has {len(p.ids)} tokens, plus {p.max_new} to answer: more "
                               f"than the model's context of {decoder.max_context}")
        out.append(p)
    return out


class _RetrievalPass:
    """Every prompt's head scores (``[L*H]``, layer-major), read back from ``resume`` or decoded and
    appended to it, summed; with the counts of decoding and copying steps."""

    def __init__(self, decoder: CopyDecoder, resume: ResumeFile | None) -> None:
        self.decoder, self.resume = decoder, resume
        n_l, n_h = decoder.shape.num_layers, decoder.shape.num_heads
        self.names = [f"{i // n_h}-{i % n_h}" for i in range(n_l * n_h)]

    def run(self, prompts: Sequence[NeedlePrompt | str], show_progress: bool) -> tuple[torch.Tensor, dict[str, int]]:
        total = torch.zeros(len(self.names), dtype=torch.float64)
        counts = {"steps": 0, "copy_steps": 0, "prompts_copying": 0}
        bar = progress(total=len(prompts), desc="retrieval heads", unit="prompt", show=show_progress)
        try:
            for p in prompts:
                value, stats = self._value(p)
                total += value
                counts["steps"] += int(stats["steps"])
                counts["copy_steps"] += int(stats["copy_steps"])
                counts["prompts_copying"] += int(stats["copy_steps"] > 0)
                bar.update(1)
        finally:
            bar.close()
            if self.resume is not None:
                self.resume.close()
        return total, counts

    def _value(self, p: NeedlePrompt | str) -> tuple[torch.Tensor, dict[str, float]]:
        if isinstance(p, str):
            assert self.resume is not None
            row = self.resume.done[p]
            return torch.tensor([row["scores"][n] for n in self.names], dtype=torch.float64), row["stats"]
        out = self.decoder.decode(p.ids, p.max_new)
        generated = torch.tensor(out.generated, dtype=torch.long)
        context = torch.tensor(p.ids, dtype=torch.long)
        value = copy_hits(out.argmax, generated, context, p.span).reshape(-1)
        stats = {"steps": float(len(out.generated)),
                 "copy_steps": float(torch.isin(generated, context[p.span[0]:p.span[1]]).sum())}
        log.debug("%s: %r", p.qid, self.decoder.tokenizer.decode(out.generated))
        if self.resume is not None:
            self.resume.append(p.qid, dict(zip(self.names, value.tolist())), stats)
        return value, stats


__all__ = ["OBJECTIVE", "CopyDecoder", "book_prompt", "copy_hits", "detect_retrieval_heads", "needle_prompt",
           "retrieval_scores"]
