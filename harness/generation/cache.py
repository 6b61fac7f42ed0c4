"""On-disk cache of generations, keyed by a hash of everything that determines the output.

One SQLite file under ``harness.io.cache_dir("generations")``. Each finished item is committed
on its own, so an interrupted run (Ctrl-C, a crash, a killed job) keeps every generation that
completed and a re-run only pays for the rest. Failures are never cached.

The key is :func:`cache_key`: SHA-256 of the canonical JSON of
``{backend, model, revision, sampling, messages}``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import cache_dir, sha256_json


def cache_key(identity: dict[str, Any], sampling: dict[str, Any], messages: Sequence[dict[str, str]]) -> str:
    """Hex SHA-256 of (backend, model, revision) ``identity``, ``sampling`` params and ``messages``."""
    return sha256_json({"identity": identity, "sampling": sampling, "messages": list(messages)})


class GenerationCache:
    """A key -> (text, finish_reason) store, safe across threads and processes."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir("generations") / "generations.sqlite"
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            with self._conn:
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
                    "finish_reason TEXT, created REAL NOT NULL)"
                )
        except sqlite3.Error as exc:
            raise HarnessError(f"{self.path}: cannot open the generation cache ({exc})") from None

    def get(self, key: str) -> tuple[str, str | None] | None:
        with self._lock:
            row = self._conn.execute("SELECT text, finish_reason FROM generations WHERE key = ?", (key,)).fetchone()
        return (row[0], row[1]) if row else None

    def put(self, key: str, text: str, finish_reason: str | None = None) -> None:
        """Store one item and commit at once (durable before the next item starts)."""
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO generations (key, text, finish_reason, created) VALUES (?, ?, ?, ?)",
                (key, text, finish_reason, time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
