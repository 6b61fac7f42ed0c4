"""Capture of selected heads' attention rows inside transformers' attention interface.

:func:`register` adds the attention implementation ``"qr_capture"`` to transformers'
``AttentionInterface`` (and its mask function, ``sdpa_mask``, to ``AttentionMaskInterface``, so a
suffix continued from a KV cache gets a bottom-right-aligned causal mask instead of SDPA's
top-left ``is_causal``). The function delegates the layer output to SDPA unchanged, and while a
:class:`CaptureSession` is active it also computes, for the selected heads of that layer only,

    S[h, t] = 1/|R| · Σ_{i∈R} softmax_t((q_i · k_t) · scale + mask)         (fp32)

over the query rows ``R`` of the current forward (all of them: the suffix is the query span) and
the key positions ``t < keep_keys`` (the shared prefix). Keys are processed in chunks with a
two-pass log-sum-exp, so at most ``budget`` logits exist at a time; GQA reads the KV head of each
selected head by index (no ``repeat_kv`` of all heads). The session can also stop the forward
after the highest layer it needs (early exit, raised as :class:`StopForward` after the cache of
that layer was updated).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.errors import HarnessError

log = logging.getLogger(__name__)

ATTN_NAME = "qr_capture"
_ACTIVE: contextvars.ContextVar[CaptureSession | None] = contextvars.ContextVar("qr_capture", default=None)


class StopForward(Exception):
    """Raised inside the forward after the last layer a session needs."""


@dataclass
class CaptureSession:
    """What to capture during one forward.

    ``heads_by_layer`` maps a layer index to the (sorted) head indices to capture; ``capture`` off
    makes the session only track calls and stop early (the prefix pass). ``per_head`` keeps one row
    per head, otherwise the rows of a layer are summed over its heads. ``keep_keys`` is the number
    of leading key positions whose attention is kept.
    """

    heads_by_layer: dict[int, list[int]]
    stop_after: int
    keep_keys: int = 0
    capture: bool = False
    per_head: bool = False
    budget: int = 1 << 24
    #: the model's mask is plain causal (no sliding window, no padding): continued prefix chunks
    #: may use SDPA's lower-right causal kernels instead of a materialised (chunk x keys) mask
    plain_causal: bool = False
    results: dict[int, torch.Tensor] = field(default_factory=dict)
    seen_layers: set[int] = field(default_factory=set)
    _index_cache: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)

    def head_index(self, layer: int, device: torch.device) -> torch.Tensor:
        key = (layer, str(device))
        if key not in self._index_cache:
            self._index_cache[key] = torch.tensor(self.heads_by_layer[layer], dtype=torch.long, device=device)
        return self._index_cache[key]


class active:
    """Context manager that makes ``session`` the one the attention function serves."""

    def __init__(self, session: CaptureSession) -> None:
        self.session = session
        self._token: contextvars.Token | None = None

    def __enter__(self) -> CaptureSession:
        self._token = _ACTIVE.set(self.session)
        return self.session

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _ACTIVE.reset(self._token)


def _row_mask(
    attention_mask: torch.Tensor | None, n_rows: int, kv_len: int, c0: int, c1: int, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(bool allowed [R, c] or None, float additive [R, c] or None) for key chunk ``[c0, c1)``."""
    if attention_mask is None:
        rows = torch.arange(kv_len - n_rows, kv_len, device=device)[:, None]
        keys = torch.arange(c0, c1, device=device)[None, :]
        return keys <= rows, None
    m = attention_mask[0, 0, -n_rows:, c0:c1]
    if m.dtype == torch.bool:
        return m, None
    return None, m


def selected_rows(
    query: torch.Tensor,
    key: torch.Tensor,
    heads: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    keep_keys: int,
    budget: int,
) -> torch.Tensor:
    """Mean over query rows of the fp32 softmax attention of ``heads`` on keys ``[0, keep_keys)``.

    ``query`` is ``[1, H, R, d]``, ``key`` ``[1, KV, T, d]``; returns ``[len(heads), keep_keys]``.
    """
    n_heads, n_kv = query.shape[1], key.shape[1]
    rep = n_heads // n_kv
    n_rows, kv_len = query.shape[2], key.shape[2]
    cdt = torch.float64 if query.dtype == torch.float64 else torch.float32  # fp32 softmax at least
    q = query[0, heads].to(cdt) * scaling  # [h, R, d]
    kv_idx = heads // rep
    h = q.shape[0]
    d = q.shape[-1]
    chunk = max(1, min(kv_len, budget // max(1, h * max(n_rows, d))))

    def logits_for(c0: int, c1: int) -> torch.Tensor:
        k = key[0, :, c0:c1][kv_idx].to(cdt)  # [h, c, d]
        x = torch.matmul(q, k.transpose(-1, -2))  # [h, R, c]
        allowed, additive = _row_mask(attention_mask, n_rows, kv_len, c0, c1, x.device)
        if allowed is not None:
            x = x.masked_fill(~allowed, float("-inf"))
        else:
            x = x + additive.to(cdt)
        return x

    if chunk >= kv_len:
        probs = torch.softmax(logits_for(0, kv_len), dim=-1)
        return probs[..., :keep_keys].mean(dim=1)
    lse = torch.full((h, n_rows), float("-inf"), device=q.device, dtype=cdt)
    for c0 in range(0, kv_len, chunk):
        lse = torch.logaddexp(lse, torch.logsumexp(logits_for(c0, min(kv_len, c0 + chunk)), dim=-1))
    out = torch.empty((h, keep_keys), device=q.device, dtype=cdt)
    for c0 in range(0, keep_keys, chunk):
        c1 = min(keep_keys, c0 + chunk)
        out[:, c0:c1] = torch.exp(logits_for(c0, c1) - lse[..., None]).mean(dim=1)
    return out


def _sdpa() -> Callable:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward


def capture_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """The ``qr_capture`` attention: SDPA output plus the active session's captures."""
    session = _ACTIVE.get()
    if session is None:
        return _sdpa()(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    layer = int(getattr(module, "layer_idx", -1))
    session.seen_layers.add(layer)
    if session.capture and layer in session.heads_by_layer:
        if query.shape[0] != 1:
            raise RuntimeError("qr_capture supports batch size 1 only")
        scale = scaling if scaling is not None else query.shape[-1] ** -0.5
        rows = selected_rows(
            query,
            key,
            session.head_index(layer, query.device),
            attention_mask,
            scale,
            session.keep_keys,
            session.budget,
        )
        session.results[layer] = rows if session.per_head else rows.sum(dim=0)
    if layer >= session.stop_after:
        raise StopForward
    q_len, kv_len = query.shape[2], key.shape[2]
    if session.plain_causal and not session.capture and 1 < q_len < kv_len:
        return _lower_right_causal(module, query, key, value, scaling), None
    return _sdpa()(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)


def _lower_right_causal(
    module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float | None
) -> torch.Tensor:
    """Causal attention of a continued chunk on its cached past, without building a mask."""
    from torch.nn.attention.bias import causal_lower_right

    rep = query.shape[1] // key.shape[1]
    if rep > 1:
        key = key.repeat_interleave(rep, dim=1)
        value = value.repeat_interleave(rep, dim=1)
    bias = causal_lower_right(query.shape[2], key.shape[2])
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scaling)
    return out.transpose(1, 2).contiguous()


_registered = False


def register() -> str:
    """Register ``qr_capture`` with transformers (idempotent); return its name."""
    global _registered
    if _registered:
        return ATTN_NAME
    try:
        from transformers import AttentionInterface
    except ImportError:  # transformers <= 4.50
        import transformers

        raise HarnessError(
            f"attention-head retrievers need transformers >= 4.51 (its AttentionInterface); "
            f"installed: {transformers.__version__}"
        ) from None
    AttentionInterface.register(ATTN_NAME, capture_attention_forward)
    try:  # transformers >= 4.53: masks are created per attention implementation
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

        AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
    except ImportError:  # 4.51-4.52 build an additive 4D mask for any non-flash implementation
        log.debug("transformers has no AttentionMaskInterface; relying on its default 4D mask")
    _registered = True
    return ATTN_NAME


@contextmanager
def implementation(*models: Any) -> Iterator[None]:
    """Route the attention of ``models`` (a causal LM and its base model: their configs may be
    one object or two) through :data:`ATTN_NAME` for the duration of the block, then restore."""
    configs = {id(m.config): m.config for m in models}.values()
    saved = [(c, getattr(c, "_attn_implementation", None)) for c in configs]
    try:
        for c, _ in saved:
            c._attn_implementation = ATTN_NAME
        yield
    finally:
        for c, old in saved:
            c._attn_implementation = old


def device_of(model: Any) -> Any:
    """The device of a model's input embeddings (where its input ids must live)."""
    return model.get_input_embeddings().weight.device

