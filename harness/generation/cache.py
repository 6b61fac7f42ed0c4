"""On-disk cache of generations, keyed by a hash of everything that determines the output.

One SQLite file under ``harness.io.cache_dir("generations")``. Each finished item is committed
on its own, so an interrupted run (Ctrl-C, a crash, a killed job) keeps every generation that
completed and a re-run only pays for the rest. Failures are never cached.

The key is :func:`cache_key`: SHA-256 of the canonical JSON of
``{backend, model, revision, sampling, messages}``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import cache_dir, seal, sha256_json

log = logging.getLogger(__name__)


def cache_key(identity: dict[str, Any], sampling: dict[str, Any], messages: Sequence[dict[str, str]]) -> str:
    """Hex SHA-256 of (backend, model, revision) ``identity``, ``sampling`` params and ``messages``."""
    return sha256_json({"identity": identity, "sampling": sampling, "messages": list(messages)})


_COLUMNS = ("key", "text", "finish_reason", "created", "sha256")
_SCHEMA = ("CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
           "finish_reason TEXT, created REAL NOT NULL, sha256 TEXT NOT NULL)")


class GenerationCache:
    """A key -> (text, finish_reason) store, safe across threads and processes.

    Each row carries a checksum of its key and content (:func:`harness.io.seal`): an edited row
    is a cache miss (logged), never an answer. A file that is not this cache (another schema,
    not SQLite at all) is moved aside with a warning and a fresh cache takes its place.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir("generations") / "generations.sqlite"
        self._lock = threading.Lock()
        try:
            self._conn = self._open()
        except sqlite3.Error as exc:
            raise HarnessError(f"{self.path}: cannot open the generation cache ({exc})") from None

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        try:
            with conn:
                conn.execute(_SCHEMA)
            columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(generations)"))
            if columns == _COLUMNS:
                return conn
            problem = f"unexpected columns {', '.join(columns)}"
        except sqlite3.DatabaseError as exc:
            problem = str(exc)
        conn.close()
        aside = self.path.with_name(f"{self.path.name}.unusable-{int(time.time())}")
        self.path.replace(aside)
        log.warning("%s is not a generation cache of this harness (%s); moved it to %s and started a new one",
                    self.path, problem, aside.name)
        conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        with conn:
            conn.execute(_SCHEMA)
        return conn

    def get(self, key: str) -> tuple[str, str | None] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT text, finish_reason, sha256 FROM generations WHERE key = ?", (key,)
            ).fetchone()
        if not row:
            return None
        if row[2] != seal(key, [row[0], row[1]]):
            log.warning("%s: the cached generation %s… fails its checksum (edited?); generating it again",
                        self.path, key[:12])
            return None
        return (row[0], row[1])

    def put(self, key: str, text: str, finish_reason: str | None = None) -> None:
        """Store one item and commit at once (durable before the next item starts)."""
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO generations (key, text, finish_reason, created, sha256) VALUES (?, ?, ?, ?, ?)",
                (key, text, finish_reason, time.time(), seal(key, [text, finish_reason])),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
