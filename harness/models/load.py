"""Loading: ``(model, tokenizer, info)`` for any model spec, and device / dtype choices.

Every spec goes through :func:`harness.models.resolve.resolve_model` first (aliases, local
folders, GGUF files, hub ids); this module only calls ``from_pretrained`` on the result, by
default in float32 on CPU and bfloat16 on CUDA.

Example::

    >>> model, tokenizer, info = load_causal_lm("smollm2-135m")   # doctest: +SKIP
    >>> info.family                                               # doctest: +SKIP
    'llama'
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, unknown_name
from harness.models.gguf import _first_line, _respect_disable_tqdm
from harness.models.resolve import ModelInfo, ensure_available, resolve_model

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)


def _dtype_kwarg() -> str:
    """``dtype`` since transformers 4.56 (where ``torch_dtype`` became a deprecated alias); ``torch_dtype`` before."""
    from importlib.metadata import version

    major, minor = (int(part) for part in re.findall(r"\d+", version("transformers"))[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _pretrained_kwargs(info: ModelInfo) -> dict[str, Any]:
    return {"revision": info.revision} if info.source == "hub" and info.revision else {}


def load_tokenizer(spec: str) -> Any:
    """``AutoTokenizer`` for a model spec (alias, path, GGUF or hub id)."""
    info = resolve_model(spec)
    ensure_available(info)
    return _load_tokenizer(info)


def _load_tokenizer(info: ModelInfo) -> Any:
    from transformers import AutoTokenizer

    _respect_disable_tqdm()
    try:
        return AutoTokenizer.from_pretrained(info.path, **_pretrained_kwargs(info))
    except (OSError, ValueError) as exc:
        raise HarnessError(
            f"model {info.spec!r}: cannot load its tokenizer from {info.path} ({_first_line(exc)})"
        ) from None


def pick_device(device: str | None) -> str:
    """``None``/``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; a named device must exist."""
    import torch

    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise HarnessError(f"unknown device {device!r} (use cpu, cuda, cuda:N or mps)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise HarnessError(f"device {device!r} asked for, but no CUDA GPU is available (use --device cpu)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise HarnessError(f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise HarnessError(f"device {device!r} asked for, but MPS is not available")
    return str(parsed)


_DTYPE_NAMES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}  # fmt: skip


def pick_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """The compute dtype: ``None``/``"auto"`` -> float32 on CPU, bfloat16 on CUDA (float16 where
    the GPU lacks bf16); else the named one (``float32``, ``bfloat16``, ``float16`` or short forms).

    For :func:`load_causal_lm`, ``"auto"`` instead keeps the checkpoint's own dtype.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    name = _DTYPE_NAMES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise unknown_name("dtype", str(dtype), ["float32", "bfloat16", "float16", "auto"])
    return getattr(torch, name)


def _drop_lm_head(model: Any) -> None:
    """Replace the LM head by a module that refuses to run (scorers use the decoder only).

    Frees the head's weights when they are not tied to the input embeddings (about 1 GB for an 8B
    Llama in bf16); makes an accidental full forward fail loudly instead of wasting time.
    """
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or not hasattr(model, "set_output_embeddings"):
        return

    class DroppedLMHead(torch.nn.Module):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(
                "this model was loaded with for_scoring_only=True: its LM head was dropped; run model.model (the decoder)"
            )

    model.set_output_embeddings(DroppedLMHead())


def load_causal_lm(
    spec: str,
    *,
    dtype: str | None = None,
    device: str | None = None,
    device_map: str | None = None,
    attn_implementation: str | None = None,
    for_scoring_only: bool = False,
) -> tuple[Any, Any, ModelInfo]:
    """Load ``(model, tokenizer, info)`` for a causal LM spec, in eval mode with gradients off.

    Args:
        spec: alias, local folder, ``.gguf`` path or hub id (see :func:`resolve_model`).
        dtype: ``None`` -> float32 on CPU, bfloat16 on CUDA; ``"float32"``, ``"bfloat16"``,
            ``"float16"``; ``"auto"`` keeps the checkpoint's dtype.
        device: ``None`` -> ``"cuda"`` if available, else ``"cpu"``. Ignored with ``device_map``.
        device_map: e.g. ``"auto"`` to spread a large model over the GPUs of a node (accelerate).
        attn_implementation: passed to ``from_pretrained`` (``"sdpa"``, ``"eager"``, ...).
        for_scoring_only: the caller only runs the decoder (``model.model``), as the attention
            scorers do: the LM head is dropped and a full forward raises.

    The returned tokenizer has a pad token (the EOS token when the model defines none).
    """
    from transformers import AutoModelForCausalLM

    info = resolve_model(spec)
    ensure_available(info)
    _respect_disable_tqdm()
    started = time.perf_counter()
    kwargs: dict[str, Any] = _pretrained_kwargs(info)
    torch_dtype: Any
    if device_map is not None:
        import torch

        main_device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype = "auto" if dtype == "auto" else pick_dtype(dtype, main_device)
        kwargs["device_map"] = device_map
        where = f"device_map={device_map}"
    else:
        device = pick_device(device)
        torch_dtype = "auto" if dtype == "auto" else pick_dtype(dtype, device)
        if device != "cpu":
            kwargs["device_map"] = {"": device}
        where = device
    kwargs[_dtype_kwarg()] = torch_dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(info.path, **kwargs)
    except (OSError, ValueError) as exc:
        raise HarnessError(f"model {spec!r}: cannot load from {info.path} ({_first_line(exc)})") from None
    tokenizer = _load_tokenizer(info)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    model.requires_grad_(False)
    if for_scoring_only:
        _drop_lm_head(model)
    config = model.config
    revision = info.revision
    if info.source == "hub":
        revision = getattr(config, "_commit_hash", None) or revision
    info = dataclasses.replace(info, family=getattr(config, "model_type", None) or info.family, revision=revision)
    logger.info(
        "loaded %s (%s%s) as %s: %s layers x %s heads (%s KV), %s on %s, attention %s, in %.1fs",
        spec,
        info.source,
        f" {info.revision}" if info.revision else "",
        type(model).__name__,
        getattr(config, "num_hidden_layers", "?"),
        getattr(config, "num_attention_heads", "?"),
        getattr(config, "num_key_value_heads", None) or getattr(config, "num_attention_heads", "?"),
        str(model.dtype).removeprefix("torch."),
        where,
        getattr(config, "_attn_implementation", "?"),
        time.perf_counter() - started,
    )
    return model, tokenizer, info
