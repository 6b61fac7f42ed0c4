"""cross-encoder: scores equal a manual forward of the same (tiny, random-weight) BERT reranker."""

from __future__ import annotations

import pytest
import torch

from harness.errors import HarnessError
from harness.registry import retriever_class
from harness.retrievers.cross_encoder import CrossEncoderRetriever
from harness.types import Document, Instance, Query

INSTANCES = [
    Instance(Query("q1", "what is the capital of france"), [
        Document("a", "Paris is the capital and largest city of France.", title="Paris"),
        Document("b", "Bananas are an elongated, edible fruit."),
        Document("c", " ".join(["long"] * 600)),  # longer than max_length: truncated, not an error
    ]),
    Instance(Query("q2", "photosynthesis"), [Document("d", "Plants turn light into sugar.")]),
    Instance(Query("q3", "no candidates"), []),
]


def _tiny_reranker(folder, num_labels: int) -> str:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from harness.models import sentence_transformer_path

    tokenizer = AutoTokenizer.from_pretrained(sentence_transformer_path("minilm"))  # the MiniLM vocabulary
    torch.manual_seed(num_labels)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=num_labels)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _manual_scores(folder: str, instance: Instance, max_length: int) -> list[float]:
    from transformers import AutoTokenizer, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = BertForSequenceClassification.from_pretrained(folder).eval()
    out = []
    for doc in instance.candidates:
        text = f"{doc.title} {doc.text}" if doc.title else doc.text
        enc = tokenizer(instance.query.text, text, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0]
        out.append(float(logits[0]) if logits.numel() == 1 else float(logits[1] - logits[0]))
    return out


@pytest.mark.parametrize("num_labels", [1, 2])
def test_scores_equal_a_manual_forward(tmp_path, num_labels):
    folder = _tiny_reranker(tmp_path / f"ce{num_labels}", num_labels)
    assert retriever_class("cross-encoder") is CrossEncoderRetriever
    ranker = CrossEncoderRetriever(model=folder, batch_size=2, max_length=128, device="cpu", show_progress=False)
    out = list(ranker.score(INSTANCES))
    assert out[2] == {}
    for inst, scores in zip(INSTANCES[:2], out):
        assert list(scores) == [d.id for d in inst.candidates]
        assert list(scores.values()) == pytest.approx(_manual_scores(folder, inst, 128), abs=1e-5)
    assert len(set(out[0].values())) == 3  # random weights, distinct scores
    assert ranker.meta["kind"] == "cross-encoder" and ranker.meta["params"]["max_length"] == 128


def test_bad_models_are_one_line_errors(tmp_path):
    with pytest.raises(HarnessError, match="needs --model"):
        CrossEncoderRetriever()
    with pytest.raises(HarnessError, match="'minilm' is not a cross-encoder.*BertModel"):
        CrossEncoderRetriever(model="minilm")
    with pytest.raises(HarnessError, match="HF_HUB_OFFLINE=1 forbids downloading"):
        CrossEncoderRetriever(model="cross-encoder/ms-marco-MiniLM-L6-v2-not-cached")
