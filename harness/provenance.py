"""Where a result came from: versions, git commit, device, date; the machine a benchmark ran on."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The harness checkout's commit, with ``+dirty`` when tracked files outside ``results/`` are modified.

    ``results/`` holds what runs write, not code: a result written by one run must not make the next
    run's code look uncommitted."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".",
             ":(exclude)results"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def is_dirty(commit: str | None) -> bool:
    """Whether a :func:`git_commit` reading says the code had uncommitted changes."""
    return str(commit or "").endswith("+dirty")


def refuse_uncommitted(commit: str | None, allow_dirty: bool) -> None:
    """Refuse to write a result from uncommitted code unless ``allow_dirty`` (``--allow-dirty``)
    or ``$HARNESS_ALLOW_DIRTY`` says so; the result then records ``allow_dirty: true``."""
    allowed = allow_dirty or os.environ.get("HARNESS_ALLOW_DIRTY", "").strip().lower() in ("1", "true", "yes", "on")
    if is_dirty(commit) and not allowed:
        from harness.errors import HarnessError

        raise HarnessError("the harness checkout has uncommitted changes: a result must come from committed code. "
                           "Commit first, or pass --allow-dirty (recorded in the result)")


def result_environment(commit: str | None, command: str | None) -> dict[str, Any]:
    """The ``environment`` of a result file: :func:`environment` at the reading ``commit``, the
    command line, and ``allow_dirty: true`` when that reading says the code was uncommitted."""
    return {**environment(commit), "command": command, **({"allow_dirty": True} if is_dirty(commit) else {})}


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what :mod:`platform` says, else ``"unknown"``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name() -> str:
    """``cuda:<GPU name>`` when torch sees a GPU (and is already imported), else the CPU model."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return "cpu:" + cpu_model()


def environment(commit: str | None = None) -> dict[str, Any]:
    """Versions and machine, recorded in every result file; ``commit`` is a reading of
    :func:`git_commit` taken earlier (a run takes one before it scores), else one is taken now."""
    from harness import __version__

    return {
        "harness": __version__,
        "git_commit": commit or git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device_name(),
        "packages": {
            name: package_version(name)
            for name in ("torch", "transformers", "sentence-transformers", "bm25s", "pytrec-eval-terrier", "numpy", "vllm")
            if package_version(name)
        },
    }


def memory_gib() -> float | None:
    """Total physical memory in GiB (one decimal), ``None`` where the platform does not say."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, OSError, ValueError):
        return None


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (rounded), ``None`` where the platform has none."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _torch_facts(device: str | None) -> dict[str, Any]:
    """``gpu``, ``gpu_memory_gib``, ``gpu_count`` and ``torch_threads`` of :func:`machine`."""
    try:
        import torch
    except ImportError:
        return {"gpu": None, "gpu_memory_gib": None, "gpu_count": 0, "torch_threads": None}
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    out: dict[str, Any] = {"gpu": None, "gpu_memory_gib": None, "gpu_count": count}
    if count and device is not None and device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        out.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1))
    out["torch_threads"] = torch.get_num_threads()
    return out


def machine(device: str | None = None, packages: Sequence[str] = ()) -> dict[str, Any]:
    """The machine a benchmark runs on, one description for every ``harness bench`` target.

    Keys: ``cpu`` (model name), ``cores`` (logical), ``memory_gib`` (RAM), ``gpu`` and
    ``gpu_memory_gib`` (the CUDA GPU that ``device`` names, else ``None``; the CUDA context is not
    touched for other devices), ``gpu_count`` (visible CUDA GPUs), ``torch_threads`` (torch's CPU
    threads now), ``platform``, ``python``, ``versions`` (installed versions of torch, transformers
    and ``packages``, by distribution name) and ``load_average_at_start`` (1, 5, 15 min; a
    benchmark adds ``load_average_at_end``). Call it before the work, so the load average says
    how busy the machine was.
    """
    names = dict.fromkeys(("torch", "transformers", *packages))
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        **_torch_facts(device),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: version for name in names if (version := package_version(name))},
        "load_average_at_start": load_average(),
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
