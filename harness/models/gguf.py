"""GGUF files: read their metadata, verify chunked copies, dequantise one into a transformers folder.

:func:`read_gguf_metadata` reads the key/value header without the tensors;
:func:`assemble_chunks` concatenates byte chunks and checks their SHA-256; the private
``_dequantise_and_save`` loads a GGUF with transformers (needs ``gguf``), checks it against the
file's own metadata (layers, heads, KV heads; chat template and BOS behaviour of the tokenizer)
and saves model + tokenizer with a :data:`MANIFEST`. Caching the converted folder (naming,
locking, atomic rename) is :func:`harness.models.resolve.convert_gguf`'s job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from harness.errors import HarnessError
from harness.io import atomic_write_json
from harness.models.aliases import ExpectedShape
from harness.progress import progress_disabled_by_env, silence_library_progress

logger = logging.getLogger(__name__)

MANIFEST = "harness_model.json"  # written last into a converted folder; its presence marks it complete
CONVERSION_FORMAT = 1  # bump when the converted folder's layout or checks change


# ---------------------------------------------------------------------------------------------
# GGUF files: metadata, chunk assembly
# ---------------------------------------------------------------------------------------------

_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_MAX_ARRAY_KEPT = 256  # token lists, merges, scores are skipped, not read into memory


def read_gguf_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The key/value metadata of a GGUF file (v2/v3), without its tensors.

    Arrays longer than 256 items (the vocabulary, merges, scores) are skipped and not returned.
    Much faster than ``gguf.GGUFReader``, which materialises every array.

    >>> read_gguf_metadata("SmolLM2-135M-Instruct.Q4_1.gguf")["llama.block_count"]  # doctest: +SKIP
    30
    """

    def read(handle: BinaryIO, size: int) -> bytes:
        data = handle.read(size)
        if len(data) != size:
            raise HarnessError(f"{path}: truncated GGUF header")
        return data

    def read_string(handle: BinaryIO) -> str:
        (length,) = struct.unpack("<Q", read(handle, 8))
        return read(handle, length).decode("utf-8", errors="replace")

    def read_value(handle: BinaryIO, kind: int) -> Any:
        if kind in _GGUF_SCALARS:
            fmt = _GGUF_SCALARS[kind]
            return struct.unpack(fmt, read(handle, struct.calcsize(fmt)))[0]
        if kind == _GGUF_STRING:
            return read_string(handle)
        if kind == _GGUF_ARRAY:
            item_kind, count = struct.unpack("<IQ", read(handle, 12))
            if count > _MAX_ARRAY_KEPT:
                if item_kind in _GGUF_SCALARS:
                    handle.seek(count * struct.calcsize(_GGUF_SCALARS[item_kind]), os.SEEK_CUR)
                elif item_kind == _GGUF_STRING:
                    for _ in range(count):
                        (length,) = struct.unpack("<Q", read(handle, 8))
                        handle.seek(length, os.SEEK_CUR)
                else:
                    for _ in range(count):
                        read_value(handle, item_kind)
                return None
            return [read_value(handle, item_kind) for _ in range(count)]
        raise HarnessError(f"{path}: unknown GGUF value type {kind}")

    try:
        with open(path, "rb") as handle:
            if read(handle, 4) != b"GGUF":
                raise HarnessError(f"{path}: not a GGUF file (bad magic)")
            (version,) = struct.unpack("<I", read(handle, 4))
            if version not in (2, 3):
                raise HarnessError(f"{path}: unsupported GGUF version {version} (need 2 or 3, little-endian)")
            _tensor_count, kv_count = struct.unpack("<QQ", read(handle, 16))
            metadata: dict[str, Any] = {}
            for _ in range(kv_count):
                key = read_string(handle)
                (kind,) = struct.unpack("<I", read(handle, 4))
                value = read_value(handle, kind)
                if value is not None:
                    metadata[key] = value
            return metadata
    except FileNotFoundError:
        raise HarnessError(f"{path}: file not found") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read ({exc.strerror or exc})") from None


def assemble_chunks(chunks: Sequence[Path], expected_sha256: str, dest: Path, *, label: str, hint: str = "") -> None:
    """Concatenate ``chunks`` in order into ``dest`` and verify the SHA-256 of the result.

    A mismatch (a corrupted or missing chunk) removes ``dest`` and raises a one-line error.
    """
    digest = hashlib.sha256()
    try:
        with open(dest, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise HarnessError(f"{label}: cannot assemble GGUF chunks into {dest} ({exc.strerror or exc})") from None
    _check_sha(
        digest.hexdigest(), expected_sha256, label=label, hint=hint, on_mismatch=lambda: dest.unlink(missing_ok=True)
    )


def _check_sha(
    actual: str, expected: str, *, label: str, hint: str, on_mismatch: Callable[[], None] = lambda: None
) -> None:
    if actual != expected:
        on_mismatch()
        suffix = f"; {hint}" if hint else ""
        raise HarnessError(
            f"{label}: sha256 mismatch (got {actual}, expected {expected}); the file is corrupted or truncated{suffix}"
        )


# ---------------------------------------------------------------------------------------------
# GGUF -> transformers folder
# ---------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _respect_disable_tqdm() -> None:
    """When bars are hidden (``DISABLE_TQDM``), hide those of transformers and the hub client too."""
    if progress_disabled_by_env():
        silence_library_progress()


def _shape_from_metadata(metadata: dict[str, Any]) -> dict[str, int]:
    arch = metadata.get("general.architecture")
    heads = metadata.get(f"{arch}.attention.head_count")
    return {
        "num_hidden_layers": metadata.get(f"{arch}.block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": metadata.get(f"{arch}.attention.head_count_kv", heads),
    }


def _check_shape(model: Any, metadata: dict[str, Any], expected: ExpectedShape | None, *, label: str) -> None:
    """The converted model must agree with the GGUF metadata and, for aliases, the documented shape."""
    config = model.config
    wanted: dict[str, Any] = {k: v for k, v in _shape_from_metadata(metadata).items() if isinstance(v, int)}
    if expected is not None:
        wanted.update(dataclasses.asdict(expected))
    actual = {
        "architecture": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "num_hidden_layers": getattr(config, "num_hidden_layers", None),
        "num_attention_heads": getattr(config, "num_attention_heads", None),
        "num_key_value_heads": getattr(config, "num_key_value_heads", None)
        or getattr(config, "num_attention_heads", None),
    }
    wrong = [f"{key}={actual[key]!r} (expected {value!r})" for key, value in wanted.items() if actual[key] != value]
    if wrong:
        raise HarnessError(f"{label}: converted model has the wrong shape: {', '.join(wrong)}")


def _fix_tokenizer(tokenizer: Any, metadata: dict[str, Any], *, label: str) -> dict[str, Any]:
    """Restore what transformers' GGUF tokenizer conversion may lose; return a summary for the manifest."""
    template = metadata.get("tokenizer.chat_template")
    if isinstance(template, str) and template and not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = template
        logger.info("%s: chat template recovered from the GGUF metadata", label)
    # transformers 4.x's GGUF Llama converter swaps BOS and EOS (SmolLM2 gets eos <|im_start|>) and drops PAD
    for role, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("pad", "padding_token_id")):
        token_id = metadata.get(f"tokenizer.ggml.{key}")
        wrong = getattr(tokenizer, f"{role}_token_id") != token_id
        if isinstance(token_id, int) and 0 <= token_id < len(tokenizer) and wrong:
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
            logger.info("%s: %s token restored from the GGUF metadata (id %d)", label, role, token_id)
    want_bos = metadata.get("tokenizer.ggml.add_bos_token")
    bos_id = tokenizer.bos_token_id

    def adds_bos() -> bool:
        ids = tokenizer("a")["input_ids"]
        return bool(ids) and bos_id is not None and ids[0] == bos_id

    if isinstance(want_bos, bool) and bos_id is not None and adds_bos() != want_bos:
        with contextlib.suppress(AttributeError, NotImplementedError, ValueError):
            tokenizer.add_bos_token = want_bos
        if adds_bos() != want_bos:
            logger.warning(
                "%s: tokenizer %s a BOS token but the GGUF says add_bos_token=%s",
                label,
                "adds" if adds_bos() else "does not add",
                want_bos,
            )
    chat = getattr(tokenizer, "chat_template", None)
    return {
        "class": type(tokenizer).__name__,
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "adds_bos": adds_bos(),
        "chat_template_sha256": hashlib.sha256(chat.encode()).hexdigest() if isinstance(chat, str) else None,
    }


@contextlib.contextmanager
def _quiet_gguf_progress() -> Iterator[None]:
    """transformers' GGUF dequantisation bar uses plain tqdm; silence it too when bars are hidden
    (:func:`harness.progress.progress_disabled_by_env`)."""
    module = None
    if progress_disabled_by_env():
        with contextlib.suppress(ImportError):
            import transformers.modeling_gguf_pytorch_utils as module
    original = getattr(module, "tqdm", None)
    if module is None or original is None:
        yield
        return
    module.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        module.tqdm = original


def _dequantise_and_save(
    gguf_path: Path, sha256: str, out: Path, *, label: str, expected: ExpectedShape | None
) -> None:
    """Load ``gguf_path`` with transformers (dequantised), check it, save model + tokenizer to ``out``."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _respect_disable_tqdm()
    started = time.perf_counter()
    metadata = read_gguf_metadata(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    kwargs: dict[str, Any] = {}
    gguf_config = getattr(transformers, "GgufConfig", None)
    if gguf_config is not None:  # transformers 5 may keep GGUF blocks packed; we want plain weights
        kwargs["quantization_config"] = gguf_config(dequantize=True)
    logger.info(
        "%s: converting GGUF %s (%s) to a transformers folder; this happens once",
        label,
        name,
        metadata.get("general.architecture"),
    )
    seconds: dict[str, float] = {}
    try:
        with _quiet_gguf_progress():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            seconds["tokenizer"] = time.perf_counter() - started
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **kwargs)
            seconds["model"] = time.perf_counter() - started - seconds["tokenizer"]
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise HarnessError(f"{label}: transformers cannot load this GGUF ({_first_line(exc)})") from None
    _check_shape(model, metadata, expected, label=label)
    tokenizer_summary = _fix_tokenizer(tokenizer, metadata, label=label)
    if any(type(m).__name__.startswith("Gguf") for m in model.modules()):
        raise HarnessError(f"{label}: transformers kept GGUF-packed layers; cannot save a plain folder")
    # The weights are dequantised now: save them as an ordinary checkpoint.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    for holder in (model.config, getattr(model, "generation_config", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    model.config.name_or_path = metadata.get("general.name") or name
    saving = time.perf_counter()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    seconds["save"] = time.perf_counter() - saving
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    if "quantization_config" in saved:
        raise HarnessError(f"{label}: converted config still names a quantization method")
    seconds["total"] = time.perf_counter() - started
    atomic_write_json(
        out / MANIFEST,
        {
            "format": CONVERSION_FORMAT,
            "gguf_file": name,
            "gguf_sha256": sha256,
            "gguf_size": gguf_path.stat().st_size,
            "gguf_name": metadata.get("general.name"),
            "architecture": saved.get("architectures", [None])[0],
            "model_type": saved.get("model_type"),
            **{k: saved.get(k) for k in ("num_hidden_layers", "num_attention_heads", "num_key_value_heads")},
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "tokenizer": tokenizer_summary,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "conversion_seconds": {k: round(v, 2) for k, v in seconds.items()},
        },
    )
    logger.info(
        "%s: converted in %.1fs (tokenizer %.1fs, model %.1fs, save %.1fs)",
        label, seconds["total"], seconds["tokenizer"], seconds["model"], seconds["save"],
    )  # fmt: skip
