"""``harness bench generation`` on a tiny workload: writes its record, and the cache check is real."""

from __future__ import annotations

import argparse
import json

import pytest

from harness.benchmarks import generation as bench
from harness.errors import HarnessError


def _args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args([])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


@pytest.mark.slow
def test_small_generation_benchmark_writes_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "bench" / "generation-cpu.json"
    assert bench.run(_args(prompts=3, max_tokens=4, batch_size=3, repeats=1, output=out)) == 0
    record = json.loads(out.read_text())
    assert record["prompts"] == 3 and record["cache"]["hits"] == 3 and record["device"] == "cpu"
    assert record["identical_answers"] == 3 and 0 < record["generated_tokens"] <= 12
    assert set(record["best_seconds"]) == {"batched", "one_by_one"} and record["machine"]["cores"] >= 1
    assert "cache hits" in out.with_suffix(".md").read_text() and "Batching speed-up" in capsys.readouterr().out


def test_bad_benchmark_options_are_one_line_errors():
    with pytest.raises(HarnessError, match="--prompts must be between 1 and 16"):
        bench.benchmark(n_prompts=99)
    with pytest.raises(HarnessError, match="--max-tokens must be at least 1"):
        bench.run(_args(max_tokens=0))
