"""The detected head files of the offline models: packaged (``harness/data/heads``) as byte-identical copies of
``results/heads/<alias>.json`` (which the recipes name), valid for their models, and those models' defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoConfig

from harness.attention.heads import (
    HEAD_FILE_ALIASES,
    PACKAGED_HEADS_DIR,
    ModelShape,
    default_head_file,
    default_heads_dir,
    resolve_heads,
)
from harness.errors import HarnessError
from harness.models.aliases import ALIAS_TABLE, locate_alias_files
from harness.models.resolve import resolve_model

REPO = Path(__file__).resolve().parents[2]
CHECKED_IN = REPO / "results" / "heads"
DETECTION_IDS = CHECKED_IN / "cranfield-detection-queries.txt"


@pytest.fixture(autouse=True)
def _packaged_heads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_HEADS_DIR", raising=False)


def test_packaged_head_files_are_the_checked_in_ones_byte_for_byte() -> None:
    """One packaged file per alias of HEAD_FILE_ALIASES, each identical to results/heads/<alias>.json: after a
    new detection, copy the file into harness/data/heads (harness/data/heads/README.md)."""
    assert default_heads_dir() == PACKAGED_HEADS_DIR == REPO / "harness" / "data" / "heads"
    assert sorted(p.stem for p in PACKAGED_HEADS_DIR.glob("*.json")) == sorted(HEAD_FILE_ALIASES)
    for alias in HEAD_FILE_ALIASES:
        packaged = default_head_file(alias)
        assert packaged == PACKAGED_HEADS_DIR / f"{alias}.json"
        assert packaged.read_bytes() == (CHECKED_IN / f"{alias}.json").read_bytes(), (
            f"{packaged} differs from results/heads/{alias}.json; copy the detected file over the packaged one")


def test_heads_dir_override_replaces_the_packaged_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_HEADS_DIR", str(tmp_path))
    assert default_heads_dir() == tmp_path and default_head_file("smollm2-135m") is None
    (tmp_path / "smollm2-135m.json").write_text(json.dumps({"top": 1, "heads": [["7-3", 1.0]]}))
    assert default_head_file("smollm2-135m") == tmp_path / "smollm2-135m.json"
    assert default_head_file("minilm") is None  # only the aliases of HEAD_FILE_ALIASES have default head files


@pytest.mark.parametrize("alias", HEAD_FILE_ALIASES)
def test_shipped_head_file_is_the_default_and_fits_the_model(alias: str) -> None:
    try:
        locate_alias_files(ALIAS_TABLE[alias])
    except HarnessError as exc:
        pytest.skip(f"{alias} not installed ({exc})")
    path = default_head_file(alias)
    assert path is not None
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
    # the recipes' explicit spelling resolves to the same heads under the same name
    explicit = resolve_heads(str(CHECKED_IN / f"{alias}.json"), shape)
    assert (explicit.name, explicit.heads) == (default.name, default.heads)
