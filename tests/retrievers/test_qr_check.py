"""A prompt longer than the model's context stops a run before any query is scored."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.resume import ResumeFile, score_with_resume
from harness.retrievers.qr import QRRetriever
from harness.types import Document, Instance, Query
from tests.harness.attention.tiny import DOCS, tiny_model, tokenizer


def test_too_long_prompt_fails_before_the_first_query_is_scored(tmp_path):
    qr = QRRetriever.from_loaded(tiny_model("llama"), tokenizer(), heads="1-3,0-1", max_context=200,
                                 show_progress=False)
    long_docs = [Document("l1", " ".join(["fox"] * 400)), Document("l2", "Paris is in France.")]
    instances = [Instance(Query(f"q{i}", "fox?"), list(DOCS)) for i in range(3)]
    instances.append(Instance(Query("qlong", "fox?"), long_docs))
    resume = ResumeFile(tmp_path / "run.jsonl")
    with pytest.raises(HarnessError, match=r"query qlong: the prompt has \d+ tokens, more than the model's context"):
        score_with_resume(qr, instances, resume, show_progress=False)
    assert not resume.done and not (tmp_path / "run.jsonl").exists()
    # Without the long one, everything is scored.
    run = score_with_resume(qr, instances[:3], ResumeFile(tmp_path / "ok.jsonl"), show_progress=False)
    assert set(run) == {"q0", "q1", "q2"}
