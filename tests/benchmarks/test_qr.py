"""``harness bench qr``: the JSON rows, the three methods on the same inputs, the naive path, ``--gpu``.

The workload is a 4-layer random Llama (``--random-config tiny-llama``, SmolLM2's tokenizer) at 256
tokens of Paul Graham essays, so the file runs in well under a minute; the timings themselves are
not asserted (the recorded benchmarks under ``results/bench/`` are).
"""

from __future__ import annotations

import argparse
import json

import pytest

from harness.attention.heads import ModelShape
from harness.attention.prompts import build_prompt, detect_template, tokenize_prompt
from harness.attention.reference import reference_head_scores
from harness.benchmarks import qr, qr_isolation, qr_measure
from harness.cli import main
from harness.errors import HarnessError
from harness.types import Document
from tests.harness.attention.tiny import DOCS, QUERIES, tiny_model, tokenizer

TINY = [
    "bench",
    "qr",
    "--random-config",
    "tiny-llama",
    "--heads",
    "full",  # the toy has no known QRHeads
    "--lengths",
    "256",
    "--device",
    "cpu",
    "--warmup",
    "0",
    "--threads",
    "1",
]


def _rows(capsys, argv: list[str]) -> list[dict]:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_json_rows_from_isolated_workers(capsys):
    """Each method in its own process: numbers for all three, same inputs, ours equals naive."""
    rows = _rows(capsys, [*TINY, "--methods", "ours,plain,naive", "--repeats", "1", "--queries", "1", "--json"])
    assert isinstance(rows, list) and len(rows) == 1
    row = rows[0]
    assert 200 < row["tokens"] <= 256 and row["target_tokens"] == 256 and row["documents"] >= 2
    for method in ("ours", "plain", "naive"):
        cell = row[method]
        assert set(cell) >= {"seconds", "tokens_per_s", "peak_mib"}, cell
        assert cell["seconds"] > 0 and cell["tokens_per_s"] == pytest.approx(row["tokens"] / cell["seconds"], rel=1e-2)
        # a fresh process holding torch, transformers and a tokenizer: hundreds of MiB, not a few
        assert 100 < cell["peak_mib"] < 4096
    assert row["ours_vs_naive_max_rel_diff"] < 1e-4 and row["ours_vs_naive_same_top10"] is True
    assert row["ours_time_vs_plain"] > 0 and row["naive_time_vs_ours"] > 0


def test_impossible_naive_reports_error_and_several_queries_are_measured(capsys, tmp_path):
    out = tmp_path / "qr.json"
    argv = [*TINY, "--isolate", "none", "--methods", "ours,naive", "--repeats", "1", "--queries", "3"]
    rows = _rows(capsys, [*argv, "--max-naive-gib", "0.0001", "--note", "tiny run", "--json", "--output", str(out)])
    row = rows[0]
    assert set(row["naive"]) == {"error"} and row["naive"]["error"].startswith("out of memory")
    assert "4 layers x 4 heads" in row["naive"]["error"]
    assert row["ours"]["seconds"] > 0 and row["ours_3_queries"]["seconds"] > 0 and row["queries_cost_ratio"] > 0
    assert "plain" not in row and "ours_vs_naive_max_rel_diff" not in row
    record = json.loads(out.read_text())
    assert record["rows"] == rows and record["heads"]["name"] == "full" and record["heads"]["max_layer"] == 3
    assert record["machine"]["cores"] >= 1 and record["isolate"] == "none" and record["notes"] == ["tiny run"]
    md = out.with_suffix(".md").read_text()
    assert "out of memory" in md and "3 queries cost" in md and "- tiny run" in md


@pytest.mark.parametrize("heads", [None, [(1, 3), (0, 1), (2, 0)]])
def test_naive_scores_equal_the_float64_reference(heads):
    model = tiny_model("llama")
    tok = tokenizer()
    template = detect_template(model.config, tok)
    all_heads = heads or [(layer, h) for layer in range(3) for h in range(4)]
    for query in QUERIES:
        ours = qr_measure.naive_scores(model, tok, template, DOCS, query, all_heads)
        ref = reference_head_scores(model, tok, template, DOCS, query, heads)
        assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-5


def test_context_fills_the_target_without_exceeding_it():
    tok = tokenizer()
    template = detect_template(tiny_model("llama").config, tok)
    words = [f"w{i % 37}" for i in range(1000)]
    docs = qr_measure.build_context(tok, template, 700, words, qr_measure.QUERIES, chunk_words=20)
    queries = [*qr_measure.QUERIES, qr_measure.NULL_QUERY]
    lengths = [len(tokenize_prompt(tok, build_prompt(template, docs, q))) for q in queries]
    assert max(lengths) <= 700
    # one more word (in the cut last chunk, or a new chunk) would not fit
    if len(docs[-1].text.split()) < 20:
        one_more = [*docs[:-1], Document(docs[-1].id, docs[-1].text + " w0")]
    else:
        one_more = [*docs, Document("x", "w0")]
    assert max(len(tokenize_prompt(tok, build_prompt(template, one_more, q))) for q in queries) > 700
    assert all(len(d.text.split()) == 20 for d in docs[:-1]) and [d.text.split()[0] for d in docs[:2]] == ["w0", "w20"]
    with pytest.raises(HarnessError, match="too short"):
        qr_measure.build_context(tok, template, 20, words, qr_measure.QUERIES)


def test_bad_options_are_one_line_errors():
    with pytest.raises(HarnessError, match="unknown method 'fast'"):
        qr.run(_args(methods="ours,fast"))
    with pytest.raises(HarnessError, match="--lengths 'abc'"):
        qr.run(_args(lengths="abc"))
    with pytest.raises(HarnessError, match="--repeats must be at least 1"):
        qr.run(_args(repeats=0))
    # a model without known QRHeads and no --heads: refused before any worker starts, never every head
    with pytest.raises(HarnessError, match=r"no --heads given and no known QRHeads .*'--heads full'") as error:
        qr.run(_args())
    assert "\n" not in str(error.value)


def test_a_failing_worker_becomes_an_error_cell():
    result = qr_isolation.run_isolated({"model": "no-such-model-xyz", "device": "cpu", "method": "ours", "tokens": 256}, 120)
    assert set(result) == {"error"} and "no-such-model-xyz" in result["error"] and "\n" not in result["error"]


def _args(**overrides):
    parser = argparse.ArgumentParser()
    qr.add_arguments(parser)
    args = parser.parse_args(["--random-config", "tiny-llama", "--device", "cpu"])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_naive_memory_estimate_is_layers_heads_tokens_squared_bytes():
    shape = ModelShape("llama", 30, 9, 3, 576)  # SmolLM2-135M
    assert qr_measure.naive_attention_gib(shape, 8192, 4) == pytest.approx(30 * 9 * 8192**2 * 4 / 2**30)  # 67.5 GiB
    assert qr_measure.naive_attention_gib(shape, 2048, 4) < 6 < qr_measure.naive_attention_gib(shape, 4096, 4)


def test_gpu_mode_refuses_without_cuda_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(HarnessError, match="--gpu needs a CUDA GPU") as error:
        qr.run(_args(gpu=True))
    assert "\n" not in str(error.value)
    assert main(["bench", "qr", "--gpu"]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_gpu_mode_settings_and_explicit_options_win(monkeypatch, tmp_path):
    """What ``--gpu`` runs on a GPU machine (checked here without one: CUDA is only claimed)."""
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setenv("OUT", str(tmp_path))
    parser = argparse.ArgumentParser()
    qr.add_arguments(parser)
    args = parser.parse_args(["--gpu"])
    qr.apply_gpu_mode(args)
    assert (args.random_config, args.heads, args.device, args.dtype) == ("llama-3.1-8b", "nq", "cuda", "bfloat16")
    assert (args.lengths, args.repeats, args.warmup, args.methods, args.queries) == (
        "32768,131072", 1, 1, "ours,plain,naive", 8
    )
    assert args.output == tmp_path / "qr-gpu.json" and args.isolate == "auto"  # auto is "none" on CUDA
    args = parser.parse_args(["--gpu", "--model", "m", "--lengths", "8192", "--repeats", "3", "--output", "x.json"])
    qr.apply_gpu_mode(args)
    assert (args.model, args.random_config, args.heads, args.lengths, args.repeats) == ("m", None, None, "8192", 3)
    assert str(args.output) == "x.json"
    with pytest.raises(HarnessError, match="not --device cpu"):
        qr.apply_gpu_mode(parser.parse_args(["--gpu", "--device", "cpu"]))
