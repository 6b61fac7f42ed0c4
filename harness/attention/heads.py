"""Head sets: the paper's QRHead lists, ``layer-head`` strings, head files, validation.

A head is ``(layer, head)``, 0-indexed, written ``"layer-head"`` (``"14-22"``). ``--heads`` takes:

- a named set of docs/PROTOCOL.md §3 (``nq``, ``lme``) for the paper's models, recognised by shape
  (model type, layers, heads, KV heads), or spelled with the model key (``llama-3.1-8b:nq``);
- ``full`` (every head of every layer: ICR);
- a comma list ``"14-22,13-16"``;
- a path to a head file ``{"model", "revision", "objective", "heads": [["layer-head", score], ...],
  "top": 16, ...}`` of which the first ``top`` heads are used;
- ``random:N:SEED`` (N distinct heads drawn uniformly from all layers × heads with NumPy's
  ``default_rng(SEED)``; ``random:N`` is seed 0), ``top:N:FILE`` (the N best heads of a head
  file, whatever its ``top``) and ``exclude:FILE`` (every head but the file's top set): the
  controls of the paper's Tables 3 and 8. Their :attr:`HeadSelection.detail` records the spec,
  the seed or the file's sha256.

Default (``heads=None``): the paper models use ``nq``; the offline aliases of
:data:`HEAD_FILE_ALIASES` use their detected head file, packaged as ``harness/data/heads/<alias>.json``
(a byte-identical copy of ``results/heads/<alias>.json``; ``$HARNESS_HEADS_DIR`` overrides the
folder), so a clone and an installed wheel resolve the same heads. Any other model is a one-line
error that names ``harness detect`` and ``--heads full``: never a silent fall-back to every head.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, unknown_name

log = logging.getLogger(__name__)

Head = tuple[int, int]

#: Verbatim from princeton-pli/QRHead @ 7a668e7 ``src/qrretriever/configs/`` (docs/PROTOCOL.md §3).
PAPER_HEAD_SETS: dict[tuple[str, str], str] = {
    (
        "llama-3.1-8b",
        "nq",
    ): "14-22,13-16,14-28,14-31,16-19,14-1,16-26,17-24,14-0,13-0,16-25,13-12,13-1,13-10,17-27,20-14",
    (
        "llama-3.1-8b",
        "lme",
    ): "13-18,13-21,8-11,14-13,17-29,13-1,13-13,14-29,14-31,13-8,16-1,17-21,13-3,10-31,13-4,14-22",
    ("llama-3.1-70b", "nq"): (
        "31-32,35-26,35-25,35-21,39-41,35-29,38-18,37-9,52-19,35-6,47-18,52-58,35-24,35-28,37-29,35-40,"
        "37-25,39-40,34-1,31-39,37-24,35-23,31-37,35-20,33-18,35-50,64-31,35-42,37-28,47-17,35-19,35-3"
    ),
    ("llama-3.1-70b", "lme"): (
        "35-17,35-27,31-33,35-7,35-43,35-20,33-16,31-38,35-40,35-25,53-1,35-19,35-24,23-42,21-39,52-58,"
        "28-45,39-43,17-61,14-21,33-18,36-52,35-47,71-6,27-21,29-55,35-23,38-48,35-28,39-41,35-21,38-55"
    ),
    ("llama-3.2-3b", "nq"): "13-16,12-12,13-23,13-21,15-18,12-3,21-20,12-1,13-2,13-1,12-6,12-11,13-0,15-22,18-19,18-11",
    (
        "llama-3.2-3b",
        "lme",
    ): "15-18,15-22,16-15,18-19,13-23,12-1,21-20,20-11,18-11,18-18,13-16,16-16,18-15,19-8,15-17,17-2",
    ("llama-3.2-1b", "nq"): "8-21,8-14,7-22,6-31,8-28,10-26,10-0,5-5,8-3,6-30,8-0,7-26,7-25,7-23,11-4,8-20",
    (
        "qwen2.5-7b",
        "nq",
    ): "16-19,16-2,16-20,16-14,16-0,15-24,16-18,17-18,16-1,19-18,19-19,18-16,16-17,19-25,19-17,20-21",
}

#: Paper model keys by shape: (model_type, layers, heads, kv heads, hidden size).
PAPER_MODEL_SHAPES: dict[tuple[str, int, int, int, int], str] = {
    ("llama", 32, 32, 8, 4096): "llama-3.1-8b",
    ("llama", 80, 64, 8, 8192): "llama-3.1-70b",
    ("llama", 28, 24, 8, 3072): "llama-3.2-3b",
    ("llama", 16, 32, 8, 2048): "llama-3.2-1b",
    ("qwen2", 28, 28, 4, 3584): "qwen2.5-7b",
}

#: Offline aliases whose detected default heads ship as package data: ``harness/data/heads/<alias>.json``,
#: byte-identical to ``results/heads/<alias>.json`` (tests/retrievers/test_shipped_heads.py).
HEAD_FILE_ALIASES = ("smollm2-135m", "qwen2.5-0.5b")

#: The packaged head files: ``harness/data/heads`` (the same folder in a clone and in an installed wheel).
PACKAGED_HEADS_DIR = Path(__file__).resolve().parents[1] / "data" / "heads"


def default_heads_dir() -> Path:
    """``$HARNESS_HEADS_DIR`` or the packaged ``harness/data/heads``."""
    env = os.environ.get("HARNESS_HEADS_DIR")
    return Path(env) if env else PACKAGED_HEADS_DIR


def default_head_file(alias: str | None) -> Path | None:
    """The detected default head file of an offline alias (``default_heads_dir() / <alias>.json``), if any."""
    if alias not in HEAD_FILE_ALIASES:
        return None
    path = default_heads_dir() / f"{alias}.json"
    return path if path.is_file() else None


@dataclass(frozen=True)
class ModelShape:
    """What head validation needs to know about a model."""

    model_type: str
    num_layers: int
    num_heads: int
    num_kv_heads: int
    hidden_size: int

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = int(text.num_attention_heads)
        return cls(
            model_type=str(getattr(text, "model_type", "") or getattr(config, "model_type", "")),
            num_layers=int(text.num_hidden_layers),
            num_heads=heads,
            num_kv_heads=int(getattr(text, "num_key_value_heads", None) or heads),
            hidden_size=int(getattr(text, "hidden_size", 0) or 0),
        )

    @property
    def paper_key(self) -> str | None:
        return PAPER_MODEL_SHAPES.get(
            (self.model_type, self.num_layers, self.num_heads, self.num_kv_heads, self.hidden_size)
        )

    def describe(self) -> str:
        return f"{self.num_layers} layers x {self.num_heads} heads"


@dataclass(frozen=True)
class HeadSelection:
    """The heads a retriever uses: ``heads`` sorted as given, ``name`` for result files."""

    name: str
    heads: tuple[Head, ...]
    source: str = ""
    #: What a result records beyond name and list for the spec forms (spec, seed, file sha256); else {}.
    detail: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def max_layer(self) -> int:
        return max(layer for layer, _ in self.heads)

    def as_strings(self) -> list[str]:
        return [f"{layer}-{head}" for layer, head in self.heads]

    @property
    def sha256(self) -> str:
        """sha256 of the comma-joined ``layer-head`` list (order matters only for provenance)."""
        return hashlib.sha256(",".join(self.as_strings()).encode()).hexdigest()


def list_head_sets() -> list[str]:
    """One line per named head set: the paper's sets (``--heads nq`` on that model) and the
    detected default heads of the offline aliases (:func:`default_head_file`)."""
    lines = []
    for (model, name), heads in PAPER_HEAD_SETS.items():
        parsed = parse_head_list(heads, where=f"{model}:{name}")
        lines.append(f"{model + ':' + name:22s} {len(parsed)} heads, deepest layer {max(h[0] for h in parsed)} "
                     "(paper, docs/PROTOCOL.md §3)")
    for alias in HEAD_FILE_ALIASES:
        path = default_head_file(alias)
        if path is not None:
            heads, meta = load_head_file(path)
            lines.append(f"{alias:22s} {len(heads)} heads, deepest layer {max(h[0] for h in heads)} "
                         f"(detected on {meta.get('data', '?')}; default for the alias)")
    return lines


def all_heads(shape: ModelShape) -> tuple[Head, ...]:
    return tuple((layer, head) for layer in range(shape.num_layers) for head in range(shape.num_heads))


def parse_head_list(text: str, *, where: str = "--heads") -> list[Head]:
    """``"14-22,13-16"`` -> ``[(14, 22), (13, 16)]``; a malformed item names itself."""
    heads: list[Head] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        layer, sep, head = item.partition("-")
        if not sep or not layer.strip().isdigit() or not head.strip().isdigit():
            raise HarnessError(f"{where}: {item!r} is not a 'layer-head' pair such as '14-22'")
        heads.append((int(layer), int(head)))
    if not heads:
        raise HarnessError(f"{where}: empty head list")
    return heads


def validate_heads(heads: Sequence[Head], shape: ModelShape, *, where: str) -> None:
    """Every head must exist in the model; duplicates are refused."""
    for layer, head in heads:
        if not (0 <= layer < shape.num_layers and 0 <= head < shape.num_heads):
            raise HarnessError(f"{where}: head {layer}-{head} is outside the model ({shape.describe()}, 0-indexed)")
    seen: set[Head] = set()
    for h in heads:
        if h in seen:
            raise HarnessError(f"{where}: head {h[0]}-{h[1]} is listed twice")
        seen.add(h)


def load_head_file(path: str | os.PathLike[str], *, ranked: bool = False) -> tuple[list[Head], dict[str, Any]]:
    """Read a head file; return its first ``top`` heads (``ranked``: every head it lists, best
    first) and the whole object."""
    from harness.io import read_json

    obj = read_json(path, invalid="not valid JSON")
    if not isinstance(obj, dict) or not isinstance(obj.get("heads"), list) or not obj["heads"]:
        raise HarnessError(f"{path}: field 'heads' must be a non-empty list of ['layer-head', score]")
    top = obj.get("top", len(obj["heads"]))
    if not isinstance(top, int) or top < 1:
        raise HarnessError(f"{path}: field 'top' must be a positive integer, got {top!r}")
    heads: list[Head] = []
    for i, entry in enumerate(obj["heads"] if ranked else obj["heads"][:top]):
        label = entry[0] if isinstance(entry, list) and entry else entry
        if not isinstance(label, str):
            raise HarnessError(f"{path}: heads[{i}] must be ['layer-head', score], got {entry!r}")
        heads += parse_head_list(label, where=f"{path}: heads[{i}]")
    return heads, obj


#: The spec forms of ``--heads`` beyond set names, lists and files (see the module docstring).
SPEC_FORMS = ("random", "top", "exclude")


def random_heads(n: int, shape: ModelShape, seed: int = 0, *, where: str = "--heads") -> tuple[Head, ...]:
    """``n`` distinct heads drawn uniformly from all ``layers × heads`` with NumPy's ``default_rng(seed)``.

    >>> shape = ModelShape("llama", 2, 4, 2, 64)
    >>> random_heads(3, shape, 7) == random_heads(3, shape, 7), len(set(random_heads(8, shape, 1)))
    (True, 8)
    """
    import numpy as np

    total = shape.num_layers * shape.num_heads
    if not 1 <= n <= total:
        raise HarnessError(f"{where}=random:{n}: N must be 1..{total}, the model has {total} heads ({shape.describe()})")
    picks = np.random.default_rng(seed).choice(total, size=n, replace=False)
    return tuple((int(i) // shape.num_heads, int(i) % shape.num_heads) for i in picks)


def _file_heads(path: str, where: str, *, ranked: bool) -> tuple[list[Head], str]:
    """A head file's heads (its top set, or every head best first) and the file's sha256."""
    if not path or not os.path.isfile(path):
        raise HarnessError(f"{where}: head file {path or '(none)'} not found")
    heads, _ = load_head_file(path, ranked=ranked)
    return heads, hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _check_count(n: int, spec: str, shape: ModelShape, where: str) -> None:
    total = shape.num_layers * shape.num_heads
    if not 1 <= n <= total:
        raise HarnessError(f"{where}={spec!r}: N must be 1..{total}, the model has {total} heads ({shape.describe()})")


def _random_form(spec: str, shape: ModelShape, where: str) -> HeadSelection:
    parts = spec.split(":")[1:]
    if not 1 <= len(parts) <= 2 or not all(part.strip().isdigit() for part in parts):
        raise HarnessError(f"{where}={spec!r}: expected random:N or random:N:SEED (N heads drawn with seed SEED)")
    n, seed = int(parts[0]), int(parts[1]) if len(parts) == 2 else 0
    _check_count(n, spec, shape, where)
    name = f"random:{n}:{seed}"
    return HeadSelection(name, random_heads(n, shape, seed, where=where), "random", {"spec": name, "seed": seed})


def _top_form(spec: str, shape: ModelShape, where: str) -> HeadSelection:
    count, _, path = spec.split(":", 1)[1].partition(":")
    if not count.strip().isdigit() or not path:
        raise HarnessError(f"{where}={spec!r}: expected top:N:FILE (the N best heads of a head file)")
    n = int(count)
    _check_count(n, spec, shape, where)
    ranked, digest = _file_heads(path, where, ranked=True)
    if n > len(ranked):
        raise HarnessError(f"{where}={spec!r}: {path} lists only {len(ranked)} heads")
    validate_heads(ranked[:n], shape, where=path)
    return HeadSelection(f"top:{n}:{Path(path).name}", tuple(ranked[:n]), path, {"spec": spec, "file_sha256": digest})


def _exclude_form(spec: str, shape: ModelShape, where: str) -> HeadSelection:
    path = spec.split(":", 1)[1]
    if not path:
        raise HarnessError(f"{where}={spec!r}: expected exclude:FILE (every head but the file's top set)")
    top_set, digest = _file_heads(path, where, ranked=False)
    validate_heads(top_set, shape, where=path)
    dropped = set(top_set)
    kept = tuple(h for h in all_heads(shape) if h not in dropped)
    if not kept:
        raise HarnessError(f"{where}={spec!r}: the file's top set is every head of the model; nothing is left")
    return HeadSelection(f"exclude:{Path(path).name}", kept, path,
                         {"spec": spec, "file_sha256": digest, "excluded": len(dropped)})


def resolve_spec_form(spec: str, shape: ModelShape, *, where: str = "--heads") -> HeadSelection:
    """``random:N[:SEED]``, ``top:N:FILE`` or ``exclude:FILE`` as a validated :class:`HeadSelection`.

    >>> sel = resolve_spec_form("random:3:7", ModelShape("llama", 2, 4, 2, 64))
    >>> sel.name, len(sel.heads), sel.detail
    ('random:3:7', 3, {'spec': 'random:3:7', 'seed': 7})
    """
    form = spec.partition(":")[0]
    if form == "random":
        return _random_form(spec, shape, where)
    if form == "top":
        return _top_form(spec, shape, where)
    if form == "exclude":
        return _exclude_form(spec, shape, where)
    raise unknown_name("head spec form", form, SPEC_FORMS)


def no_known_heads(model: str | None, shape: ModelShape) -> HarnessError:
    """The one-line error of ``qr`` without ``--heads`` on a model with no known QRHeads."""
    missing = ""
    if model in HEAD_FILE_ALIASES:  # only when $HARNESS_HEADS_DIR points at a folder without the file
        missing = f"; {default_heads_dir() / f'{model}.json'} not found"
    return HarnessError(
        f"no --heads given and no known QRHeads for {f'model {model}' if model else 'this model'} "
        f"({shape.describe()}{missing}): detect them with 'harness detect --model {model or 'MODEL'} --task TASK "
        "--output heads.json' and pass '--heads heads.json', or pass '--heads full' to use every head (ICR's set)"
    )


def known_set_names(shape: ModelShape) -> list[str]:
    key = shape.paper_key
    names = ["full", "random:N:SEED", "top:N:FILE", "exclude:FILE"]
    names += [s for (k, s) in PAPER_HEAD_SETS if k == key]
    names += [f"{k}:{s}" for (k, s) in PAPER_HEAD_SETS]
    return names


def resolve_heads(spec: str | None, shape: ModelShape, *, alias: str | None = None,
                  where: str = "--heads") -> HeadSelection:
    """Turn ``--heads`` (or ``None``: the model's default) into a validated :class:`HeadSelection`.

    ``alias`` names the model (an offline alias, else its spec): it picks a packaged head file and
    is quoted by the error for a model without known QRHeads.

    >>> shape = ModelShape("llama", 2, 4, 2, 64)
    >>> resolve_heads("random:3:7", shape).name, len(resolve_heads("full", shape).heads)
    ('random:3:7', 8)
    """
    if spec is None:
        key = shape.paper_key
        if key is not None and (key, "nq") in PAPER_HEAD_SETS:
            log.info("heads: using the paper's NQ set of %s", key)
            return resolve_heads("nq", shape)
        path = default_head_file(alias)
        if path is not None:
            return resolve_heads(str(path), shape)
        raise no_known_heads(alias, shape)
    spec = spec.strip()
    if spec == "full":
        return HeadSelection("full", all_heads(shape), "full")
    if spec.partition(":")[0] in SPEC_FORMS:
        return resolve_spec_form(spec, shape, where=where)
    if spec.endswith(".json") or os.path.sep in spec or os.path.isfile(spec):
        if not os.path.isfile(spec):
            raise HarnessError(f"--heads: head file {spec} not found")
        heads, _ = load_head_file(spec)
        validate_heads(heads, shape, where=spec)
        name = f"file:{Path(spec).name}"
        return HeadSelection(name, tuple(heads), str(spec))
    if any(ch.isdigit() for ch in spec) and "-" in spec and ":" not in spec:
        heads = parse_head_list(spec)
        validate_heads(heads, shape, where="--heads")
        return HeadSelection("custom", tuple(heads), "list")
    key, _, name = spec.rpartition(":")
    key = key or shape.paper_key
    if key is not None and (key, name) in PAPER_HEAD_SETS:
        heads = parse_head_list(PAPER_HEAD_SETS[(key, name)])
        validate_heads(heads, shape, where=f"head set {key}:{name}")
        return HeadSelection(f"{key}:{name}", tuple(heads), "docs/PROTOCOL.md §3")
    if key is None and any(s == name for (_, s) in PAPER_HEAD_SETS):
        raise HarnessError(
            f"head set {name!r} exists only for the paper's models ({shape.model_type}, {shape.describe()} is not one); "
            f"name it with the model, e.g. 'llama-3.1-8b:{name}', or pass a head file or 'full'"
        )
    raise unknown_name("head set", spec, known_set_names(shape))
