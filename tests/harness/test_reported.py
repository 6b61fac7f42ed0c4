"""The paper's reported tables: entered once, consistent with the printed averages, valid, shown apart."""

from __future__ import annotations

import copy
import re
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
PROTOCOL = REPO / "docs" / "PROTOCOL.md"
SOURCE = "arXiv 2506.09944v2"
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
        if result["table"]["number"] == "2":  # also Table 2's NQ cells that Tables 7 and 8 print again
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
    # Table 2: 21 rows x 11 datasets; Table 1: 3 + 12 recall rows x 2 tasks, 21 rows x 4 accuracy cells, 3 x 2 full context;
    # analysis tables: 34 new cells (Table 3: 16, Table 5: 16 - 7 printed in Table 3 too, Table 6: 6, Table 8: 4;
    # Table 1 already holds Table 3's 8B QRHead LME cell, Table 2 Table 7's six and Table 8's two others).
    assert len(cells) == 231 + 30 + 84 + 6 + 34
    sources = {result["source"] for _, result in cells}
    assert sources == {f"{SOURCE}, Table {n}" for n in ("1", "2", "3", "5", "6", "8")} | {
        f"{SOURCE}, Tables 2, 7", f"{SOURCE}, Tables 2, 7, 8", f"{SOURCE}, Tables 1, 3", f"{SOURCE}, Tables 3, 5"
    }
    for path, result in cells:
        assert validate_result(result, path) == []
        assert result["kind"] == "reported"
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

    # Toy folders are local data: a variant of beir/nq, in a table of its own, never beside the
    # paper's rows and never averaged with them.
    section = markdown.split("### beir/nq [local data nq]\n", 1)[1].split("\n### ", 1)[0]
    measured_part = section
    assert measured_part.count("| bm25 |") == 1 and "Llama" not in measured_part
    assert "Reported" not in measured_part

    # Reported rows form the family's datasets x retrievers matrix (the paper's Table 2); the
    # family has no measured summary, since no measured row ran on the paper's data.
    family = markdown.split("## beir\n", 1)[1].split("\n### ", 1)[0]
    measured_summary, reported_part = family.split("Reported by arXiv 2506.09944v2 (not measured here)")
    assert "| bm25 |" not in measured_summary
    reported_lines = [line for line in reported_part.splitlines() if line.startswith("| ") and "Retriever" not in line]
    assert len(reported_lines) == 21 + 4  # Table 2's rows, and Table 8's 64/256 (8B) and 128/512 (70B) heads on NQ
    by_label = {line.split(" | ")[0].lstrip("| "): [c.strip() for c in line.strip("|").split("|")] for line in reported_lines}
    header = [c.strip() for c in next(line for line in reported_part.splitlines() if "Retriever" in line).strip("|").split("|")]
    assert by_label["qr (meta-llama/Llama-3.1-8B-Instruct, heads nq)"][header.index("nq")] == "58.6"
    assert by_label["bm25"][header.index("nq")] == "30.5"

    nq_measured = next(r for r in measured.values() if r["task"]["id"] == "beir/nq")
    assert f"{100 * nq_measured['metrics']['nDCG@10']:.1f}" in measured_part
    csv_lines = csv_text.splitlines()
    assert sum(1 for line in csv_lines if line.startswith("reported,")) == 351 + 34
    assert sum(1 for line in csv_lines if line.startswith("measured,")) == 2
    # the plot shows measured rows only
    assert {p["task"] for p in plot} == {"beir/nq [local data nq]", "beir/scifact [local data scifact]"}


# ------------------------------------------------------------------ analysis tables 3, 5, 6, 7, 8


def _protocol_section(heading: str) -> str:
    """One ``###`` section of docs/PROTOCOL.md, whitespace collapsed."""
    text = PROTOCOL.read_text(encoding="utf-8").split(f"### {heading}", 1)[1].split("\n### ", 1)[0]
    text = text.split("\n## ", 1)[0]
    return " ".join(text.split())


def _pairs(text: str, label: str) -> tuple[float, float, float, float]:
    """``label 47.5/85.5 | 31.9/83.2`` in §5.4: (8B BEIR, 8B LME, Qwen BEIR, Qwen LME)."""
    match = re.search(re.escape(label) + r" (\d+\.\d)/(\d+\.\d) \| (\d+\.\d)/(\d+\.\d)", text)
    assert match, label
    return tuple(float(x) for x in match.groups())  # type: ignore[return-value]


def test_tables_3_and_5_match_docs_protocol(source) -> None:
    """Every value of Tables 3 and 5 is the one docs/PROTOCOL.md §5.4 states (8B | Qwen-7B, BEIR/LME)."""
    text = _protocol_section("5.4")
    for number, printed in (
        ("3", {"Random heads": "random", "All heads": "all heads", "RetHead": "RetHead", "QRHead": "QRHead"}),
        ("5", {"NQ": "NQ", "LongMem": "LongMem", "NIAH (QRscore)": "NIAH with QRscore", "RetHead": "RetHead"}),
    ):
        section = text.split(f"Table {number},", 1)[1]
        for method, label in printed.items():
            b8, l8, bq, lq = _pairs(section, label)
            for lm, beir, lme in (("8B", b8, l8), ("Qwen-7B", bq, lq)):
                row = f"{lm} {method}"
                assert source.value(number, row, "beir-avg-shuffled", "nDCG@10") == round(beir / 100, 6), row
                assert source.value(number, row, "longmemeval", "R@5") == round(lme / 100, 6), row
    # Spot values, as printed.
    assert source.value("3", "8B QRHead", "beir-avg-shuffled", "nDCG@10") == 0.475
    assert source.value("3", "Qwen-7B Random heads", "longmemeval", "R@5") == 0.572
    assert source.value("5", "8B LongMem", "longmemeval", "R@5") == 0.856
    assert source.value("5", "Qwen-7B NIAH (QRscore)", "beir-avg-shuffled", "nDCG@10") == 0.309


def test_table_6_matches_docs_protocol(source) -> None:
    text = _protocol_section("5.4").split("Table 6,", 1)[1]
    match = re.search(r"BEIR (\d+\.\d)/(\d+\.\d)/(\d+\.\d) \| (\d+\.\d)/(\d+\.\d)/(\d+\.\d)", text)
    assert match
    values = [float(x) for x in match.groups()]
    rows = [f"{lm} NQ set {i}" for lm in ("8B", "Qwen-7B") for i in (1, 2, 3)]
    for row, value in zip(rows, values):
        assert source.value("6", row, "beir-avg", "nDCG@10") == round(value / 100, 6), row
    assert source.value("6", "8B NQ set 3", "beir-avg", "nDCG@10") == 0.499
    # The top-64 overlaps are no retrieval metric: they travel in the rows' notes.
    overlap = re.search(r"top-64 heads (\d+/\d+/\d+) \| (\d+/\d+/\d+)", text)
    assert overlap
    t6 = source.tables_numbered("6")[0]
    for lm, printed in zip(("8B", "Qwen-7B"), overlap.groups()):
        for i in (1, 2, 3):
            assert printed in t6.row(f"{lm} NQ set {i}").note


def test_tables_7_and_8_match_docs_protocol(source) -> None:
    """§5.3: latency (s/query) with nDCG@10 in brackets, and heads -> NQ nDCG@10."""
    text = _protocol_section("5.3")
    for lm, heads in (("8B", "1024"), ("70B", "5120")):
        match = re.search(
            rf"\| {lm} \({heads} heads\) \| (\S+) \((\S+)\) \| (\S+) \((\S+)\) \| (\S+) \((\S+)\) \| (.*?) \|", text
        )
        assert match, lm
        *latencies, counts = match.groups()
        for i, method in enumerate(("RankGPT-Bubble", "ICR", "QRRetriever")):
            seconds, ndcg = float(latencies[2 * i]), float(latencies[2 * i + 1])
            row = f"{lm} {method}"
            assert source.value("7", row, "beir/nq", "seconds_per_query") == seconds, row  # not scaled
            assert source.value("7", row, "beir/nq", "nDCG@10") == round(ndcg / 100, 6), row
            assert source.value("2", row, "beir/nq", "nDCG@10") == round(ndcg / 100, 6), row  # the same runs
        for n, value in re.findall(r"(\d+) → \**(\d+\.\d)\**", counts):
            assert source.value("8", f"{lm} {n} heads", "beir/nq", "nDCG@10") == round(float(value) / 100, 6)
    assert source.value("8", "70B 512 heads", "beir/nq", "nDCG@10") == 0.61
    assert source.value("8", "8B 64 heads", "beir/nq", "nDCG@10") == 0.574
    assert source.value("7", "8B RankGPT-Bubble", "beir/nq", "seconds_per_query") == 14.5


def test_analysis_cells_name_their_variant_and_validate() -> None:
    """Every cell of Tables 3, 5, 6, 7, 8 validates, and the head set that differs is in heads_name."""
    cells = [(p, r) for p, r in _cells()
             if ({r["table"]["number"]} | {t["number"] for t in r["table"].get("also_in", [])}) & {"3", "5", "6", "7", "8"}]
    assert len(cells) == 34 + 1 + 6  # new cells, Table 1's 8B QRHead LME cell, Table 2's NQ cells printed in 7 and 8
    for path, result in cells:
        assert validate_result(result, path) == []
        assert all(0 <= v <= 1 for v in result["metrics"].values())
    heads = defaultdict(set)
    for _, r in cells:
        heads[(r["task"]["id"], r["retriever"]["model"])].add(r["retriever"].get("heads_name"))  # RankGPT: none
    llama8 = "meta-llama/Llama-3.1-8B-Instruct"
    assert heads[("beir-avg-shuffled", llama8)] == {"random", "full", "rethead", "nq", "lme", "niah-qrscore"}
    assert heads[("longmemeval", llama8)] == {"random", "full", "rethead", "nq", "lme", "lme-table5", "niah-qrscore"}
    assert heads[("beir-avg", llama8)] == {"nq-set1", "nq-set2", "nq-set3"}
    assert heads[("beir/nq", "meta-llama/Llama-3.1-70B-Instruct")] >= {"nq", "nq-top128", "nq-top512", "full"}
    shuffled = load_result(REPORTED / "beir-avg-shuffled" / "qr__Llama-3.1-8B-Instruct__nq__bm25200.json")
    assert shuffled["metrics"] == {"nDCG@10": 0.475} and shuffled["source"] == f"{SOURCE}, Tables 3, 5"
    assert shuffled["first_stage"] == {"name": "bm25", "depth": 200}


def test_rows_printed_in_two_tables_are_one_cell() -> None:
    # Table 7's latency rides on Table 2's NQ cell, unscaled and outside the metrics.
    nq = load_result(REPORTED / "beir" / "nq" / "rankgpt-bubble__Llama-3.1-70B-Instruct__bm25200.json")
    assert nq["source"] == f"{SOURCE}, Tables 2, 7"
    assert nq["metrics"] == {"nDCG@10": 0.584} and nq["timing"] == {"seconds_per_query": 63.9}
    assert nq["note"] == "Table 7: 63.9 s/query" and [t["number"] for t in nq["table"]["also_in"]] == ["7"]
    qr = load_result(REPORTED / "beir" / "nq" / "qr__Llama-3.1-8B-Instruct__nq__bm25200.json")
    assert qr["source"] == f"{SOURCE}, Tables 2, 7, 8" and qr["metrics"] == {"nDCG@10": 0.586}
    assert [t["row"] for t in qr["table"]["also_in"]] == ["8B QRRetriever", "8B 16 heads"]
    # Table 3's 8B QRHead LME value is Table 1's R@5 of the LME heads.
    lme = load_result(REPORTED / "longmemeval" / "qr__Llama-3.1-8B-Instruct__lme.json")
    assert lme["source"] == f"{SOURCE}, Tables 1, 3" and lme["metrics"] == {"R@5": 0.855, "R@10": 0.917}
    # Table 5 prints 85.6 for the same heads: kept apart, with the reason in its note.
    apart = load_result(REPORTED / "longmemeval" / "qr__Llama-3.1-8B-Instruct__lme-table5.json")
    assert apart["metrics"] == {"R@5": 0.856} and "85.5" in apart["note"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # Table 8's 16-head row is Table 2's 8B QRRetriever NQ cell: a different number is an error.
        (lambda y: _row(y, "8", "8B", "16 heads")["values"].__setitem__(0, 58.7),
         r"row '8B 16 heads' gives beir/nq/qr__Llama-3.1-8B-Instruct__nq__bm25200.json, which another row also gives"),
        # Table 5's 8B LongMem LME row, without its own heads name, clashes with Tables 1 and 3.
        (lambda y: _row(y, "5", "8B", "LongMem", task="longmemeval").pop("heads"), "prints R@5 0.855 there, this row 0.856"),
        # Two rows of one table must be different runs.
        (lambda y: _row(y, "3", "8B", "All heads", task="longmemeval").__setitem__("method", "All heads")
         or _row(y, "3", "8B", "Random heads", task="longmemeval").__setitem__("method", "All heads"), "lists row '8B All heads' twice"),
        # ("16 heads" and "32 heads" both name the published NQ set: one run, printed twice in one table.)
        (lambda y: _table(y, "8")["rows"].append({"lm": "8B", "method": "32 heads", "values": [58.6]}),
         "table 2 row '8B QRRetriever' of the same table"),
        (lambda y: _table(y, "7")["rows"][0]["values"].__setitem__(1, None), "has timing columns but no metric"),
    ],
)
def test_bad_analysis_tables_give_one_line_errors(tmp_path: Path, edit, message: str) -> None:
    raw = yaml.safe_load(TABLES.read_text())
    edit(raw)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(HarnessError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        expand(load_tables(path))
    assert "\n" not in str(info.value)


def test_leaderboard_shows_the_analysis_tables(tmp_path: Path) -> None:
    """The BEIR averages of Tables 3/5/6 are tasks of their own (not columns of the Table 2 matrix,
    whose rows keep their Avg); Table 8's head counts are rows of the NQ column."""
    results = tmp_path / "results"
    shutil.copytree(REPORTED, results / "reported")
    markdown, csv_text, _ = build(results)
    family = markdown.split("## beir\n", 1)[1].split("\n## ", 1)[0]
    matrix = [line for line in family.split("Reported by arXiv 2506.09944v2 (not measured here)", 1)[1].split("\n\n")[1]
              .splitlines() if line.startswith("| ") and "Retriever" not in line]
    assert len(matrix) == 21 + 4  # Table 2's rows, and 64/256 (8B) and 128/512 (70B) NQ heads of Table 8
    header = [c.strip() for c in next(line for line in family.splitlines() if "| Retriever" in line).strip("|").split("|")]
    assert "beir-avg" not in " ".join(header) and header[-1] == "Avg"
    by_label = {line.split(" | ")[0].lstrip("| "): [c.strip() for c in line.strip("|").split("|")] for line in matrix}
    assert by_label["qr (meta-llama/Llama-3.1-8B-Instruct, heads nq)"][-1] == "50.0"
    assert by_label["qr (meta-llama/Llama-3.1-70B-Instruct, heads nq-top512)"][header.index("nq")] == "61.0"
    assert by_label["qr (meta-llama/Llama-3.1-70B-Instruct, heads nq-top512)"][-1] == "–"
    shuffled = markdown.split("### beir-avg-shuffled\n", 1)[1].split("\n## ", 1)[0]
    assert shuffled.count("| qr (") == 12  # 6 head sets x 2 LMs (Tables 3 and 5)
    assert "| qr (meta-llama/Llama-3.1-8B-Instruct, heads random) | 37.5 |" in shuffled
    assert "| qr (Qwen/Qwen2.5-7B-Instruct, heads nq) | 31.9 | arXiv 2506.09944v2, Tables 3, 5 |" in shuffled
    table6 = markdown.split("### beir-avg\n", 1)[1].split("\n## ", 1)[0]
    assert table6.count("| qr (") == 6 and "| qr (meta-llama/Llama-3.1-8B-Instruct, heads nq-set3) | 49.9 |" in table6
    lme = markdown.split("### longmemeval\n", 1)[1].split("\n## ", 1)[0]
    assert "| qr (meta-llama/Llama-3.1-8B-Instruct, heads lme-table5) | – | 85.6 |" in lme
    assert sum(1 for line in csv_text.splitlines() if line.startswith("reported,")) == 351 + 34


def _table(raw: dict, number: str, task: str | None = None) -> dict:
    return next(t for t in raw["tables"] if t["table"] == number and (task is None or t["columns"][0]["task"] == task))


def _row(raw: dict, number: str, lm: str, method: str, task: str | None = None) -> dict:
    return next(r for r in _table(raw, number, task)["rows"] if r["lm"] == lm and r["method"] == method)
