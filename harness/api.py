"""The Python API: ``from harness import evaluate, load_task, load_retriever, Result``.

Three functions over the same machinery as ``harness run`` (see ``docs/API.md``):

- :func:`evaluate` runs one (task, retriever) cell, as ``harness run`` does, and returns its
  :class:`~harness.results.Result`. Unlike ``harness run`` it writes nothing unless told where:
  ``output="x.json"`` (that file) or ``results_root="results"`` (the default file name under that
  folder, as the command line writes it).
- :func:`load_task` returns a :class:`~harness.types.Task` (call ``.load()`` for its
  :class:`~harness.types.TaskData`: queries, qrels, corpus or instances).
- :func:`load_retriever` returns a ready :class:`~harness.types.Retriever`, usable on its own:
  ``load_retriever("bm25").score(instances)`` or ``.search(corpus, queries, k)``.

Names are those of the command line: registered ids (``cranfield``, ``beir/scifact``, ``bm25``,
``qr``), entry points of installed plug-ins, ``package.module:Class`` references, or a BEIR-format
folder for a task. Mistakes raise :class:`~harness.errors.HarnessError` with a one-line message.
This module imports the runner (and through it the retrievers, torch included) only when a
function is called, so ``import harness`` stays cheap.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.results import Result
    from harness.types import Retriever, Task

__all__ = ["evaluate", "load_retriever", "load_task"]

#: ``evaluate`` options that say where to write; without one of them nothing is written.
_WHERE = ("output", "results_root")


def _run_options() -> list[str]:
    from harness.runner import RunConfig

    return [f.name for f in dataclasses.fields(RunConfig) if f.name not in ("task", "retriever")]


def evaluate(task: str, retriever: str, **options: Any) -> Result:
    """Evaluate ``retriever`` on ``task`` and return the :class:`~harness.results.Result`.

    ``options`` are the fields of :class:`harness.runner.RunConfig`, the keyword spelling of
    ``harness run``'s flags: ``model``, ``data``, ``retriever_params`` (``--set``),
    ``task_params`` (``--task-set``), ``first_stage``, ``depth``, ``max_queries``, ``seed``,
    ``truncate_words``, ``exclude_queries``, ``generate``/``generator``/``judge``/``top_k``...,
    ``show_progress``, and ``output``, ``results_root``, ``save_run``, ``run_depth``, ``allow_dirty``, ``shard``.

    Nothing is written unless ``output=`` (a result file path) or ``results_root=`` (a folder for
    the default file name) is given; ``save_run=`` (a TREC run) is written with the result file,
    so it needs one of them. A result file from a checkout with uncommitted changes needs
    ``allow_dirty=True``, as on the command line; a result only returned does not. Caches
    (first-stage runs, resume files, generations) are used as by the command line, under
    ``$HARNESS_CACHE``.

    >>> evaluate("cranfield", "bm25", k1=1.2)
    Traceback (most recent call last):
    ...
    harness.errors.HarnessError: unknown option of evaluate 'k1' (retriever parameters go in retriever_params={...}, ...
    """
    from harness.params import check_names
    from harness.runner import RunConfig, execute

    try:
        check_names("option of evaluate", options, _run_options())
    except HarnessError as exc:
        raise HarnessError(f"{exc} (retriever parameters go in retriever_params={{...}}, "
                           "task parameters in task_params={...})") from None
    write = any(options.get(name) is not None for name in _WHERE)
    if options.get("save_run") and not write:
        raise HarnessError("evaluate: save_run= is written beside the result file; give output= or results_root= too")
    result, _ = execute(RunConfig(task=task, retriever=retriever, **options), write=write)
    return result


def load_task(id: str, data: str | None = None, **params: Any) -> Task:
    """The task ``id`` (``"cranfield"``, ``"beir/scifact"``, ``"niah"``, a BEIR folder, ``pkg.mod:Class``).

    ``data`` points a registered task at local files in their original format (``--data``);
    ``params`` are the task's parameters (``--task-set``), checked against its declaration.
    The task is not loaded yet: ``load_task("cranfield").load()`` reads the collection.
    """
    from harness.registry import make_task

    return make_task(id, data=data, **params)


def load_retriever(name: str, model: str | None = None, **params: Any) -> Retriever:
    """The retriever ``name`` (``"bm25"``, ``"dense"``, ``"qr"``, ``pkg.mod:Class``), built as
    ``harness run`` builds it: ``model`` is ``--model``, ``params`` are its constructor's
    parameters (``--set``), checked against it (a misspelt name suggests the closest one).

    >>> load_retriever("bm25", k=1)
    Traceback (most recent call last):
    ...
    harness.errors.HarnessError: unknown parameter of retriever 'bm25' 'k'; did you mean 'k1'? ...
    """
    from harness.runner import build_retriever

    return build_retriever(name, model, params)
