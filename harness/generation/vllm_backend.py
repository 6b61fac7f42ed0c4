"""``vllm:MODEL``: vLLM's offline engine (optional extra: ``pip install 'retrieval-harness[gpu]'``).

One ``vllm.LLM(model, tensor_parallel_size=..., max_model_len=...)`` per generator; prompts go
through ``LLM.chat`` (the model's chat template) with
``SamplingParams(temperature=T, top_p=1, max_tokens=N)``. vLLM stops on the model's own
end-of-sequence tokens (from its ``generation_config``), so nothing is hard-coded here; an
explicit ``SamplingParams`` means the model's default sampling (top-k, repetition penalty) is
not applied, exactly as in the ``hf:`` backend. vLLM batches internally, so all prompts of a
call are submitted at once. For multi-node tensor parallelism pass
``distributed_executor_backend="ray"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from harness.errors import HarnessError
from harness.generation.base import Generation, Generator, Messages

INSTALL_HINT = "vLLM is not installed; pip install 'retrieval-harness[gpu]' (or pip install vllm) to use vllm: generators"


class VLLMGenerator(Generator):
    """Generation with ``vllm.LLM``; options are passed to its constructor."""

    backend = "vllm"

    def __init__(self, spec: str, model: str, *, tensor_parallel_size: int = 1, max_model_len: int | None = None,
                 dtype: str = "auto", gpu_memory_utilization: float = 0.9, revision: str | None = None,
                 seed: int = 0, distributed_executor_backend: str | None = None, truncate: str | None = None,
                 cache: Any = True) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise HarnessError(INSTALL_HINT) from None
        super().__init__(spec, model, truncate=truncate, cache=cache, revision=revision)
        kwargs: dict[str, Any] = {"model": model, "tensor_parallel_size": int(tensor_parallel_size), "dtype": dtype,
                                  "gpu_memory_utilization": float(gpu_memory_utilization), "seed": int(seed)}
        if max_model_len is not None:
            kwargs["max_model_len"] = int(max_model_len)
        if revision is not None:
            kwargs["revision"] = revision
        if distributed_executor_backend is not None:
            kwargs["distributed_executor_backend"] = distributed_executor_backend
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def context_window(self) -> int | None:
        return int(self.llm.llm_engine.model_config.max_model_len)

    def _generate_many(self, prompts: list[Messages], *, max_tokens: int, temperature: float,
                       show_progress: bool) -> Iterator[tuple[int, Generation]]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=float(temperature), top_p=1.0, max_tokens=int(max_tokens))
        outputs = self.llm.chat(prompts, params, use_tqdm=show_progress)
        for i, output in enumerate(outputs):
            completion = output.outputs[0]
            yield i, Generation(text=completion.text, finish_reason=completion.finish_reason)
