"""``harness validate --answers``: the answer metrics a generation result reports are re-scored from
the answers it records and the task's gold answers; a tampered value, answer or data set fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.results import Result

REPO = Path(__file__).resolve().parents[2]
HOTPOT = REPO / "results" / "hotpotqa" / "bm25__q50-seed42__gen-smollm2-135m-top3.json"
NIAH = REPO / "results" / "niah" / "bm25__gen-smollm2-135m-top3.json"


def _copy(source: Path, folder: Path, shared_data: Path | None = None) -> tuple[Path, dict]:
    """The result and its run files in ``folder``; its data path reads the shared data where it is."""
    for sibling in source.parent.glob(source.name.removesuffix(".json") + ".*"):
        shutil.copy(sibling, folder / sibling.name)
    path = folder / source.name
    obj = json.loads(path.read_text())
    if shared_data is not None and str(obj["task"].get("source")).startswith("../shared/data"):
        obj["task"]["source"] = obj["task"]["source"].replace("../shared/data", str(shared_data))
    path.write_text(json.dumps(obj))
    return path, obj


def _rescore(path: Path) -> tuple[int, list[str]]:
    from harness.answers import rescore_answers

    return rescore_answers(Result.from_json(path), path)


GENERATION_RESULTS = sorted(p for p in (REPO / "results").rglob("*.json")
                            if p.parent.name != "reported" and '"records"' in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("source", GENERATION_RESULTS, ids=lambda p: p.relative_to(REPO / "results").as_posix())
def test_every_checked_in_answer_rescores_to_its_value(shared_data: Path, tmp_path: Path, source: Path) -> None:
    path, obj = _copy(source, tmp_path, shared_data)
    assert _rescore(path) == (len(obj["generation"]["records"]), [])


def test_there_are_generation_results_of_three_families() -> None:
    assert {p.parent.name for p in GENERATION_RESULTS} >= {"hotpotqa", "clipper", "niah"}


def _wrong_em(obj: dict) -> None:
    """Flip one query's EM and keep the mean consistent: the plain checks cannot see it."""
    q = next(q for q, v in obj["per_query"].items() if v["EM"] == 0.0)
    obj["per_query"][q]["EM"] = 1.0
    obj["metrics"]["EM"] = sum(v["EM"] for v in obj["per_query"].values()) / len(obj["per_query"])


def _answer_edited(obj: dict) -> None:
    """An answer edited after scoring: the recorded output no longer earns its recorded scores."""
    record = next(r for r in obj["generation"]["records"] if obj["per_query"][r["query_id"]]["F1"] > 0)
    record["output"] = "zzz unrelated words"


@pytest.mark.parametrize(("mutate", "message"), [
    (_wrong_em, "recorded answer scores 0.0"),
    (_answer_edited, "but its recorded answer scores"),
    (lambda obj: obj["task"]["sha256"].update({"hotpot_dev_distractor_v1.json": "0" * 64}), "not the data the result"),
    (lambda obj: obj["task"].update(source="/nowhere/hotpot_dev_distractor_v1.json"), "cannot load its task data"),
])
def test_tampered_answers_or_data_fail(shared_data: Path, tmp_path: Path, mutate, message: str) -> None:
    path, obj = _copy(HOTPOT, tmp_path, shared_data)
    mutate(obj)
    path.write_text(json.dumps(obj))
    Result.from_json(path).validate(path)  # the plain checks pass ...
    with pytest.raises(HarnessError, match=message):
        _rescore(path)  # ... the re-scoring does not


def test_validate_answers_on_the_command_line(cli, shared_data: Path, tmp_path: Path) -> None:
    path, obj = _copy(HOTPOT, tmp_path, shared_data)
    res = cli("validate", "--answers", str(path))
    assert res.code == 0 and "50 recorded answers re-scored: same values" in res.out, res.out + res.err
    _wrong_em(obj)
    path.write_text(json.dumps(obj))
    assert cli("validate", str(path)).code == 0  # without --answers the answers are not read
    res = cli("validate", "--answers", str(path))
    assert res.code == 2 and res.err.count("\n") == 1 and "recorded answer scores" in res.err, res.err


def test_a_file_never_names_code_to_import(shared_data: Path, tmp_path: Path) -> None:
    """A task named ``module:Class`` in a result's spec is refused before anything is imported,
    unless the user passes --trust-code; the module never runs."""
    from harness.spec import RunSpec

    marker = tmp_path / "ran"
    (tmp_path / "evil_task_module.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    path, obj = _copy(HOTPOT, tmp_path, shared_data)
    spec = RunSpec.derive(Result.from_json(path)).to_dict()
    obj["spec"] = {**spec, "task": "evil_task_module:Task"}
    path.write_text(json.dumps(obj))
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(HarnessError, match="not a registered task name"):
            _rescore(path)
        assert not marker.exists()
        from harness.answers import rescore_answers

        with pytest.raises(HarnessError):  # trusted: imported (and then it is no Task)
            rescore_answers(Result.from_json(path), path, trust_code=True)
        assert marker.exists()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("evil_task_module", None)
