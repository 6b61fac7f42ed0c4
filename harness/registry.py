"""Where names become classes: built-ins, entry points and ``package.module:Class`` references.

Built-ins are lazy ``"module:Class"`` strings, so ``import harness`` never imports torch.
Third-party packages register under the entry-point groups ``harness.retrievers`` and
``harness.tasks``::

    [project.entry-points."harness.retrievers"]
    my-retriever = "mypkg.retriever:MyRetriever"

A name registered twice (by two packages, or by a package and a built-in) is an error. A broken
entry point is logged as a warning and skipped until someone asks for it by name.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, unknown_name
from harness.types import Retriever, Task

log = logging.getLogger(__name__)

BUILTIN_RETRIEVERS: dict[str, str] = {
    "bm25": "harness.retrievers.bm25:BM25Retriever",
    "dense": "harness.retrievers.dense:DenseRetriever",
    "cross-encoder": "harness.retrievers.cross_encoder:CrossEncoderRetriever",
    "rankgpt": "harness.retrievers.rankgpt:RankGPTRetriever",
    "qr": "harness.retrievers.qr:QRRetriever",
    "icr": "harness.retrievers.qr:ICRRetriever",
}

#: Task families: the part of a task id before the first ``/``.
BUILTIN_TASKS: dict[str, str] = {
    "beir": "harness.tasks.beir:BeirTask",
    "cranfield": "harness.tasks.classic:CranfieldTask",
    "cacm": "harness.tasks.classic:CacmTask",
    "niah": "harness.tasks.niah:NiahTask",
    "icr-json": "harness.tasks.icr_json:IcrJsonTask",
    "longmemeval": "harness.tasks.longmemeval:LongMemEvalTask",
    "clipper": "harness.tasks.clipper:ClipperTask",
    "hotpotqa": "harness.tasks.multihop:HotpotQATask",
    "musique": "harness.tasks.multihop:MusiqueTask",
    "2wikimultihopqa": "harness.tasks.multihop:TwoWikiTask",
    "irds": "harness.tasks.irds:IrdsTask",
}

#: Families whose ids follow a ``:`` (``irds:beir/scifact/test``): the rest is a foreign id that
#: holds ``/`` of its own, and ``irds:cranfield`` is not a ``module:Class`` reference.
COLON_FAMILIES: frozenset[str] = frozenset({"irds"})

GROUPS = {"retriever": "harness.retrievers", "task": "harness.tasks"}


#: Top-level names the built-in plug-ins had before they moved under ``harness.``; a
#: ``module:Class`` reference that uses them still works.
_OLD_TOP_LEVEL = ("tasks.", "retrievers.")


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def _load_reference(ref: str, what: str) -> Any:
    module_name, _, attr = ref.partition(":")
    if module_name.startswith(_OLD_TOP_LEVEL) and _module_exists(f"harness.{module_name}"):
        module_name = f"harness.{module_name}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HarnessError(f"cannot import {what} {ref!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise HarnessError(f"{what} {ref!r}: module {module_name!r} has no attribute {attr!r}") from None


def available(kind: str) -> dict[str, str]:
    """All registered names of ``kind`` ("retriever" or "task") and what they point to.

    Raises :class:`HarnessError` when two sources register the same name.
    """
    builtins = BUILTIN_RETRIEVERS if kind == "retriever" else BUILTIN_TASKS
    names: dict[str, str] = dict(builtins)
    origin = {name: "built-in" for name in names}
    for ep in entry_points(group=GROUPS[kind]):
        dist = getattr(ep.dist, "name", "?") if getattr(ep, "dist", None) else "?"
        if ep.name in names:
            if names[ep.name] == ep.value:  # the same package seen twice on sys.path
                continue
            raise HarnessError(
                f"{kind} name {ep.name!r} is registered twice: by {origin[ep.name]} ({names[ep.name]}) "
                f"and by package {dist} ({ep.value})"
            )
        names[ep.name] = ep.value
        origin[ep.name] = f"package {dist}"
    return names


def _resolve(kind: str, name: str) -> Any:
    if ":" in name and "/" not in name.split(":")[0]:
        return _load_reference(name, kind)
    names = available(kind)
    if name not in names:
        raise unknown_name(kind, name, names)
    return _load_reference(names[name], kind)


def retriever_class(name: str) -> type[Retriever]:
    """The retriever class registered as ``name``, or named ``package.module:Class``."""
    cls = _resolve("retriever", name)
    if not (isinstance(cls, type) and issubclass(cls, Retriever)):
        raise HarnessError(f"retriever {name!r} is not a harness.types.Retriever subclass")
    return cls


def split_task_id(task_id: str) -> tuple[str, str | None]:
    """``"beir/scifact"`` -> ``("beir", "scifact")``; ``"niah"`` -> ``("niah", None)``;
    ``"irds:beir/scifact/test"`` -> ``("irds", "beir/scifact/test")`` (see :data:`COLON_FAMILIES`)."""
    head, colon, rest = task_id.partition(":")
    if colon and head in COLON_FAMILIES:
        return head, (rest or None)
    family, _, rest = task_id.partition("/")
    return family, (rest or None)


def make_task(task_id: str, data: str | None = None, **params: Any) -> Task:
    """Build the task for ``task_id``.

    ``task_id`` is a registered id (``beir/scifact``, ``niah``), a ``package.module:Class``
    reference, or a path to a local BEIR-format folder (``corpus.jsonl``, ``queries.jsonl``,
    ``qrels/test.tsv``).
    """
    if os.path.isdir(task_id):
        # A local BEIR-format folder: the "beir" family, named by its string like every built-in.
        folder_task = _load_reference(BUILTIN_TASKS["beir"], "task")
        return folder_task(name=Path(task_id).resolve().name, data=task_id, **params)
    head = task_id.split(":")[0]
    if ":" in task_id and "/" not in head and head not in COLON_FAMILIES:
        cls = _load_reference(task_id, "task")
        name = None
    else:
        family, name = split_task_id(task_id)
        names = available("task")
        if family not in names:
            if os.sep in task_id or task_id.startswith("."):
                raise HarnessError(f"task {task_id!r}: no such folder")
            raise unknown_name("task", task_id, _all_task_ids(names))
        cls = _load_reference(names[family], "task")
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise HarnessError(f"task {task_id!r} is not a harness.types.Task subclass")
    known = getattr(cls, "names", None)
    if known and name is not None and name not in known and data is None:
        raise unknown_name("task", task_id, [f"{cls.family}/{n}" for n in known])
    return cls(name=name, data=data, **params)


def registered_task(task_id: str) -> bool:
    """True when ``task_id`` names a registered task family (built-in or installed entry point),
    not a ``module:Class`` reference or a folder: what a file may name without running code."""
    head = task_id.split(":")[0]
    if ":" in task_id and "/" not in head and head not in COLON_FAMILIES:
        return False
    return split_task_id(task_id)[0] in available("task")


def _all_task_ids(names: dict[str, str]) -> list[str]:
    ids = list(names)
    for family, ref in names.items():
        try:
            cls = _load_reference(ref, "task")
        except HarnessError:
            continue
        ids.extend(f"{family}/{n}" for n in getattr(cls, "names", ()) or ())
    return ids


def task_class_of(task_id: str) -> type[Task]:
    """The task class of ``task_id``'s family, or the base :class:`Task` when the family is not
    registered here (e.g. a plug-in that is not installed): its declarations are the defaults."""
    family, _ = split_task_id(task_id)
    ref = available("task").get(family)
    if ref is None:
        return Task
    try:
        cls = _load_reference(ref, "task")
    except HarnessError:
        return Task
    return cls if isinstance(cls, type) and issubclass(cls, Task) else Task


def task_main_metric(task_id: str) -> str:
    """The main metric declared by the task class of ``task_id``'s family."""
    return str(task_class_of(task_id).main_metric)


def task_variant_note(task_id: str, provenance: dict[str, Any]) -> str | None:
    """:meth:`Task.variant_note` of the task class of ``task_id``'s family."""
    return task_class_of(task_id).variant_note(provenance)


def task_ids() -> list[str]:
    """Every task id that ``harness list tasks`` shows."""
    return sorted(_all_task_ids(available("task")))
