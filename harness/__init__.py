"""Benchmark harness and leaderboard for retrievers.

``import harness`` is cheap: it re-exports the data model only; torch, transformers and the
retrievers load when first used. The Python API (``docs/API.md``) loads on first access::

    from harness import evaluate, load_task, load_retriever, Result
    evaluate(task="cranfield", retriever="bm25").metrics["nDCG@10"]   # 0.3516
"""

from typing import Any

from harness.types import Document, Instance, Qrels, Query, Retriever, Run, Task, TaskData

__version__ = "0.1.0"

#: Names loaded on first access (module attribute ``__getattr__``), so that importing the package
#: imports neither the runner nor numpy.
_LAZY = {
    "evaluate": "harness.api",
    "load_task": "harness.api",
    "load_retriever": "harness.api",
    "Result": "harness.results",
}

__all__ = [
    "Document", "Instance", "Qrels", "Query", "Result", "Retriever", "Run", "Task", "TaskData", "__version__",
    "evaluate", "load_retriever", "load_task",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
