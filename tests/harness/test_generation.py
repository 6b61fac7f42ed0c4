"""The generator interface and the hf: backend, on the real SmolLM2-135M-Instruct weights."""

from __future__ import annotations

import importlib.util

import pytest

from harness.errors import HarnessError
from harness.generation import Generation, make_generator, parse_spec
from harness.generation.base import render_chat, validate_messages
from harness.generation.cache import GenerationCache
from harness.generation.hf import HFGenerator

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer in one short sentence."}, {"role": "user", "content": "Name a fruit."}],
    [{"role": "user", "content": "Say hi."}],
]


@pytest.fixture(scope="module")
def smollm():
    from harness.models import load_causal_lm

    return load_causal_lm("smollm2-135m", device="cpu")


def make_hf(smollm, **options) -> HFGenerator:
    return HFGenerator.from_loaded("hf:smollm2-135m", *smollm, **options)


# -- specs and options (no model) ----------------------------------------------------------------
def test_spec_parsing_and_bad_specs():
    assert parse_spec("hf:smollm2-135m") == ("hf", "smollm2-135m")
    assert parse_spec("openai:http://h:8000/v1#org/m") == ("openai", "http://h:8000/v1#org/m")
    with pytest.raises(HarnessError, match="BACKEND:MODEL"):
        make_generator("smollm2-135m")
    with pytest.raises(HarnessError, match="did you mean 'hf'"):
        make_generator("hff:smollm2-135m")
    with pytest.raises(HarnessError, match="openai:URL#MODEL"):
        make_generator("openai:http://localhost:8000/v1")
    with pytest.raises(HarnessError, match="unknown option.*batch_sise.*accepted: .*batch_size"):
        make_generator("hf:smollm2-135m", batch_sise=4)
    with pytest.raises(HarnessError, match="truncate='right'"):
        make_generator("openai:http://127.0.0.1:9/v1#m", truncate="right")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_missing_is_one_line_install_hint():
    with pytest.raises(HarnessError, match=r"pip install 'retrieval-harness\[gpu\]'") as err:
        make_generator("vllm:Qwen/Qwen2.5-0.5B-Instruct", tensor_parallel_size=1)
    assert "\n" not in str(err.value)


def test_bad_messages_name_the_prompt_and_field():
    with pytest.raises(HarnessError, match="prompt 1: message 0 has role 'bot'"):
        validate_messages([{"role": "bot", "content": "x"}], "prompt 1")
    with pytest.raises(HarnessError, match="message 0 field 'content' must be a string"):
        validate_messages([{"role": "user", "content": None}], "prompt 0")
    with pytest.raises(HarnessError, match="non-empty list"):
        validate_messages([], "prompt 0")


def test_cache_commits_each_item_and_survives_reopening(tmp_path):
    cache = GenerationCache(tmp_path / "g.sqlite")
    cache.put("k1", "answer one", "stop")
    # a second connection (another process, or the next run) sees the item at once
    other = GenerationCache(tmp_path / "g.sqlite")
    assert other.get("k1") == ("answer one", "stop")
    assert other.get("k2") is None
    cache.close()
    other.close()


# -- hf: backend on real weights -------------------------------------------------------------------
@pytest.mark.slow
def test_stop_tokens_come_from_the_model(smollm):
    model, tokenizer, _ = smollm
    gen = make_hf(smollm, cache=False)
    assert model.generation_config.eos_token_id in gen.stop_ids and tokenizer.eos_token_id in gen.stop_ids
    assert tokenizer.convert_ids_to_tokens(gen.stop_ids) == ["<|im_end|>"]
    assert gen.context_window() == 8192
    # the chat template is applied: SmolLM2's template wraps turns in <|im_start|> ... <|im_end|>
    text = render_chat(tokenizer, PROMPTS[0])
    assert text.startswith("<|im_start|>") and text.rstrip().endswith("<|im_start|>assistant")
    assert gen.count_tokens(PROMPTS[0]) == len(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.slow
def test_batched_equals_one_by_one_and_cache_hits(smollm):
    batched = make_hf(smollm, batch_size=3, cache=True)
    first = batched.generate(PROMPTS, max_tokens=12, show_progress=False)
    assert all(isinstance(g, Generation) and g.error is None and not g.cached for g in first)
    assert "Paris" in first[0].text
    one_by_one = make_hf(smollm, batch_size=1, cache=False).generate(PROMPTS, max_tokens=12, show_progress=False)
    assert [g.text for g in one_by_one] == [g.text for g in first]
    # a fresh generator object with the same identity is served from the disk cache
    again = make_hf(smollm, batch_size=2, cache=True).generate(PROMPTS, max_tokens=12, show_progress=False)
    assert [g.cached for g in again] == [True, True, True]
    assert [g.text for g in again] == [g.text for g in first]
    # different sampling params are a different key
    other = batched.generate(PROMPTS[:1], max_tokens=3, show_progress=False)[0]
    assert not other.cached and other.finish_reason == "length"
    assert len(smollm[1](other.text, add_special_tokens=False)["input_ids"]) <= 3


@pytest.mark.slow
def test_context_window_error_or_requested_truncation(smollm):
    long_text = "START " + " ".join(f"word{i}" for i in range(200)) + " END"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": long_text}]
    strict = make_hf(smollm, context_window=96, cache=False)
    n = strict.count_tokens(messages)
    assert n > 96
    with pytest.raises(HarnessError, match=rf"{n} prompt tokens \+ max_tokens 8 exceed the context window of 96"):
        strict.generate([messages], max_tokens=8, show_progress=False)
    with pytest.raises(HarnessError, match="leaves no room"):
        strict.fit(messages, 96)

    left = make_hf(smollm, context_window=96, truncate="left", cache=False)
    fitted = left.fit(messages, 8)
    assert left.count_tokens(fitted) <= 88 and fitted[0] == messages[0]
    assert fitted[1]["content"].rstrip().endswith("END") and "START" not in fitted[1]["content"]

    middle = make_hf(smollm, context_window=96, truncate="middle", cache=False)
    fitted = middle.fit(messages, 8)
    content = fitted[1]["content"]
    assert middle.count_tokens(fitted) <= 88
    assert content.startswith("START") and content.rstrip().endswith("END") and "word100 " not in content
    # and generation runs on the truncated prompt
    out = left.generate([messages], max_tokens=8, show_progress=False)[0]
    assert out.error is None and out.text


@pytest.mark.slow
def test_generators_of_one_process_share_the_loaded_weights():
    a = make_generator("hf:smollm2-135m", device="cpu", cache=False)
    b = make_generator("hf:smollm2-135m", device="cpu", batch_size=2, cache=False)
    assert a.lm is b.lm and a.tokenizer is b.tokenizer
