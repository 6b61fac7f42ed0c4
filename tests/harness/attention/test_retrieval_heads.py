"""RetHead detection (``--objective retrieval-head``): the copy-paste score by hand, against a
plain loop on captured attention, the capture against eager attention, resume, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from harness.attention.heads import load_head_file
from harness.attention.retrieval_heads import (
    CopyDecoder,
    book_prompt,
    copy_hits,
    detect_retrieval_heads,
    needle_prompt,
    retrieval_scores,
)
from harness.errors import HarnessError
from harness.types import Document, Instance, Query

from .tiny import DOCS, tiny_model, tokenizer

NEEDLE = "The quick brown fox jumps over the lazy dog near the river bank."
ANSWER = "quick brown fox jumps over the lazy dog"


def _inst(qid: str = "q", docs: list[Document] | None = None, needle: str = NEEDLE) -> Instance:
    return Instance(Query(qid, "where does the fox jump?"), list(docs or DOCS), answer=needle)


def test_hand_built_case_one_copying_head_scores_one_and_non_copy_steps_do_not_count():
    #          0   1   2   3   4   5   6   7     needle span: positions 3..6 (tokens 20 21 22 23)
    context = [10, 20, 11, 20, 21, 22, 23, 12]
    span, n_l, n_h = (3, 7), 3, 4
    # steps: copy 20, copy 21, non-copy 99, non-copy 10 (a prompt token outside the needle), copy 22, copy 23
    generated = [20, 21, 99, 10, 22, 23]
    points = {  # where head (1, 2) looks at each step: always at the copied needle token
        0: 3, 1: 4, 2: 5, 3: 0, 4: 5, 5: 6,
    }
    attentions = []
    for s in range(len(generated)):
        keys = len(context) + s
        rows = torch.full((n_l, n_h, keys), 0.01)
        rows[:, :, keys - 1] = 0.5  # the others: the latest token (never a needle position)
        rows[0, 0, :] = 0.01
        rows[0, 0, 3 + (s + 1) % 4] = 0.5  # inside the needle, on the wrong token
        rows[2, 3, :] = 0.01
        rows[2, 3, 1] = 0.5  # token 20 outside the needle
        rows[1, 2, :] = 0.01
        rows[1, 2, points[s]] = 0.9
        attentions.append(rows)
    scores = retrieval_scores(attentions, generated, context, span)
    expected = torch.zeros((n_l, n_h), dtype=torch.float64)
    expected[1, 2] = 1.0  # 4 copies of the 4 needle tokens; steps 2 and 3 (non-copy) add nothing
    assert torch.equal(scores, expected)
    # the same head, credited only on copy steps: drop the last copy -> 3/4
    assert float(retrieval_scores(attentions[:5], generated[:5], context, span)[1, 2]) == 0.75
    with pytest.raises(HarnessError, match="not inside the prompt"):
        copy_hits(torch.zeros((1, n_l, n_h), dtype=torch.long), torch.tensor([20]), torch.tensor(context), (5, 9))


def _brute_force(rows: list[torch.Tensor], generated: list[int], context: list[int], span: tuple[int, int]) -> torch.Tensor:
    n_l, n_h = rows[0].shape[:2]
    out = torch.zeros((n_l, n_h), dtype=torch.float64)
    needle = context[span[0]:span[1]]
    for s, token in enumerate(generated):
        if token not in needle:
            continue
        for layer in range(n_l):
            for head in range(n_h):
                row = rows[s][layer, head].tolist()
                best = row.index(max(row))  # first maximum
                if span[0] <= best < span[1] and context[best] == token:
                    out[layer, head] += 1 / (span[1] - span[0])
    return out


def test_vectorised_scoring_equals_a_loop_on_captured_attention_of_a_tiny_model():
    model = tiny_model("llama", seed=1)
    inst = _inst()
    prompt = needle_prompt(tokenizer(), inst, book_prompt(inst), ANSWER)
    assert tokenizer().decode(prompt.ids[prompt.span[0]:prompt.span[1]]).strip() == ANSWER
    out = CopyDecoder(model, tokenizer()).decode(prompt.ids, prompt.max_new, keep_rows=True)
    assert out.rows is not None and len(out.rows) == len(out.generated) == out.argmax.shape[0] > 3
    p = len(prompt.ids)
    # the captured rows are eager attention's rows of the decoding queries, and the tokens its greedy path
    model.config._attn_implementation = "eager"
    full = model(input_ids=torch.tensor([prompt.ids + out.generated[:-1]]), output_attentions=True)
    for s, rows in enumerate(out.rows):
        ref = torch.stack([a[0, :, p - 1 + s, : p + s] for a in full.attentions])
        assert torch.allclose(ref, rows, atol=1e-5) and torch.equal(out.argmax[s], rows.argmax(dim=-1))
        assert int(full.logits[0, p - 1 + s].argmax()) == out.generated[s]
    # the model's own answer over the whole prompt as "needle", and tokens forced to what head (1, 2)
    # and head (0, 3) point at (so that heads get hits): vectorised == loop every time
    forced = [prompt.ids[min(int(out.argmax[s, 1 + s % 2, 2 + s % 2]), p - 1)] for s in range(len(out.generated))]
    for generated, span in ((out.generated, (0, p)), (forced, (0, p)), (forced, prompt.span)):
        fast = copy_hits(out.argmax, torch.tensor(generated), torch.tensor(prompt.ids), span)
        assert torch.allclose(fast, _brute_force(out.rows, generated, prompt.ids, span), atol=1e-12)
        assert torch.equal(fast, retrieval_scores(out.rows, generated, prompt.ids, span))
    assert float(copy_hits(out.argmax, torch.tensor(forced), torch.tensor(prompt.ids), (0, p)).max()) > 0


def test_detection_resumes_and_checks_every_prompt_first(tmp_path, monkeypatch):
    from harness.resume import ResumeFile

    model = tiny_model("qwen2", seed=2)
    instances = [_inst("a"), _inst("b", DOCS[::-1])]
    whole = detect_retrieval_heads(model, instances, tokenizer=tokenizer(), answer=ANSWER, top=5, show_progress=False)
    assert whole["n"] == 2 and whole["top"] == 5 and len(whole["heads"]) == 12
    assert whole["objective"] == "retrieval-head" and whole["scored_span"] == ANSWER
    scores = [s for _, s in whole["heads"]]
    assert scores == sorted(scores, reverse=True)
    path = tmp_path / "detect.jsonl"
    detect_retrieval_heads(model, instances[:1], tokenizer=tokenizer(), answer=ANSWER, resume=ResumeFile(path),
                           show_progress=False)
    calls = []
    original = CopyDecoder.decode
    monkeypatch.setattr(CopyDecoder, "decode", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    resumed = detect_retrieval_heads(model, instances, tokenizer=tokenizer(), answer=ANSWER, top=5,
                                     resume=ResumeFile(path), show_progress=False)
    assert calls == [1] and resumed["heads"] == whole["heads"] and resumed["steps"] == whole["steps"]
    # a bad prompt anywhere fails before the first answer is decoded
    calls.clear()
    missing = _inst("c", [Document("x", "no needle here")])
    with pytest.raises(HarnessError, match="query c: the needle is not found in the prompt"):
        detect_retrieval_heads(model, [instances[0], missing], tokenizer=tokenizer(), show_progress=False)
    long = _inst("d", [Document("l", " ".join(["fox"] * 2000) + " " + NEEDLE)])
    with pytest.raises(HarnessError, match=r"query d: the prompt has \d+ tokens, plus \d+ to answer"):
        detect_retrieval_heads(model, [instances[0], long], tokenizer=tokenizer(), show_progress=False)
    assert calls == []


@pytest.mark.slow
def test_cli_writes_a_head_file_that_heads_accepts(cli, tmp_path):
    heads = tmp_path / "H.json"
    grid = ["--task-set", "lengths=[200]", "--task-set", "depths=[50]"]
    done = cli("detect", "--objective", "retrieval-head", "--model", "smollm2-135m", "--task", "niah", *grid,
               "--output", str(heads))
    assert done.code == 0, done.err
    obj = json.loads(heads.read_text())
    assert obj["objective"] == "retrieval-head" and obj["model"] == "smollm2-135m" and obj["n"] == 1
    assert obj["grid"]["lengths"] == [200] and obj["grid"]["depths"] == [50.0] and obj["seed"] == 42
    assert obj["shape"] == {"layers": 30, "heads": 9, "kv_heads": 3} and len(obj["heads"]) == 270
    assert obj["copy_steps"] > 0 and obj["heads"][0][1] > 0.5  # SmolLM2 copies the needle here
    top, _ = load_head_file(heads)
    assert len(top) == obj["top"] == 16
    result = tmp_path / "run.json"
    ran = cli("run", "--task", "niah", "--retriever", "qr", "--model", "smollm2-135m", "--heads", str(heads), *grid,
              "--output", str(result))
    assert ran.code == 0, ran.err
    used = json.loads(result.read_text())["retriever"]["heads"]["list"]
    assert used == [f"{layer}-{h}" for layer, h in top]
    bad = cli("detect", "--objective", "retrieval-head", "--model", "smollm2-135m", "--task", "niah", *grid,
              "--max-layer", "3", "--output", str(tmp_path / "x.json"))
    assert bad.code == 2 and "--max-layer does not apply" in bad.err
