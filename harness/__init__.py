"""Benchmark harness and leaderboard for retrievers.

``import harness`` is cheap: it re-exports the data model only; torch, transformers and the
retrievers load when first used.
"""

from harness.types import Document, Instance, Qrels, Query, Retriever, Run, Task, TaskData

__version__ = "0.1.0"

__all__ = ["Document", "Instance", "Qrels", "Query", "Retriever", "Run", "Task", "TaskData", "__version__"]
