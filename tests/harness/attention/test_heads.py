"""Head sets, lists, head files and their validation."""

from __future__ import annotations

import json

import pytest

from harness.attention.heads import (
    PAPER_HEAD_SETS,
    ModelShape,
    load_head_file,
    parse_head_list,
    resolve_heads,
)
from harness.errors import HarnessError

LLAMA_8B = ModelShape("llama", 32, 32, 8, 4096)
QWEN_7B = ModelShape("qwen2", 28, 28, 4, 3584)
LLAMA_70B = ModelShape("llama", 80, 64, 8, 8192)
SMOL = ModelShape("llama", 30, 9, 3, 576)


def test_paper_sets_are_verbatim_and_sized():
    for (key, name), text in PAPER_HEAD_SETS.items():
        heads = parse_head_list(text)
        assert len(heads) == (32 if key == "llama-3.1-70b" else 16), key
        assert len(set(heads)) == len(heads)
    sel = resolve_heads("nq", LLAMA_8B)
    assert sel.name == "llama-3.1-8b:nq" and sel.heads[0] == (14, 22) and sel.heads[-1] == (20, 14)
    assert sel.max_layer == 20  # docs/PROTOCOL.md §3: 21 of 32 layers
    assert resolve_heads("lme", LLAMA_8B).max_layer == 17
    assert resolve_heads("lme", LLAMA_70B).max_layer == 71
    assert resolve_heads("nq", QWEN_7B).max_layer == 20
    assert resolve_heads(None, LLAMA_8B).name == "llama-3.1-8b:nq"
    assert len(sel.sha256) == 64 and sel.sha256 != resolve_heads("lme", LLAMA_8B).sha256


def test_lists_full_and_model_qualified_names():
    assert resolve_heads("14-22, 13-16", LLAMA_8B).heads == ((14, 22), (13, 16))
    assert len(resolve_heads("full", SMOL).heads) == 270
    assert resolve_heads("llama-3.2-1b:nq", LLAMA_8B).max_layer == 11  # fits the 8B shape


def test_unknown_set_name_suggests_close_names():
    with pytest.raises(HarnessError, match=r"unknown head set 'nqq'; did you mean 'nq'"):
        resolve_heads("nqq", LLAMA_8B)
    with pytest.raises(HarnessError, match="exists only for the paper's models"):
        resolve_heads("lme", SMOL)
    with pytest.raises(HarnessError, match="unknown head set"):
        resolve_heads("qwen2.5-7b:lme", QWEN_7B)  # docs/PROTOCOL.md §3: no LME set for Qwen


def test_heads_outside_the_model_are_refused_in_one_line():
    with pytest.raises(HarnessError) as err:
        resolve_heads("29-8,30-0", SMOL)
    assert str(err.value) == "--heads: head 30-0 is outside the model (30 layers x 9 heads, 0-indexed)"
    with pytest.raises(HarnessError, match="head 0-9 is outside"):
        resolve_heads("0-9", SMOL)
    with pytest.raises(HarnessError, match="outside the model"):
        resolve_heads("llama-3.1-8b:nq", ModelShape("llama", 16, 16, 4, 1024))  # the 8B set on a smaller model
    with pytest.raises(HarnessError, match="'14_22' is not a 'layer-head' pair"):
        resolve_heads("14_22,1-1", LLAMA_8B)
    with pytest.raises(HarnessError, match="listed twice"):
        resolve_heads("1-1,1-1", LLAMA_8B)


def test_head_file_uses_top_and_validates(tmp_path):
    path = tmp_path / "heads.json"
    path.write_text(
        json.dumps({"model": "m", "objective": "ndcg", "top": 2, "heads": [["3-1", 0.9], ["2-0", 0.5], ["99-0", 0.1]]})
    )
    sel = resolve_heads(str(path), SMOL)
    assert sel.heads == ((3, 1), (2, 0)) and sel.name == "file:heads.json"
    heads, obj = load_head_file(path)
    assert obj["objective"] == "ndcg" and heads == [(3, 1), (2, 0)]
    path.write_text(json.dumps({"top": 3, "heads": [["3-1", 0.9], ["2-0", 0.5], ["99-0", 0.1]]}))
    with pytest.raises(HarnessError, match=r"heads.json: head 99-0 is outside"):
        resolve_heads(str(path), SMOL)
    path.write_text('{"heads": [')
    with pytest.raises(HarnessError, match=r"heads.json:1: not valid JSON"):
        resolve_heads(str(path), SMOL)
    path.write_text('{"heads": []}')
    with pytest.raises(HarnessError, match="non-empty list"):
        resolve_heads(str(path), SMOL)
    with pytest.raises(HarnessError, match="not found"):
        resolve_heads(str(tmp_path / "missing.json"), SMOL)


def test_alias_default_is_its_head_file_else_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_HEADS_DIR", str(tmp_path))  # the override folder, without the alias's file
    with pytest.raises(HarnessError) as err:
        resolve_heads(None, SMOL, alias="smollm2-135m")
    message = str(err.value)
    assert "\n" not in message and f"{tmp_path / 'smollm2-135m.json'} not found" in message
    assert "harness detect --model smollm2-135m --task TASK --output heads.json" in message
    assert "--heads heads.json" in message and "--heads full" in message
    (tmp_path / "smollm2-135m.json").write_text(json.dumps({"top": 1, "heads": [["7-3", 1.0], ["1-1", 0.5]]}))
    assert resolve_heads(None, SMOL, alias="smollm2-135m").heads == ((7, 3),)


def test_no_default_heads_is_an_error_never_every_head(tmp_path):
    """A model with no paper set and no detected head file: one line naming detect and '--heads full'."""
    pattern = (r"^no --heads given and no known QRHeads for (model \S+|this model) \(30 layers x 9 heads\): "
               r"detect them with 'harness detect --model \S+ --task TASK --output heads.json' and pass "
               r"'--heads heads.json', or pass '--heads full'")
    for alias in (None, "some/model", str(tmp_path / "folder")):
        with pytest.raises(HarnessError, match=pattern) as err:
            resolve_heads(None, SMOL, alias=alias)
        assert "\n" not in str(err.value)
    assert len(resolve_heads("full", SMOL).heads) == 270  # the explicit spelling of every head
