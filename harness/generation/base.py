"""The generator interface shared by every backend: caching, context-window checks, truncation.

A backend implements :meth:`Generator._generate_many` (yield ``(index, Generation)`` as items
finish) and, where it knows them, :meth:`Generator.context_window` and a ``tokenizer``. The base
class does the rest, identically for every backend:

1. validate the chat messages;
2. look each prompt up in the on-disk cache (:mod:`harness.generation.cache`); hits cost nothing
   and come back with ``cached=True``;
3. check that every remaining prompt fits: ``prompt_tokens + max_tokens <= context_window``.
   Too long is a :class:`HarnessError`, unless the generator was built with
   ``truncate="left"`` (drop the start of the longest message) or ``truncate="middle"`` (drop its
   middle, keeping head and tail);
4. generate the rest and store each result in the cache the moment it finishes.

Failures (a server that keeps answering garbage, for instance) come back as
``Generation(text="", error="...")`` and are never cached, so a re-run retries them.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from harness.errors import HarnessError
from harness.generation.cache import GenerationCache, cache_key
from harness.models.chat import Messages, render_chat

log = logging.getLogger(__name__)

TRUNCATE_MODES = ("left", "middle")
T = TypeVar("T")


@dataclass
class Generation:
    """One generated answer.

    ``error`` is set (and ``text`` is ``""``) when the backend gave up on the item;
    ``cached`` is True when it came from the on-disk cache; ``finish_reason`` is ``"stop"``
    (a stop token ended it), ``"length"`` (``max_tokens`` reached) or None when unknown.
    """

    text: str
    error: str | None = None
    cached: bool = False
    finish_reason: str | None = None


def validate_messages(messages: Any, where: str) -> Messages:
    """Check that ``messages`` is a non-empty list of ``{"role": str, "content": str}``."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise HarnessError(f"{where}: expected a non-empty list of chat messages, got {type(messages).__name__}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise HarnessError(f"{where}: message {i} is a {type(message).__name__}, expected a dict")
        role, content = message.get("role"), message.get("content")
        if role not in ("system", "user", "assistant"):
            raise HarnessError(f"{where}: message {i} has role {role!r}; expected system, user or assistant")
        if not isinstance(content, str):
            raise HarnessError(f"{where}: message {i} field 'content' must be a string, got {type(content).__name__}")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of already-templated ``text`` (no extra special tokens: the template has them)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class Generator(ABC):
    """A text generator behind one interface; build one with :func:`harness.generation.make_generator`.

    Subclasses set ``backend``, ``model`` and ``revision``, and optionally ``tokenizer`` (an HF
    tokenizer: enables :meth:`count_tokens` and truncation). ``cache`` is True (the shared cache
    under ``cache_dir("generations")``), False, or the path of a cache file of its own.
    """

    backend: ClassVar[str]

    def __init__(self, spec: str, model: str, *, truncate: str | None = None,
                 cache: bool | str | os.PathLike[str] = True, revision: str | None = None) -> None:
        if truncate not in (None, *TRUNCATE_MODES):
            raise HarnessError(f"generator option truncate={truncate!r}: expected one of {', '.join(TRUNCATE_MODES)} or None")
        self.spec = spec
        self.model = model
        self.revision = revision
        self.truncate = truncate
        self.tokenizer: Any = None
        if cache is True:
            self._cache: GenerationCache | None = GenerationCache()
        elif cache is False or cache is None:
            self._cache = None
        else:  # a path: a cache file of its own (benchmarks, experiments)
            self._cache = GenerationCache(cache)
        self._last_sampling: dict[str, Any] = self.sampling(256, 0.0)
        self._warned_uncounted = False

    # -- description ---------------------------------------------------------------------------
    @property
    def identity(self) -> dict[str, Any]:
        """What determines the outputs besides the prompt and sampling: part of every cache key."""
        return {"backend": self.backend, "model": self.model, "revision": self.revision}

    def sampling(self, max_tokens: int, temperature: float) -> dict[str, Any]:
        """The sampling parameters actually used for a call (recorded and hashed)."""
        return {"max_tokens": int(max_tokens), "temperature": float(temperature), "top_p": 1.0, "truncate": self.truncate}

    @property
    def meta(self) -> dict[str, Any]:
        """Backend, model, revision and the sampling params of the last call, for result files."""
        return {**self.identity, "spec": self.spec, "sampling": dict(self._last_sampling),
                "context_window": self.context_window()}

    def context_window(self) -> int | None:
        """Maximum prompt + generated tokens, or None when unknown."""
        return None

    def count_tokens(self, messages: Messages) -> int | None:
        """Prompt tokens of ``messages`` after the chat template, or None without a tokenizer."""
        if self.tokenizer is None:
            return None
        return len(encode(self.tokenizer, render_chat(self.tokenizer, messages)))

    # -- generation ----------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Messages], *, max_tokens: int = 256, temperature: float = 0.0,
                 show_progress: bool = True) -> list[Generation]:
        """Generate one answer per chat prompt, in order (greedy when ``temperature`` is 0)."""
        if max_tokens < 1:
            raise HarnessError(f"max_tokens must be >= 1, got {max_tokens}")
        if temperature < 0:
            raise HarnessError(f"temperature must be >= 0, got {temperature}")
        prompts = [validate_messages(p, f"prompt {i}") for i, p in enumerate(prompts)]
        sampling = self.sampling(max_tokens, temperature)
        self._last_sampling = sampling
        results: list[Generation | None] = [None] * len(prompts)
        keys = [cache_key(self.identity, sampling, p) for p in prompts]
        todo: list[int] = []
        for i, key in enumerate(keys):
            hit = self._cache.get(key) if self._cache is not None else None
            if hit is not None:
                results[i] = Generation(text=hit[0], cached=True, finish_reason=hit[1])
            else:
                todo.append(i)
        if todo:
            fitted = [self.fit(prompts[i], max_tokens, where=f"prompt {i}") for i in todo]
            for j, generation in self._generate_many(fitted, max_tokens=max_tokens, temperature=temperature,
                                                     show_progress=show_progress):
                i = todo[j]
                results[i] = generation
                if generation.error is None and self._cache is not None:
                    self._cache.put(keys[i], generation.text, generation.finish_reason)
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:  # a backend bug, never silently an empty answer
            raise RuntimeError(f"{self.spec}: backend returned no result for prompts {missing[:5]}")
        log.debug("%s: %d prompts, %d from cache", self.spec, len(prompts), len(prompts) - len(todo))
        return results  # type: ignore[return-value]

    @abstractmethod
    def _generate_many(self, prompts: list[Messages], *, max_tokens: int, temperature: float,
                       show_progress: bool) -> Iterator[tuple[int, Generation]]:
        """Yield ``(index into prompts, Generation)`` for every prompt, in any order."""

    # -- context window --------------------------------------------------------------------------
    def fit(self, messages: Messages, max_tokens: int, *, where: str = "prompt") -> Messages:
        """``messages`` if ``prompt_tokens + max_tokens`` fits the window, else truncated or an error."""
        window = self.context_window()
        if window is None:
            return messages
        n = self.count_tokens(messages)
        if n is None:
            if not self._warned_uncounted:
                log.warning("%s: no tokenizer to count prompt tokens; context-window check skipped", self.spec)
                self._warned_uncounted = True
            return messages
        budget = window - max_tokens
        if n <= budget:
            return messages
        if budget <= 0:
            raise HarnessError(f"{self.spec}: max_tokens={max_tokens} leaves no room for a prompt in the context window of {window} tokens")
        if self.truncate is None:
            raise HarnessError(
                f"{where}: {n} prompt tokens + max_tokens {max_tokens} exceed the context window of {window} tokens "
                f"of {self.spec}; use fewer documents (--top-k) or ask for truncation (truncate='left' or 'middle')"
            )
        return self._truncate(messages, n, budget, where)

    def _truncate(self, messages: Messages, n: int, budget: int, where: str) -> Messages:
        target = max(range(len(messages)), key=lambda i: len(messages[i]["content"]))
        ids = encode(self.tokenizer, messages[target]["content"])
        drop = n - budget
        for _ in range(8):  # re-tokenising the cut text can shift the count by a token or two
            if drop >= len(ids):
                break
            keep = len(ids) - drop
            if self.truncate == "left":
                kept = ids[drop:]
            else:
                head = keep // 2
                kept = ids[:head] + ids[len(ids) - (keep - head):]
            text = self.tokenizer.decode(kept, skip_special_tokens=False)
            candidate = [dict(m) for m in messages]
            candidate[target]["content"] = text
            m = self.count_tokens(candidate)
            assert m is not None
            if m <= budget:
                log.info("%s: %s truncated from %d to %d tokens (%s)", self.spec, where, n, m, self.truncate)
                return candidate
            drop += m - budget
        raise HarnessError(f"{where}: cannot fit the prompt into {budget} tokens even after truncating its longest message")
