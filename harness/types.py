"""The data model shared by every part of the harness.

Small, typed and dependency-free: importing it never pulls in torch or numpy.

- :class:`Document` and :class:`Query` are the atoms.
- :class:`Instance` is one retrieval problem: a query, its candidate documents and the
  gold relevance labels (for BEIR the first-stage top-k, for NIAH the haystack chunks).
- A *run* is ``dict[query_id, dict[doc_id, score]]`` (TREC semantics: higher is better).
- :class:`Retriever` is the whole plug-in contract: ``score(instances)`` and, for full-corpus
  retrievers, ``search(corpus, queries, k)``.
- :class:`Task` loads :class:`TaskData`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from harness.metric_specs import MetricSpec

Run = dict[str, dict[str, float]]
"""TREC-style run: ``{query_id: {doc_id: score}}``, higher scores rank first."""

Qrels = dict[str, dict[str, int]]
"""Relevance judgements: ``{query_id: {doc_id: relevance}}``."""


@dataclass(frozen=True)
class Document:
    """A retrievable unit: a passage, a chapter, a conversation round, a haystack chunk."""

    id: str
    text: str
    title: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Query:
    """A query (question, claim, topic title)."""

    id: str
    text: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Instance:
    """One retrieval problem: rank ``candidates`` for ``query``.

    ``gold`` maps document ids to relevance (> 0 is relevant). ``answer`` holds the reference
    answer for tasks with downstream QA. ``candidates`` are in first-stage order (best first)
    where there is a first stage, otherwise in the task's natural order (chronological rounds,
    chapters in book order, haystack chunks in reading order).
    """

    query: Query
    candidates: list[Document]
    gold: dict[str, int] = field(default_factory=dict)
    answer: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskData:
    """Everything a task provides to the runner.

    A *corpus task* (BEIR, Cranfield, CACM) sets ``corpus``; its instances are built by a
    first-stage retriever. An *instance task* (NIAH, LongMemEval, CLIPPER, multi-hop, the
    QRHead/ICR JSON format) sets ``instances`` with their own candidates.
    """

    queries: list[Query]
    qrels: Qrels
    corpus: dict[str, Document] | None = None
    instances: list[Instance] | None = None
    metrics: tuple[str, ...] = ("nDCG@10", "R@100", "MRR@10", "MAP")
    ignore_identical_ids: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_instances(
        cls,
        instances: list[Instance],
        metrics: tuple[str, ...],
        provenance: dict[str, Any],
        ignore_identical_ids: bool = False,
    ) -> TaskData:
        """An instance task: the instances' queries, in order, and their gold as the qrels."""
        return cls(
            queries=[inst.query for inst in instances],
            qrels={inst.query.id: dict(inst.gold) for inst in instances},
            instances=instances,
            metrics=metrics,
            ignore_identical_ids=ignore_identical_ids,
            provenance=provenance,
        )


class Task(ABC):
    """A task family member, e.g. ``beir/scifact`` or ``niah``.

    Subclasses are constructed with the part of the id after the family (``"scifact"`` for
    ``beir/scifact``, ``None`` for ``niah``), the optional ``data`` path (local files in the
    original format instead of the hub) and keyword parameters, which must be among
    :attr:`parameters` (a misspelt name is an error that suggests the closest one).

    The class attributes below are the task's declared defaults; the runner reads them and
    nothing else (a ``None`` default means "no default": the command line or the harness decides).
    """

    family: ClassVar[str]
    #: Default metric names (ir_measures style) when the task does not override them.
    metrics: ClassVar[tuple[str, ...]] = ("nDCG@10", "R@100", "MRR@10", "MAP")
    #: Specs of metrics this task computes that are not built in (:mod:`harness.metric_specs`):
    #: declared here, they are bounds-checked, averaged and shown like the built-ins.
    metric_specs: ClassVar[tuple[MetricSpec, ...]] = ()
    #: The metric the leaderboard ranks this task's rows by; recorded in every result.
    main_metric: ClassVar[str] = "nDCG@10"
    #: Sub-dataset names (``beir/<name>``) this family knows, or empty when it has none.
    names: ClassVar[tuple[str, ...]] = ()
    #: Keyword parameters the task accepts (``--task-set key=value``).
    parameters: ClassVar[frozenset[str]] = frozenset()
    #: Defaults of parameters that change the data, recorded under the same names in the task's
    #: provenance: a run whose recorded value differs from the default is a variant of the task
    #: (:meth:`harness.spec.RunSpec.variant`). Parameters given without a declared default are
    #: recorded as given (``task.task_params``) and always make a variant.
    parameter_defaults: ClassVar[Mapping[str, Any]] = {}
    #: Re-ranking defaults for corpus tasks: first-stage depth and the per-document word cut.
    default_depth: ClassVar[int | None] = None
    default_truncate_words: ClassVar[int | None] = None
    #: Queries evaluated when ``--max-queries`` is not given (sampled with the run's seed); None = all.
    default_max_queries: ClassVar[int | None] = None
    #: Sampling unit when queries come in groups that must stay together (a key of ``Query.meta``,
    #: e.g. CLIPPER's ``pair_id``); None samples single queries.
    sample_group: ClassVar[str | None] = None
    #: Sampling seed when the run gives none.
    default_seed: ClassVar[int] = 42
    #: Default ``max_tokens`` of downstream generation (None: the generator's default).
    max_tokens: ClassVar[int | None] = None

    def __init__(self, name: str | None = None, data: str | None = None, **params: Any) -> None:
        from harness.params import check_names

        check_names(f"parameter of task {self.family!r}", params, self.parameters)
        self.name = name
        self.data = data
        self.params = params

    @property
    def id(self) -> str:
        return f"{self.family}/{self.name}" if self.name else self.family

    @classmethod
    def variant_note(cls, provenance: Mapping[str, Any]) -> str | None:
        """How the data a result ran on differs from this task's full, official data, in a few
        words (``"2 books"``), or None when it does not. The leaderboard keeps results with
        different notes in different tables, and shows paper numbers only beside the full data.

        ``provenance`` is the result's ``task`` record. The default trusts the hub and names
        any other source; tasks whose local copy is the official data override it.
        """
        source = str(provenance.get("source") or "")
        if not source or source.startswith("hf:"):
            return None
        return f"local data {source.rstrip('/').rsplit('/', 1)[-1]}"

    @abstractmethod
    def load(self) -> TaskData:
        """Read the task's queries, qrels and corpus or instances."""

    # -- downstream QA (optional) -------------------------------------------------------------
    #: True when the task implements the two methods below (``--generate`` is refused otherwise).
    supports_generation: ClassVar[bool] = False

    def generation_prompt(self, instance: Instance, docs: Sequence[Document]) -> list[dict[str, str]]:
        """Chat messages asking the generator to answer ``instance`` from ``docs``.

        ``docs`` are the retrieved top-k documents, or all candidates for ``--full-context``;
        the task decides their order in the prompt (e.g. chronological for LongMemEval).
        """
        raise NotImplementedError(f"task {self.id!r} has no downstream QA")

    def score_generations(
        self, instances: Sequence[Instance], outputs: Sequence[str], judge: Any | None = None
    ) -> dict[str, dict[str, float]]:
        """Per-query answer metrics (``{query_id: {"accuracy": 1.0, ...}}``) for the outputs.

        ``judge`` is a generator (see :mod:`harness.generation`) for LM-judged tasks.
        Aggregates are means over queries (see :func:`harness.metrics.aggregate`); tasks whose
        unit is not the query (CLIPPER's claim pairs) return one entry per unit.
        """
        raise NotImplementedError(f"task {self.id!r} has no downstream QA")


class Retriever(ABC):
    """The plug-in contract.

    Implement :meth:`score`; full-corpus retrievers (BM25, dense) also implement
    :meth:`search` and set ``first_stage = True``. Constructor keyword arguments are the
    retriever's parameters (``--model`` and ``--set key=value`` on the command line are checked
    against them).
    """

    name: ClassVar[str]
    #: One of: sparse, dense, cross-encoder, listwise-LLM, attention-head.
    kind: ClassVar[str] = "other"
    #: True when :meth:`search` over a whole corpus is implemented.
    first_stage: ClassVar[bool] = False
    #: Per-query diagnostics of the last :meth:`score` call, ``{query_id: {name: float}}``
    #: (e.g. RankGPT's parse failures). The runner stores them with the query's metrics; a
    #: retriever with nothing to report leaves this empty.
    last_stats: dict[str, dict[str, float]]

    #: Constructor arguments that do not change the scores (left out of :attr:`bound_params`).
    options: ClassVar[frozenset[str]] = frozenset({"show_progress"})
    #: Every constructor argument the retriever was built with, defaults included, as plain JSON
    #: data (set by ``__new__``, whoever constructs it): what the run's identity records.
    bound_params: dict[str, Any]
    #: The constructor arguments whose values differ from their declared defaults.
    changed_params: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        instance = super().__new__(cls)
        instance.last_stats = {}
        instance.bound_params, instance.changed_params = _bind(cls, args, kwargs)
        return instance

    @property
    def meta(self) -> dict[str, Any]:
        """Name, kind, model, revision and parameters, recorded in result files. The default
        records every bound constructor argument; an override may add facts (a revision, a
        device), and the run's identity includes :attr:`bound_params` whatever it returns."""
        return {"name": self.name, "kind": self.kind, "params": dict(self.bound_params)}

    @abstractmethod
    def score(self, instances: Sequence[Instance]) -> Iterator[dict[str, float]]:
        """Yield ``{doc_id: score}`` for each instance, in order. Higher is better."""

    def check(self, instances: Sequence[Instance]) -> None:
        """Refuse, before any scoring starts, instances this retriever cannot score.

        Raise :class:`~harness.errors.HarnessError` (for example a prompt longer than the
        model's context) so that a long run fails in seconds, not when it reaches that query.
        The default accepts everything.
        """

    def index_corpus(self, corpus: Mapping[str, Document]) -> None:
        """Called once before :meth:`score` when re-ranking candidates of a corpus task.

        A scorer with corpus statistics (BM25's IDF and average document length) computes them
        here over the whole corpus, so that re-ranking a first stage's top-k uses the same
        statistics as a search would. The default ignores the corpus.
        """

    def search(self, corpus: Mapping[str, Document], queries: Sequence[Query], k: int) -> Run:
        """Return the top ``k`` documents of ``corpus`` for each query."""
        raise NotImplementedError(f"retriever {self.name!r} cannot search a whole corpus")


def _bind(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``cls``'s constructor arguments for ``args``/``kwargs`` with defaults applied (``**kwargs``
    flattened), less :attr:`Retriever.options`; and those that differ from their defaults. Arguments
    the signature refuses are left to ``__init__`` to report."""
    import inspect

    signature = inspect.signature(cls.__init__)
    try:
        bound = signature.bind(None, *args, **kwargs)
    except TypeError:
        return plain(kwargs), plain(kwargs)
    given = set(bound.arguments)
    bound.apply_defaults()
    params: dict[str, Any] = {}
    changed: dict[str, Any] = {}
    parameters = list(signature.parameters.values())
    for parameter in parameters[1:]:
        value = bound.arguments.get(parameter.name)
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            params.update(value or {})
            changed.update(value or {})
        elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                params[parameter.name] = changed[parameter.name] = list(value)
        else:
            params[parameter.name] = value
            if parameter.name in given and value != parameter.default:
                changed[parameter.name] = value
    options = getattr(cls, "options", frozenset())
    return ({k: plain(v) for k, v in params.items() if k not in options},
            {k: plain(v) for k, v in changed.items() if k not in options})


def plain(value: Any) -> Any:
    """``value`` as plain JSON data (tuples to lists, keys to strings, other objects to ``repr``),
    so a bound parameter can be recorded and hashed whatever its type.

    >>> plain({"a": (1, 2.5), 3: None, "s": {1}})
    {'a': [1, 2.5], '3': None, 's': '{1}'}
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return repr(value)
