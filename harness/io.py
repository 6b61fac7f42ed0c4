"""File helpers: atomic writes, line-checked JSON/JSONL/YAML reading, hashing, the cache directory."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def cache_dir(*parts: str) -> Path:
    """The harness cache folder (``$HARNESS_CACHE`` or ``~/.cache/harness``), created on demand."""
    root = Path(os.environ.get("HARNESS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "harness")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise HarnessError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def check_writable(path: str | os.PathLike[str]) -> None:
    """Fail early, before any work, when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{path}: cannot create folder {parent} ({exc.strerror or exc})") from None
    if path.is_dir():
        raise HarnessError(f"{path}: is a directory, expected a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise HarnessError(f"{path}: not writable")
    # Try for real: permission bits say nothing to root or on read-only and virtual file systems.
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
    except OSError as exc:
        raise HarnessError(f"{path}: not writable ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def read_text(path: str | os.PathLike[str]) -> str:
    """Read a text file as UTF-8, normalising CRLF and CR line endings to LF."""
    try:
        data = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise HarnessError(f"{path}: file not found") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return data.replace("\r\n", "\n").replace("\r", "\n")


def read_json(path: str | os.PathLike[str], invalid: str = "malformed JSON") -> Any:
    """Parse a JSON file (read as :func:`read_text`); a syntax error is ``{path}:{line}: {invalid} (why)``."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path}:{exc.lineno}: {invalid} ({exc.msg})") from None


def read_yaml(path: str | os.PathLike[str], missing: str = "file not found") -> Any:
    """Parse a YAML file; a missing file is ``{path}: {missing}``, a syntax error names the line."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: {missing}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise HarnessError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; bad lines name file and line."""
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise HarnessError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        yield number, obj


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex SHA-256 of the canonical JSON of ``obj`` (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()).hexdigest()
