"""TF-IDF cosine similarity, as a first-stage retriever (``search``) and a re-ranker (``score``).

For a collection of N documents, with ``tf(t, d)`` the count of term t in d and ``df(t)`` the
number of documents containing t::

    idf(t)     = ln((1 + N) / (1 + df(t))) + 1              (smoothed: never 0, never divides by 0)
    w(t, d)    = (1 + ln tf(t, d)) · idf(t)                 (sublinear_tf=True, the default)
               =  tf(t, d)         · idf(t)                 (sublinear_tf=False)
    score(q,d) = cos(w(·, q), w(·, d)) = w_q · w_d / (|w_q| |w_d|)

Queries are weighted like documents, with the collection's idf; query terms the collection never
uses are dropped. A document is its ``title + " " + text``; terms are lower-cased runs of letters
and digits. ``search`` fits the idf on the whole corpus; ``score`` (re-ranking) fits it on each
instance's candidates, since that is all it sees. Ranking ties are broken by document id, as
everywhere in the harness. Documents that share no term with the query score 0 and are not
returned by ``search``.

>>> from harness.types import Document, Query
>>> corpus = {"a": Document("a", "cats purr softly"), "b": Document("b", "dogs bark, dogs run")}
>>> run = TfidfRetriever().search(corpus, [Query("q", "barking dogs")], k=10)
>>> list(run["q"])
['b']
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import sparse

from harness.errors import HarnessError
from harness.types import Document, Instance, Query, Retriever, Run
from harness_tfidf import __version__

_TERM = re.compile(r"[a-z0-9]+")


def terms(text: str) -> list[str]:
    """Lower-cased runs of letters and digits: ``"Dogs bark!"`` -> ``["dogs", "bark"]``."""
    return _TERM.findall(text.lower())


def document_text(doc: Document) -> str:
    return f"{doc.title} {doc.text}" if doc.title else doc.text


class TfidfModel:
    """Vocabulary and idf fitted on a list of texts; turns texts into L2-normalised sparse rows."""

    def __init__(self, texts: Sequence[str], sublinear_tf: bool = True) -> None:
        self.sublinear_tf = sublinear_tf
        counts = [Counter(terms(t)) for t in texts]
        df: Counter[str] = Counter()
        for c in counts:
            df.update(c.keys())
        self.vocabulary = {term: i for i, term in enumerate(sorted(df))}
        n = len(texts)
        self.idf = np.array([math.log((1 + n) / (1 + df[t])) + 1 for t in sorted(df)], dtype=np.float64)
        self.matrix = self._rows(counts)

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        return self._rows([Counter(terms(t)) for t in texts])

    def _rows(self, counts: Sequence[Counter[str]]) -> sparse.csr_matrix:
        indptr, indices, data = [0], [], []
        for c in counts:
            items = sorted((self.vocabulary[t], n) for t, n in c.items() if t in self.vocabulary)
            indices += [i for i, _ in items]
            data += [(1 + math.log(n)) if self.sublinear_tf else float(n) for _, n in items]
            indptr.append(len(indices))
        shape = (len(counts), len(self.vocabulary))
        m = sparse.csr_matrix(
            (np.array(data, dtype=np.float64), np.array(indices, dtype=np.int64), indptr), shape=shape
        )
        m = m.multiply(self.idf[np.newaxis, :]).tocsr() if len(self.vocabulary) else m
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sparse.diags(1.0 / norms) @ m


def top_k(scores: np.ndarray, ids: Sequence[str], k: int) -> dict[str, float]:
    """The ``k`` best positive scores, ordered by (-score, id); exact at the k-th place ties."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) > k:
        threshold = np.partition(scores[positive], len(positive) - k)[len(positive) - k]
        positive = positive[scores[positive] >= threshold]  # keeps every tie at the boundary
    ranked = sorted(positive.tolist(), key=lambda i: (-scores[i], ids[i]))[:k]
    return {ids[i]: float(scores[i]) for i in ranked}


class TfidfRetriever(Retriever):
    """TF-IDF cosine retriever; see the module docstring for the formulas.

    Parameters:
        sublinear_tf: weight term counts by ``1 + ln tf`` (default) instead of ``tf``.
    """

    name = "tfidf"
    kind = "sparse"
    first_stage = True

    def __init__(self, sublinear_tf: bool = True) -> None:
        if not isinstance(sublinear_tf, bool):
            raise HarnessError(f"tfidf: sublinear_tf must be true or false, got {sublinear_tf!r}")
        self.sublinear_tf = sublinear_tf

    @property
    def meta(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "model": None,
            "revision": f"harness-tfidf-retriever=={__version__}",
            "params": {"sublinear_tf": self.sublinear_tf},
            "document_text": "title + ' ' + text",
        }

    def search(self, corpus: Mapping[str, Document], queries: Sequence[Query], k: int) -> Run:
        ids = list(corpus)
        model = TfidfModel([document_text(corpus[i]) for i in ids], self.sublinear_tf)
        scores = (model.transform([q.text for q in queries]) @ model.matrix.T).toarray()
        return {q.id: top_k(scores[row], ids, k) for row, q in enumerate(queries)}

    def score(self, instances: Sequence[Instance]) -> Iterator[dict[str, float]]:
        for instance in instances:
            docs = instance.candidates
            if not docs:
                yield {}
                continue
            model = TfidfModel([document_text(d) for d in docs], self.sublinear_tf)
            row = (model.transform([instance.query.text]) @ model.matrix.T).toarray()[0]
            yield {d.id: float(s) for d, s in zip(docs, row)}
