"""Text helpers shared by tasks, retrievers and the runner.

>>> truncate_words("a  b\\nc d", 3)
'a b c'
>>> truncate_words("short text", 400)
'short text'
>>> truncate_words("kept as is", None)
'kept as is'
"""

from __future__ import annotations


def truncate_words(text: str, words: int | None) -> str:
    """The first ``words`` whitespace-separated words of ``text``, joined by single spaces.

    The one document cut of the harness (the paper's BEIR protocol keeps 400 words, see
    docs/PROTOCOL.md §4.1). ``None`` or 0 keeps the text; a text of at most ``words`` words is
    returned unchanged.
    """
    if not words:
        return text
    parts = text.split()
    return text if len(parts) <= words else " ".join(parts[:words])
