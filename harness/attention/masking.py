"""Attention-head masking during generation (the paper's Figure 1: mask QRHeads or retrieval heads).

A :class:`HeadMask` names heads ``(layer, head)`` (0-indexed) and how they are silenced;
:func:`masked_heads` applies it to a loaded transformers decoder for the duration of a
``with`` block, through forward hooks (no modeling file is copied or patched), and removes the
hooks on exit, so a model shared with an unmasked generator (see
:func:`harness.generation.hf.load_shared`) is untouched outside the block.

Two modes:

``output`` (default): the head's output is zero at every position, prompt and answer alike.
    A forward pre-hook on each affected layer's ``self_attn.o_proj`` zeroes the input columns
    ``h*head_dim : (h+1)*head_dim`` of every masked head ``h`` (the concatenated per-head
    attention outputs that ``o_proj`` mixes), so the head contributes exactly nothing to the
    residual stream. This is the textbook "ablate the head" intervention.

``query``: the mechanics of ``nightdessert/Retrieval_Head``'s ``needle_in_haystack_with_mask.py``
    (the script docs/PROTOCOL.md §4.4 says Figure 1 follows). That script prefills the prompt
    *without* the mask and decodes the last prompt token and every answer token with a
    ``block_list``; its patched flash-attention forward sets the masked heads' **query** to zero
    (after RoPE), so their softmax is uniform and the head outputs the mean of the value
    vectors it can see. Here a forward hook on ``self_attn.q_proj`` (or the query part of a fused
    ``qkv_proj``) zeroes the masked heads' query columns at the last position of every forward
    call: in a one-pass prefill that is the last prompt token, in each decoding step the new
    token, so the same tokens are masked as in the script (RoPE and a per-head query norm map a
    zero query to zero). Keys and values, and so the KV cache, are never touched.

Head lists come from :func:`resolve_mask`: the ``--heads`` syntax of
:func:`harness.attention.heads.resolve_heads` (``"14-22,13-16"``, a head file, a paper set
name such as ``llama-3.1-8b:lme``, ``full``, ``top:N:FILE``, ``exclude:FILE``), optionally cut to
its first ``top`` heads (head files list heads best first), or ``random:N[:SEED]`` for N heads
drawn uniformly without replacement (the script's random-head control draws its heads
differently and skips its top-100 retrieval heads; ours draws from all heads).

Example::

    >>> mask = resolve_mask("0-1,2-0", model)                         # doctest: +SKIP
    >>> with masked_heads(model, mask):                               # doctest: +SKIP
    ...     out = model.generate(input_ids, max_new_tokens=50)
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness.attention.heads import random_heads
from harness.errors import HarnessError

log = logging.getLogger(__name__)

Head = tuple[int, int]
MASK_MODES: tuple[str, ...] = ("output", "query")


@dataclass(frozen=True)
class HeadMask:
    """Heads to silence during generation, and how (``mode`` in :data:`MASK_MODES`).

    ``name`` says where the heads came from (``custom``, ``file:smollm2-135m.json``,
    ``random:16:0``, ...); ``heads`` keep the order they were given in.
    """

    heads: tuple[Head, ...]
    name: str
    mode: str = "output"

    def __post_init__(self) -> None:
        if self.mode not in MASK_MODES:
            raise HarnessError(f"generator option mask_mode={self.mode!r}: expected one of {', '.join(MASK_MODES)}")
        if not self.heads:
            raise HarnessError("mask_heads: no heads to mask")

    def as_strings(self) -> list[str]:
        return [f"{layer}-{head}" for layer, head in self.heads]

    @property
    def sha256(self) -> str:
        """sha256 of the sorted comma-joined ``layer-head`` list (the set, not its order)."""
        return hashlib.sha256(",".join(f"{layer}-{head}" for layer, head in sorted(self.heads)).encode()).hexdigest()

    @property
    def meta(self) -> dict[str, Any]:
        """What a result file and the generation cache key record about the mask."""
        return {
            "name": self.name,
            "mode": self.mode,
            "n_heads": len(self.heads),
            "heads": sorted(self.as_strings(), key=lambda s: tuple(int(x) for x in s.split("-"))),
            "sha256": self.sha256,
        }

    def by_layer(self) -> dict[int, list[int]]:
        """``{layer: sorted head indices}``."""
        out: dict[int, list[int]] = {}
        for layer, head in self.heads:
            out.setdefault(layer, []).append(head)
        return {layer: sorted(heads) for layer, heads in sorted(out.items())}


def _shape(model: Any) -> Any:
    from harness.attention.heads import ModelShape

    return ModelShape.from_config(model.config)


def resolve_mask(spec: Any, model: Any, *, mode: str = "output", top: int | None = None) -> HeadMask | None:
    """The :class:`HeadMask` of the generator options ``mask_heads`` / ``mask_mode`` / ``mask_top``.

    ``spec`` is None, ``""`` or ``"none"`` (no mask: returns None), a list of ``"layer-head"``
    strings, or anything ``--heads`` accepts (validated against ``model``'s shape), including
    ``random:N[:SEED]``, ``top:N:FILE`` and ``exclude:FILE``. ``top`` keeps the first ``top``
    heads of the selection.
    """
    from harness.attention.heads import resolve_heads, validate_heads

    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "none")):
        if top is not None:
            raise HarnessError("generator option mask_top needs mask_heads")
        return None
    if isinstance(spec, (list, tuple)):
        spec = ",".join(str(item) for item in spec)
    if not isinstance(spec, str):
        raise HarnessError(f"mask_heads: expected a head list, file or set name, got {spec!r}")
    shape = _shape(model)
    selection = resolve_heads(spec.strip(), shape, where="mask_heads")
    name, heads = selection.name, tuple(selection.heads)
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= len(heads):
            raise HarnessError(f"generator option mask_top={top!r}: expected 1..{len(heads)} (heads in {name})")
        heads, name = heads[:top], f"{name}@top{top}"
    validate_heads(heads, shape, where="mask_heads")
    return HeadMask(heads=tuple(heads), name=name, mode=mode)


# -- hooks -------------------------------------------------------------------------------------------


def attention_modules(model: Any) -> list[Any]:
    """The ``self_attn`` module of every decoder layer, in layer order."""
    base = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    if layers is None or not len(layers) or not all(hasattr(layer, "self_attn") for layer in layers):
        raise HarnessError(f"head masking: cannot find the decoder layers' self_attn in {type(model).__name__}")
    return [layer.self_attn for layer in layers]


def head_dim_of(attn: Any, model: Any) -> int:
    """Width of one head in ``attn`` (its ``head_dim``, else the config's, else hidden/heads)."""
    value = getattr(attn, "head_dim", None)
    if value:
        return int(value)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    value = getattr(config, "head_dim", None)
    return int(value) if value else int(config.hidden_size) // int(config.num_attention_heads)


def _columns(heads: Sequence[int], head_dim: int, width: int, device: Any) -> Any:
    """Boolean ``[width]`` vector, True on the columns of ``heads``."""
    import torch

    cols = torch.zeros(width, dtype=torch.bool, device=device)
    for h in heads:
        cols[h * head_dim : (h + 1) * head_dim] = True
    return cols


@contextmanager
def masked_heads(model: Any, mask: HeadMask | None) -> Iterator[None]:
    """Silence ``mask``'s heads in ``model`` inside the block (nothing happens for ``None``)."""
    if mask is None:
        yield
        return
    modules = attention_modules(model)
    shape = _shape(model)
    handles: list[Any] = []
    try:
        for layer, heads in mask.by_layer().items():
            if layer >= len(modules):
                raise HarnessError(f"mask_heads: layer {layer} is outside the model ({len(modules)} layers)")
            attn = modules[layer]
            hd = head_dim_of(attn, model)
            width = shape.num_heads * hd
            if mask.mode == "output":
                proj = getattr(attn, "o_proj", None)
                if proj is None or getattr(proj, "in_features", width) != width:
                    raise HarnessError(
                        f"mask_mode=output: layer {layer} has no o_proj taking {shape.num_heads} heads × {hd}"
                    )
                cols = _columns(heads, hd, width, proj.weight.device)
                handles.append(proj.register_forward_pre_hook(_zero_input(cols)))
            else:
                proj = getattr(attn, "q_proj", None)
                if proj is None:
                    proj = getattr(attn, "qkv_proj", None)  # Phi-3: queries are the first heads × hd outputs
                    ok = proj is not None and getattr(proj, "out_features", 0) >= width
                else:
                    ok = getattr(proj, "out_features", width) == width
                if not ok:
                    raise HarnessError(
                        f"mask_mode=query: layer {layer} has no q_proj with {shape.num_heads} heads × {hd} outputs; "
                        "use mask_mode=output"
                    )
                cols = _columns(heads, hd, int(proj.out_features), proj.weight.device)
                handles.append(proj.register_forward_hook(_zero_last_query(cols)))
        log.info("masking %d heads (%s, mode %s) in %d layers", len(mask.heads), mask.name, mask.mode, len(handles))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _zero_input(cols: Any) -> Any:
    def hook(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        return (x.masked_fill(cols.to(x.device), 0), *args[1:])

    return hook


def _zero_last_query(cols: Any) -> Any:
    def hook(module: Any, args: tuple[Any, ...], out: Any) -> Any:
        out = out.clone()
        out[..., -1, :] = out[..., -1, :].masked_fill(cols.to(out.device), 0)
        return out

    return hook


__all__ = ["MASK_MODES", "HeadMask", "attention_modules", "head_dim_of", "masked_heads", "random_heads", "resolve_mask"]
