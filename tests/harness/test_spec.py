"""A run's identity has one owner, :class:`harness.spec.RunSpec`: bound plug-in parameters are in
it, results record it as data, and the checked-in files' names, labels and variants come from it."""

from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.results import Result, result_files
from harness.spec import RunSpec, run_failures
from harness.types import Retriever

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"

PLUGIN = '''
from harness.types import Retriever


class Weighted(Retriever):
    """Word overlap plus ``weight`` times the document's length: no ``meta`` of its own."""

    name = "weighted"

    def __init__(self, weight: float = 0.0, show_progress: bool = True) -> None:
        self.weight = float(weight)

    def score(self, instances):
        for inst in instances:
            words = set(inst.query.text.lower().split())
            yield {d.id: len(words & set(d.text.lower().split())) + self.weight * len(d.text) / 100
                   for d in inst.candidates}
'''


@pytest.fixture
def plugin_module(tmp_path: Path):
    (tmp_path / "weighted_plugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(tmp_path))
    yield "weighted_plugin:Weighted"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("weighted_plugin", None)


def _run_rows(path: Path) -> list[str]:
    with gzip.open(path, "rt") as handle:
        return handle.read().splitlines()


def test_a_plugin_without_meta_gets_its_parameters_in_the_name_and_the_scores(
        cli, beir_dir: Path, tmp_path: Path, plugin_module: str) -> None:
    root = tmp_path / "results"
    written = []
    for weight in ("1", "5"):
        res = cli("run", "--task", str(beir_dir), "--retriever", plugin_module, "--depth", "20",
                  "--set", f"weight={weight}", "--results-root", str(root), "--allow-dirty")
        assert res.code == 0, res.err
        written = sorted(root.rglob("weighted*.json"))
    assert [p.name for p in written] == [
        "weighted__weight-1__bm2520__local-data-toy__cut400.json", "weighted__weight-5__bm2520__local-data-toy__cut400.json"]
    one, five = (Result.from_json(p) for p in written)
    assert one.retriever.params == {"weight": 1} and five.retriever.params == {"weight": 5}
    assert one.run_spec().label() == "weighted (weight=1, ≤400 words/doc)"
    assert one.run_spec().hash() != five.run_spec().hash()
    # Different parameters, different scores: the second run did not reuse the first one's resume file.
    assert _run_rows(written[0].with_suffix(".run.gz")) != _run_rows(written[1].with_suffix(".run.gz"))
    for path in written:
        assert Result.from_json(path).validate(path) == []


def test_bound_parameters_include_defaults_and_leave_out_options() -> None:
    class Two(Retriever):
        name = "two"

        def __init__(self, a: int = 1, b: str = "x", show_progress: bool = False, **extra: float) -> None:
            pass

        def score(self, instances):  # pragma: no cover
            yield from ()

    two = Two(a=2, show_progress=True, c=0.5)
    assert two.bound_params == {"a": 2, "b": "x", "c": 0.5}
    assert two.changed_params == {"a": 2, "c": 0.5}
    assert Two(a=1).changed_params == {}  # given, but equal to the default
    assert two.meta["params"] == two.bound_params


def _measured() -> list[Path]:
    return [p for p in result_files(RESULTS) if Result.from_json(p).kind == "measured"]


def test_every_checked_in_result_has_a_spec_that_round_trips() -> None:
    files = _measured()
    assert len(files) > 50
    for path in files:
        result = Result.from_json(path)
        spec = result.run_spec()
        assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec, path
        if result.spec is not None:  # schema 3: the recorded spec is the one its sections imply
            assert spec == RunSpec.derive(result), path


def test_labels_and_tables_of_checked_in_rows_are_the_leaderboards() -> None:
    """The spec names every row as the checked-in leaderboard does (label and table)."""
    board = {row["file"]: row for row in csv.DictReader((RESULTS / "leaderboard.csv").open(encoding="utf-8"))}
    for path in _measured():
        result = Result.from_json(path)
        row = board[path.relative_to(RESULTS).as_posix()]
        variant = result.variant
        assert row["task"] == (f"{result.task.id} [{variant}]" if variant else result.task.id), path
        if result.retriever.kind != "fusion":
            assert row["retriever"] == result.run_spec().label(run_failures(result.generation)), path


def test_the_niah_grid_is_part_of_the_variant() -> None:
    """Two NIAH set-ups (other lengths and depths) are different tables, never compared."""
    default = Result.from_json(RESULTS / "niah" / "bm25.json")
    other = Result.from_json(RESULTS / "niah" / "bm25__gen-smollm2-135m-top3.json")
    assert default.variant == ""
    assert other.variant == "depths=0/50/100, lengths=500/1000/2000"
    assert "depths-0_50_100__lengths-500_1000_2000" in other.run_spec().filename()


def test_a_spec_that_disagrees_with_its_sections_fails_validate(tmp_path: Path) -> None:
    source = RESULTS / "cranfield" / "bm25.json"
    obj = json.loads(source.read_text())
    for sibling in source.parent.glob("bm25.*"):
        (tmp_path / sibling.name).write_bytes(sibling.read_bytes())
    result = Result.from_dict(obj)
    obj["schema_version"] = 3
    obj["spec"] = RunSpec.derive(result).to_dict()
    path = tmp_path / "bm25.json"
    path.write_text(json.dumps(obj))
    Result.from_json(path).validate(path)
    for field, value in (("max_queries", 5), ("retriever", "dense"), ("task_params", {"k": 1})):
        path.write_text(json.dumps({**obj, "spec": {**obj["spec"], field: value}}))
        with pytest.raises(HarnessError, match=f"spec.{field} is"):
            Result.from_json(path).validate(path)
    del obj["spec"]
    path.write_text(json.dumps(obj))
    with pytest.raises(HarnessError, match="must record its 'spec'"):
        Result.from_json(path).validate(path)


@pytest.mark.parametrize(("obj", "message"), [
    ([], "must be an object"),
    ({"task": "x"}, "retriever: must be a non-empty string"),
    ({"task": "x", "retriever": "y", "colour": 1}, "unknown field 'colour'"),
    ({"task": "x", "retriever": "y", "generation": {"top_k": 3}}, "'generator' string"),
])
def test_malformed_specs_are_one_line_errors(obj, message: str) -> None:
    with pytest.raises(HarnessError, match=message):
        RunSpec.from_dict(obj)
