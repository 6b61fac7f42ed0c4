"""Head masking during generation: exact columns, Retrieval_Head's query mode, cache separation.

Everything runs on tiny random-weight decoders (milliseconds), in float32.
"""

from __future__ import annotations

import json

import pytest
import torch

from harness.attention.heads import ModelShape
from harness.attention.masking import HeadMask, attention_modules, masked_heads, random_heads, resolve_mask
from harness.errors import HarnessError
from harness.generation.cache import GenerationCache
from harness.generation.hf import HFGenerator
from tests.harness.attention.tiny import tiny_model, tokenizer

HEAD_DIM = 16  # tiny models: hidden 64, 4 heads, 2 KV heads
PROMPTS = [
    [{"role": "user", "content": "what is the capital of France?"}],
    [{"role": "user", "content": "The quick brown fox jumps over the lazy dog near the river bank."}],
    [{"role": "system", "content": "Numbers 0 1 2"}, {"role": "user", "content": "Retrieval heads attend"}],
]


@pytest.fixture(scope="module")
def llama():
    return tiny_model("llama")


def _ids(text: str = "Paris is the capital and most populous city of France.") -> torch.Tensor:
    return torch.tensor([tokenizer()(text, add_special_tokens=False)["input_ids"]])


def _capture(model, ids: torch.Tensor, mask: HeadMask | None) -> tuple[dict, dict, torch.Tensor]:
    """o_proj inputs (after any masking pre-hook) and v_proj outputs of every layer, and the logits."""
    o_in: dict[int, torch.Tensor] = {}
    v_out: dict[int, torch.Tensor] = {}
    handles = []
    for i, attn in enumerate(attention_modules(model)):
        handles.append(
            attn.o_proj.register_forward_hook(lambda m, a, o, i=i: o_in.__setitem__(i, a[0].detach().clone()))
        )
        handles.append(attn.v_proj.register_forward_hook(lambda m, a, o, i=i: v_out.__setitem__(i, o.detach().clone())))
    try:
        with torch.no_grad(), masked_heads(model, mask):
            logits = model(input_ids=ids).logits
    finally:
        for h in handles:
            h.remove()
    return o_in, v_out, logits


def _cols(*heads: int) -> list[int]:
    return [c for h in heads for c in range(h * HEAD_DIM, (h + 1) * HEAD_DIM)]


# -- output mode ---------------------------------------------------------------------------------------
def test_output_mode_zeroes_exactly_the_masked_heads_columns(llama):
    ids = _ids()
    base_in, _, base_logits = _capture(llama, ids, None)
    mask = HeadMask(heads=((1, 2), (1, 0)), name="custom", mode="output")
    o_in, _, logits = _capture(llama, ids, mask)
    # layer 0 is untouched; layer 1's o_proj input differs exactly in heads 0 and 2, which are zero
    assert torch.equal(o_in[0], base_in[0])
    masked, kept = _cols(0, 2), _cols(1, 3)
    assert torch.all(o_in[1][..., masked] == 0) and torch.any(base_in[1][..., masked] != 0)
    assert torch.equal(o_in[1][..., kept], base_in[1][..., kept])
    # reference: the layer's attention output loses exactly the heads' share of o_proj
    w = attention_modules(llama)[1].o_proj.weight
    expected = torch.nn.functional.linear(base_in[1], w) - base_in[1][..., masked] @ w[:, masked].T
    assert torch.allclose(torch.nn.functional.linear(o_in[1], w), expected, atol=1e-5)
    # later layers and the logits change; the hooks are gone afterwards
    assert not torch.equal(o_in[2], base_in[2]) and not torch.allclose(logits, base_logits)
    assert all(not attn.o_proj._forward_pre_hooks for attn in attention_modules(llama))
    _, _, again_logits = _capture(llama, ids, None)
    assert torch.equal(again_logits, base_logits)


# -- query mode (Retrieval_Head) -----------------------------------------------------------------------
def test_query_mode_makes_the_last_token_attend_uniformly(llama):
    ids = _ids()
    base_in, _, _ = _capture(llama, ids, None)
    mask = HeadMask(heads=((1, 3),), name="custom", mode="query")
    o_in, v_out, _ = _capture(llama, ids, mask)
    # every position but the last is computed without the mask (the script prefills unmasked)
    for layer in range(3):
        assert torch.equal(o_in[layer][:, :-1], base_in[layer][:, :-1])
    assert torch.equal(o_in[0], base_in[0])
    # head 3 of layer 1 at the last position: a zero query gives uniform attention over all positions,
    # i.e. the mean of its value vectors (head 3 reads KV head 3 // 2 = 1)
    values = v_out[1].view(1, ids.shape[1], 2, HEAD_DIM)[0, :, 1]
    assert torch.allclose(o_in[1][0, -1, _cols(3)], values.mean(dim=0), atol=1e-6)
    assert not torch.allclose(base_in[1][0, -1, _cols(3)], values.mean(dim=0), atol=1e-3)
    assert torch.equal(o_in[1][0, -1, _cols(0, 1, 2)], base_in[1][0, -1, _cols(0, 1, 2)])


@pytest.mark.filterwarnings("ignore:.past_key_values. is deprecated:FutureWarning")
def test_query_mode_masks_the_same_tokens_as_an_unmasked_prefill_then_masked_decoding(llama):
    """The script: prefill all but the last token unmasked, then feed the last one with the mask."""
    ids = _ids()
    mask = HeadMask(heads=((0, 1), (2, 2)), name="custom", mode="query")
    with torch.no_grad():
        with masked_heads(llama, mask):
            one_pass = llama(input_ids=ids).logits[0, -1]
        prefix = llama(input_ids=ids[:, :-1], use_cache=True)
        with masked_heads(llama, mask):
            step = llama(input_ids=ids[:, -1:], past_key_values=prefix.past_key_values).logits[0, -1]
        plain = llama(input_ids=ids).logits[0, -1]
    assert torch.allclose(one_pass, step, atol=1e-5)
    assert not torch.allclose(one_pass, plain, atol=1e-3)


def test_query_mode_on_a_fused_qkv_projection():
    phi3 = tiny_model("phi3")
    ids = _ids()
    base_in, _, _ = _capture_phi3(phi3, ids, None)
    o_in, _, _ = _capture_phi3(phi3, ids, HeadMask(heads=((1, 2),), name="custom", mode="query"))
    assert torch.equal(o_in[0], base_in[0]) and torch.equal(o_in[1][:, :-1], base_in[1][:, :-1])
    assert not torch.allclose(o_in[1][0, -1, _cols(2)], base_in[1][0, -1, _cols(2)])
    assert torch.equal(o_in[1][0, -1, _cols(0, 1, 3)], base_in[1][0, -1, _cols(0, 1, 3)])


def _capture_phi3(model, ids, mask):
    o_in: dict[int, torch.Tensor] = {}
    handles = [
        attn.o_proj.register_forward_hook(lambda m, a, o, i=i: o_in.__setitem__(i, a[0].clone()))
        for i, attn in enumerate(attention_modules(model))
    ]
    try:
        with torch.no_grad(), masked_heads(model, mask):
            logits = model(input_ids=ids).logits
    finally:
        for h in handles:
            h.remove()
    return o_in, None, logits


# -- the hf: generator ---------------------------------------------------------------------------------
def _gen(model, **options) -> HFGenerator:
    return HFGenerator.from_loaded("hf:tiny-llama", model, tokenizer(), None, **options)


def test_no_mask_is_identical_and_keeps_the_cache_identity(llama):
    plain = _gen(llama, cache=False)
    for spec in (None, "none", ""):
        gen = _gen(llama, cache=False, mask_heads=spec)
        assert gen.mask is None and gen.identity == plain.identity
        assert [g.text for g in gen.generate(PROMPTS, max_tokens=6)] == [
            g.text for g in plain.generate(PROMPTS, max_tokens=6)
        ]


@pytest.mark.parametrize("mode", ["output", "query"])
def test_masking_every_head_changes_the_answers(llama, mode):
    plain = [g.text for g in _gen(llama, cache=False).generate(PROMPTS, max_tokens=6)]
    masked = [
        g.text for g in _gen(llama, cache=False, mask_heads="full", mask_mode=mode).generate(PROMPTS, max_tokens=6)
    ]
    assert masked != plain
    # and the shared model is unmasked again afterwards
    assert [g.text for g in _gen(llama, cache=False).generate(PROMPTS, max_tokens=6)] == plain


@pytest.mark.parametrize("mode", ["output", "query"])
def test_batched_masked_generation_equals_one_by_one(llama, mode):
    """Left padding must not move what the mask hits (query mode masks the last position)."""
    batched = _gen(llama, cache=False, batch_size=3, mask_heads="0-1,1-3,2-0", mask_mode=mode)
    single = _gen(llama, cache=False, batch_size=1, mask_heads="0-1,1-3,2-0", mask_mode=mode)
    assert [g.text for g in batched.generate(PROMPTS, max_tokens=6)] == [
        g.text for g in single.generate(PROMPTS, max_tokens=6)
    ]


def test_masked_and_unmasked_answers_never_share_cache_entries(llama, tmp_path):
    path = tmp_path / "gen.sqlite"
    plain = _gen(llama, cache=str(path))
    masked = _gen(llama, cache=str(path), mask_heads="full")
    query = _gen(llama, cache=str(path), mask_heads="full", mask_mode="query")
    first = plain.generate(PROMPTS, max_tokens=6)
    assert not any(g.cached for g in first)
    m1 = masked.generate(PROMPTS, max_tokens=6)
    assert not any(g.cached for g in m1) and [g.text for g in m1] != [g.text for g in first]
    assert not any(g.cached for g in query.generate(PROMPTS, max_tokens=6))
    # each is served from its own entries the second time
    assert [(g.text, g.cached) for g in masked.generate(PROMPTS, max_tokens=6)] == [(g.text, True) for g in m1]
    assert [(g.text, g.cached) for g in plain.generate(PROMPTS, max_tokens=6)] == [(g.text, True) for g in first]
    assert masked.meta["mask"]["n_heads"] == 12 and masked.meta["mask"]["mode"] == "output"
    assert "mask" not in plain.meta
    GenerationCache(path).close()


# -- resolving the option ------------------------------------------------------------------------------
def test_resolve_mask_specs(llama, tmp_path):
    shape = ModelShape.from_config(llama.config)
    assert resolve_mask("1-2, 0-3", llama).heads == ((1, 2), (0, 3))
    assert resolve_mask(["1-2", "0-3"], llama).heads == ((1, 2), (0, 3))
    assert len(resolve_mask("full", llama).heads) == 12
    head_file = tmp_path / "heads.json"
    head_file.write_text(json.dumps({"heads": [["2-1", 0.9], ["0-0", 0.5], ["1-3", 0.1]]}))
    mask = resolve_mask(str(head_file), llama, top=2, mode="query")
    assert mask.heads == ((2, 1), (0, 0)) and mask.name == "file:heads.json@top2" and mask.mode == "query"
    r = resolve_mask("random:5:7", llama)
    assert r.heads == random_heads(5, shape, 7) and len(set(r.heads)) == 5 and r.name == "random:5:7"
    assert resolve_mask("random:5:8", llama).heads != r.heads
    assert resolve_mask("random:3", llama).name == "random:3:0"
    # the cache identity is the set of heads, not the order they were listed in
    assert resolve_mask("1-2,0-3", llama).sha256 == resolve_mask("0-3,1-2", llama).sha256


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mask_heads": "3-0"}, r"head 3-0 is outside the model \(3 layers x 4 heads"),
        ({"mask_heads": "1-2,1-2"}, "listed twice"),
        ({"mask_heads": "14"}, "did you mean|unknown head set|not a 'layer-head'"),
        ({"mask_heads": "random:13"}, "has 12 heads"),
        ({"mask_heads": "random:x"}, "random:N or random:N:SEED"),
        ({"mask_heads": "0-1", "mask_mode": "keys"}, "mask_mode='keys'"),
        ({"mask_heads": "0-1,1-1", "mask_top": 3}, r"mask_top=3: expected 1..2"),
        ({"mask_top": 3}, "mask_top needs mask_heads"),
        ({"mask_heads": "missing/heads.json"}, "head file missing/heads.json not found"),
    ],
)
def test_bad_mask_options_are_one_line_errors(llama, options, message):
    with pytest.raises(HarnessError, match=message) as err:
        _gen(llama, cache=False, **options)
    assert "\n" not in str(err.value)
