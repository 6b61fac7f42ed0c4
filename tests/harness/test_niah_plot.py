"""NIAH heat-map: the grid puts each cell where it belongs; the PNG is valid and deterministic."""

from __future__ import annotations

import json
import math
import struct
import zlib

import pytest

from harness.cli import main as cli_main
from harness.errors import HarnessError
from harness.niah_plot import niah_grid, plot_heatmap

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _result(metric: str = "ROUGE-1-R") -> dict:
    per_query = {
        "L1000_D0": {metric: 1.0, "R@1": 1.0},
        "L1000_D50": {metric: 0.5, "R@1": 0.0},
        "L500_D100": {metric: 0.25, "R@1": 1.0},
        "L2000_D33.33": {metric: 0.0, "R@1": 0.0},
        "L500_D0": {metric: 0.75, "R@1": 1.0},
    }
    return {
        "per_query": per_query,
        "retriever": {"name": "bm25"},
        "task": {"id": "niah", "unit": "words"},
        "generation": {"full_context": False, "top_k": 3, "generator": {"model": "smollm2-135m"}},
    }


def test_grid_puts_each_value_in_its_cell():
    grid = niah_grid(_result())
    assert grid.lengths == [500, 1000, 2000]  # numeric order, not string order
    assert grid.depths == [0.0, 33.33, 50.0, 100.0]
    nan = math.nan
    expected = [
        [75.0, 100.0, nan],  # depth 0
        [nan, nan, 0.0],  # depth 33.33
        [nan, 50.0, nan],  # depth 50
        [25.0, nan, nan],  # depth 100
    ]
    for got_row, want_row in zip(grid.values, expected, strict=True):
        for got, want in zip(got_row, want_row, strict=True):
            assert (math.isnan(got) and math.isnan(want)) or got == want
    assert grid.mean == pytest.approx((75 + 100 + 0 + 50 + 25) / 5)


def test_metric_choice():
    r1 = niah_grid(_result(), "R@1")
    assert r1.metric == "R@1" and r1.values[0][:2] == [100.0, 100.0] and r1.values[2][1] == 0.0
    retrieval_only = _result()
    for values in retrieval_only["per_query"].values():
        del values["ROUGE-1-R"]
    assert niah_grid(retrieval_only, None).metric == "R@1"
    assert niah_grid(_result(), None).metric == "ROUGE-1-R"
    with pytest.raises(HarnessError, match="metric 'ROUGE-1-R' is not in per_query"):
        niah_grid(retrieval_only, "ROUGE-1-R")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["per_query"].update({"q7": {"ROUGE-1-R": 1.0}}), "'q7' is not a NIAH cell"),
        (lambda r: r["per_query"]["L500_D0"].pop("ROUGE-1-R"), r"per_query\['L500_D0'\] has no 'ROUGE-1-R'"),
        (lambda r: r["per_query"]["L500_D0"].update({"ROUGE-1-R": "high"}), "not a finite number"),
        (lambda r: r.update({"per_query": {}}), "'per_query' must be a non-empty object"),
    ],
)
def test_bad_result_files_are_one_line_errors(mutate, message):
    result = _result()
    mutate(result)
    with pytest.raises(HarnessError, match=message):
        niah_grid(result)


def test_file_errors(tmp_path):
    with pytest.raises(HarnessError, match="no such result file"):
        niah_grid(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"per_query": \n{')
    with pytest.raises(HarnessError, match=r"bad.json:2: not valid JSON"):
        niah_grid(bad)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == PNG_SIGNATURE
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def test_png_is_valid_deterministic_and_coloured_by_value(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "sub" / "b.png"
    plot_heatmap(_result(), a)
    path = tmp_path / "result.json"
    path.write_text(json.dumps(_result()))
    plot_heatmap(path, b)
    data = a.read_bytes()
    assert data == b.read_bytes()  # same grid, same bytes (from a dict or from the file)
    chunks = _png_chunks(data)
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    assert not any(b"Software" in body for kind, body in chunks if kind in (b"tEXt", b"iTXt", b"zTXt"))
    # a different value draws a different picture
    other = _result()
    other["per_query"]["L500_D0"]["ROUGE-1-R"] = 0.0
    c = tmp_path / "c.png"
    plot_heatmap(other, c)
    assert c.read_bytes() != data
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


def test_cli_plot_niah(tmp_path, capsys):
    path = tmp_path / "bm25__gen.json"
    path.write_text(json.dumps(_result()))
    assert cli_main(["plot", "niah", str(path), "--metric", "R@1"]) == 0
    assert (tmp_path / "bm25__gen.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "R@1, 3 lengths × 4 depths" in capsys.readouterr().out
    out = tmp_path / "heat.png"
    assert cli_main(["plot", "niah", str(path), "--output", str(out)]) == 0 and out.is_file()
    assert cli_main(["plot", "niah", str(path), "--metric", "accuracy"]) == 2
    assert "error: metric 'accuracy' is not in per_query" in capsys.readouterr().err
