"""Exactness: the engine equals the slow eager ``output_attentions`` reference on tiny random models.

Error measure: ``max_d |engine(d) - ref(d)| / max_d |ref(d)|`` per query (fp32 models: the scores
are differences of attention sums, so a near-zero score has no meaningful relative error of its
own); on float64 models the error of every single document is checked instead.
"""

from __future__ import annotations

import pytest
import torch

from harness.attention.engine import AttentionEngine
from harness.attention.prompts import detect_template
from harness.attention.reference import reference_head_scores

from .tiny import ARCHS, DOCS, QUERIES, tiny_model, tokenizer

SUBSET = [(1, 3), (0, 1), (1, 0)]  # max layer 1 of 3: early exit after layer 1

EXPECTED_TEMPLATE = {"llama": "llama3", "qwen2": "qwen2.5"}


def _reference(model, template, heads, queries=QUERIES, docs=DOCS, per_head=False):
    return torch.stack(
        [reference_head_scores(model, tokenizer(), template, docs, q, heads, per_head=per_head) for q in queries]
    )


def _norm_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs().amax(dim=-1) / b.abs().amax(dim=-1)).max())


@pytest.fixture(scope="module", params=ARCHS)
def arch_model(request):
    return request.param, tiny_model(request.param)


@pytest.mark.parametrize("heads", [None, SUBSET], ids=["all-heads", "subset"])
def test_doc_scores_equal_eager_reference(arch_model, heads):
    arch, model = arch_model
    template = detect_template(model.config, tokenizer())
    assert template.name == EXPECTED_TEMPLATE.get(arch, template.name)
    if arch not in EXPECTED_TEMPLATE:
        assert template.name.startswith("chat:")
    engine = AttentionEngine(model, tokenizer(), template, heads)
    ours = engine.doc_scores(DOCS, QUERIES)  # both queries share one prefix forward
    ref = _reference(model, template, heads)
    assert ours.shape == ref.shape == (len(QUERIES), len(DOCS))
    err = _norm_rel(ours, ref)
    print(f"{arch} {'all' if heads is None else 'subset'}: relative error {err:.2e}")
    assert err < 1e-4
    assert torch.equal(ours.argsort(dim=-1, descending=True), ref.argsort(dim=-1, descending=True))


@pytest.mark.parametrize("arch", ARCHS)
def test_every_document_exact_in_float64(arch):
    model = tiny_model(arch, dtype=torch.float64)
    template = detect_template(model.config, tokenizer())
    ours = AttentionEngine(model, tokenizer(), template, SUBSET).doc_scores(DOCS, QUERIES[:1])
    ref = _reference(model, template, SUBSET, QUERIES[:1])
    rel = ((ours - ref).abs() / ref.abs().clamp(min=1e-300)).max()
    assert float(rel) < 1e-4, (ours, ref)


def test_mistral_window_shapes_the_scores():
    """The tiny Mistral's window (96 tokens) is shorter than its prompts, so the exactness tests exercise it
    (on every transformers version: a version whose mask dropped the window would score as if there were none)."""

    def scores(**overrides):
        model = tiny_model("mistral", **overrides)
        engine = AttentionEngine(model, tokenizer(), detect_template(model.config, tokenizer()), SUBSET)
        assert engine.encode(DOCS, QUERIES).prefix_len > 96
        return engine.doc_scores(DOCS, QUERIES)

    windowed, full = scores(), scores(sliding_window=None)
    assert float((windowed - full).abs().max()) > 1e-3 * float(full.abs().max())


@pytest.mark.parametrize("arch", ["llama", "mistral"])
def test_per_head_scores_equal_reference(arch):
    model = tiny_model(arch)
    template = detect_template(model.config, tokenizer())
    engine = AttentionEngine(model, tokenizer(), template, None)
    ours = engine.score_heads(DOCS, QUERIES)  # [q, docs, layers, heads]
    assert ours.shape == (2, len(DOCS), 3, 4)
    ref = _reference(model, template, None, per_head=True)  # [q, docs, layers*heads]
    flat = ours.reshape(2, len(DOCS), 12)
    assert float((flat - ref).abs().max() / ref.abs().max()) < 1e-4
    # a subset engine fills only its heads; the others are zero
    sub = AttentionEngine(model, tokenizer(), template, SUBSET).score_heads(DOCS, QUERIES)
    for layer, head in SUBSET:
        assert torch.allclose(sub[..., layer, head], ours[..., layer, head], rtol=1e-5, atol=1e-9)
    assert float(sub[..., 2, :].abs().sum()) == 0.0


def test_batching_and_prefix_reuse_leave_scores_unchanged():
    model = tiny_model("qwen3")
    template = detect_template(model.config, tokenizer())
    engine = AttentionEngine(model, tokenizer(), template, SUBSET)
    together = engine.doc_scores(DOCS, QUERIES)
    alone = torch.cat([engine.doc_scores(DOCS, [q]) for q in QUERIES])
    reversed_batch = engine.doc_scores(DOCS, QUERIES[::-1]).flip(0)
    assert torch.allclose(together, alone, rtol=1e-6, atol=1e-12)
    assert torch.allclose(together, reversed_batch, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("arch", ["llama", "mistral"])  # mistral: the sliding window crosses chunk borders
def test_chunked_prefill_leaves_scores_unchanged(arch):
    model = tiny_model(arch, dtype=torch.float64)
    template = detect_template(model.config, tokenizer())
    one_pass = AttentionEngine(model, tokenizer(), template, SUBSET, prefill_chunk=0).doc_scores(DOCS, QUERIES)
    chunked = AttentionEngine(model, tokenizer(), template, SUBSET, prefill_chunk=37).doc_scores(DOCS, QUERIES)
    assert torch.allclose(one_pass, chunked, rtol=1e-9, atol=1e-15)
    mlp_chunked = AttentionEngine(model, tokenizer(), template, SUBSET, mlp_chunk=29).doc_scores(DOCS, QUERIES)
    assert torch.allclose(one_pass, mlp_chunked, rtol=1e-9, atol=1e-15)
    assert type(model.model.layers[0].mlp).__name__ != "_TokenChunked"  # restored
    ref = _reference(model, template, SUBSET)
    assert bool(((chunked - ref).abs() <= 1e-4 * ref.abs()).all())  # eager softmax runs in fp32 even for fp64


def test_key_chunking_leaves_scores_unchanged():
    model = tiny_model("llama", dtype=torch.float64)  # float64: the two summation orders agree to ~1e-12
    template = detect_template(model.config, tokenizer())
    whole = AttentionEngine(model, tokenizer(), template, None).doc_scores(DOCS, QUERIES)
    chunked = AttentionEngine(model, tokenizer(), template, None, budget=64).doc_scores(DOCS, QUERIES)
    assert torch.allclose(whole, chunked, rtol=1e-9, atol=1e-15)


def test_early_exit_never_runs_later_layers_or_lm_head():
    model = tiny_model("qwen2")
    template = detect_template(model.config, tokenizer())
    calls: list[str] = []
    hooks = [
        model.model.layers[2].register_forward_pre_hook(lambda *a: calls.append("layer2")),
        model.model.layers[1].mlp.register_forward_pre_hook(lambda *a: calls.append("layer1.mlp")),
        model.lm_head.register_forward_pre_hook(lambda *a: calls.append("lm_head")),
        model.model.layers[0].register_forward_pre_hook(lambda *a: calls.append("layer0")),
    ]
    try:
        engine = AttentionEngine(model, tokenizer(), template, SUBSET)
        assert engine.stop_after == 1
        engine.doc_scores(DOCS, QUERIES)
    finally:
        for h in hooks:
            h.remove()
    assert calls == ["layer0"] * 4  # prefix, null suffix, two query suffixes; nothing after layer 1's attention
    # and the model is left as it was: a plain forward still works with its own implementation
    assert model.config._attn_implementation == "sdpa"
