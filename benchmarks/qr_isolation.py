"""How ``harness bench qr`` keeps its measurements apart: the memory probes and the worker process.

- ``--isolate process`` (the CPU default): :func:`run_isolated` runs each measurement in a fresh
  Python process (``python -m harness.benchmarks.qr_isolation --worker SPEC``), whose peak RSS
  (:func:`ru_maxrss_mib`) then belongs to that one method.
- ``--isolate none``: the measurement runs in this process; on the CPU a sampling thread
  (:class:`RssSampler`) follows the RSS while the method runs.

A worker that crashes, is killed or times out becomes an ``{"error": ...}`` cell, never an exception.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

REPO = Path(__file__).resolve().parents[1]


def rss_mib() -> float | None:
    """This process's resident memory now, from ``/proc/self/statm`` (``None`` where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def ru_maxrss_mib() -> float:
    """This process's peak resident memory so far (``getrusage``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class RssSampler:
    """Peak of the process RSS sampled every ``interval`` seconds while the block runs."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib() or 0.0)
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:  # noqa: PYI034
        self.peak = rss_mib() or 0.0
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib() or 0.0)


def run_isolated(spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """:func:`worker` in a fresh Python process (honest peak RSS); a crash becomes ``{"error": ...}``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("DISABLE_TQDM", "1")
    cmd = [sys.executable, "-m", "harness.benchmarks.qr_isolation", "--worker", json.dumps({**spec, "isolated": True})]
    try:
        proc = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    if proc.returncode == 0:
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if lines:
            return json.loads(lines[-1])
    if proc.returncode < 0:
        signal = -proc.returncode
        return {"error": f"worker killed by signal {signal}" + (" (out of memory?)" if signal == 9 else "")}
    tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    reason = tail[-1] if tail else f"exit status {proc.returncode}"
    return {"error": reason.removeprefix("error: ")[:300]}


def _worker_main(argv: list[str]) -> int:
    """``python -m harness.benchmarks.qr_isolation --worker SPEC``: one isolated measurement for :func:`run_isolated`,
    its JSON on stdout; a failure is one ``error: ...`` line on stderr (``harness bench qr`` is the CLI)."""
    from harness.benchmarks.qr_measure import worker

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if argv[:1] != ["--worker"] or len(argv) != 2:
            raise HarnessError(
                "usage: python -m harness.benchmarks.qr_isolation --worker SPEC (run the benchmark with: harness bench qr)"
            )
        sys.stdout.write(json.dumps(worker(json.loads(argv[1]))) + "\n")
        return 0
    except HarnessError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(_worker_main(sys.argv[1:]))
