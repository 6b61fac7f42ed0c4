"""QRRetriever (QRHead heads) and ICR (all heads): attention-head re-rankers on any decoder LM.

Both score every candidate of an instance by the calibrated attention that the query part of a
re-ranking prompt pays to each document (docs/PROTOCOL.md §1; engine in
:mod:`harness.attention.engine`). ``qr`` uses a small head set (``--heads``: a paper set name
such as ``nq``/``lme``, a ``layer-head`` list, a head file, ``full``, ``random:N:SEED``,
``top:N:FILE`` or ``exclude:FILE``); ``icr`` uses every head.

Candidate order: first-stage lists arrive best-first and are fed **reversed** (best last, next to
the query), as the paper's BEIR re-rankers do (``order="reversed"``). Instances whose
``meta["order"] == "natural"`` (LongMemEval rounds, CLIPPER chapters, NIAH chunks) keep their
order, as does ``order="given"``. Consecutive instances over the same documents (CLIPPER's claims
over one book) share one prefix forward.

Example::

    qr = QRRetriever(model="smollm2-135m")
    for scores in qr.score(instances):
        ...  # {doc_id: score}
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from harness.errors import HarnessError
from harness.progress import progress
from harness.types import Document, Instance, Retriever

log = logging.getLogger(__name__)

ORDERS = ("reversed", "given")


class QRRetriever(Retriever):
    """Query-focused retrieval heads (Zhang et al., EMNLP 2025) as a re-ranker.

    Args:
        model: a model spec for :func:`harness.models.load_causal_lm` (HF id, folder, GGUF file or
            offline alias; default the CPU alias ``smollm2-135m``).
        heads: ``None`` (the model's default set: the paper's ``nq`` on its models, the packaged
            detected heads of an offline alias; any other model must name its heads), a set name
            (``nq``, ``lme``), ``full``, a ``"14-22,13-16"`` list, a head-file path,
            ``random:N:SEED``, ``top:N:FILE`` or ``exclude:FILE``
            (:func:`harness.attention.heads.resolve_heads`).
        null_query: the calibration query.
        order: ``"reversed"`` (best first-stage candidate last, the paper's BEIR setting) or
            ``"given"``.
        dtype, device, device_map: passed to the model loader (bf16 on GPU / fp32 on CPU by
            default; ``device_map="auto"`` spreads a large model over the GPUs of a node).
        truncate_words: keep the first N space-split words of every document (paper BEIR: 400).
        max_context: refuse prompts longer than this (default the model's context length).
        template: ``"auto"`` (paper template for Llama-3.x/Qwen2.5, else the chat template),
            ``"llama3"``, ``"qwen2.5"``, ``"chat"`` or ``"plain"``.
        show_progress: a tqdm bar over instances (``DISABLE_TQDM=1`` turns it off).
    """

    name: ClassVar[str] = "qr"
    kind: ClassVar[str] = "attention-head"

    def __init__(
        self,
        model: str = "smollm2-135m",
        heads: str | None = None,
        null_query: str = "N/A",
        order: str = "reversed",
        dtype: str | None = None,
        device: str | None = None,
        device_map: str | None = None,
        truncate_words: int | None = None,
        max_context: int | None = None,
        template: str = "auto",
        show_progress: bool = True,
    ) -> None:
        if order not in ORDERS:
            from harness.errors import unknown_name

            raise unknown_name("candidate order", order, ORDERS)
        if truncate_words is not None and int(truncate_words) < 1:
            raise HarnessError(f"truncate_words must be a positive integer, got {truncate_words!r}")
        self.model_spec = model
        self.heads_spec = heads
        self.null_query = null_query
        self.order = order
        self.dtype = dtype
        self.device = device
        self.device_map = device_map
        self.truncate_words = int(truncate_words) if truncate_words is not None else None
        self.max_context = int(max_context) if max_context is not None else None
        self.template_name = template
        self.show_progress = show_progress
        self._model: Any = None
        self._tokenizer: Any = None
        self._info: Any = None
        self._engine_obj: Any = None
        self._selection: Any = None

    @classmethod
    def from_loaded(cls, model: Any, tokenizer: Any, info: Any = None, **params: Any) -> QRRetriever:
        """Wrap an already loaded transformers model and tokenizer (tests, notebooks, benchmarks)."""
        spec = getattr(info, "spec", None) or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self = cls(model=spec, **params)
        self._model, self._tokenizer, self._info = model, tokenizer, info
        self._build_engine()
        return self

    # ------------------------------------------------------------------ set-up

    def _load(self) -> None:
        from harness.models.load import load_causal_lm

        self._model, self._tokenizer, self._info = load_causal_lm(
            self.model_spec, dtype=self.dtype, device=self.device, device_map=self.device_map, for_scoring_only=True
        )
        self._model.eval()

    def _build_engine(self) -> None:
        from harness.attention.engine import AttentionEngine
        from harness.attention.heads import ModelShape, resolve_heads
        from harness.attention.prompts import resolve_template

        shape = ModelShape.from_config(self._model.config)
        alias = getattr(self._info, "alias", None) or (self.model_spec if isinstance(self.model_spec, str) else None)
        self._selection = resolve_heads(self.heads_spec, shape, alias=alias)
        template = resolve_template(self.template_name, self._model.config, self._tokenizer)
        self._engine_obj = AttentionEngine(
            self._model,
            self._tokenizer,
            template,
            list(self._selection.heads),
            null_query=self.null_query,
            max_context=self.max_context,
        )
        log.info(
            "%s: model %s, %d heads (%s), layers used %d/%d, template %s",
            self.name,
            self.model_spec,
            len(self._selection.heads),
            self._selection.name,
            self._engine_obj.stop_after + 1,
            shape.num_layers,
            template.name,
        )

    @property
    def engine(self) -> Any:
        """The :class:`~harness.attention.engine.AttentionEngine` (loads the model on first use)."""
        if self._engine_obj is None:
            if self._model is None:
                self._load()
            self._build_engine()
        return self._engine_obj

    @property
    def meta(self) -> dict[str, Any]:
        engine = self.engine
        sel = self._selection
        return {
            "name": self.name,
            "kind": self.kind,
            "model": self.model_spec,
            "revision": getattr(self._info, "revision", None),
            "model_type": engine.model_type,
            "heads": {"name": sel.name, "list": sel.as_strings(), "sha256": sel.sha256, "n": len(sel.heads),
                      **sel.detail},
            "heads_name": sel.name,
            "layers_used": engine.stop_after + 1,
            "template": engine.template.name,
            "max_context": engine.max_context,
            "params": {
                "heads": self.heads_spec,
                "null_query": self.null_query,
                "order": self.order,
                "dtype": self.dtype,
                "device": self.device,
                "device_map": self.device_map,
                "truncate_words": self.truncate_words,
                "max_context": self.max_context,
                "template": self.template_name,
            },
        }

    # ------------------------------------------------------------------ scoring

    def _ordered(self, instance: Instance) -> list[Document]:
        if instance.meta.get("order") == "natural" or self.order == "given":
            return list(instance.candidates)
        return list(reversed(instance.candidates))

    def check(self, instances: Sequence[Instance]) -> None:
        """Tokenise every prompt up front: one that exceeds the model's context fails now, not mid-run."""
        for group in _groups(instances, self._ordered):
            docs = self._ordered(group[0])
            if docs:
                self.engine.encode(docs, [inst.query.text for inst in group],
                                   query_ids=[inst.query.id for inst in group], truncate_words=self.truncate_words)

    def score(self, instances: Sequence[Instance]) -> Iterator[dict[str, float]]:
        """Yield ``{doc_id: score}`` per instance (higher is better); ``{}`` for no candidates."""
        engine = self.engine
        bar = progress(total=len(instances), desc=self.name, unit="query", show=self.show_progress)
        try:
            for group in _groups(instances, self._ordered):
                docs = self._ordered(group[0])
                if not docs:
                    for _ in group:
                        yield {}
                    continue
                scores = engine.doc_scores(
                    docs,
                    [inst.query.text for inst in group],
                    query_ids=[inst.query.id for inst in group],
                    truncate_words=self.truncate_words,
                )
                for row in scores.tolist():
                    yield {doc.id: float(s) for doc, s in zip(docs, row)}
                bar.update(len(group))
        finally:
            bar.close()


class ICRRetriever(QRRetriever):
    """In-context re-ranking (Chen et al., 2025): the same scorer over every layer and head."""

    name: ClassVar[str] = "icr"

    def __init__(self, model: str = "smollm2-135m", heads: str | None = "full", **params: Any) -> None:
        if heads not in (None, "full"):
            raise HarnessError(f"icr uses every head; heads={heads!r} is not allowed (use the 'qr' retriever)")
        super().__init__(model=model, heads="full", **params)


def _same_docs(a: Sequence[Document], b: Sequence[Document]) -> bool:
    return len(a) == len(b) and all(x is y or x == y for x, y in zip(a, b))


def _groups(instances: Sequence[Instance], ordered: Any) -> Iterator[list[Instance]]:
    """Runs of consecutive instances whose (ordered) documents are identical."""
    group: list[Instance] = []
    docs: list[Document] = []
    for inst in instances:
        current = ordered(inst)
        if group and _same_docs(current, docs):
            group.append(inst)
            continue
        if group:
            yield group
        group, docs = [inst], current
    if group:
        yield group
