"""Query-term overlap re-ranker: score = number of distinct query words in the document."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence

from harness.types import Instance, Retriever

_WORD = re.compile(r"[a-z0-9]+")


class OverlapRetriever(Retriever):
    name = "overlap"
    kind = "sparse"
    #: ``delay`` slows scoring down (to test killed runs) without changing a score: not identity.
    options = frozenset({"show_progress", "delay"})

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = float(delay)

    @property
    def meta(self) -> dict:
        return {"name": self.name, "kind": self.kind, "params": {}}

    def score(self, instances: Sequence[Instance]) -> Iterator[dict[str, float]]:
        for instance in instances:
            if self.delay:
                time.sleep(self.delay)
            words = set(_WORD.findall(instance.query.text.lower()))
            yield {
                doc.id: float(len(words & set(_WORD.findall(f"{doc.title or ''} {doc.text}".lower()))))
                for doc in instance.candidates
            }
