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
    """The objective of every head on one instance, ``[layers * heads]`` float64."""
    heads = engine.score_heads(docs, [inst.query.text], query_ids=[inst.query.id], truncate_words=truncate_words)
    per_doc = heads[0].reshape(len(docs), n_cells)  # [n_docs, L*H]
    rels = torch.tensor([float(relevant.get(d.id, 0)) for d in docs], dtype=torch.float64)
    if objective == "gold-mass":
        return (per_doc * (rels > 0).to(torch.float64)[:, None]).sum(dim=0)
    by_id = sorted(range(len(docs)), key=lambda i: docs[i].id)
    return ndcg_at_k(per_doc[by_id], rels[by_id], [float(r) for r in relevant.values()])


def _engine(model: Any, tokenizer: Any, template: str, null_query: str, dtype: str | None,
            device: str | None) -> tuple[Any, str, Any]:
    """The all-heads engine for ``model`` (a spec to load, or a loaded model with ``tokenizer``)."""
    from harness.attention.engine import AttentionEngine
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
    engine = AttentionEngine(
        model, tokenizer, resolve_template(template, model.config, tokenizer), None, null_query=null_query
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
) -> dict[str, Any]:
    """Detect the query-focused retrieval heads of ``model`` (a spec, or a loaded model with ``tokenizer``).

    Candidates are shuffled per instance with one ``random.Random(seed)`` (the reference code's
    ``random.seed(42)`` then ``random.shuffle`` per instance) unless ``shuffle`` is off or the
    instance's ``meta["order"] == "natural"``. ``qrels`` default to each instance's ``gold``.
    With ``resume``, each query's head values are appended as soon as they are computed and
    queries already in the file are not run again (an interrupted detection resumes).
    """
    if objective not in OBJECTIVES:
        raise unknown_name("detection objective", objective, OBJECTIVES)
    if top < 1:
        raise HarnessError(f"top must be a positive integer, got {top}")
    engine, spec, info = _engine(model, tokenizer, template, null_query, dtype, device)
    n_l, n_h = engine.shape.num_layers, engine.shape.num_heads
    names = [f"{layer}-{h}" for layer in range(n_l) for h in range(n_h)]  # flat [L*H] order
    for inst in instances:  # a prompt over the model's context fails now, not after an hour of detection
        if inst.candidates and (resume is None or inst.query.id not in resume.done):
            engine.encode(list(inst.candidates), [inst.query.text], query_ids=[inst.query.id],
                          truncate_words=truncate_words)
    rng = random.Random(seed)
    total = torch.zeros((n_l, n_h), dtype=torch.float64)
    used = skipped = 0
    bar = progress(total=len(instances), desc="detect", unit="query", show=show_progress)
    try:
        for inst in instances:
            docs = list(inst.candidates)
            if shuffle and inst.meta.get("order") != "natural":
                rng.shuffle(docs)
            judged = qrels.get(inst.query.id, {}) if qrels is not None else inst.gold
            relevant = {d: r for d, r in judged.items() if r > 0}
            bar.update(1)
            if objective == "ndcg" and not relevant:
                skipped += 1
                continue
            if not docs:
                used += 1
                continue
            if resume is not None and inst.query.id in resume.done:
                saved = resume.done[inst.query.id]["scores"]
                value = torch.tensor([saved[name] for name in names], dtype=torch.float64)
            else:
                value = _head_values(engine, inst, docs, relevant, objective, truncate_words, n_l * n_h)
                if resume is not None:
                    resume.append(inst.query.id, dict(zip(names, value.tolist())), None)
            total += value.reshape(n_l, n_h)
            used += 1
    finally:
        bar.close()
        if resume is not None:
            resume.close()
    if used == 0:
        raise HarnessError(f"detect_heads: no usable query among {len(instances)} (none has relevant documents)")
    mean = total / used
    flat = [((layer, h), float(mean[layer, h])) for layer in range(n_l) for h in range(n_h)]
    flat.sort(key=lambda item: (-item[1], item[0]))
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
        "top": min(top, len(flat)),
        "heads": [[f"{layer}-{h}", score] for (layer, h), score in flat],
    }
