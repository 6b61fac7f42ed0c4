"""RankGPT: listwise re-ranking by permutation generation (Sun et al., 2023), any generator backend.

Prompt
    The public RankGPT chat prompt (``sunnweiwei/RankGPT``, ``create_permutation_instruction``),
    reproduced verbatim in :func:`permutation_messages`: a system turn, a user/assistant preamble,
    one user turn ``[i] passage`` plus an assistant acknowledgement ``Received passage [i].`` per
    passage, and the final instruction. A passage is ``Title: {title} Content: {text}`` (the
    text alone without a title), cut to its first ``passage_words`` (300) whitespace-separated
    words as RankGPT does. docs/PROTOCOL.md §4.5 describes ICR's plain-string variant of this prompt;
    that text is only known with elisions, so the original chat prompt is used here.

Modes
    ``window``: one prompt holding the first ``depth`` candidates (all by default): the paper's
    "RankGPT" rows. ``bubble``: RankGPT's sliding window, ``window`` passages (20) moved
    ``stride`` (10) at a time from the end of the first ``depth`` candidates to the start, so
    the best passages bubble up (the paper's "RankGPT-Bubble"). Windows only guarantee that the
    top of the list is fully compared (RankGPT#26). Unlike RankGPT's loop, which stops when the
    next start would be negative, the last window is always the top ``(0, window)``, so a
    ``depth`` that is not a multiple of the stride, or smaller than the window (RankGPT#11),
    still re-ranks the top. Candidates after ``depth`` keep their input
    order.

Parsing
    :func:`parse_permutation`: take the bracketed ids ``[i]`` in order (every integer if there
    are none), drop out-of-range ids and repeats, append the missing ones in input order. A
    window is a *parse failure* when the answer was not a complete permutation: either nothing
    usable (``none``) or some ids missing (``partial``).

Scores
    Strictly decreasing synthetic scores ``-rank`` (1-based), so TREC tools keep the order.

Per-query statistics
    After :meth:`RankGPTRetriever.score`, ``last_stats[query_id]`` holds floats that the runner
    records as per-query metrics: ``parse_failure_rate`` (share of windows that were not a
    complete permutation), ``parse_none_rate``, ``parse_partial_rate``, ``parse_missing_ids`` and
    ``parse_invalid_ids`` (ids filled in / dropped, summed over windows), ``rankgpt_windows`` and
    ``rankgpt_generation_failures`` (windows whose generation failed and kept the input order).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError
from harness.generation import Generator, make_generator
from harness.io import sha256_json
from harness.types import Document, Instance, Retriever

log = logging.getLogger(__name__)

SYSTEM_PROMPT = "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query."
PREFIX_PROMPT = (
    "I will provide you with {num} passages, each indicated by number identifier []. \n"
    "Rank the passages based on their relevance to query: {query}."
)
PREFIX_REPLY = "Okay, please provide the passages."
PASSAGE_PROMPT = "[{rank}] {content}"
PASSAGE_REPLY = "Received passage [{rank}]."
POST_PROMPT = (
    "Search Query: {query}. \n"
    "Rank the {num} passages above based on their relevance to the search query. The passages should be listed "
    "in descending order using identifiers. The most relevant passages should be listed first. The output format "
    "should be [] > [], e.g., [1] > [2]. Only response the ranking results, do not say any word or explain."
)
PROMPT_SHA256 = sha256_json([SYSTEM_PROMPT, PREFIX_PROMPT, PREFIX_REPLY, PASSAGE_PROMPT, PASSAGE_REPLY, POST_PROMPT])
MODES = ("window", "bubble")


def passage_content(doc: Document, passage_words: int | None) -> str:
    """``Title: {title} Content: {text}`` (text alone without a title), first ``passage_words`` words."""
    content = f"Title: {doc.title} Content: {doc.text}" if doc.title else doc.text
    words = content.split()
    return " ".join(words[:passage_words] if passage_words else words)


def permutation_messages(query: str, docs: Sequence[Document], passage_words: int | None = 300) -> list[dict[str, str]]:
    """The RankGPT chat prompt asking to rank ``docs`` (numbered from 1) for ``query``."""
    num = len(docs)
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": PREFIX_PROMPT.format(num=num, query=query)},
        {"role": "assistant", "content": PREFIX_REPLY},
    ]
    for rank, doc in enumerate(docs, start=1):
        messages.append({"role": "user", "content": PASSAGE_PROMPT.format(rank=rank, content=passage_content(doc, passage_words))})
        messages.append({"role": "assistant", "content": PASSAGE_REPLY.format(rank=rank)})
    messages.append({"role": "user", "content": POST_PROMPT.format(query=query, num=num)})
    return messages


@dataclass(frozen=True)
class Parsed:
    """A recovered permutation (0-based positions, best first) and how much of it was parsed."""

    order: list[int]
    parsed: int  #: valid ids taken from the answer
    invalid: int  #: ids dropped: out of range or repeated
    missing: int  #: ids appended in input order

    @property
    def status(self) -> str:
        """``full`` (a complete permutation), ``partial`` or ``none``."""
        return "full" if self.missing == 0 else ("none" if self.parsed == 0 else "partial")


def parse_permutation(text: str, n: int) -> Parsed:
    """Recover a permutation of ``range(n)`` from a ranking answer such as ``[2] > [3] > [1]``.

    >>> parse_permutation("[2] > [3] > [2] > [9]", 4)
    Parsed(order=[1, 2, 0, 3], parsed=2, invalid=2, missing=2)
    """
    bracketed = re.findall(r"\[\s*(\d+)\s*\]", text)
    numbers = bracketed if bracketed else re.findall(r"\d+", text)
    seen: set[int] = set()
    order: list[int] = []
    invalid = 0
    for token in numbers:
        position = int(token) - 1
        if 0 <= position < n and position not in seen:
            seen.add(position)
            order.append(position)
        else:
            invalid += 1
    parsed = len(order)
    order.extend(i for i in range(n) if i not in seen)
    return Parsed(order=order, parsed=parsed, invalid=invalid, missing=n - parsed)


def sliding_windows(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """``(start, end)`` windows from the end of ``range(n)`` to its start; the last is ``(0, window)``.

    >>> sliding_windows(25, 20, 10)
    [(5, 25), (0, 20)]
    >>> sliding_windows(8, 20, 10)
    [(0, 8)]
    >>> sliding_windows(40, 20, 10)
    [(20, 40), (10, 30), (0, 20)]
    """
    if n <= 1:
        return []
    windows = []
    end = n
    while end - window > 0:
        windows.append((end - window, end))
        end -= stride
    windows.append((0, min(window, n)))  # the top window, full size, always run
    return windows


def _rate(count: int, windows: int) -> float:
    return count / windows if windows else 0.0


class RankGPTRetriever(Retriever):
    """Listwise LLM re-ranker (see the module docstring).

    Args:
        generator: a generator spec (``hf:smollm2-135m``, ``openai:URL#MODEL``, ``vllm:MODEL``) or a
            :class:`harness.generation.Generator`.
        model: shorthand for ``generator``: an ``hf:`` model when it has no backend prefix.
        mode: ``bubble`` (sliding windows, default) or ``window`` (one prompt for all).
        window, stride: sliding-window size and step (20, 10).
        depth: re-rank only the first ``depth`` candidates (all when None).
        passage_words: words kept per passage (300, as RankGPT).
        max_tokens: generation budget per window; default ``6 * n + 16`` for ``n`` passages
            (about 4 tokens per ``[i] > `` item plus slack; ICR's ``5 * n`` cuts long lists short).
        truncate: passed to the generator for prompts longer than its context window.
        batch_size: prompts per generator call batch (``hf:`` backend).
    """

    name = "rankgpt"
    kind = "listwise-LLM"

    def __init__(self, generator: str | Generator | None = None, model: str | None = None, mode: str = "bubble",
                 window: int = 20, stride: int = 10, depth: int | None = None, passage_words: int | None = 300,
                 max_tokens: int | None = None, truncate: str | None = None, batch_size: int = 8) -> None:
        if generator is not None and model is not None:
            raise HarnessError("rankgpt: give either generator or model, not both")
        if model is not None:
            generator = model if re.match(r"^(hf|openai|vllm):", model) else f"hf:{model}"
        self.generator_spec = generator if isinstance(generator, str) else None
        self._generator: Generator | None = generator if isinstance(generator, Generator) else None
        if self._generator is None and self.generator_spec is None:
            self.generator_spec = "hf:smollm2-135m"
        if mode not in MODES:
            raise HarnessError(f"rankgpt: mode {mode!r} is not one of {', '.join(MODES)}")
        window, stride = int(window), int(stride)
        if window < 2:
            raise HarnessError(f"rankgpt: window must be >= 2, got {window}")
        if not 1 <= stride <= window:
            raise HarnessError(f"rankgpt: stride must be between 1 and the window ({window}), got {stride}; "
                               "a stride larger than the window would skip passages")
        if depth is not None and int(depth) < 1:
            raise HarnessError(f"rankgpt: depth must be >= 1, got {depth}")
        if max_tokens is not None and int(max_tokens) < 1:
            raise HarnessError(f"rankgpt: max_tokens must be >= 1, got {max_tokens}")
        self.mode, self.window, self.stride = mode, window, stride
        self.depth = int(depth) if depth is not None else None
        self.passage_words = int(passage_words) if passage_words else None
        self.max_tokens = int(max_tokens) if max_tokens is not None else None
        self.truncate = truncate
        self.batch_size = int(batch_size)
        self.last_stats: dict[str, dict[str, float]] = {}
        self.last_outputs: dict[str, list[str]] = {}

    @property
    def generator(self) -> Generator:
        """The generator, built on first use (so listing or validating never loads a model)."""
        if self._generator is None:
            assert self.generator_spec is not None
            options: dict[str, Any] = {"truncate": self.truncate}
            if self.generator_spec.startswith("hf:"):
                options["batch_size"] = self.batch_size
            self._generator = make_generator(self.generator_spec, **options)
        return self._generator

    @property
    def meta(self) -> dict[str, Any]:
        spec = self.generator_spec or self.generator.spec
        gen = self._generator
        return {
            "name": self.name, "kind": self.kind,
            "model": gen.model if gen is not None else spec.partition(":")[2],
            "revision": gen.revision if gen is not None else None,
            "generator": gen.meta if gen is not None else {"spec": spec},
            "params": {"generator": spec, "mode": self.mode, "window": self.window, "stride": self.stride,
                       "depth": self.depth, "passage_words": self.passage_words, "max_tokens": self.max_tokens,
                       "truncate": self.truncate, "prompt": "rankgpt-chat", "prompt_sha256": PROMPT_SHA256},
        }

    def budget(self, n: int) -> int:
        """Tokens allowed for the answer ranking ``n`` passages."""
        return self.max_tokens if self.max_tokens is not None else 6 * n + 16

    def windows_for(self, n: int) -> list[tuple[int, int]]:
        """The ``(start, end)`` windows, in the order they are run, for ``n`` candidates."""
        depth = min(n, self.depth) if self.depth is not None else n
        if self.mode == "window":
            return [(0, depth)] if depth > 1 else []
        return sliding_windows(depth, self.window, self.stride)

    def score(self, instances: Sequence[Instance]) -> Iterator[dict[str, float]]:
        instances = list(instances)
        orders = [list(inst.candidates) for inst in instances]
        plans = [self.windows_for(len(docs)) for docs in orders]
        counts = [{"full": 0, "partial": 0, "none": 0, "missing": 0, "invalid": 0, "failed": 0} for _ in instances]
        outputs: list[list[str]] = [[] for _ in instances]
        steps = max((len(p) for p in plans), default=0)
        for step in range(steps):  # windows of one query run in order; queries share each step's batch
            active = [q for q in range(len(instances)) if step < len(plans[q])]
            by_budget: dict[int, list[int]] = {}
            for q in active:
                start, end = plans[q][step]
                by_budget.setdefault(self.budget(end - start), []).append(q)
            for budget, queries in by_budget.items():
                prompts = []
                for q in queries:
                    start, end = plans[q][step]
                    prompts.append(permutation_messages(instances[q].query.text, orders[q][start:end], self.passage_words))
                generations = self.generator.generate(prompts, max_tokens=budget, temperature=0.0, show_progress=False)
                for q, generation in zip(queries, generations):
                    start, end = plans[q][step]
                    parsed = parse_permutation(generation.text, end - start)
                    window_docs = orders[q][start:end]
                    orders[q][start:end] = [window_docs[i] for i in parsed.order]
                    counts[q][parsed.status] += 1
                    counts[q]["missing"] += parsed.missing
                    counts[q]["invalid"] += parsed.invalid
                    counts[q]["failed"] += generation.error is not None
                    outputs[q].append(generation.text)
        for q, inst in enumerate(instances):
            c = counts[q]
            windows = len(plans[q])
            self.last_stats[inst.query.id] = {
                "parse_failure_rate": _rate(c["partial"] + c["none"], windows),
                "parse_none_rate": _rate(c["none"], windows), "parse_partial_rate": _rate(c["partial"], windows),
                "parse_missing_ids": float(c["missing"]), "parse_invalid_ids": float(c["invalid"]),
                "rankgpt_windows": float(windows), "rankgpt_generation_failures": float(c["failed"]),
            }
            self.last_outputs[inst.query.id] = outputs[q]
            if c["partial"] or c["none"]:
                log.debug("rankgpt %s: %d of %d windows not a full permutation", inst.query.id, c["partial"] + c["none"], windows)
        for docs in orders:
            yield {doc.id: -float(rank) for rank, doc in enumerate(docs, start=1)}
