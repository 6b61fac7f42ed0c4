"""The attention-scoring engine of QRRetriever / ICR (docs/PROTOCOL.md §1.4, §2).

For one context (a list of documents) and several queries:

1. Build and tokenise each prompt (:mod:`.prompts`); the tokens before the query span (BOS,
   template prefix, header, every document) are the *shared prefix*, identical for all queries.
2. One forward of the prefix through the decoder with a KV cache, stopped after the highest
   layer holding a selected head (the LM head never runs).
3. For the null query ``"N/A"`` and each real query: continue from the cached prefix with the
   suffix tokens (instruction, ``Query: ...``, template tail) and capture, for the selected heads,
   ``S[l,h,t]`` = mean over the suffix rows of the softmax attention on prefix position ``t``
   (:mod:`.capture`). The cache is cropped back to the prefix after each suffix.
4. Calibrate ``C = S_q − S_null``; QR/ICR sum it over heads, ``s[t] = Σ_{(l,h)∈H} C[l,h,t]``;
   per document, with ``μ``, ``σ`` (unbiased) over its tokens, keep ``s[t] > μ − 2σ`` (strict)
   and sum the kept tokens. A one-token document keeps its token (the paper's σ is NaN there
   and scores it 0; we define it as ``s[t]``). Detection does the same per head
   (:meth:`AttentionEngine.score_heads`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from harness.attention import capture
from harness.attention.heads import Head, ModelShape, validate_heads
from harness.attention.prompts import PromptTemplate, build_prompt, tokenize_prompt
from harness.errors import HarnessError
from harness.types import Document

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- LOW LEVEL: scoring math


@dataclass(frozen=True)
class DocSegments:
    """Token positions of every document, flattened: ``positions[i]`` belongs to doc ``seg[i]``."""

    positions: torch.Tensor  # [N] long
    seg: torch.Tensor  # [N] long
    counts: torch.Tensor  # [n_docs] float64

    @classmethod
    def from_spans(cls, spans: Sequence[tuple[int, int]], device: torch.device | str = "cpu") -> DocSegments:
        pos = torch.cat([torch.arange(a, b) for a, b in spans]) if spans else torch.zeros(0, dtype=torch.long)
        seg = torch.cat([torch.full((b - a,), i) for i, (a, b) in enumerate(spans)]) if spans else pos
        counts = torch.tensor([b - a for a, b in spans], dtype=torch.float64)
        return cls(pos.to(device), seg.long().to(device), counts.to(device))


def masked_doc_sums(s: torch.Tensor, segments: DocSegments) -> torch.Tensor:
    """Per-document sums of ``s`` after the mean − 2·std outlier mask, for each row of ``s``.

    ``s`` is ``[K, P]`` (K = 1 head-summed row, or one row per head); returns ``[K, n_docs]``
    in float64:

    .. math:: \\mathrm{score}_k(d) = \\sum_{t\\in d,\\; s_k[t] > \\mu_{k,d} - 2\\sigma_{k,d}} s_k[t]

    with ``σ`` the unbiased standard deviation; a one-token document keeps its token.
    """
    x = s.to(torch.float64)[:, segments.positions]  # [K, N]
    k, n_docs = x.shape[0], segments.counts.shape[0]
    seg = segments.seg
    zeros = torch.zeros((k, n_docs), dtype=torch.float64, device=x.device)
    mean = zeros.index_add(1, seg, x) / segments.counts
    dev = x - mean[:, seg]
    denom = (segments.counts - 1).clamp(min=1)
    std = (zeros.index_add(1, seg, dev * dev) / denom).sqrt()
    keep = (x > (mean - 2 * std)[:, seg]) | (segments.counts[seg] == 1)
    return zeros.index_add(1, seg, torch.where(keep, x, torch.zeros_like(x)))


class _TokenChunked(torch.nn.Module):
    """Applies a token-wise module to ``chunk`` positions at a time (bounds MLP activations)."""

    def __init__(self, inner: torch.nn.Module, chunk: int) -> None:
        super().__init__()
        self.inner = inner
        self.chunk = chunk

    def forward(self, hidden: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if hidden.dim() != 3 or hidden.shape[1] <= self.chunk:
            return self.inner(hidden, *args, **kwargs)
        parts = [self.inner(piece, *args, **kwargs) for piece in hidden.split(self.chunk, dim=1)]
        if isinstance(parts[0], torch.Tensor):
            return torch.cat(parts, dim=1)
        return type(parts[0])(
            torch.cat(items, dim=1) if isinstance(items[0], torch.Tensor) else items[0] for items in zip(*parts)
        )


def _plain_causal(config: Any) -> bool:
    """True when every layer's mask is the plain causal mask (no sliding or chunked windows)."""
    layer_types = getattr(config, "layer_types", None)
    if layer_types and any(t != "full_attention" for t in layer_types):
        return False
    window = getattr(config, "sliding_window", None)
    if window and getattr(config, "use_sliding_window", True):
        return False
    return not getattr(config, "attention_chunk_size", None)


# --------------------------------------------------------------------------- HIGH LEVEL: the engine


@dataclass(frozen=True)
class EncodedContext:
    """Tokenised prompts of one context: shared prefix, doc token spans, one suffix per query."""

    prefix_ids: list[int]
    doc_tokens: tuple[tuple[int, int], ...]
    null_suffix: list[int]
    query_suffixes: list[list[int]]

    @property
    def prefix_len(self) -> int:
        return len(self.prefix_ids)


class AttentionEngine:
    """Scores documents with the attention of selected heads of a decoder LM.

    Args:
        model: a transformers causal LM (or its base model) whose attention goes through the
            attention interface (``_supports_attention_backend``).
        tokenizer: its fast tokenizer.
        template: the prompt template (:func:`.prompts.detect_template`).
        heads: ``(layer, head)`` pairs, 0-indexed; ``None`` = every head (ICR).
        null_query: the calibration query (``"N/A"``).
        max_context: refuse prompts longer than this many tokens (default: the model's
            ``max_position_embeddings``).
        budget: the largest number of attention logits materialised at once.
        prefill_chunk: run the shared prefix in chunks of this many tokens through the cache
            (``None``/``0``: one pass, SDPA's fastest causal kernel; chunks use lower-right causal
            attention on the cached past and are slower on GPU).
        mlp_chunk: during the prefix pass, apply each layer's MLP to this many tokens at a time
            (MLPs are token-wise, so this is exact). ``None`` (auto): 16384 for prefixes longer
            than 32768 tokens, where one pass of MLP activations would cost about as much memory
            as the KV cache (8B model at 128K tokens: about 10 GB); ``0``: never.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: PromptTemplate,
        heads: Sequence[Head] | None = None,
        *,
        null_query: str = "N/A",
        max_context: int | None = None,
        budget: int = 1 << 24,
        prefill_chunk: int | None = None,
        mlp_chunk: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.null_query = null_query
        self.budget = budget
        self.prefill_chunk = prefill_chunk
        self.mlp_chunk = mlp_chunk
        config = model.config
        self.shape = ModelShape.from_config(config)
        self.model_type = self.shape.model_type or type(model).__name__
        if getattr(model, "_supports_attention_backend", None) is False:
            raise HarnessError(
                f"model type {self.model_type!r} does not route attention through transformers' attention "
                "interface; attention-head retrievers need a model that does (Llama, Qwen2/3, Mistral, Gemma, Phi3, ...)"
            )
        if heads is None:
            heads = [(layer, h) for layer in range(self.shape.num_layers) for h in range(self.shape.num_heads)]
        validate_heads(heads, self.shape, where="heads")
        if not heads:
            raise HarnessError("heads: empty head list")
        self.heads: tuple[Head, ...] = tuple(heads)
        by_layer: dict[int, list[int]] = {}
        for layer, h in self.heads:
            by_layer.setdefault(layer, []).append(h)
        self.heads_by_layer = {layer: sorted(hs) for layer, hs in sorted(by_layer.items())}
        self.stop_after = max(self.heads_by_layer)
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.max_context = max_context or getattr(text_config, "max_position_embeddings", None)
        self.plain_causal = _plain_causal(text_config)
        self.base = getattr(model, "base_model", model)
        params = inspect.signature(self.base.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        capture.register()

    # ------------------------------------------------------------------ prompts

    def encode(
        self,
        docs: Sequence[Document],
        queries: Sequence[str],
        *,
        query_ids: Sequence[str] | None = None,
        truncate_words: int | None = None,
    ) -> EncodedContext:
        """Build, tokenise and split the prompts of ``queries`` over ``docs`` (null query included)."""
        ids = list(query_ids) if query_ids is not None else [str(i) for i in range(len(queries))]
        null = tokenize_prompt(
            self.tokenizer, build_prompt(self.template, docs, self.null_query, truncate_words=truncate_words)
        )
        self._check_length(len(null), ids[0] if ids else "(null query)")
        prefix = null.ids[: null.query_start]
        suffixes = []
        for qid, text in zip(ids, queries):
            tp = tokenize_prompt(self.tokenizer, build_prompt(self.template, docs, text, truncate_words=truncate_words))
            self._check_length(len(tp), qid)
            if tp.query_start != null.query_start or tp.ids[: tp.query_start] != prefix:
                raise HarnessError(f"query {qid}: the tokenizer splits the documents differently for this query")
            suffixes.append(tp.ids[tp.query_start :])
        return EncodedContext(prefix, null.doc_tokens, null.ids[null.query_start :], suffixes)

    def _check_length(self, n_tokens: int, qid: str) -> None:
        if self.max_context is not None and n_tokens > self.max_context:
            raise HarnessError(
                f"query {qid}: the prompt has {n_tokens} tokens, more than the model's context of {self.max_context} "
                "(set truncate_words to shorten documents, or max_context)"
            )

    # ------------------------------------------------------------------ forwards

    def _attention_impl(self) -> Any:
        return capture.implementation(self.model, self.base)

    def _device(self) -> torch.device:
        return capture.device_of(self.base)

    def _forward(self, ids: list[int], cache: Any, session: capture.CaptureSession) -> None:
        input_ids = torch.tensor([ids], dtype=torch.long, device=self._device())
        with capture.active(session):
            try:
                self.base(input_ids=input_ids, use_cache=True, **{self._cache_kw: cache})
            except capture.StopForward:
                pass
        missing = [layer for layer in range(self.stop_after + 1) if layer not in session.seen_layers]
        if missing:
            raise HarnessError(
                f"model type {self.model_type!r}: attention of layer(s) {missing[:5]} did not go through the "
                "attention interface; attention-head retrievers cannot capture it"
            )

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache()

    def _session(self, *, capture_on: bool, keep_keys: int, per_head: bool) -> capture.CaptureSession:
        return capture.CaptureSession(
            heads_by_layer=self.heads_by_layer,
            stop_after=self.stop_after,
            keep_keys=keep_keys,
            capture=capture_on,
            per_head=per_head,
            budget=self.budget,
            plain_causal=self.plain_causal,
        )

    def attention_rows(self, enc: EncodedContext, *, per_head: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``S_null`` and each query's ``S_q`` over the prefix positions.

        Head-summed (``[1, P]``) or per selected head in ``self.heads`` order (``[|H|, P]``).
        """
        p = enc.prefix_len
        with torch.inference_mode(), self._attention_impl():
            cache = self._new_cache()
            chunk = self.prefill_chunk if self.prefill_chunk else max(1, p)
            mlp_chunk = self.mlp_chunk if self.mlp_chunk is not None else (16384 if p > 32768 else 0)
            with self._chunked_mlps(mlp_chunk):
                for start in range(0, p, chunk):
                    session = self._session(capture_on=False, keep_keys=p, per_head=per_head)
                    self._forward(enc.prefix_ids[start : start + chunk], cache, session)
            outs = []
            for suffix in [enc.null_suffix, *enc.query_suffixes]:
                session = self._session(capture_on=True, keep_keys=p, per_head=per_head)
                self._forward(suffix, cache, session)
                outs.append(self._collect(session, per_head))
                grown = cache.get_seq_length() - p
                if grown > 0:
                    cache.crop(-grown)
        return outs[0], outs[1:]

    @contextmanager
    def _chunked_mlps(self, chunk: int) -> Iterator[None]:
        layers = getattr(self.base, "layers", None)
        if chunk <= 0 or layers is None:
            yield
            return
        swapped = []
        try:
            for layer in list(layers)[: self.stop_after + 1]:
                mlp = getattr(layer, "mlp", None)
                if isinstance(mlp, torch.nn.Module):
                    layer.mlp = _TokenChunked(mlp, chunk)
                    swapped.append((layer, mlp))
            yield
        finally:
            for layer, mlp in swapped:
                layer.mlp = mlp

    def _collect(self, session: capture.CaptureSession, per_head: bool) -> torch.Tensor:
        if per_head:
            rows = {
                (layer, h): session.results[layer][i]
                for layer, hs in self.heads_by_layer.items()
                for i, h in enumerate(hs)
            }
            return torch.stack([rows[head] for head in self.heads]).to(torch.float64)
        total = torch.stack([session.results[layer].to(torch.float64) for layer in self.heads_by_layer]).sum(0)
        return total[None, :]

    # ------------------------------------------------------------------ public scoring

    def doc_scores(
        self,
        docs: Sequence[Document],
        queries: Sequence[str],
        *,
        query_ids: Sequence[str] | None = None,
        truncate_words: int | None = None,
    ) -> torch.Tensor:
        """QR/ICR document scores, ``[n_queries, n_docs]`` float64 (higher is better).

        All queries share one prefix forward; a non-finite score raises :class:`HarnessError`.
        """
        if not docs or not queries:
            return torch.zeros((len(queries), len(docs)), dtype=torch.float64)
        enc = self.encode(docs, queries, query_ids=query_ids, truncate_words=truncate_words)
        return self.scores_from_encoded(enc, docs, query_ids=query_ids)

    def scores_from_encoded(
        self, enc: EncodedContext, docs: Sequence[Document], *, query_ids: Sequence[str] | None = None
    ) -> torch.Tensor:
        """:meth:`doc_scores` from already tokenised prompts (benchmarks time this part)."""
        scores = torch.cat(self._masked_sums(enc, docs, query_ids, per_head=False)).cpu()
        self._check_finite(scores, docs, query_ids)
        return scores

    def _masked_sums(
        self, enc: EncodedContext, docs: Sequence[Document], query_ids: Sequence[str] | None, *, per_head: bool
    ) -> list[torch.Tensor]:
        """Per query: calibrate (``S_q − S_null``), check finiteness, mask and sum per document.

        Rows are head-summed (``[1, n_docs]``) or one per selected head (``[|H|, n_docs]``).
        """
        null, per_query = self.attention_rows(enc, per_head=per_head)
        segments = DocSegments.from_spans(enc.doc_tokens, device=null.device)
        sums = []
        for qi, sq in enumerate(per_query):
            calibrated = sq - null
            self._check_finite_tokens(calibrated, segments, qi, docs, query_ids)
            sums.append(masked_doc_sums(calibrated, segments))
        return sums

    def score_heads(
        self,
        docs: Sequence[Document],
        queries: Sequence[str],
        *,
        query_ids: Sequence[str] | None = None,
        truncate_words: int | None = None,
    ) -> torch.Tensor:
        """Per-head calibrated, masked document scores ``[n_queries, n_docs, n_layers, n_heads]``.

        The mean − 2·std mask is computed per head (docs/PROTOCOL.md §2). Heads outside the engine's
        head set are 0. Used by head detection and benchmarks.
        """
        n_l, n_h = self.shape.num_layers, self.shape.num_heads
        out = torch.zeros((len(queries), len(docs), n_l, n_h), dtype=torch.float64)
        if not docs or not queries:
            return out
        enc = self.encode(docs, queries, query_ids=query_ids, truncate_words=truncate_words)
        layer_idx = torch.tensor([layer for layer, _ in self.heads])
        head_idx = torch.tensor([h for _, h in self.heads])
        for qi, per_head in enumerate(self._masked_sums(enc, docs, query_ids, per_head=True)):
            out[qi][:, layer_idx, head_idx] = per_head.cpu().T  # per_head: [|H|, n_docs]
        self._check_finite(out, docs, query_ids)
        return out

    def _check_finite_tokens(
        self,
        calibrated: torch.Tensor,
        segments: DocSegments,
        qi: int,
        docs: Sequence[Document],
        query_ids: Sequence[str] | None,
    ) -> None:
        # NaN > threshold is False: the mask would silently drop NaN tokens, so check before it
        bad = ~torch.isfinite(calibrated[:, segments.positions])
        if bool(bad.any()):
            doc = int(segments.seg[bad.any(dim=0).nonzero()[0, 0]])
            raise self._non_finite(qi, doc, docs, query_ids)

    def _non_finite(self, qi: int, doc: int, docs: Sequence[Document], query_ids: Sequence[str] | None) -> HarnessError:
        qid = query_ids[qi] if query_ids is not None else str(qi)
        return HarnessError(
            f"query {qid}: non-finite attention score for document {docs[doc].id!r} "
            f"(model type {self.model_type!r}; check the weights, or use float32/bfloat16 instead of float16)"
        )

    def _check_finite(self, scores: torch.Tensor, docs: Sequence[Document], query_ids: Sequence[str] | None) -> None:
        bad = ~torch.isfinite(scores)
        if bool(bad.any()):
            where = bad.nonzero()[0].tolist()
            raise self._non_finite(where[0], where[1], docs, query_ids)
