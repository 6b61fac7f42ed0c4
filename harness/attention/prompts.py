"""Re-ranking prompts of QRHead/ICR, built by concatenation while recording character spans.

The layout (docs/PROTOCOL.md §1.1)::

    {prefix}{lead}Here are some paragraphs:{sep}[1] {title}\\n{text}{sep}[2] ...{sep}
    Please find information that are relevant to the following query in the paragraphs above.{sep}
    Query: {query}{suffix}

- *Doc span* ``i``: ``[i] {title}\\n{text}`` (title part only when ``title is not None``).
- *Query span*: from ``Please find information...`` to the end of ``{suffix}``.

Spans are recorded while the string is built, never searched for afterwards, so a document that
quotes the instruction cannot mis-span. :func:`token_spans` maps them to token index ranges with
the fast tokenizer's offset mapping: a token belongs to a span when its characters overlap it.

Templates: the paper's exact strings for Llama-3.x and Qwen2.5 (chosen from the model type and the
tokenizer's special tokens, never from the model name), otherwise the model's own chat template
with the same user message, cut at the place where the user content lands.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.text import truncate_words as truncate
from harness.types import Document

log = logging.getLogger(__name__)

INSTRUCTION_IE = "Please find information that are relevant to the following query in the paragraphs above."
HEADER = "Here are some paragraphs:"

_LLAMA3_TOKENS = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
_CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
_SENTINEL = "QRRETRIEVERUSERCONTENTSENTINEL"


@dataclass(frozen=True)
class PromptTemplate:
    """The fixed strings around the re-ranking prompt.

    ``prefix`` includes any BOS text (the prompt is tokenised with ``add_special_tokens=False``, so
    what the model sees is exactly the string). ``lead`` is the text between the prefix and the
    header (one space in the paper's templates, nothing in a chat template).
    """

    name: str
    prefix: str
    suffix: str
    sep: str = "\n\n"
    lead: str = ""
    instruction: str = INSTRUCTION_IE


LLAMA3 = PromptTemplate(
    name="llama3",
    prefix="<|begin_of_text|><|start_header_id|>user<|end_header_id|>",
    suffix="<|eot_id|><|start_header_id|>assistant<|end_header_id|>",
    sep=" \n\n",
    lead=" ",
)
QWEN25 = PromptTemplate(
    name="qwen2.5",
    prefix="<|im_start|>user",
    suffix="<|im_end|>\n<|im_start|>assistant",
    sep="\n\n",
    lead=" ",
)
PLAIN = PromptTemplate(name="plain", prefix="", suffix="\n", sep="\n\n", lead="")


@dataclass(frozen=True)
class Prompt:
    """A built prompt with character spans (``[start, end)``) of every document and of the query part."""

    text: str
    doc_spans: tuple[tuple[int, int], ...]
    query_span: tuple[int, int]


def doc_block(index: int, doc: Document, truncate_words: int | None = None) -> str:
    """``[index] {title}\\n{text}``; the title part only when ``doc.title is not None``.

    ``truncate_words`` keeps the first N words (:func:`harness.text.truncate_words`) of the text (docs/PROTOCOL.md §4.1: 400).
    """
    text = doc.text
    if truncate_words is not None:
        text = truncate(text, truncate_words)
    title = f"{doc.title}\n" if doc.title is not None else ""
    return f"[{index}] {title}{text}"


def build_prompt(
    template: PromptTemplate, docs: Sequence[Document], query: str, *, truncate_words: int | None = None
) -> Prompt:
    """Concatenate the prompt and record the spans; documents are numbered 1..N in the given order.

    >>> p = build_prompt(QWEN25, [Document("a", "alpha"), Document("b", "beta", title="T")], "q?")
    >>> [p.text[s:e] for s, e in p.doc_spans]
    ['[1] alpha', '[2] T\\nbeta']
    >>> p.text[p.query_span[0]:]
    'Please find information that are relevant to the following query in the paragraphs above.\\n\\nQuery: q?<|im_end|>\\n<|im_start|>assistant'
    """
    parts: list[str] = [template.prefix, template.lead, HEADER, template.sep]
    pos = sum(len(p) for p in parts)
    spans: list[tuple[int, int]] = []
    for i, doc in enumerate(docs, start=1):
        block = doc_block(i, doc, truncate_words)
        spans.append((pos, pos + len(block)))
        parts += [block, template.sep]
        pos += len(block) + len(template.sep)
    query_start = pos
    parts += [template.instruction, template.sep, f"Query: {query}", template.suffix]
    text = "".join(parts)
    return Prompt(text=text, doc_spans=tuple(spans), query_span=(query_start, len(text)))


# --------------------------------------------------------------------------- template choice


def _has_tokens(tokenizer: Any, tokens: Sequence[str]) -> bool:
    vocab = tokenizer.get_vocab()
    return all(t in vocab for t in tokens)


def chat_template_for(tokenizer: Any) -> PromptTemplate:
    """The model's chat template around one user message, cut where the user content lands."""
    messages = [{"role": "user", "content": _SENTINEL}]
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # noqa: BLE001 -- jinja errors of third-party templates come in many types
        raise HarnessError(f"the tokenizer's chat template cannot be rendered: {exc}") from None
    if not isinstance(rendered, str) or rendered.count(_SENTINEL) != 1:
        raise HarnessError("the tokenizer's chat template does not place the user message verbatim exactly once")
    head, tail = rendered.split(_SENTINEL)
    import hashlib

    digest = hashlib.sha256(rendered.encode()).hexdigest()[:8]
    return PromptTemplate(name=f"chat:{digest}", prefix=head, suffix=tail, sep="\n\n", lead="")


def detect_template(config: Any, tokenizer: Any) -> PromptTemplate:
    """Pick the prompt template for a model.

    - ``llama3``: model type ``llama`` and a tokenizer with ``<|begin_of_text|>``,
      ``<|start_header_id|>``, ``<|end_header_id|>`` and ``<|eot_id|>`` (Llama-3.x).
    - ``qwen2.5``: model type ``qwen2`` and ChatML tokens (Qwen2 / Qwen2.5).
    - otherwise the tokenizer's chat template (``chat:<sha8 of the rendered template>``), and
      ``plain`` (no wrapper) with a warning when there is none.
    """
    model_type = getattr(config, "model_type", "")
    if model_type == "llama" and _has_tokens(tokenizer, _LLAMA3_TOKENS):
        return LLAMA3
    if model_type == "qwen2" and _has_tokens(tokenizer, _CHATML_TOKENS):
        return QWEN25
    if getattr(tokenizer, "chat_template", None):
        return chat_template_for(tokenizer)
    log.warning("model type %r has no chat template; using the plain prompt template", model_type)
    return PLAIN


TEMPLATES = {"llama3": LLAMA3, "qwen2.5": QWEN25, "plain": PLAIN}


def resolve_template(name: str | None, config: Any, tokenizer: Any) -> PromptTemplate:
    """``None``/``"auto"`` detects; ``"llama3"``, ``"qwen2.5"``, ``"plain"`` or ``"chat"`` force one."""
    if name in (None, "auto"):
        return detect_template(config, tokenizer)
    if name == "chat":
        return chat_template_for(tokenizer)
    if name in TEMPLATES:
        return TEMPLATES[name]
    from harness.errors import unknown_name

    raise unknown_name("prompt template", name, [*TEMPLATES, "chat", "auto"])


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class TokenizedPrompt:
    """Token ids of a prompt and the token ranges (``[start, end)``) of its spans."""

    ids: list[int]
    doc_tokens: tuple[tuple[int, int], ...]
    query_start: int

    def __len__(self) -> int:
        return len(self.ids)


def token_spans(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token ranges ``[t0, t1)`` of the tokens whose characters overlap each char span ``[s, e)``.

    Offsets of a fast tokenizer are non-decreasing in both ends, so two binary searches per span
    suffice: ``t0`` = first token ending after ``s``; ``t1`` = first token starting at or after ``e``.
    """
    if not offsets:
        return [(0, 0) for _ in spans]
    arr = np.asarray(offsets, dtype=np.int64)
    starts, ends = arr[:, 0], arr[:, 1]
    if np.any(np.diff(starts) < 0) or np.any(np.diff(ends) < 0):
        return [_overlap_slow(offsets, s, e) for s, e in spans]
    out = []
    for s, e in spans:
        t0 = int(np.searchsorted(ends, s, side="right"))
        t1 = int(np.searchsorted(starts, e, side="left"))
        out.append((t0, max(t0, t1)))
    return out


def _overlap_slow(offsets: Sequence[tuple[int, int]], s: int, e: int) -> tuple[int, int]:
    hits = [i for i, (a, b) in enumerate(offsets) if a < e and b > s]
    return (hits[0], hits[-1] + 1) if hits else (0, 0)


def tokenize_prompt(tokenizer: Any, prompt: Prompt) -> TokenizedPrompt:
    """Tokenise ``prompt.text`` (no added special tokens) and map its spans to tokens."""
    if not getattr(tokenizer, "is_fast", False):
        raise HarnessError(
            f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer; offsets are needed for spans"
        )
    enc = tokenizer(prompt.text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    spans = token_spans(offsets, [*prompt.doc_spans, prompt.query_span])
    doc_tokens = tuple(spans[:-1])
    query_start = spans[-1][0]
    for i, (t0, t1) in enumerate(doc_tokens, start=1):
        if t1 <= t0 or t1 > query_start:
            raise HarnessError(f"document [{i}] maps to no tokens before the query part (tokenizer offsets are broken)")
    return TokenizedPrompt(ids=ids, doc_tokens=doc_tokens, query_start=query_start)
