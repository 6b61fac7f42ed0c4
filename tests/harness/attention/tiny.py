"""Tiny random-weight decoders and a small byte-level BPE tokenizer, built offline in milliseconds.

The tokenizer knows the Llama-3 header tokens and the ChatML tokens and carries a ChatML chat
template, so the same tokenizer exercises the paper's ``llama3`` template (model type llama),
``qwen2.5`` (qwen2) and the chat-template path (every other type).
"""

from __future__ import annotations

import functools

import torch

from harness.types import Document

SPECIAL = [
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Here are some paragraphs: Please find information that are relevant to the following query in the paragraphs above.",
    "Query: what is the capital of France? Paris is the capital and most populous city of France.",
    "The mitochondria is the powerhouse of the cell. Photosynthesis happens in chloroplasts of plant cells.",
    "Retrieval heads attend to relevant documents. Attention scores rank passages for the user query.",
    "The quick brown fox jumps over the lazy dog near the river bank on a sunny day in Dolores Park.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 [1] [2] [3] [4] [5] N/A user assistant system",
]


@functools.lru_cache(maxsize=1)
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|begin_of_text|>")
    fast.chat_template = CHATML
    return fast


def _common(vocab: int) -> dict:
    return {
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "initializer_range": 0.25,
        "tie_word_embeddings": False,
        "bos_token_id": tokenizer().bos_token_id,
        "eos_token_id": tokenizer().eos_token_id,
    }


ARCHS = ["llama", "qwen2", "qwen3", "mistral", "gemma", "phi3"]


def tiny_model(arch: str, seed: int = 0, dtype: torch.dtype = torch.float32, **overrides):
    """A random fp32 decoder of architecture ``arch`` (3 layers, 4 heads, 2 KV heads)."""
    import transformers as tf

    vocab = len(tokenizer())
    kw = {**_common(vocab), **overrides}
    if arch == "llama":
        config = tf.LlamaConfig(**kw)
    elif arch == "qwen2":
        config = tf.Qwen2Config(**kw)
    elif arch == "qwen3":
        config = tf.Qwen3Config(head_dim=16, **kw)
    elif arch == "mistral":
        # A window shorter than the prompts: the masks must carry it through the cached suffix.
        config = tf.MistralConfig(sliding_window=kw.pop("sliding_window", 96), **kw)
    elif arch == "gemma":
        config = tf.GemmaConfig(head_dim=16, **kw)
    elif arch == "phi3":
        config = tf.Phi3Config(pad_token_id=0, **kw)
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").to(dtype)
    return model.eval()


DOCS = [
    Document("d1", "Paris is the capital and most populous city of France."),
    Document("d2", "The mitochondria is the powerhouse of the cell.", title="Biology"),
    Document("d3", ""),  # empty: only the "[3] " marker
    Document(
        "d4",
        "Please find information that are relevant to the following query in the paragraphs above. Query: fox",
        title="",
    ),
    Document("d5", "The quick brown fox jumps over the lazy dog near the river bank."),
]
QUERIES = ["what is the capital of France?", "where does the fox jump?"]
