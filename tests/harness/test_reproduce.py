"""``harness reproduce``: recipes expand, run, and check result files from real runs."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from harness.cli import build_parser, parse_command
from harness.errors import HarnessError
from harness.registry import BUILTIN_RETRIEVERS
from harness.reported import load_tables
from harness.reproduce import check, load_recipes, select
from harness.results import load_result
from tests.harness.conftest import write_beir

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "reproduce" / "paper.yaml"


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A real BM25 run on a toy BEIR folder: (folder, result file, result)."""
    from harness.runner import RunConfig, execute

    root = tmp_path_factory.mktemp("repro")
    folder = write_beir(root / "toy")
    result, path = execute(
        RunConfig(task=str(folder), retriever="bm25", output=str(root / "out" / "toy-bm25.json"), show_progress=False)
    )
    return folder, path, result.to_dict()


def _recipe(tmp_path: Path, cells: list[dict], output: str, task: str = "beir/toy", **extra) -> Path:
    spec = {
        "version": 1,
        "conditions": [
            {
                "name": "toy-bm25",
                "table": "toy",
                "description": "BM25 on the toy folder",
                "tolerance": 0.0005,
                "command": "harness run --task {task} --retriever bm25 --output {output}",
                "output": output,
                "cells": [{"task": task, **c} for c in cells],
                **extra,
            }
        ],
    }
    path = tmp_path / "recipes.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_check_ok_with_the_measured_value(cli, measured, tmp_path: Path) -> None:
    _, path, result = measured
    ndcg, rmap = result["metrics"]["nDCG@10"], result["metrics"]["MAP"]
    recipes = _recipe(
        tmp_path,
        [{"metric": "nDCG@10", "expected": round(ndcg, 4)}, {"metric": "MAP", "expected": round(rmap, 4)}],
        str(path),
    )
    res = cli("reproduce", "--recipes", str(recipes), "--check")
    assert res.code == 0, res.out + res.err
    lines = res.out.splitlines()
    assert lines[0].split() == ["condition", "task", "metric", "expected", "tol", "measured", "diff", "status"]
    row = lines[1].split()
    assert row[:3] == ["toy-bm25", "beir/toy", "nDCG@10"] and row[-1] == "OK"
    assert row[5] == f"{ndcg:.4f}" and abs(float(row[6])) <= 0.00005
    assert lines[-1] == "2 OK"


def test_check_fails_outside_the_tolerance(cli, measured, tmp_path: Path) -> None:
    _, path, result = measured
    ndcg = result["metrics"]["nDCG@10"]
    recipes = _recipe(
        tmp_path,
        [
            {"metric": "nDCG@10", "expected": round(ndcg - 0.05, 4)},
            {"metric": "MAP", "expected": round(result["metrics"]["MAP"], 4)},
        ],
        str(path),
    )
    res = cli("reproduce", "--recipes", str(recipes), "--check")
    assert res.code == 1
    row = res.out.splitlines()[1].split()
    assert row[-1] == "FAIL" and float(row[6]) == pytest.approx(0.05, abs=1e-4)
    assert "1 OK, 1 FAIL" in res.out
    # Just inside the tolerance (0.0005) passes, just outside fails.
    for offset, code in ((0.0004, 0), (0.0007, 1)):
        recipes = _recipe(tmp_path, [{"metric": "nDCG@10", "expected": ndcg + offset}], str(path))
        assert cli("reproduce", "--recipes", str(recipes), "--check").code == code


def test_missing_file_and_pending_value(cli, measured, tmp_path: Path) -> None:
    _, path, _ = measured
    recipes = _recipe(tmp_path, [{"metric": "nDCG@10", "expected": 0.5}], str(tmp_path / "nowhere.json"))
    res = cli("reproduce", "--recipes", str(recipes), "--check")
    assert res.code == 0 and res.out.splitlines()[1].split()[-1] == "MISSING" and "1 MISSING" in res.out
    assert cli("reproduce", "--recipes", str(recipes), "--check", "--strict").code == 1
    recipes = _recipe(tmp_path, [{"metric": "nDCG@10", "expected": None}], str(path))
    res = cli("reproduce", "--recipes", str(recipes), "--check")
    assert res.code == 0 and res.out.splitlines()[1].split()[-1] == "PENDING"
    assert cli("reproduce", "--recipes", str(recipes), "--check", "--strict").code == 1


def test_tampered_or_reported_file_is_invalid(cli, measured, tmp_path: Path) -> None:
    _, _, result = measured
    bad = dict(result, metrics={**result["metrics"], "nDCG@10": result["metrics"]["nDCG@10"] + 0.1})
    bad_path = tmp_path / "bad.json"
    bad_path.write_text(json.dumps(bad))
    recipes = _recipe(tmp_path, [{"metric": "nDCG@10", "expected": round(bad["metrics"]["nDCG@10"], 4)}], str(bad_path))
    res = cli("reproduce", "--recipes", str(recipes), "--check")
    assert res.code == 1 and "INVALID" in res.out and "per-query values average" in res.out
    reported = tmp_path / "reported.json"
    reported.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "kind": "reported",
                "source": "x",
                "task": {"id": "beir/toy"},
                "retriever": {"name": "bm25", "params": {}},
                "metrics": {"nDCG@10": 0.5},
            }
        )
    )
    recipes = _recipe(tmp_path, [{"metric": "nDCG@10", "expected": 0.5}], str(reported))
    res = cli("reproduce", "--recipes", str(recipes), "--check")
    assert res.code == 1 and "not a measured one" in res.out


def test_run_mode_runs_the_command_then_checks(cli, measured, tmp_path: Path) -> None:
    """The default mode runs `harness run` in a subprocess; the fresh file matches the earlier run."""
    folder, _, result = measured
    recipes = _recipe(
        tmp_path,
        [{"metric": "nDCG@10", "expected": round(result["metrics"]["nDCG@10"], 6)}],
        "results/toy/bm25.json",
        task=str(folder),
    )
    work = tmp_path / "work"
    work.mkdir()
    res = cli("reproduce", "--recipes", str(recipes), "--root", str(work))
    assert res.code == 2 and "needs --table, --condition or --all" in res.err  # never runs everything by accident
    assert not (work / "results").exists()
    res = cli("reproduce", "--recipes", str(recipes), "--root", str(work), "--all")
    assert res.code == 0, res.out + res.err
    assert f"$ harness run --task {folder} --retriever bm25 --output results/toy/bm25.json" in res.err
    fresh = load_result(work / "results" / "toy" / "bm25.json")
    assert fresh["per_query"] == result["per_query"] and fresh["run_sha256"] == result["run_sha256"]
    assert res.out.splitlines()[1].split()[-1] == "OK"


def test_run_mode_reports_a_failing_command(cli, tmp_path: Path) -> None:
    recipes = _recipe(
        tmp_path, [{"metric": "nDCG@10", "expected": 0.5}], "out.json", task=str(tmp_path / "no-such-folder")
    )
    res = cli("reproduce", "--recipes", str(recipes), "--root", str(tmp_path), "--condition", "toy-*")
    assert res.code == 1
    assert "failed: harness run --task" in res.err and "MISSING" in res.out


def test_dry_run_and_list(cli, tmp_path: Path) -> None:
    recipes = _recipe(
        tmp_path,
        [{"metric": "nDCG@10", "expected": 0.5}, {"metric": "MAP", "expected": 0.4}],
        "results/{task}/bm25 x.json",
        task="beir/scifact",
        task_args={"beir/scifact": "--data $MY_DATA/scifact"},
    )
    res = cli("reproduce", "--recipes", str(recipes), "--dry-run")
    assert res.code == 0
    assert res.out.splitlines() == [
        "# toy-bm25 (table toy): BM25 on the toy folder",
        "harness run --task beir/scifact --retriever bm25 --output 'results/beir/scifact/bm25 x.json' --data $MY_DATA/scifact",
    ]  # one command per result file, output quoted for the shell
    res = cli("reproduce", "--recipes", str(recipes), "--list")
    assert res.out.strip() == "toy-bm25  [table toy]  2 cells over 1 tasks  - BM25 on the toy folder"
    res = cli("reproduce", "--dry-run", "--table", "2", "--condition", "t2-qr-8B")
    lines = res.out.splitlines()
    assert lines[1] == (
        "harness run --task beir/nq --retriever qr --model meta-llama/Llama-3.1-8B-Instruct --heads nq "
        "--first-stage bm25 --depth 200 --output results/beir/nq/qr__Llama-3.1-8B-Instruct__nq__bm25200.json"
    )
    assert len(lines) == 12 and lines[-1].endswith("--data ${HARNESS_BEIR_LICENSED}/trec-news")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"conditions": [{"name": "a", "output": "o.json", "tasks": ["x"], "metric": "m"}]}, "missing field 'command'"),
        (
            {
                "conditions": [
                    {
                        "name": "a",
                        "command": "harness run --task {task} --x {oops}",
                        "output": "o",
                        "tasks": ["x"],
                        "metric": "m",
                    }
                ]
            },
            "unknown template field {oops}",
        ),
        (
            {"conditions": [{"name": "a", "command": "python run.py", "output": "o", "tasks": ["x"], "metric": "m"}]},
            "command must start with 'harness '",
        ),
        ({"conditions": [{"name": "a", "command": "harness run", "output": "o"}]}, "no 'tasks' or 'cells'"),
        (
            {"conditions": [{"name": "a", "command": "harness run", "output": "o", "tasks": ["x"], "metric": "m"}] * 2},
            "condition name 'a' is used twice",
        ),
        (
            {
                "reported": str(REPO / "results/reported/arxiv-2506.09944v2.yaml"),
                "conditions": [
                    {
                        "name": "a-{lm}",
                        "for_lm": ["9B"],
                        "command": "harness run",
                        "output": "o",
                        "tasks": ["x"],
                        "metric": "m",
                    }
                ],
            },
            "for_lm '9B' is not a model",
        ),
        (
            {
                "reported": str(REPO / "results/reported/arxiv-2506.09944v2.yaml"),
                "conditions": [
                    {
                        "name": "a",
                        "expected_from": {"table": "2", "row": "8B QRRetriever"},
                        "command": "harness run",
                        "output": "o",
                        "tasks": ["beir/msmarco"],
                        "metric": "nDCG@10",
                    }
                ],
            },
            "table 2 has no cell for row '8B QRRetriever', task 'beir/msmarco'",
        ),
        (
            {
                "conditions": [
                    {
                        "name": "a",
                        "expected_from": {"table": "2", "row": "BM25"},
                        "command": "harness run",
                        "output": "o",
                        "tasks": ["beir/nq"],
                        "metric": "nDCG@10",
                    }
                ]
            },
            "needs a top-level 'reported'",
        ),
        ({"version": 2, "conditions": []}, "recipe version 2 is not supported"),
    ],
)
def test_bad_recipes_give_one_line_errors(cli, tmp_path: Path, spec: dict, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(HarnessError, match=message.replace("{", r"\{").replace("}", r"\}")):
        load_recipes(path)
    res = cli("reproduce", "--recipes", str(path), "--check")
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err


def test_unknown_table_is_an_error(cli) -> None:
    res = cli("reproduce", "--table", "9", "--check")
    assert res.code == 2 and "tables in the file: 1, 2, 3, 5, 6, 7, 8, offline" in res.err


# ------------------------------------------------------------------ the checked-in recipe file


@pytest.fixture(scope="module")
def conditions():
    return load_recipes(RECIPES)


#: Pseudo-tasks of the reported tables: a BEIR average the paper prints for no single dataset
#: (Tables 3, 5: shuffled candidates; Table 6). No run writes them; their recipes list the
#: per-dataset runs with no expected value.
AVERAGE_TASKS = ("beir-avg-shuffled", "beir-avg")


def test_every_reported_cell_has_a_recipe_with_the_reported_value(conditions) -> None:
    source = load_tables(REPO / "results" / "reported" / "arxiv-2506.09944v2.yaml")
    reported = {}
    averages = set()
    for table in source.tables:
        for row in table.rows:
            for column, value in zip(table.columns, row.values):
                if value is None or column.timing:  # Table 7's seconds per query: compared by hand
                    continue
                if column.task in AVERAGE_TASKS:
                    averages.add((table.number, row.label))
                    continue
                key = (table.number, row.label, column.task, column.metric, column.top_k, column.full_context)
                reported[key] = round(value / 100, 6)
    recipe = {}
    for cond in conditions:
        for cell in cond.cells:
            if cell.origin != "recipe":
                number, row = cell.origin.split(", Table ", 1)[1].split(", ", 1)
                assert number == cell.table, cell
                key = (cell.table, row, cell.task, cell.metric, cell.top_k, cell.full_context)
                assert key not in recipe, f"two recipe cells for {key}"
                recipe[key] = cell.expected
    assert recipe == reported  # every printed number is reproducible by exactly one recipe cell
    # Table 2, Table 1 (recall, accuracy, full context), Tables 3 and 5 (LME), Table 7 (nDCG@10), Table 8.
    assert len(recipe) == 231 + 15 * 4 + 21 * 4 + 3 * 2 + 8 + 8 + 6 + 6
    # A printed average has a condition per row that runs the eleven BEIR datasets (PENDING cells).
    assert len(averages) == 8 + 8 + 6
    for number, label in averages:
        runs = [c for c in conditions if f'"{label}"' in c.description and c.table in (number, "3")]
        assert len(runs) == 1, (number, label, [c.name for c in runs])
        assert sorted(cell.task for cell in runs[0].cells) == sorted(BEIR11)
        assert all(cell.expected is None for cell in runs[0].cells)


BEIR11 = [
    "beir/nq", "beir/trec-covid", "beir/nfcorpus", "beir/fiqa", "beir/scifact", "beir/scidocs", "beir/fever",
    "beir/climate-fever", "beir/dbpedia-entity", "beir/robust04", "beir/trec-news",
]


def test_analysis_recipes_use_the_new_flags(conditions) -> None:
    """Tables 3 and 5 re-rank shuffled candidates; Table 6 keeps Table 2's order; spot commands."""
    for cond in conditions:
        commands = [c for c, _ in cond.commands]
        if cond.name.startswith(("t3-beir-", "t5-beir-")):
            assert all("--shuffle-candidates 42 " in c and "--depth 200 " in c for c in commands), cond.name
        elif cond.table in ("6", "7", "8"):
            assert not any("--shuffle-candidates" in c for c in commands), cond.name
    (random,) = select(conditions, ["3"], ["t3-lme-random-8B"])
    output = "results/longmemeval/qr__Llama-3.1-8B-Instruct__random_16_0.json"
    command = ("harness run --task longmemeval --retriever qr --model meta-llama/Llama-3.1-8B-Instruct "
               f"--heads random:16:0 --output {output}")
    assert random.commands == [(command, output)]
    assert random.cells[0].expected == 0.598
    (top512,) = select(conditions, ["8"], ["t8-nq-512-70B"])
    assert top512.cells[0].expected == 0.61 and "--heads top:512:results/heads/Llama-3.1-70B-Instruct__nq.json" in top512.commands[0][0]
    assert "see t8-nq-128-70B" in top512.requires
    (top128,) = select(conditions, ["8"], ["t8-nq-128-70B"])
    assert "harness detect --model meta-llama/Llama-3.1-70B-Instruct --task beir/nq" in top128.requires
    (rethead,) = select(conditions, ["3"], ["t3-beir-rethead-Qwen-7B"])
    assert "--objective retrieval-head" in rethead.requires


def test_recipe_commands_parse_and_outputs_are_unique(conditions) -> None:
    parser = build_parser()
    outputs: dict[str, str] = {}
    for cond in conditions:
        for command, output in cond.commands:
            args = parser.parse_args(shlex.split(command)[1:])  # argparse exits on an unknown flag
            assert args.verb in ("run", "fuse") and args.output == output
            if args.verb == "fuse":  # fuses rows that recipes write
                assert all(any(path == o for c in conditions for _, o in c.commands) for path in args.results), command
                continue
            assert args.retriever in BUILTIN_RETRIEVERS, command
            assert outputs.setdefault(output, command) == command, f"{output} written by two commands"
            if cond.table in ("1", "2"):
                assert output.startswith(f"results/{args.task}/")
    assert len(select(conditions, ["2"])) == 1 + 4 * 4 + 4
    # BM25's paper row is on the full test sets, so its recipe must not sample 512 queries.
    bm25 = select(conditions, ["2"], ["t2-bm25"])[0]
    assert all("--max-queries 0" in c for c, _ in bm25.commands)


def test_every_checked_in_measured_result_has_a_recipe(conditions) -> None:
    """Each measured file under results/ is the output of a recipe that says how it was made."""
    from harness.results import result_files

    outputs = {o for c in conditions for _, o in c.commands}
    measured = [p.relative_to(REPO).as_posix() for p in result_files(REPO / "results")
                if json.loads(p.read_text()).get("kind") == "measured"]
    assert len(measured) > 40
    missing = sorted(set(measured) - outputs)
    assert not missing, f"{len(missing)} result files have no recipe, e.g. {missing[:5]}"


def test_offline_bm25_cells_reproduce_on_the_shared_data(cli, shared_data: Path, tmp_path: Path, monkeypatch) -> None:
    """Run the checked-in offline BM25 recipe for real (Cranfield, CACM) and check it: all OK."""
    monkeypatch.setenv("HARNESS_SHARED_DATA", str(shared_data))
    res = cli("reproduce", "--table", "offline", "--condition", "offline-bm25", "--root", str(tmp_path))
    assert res.code == 0, res.out + res.err
    statuses = [line.split()[-1] for line in res.out.splitlines()[1:-1]]
    assert statuses == ["OK"] * 6 and res.out.splitlines()[-1] == "6 OK"
    assert check(select(load_recipes(RECIPES), ["offline"], ["offline-bm25"]), tmp_path)[0].status == "OK"


#: Options that change how a command talks, not what it computes.
PRESENTATION = {"output", "no_progress", "verbosity", "debug", "func", "command_line"}


def _meaning(command: str) -> dict[str, object]:
    """What a recorded or recipe command computes: its parsed options, minus presentation."""
    return {k: v for k, v in vars(parse_command(command)).items() if k not in PRESENTATION}


def test_every_checked_in_result_was_made_by_its_recipe(conditions) -> None:
    """The command a measured file records is its recipe's command (up to ``--output`` and
    progress flags): a file that another command wrote under a recipe's output name fails."""
    from harness.results import result_files

    recipe = {o: c for cond in conditions for c, o in cond.commands}
    checked, wrong = 0, []
    for path in result_files(REPO / "results"):
        data = json.loads(path.read_text())
        command = (data.get("environment") or {}).get("command")
        name = path.relative_to(REPO).as_posix()
        if data.get("kind") != "measured" or not command or name not in recipe:
            continue
        checked += 1
        if _meaning(command) != _meaning(recipe[name]):
            wrong.append(f"{name}: made by `{command}`, recipe `{recipe[name]}`")
    assert checked > 40
    assert not wrong, "\n".join(wrong)


def test_commands_run_after_the_commands_whose_outputs_they_read(conditions) -> None:
    """``harness reproduce --table offline`` fuses rows only after re-running their inputs."""
    from harness.reproduce import in_dependency_order

    order = [(command, output) for _, command, output in in_dependency_order(conditions)]
    position = {output: i for i, (_, output) in enumerate(order)}
    fused = 0
    for i, (command, _) in enumerate(order):
        inputs = [t for t in shlex.split(command) if t in position and t != order[i][1]]
        assert all(position[t] < i for t in inputs), command
        fused += command.startswith("harness fuse")
    assert fused >= 4 and len(order) == sum(len(c.commands) for c in conditions)


def test_recipes_that_read_each_other_in_a_cycle_are_refused(tmp_path: Path) -> None:
    from harness.reproduce import in_dependency_order

    recipes = tmp_path / "r.yaml"
    recipes.write_text(yaml.safe_dump({"conditions": [
        {"name": "a", "table": "t", "command": "harness fuse b.json c.json --output {output}", "output": "a.json",
         "cells": [{"task": "cranfield", "metric": "nDCG@10", "expected": 0.1}]},
        {"name": "b", "table": "t", "command": "harness fuse a.json c.json --output {output}", "output": "b.json",
         "cells": [{"task": "cranfield", "metric": "nDCG@10", "expected": 0.1}]},
    ]}))
    with pytest.raises(HarnessError, match="cycle"):
        in_dependency_order(load_recipes(recipes))
