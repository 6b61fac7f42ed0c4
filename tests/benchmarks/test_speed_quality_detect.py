"""``harness bench speed-quality`` detects through :func:`harness.head_detection.detect_head_file`, not
through the command line; the ``harness detect`` command it records in each head file must still be
the same detection (same options, so the same resume cache and the same heads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.benchmarks.speed_quality_detect import detect_argv, detection
from harness.benchmarks.speed_quality_settings import Settings
from harness.cli import build_parser
from harness.commands import detect as detect_command


@pytest.mark.parametrize("settings", [
    Settings(),
    Settings(model="m", task="t", data="d", n_queries=8, seed=1, depth=5, truncate_words=20, top=4,
             dtype="bfloat16", device="cuda", show_progress=True),
])
def test_the_recorded_command_is_the_detection_that_ran(settings: Settings, monkeypatch) -> None:
    out = Path("bench") / "heads-max-layer-3.json"
    argv = [*([] if settings.show_progress else ["--no-progress"]), *detect_argv(settings, 3, out)]
    seen = []
    monkeypatch.setattr(detect_command, "detect_head_file", lambda d: seen.append(d) or {})
    monkeypatch.setattr(detect_command, "summary", lambda head_file: "")
    args = build_parser().parse_args(argv)
    args.func(args)
    assert seen == [detection(settings, 3, out)]
