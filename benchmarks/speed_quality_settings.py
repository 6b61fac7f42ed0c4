"""What defines one ``harness bench speed-quality`` run: :class:`Settings`, the default grid of
``--layers`` and the paper's head set placed on the curve (:mod:`harness.benchmarks.speed_quality`).

A helper of the ``speed-quality`` target (no ``add_arguments``: ``harness bench`` lists no target for it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

DEFAULT_MODEL = "smollm2-135m"
#: fractions of the deepest layer index that make the default grid (30 layers: 8, 12, 16, 20, 24, 29)
DEFAULT_FRACTIONS = (0.28, 0.41, 0.55, 0.69, 0.83, 1.0)
#: the paper's set placed on the curve (docs/PROTOCOL.md §3)
PAPER_SET = ("llama-3.1-8b", "nq")
PAPER_LAYERS = 32


def default_layers(num_layers: int) -> list[int]:
    """The default ``--layers`` grid of a model with ``num_layers`` layers.

    >>> default_layers(30)
    [8, 12, 16, 20, 24, 29]
    >>> default_layers(4)
    [1, 2, 3]
    """
    return sorted({round(f * (num_layers - 1)) for f in DEFAULT_FRACTIONS})


def paper_point() -> dict[str, Any]:
    """The paper's Llama-3.1-8B NQ set: its deepest layer and the fraction of layers it runs.

    >>> p = paper_point(); p["deepest_layer"], p["layers"], p["layers_run_fraction"]
    (20, 32, 0.656)
    """
    from harness.attention.heads import PAPER_HEAD_SETS, parse_head_list

    deepest = max(layer for layer, _ in parse_head_list(PAPER_HEAD_SETS[PAPER_SET]))
    return {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "set": f"{PAPER_SET[0]}:{PAPER_SET[1]}",
        "deepest_layer": deepest,
        "layers": PAPER_LAYERS,
        "layers_run_fraction": round((deepest + 1) / PAPER_LAYERS, 3),
        "source": "docs/PROTOCOL.md §3",
    }


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that defines a speed-quality benchmark (see :mod:`harness.benchmarks.speed_quality`)."""

    model: str = DEFAULT_MODEL
    layers: tuple[int, ...] | None = None
    task: str = "cranfield"
    data: str | None = None
    n_queries: int = 32
    eval_queries: int = 32
    exclude_queries: str | None = None
    seed: int = 42
    first_stage: str = "bm25"
    depth: int = 10
    truncate_words: int = 150
    shuffle_candidates: int | None = 42
    top: int = 16
    reference: str | None = "auto"
    measure_prompts: int = 2
    repeats: int = 2
    warmup: int = 0
    threads: int | None = None
    dtype: str | None = None
    device: str | None = None
    heads_dir: str | None = None
    show_progress: bool = False
