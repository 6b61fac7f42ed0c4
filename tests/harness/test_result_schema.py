"""The Result class is the schema: every checked-in result file reads and writes back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.results import SCHEMA_VERSION, Result, result_files

RESULTS = Path(__file__).resolve().parents[2] / "results"
FILES = result_files(RESULTS)


def test_there_are_result_files() -> None:
    assert len(FILES) > 100


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(RESULTS)))
def test_every_result_file_round_trips(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    result = Result.from_json(path)
    assert json.loads(result.to_json()) == json.loads(text)
    assert list(json.loads(result.to_json())) == list(json.loads(text))  # key order kept (reported files)
    assert Result.from_dict(json.loads(result.to_json()), path) == result
    result.validate(path)


def test_every_measured_file_keeps_its_runs_and_command() -> None:
    """Schema 1 predates run files: no checked-in measured result may be one (all were re-run)."""
    measured = [(p, json.loads(p.read_text())) for p in FILES]
    measured = [(p, r) for p, r in measured if r["kind"] == "measured"]
    assert len(measured) > 50
    for path, obj in measured:
        assert obj["schema_version"] in (2, SCHEMA_VERSION) and obj["runs"]["ranking"]["file"], path
        assert obj["environment"]["command"].startswith("harness "), path


def test_version_1_files_take_the_main_metric_of_their_task() -> None:
    old = Result.from_dict({"schema_version": 1, "kind": "reported", "source": "x", "task": {"id": "niah"},
                            "retriever": {"name": "bm25", "params": {}}, "metrics": {"R@1": 0.5, "MAP": 0.1}})
    assert old.main_metric is None and old.declared_main_metric == "R@1" and old.ranked_by == "R@1"
    assert json.loads(old.to_json())["schema_version"] == 1  # reading never rewrites the version


def test_a_plugin_family_falls_back_to_the_base_main_metric() -> None:
    r = Result.from_dict({"schema_version": SCHEMA_VERSION, "kind": "reported", "source": "x",
                          "task": {"id": "not-a-family/x"}, "retriever": {"name": "bm25"}, "metrics": {"R@5": 1.0}})
    assert r.declared_main_metric == "nDCG@10" and r.ranked_by == "R@5"


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "expected a JSON object"),
        ({"kind": "measured"}, "missing field 'schema_version'"),
        ({"schema_version": "1", "kind": "reported"}, "must be an integer"),
        ({"schema_version": True, "kind": "reported"}, "must be an integer"),
        ({"schema_version": 99, "kind": "reported"}, "newer than this harness"),
        ({"schema_version": SCHEMA_VERSION, "kind": "guessed"}, "field 'kind' must be"),
        ({"schema_version": SCHEMA_VERSION, "kind": "reported", "source": "x", "task": "beir/nq",
          "retriever": {"name": "bm25"}, "metrics": {}}, "field 'task' must be an object"),
        ({"schema_version": SCHEMA_VERSION, "kind": "reported", "source": "x", "task": {},
          "retriever": {"name": "bm25"}, "metrics": {}}, "missing field task.'id'"),
    ],
)
def test_malformed_results_are_one_line_errors(obj: object, message: str) -> None:
    with pytest.raises(HarnessError, match=message):
        Result.from_dict(obj, "f.json")


def test_what_changes_the_numbers_changes_the_default_name() -> None:
    """A sample of the data, a local copy or a document cut never writes the full task's file."""
    from dataclasses import replace

    from harness.results import default_output_path

    base = Result.from_json(RESULTS / "clipper" / "qr__smollm2-135m__file_smollm2-135m.json")
    hub = replace(base, task=replace(base.task, source="hf:chtmp223/CLIPPER", extra={}))
    variants = {
        "sample, cut 300": base,
        "sample, cut 150": replace(base, truncate_words=150),
        "sample, no cut": replace(base, truncate_words=None),
        "hub data, cut 300": hub,
        "hub data, no cut": replace(hub, truncate_words=None),
    }
    names = {label: default_output_path(r, RESULTS).name for label, r in variants.items()}
    assert len(set(names.values())) == len(names), names
    assert names["sample, cut 300"] == "qr__smollm2-135m__file_smollm2-135m__2-books__cut300.json"
    assert names["hub data, no cut"] == "qr__smollm2-135m__file_smollm2-135m.json"


def test_checked_in_measured_results_have_distinct_default_names() -> None:
    from harness.results import default_output_path

    names: dict[Path, Path] = {}
    for path in FILES:
        result = Result.from_json(path)
        if result.kind == "measured" and result.retriever.name != "fusion":
            name = default_output_path(result, RESULTS)
            assert name not in names, f"{path} and {names[name]} both default to {name}"
            names[name] = path
    assert len(names) > 40


def test_checked_in_result_files_stay_small() -> None:
    """Runs are kept at their --run-depth (100 rows), not the 1000-row ranking MAP reads: the
    repository takes no file over 2 MiB (a full Cranfield run at depth 1000 is 2.7 MB gzipped)."""
    big = [p for p in RESULTS.rglob("*") if p.is_file() and p.stat().st_size > 2 * 1024 * 1024]
    assert not big, big
