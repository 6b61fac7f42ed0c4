"""The head files shipped under results/heads are valid for their models and are those models' defaults."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig

from harness.attention.heads import HEAD_FILE_ALIASES, ModelShape, default_heads_dir, resolve_heads
from harness.errors import HarnessError
from harness.models.aliases import ALIAS_TABLE, locate_alias_files
from harness.models.resolve import resolve_model

DETECTION_IDS = default_heads_dir() / "cranfield-detection-queries.txt"


@pytest.mark.parametrize("alias", HEAD_FILE_ALIASES)
def test_shipped_head_file_is_the_default_and_fits_the_model(alias: str) -> None:
    try:
        locate_alias_files(ALIAS_TABLE[alias])
    except HarnessError as exc:
        pytest.skip(f"{alias} not installed ({exc})")
    path = default_heads_dir() / f"{alias}.json"
    record = json.loads(path.read_text())
    shape = ModelShape.from_config(AutoConfig.from_pretrained(resolve_model(alias).path))
    assert record["shape"] == {"layers": shape.num_layers, "heads": shape.num_heads, "kv_heads": shape.num_kv_heads}
    # Every head of the model was scored once, best first; the file says how it was detected.
    assert len(record["heads"]) == shape.num_layers * shape.num_heads
    assert len({h for h, _ in record["heads"]}) == len(record["heads"])
    scores = [s for _, s in record["heads"]]
    assert scores == sorted(scores, reverse=True)
    assert (record["model"], record["objective"], record["data"], record["seed"], record["top"]) == (
        alias, "ndcg", "cranfield", 42, 16)
    # Detection queries are the shared list that every held-out Cranfield row excludes.
    assert record["query_ids"] == DETECTION_IDS.read_text().split() and record["n"] == 32
    default = resolve_heads(None, shape, alias=alias)
    assert default.as_strings() == [h for h, _ in record["heads"][:16]] and default.name == f"file:{alias}.json"
