"""Generation backends behind one interface, chosen by a prefix.

=================  ==========================================================================
spec               backend
=================  ==========================================================================
``hf:MODEL``       transformers (:mod:`harness.generation.hf`): HF id, folder, GGUF or offline
                   alias such as ``hf:smollm2-135m``; options ``dtype``, ``device``,
                   ``batch_size``, ``context_window``
``openai:URL#M``   any OpenAI-compatible server (:mod:`harness.generation.openai_api`), e.g.
                   ``openai:http://localhost:8000/v1#meta-llama/Llama-3.1-8B-Instruct``;
                   options ``timeout``, ``retries``, ``backoff``, ``concurrency``,
                   ``api_key``, ``tokenizer``, ``context_window``, ``revision``
``vllm:MODEL``     vLLM's offline engine (:mod:`harness.generation.vllm_backend`, extra
                   ``gpu``); options ``tensor_parallel_size``, ``max_model_len``, ...
=================  ==========================================================================

Every backend also takes ``truncate`` (None, ``"left"``, ``"middle"``) and ``cache`` (default
True). Example::

    >>> from harness.generation import make_generator
    >>> gen = make_generator("hf:smollm2-135m", batch_size=4)          # doctest: +SKIP
    >>> gen.generate([[{"role": "user", "content": "2+2="}]], max_tokens=8)[0].text  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from harness.errors import HarnessError, unknown_name
from harness.generation.base import Generation, Generator, Messages

BACKENDS: dict[str, str] = {
    "hf": "harness.generation.hf:HFGenerator",
    "openai": "harness.generation.openai_api:OpenAIGenerator",
    "vllm": "harness.generation.vllm_backend:VLLMGenerator",
}

__all__ = ["BACKENDS", "Generation", "Generator", "Messages", "make_generator", "parse_spec"]


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``"backend:rest"``; ``rest`` keeps any further colons (URLs, Windows paths)."""
    if not isinstance(spec, str) or ":" not in spec:
        raise HarnessError(
            f"generator {spec!r}: expected BACKEND:MODEL with a backend among {', '.join(BACKENDS)} "
            "(e.g. hf:smollm2-135m, openai:http://localhost:8000/v1#MODEL, vllm:Qwen/Qwen2.5-7B-Instruct)"
        )
    backend, _, rest = spec.partition(":")
    if backend not in BACKENDS:
        raise unknown_name("generator backend", backend, BACKENDS)
    if not rest.strip():
        raise HarnessError(f"generator {spec!r}: no model after '{backend}:'")
    return backend, rest.strip()


def make_generator(spec: str, **options: Any) -> Generator:
    """Build the generator for ``spec`` (see the module docstring); unknown options are errors."""
    backend, rest = parse_spec(spec)
    module_name, _, cls_name = BACKENDS[backend].partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    accepted = [name for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.kind == p.KEYWORD_ONLY and not name.startswith("_")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise HarnessError(f"generator {spec!r}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    if backend == "openai":
        url, sep, model = rest.rpartition("#")
        if not sep or not url or not model:
            raise HarnessError(f"generator {spec!r}: expected openai:URL#MODEL, e.g. openai:http://localhost:8000/v1#my-model")
        return cls(spec, model, url=url, **options)
    return cls(spec, rest, **options)
