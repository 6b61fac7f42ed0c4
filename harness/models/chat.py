"""A model's chat side: its chat template applied to messages, and its end-of-turn tokens.

Shared by the generator backends (:mod:`harness.generation`) and by retrieval-head detection
(:mod:`harness.attention.retrieval_heads`), which answers with the model itself: both render
prompts and stop answers the same way, and neither package imports the other for it.
"""

from __future__ import annotations

from typing import Any

from harness.errors import HarnessError

Messages = list[dict[str, str]]


def render_chat(tokenizer: Any, messages: Messages) -> str:
    """The prompt text of ``messages`` under the tokenizer's chat template (generation prompt added).

    Templates that reject a ``system`` turn get it merged into the first user turn. A tokenizer
    without a chat template (a base model) gets the contents joined by blank lines.

    >>> class Base:  # a base model's tokenizer: no chat template
    ...     chat_template = None
    >>> render_chat(Base(), [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    'Be brief.\\n\\nHi'
    """
    if not getattr(tokenizer, "chat_template", None):
        return "\n\n".join(m["content"] for m in messages)
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # noqa: BLE001 - jinja TemplateError or a template's raise_exception
        if messages[0]["role"] != "system" or len(messages) < 2:
            raise HarnessError(f"the chat template of this model rejects the messages: {exc}") from None
        merged = [{"role": messages[1]["role"], "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}]
        try:
            return tokenizer.apply_chat_template(merged + messages[2:], tokenize=False, add_generation_prompt=True)
        except Exception as exc2:  # noqa: BLE001 - as above
            raise HarnessError(f"the chat template of this model rejects the messages: {exc2}") from None


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The model's end-of-turn ids: generation_config.eos_token_id (int or list) and the tokenizer's eos.

    >>> from types import SimpleNamespace as NS
    >>> stop_token_ids(NS(generation_config=NS(eos_token_id=[2, 7])), NS(eos_token_id=7))
    [2, 7]
    """
    ids: list[int] = []
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None) if config is not None else None
    for value in (eos if isinstance(eos, (list, tuple)) else [eos]) + [getattr(tokenizer, "eos_token_id", None)]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    return ids
