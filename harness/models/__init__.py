"""Models: every model id the harness accepts, resolved, converted when needed, and loaded.

| module | what |
|---|---|
| :mod:`~harness.models.aliases` | the offline aliases (``smollm2-135m``, ``qwen2.5-0.5b``, ``minilm``) and their pinned PyPI packages |
| :mod:`~harness.models.gguf` | GGUF files: metadata reader, chunk assembly, dequantisation into a transformers folder |
| :mod:`~harness.models.resolve` | :func:`resolve_model` (aliases, local folders, GGUF files, hub ids) and the model cache folder |
| :mod:`~harness.models.load` | :func:`load_causal_lm`, :func:`load_tokenizer`, :func:`pick_device`, :func:`pick_dtype` |
| :mod:`~harness.models.chat` | :func:`~harness.models.chat.render_chat` (the chat template), :func:`~harness.models.chat.stop_token_ids` (end-of-turn ids) |

Importing this package imports neither torch nor transformers. The names below are the public API.
"""

from __future__ import annotations

from harness.models.aliases import ALIAS_TABLE, ExpectedShape, ModelAlias, PackagedFile, locate_alias_files
from harness.models.gguf import CONVERSION_FORMAT, MANIFEST, assemble_chunks, read_gguf_metadata
from harness.models.load import load_causal_lm, load_tokenizer, pick_device, pick_dtype
from harness.models.resolve import (
    ALIASES,
    DEFAULT_CAUSAL_LM,
    DEFAULT_DENSE,
    ModelInfo,
    convert_gguf,
    converted_folder_name,
    gguf_sha256,
    model_cache_dir,
    resolve_model,
    sentence_transformer_path,
    write_folder_atomically,
)

__all__ = [
    "ALIASES",
    "ALIAS_TABLE",
    "CONVERSION_FORMAT",
    "DEFAULT_CAUSAL_LM",
    "DEFAULT_DENSE",
    "MANIFEST",
    "ExpectedShape",
    "ModelAlias",
    "ModelInfo",
    "PackagedFile",
    "assemble_chunks",
    "convert_gguf",
    "converted_folder_name",
    "gguf_sha256",
    "load_causal_lm",
    "load_tokenizer",
    "locate_alias_files",
    "model_cache_dir",
    "pick_device",
    "pick_dtype",
    "read_gguf_metadata",
    "resolve_model",
    "sentence_transformer_path",
    "write_folder_atomically",
]
