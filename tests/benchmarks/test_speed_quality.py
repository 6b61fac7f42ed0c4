"""``harness bench speed-quality`` on a tiny random model and a tiny BEIR folder, two values of L.

The model is the 8-layer random Llama of ``tests/harness/attention/tiny.py`` saved to a folder (so
detection, the ``qr`` runs and the timing all load it as users' models are loaded); the corpus is
``write_beir``'s. Checked: the record's structure and files, the held-out split, the detection's
layer cut, and that the cost ratio grows with L (layer 0 against layer 7 of 8: the prefix pass runs
one layer against all eight).
"""

from __future__ import annotations

import argparse
import json

import pytest

from harness.benchmarks import speed_quality as sq
from harness.errors import HarnessError
from tests.harness.attention.tiny import tiny_model, tokenizer
from tests.harness.conftest import write_beir

LAYERS = 8


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny-llama-8")
    tiny_model("llama", num_hidden_layers=LAYERS, hidden_size=128, intermediate_size=256).save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    return str(folder)


def _args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sq.add_arguments(parser)
    args = parser.parse_args([])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_two_layers_record_table_plot_and_growing_cost(tmp_path, tiny_folder, capsys):
    beir = write_beir(tmp_path / "toy")
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({"heads": [["6-1", 0.3], ["2-0", 0.2]], "top": 2}))
    out = tmp_path / "bench" / "speed-quality-tiny.json"
    args = _args(model=tiny_folder, task=str(beir), layers="0,7", n_queries=4, eval_queries=4, depth=5,
                 truncate_words=20, top=4, reference=str(reference), measure_prompts=2, repeats=3, threads=1,
                 device="cpu", output=out, json=True)
    assert sq.run(args) == 0
    record = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == record  # --json: the record alone on stdout

    assert record["num_layers"] == LAYERS and record["layers"] == [0, 7]
    low, high = record["points"]
    assert [low["max_layer"], high["max_layer"]] == [0, 7]
    assert low["deepest_layer"] == 0 and low["layers_run"] == 1 and all(h.startswith("0-") for h in low["heads"])
    assert len(low["heads"]) == len(high["heads"]) == 4 and high["deepest_layer"] <= 7
    for point in (low, high, record["reference"]):
        assert 0.0 <= point["ndcg@10"] <= 1.0 and point["ndcg@10"] == point["evaluation"]["value"]
        assert point["evaluation"]["n_queries"] == 4 and len(point["evaluation"]["per_query"]) == 4
        assert len(point["cost"]["best_seconds"]) == 2 and point["cost_ratio"] > 0
    head_file = json.loads((out.with_suffix("") / "heads-max-layer-0.json").read_text())
    assert head_file["max_layer"] == 0 and head_file["command"].startswith("harness detect ")
    assert record["detection"]["held_out_disjoint"] is True and record["detection"]["same_queries_as_reference"] is False
    assert record["reference"]["deepest_layer"] == 6 and record["reference"]["max_layer"] is None
    assert 0.0 < low["p_vs_deepest"] <= 1.0 and high["p_vs_deepest"] is None and record["reference"]["p_vs_deepest"] > 0
    assert record["baseline"]["retriever"] == "bm25" and 0.0 <= record["baseline"]["value"] <= 1.0
    assert record["paper"]["deepest_layer"] == 20 and record["paper"]["layers_run_fraction"] == 0.656
    assert record["machine"]["cores"] >= 1 and record["measurement"]["threads"] == 1
    assert all(p["tokens"] > 50 for p in record["measurement"]["prompts"])

    # the cost ratio grows with L: one layer of prefix against eight
    assert low["cost_ratio"] < high["cost_ratio"], (low["cost"], high["cost"])

    md = out.with_suffix(".md").read_text()
    assert "| detected, layers <= 0 | 0 | 1 (0.12) |" in md and "shipped (" in md and "Machine:" in md
    assert "| p vs layers <= 7 |" in md
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # resumed: the head files are reused (same command), the runs come from the cache
    args.json = False
    assert sq.run(args) == 0
    again = json.loads(out.read_text())
    assert all(p["detection"]["reused"] for p in again["points"])
    assert [p["ndcg@10"] for p in again["points"]] == [p["ndcg@10"] for p in record["points"]]


def test_bad_options_are_one_line_errors(tiny_folder):
    with pytest.raises(HarnessError, match="--layers '8,x'"):
        sq.settings_from_args(_args(layers="8,x"))
    with pytest.raises(HarnessError, match="--repeats must be at least 1"):
        sq.settings_from_args(_args(repeats=0))
    with pytest.raises(HarnessError, match=r"expected layer indices in 0\.\.7"):
        sq.benchmark(sq.Settings(model=tiny_folder, layers=(3, 8)))


def test_cli_target_name_and_defaults():
    from harness.cli import build_parser

    for name in ("speed-quality", "speed_quality"):
        args = build_parser().parse_args(["bench", name, "--layers", "8,16"])
        assert args.func is sq.run
        s = sq.settings_from_args(args)
        assert s.layers == (8, 16) and (s.n_queries, s.eval_queries, s.depth, s.truncate_words, s.top) == (32, 32, 10, 150, 16)
        assert s.seed == 42 and s.shuffle_candidates == 42 and s.reference == "auto"


def test_default_grid_and_paper_point():
    assert sq.default_layers(30) == [8, 12, 16, 20, 24, 29]
    assert sq.paper_point()["deepest_layer"] == 20
    points = [{"layers_run_fraction": 0.5, "cost_ratio": 0.5}, {"layers_run_fraction": 1.0, "cost_ratio": 1.0}]
    assert sq._interpolate(points, 0.75) == 0.75 and sq._interpolate(points, 0.25) is None
