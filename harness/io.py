"""File helpers: atomic writes, line-checked JSON/JSONL/YAML reading, hashing, the cache directory."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

log = logging.getLogger(__name__)


_warned_read_only: set[Path] = set()
_fallback_cache: Path | None = None


def cache_dir(*parts: str) -> Path:
    """The harness cache folder (``$HARNESS_CACHE`` or ``~/.cache/harness``), created on demand.

    When it cannot be written (a read-only folder or file system), caching is off: a warning
    is logged once and a temporary folder that is removed at exit stands in for it.
    """
    root = Path(os.environ.get("HARNESS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "harness")
    path = root.joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
        return path
    except OSError as exc:
        if root not in _warned_read_only:
            _warned_read_only.add(root)
            log.warning("cache folder %s is not writable (%s); caching is off for this run", root, exc.strerror or exc)
        return _temporary_cache().joinpath(*parts)


def _temporary_cache() -> Path:
    global _fallback_cache
    if _fallback_cache is None:
        import atexit
        import shutil

        _fallback_cache = Path(tempfile.mkdtemp(prefix="harness-cache-"))
        atexit.register(shutil.rmtree, _fallback_cache, True)
    _fallback_cache.mkdir(parents=True, exist_ok=True)
    return _fallback_cache


#: Temporary files of an atomic write older than this are left-overs of a killed process.
ORPHAN_SECONDS = 600


def _remove_orphans(path: Path) -> None:
    """Delete ``.{name}.*.tmp`` files beside ``path`` that a killed writer left behind."""
    now = time.time()
    for tmp in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > ORPHAN_SECONDS:
                tmp.unlink()
                log.info("removed %s, left by an interrupted write", tmp)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, LF line endings kept) to ``path`` atomically (:func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file under this process's umask (``0o644`` under ``022``)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


#: Read once: ``os.umask`` can only be read by setting it.
NEW_FILE_MODE = _new_file_mode()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half-written).

    The file gets the permissions a plain ``open(path, "w")`` would give it: those of the file it
    replaces, or ``0o666`` less the umask (not the ``0o600`` of a temporary file)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(path)
        mode = path.stat().st_mode & 0o7777 if path.is_file() else NEW_FILE_MODE
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise HarnessError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_png(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Save a matplotlib figure as a PNG, atomically and byte-for-byte reproducibly (no
    ``Software`` tag: the same figure gives the same bytes)."""
    import io as _io

    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())


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


def decode_utf8(data: bytes, where: str | os.PathLike[str]) -> str:
    """Strict UTF-8 (a leading BOM is dropped); undecodable bytes are an error naming the line
    and byte offset, never silently replaced.

    >>> decode_utf8(b"ok\\n", "f.tsv")
    'ok\\n'
    >>> decode_utf8(b"a\\nb\\xff", "f.tsv")
    Traceback (most recent call last):
    ...
    harness.errors.HarnessError: f.tsv:2: not valid UTF-8 (byte 0xff at offset 3)
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise HarnessError(
            f"{where}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def read_text(path: str | os.PathLike[str]) -> str:
    """Read a text file as strict UTF-8 (:func:`decode_utf8`), normalising CRLF and CR line endings to LF."""
    try:
        data = decode_utf8(Path(path).read_bytes(), path)
    except FileNotFoundError:
        raise HarnessError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise HarnessError(f"{path}: is a folder, expected a file") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return data.replace("\r\n", "\n").replace("\r", "\n")


#: Relevance grades are integers in this range (TREC uses -2..4, BEIR 0..2; anything far outside
#: is a corrupt file, not a judgement).
GRADE_RANGE = (-1000, 1000)


def parse_grade(value: Any, where: str) -> int:
    """A relevance grade: an integer (``"2"``, ``"2.0"``, ``2``) in :data:`GRADE_RANGE`;
    anything else is a one-line error naming ``where`` (file and line, or hub row).

    >>> parse_grade("2", "q.tsv:3"), parse_grade("1.0", "q.tsv:4"), parse_grade(-1, "row 0")
    (2, 1, -1)
    >>> parse_grade("1e308", "q.tsv:5")
    Traceback (most recent call last):
    ...
    harness.errors.HarnessError: q.tsv:5: relevance grade 1e308 is outside -1000..1000
    """
    if isinstance(value, bool):
        raise HarnessError(f"{where}: relevance grade must be an integer, got {value!r}")
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        raise HarnessError(f"{where}: relevance grade must be an integer, got {text!r}") from None
    spelled_infinite = text.lower().lstrip("+-") in ("nan", "inf", "infinity")
    if spelled_infinite or (math.isfinite(number) and not number.is_integer()):
        raise HarnessError(f"{where}: relevance grade must be an integer, got {text!r}")
    low, high = GRADE_RANGE
    if not math.isfinite(number) or not low <= number <= high:
        raise HarnessError(f"{where}: relevance grade {text} is outside {low}..{high}")
    return int(number)


def loads(text: str, where: str | os.PathLike[str], invalid: str = "malformed JSON") -> Any:
    """``json.loads`` whose failures (syntax, nesting too deep) are one-line errors naming ``where``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{where}:{exc.lineno}: {invalid} ({exc.msg})") from None
    except RecursionError:
        raise HarnessError(f"{where}: {invalid} (nested too deeply)") from None


def read_json(path: str | os.PathLike[str], invalid: str = "malformed JSON") -> Any:
    """Parse a JSON file (read as :func:`read_text`); a syntax error is ``{path}:{line}: {invalid} (why)``."""
    return loads(read_text(path), path, invalid)


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
        except RecursionError:
            raise HarnessError(f"{path}:{number}: malformed JSON (nested too deeply)") from None
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


def seal(key: str, content: Any) -> str:
    """The checksum a cache or resume entry carries: :func:`sha256_json` of its key and content,
    so an edited entry, or one copied under another key, is detected and recomputed."""
    return sha256_json({"key": key, "content": content})
