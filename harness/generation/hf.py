"""``hf:MODEL``: transformers generation on CPU or GPU, batched, greedy by default.

``MODEL`` is anything :func:`harness.models.load_causal_lm` resolves: a Hugging Face id, a local
folder, a GGUF file or an offline alias (``smollm2-135m``, ``qwen2.5-0.5b``).

- The chat template of the model is applied (:func:`harness.models.chat.render_chat`).
- Prompts are sorted by length and generated ``batch_size`` at a time with left padding, so a
  batch wastes little compute on padding; results come back in the caller's order.
- Stop tokens are the model's (:func:`harness.models.chat.stop_token_ids`):
  ``generation_config.eos_token_id`` (an id or a list) plus the tokenizer's ``eos_token_id``.
  Nothing is hard-coded.
- ``temperature=0`` is pure greedy decoding: the model's own sampling defaults (top-k, top-p,
  repetition penalty in its ``generation_config``) are deliberately not applied, so the output
  is the argmax path, as vLLM gives with ``SamplingParams(temperature=0)``.
- Batched and one-by-one greedy answers are identical in float32 (checked on CPU and on an H200:
  16/16). In bfloat16 the padding and batch shape change rounding, so near-ties can flip and
  answers diverge afterwards (2/16 identical on an H200 with random weights, where every step is
  a near-tie). The cache key does not include the batch size: for bit-exact reruns use float32,
  or ``batch_size=1``.
- ``mask_heads`` (with ``mask_mode``, ``mask_top``) silences attention heads while generating
  (:mod:`harness.attention.masking`; docs/PROTOCOL.md §4.4, Figure 1), e.g.
  ``--generator-set mask_heads=results/heads/smollm2-135m.json --generator-set mask_top=16``.
  The hooks exist only during this generator's ``generate`` calls, so a model shared with an
  unmasked generator is unaffected, and the mask is part of the generator's identity (cache key
  and result file), so masked and unmasked answers never share cache entries.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from harness.attention.masking import MASK_MODES, masked_heads, resolve_mask
from harness.errors import HarnessError
from harness.generation.base import Generation, Generator, Messages, encode
from harness.models.chat import render_chat, stop_token_ids
from harness.progress import progress

log = logging.getLogger(__name__)


_LOADED: dict[tuple[str, str, str], tuple[weakref.ref[Any], Any, Any]] = {}
_LOAD_LOCK = threading.Lock()


def load_shared(model: str, dtype: Any = None, device: str | None = None) -> tuple[Any, Any, Any]:
    """:func:`harness.models.load_causal_lm`, sharing weights already loaded in this process.

    A RankGPT retriever and the generation stage of the same run (the paper's setting: the same
    LM ranks and answers) then hold one copy of the model. Entries are weak: a model nobody
    uses any more is freed as usual.
    """
    from harness.models.load import load_causal_lm

    key = (model, str(dtype), str(device))
    with _LOAD_LOCK:
        entry = _LOADED.get(key)
        lm = entry[0]() if entry is not None else None
        if lm is not None and entry is not None:
            log.debug("reusing the loaded weights of %s", model)
            return lm, entry[1], entry[2]
        lm, tokenizer, info = load_causal_lm(model, dtype=dtype, device=device)
        _LOADED[key] = (weakref.ref(lm), tokenizer, info)
        return lm, tokenizer, info


class HFGenerator(Generator):
    """Generation with a transformers causal LM.

    Options: ``dtype`` and ``device`` (passed to :func:`harness.models.load_causal_lm`; a model
    already loaded in this process with the same options is shared, see :func:`load_shared`),
    ``batch_size`` (default 8), ``truncate``, ``cache``, ``context_window`` (override the
    model's own limit, e.g. to stay inside memory), ``mask_heads`` (heads to silence: a list
    ``"14-22,13-16"``, a head file, a set name or ``random:N[:SEED]``), ``mask_mode``
    (``"output"``, default, or ``"query"``: Retrieval_Head's mechanics) and ``mask_top`` (keep
    the first N heads of ``mask_heads``); see :mod:`harness.attention.masking`.
    """

    backend = "hf"

    def __init__(self, spec: str, model: str, *, dtype: Any = None, device: str | None = None, batch_size: int = 8,
                 truncate: str | None = None, cache: Any = True, context_window: int | None = None,
                 mask_heads: Any = None, mask_mode: str = "output", mask_top: int | None = None,
                 _loaded: tuple[Any, Any, Any] | None = None) -> None:
        if int(batch_size) < 1:
            raise HarnessError(f"generator option batch_size must be >= 1, got {batch_size}")
        if mask_mode not in MASK_MODES:
            raise HarnessError(f"generator option mask_mode={mask_mode!r}: expected one of {', '.join(MASK_MODES)}")
        if _loaded is None:
            _loaded = load_shared(model, dtype=dtype, device=device)
        self.lm, tokenizer, self.info = _loaded
        self.mask = resolve_mask(mask_heads, self.lm, mode=mask_mode, top=mask_top)
        super().__init__(spec, model, truncate=truncate, cache=cache, revision=getattr(self.info, "revision", None))
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self._window_override = int(context_window) if context_window is not None else None
        self.stop_ids = stop_token_ids(self.lm, tokenizer)
        if not self.stop_ids:
            raise HarnessError(f"{spec}: the model declares no end-of-sequence token; cannot know where answers stop")
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else self.stop_ids[0]

    @classmethod
    def from_loaded(cls, spec: str, model: Any, tokenizer: Any, info: Any = None, **options: Any) -> HFGenerator:
        """Wrap an already-loaded model and tokenizer (shares the weights; used by the server and tests)."""
        return cls(spec, spec.partition(":")[2] or spec, _loaded=(model, tokenizer, info), **options)

    @property
    def identity(self) -> dict[str, Any]:
        """Backend, model, revision, and the head mask when there is one (unmasked keys are unchanged)."""
        base = super().identity
        return {**base, "mask": self.mask.meta} if self.mask is not None else base

    def context_window(self) -> int | None:
        if self._window_override is not None:
            return self._window_override
        for value in (getattr(self.info, "max_context", None), getattr(self.info, "context_window", None),
                      getattr(getattr(self.lm, "config", None), "max_position_embeddings", None)):
            if value:
                return int(value)
        return None

    def _generate_many(self, prompts: list[Messages], *, max_tokens: int, temperature: float,
                       show_progress: bool) -> Iterator[tuple[int, Generation]]:
        import torch
        from transformers import GenerationConfig

        token_lists = [encode(self.tokenizer, render_chat(self.tokenizer, p)) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: (-len(token_lists[i]), i))
        batches = [order[s:s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        config = GenerationConfig(
            max_new_tokens=int(max_tokens),
            do_sample=temperature > 0,
            temperature=float(temperature) if temperature > 0 else None,
            top_p=1.0 if temperature > 0 else None,
            top_k=None,
            eos_token_id=list(self.stop_ids),
            pad_token_id=self.pad_id,
        )
        device = next(self.lm.parameters()).device
        for batch in progress(batches, total=len(batches), desc=f"generate {self.model}", show=show_progress, leave=False):
            width = max(len(token_lists[i]) for i in batch)
            input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):  # left padding: the prompts end where generation starts
                ids = token_lists[i]
                input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
                attention[row, width - len(ids):] = 1
            with torch.inference_mode(), masked_heads(self.lm, self.mask):
                out = self.lm.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                       generation_config=config)
            new = out[:, width:].tolist()
            for row, i in enumerate(batch):
                ids = new[row]
                stop_at = next((k for k, t in enumerate(ids) if t in self.stop_ids), None)
                finish = "stop" if stop_at is not None else "length"
                ids = ids[:stop_at] if stop_at is not None else ids
                yield i, Generation(text=self.tokenizer.decode(ids, skip_special_tokens=True), finish_reason=finish)
