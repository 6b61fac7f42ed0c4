"""The ``qr`` and ``icr`` retrievers: candidate order, shared contexts, bad input, real weights."""

from __future__ import annotations

import pytest
import torch

from harness.attention.prompts import detect_template
from harness.attention.reference import reference_head_scores
from harness.errors import HarnessError
from harness.registry import retriever_class
from harness.retrievers.qr import ICRRetriever, QRRetriever
from harness.types import Document, Instance, Query
from tests.harness.attention.tiny import DOCS, QUERIES, tiny_model, tokenizer

HEADS = "1-3,0-1,1-0"
HEAD_LIST = [(1, 3), (0, 1), (1, 0)]


@pytest.fixture(scope="module")
def llama():
    return tiny_model("llama")


def _instance(qid: str, text: str, docs=DOCS, **meta) -> Instance:
    return Instance(query=Query(qid, text), candidates=list(docs), meta=dict(meta))


def _ref(model, docs, query, heads=HEAD_LIST):
    template = detect_template(model.config, tokenizer())
    return reference_head_scores(model, tokenizer(), template, docs, query, heads)


def test_registry_names_the_classes():
    assert retriever_class("qr") is QRRetriever and retriever_class("icr") is ICRRetriever
    assert QRRetriever.kind == ICRRetriever.kind == "attention-head"


def test_candidates_are_fed_reversed_and_scored_exactly(llama):
    qr = QRRetriever.from_loaded(llama, tokenizer(), heads=HEADS, show_progress=False)
    (scores,) = qr.score([_instance("q1", QUERIES[0])])
    assert list(scores) == [d.id for d in reversed(DOCS)]
    ref = _ref(llama, list(reversed(DOCS)), QUERIES[0])
    ours = torch.tensor(list(scores.values()), dtype=torch.float64)
    assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-4


def test_natural_order_and_given_order_keep_the_candidates(llama):
    qr = QRRetriever.from_loaded(llama, tokenizer(), heads=HEADS, show_progress=False)
    (natural,) = qr.score([_instance("q1", QUERIES[0], order="natural")])
    given = QRRetriever.from_loaded(llama, tokenizer(), heads=HEADS, order="given", show_progress=False)
    (plain,) = given.score([_instance("q1", QUERIES[0])])
    assert list(natural) == list(plain) == [d.id for d in DOCS]
    ref = _ref(llama, DOCS, QUERIES[0])
    for got in (natural, plain):
        ours = torch.tensor(list(got.values()), dtype=torch.float64)
        assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-4


def test_claims_over_one_context_share_one_prefix_forward(llama):
    qr = QRRetriever.from_loaded(llama, tokenizer(), heads=HEADS, show_progress=False)
    calls = []
    hook = llama.model.layers[0].register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        claims = [_instance(f"c{i}", q, order="natural") for i, q in enumerate(QUERIES + ["the lazy dog"])]
        together = list(qr.score(claims))
    finally:
        hook.remove()
    assert len(calls) == 1 + 1 + 3  # one prefix, the null query, three claims
    alone = [next(qr.score([c])) for c in claims]
    for a, b in zip(together, alone):
        assert a.keys() == b.keys()
        assert all(abs(a[k] - b[k]) <= 1e-7 * max(1e-3, abs(b[k])) for k in a)


def test_empty_candidate_list_gives_empty_scores(llama):
    qr = QRRetriever.from_loaded(llama, tokenizer(), heads=HEADS, show_progress=False)
    out = list(qr.score([_instance("q0", "x", docs=[]), _instance("q1", QUERIES[0])]))
    assert out[0] == {} and len(out[1]) == len(DOCS)


def test_too_long_prompt_is_refused_unless_truncated(llama):
    long_docs = [Document("l1", " ".join(["fox"] * 400)), Document("l2", "Paris is in France.")]
    qr = QRRetriever.from_loaded(llama, tokenizer(), heads=HEADS, max_context=200, show_progress=False)
    with pytest.raises(
        HarnessError, match=r"query qlong: the prompt has \d+ tokens, more than the model's context of 200"
    ):
        list(qr.score([_instance("qlong", "fox?", docs=long_docs)]))
    short = QRRetriever.from_loaded(
        llama, tokenizer(), heads=HEADS, max_context=200, truncate_words=20, show_progress=False
    )
    (scores,) = short.score([_instance("qlong", "fox?", docs=long_docs)])
    assert set(scores) == {"l1", "l2"}
    # the model's own context length applies by default (1024 for the tiny models)
    default = QRRetriever.from_loaded(llama, tokenizer(), heads=HEADS, show_progress=False)
    with pytest.raises(HarnessError, match="more than the model's context of 1024"):
        list(default.score([_instance("q2", "fox?", docs=long_docs * 3)]))


def test_model_without_attention_interface_is_refused():
    import transformers as tf

    config = tf.GPTNeoConfig(
        vocab_size=len(tokenizer()),
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        attention_types=[[["global"], 2]],
        max_position_embeddings=512,
    )
    model = tf.GPTNeoForCausalLM(config).eval()
    with pytest.raises(HarnessError, match=r"model type 'gpt_neo' does not route attention"):
        QRRetriever.from_loaded(model, tokenizer(), heads="full", template="plain")
    # without the class flag (older transformers), the runtime check catches it
    model._supports_attention_backend = None
    qr = QRRetriever.from_loaded(model, tokenizer(), heads="full", template="plain", show_progress=False)
    with pytest.raises(
        HarnessError, match=r"model type 'gpt_neo': attention of layer\(s\) \[0, 1\] did not go through"
    ):
        list(qr.score([_instance("q1", QUERIES[0])]))


def test_non_finite_scores_raise():
    model = tiny_model("llama", seed=1)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight[0, 0] = float("nan")
    qr = QRRetriever.from_loaded(model, tokenizer(), heads=HEADS, show_progress=False)
    with pytest.raises(HarnessError, match=r"query qnan: non-finite attention score for document"):
        list(qr.score([_instance("qnan", QUERIES[0])]))


def test_bad_parameters_are_refused(llama):
    with pytest.raises(HarnessError, match="unknown head set 'nqq'"):
        QRRetriever.from_loaded(llama, tokenizer(), heads="nqq")
    with pytest.raises(HarnessError, match=r"head 3-0 is outside the model \(3 layers x 4 heads"):
        QRRetriever.from_loaded(llama, tokenizer(), heads="3-0")
    with pytest.raises(HarnessError, match="unknown candidate order 'reverse'; did you mean 'reversed'"):
        QRRetriever(order="reverse")
    with pytest.raises(HarnessError, match="icr uses every head"):
        ICRRetriever(heads="nq")


def test_no_heads_on_a_model_without_known_heads_is_one_line(llama):
    """Never a silent fall-back to every head: the error names `harness detect` and '--heads full'."""
    with pytest.raises(HarnessError, match=r"^no --heads given and no known QRHeads for model LlamaForCausalLM "
                                           r"\(3 layers x 4 heads\): detect them with 'harness detect") as error:
        QRRetriever.from_loaded(llama, tokenizer())
    assert "\n" not in str(error.value) and "'--heads full'" in str(error.value)


def test_cli_qr_on_a_model_folder_without_known_heads(llama, tmp_path, capsys):
    """`harness run --retriever qr --model FOLDER` (a tiny random-weight model): one error line without
    --heads; with --heads full it runs on every head."""
    import json

    from harness.cli import main

    folder = tmp_path / "tiny-llama"
    llama.save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    capsys.readouterr()  # transformers' "Writing model shards" bar
    run = ["--no-progress", "run", "--task", "cranfield", "--retriever", "qr", "--model", str(folder),
           "--max-queries", "1", "--depth", "3", "--truncate-words", "20", "--allow-dirty"]
    assert main([*run, "--output", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith(f"error: no --heads given and no known QRHeads for model {folder} (3 layers x 4 heads)")
    assert f"'harness detect --model {folder} --task TASK --output heads.json'" in err and "'--heads full'" in err
    assert not (tmp_path / "none.json").exists()
    assert main([*run, "--heads", "full", "--output", str(tmp_path / "full.json")]) == 0
    heads = json.loads((tmp_path / "full.json").read_text())["retriever"]["heads"]
    assert (heads["name"], heads["n"]) == ("full", 12)


def test_meta_records_model_heads_and_template(llama):
    qr = QRRetriever.from_loaded(llama, tokenizer(), heads=HEADS, show_progress=False)
    meta = qr.meta
    assert meta["name"] == "qr" and meta["kind"] == "attention-head"
    assert meta["heads"]["list"] == ["1-3", "0-1", "1-0"] and meta["heads"]["n"] == 3
    assert len(meta["heads"]["sha256"]) == 64
    assert meta["template"] == "llama3" and meta["layers_used"] == 2 and meta["model_type"] == "llama"
    assert meta["params"]["order"] == "reversed" and meta["params"]["null_query"] == "N/A"
    icr = ICRRetriever.from_loaded(llama, tokenizer(), show_progress=False)
    assert icr.meta["name"] == "icr" and icr.meta["heads"]["n"] == 12 and icr.meta["layers_used"] == 3


@pytest.mark.slow
def test_real_smollm2_ranks_the_same_through_both_paths():
    from harness.models import load_causal_lm

    model, tok, info = load_causal_lm("smollm2-135m", for_scoring_only=True)
    docs = [
        Document("eiffel", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France, completed in 1889."),
        Document("photo", "Photosynthesis converts light energy into chemical energy stored in glucose."),
        Document("everest", "Mount Everest is Earth's highest mountain above sea level, in the Himalayas."),
        Document("python", "Python is a high-level programming language known for its readability.", title="Python"),
        Document("nile", "The Nile is a major north-flowing river in northeastern Africa."),
    ]
    query = "When was the Eiffel Tower completed?"
    for heads in ("12-3,14-1,15-7,20-0,8-8",):  # early exit after layer 20 of 30
        qr = QRRetriever.from_loaded(model, tok, info, heads=heads, show_progress=False)
        (scores,) = qr.score([_instance("q", query, docs=docs)])
        fed = list(reversed(docs))
        template = qr.engine.template
        assert template.name.startswith("chat:")  # SmolLM2: ChatML, but not the Qwen2.5 template
        ref = reference_head_scores(model, tok, template, fed, query, list(qr.engine.heads))
        ours = torch.tensor([scores[d.id] for d in fed], dtype=torch.float64)
        assert torch.equal(ours.argsort(descending=True), ref.argsort(descending=True)), (ours, ref)
        assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-3
    assert qr.meta["revision"] == info.revision
