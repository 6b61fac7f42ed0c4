"""A run's identity: :class:`RunSpec`, the one owner of what makes two runs the same run.

Everything that changes a run's numbers is a field here: the task and its parameters, the data it
read, the query selection (sample size, seed, exclusions), the retriever with every bound
parameter, its model and head set, the first stage and its depth, the document cut, shuffled
candidates, and the generation set-up (:class:`GenerationSpec`). Output paths, progress bars and
worker options are not (they live in :class:`harness.runner.RunConfig`'s options).

A spec answers four questions, and nothing else in the harness answers them:

- :meth:`RunSpec.hash` the identity as a digest (equal specs, equal digests);
- :meth:`RunSpec.filename` the default result file name (``bm25__q32-seed42.json``);
- :meth:`RunSpec.label` the row's name on the leaderboard (``qr (smollm2-135m, heads …)``);
- :meth:`RunSpec.variant` the like-with-like key: how the documents and queries differ from
  the task's full data, in words ("" for the full data). Two rows of one task and variant ran on
  the same documents and queries and can be compared or fused query by query.

A result file of schema 3 records its spec as a plain JSON object (``spec``); older files get the
spec derived from their recorded sections (:meth:`RunSpec.from_result`), never from the command
line they record.

>>> spec = RunSpec(task="cranfield", retriever="bm25", retriever_params={"k1": 0.9})
>>> spec.filename(), spec.label(), spec.variant()
('bm25.json', 'bm25', '')
>>> RunSpec.from_dict(spec.to_dict()) == spec
True
>>> spec.hash() == RunSpec.from_dict(spec.to_dict()).hash()
True
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import sha256_json
from harness.types import plain

#: A :class:`harness.results.Result` (not imported: results build on this module).
Result = Any

#: File extensions dropped from a data note in a file name (``local data x.json`` -> ``local-data-x``).
DATA_SUFFIXES = r"(\.(jsonl?|tsv|csv|txt|parquet|gz|bz2|zip))+$"


def slug(text: str) -> str:
    """File-name-safe form of a model id, task id part or parameter value: never empty, never
    ``.`` or ``..``, never starting with a dot, so it cannot leave the folder it is joined to.

    >>> slug("meta-llama/Llama-3.1-8B"), slug(".."), slug("../../etc"), slug("")
    ('meta-llama_Llama-3.1-8B', '_', '__.._etc', '_')
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
    if cleaned.startswith("."):
        cleaned = "_" + cleaned.lstrip(".")
    return cleaned if cleaned.strip("._") else "_"


def compact(value: Any, sep: str = "/") -> str:
    """A parameter value in few characters: ``[0.0, 50.0]`` -> ``0/50``, ``0.25`` -> ``0.25``.

    >>> compact([0.0, 50.0, 100.0]), compact(1.5), compact("en"), compact({"a": 1})
    ('0/50/100', '1.5', 'en', '{"a":1}')
    """
    if isinstance(value, (list, tuple)):
        return sep.join(compact(v, sep) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    return json.dumps(plain(value), separators=(",", ":"), sort_keys=True)


def _described(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={compact(v)}" for k, v in sorted(params.items()))


@dataclass(frozen=True)
class GenerationSpec:
    """The downstream-generation set-up of a run: the generator (``backend:model``), its options
    (e.g. masked heads), the judge, how many retrieved documents go into the prompt (or the full
    context) and the token budget. ``mask`` and ``sampling`` are what the generator recorded."""

    generator: str
    top_k: int | None = None
    full_context: bool = False
    max_tokens: int | None = None
    judge: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    judge_options: Mapping[str, Any] = field(default_factory=dict)
    mask: Mapping[str, Any] | None = None
    sampling: Mapping[str, Any] | None = None

    def mode(self) -> str:
        """``full``, ``top3`` or ``full-mask-<heads>-<mode>``: the generation part of a file name."""
        mode = "full" if self.full_context else f"top{self.top_k}"
        if self.mask:
            name = self.mask.get("name") or str(self.mask.get("sha256", ""))[:12]
            mode += f"-mask-{slug(str(name))}-{self.mask.get('mode', 'output')}"
        return mode

    def describe(self) -> str:
        """``hf:smollm2-135m [full context, 16 heads masked: random:16:0]``."""
        source = "full context" if self.full_context else f"top-{self.top_k}"
        if self.mask:
            source += f", {self.mask.get('n_heads')} heads masked: {self.mask.get('name')}"
        return f"{self.generator} [{source}]"

    @classmethod
    def from_record(cls, generation: Mapping[str, Any]) -> GenerationSpec:
        """The spec of a result's ``generation`` section (generator meta, judge meta, settings)."""
        generator = generation.get("generator") or {}
        judge = generation.get("judge") or None
        return cls(generator=str(generator.get("spec", "generator")), top_k=generation.get("top_k"),
                   full_context=bool(generation.get("full_context")), max_tokens=generation.get("max_tokens"),
                   judge=str(judge.get("spec")) if isinstance(judge, Mapping) else judge,
                   mask=generator.get("mask") or None, sampling=generator.get("sampling") or None)


@dataclass(frozen=True)
class RunSpec:
    """Everything that changes a run's numbers (see the module docstring).

    ``retriever_params`` holds the parameters the retriever records (by default every constructor
    argument, defaults included: :attr:`harness.types.Retriever.bound_params`), ``changed_params``
    those given with a value other than their default (they are in the name and the label);
    ``data`` the data path the run was given (``--data``); ``task_params`` the task parameters
    given (``--task-set``). ``data_note`` is the task's own word on how its data differs from the
    full, official data (:meth:`harness.types.Task.variant_note`); ``n_queries`` and
    ``n_available`` say whether the queries are a sample. ``fusion`` describes a fused row's
    method and inputs (:mod:`harness.fusion`).
    """

    task: str
    retriever: str
    task_params: Mapping[str, Any] = field(default_factory=dict)
    data: str | None = None
    data_sha256: str | None = None
    data_note: str | None = None
    max_queries: int | None = None
    seed: int | None = None
    n_queries: int | None = None
    n_available: int | None = None
    exclude_queries: str | None = None
    retriever_kind: str | None = None
    model: str | None = None
    heads: str | None = None
    retriever_params: Mapping[str, Any] = field(default_factory=dict)
    changed_params: Mapping[str, Any] = field(default_factory=dict)
    first_stage: str | None = None
    depth: int | None = None
    truncate_words: int | None = None
    shuffle_candidates: int | None = None
    generation: GenerationSpec | None = None
    fusion: Mapping[str, Any] | None = None

    # -- the four answers ------------------------------------------------------------------------
    def hash(self) -> str:
        """The identity as a SHA-256 hex digest of :meth:`to_dict`."""
        return sha256_json(self.to_dict())

    @property
    def sampled(self) -> bool:
        """True when the evaluated queries are a sample of those available."""
        return bool(self.n_available and self.n_queries is not None and self.n_queries < self.n_available)

    def variant(self) -> str:
        """How the documents and queries differ from the task's full data, in words ("" for the
        full data): the task's data note, non-default task parameters, excluded queries, the query
        sample, and the document cut when every retriever saw cut documents (no first stage).
        A re-ranker's own cut and shuffled candidates change the row, not the data: they are in
        :meth:`label`."""
        notes = [self.data_note or ""]
        if self.task_params:
            notes.append(_described(self.task_params))
        if self.exclude_queries:
            notes.append(f"without {Path(self.exclude_queries).stem}")
        if self.sampled:
            notes.append(f"{self.n_queries} of {self.n_available} queries, seed {self.seed}")
        if self.truncate_words and not self.first_stage:
            notes.append(f"≤{self.truncate_words} words/doc")
        return ", ".join(n for n in notes if n)

    def label(self, failures: int = 0) -> str:
        """The row's name: retriever, model, heads, a re-ranker's cut, shuffling, generation
        (``failures`` generations or judgements failed, when the result says so)."""
        if self.fusion is not None:
            return fusion_label(self.fusion)
        details = [self.model] if self.model else []
        details += [f"{k}={compact(v)}" for k, v in self._own_params().items()]
        if self.heads:
            details.append(f"heads {self.heads}")
        if self.truncate_words and self.first_stage:
            details.append(f"≤{self.truncate_words} words/doc")
        if self.shuffle_candidates is not None:
            details.append(f"shuffled candidates, seed {self.shuffle_candidates}")
        label = self.retriever + (f" ({', '.join(details)})" if details else "")
        if self.generation:
            described = self.generation.describe()
            if failures:
                described = described[:-1] + f", {failures} failed]"
            label += f" → {described}"
        return label

    def filename(self) -> str:
        """``<retriever>[__<model>][__<heads>][__<first stage><depth>][__excl-…][__q<n>-seed<s>]
        [__<data note>][__<task parameters>][__cut<w>][__shuffled<s>][__gen-<model>-<mode>].json``:
        every field that changes the numbers is in the name, so two runs that differ in any of
        them never write the same file."""
        parts = [slug(self.retriever)]
        if self.model:
            parts.append(slug(str(self.model).rstrip("/").split("/")[-1]))
        parts += [slug(f"{k}-{compact(v, '_')}") for k, v in self._own_params().items()]
        if self.heads:  # a head file's name without its extension: no ``x.json.json``
            parts.append(slug(str(self.heads)).replace(".json", ""))
        if self.first_stage:
            parts.append(f"{slug(self.first_stage)}{self.depth}")
        if self.exclude_queries:
            parts.append(f"excl-{slug(Path(self.exclude_queries).stem)}")
        if self.sampled:
            parts.append(f"q{self.n_queries}-seed{self.seed}")
        if self.data_note:  # a sample or local copy of the data: never the same file as the full task's row
            parts.append(slug(re.sub(DATA_SUFFIXES, "", self.data_note).replace(" ", "-")))
        parts += [slug(f"{k}-{compact(v, '_')}") for k, v in sorted(self.task_params.items())]
        if self.truncate_words:
            parts.append(f"cut{int(self.truncate_words)}")
        if self.shuffle_candidates is not None:  # docs/PROTOCOL.md §5.4, Table 3
            parts.append(f"shuffled{int(self.shuffle_candidates)}")
        if self.generation:
            model = self.generation.generator.split(":", 1)[-1].rstrip("/").split("/")[-1]
            parts.append(f"gen-{slug(model)}-{self.generation.mode()}")
        return "__".join(parts) + ".json"

    def _own_params(self) -> dict[str, Any]:
        """Changed parameters that have no part of their own (the model and heads have)."""
        return {k: v for k, v in sorted(self.changed_params.items()) if k not in ("model", "heads")}

    # -- as data -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON data (what a schema-3 result records under ``spec``)."""
        out = {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "generation"}
        out["generation"] = None if self.generation is None else plain(dataclasses.asdict(self.generation))
        return out

    @classmethod
    def from_dict(cls, obj: Any, where: str = "spec") -> RunSpec:
        """The spec recorded in a result file; unknown or mistyped fields are one-line errors."""
        if not isinstance(obj, Mapping):
            raise HarnessError(f"{where}: must be an object, got {type(obj).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - names)
        if unknown:
            raise HarnessError(f"{where}: unknown field {unknown[0]!r}")
        for name in ("task", "retriever"):
            if not isinstance(obj.get(name), str) or not obj.get(name):
                raise HarnessError(f"{where}.{name}: must be a non-empty string")
        values = dict(obj)
        for name in ("task_params", "retriever_params"):
            if not isinstance(values.get(name, {}), Mapping):
                raise HarnessError(f"{where}.{name}: must be an object")
        generation = values.pop("generation", None)
        if generation is not None:
            if not isinstance(generation, Mapping) or not isinstance(generation.get("generator"), str):
                raise HarnessError(f"{where}.generation: must be an object with a 'generator' string")
            gen_names = {f.name for f in dataclasses.fields(GenerationSpec)}
            bad = sorted(set(generation) - gen_names)
            if bad:
                raise HarnessError(f"{where}.generation: unknown field {bad[0]!r}")
            values["generation"] = GenerationSpec(**generation)
        return cls(**values)

    @classmethod
    def from_result(cls, result: Result) -> RunSpec:
        """The spec a result records (schema 3), or the one its sections imply (older files)."""
        if result.spec is not None:
            return cls.from_dict(result.spec)
        return cls.derive(result)

    @classmethod
    def derive(cls, result: Result) -> RunSpec:
        """The spec implied by a result's recorded sections (task, retriever, first stage, cut,
        generation). For a schema-3 file this must equal the recorded spec (``validate`` checks)."""
        task, retriever, fs = result.task, result.retriever, result.first_stage
        n_queries = len(result.shard.all_query_ids) if result.shard else (
            len(task.query_ids) if task.query_ids is not None else task.n_queries)
        shuffle = task.extra.get("shuffle_candidates")
        fusion = retriever.params if retriever.kind == "fusion" else None
        return cls(
            task=task.id, retriever=retriever.name, task_params=_task_params(result),
            data=_data_path(result), data_sha256=task.sha256, data_note=_data_note(result),
            max_queries=task.max_queries, seed=task.seed, n_queries=n_queries, n_available=task.n_available,
            exclude_queries=task.excluded_queries_from, retriever_kind=retriever.kind, model=retriever.model,
            heads=retriever.heads_name, retriever_params={} if fusion is not None else plain(retriever.params or {}),
            changed_params=plain(retriever.extra.get("changed_params") or {}),
            first_stage=fs.name if fs else None, depth=fs.depth if fs else None,
            truncate_words=result.truncate_words, shuffle_candidates=None if shuffle is None else int(shuffle),
            generation=GenerationSpec.from_record(result.generation) if result.generation else None,
            fusion=fusion,
        )


def _task_params(result: Result) -> dict[str, Any]:
    """The task parameters that change the data: those given without a declared default (recorded
    under ``task.task_params``), and each declared default whose recorded value differs from it
    (:attr:`harness.types.Task.parameter_defaults`; the task records the values it used)."""
    from harness.registry import task_class_of

    task = result.task
    defaults = task_class_of(task.id).parameter_defaults
    given = task.extra.get("task_params") or {}
    out = {k: plain(v) for k, v in given.items() if k not in defaults}
    for name, default in defaults.items():
        if name in task.extra and plain(task.extra[name]) != plain(default):
            out[name] = plain(task.extra[name])
    return dict(sorted(out.items()))


def _data_path(result: Result) -> str | None:
    """The data path the run was given (recorded as ``task.data``); an older file, which predates
    that record, gave one when its source is not the task's own data (it has a data note)."""
    task = result.task
    if "data" in task.extra:
        return task.extra["data"]
    return task.source if _data_note(result) else None


def _data_note(result: Result) -> str | None:
    """How the data of a measured result differs from its task's full data (:meth:`Task.variant_note`)."""
    if result.kind != "measured":
        return None
    from harness.registry import task_variant_note

    return task_variant_note(result.task.id, result.task.to_dict())


def fusion_label(params: Mapping[str, Any]) -> str:
    """``RRF (k=60) of bm25 + qr (smollm2-135m, heads …)``: a fusion row's label."""
    if params.get("method") == "rrf":
        method = f"RRF (k={params.get('k')})"
    else:
        method = f"wsum ({', '.join(f'{w:g}' for w in params.get('weights') or [])}; {params.get('norm')})"
    inputs = " + ".join(str(i.get("label", i.get("file"))) for i in params.get("inputs") or [])
    return f"{method} of {inputs}"


def run_failures(generation: Mapping[str, Any] | None) -> int:
    """Generations and judgements that failed, as a result's ``generation`` section counts them."""
    generation = generation or {}
    return int(generation.get("generation_failures") or 0) + int(generation.get("judge_failures") or 0)
