"""Cross-encoder re-ranking with sentence-transformers' ``CrossEncoder`` (any Hugging Face id).

``score(q, d)`` is the model's relevance *logit* for the pair ``(query, title + " " + text)``:
the raw logit for one-label models (``cross-encoder/ms-marco-MiniLM-L6-v2``,
``BAAI/bge-reranker-base``), ``logit[1] - logit[0]`` for two-label ones. Raw logits rank exactly
as sigmoid/softmax probabilities do but never saturate into ties.

``model`` is required: a hub id ``org/name[@revision]`` or a local folder, resolved by
:func:`harness.models.resolve_model` (offline, the id must be in the Hugging Face cache). No
offline cross-encoder ships with the harness. Pairs of all instances are scored together,
longest first, in batches of ``batch_size``; texts longer than ``max_length`` tokens (default:
the model's own limit) are truncated by the tokenizer.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.progress import progress_enabled
from harness.retrievers.common import document_text
from harness.types import Instance, Retriever

log = logging.getLogger(__name__)

EXAMPLES = "cross-encoder/ms-marco-MiniLM-L6-v2, BAAI/bge-reranker-base"


class CrossEncoderRetriever(Retriever):
    """Re-rank candidates with a sentence-transformers cross-encoder.

    Args:
        model: hub id or local folder (required).
        batch_size: pairs per forward pass (32).
        max_length: token limit per pair (None: the model's own).
        device: ``cpu``, ``cuda``, ... (None: CUDA when available).
        show_progress: progress bar (None: on unless ``DISABLE_TQDM``; see
            :func:`harness.progress.progress_enabled`).
    """

    name = "cross-encoder"
    kind = "cross-encoder"

    def __init__(self, model: str | None = None, batch_size: int = 32, max_length: int | None = None,
                 device: str | None = None, show_progress: bool | None = None) -> None:
        if not model:
            raise HarnessError(f"retriever 'cross-encoder' needs --model (a cross-encoder id, e.g. {EXAMPLES})")
        if int(batch_size) < 1:
            raise HarnessError(f"cross-encoder: batch_size must be >= 1, got {batch_size}")
        from harness.models.load import pick_device
        from harness.models.resolve import resolve_model

        self.info = resolve_model(model)
        self.model_spec = model
        self.revision = self.info.revision
        self.batch_size = int(batch_size)
        self.max_length = int(max_length) if max_length is not None else None
        self.device = pick_device(device)
        self.show_progress = show_progress
        self._check_architecture(Path(self.info.path))
        from sentence_transformers import CrossEncoder

        from harness.models.resolve import ensure_available

        ensure_available(self.info)

        kwargs: dict[str, Any] = {"device": self.device, "max_length": self.max_length}
        if self.info.source == "hub" and self.revision:
            kwargs["revision"] = self.revision
        try:
            self.encoder = CrossEncoder(self.info.path, **kwargs)
        except (OSError, ValueError) as exc:
            first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise HarnessError(f"cross-encoder {model!r}: cannot load ({first})") from None
        self.num_labels = int(self.encoder.model.config.num_labels)
        if self.num_labels not in (1, 2):
            raise HarnessError(f"cross-encoder {model!r}: has {self.num_labels} labels; expected a relevance model with 1 or 2")

    def _check_architecture(self, folder: Path) -> None:
        config = folder / "config.json"
        if not config.is_file():
            return  # a hub id not yet downloaded: from_pretrained will tell
        try:
            architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
        except (OSError, ValueError):
            return
        if architectures and not any("SequenceClassification" in a for a in architectures):
            raise HarnessError(
                f"model {self.model_spec!r} is not a cross-encoder (architectures: {', '.join(architectures)}); "
                f"use a sequence-classification reranker such as {EXAMPLES}"
            )

    @property
    def meta(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "model": self.model_spec, "revision": self.revision,
            "device": self.device,
            "params": {"model": self.model_spec, "batch_size": self.batch_size, "max_length": self.max_length,
                       "score": "logit" if self.num_labels == 1 else "logit[1]-logit[0]"},
        }

    def _predict(self, pairs: list[tuple[str, str]]) -> list[float]:
        import torch

        parameters = inspect.signature(self.encoder.predict).parameters
        activation = "activation_fn" if "activation_fn" in parameters else "activation_fct"  # ST >= 4 / ST 3
        logits = self.encoder.predict(pairs, batch_size=self.batch_size, convert_to_numpy=True,
                                      show_progress_bar=progress_enabled(self.show_progress),
                                      **{activation: torch.nn.Identity()})
        if self.num_labels == 1:
            return [float(x) for x in logits.reshape(-1)]
        return [float(row[1] - row[0]) for row in logits]

    def score(self, instances: Sequence[Instance]) -> Iterator[dict[str, float]]:
        instances = list(instances)
        pairs = [(inst.query.text, document_text(doc)) for inst in instances for doc in inst.candidates]
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        scores = [0.0] * len(pairs)
        if pairs:
            for i, value in zip(order, self._predict([pairs[i] for i in order])):
                scores[i] = value
        offset = 0
        for inst in instances:
            n = len(inst.candidates)
            yield {doc.id: scores[offset + j] for j, doc in enumerate(inst.candidates)}
            offset += n
