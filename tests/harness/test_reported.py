"""The paper's reported tables: entered once, consistent with the printed averages, valid, shown apart."""

from __future__ import annotations

import copy
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.leaderboard import build
from harness.reported import expand, load_tables, out_of_sync, row_average, write_cells
from harness.results import load_result, validate_result
from harness.runner import RunConfig, execute
from tests.harness.conftest import write_beir

REPO = Path(__file__).resolve().parents[2]
TABLES = REPO / "results" / "reported" / "arxiv-2506.09944v2.yaml"
REPORTED = REPO / "results" / "reported"
TABLE2_TASKS = [
    "beir/nq",
    "beir/trec-covid",
    "beir/nfcorpus",
    "beir/fiqa",
    "beir/scifact",
    "beir/scidocs",
    "beir/fever",
    "beir/climate-fever",
    "beir/dbpedia-entity",
    "beir/robust04",
    "beir/trec-news",
]


@pytest.fixture(scope="module")
def source():
    return load_tables(TABLES)


def _cells() -> list[tuple[Path, dict]]:
    return [(p, load_result(p)) for p in sorted(REPORTED.rglob("*.json"))]


def test_every_row_average_matches_its_printed_avg(source) -> None:
    rows = [(t.number, r) for t in source.tables for r in t.rows if r.avg is not None]
    assert len(rows) == 21  # every Table 2 row prints an Avg
    for number, row in rows:
        mean = row_average(row)
        assert mean is not None and len(row.values) == 11
        assert abs(mean - row.avg) <= 0.05, f"table {number} row {row.label}: mean {mean:.3f} vs Avg {row.avg}"


def test_checked_in_cells_reproduce_the_row_averages(source) -> None:
    """The averages hold on the JSON files the leaderboard reads, not only on the YAML."""
    by_row: dict[str, dict[str, float]] = defaultdict(dict)
    for _, result in _cells():
        if result["source"].endswith("Table 2"):
            by_row[result["table"]["row"]][result["task"]["id"]] = result["metrics"]["nDCG@10"]
    avgs = {r.label: r.avg for t in source.tables_numbered("2") for r in t.rows}
    assert set(by_row) == set(avgs)
    for label, values in by_row.items():
        assert sorted(values) == sorted(TABLE2_TASKS), label
        assert abs(100 * sum(values.values()) / 11 - avgs[label]) <= 0.05, label


def test_paper_claims_hold_on_the_entered_numbers(source) -> None:
    """docs/PROTOCOL.md §5.2: 8B QRRetriever is +3.7 over RankGPT-Bubble and +1.5 over ICR on the average."""
    t2 = source.tables_numbered("2")[0]
    qr = t2.row("8B QRRetriever").avg
    assert qr - t2.row("8B RankGPT-Bubble").avg == pytest.approx(3.7)
    assert qr - t2.row("8B ICR").avg == pytest.approx(1.5)
    # Table 1: more than 10 points over full context with 8B (LME 46.5 -> 60.2, CLIPPER 31.3 -> 47.6).
    assert source.value("1", "8B QRRetriever", "longmemeval", "accuracy", top_k=10) == 0.602
    assert source.value("1", "8B Full context", "longmemeval", "accuracy", full_context=True) == 0.465
    assert source.value("1", "8B QRRetriever", "clipper", "accuracy", top_k=3) == 0.476
    assert source.value("1", "8B Full context", "clipper", "accuracy", full_context=True) == 0.313


def test_cells_are_valid_sourced_fractions() -> None:
    cells = _cells()
    # Table 2: 21 rows x 11 datasets; Table 1: 3 + 12 recall rows x 2 tasks, 21 rows x 4 accuracy cells, 3 x 2 full context.
    assert len(cells) == 231 + 30 + 84 + 6
    for path, result in cells:
        assert validate_result(result, path) == []
        assert result["kind"] == "reported"
        assert result["source"] in ("arXiv 2506.09944v2, Table 1", "arXiv 2506.09944v2, Table 2")
        assert "per_query" not in result
        for value in result["metrics"].values():
            assert 0 <= value <= 1  # stored as fractions, like measured metrics
    nq_qr = load_result(REPORTED / "beir" / "nq" / "qr__Llama-3.1-8B-Instruct__nq__bm25200.json")
    assert nq_qr["metrics"] == {"nDCG@10": 0.586}
    assert nq_qr["retriever"]["heads_name"] == "nq" and nq_qr["first_stage"] == {"name": "bm25", "depth": 200}
    lme = load_result(REPORTED / "longmemeval" / "qr__Llama-3.1-8B-Instruct__lme.json")
    assert lme["metrics"] == {"R@5": 0.855, "R@10": 0.917}
    acc = load_result(REPORTED / "clipper" / "bm25__gen-Llama-3.1-70B-Instruct-top5.json")
    assert acc["metrics"] == {"accuracy": 0.665} and acc["generation"]["top_k"] == 5


def test_checked_in_cells_are_in_sync_with_the_tables() -> None:
    assert out_of_sync(TABLES, REPORTED) == []


def test_regenerating_changes_nothing_and_removes_stale_cells(tmp_path: Path) -> None:
    out = tmp_path / "reported"
    write_cells(TABLES, out)
    first = {p: p.read_bytes() for p in out.rglob("*.json")}
    stale = out / "beir" / "nq" / "qr__old-model.json"
    stale.write_bytes(
        first[out / "beir" / "nq" / "qr__Llama-3.1-8B-Instruct__nq__bm25200.json"].replace(b"0.586", b"0.5")
    )
    (out / "beir" / "nq" / "bm25.json").write_text("{}")  # edited by hand: must be restored
    assert any("stale" in p for p in out_of_sync(TABLES, out))
    write_cells(TABLES, out)
    assert {p: p.read_bytes() for p in out.rglob("*.json")} == first


def test_reported_row_without_source_is_rejected(tmp_path: Path) -> None:
    good = load_result(REPORTED / "beir" / "nq" / "bm25.json")
    validate_result(good, "good.json")
    for mutate, message in (
        (lambda r: r.pop("source"), "missing field 'source'"),
        (lambda r: r.__setitem__("source", "  "), "empty 'source'"),
        (lambda r: r.pop("metrics"), "missing field 'metrics'"),
        (lambda r: r["metrics"].__setitem__("nDCG@10", "30.5"), "not a finite number"),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        with pytest.raises(HarnessError, match=message):
            validate_result(bad, tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda y: y.pop("source"), "missing field 'source'"),
        (lambda y: y["tables"][0]["rows"][3]["values"].pop(), "row '3B ICR' has 10 values for 11 columns"),
        (lambda y: y["tables"][0]["rows"][3].__setitem__("method", "ICR2"), "method 'ICR2' is not in 'methods'"),
        (lambda y: y["tables"][0]["rows"][3].__setitem__("lm", "9B"), "lm '9B' is not in 'models'"),
        (lambda y: y["tables"][0]["rows"][4].__setitem__("method", "ICR"), "lists row '3B ICR' twice"),
        (lambda y: y["tables"][0]["rows"][1]["values"].__setitem__(0, "30,0"), "value '30,0' is not a number"),
    ],
)
def test_bad_tables_give_one_line_errors(tmp_path: Path, edit, message: str) -> None:
    raw = yaml.safe_load(TABLES.read_text())
    edit(raw)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(HarnessError, match=message) as info:
        expand(load_tables(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_leaderboard_shows_reported_rows_apart_and_never_averages_them(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(REPORTED, results / "reported")
    # Real measured BM25 runs on two toy BEIR folders named like paper datasets (task ids beir/nq, beir/scifact).
    for name, seed in (("nq", 0), ("scifact", 1)):
        folder = write_beir(tmp_path / "data" / name, seed=seed)
        execute(RunConfig(task=str(folder), retriever="bm25", results_root=str(results), show_progress=False))
    measured = {p: load_result(p) for p in (results / "beir").rglob("*.json")}
    assert {r["task"]["id"] for r in measured.values()} == {"beir/nq", "beir/scifact"}
    markdown, csv_text, plot = build(results)

    section = markdown.split("### beir/nq\n", 1)[1].split("\n### ", 1)[0]
    measured_part = section
    assert measured_part.count("| bm25 |") == 1 and "Llama" not in measured_part
    assert "Reported" not in measured_part

    # Reported rows form the family's datasets x retrievers matrix (the paper's Table 2), apart
    # from the measured summary.
    family = markdown.split("## beir\n", 1)[1].split("\n### ", 1)[0]
    measured_summary, reported_part = family.split("Reported by arXiv 2506.09944v2 (not measured here)")
    reported_lines = [line for line in reported_part.splitlines() if line.startswith("| ") and "Retriever" not in line]
    assert len(reported_lines) == 21
    by_label = {line.split(" | ")[0].lstrip("| "): [c.strip() for c in line.strip("|").split("|")] for line in reported_lines}
    header = [c.strip() for c in next(line for line in reported_part.splitlines() if "Retriever" in line).strip("|").split("|")]
    assert by_label["qr (meta-llama/Llama-3.1-8B-Instruct, heads nq)"][header.index("nq")] == "58.6"
    assert by_label["bm25"][header.index("nq")] == "30.5"

    # The measured summary averages measured rows only: the measured bm25 covers 2 of the 11 tasks,
    # so it gets no Avg; mixing in the reported BM25 row (same label) would have filled all 11.
    bm25_line = next(line for line in measured_summary.splitlines() if line.startswith("| bm25 |"))
    cells = [c.strip() for c in bm25_line.strip("|").split("|")]
    assert cells[-1] == "–" and cells.count("–") == 1 + 9
    assert "Llama" not in measured_summary and "30.5" not in measured_summary

    nq_measured = next(r for r in measured.values() if r["task"]["id"] == "beir/nq")
    assert f"{100 * nq_measured['metrics']['nDCG@10']:.1f}" in measured_part
    csv_lines = csv_text.splitlines()
    assert sum(1 for line in csv_lines if line.startswith("reported,")) == 351
    assert sum(1 for line in csv_lines if line.startswith("measured,")) == 2
    assert {p["task"] for p in plot} == {"beir/nq", "beir/scifact"}  # the plot shows measured rows only
