"""`harness heads compare`: top-K overlap, rank correlation and the heat map, on hand-made head files."""

from __future__ import annotations

import json
import math
import re

import pytest

from harness.attention.head_analysis import HeadScores, compare, overlap, rank_correlation, score_grid
from harness.errors import HarnessError

CELLS = [(layer, h) for layer in range(3) for h in range(4)]  # 3 layers x 4 heads, layer-major


def _file(tmp_path, name, scores, **extra):
    """A head file listing ``scores`` ({(layer, head): score}) best first, as `harness detect` does."""
    ranked = sorted(scores, key=lambda c: (-scores[c], c))
    obj = {"model": "tiny", "objective": "ndcg", "data": "toy", "n": 3, "shape": {"layers": 3, "heads": 4, "kv_heads": 2},
           "top": 2, "heads": [[f"{c[0]}-{c[1]}", scores[c]] for c in ranked], **extra}
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def files(tmp_path):
    base = {c: float(12 - i) for i, c in enumerate(CELLS)}  # 0-0 best ... 2-3 worst
    swapped = dict(base)
    swapped[(0, 0)], swapped[(0, 1)] = base[(0, 1)], base[(0, 0)]  # one adjacent pair swapped
    reverse = {c: -s for c, s in base.items()}
    lower = {c: s for c, s in base.items() if c[0] <= 1}  # a --max-layer 1 detection
    return {
        "a": _file(tmp_path, "a.json", base),
        "b": _file(tmp_path, "b.json", swapped),
        "c": _file(tmp_path, "c.json", reverse),
        "d": _file(tmp_path, "d.json", lower, max_layer=1),
    }


def test_overlap_and_correlations_have_the_hand_computed_values(files):
    a, b, c, d = (HeadScores.read(files[k], k) for k in "abcd")
    assert a.ranked()[:3] == [(0, 0), (0, 1), (0, 2)] and b.ranked()[:2] == [(0, 1), (0, 0)]
    assert overlap(a, b, 1) == 0 and overlap(a, b, 2) == 2 and overlap(a, b, 12) == 12
    assert overlap(a, c, 4) == 0 and overlap(a, c, 6) == 0 and overlap(a, c, 7) == 2
    ab = rank_correlation(a, b)
    # one adjacent swap among n = 12: rho = 1 - 6*2/(12*143), tau = (65 - 1)/66
    assert ab.n == 12 and ab.spearman == pytest.approx(1 - 12 / 1716) and ab.kendall == pytest.approx(64 / 66)
    ac = rank_correlation(a, c)
    assert ac.spearman == pytest.approx(-1.0) and ac.kendall == pytest.approx(-1.0)
    ad = rank_correlation(a, d)  # only the cells both score
    assert ad.n == 8 and ad.spearman == pytest.approx(1.0) and ad.kendall == pytest.approx(1.0)
    rows = compare([a, b, c], 2)
    assert [(r.a, r.b, r.overlap) for r in rows] == [("a", "b", 2), ("a", "c", 0), ("b", "c", 0)]
    grid = score_grid(d)
    assert grid[0][0] == 12.0 and grid[1][3] == 5.0 and all(math.isnan(v) for v in grid[2])  # layer 2: NaN


def test_bad_head_files_and_top_are_one_line_errors(files, tmp_path):
    a = HeadScores.read(files["a"])
    with pytest.raises(HarnessError, match=r"--top 13: .*a.json scores 12 heads"):
        a.top(13)
    bad = tmp_path / "bad.json"
    for heads, message in [([["0-0", "x"]], "must be \\['layer-head', finite score\\]"),
                           ([["0-0", 1.0], ["0-0", 2.0]], "listed twice"),
                           ([["0_0", 1.0]], "not a 'layer-head' pair"),
                           ([], "non-empty list")]:
        bad.write_text(json.dumps({"heads": heads}))
        with pytest.raises(HarnessError, match=message) as err:
            HeadScores.read(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(HarnessError, match="head file .*nope.json not found"):
        HeadScores.read(tmp_path / "nope.json")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"shape": {"layers": 4, "heads": 4}, "heads": [["3-0", 1.0], ["0-0", 0.5]]}))
    with pytest.raises(HarnessError, match=r"different shapes cannot be compared \(a 3x4, o 4x4\)"):
        compare([HeadScores.read(files["a"], "a"), HeadScores.read(other, "o")], 2)


def test_cli_prints_the_table_and_draws_a_deterministic_heat_map(cli, files, tmp_path):
    png = tmp_path / "fig" / "a.png"
    res = cli("heads", "compare", str(files["a"]), str(files["b"]), str(files["d"]), "--top", "2",
              "--heatmap", str(png))
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0].startswith("a.json: tiny, ndcg on toy, n=3, 12 of 3x4 heads scored")
    assert "8 of 3x4 heads scored" in lines[2]
    header, *rows = lines[3:]
    assert header.split() == ["A", "B", "overlap@2", "share", "spearman", "kendall", "cells"]
    assert rows[0].split() == ["a.json", "b.json", "2/2", "1.000", "0.993", "0.970", "12"]
    assert rows[1].split() == ["a.json", "d.json", "2/2", "1.000", "1.000", "1.000", "8"]
    first = png.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and b"Software" not in first
    assert cli("heads", "compare", str(files["a"]), "--top", "2", "--heatmap", str(png)).code == 0
    assert png.read_bytes() == first


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{a}"], "at least two head files"),
        (["{a}", "{b}", "--top", "20"], "--top 20: a.json scores 12 heads"),
        (["{a}", "{missing}"], "head file .*missing.json not found"),
        (["{a}", "{b}", "--top", "0"], "--top 0"),
    ],
)
def test_cli_errors_are_one_line(cli, files, tmp_path, args, message):
    args = [x.format(a=files["a"], b=files["b"], missing=tmp_path / "missing.json") for x in args]
    res = cli("heads", "compare", *args)
    assert res.code == 2
    assert len(res.err.strip().splitlines()) == 1
    assert re.search(message, res.err), res.err
