"""QRHead detection (docs/PROTOCOL.md §2): score every head on a detection set, keep the best.

Each instance runs the engine once with every head captured
(:meth:`AttentionEngine.score_heads`: calibrated, per-head masked document scores
``[n_docs, layers, heads]``); the head objective is then computed with tensor operations over
documents × heads, never per cell:

- ``"ndcg"`` (QRHead's BEIR/NQ detection): nDCG@10 of each head's own ranking, linear gain and
  ideal DCG from all the query's qrels (trec_eval ``ndcg_cut_10``); queries without relevant
  qrels are skipped.
- ``"gold-mass"`` (LongMemEval detection, paper Eq. 3–4): the head's score summed over the gold
  documents; queries without gold add 0.

The result is the head-file object that ``--heads FILE`` reads: every head sorted by its mean
score (ties by layer, head), ``top`` the number used.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from typing import Any

import torch

from harness.errors import HarnessError, unknown_name
from harness.progress import progress
from harness.resume import ResumeFile
from harness.types import Instance, Qrels

log = logging.getLogger(__name__)

OBJECTIVES = ("ndcg", "gold-mass")


def ndcg_at_k(scores: torch.Tensor, rels: torch.Tensor, ideal: Sequence[float], k: int = 10) -> torch.Tensor:
    """nDCG@k of every column's ranking: ``scores`` ``[n_docs, n_heads]``, ``rels`` ``[n_docs]``.

    .. math:: \\mathrm{DCG@k} = \\sum_{i=1}^{k} \\frac{rel_{(i)}}{\\log_2(i+1)}

    ``ideal`` holds the relevance of every judged relevant document of the query (candidates
    or not). Ties rank the larger document index first (trec_eval breaks score ties by docid
    descending; callers pass documents sorted by id).
    """
    n_docs = scores.shape[0]
    kk = min(k, n_docs)
    # descending score, ties: larger index first -> sort the flipped rows stably
    flipped = scores.flip(0)
    order = torch.sort(flipped, dim=0, descending=True, stable=True).indices[:kk]
    order = n_docs - 1 - order
    discounts = 1.0 / torch.log2(torch.arange(2, kk + 2, dtype=torch.float64))
    dcg = (rels.to(torch.float64)[order] * discounts[:, None]).sum(dim=0)
    best = sorted(ideal, reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(best))
    return dcg / idcg if idcg > 0 else torch.zeros_like(dcg)


def _head_values(
    engine: Any, inst: Instance, docs: list[Any], relevant: dict[str, int], objective: str,
    truncate_words: int | None, n_cells: int,
) -> torch.Tensor:
    """The objective of the first ``n_cells`` heads (layer-major) on one instance, ``[n_cells]`` float64."""
    heads = engine.score_heads(docs, [inst.query.text], query_ids=[inst.query.id], truncate_words=truncate_words)
    per_doc = heads[0].reshape(len(docs), -1)[:, :n_cells]  # [n_docs, cells]: layers up to --max-layer
    rels = torch.tensor([float(relevant.get(d.id, 0)) for d in docs], dtype=torch.float64)
    if objective == "gold-mass":
        return (per_doc * (rels > 0).to(torch.float64)[:, None]).sum(dim=0)
    by_id = sorted(range(len(docs)), key=lambda i: docs[i].id)
    return ndcg_at_k(per_doc[by_id], rels[by_id], [float(r) for r in relevant.values()])


def _engine(model: Any, tokenizer: Any, template: str, null_query: str, dtype: str | None,
            device: str | None, max_layer: int | None = None) -> tuple[Any, str, Any]:
    """The engine for ``model`` (a spec to load, or a loaded model with ``tokenizer``) over every
    head of the layers up to ``max_layer`` (all layers when None)."""
    from harness.attention.engine import AttentionEngine
    from harness.attention.heads import ModelShape, all_heads
    from harness.attention.prompts import resolve_template

    info = None
    if isinstance(model, str):
        from harness.models.load import load_causal_lm

        spec = model
        model, tokenizer, info = load_causal_lm(spec, dtype=dtype, device=device, for_scoring_only=True)
    else:
        spec = getattr(model.config, "_name_or_path", "") or type(model).__name__
        if tokenizer is None:
            raise HarnessError("detect_heads: a loaded model needs its tokenizer")
    shape = ModelShape.from_config(model.config)
    heads = None
    if max_layer is not None:
        if not 0 <= max_layer < shape.num_layers:
            raise HarnessError(f"--max-layer {max_layer}: expected 0..{shape.num_layers - 1} ({shape.describe()})")
        heads = [h for h in all_heads(shape) if h[0] <= max_layer]  # the prefix pass stops after max_layer
    engine = AttentionEngine(
        model, tokenizer, resolve_template(template, model.config, tokenizer), heads, null_query=null_query
    )
    return engine, spec, info


def detect_heads(
    model: Any,
    instances: Sequence[Instance],
    qrels: Qrels | None = None,
    *,
    objective: str = "ndcg",
    top: int = 16,
    tokenizer: Any = None,
    shuffle: bool = True,
    seed: int = 42,
    null_query: str = "N/A",
    truncate_words: int | None = None,
    template: str = "auto",
    data: str | None = None,
    show_progress: bool = True,
    dtype: str | None = None,
    device: str | None = None,
    resume: ResumeFile | None = None,
    max_layer: int | None = None,
) -> dict[str, Any]:
    """Detect the query-focused retrieval heads of ``model`` (a spec, or a loaded model with ``tokenizer``).

    Candidates are shuffled per instance with one ``random.Random(seed)`` (the reference code's
    ``random.seed(42)`` then ``random.shuffle`` per instance) unless ``shuffle`` is off or the
    instance's ``meta["order"] == "natural"``. ``qrels`` default to each instance's ``gold``.
    With ``resume``, each query's head values are appended as soon as they are computed and
    queries already in the file are not run again (an interrupted detection resumes).
    ``max_layer``: score only the heads of layers ``0..max_layer`` (the forward stops there);
    the heads above are not ranked, and the head file records ``max_layer``.
    """
    if objective not in OBJECTIVES:
        raise unknown_name("detection objective", objective, OBJECTIVES)
    if top < 1:
        raise HarnessError(f"top must be a positive integer, got {top}")
    engine, spec, info = _engine(model, tokenizer, template, null_query, dtype, device, max_layer)
    n_l, n_h = engine.shape.num_layers, engine.shape.num_heads
    n_scored = engine.stop_after + 1  # layers whose heads are scored
    pass_ = _DetectionPass(engine, objective, truncate_words, n_scored * n_h, resume)
    pass_.check(instances)
    total, used, skipped = pass_.run(instances, qrels, random.Random(seed) if shuffle else None, show_progress)
    if used == 0:
        raise HarnessError(f"detect_heads: no usable query among {len(instances)} (none has relevant documents)")
    flat = _ranked(total / used, n_h)
    return {
        "model": getattr(info, "spec", None) or spec,
        "revision": getattr(info, "revision", None),
        "objective": objective,
        "data": data,
        "n": used,
        "skipped": skipped,
        "seed": seed if shuffle else None,
        "shuffle": shuffle,
        "null_query": null_query,
        "truncate_words": truncate_words,
        "template": engine.template.name,
        "shape": {"layers": n_l, "heads": n_h, "kv_heads": engine.shape.num_kv_heads},
        "max_layer": max_layer,
        "top": min(top, len(flat)),
        "heads": [[f"{layer}-{h}", score] for (layer, h), score in flat],
    }


def _ranked(mean: torch.Tensor, n_heads: int) -> list[tuple[tuple[int, int], float]]:
    """``((layer, head), score)`` of every cell of the layer-major ``mean``, best first (ties: layer, head)."""
    flat = [((i // n_heads, i % n_heads), float(v)) for i, v in enumerate(mean.tolist())]
    return sorted(flat, key=lambda item: (-item[1], item[0]))


class _DetectionPass:
    """The loop of :func:`detect_heads`: every instance's head values (``[n_cells]``, layer-major),
    read back from ``resume`` or computed and appended to it, summed."""

    def __init__(self, engine: Any, objective: str, truncate_words: int | None, n_cells: int,
                 resume: ResumeFile | None) -> None:
        self.engine, self.objective, self.words, self.n_cells, self.resume = (
            engine, objective, truncate_words, n_cells, resume)
        n_h = engine.shape.num_heads
        self.names = [f"{i // n_h}-{i % n_h}" for i in range(n_cells)]

    def check(self, instances: Sequence[Instance]) -> None:
        """Tokenise every prompt still to run: one over the model's context fails now, not after an
        hour of detection."""
        for inst in instances:
            if inst.candidates and (self.resume is None or inst.query.id not in self.resume.done):
                self.engine.encode(list(inst.candidates), [inst.query.text], query_ids=[inst.query.id],
                                   truncate_words=self.words)

    def run(self, instances: Sequence[Instance], qrels: Qrels | None, rng: random.Random | None,
            show_progress: bool) -> tuple[torch.Tensor, int, int]:
        total = torch.zeros(self.n_cells, dtype=torch.float64)
        used = skipped = 0
        bar = progress(total=len(instances), desc="detect", unit="query", show=show_progress)
        try:
            for inst in instances:
                docs = list(inst.candidates)
                if rng is not None and inst.meta.get("order") != "natural":
                    rng.shuffle(docs)
                judged = qrels.get(inst.query.id, {}) if qrels is not None else inst.gold
                relevant = {d: r for d, r in judged.items() if r > 0}
                bar.update(1)
                if self.objective == "ndcg" and not relevant:
                    skipped += 1
                    continue
                if docs:
                    total += self._value(inst, docs, relevant)
                used += 1
        finally:
            bar.close()
            if self.resume is not None:
                self.resume.close()
        return total, used, skipped

    def _value(self, inst: Instance, docs: list[Any], relevant: dict[str, int]) -> torch.Tensor:
        resume = self.resume
        if resume is not None and inst.query.id in resume.done:
            saved = resume.done[inst.query.id]["scores"]
            return torch.tensor([saved[name] for name in self.names], dtype=torch.float64)
        value = _head_values(self.engine, inst, docs, relevant, self.objective, self.words, self.n_cells)
        if resume is not None:
            resume.append(inst.query.id, dict(zip(self.names, value.tolist())), None)
        return value
