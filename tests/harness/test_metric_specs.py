"""What a metric is, in one place: :mod:`harness.metric_specs` decides bounds, kinds, depth read,
columns and averaging, and a task's own metric works by declaring its spec."""

from __future__ import annotations

from typing import ClassVar

import pytest

from harness import metric_specs
from harness.errors import HarnessError
from harness.metric_specs import MetricSpec, lookup, recomputable, shown
from harness.registry import BUILTIN_TASKS
from harness.results import Result
from harness.types import Task, TaskData


class ToyTask(Task):
    family = "toyfam"
    metric_specs: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("citation_precision", "answer", description="share of cited passages that support the answer"),
    )

    def load(self) -> TaskData:  # pragma: no cover
        raise NotImplementedError


@pytest.mark.parametrize("name", ["nDCG@10", "R@100", "MRR@10", "MAP", "R_all@5", "accuracy/temporal", "EM", "F1",
                                  "ROUGE-1-R", "claim_accuracy", "parse_failure_rate", "missing_answer_tag"])
def test_fractions_are_bounded(name: str) -> None:
    spec = lookup(name)
    assert spec is not None and spec.in_bounds(1.0) and spec.in_bounds(0.0)
    assert not spec.in_bounds(1.5) and not spec.in_bounds(-0.1)


def test_depth_read_decides_what_a_kept_run_recomputes() -> None:
    assert recomputable("nDCG@10", 100, complete=False)
    assert not recomputable("R@1000", 100, complete=False)
    assert not recomputable("MAP", 100, complete=False) and recomputable("MAP", 100, complete=True)
    assert not recomputable("EM", 100, complete=True)  # an answer metric is not a function of the run
    assert not recomputable("parse_failure_rate", 100, complete=True)


def test_columns_leave_out_breakdowns_and_hidden_diagnostics() -> None:
    assert shown("nDCG@10") and shown("parse_failure_rate") and shown("a_plugin_metric")
    assert not shown("accuracy/temporal") and not shown("parse_none_rate") and not shown("rankgpt_windows")
    assert not shown("parse_invalid_ids") and not shown("parse_missing_ids")


def test_one_averaging_rule() -> None:
    from harness.metrics import aggregate
    from harness.results import mean_metrics

    per_query = {"q1": {"nDCG@10": 1.0}, "q2": {"nDCG@10": 0.0, "EM": 1.0}}
    assert mean_metrics is metric_specs.average
    assert aggregate(per_query, ["ndcg@10"]) == {"nDCG@10": 0.5}
    with pytest.raises(HarnessError, match="no per-query values"):
        aggregate(per_query, ["MAP"])


def test_a_task_declares_its_own_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTIN_TASKS, "toyfam", f"{__name__}:ToyTask")
    result = Result.from_dict({"schema_version": 2, "kind": "reported", "source": "a paper", "task": {"id": "toyfam"},
                               "retriever": {"name": "bm25", "params": {}},
                               "metrics": {"citation_precision": 0.5}})
    assert result.validate() == []
    assert lookup("citation_precision", result.metric_specs()).kind == "answer"
    result.metrics["citation_precision"] = 1.5
    with pytest.raises(HarnessError, match=r"outside \[0, 1\]"):
        result.validate()


def test_a_spec_of_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        MetricSpec("x", "vibes")
