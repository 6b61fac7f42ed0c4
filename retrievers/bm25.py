"""BM25 through ``bm25s``: Lucene-style scoring, PyStemmer English stemming, English stopwords.

Scoring (``method="lucene"``, the default, as Pyserini/Anserini)::

    score(q, d) = sum_{t in q} idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

with ``k1 = 0.9``, ``b = 0.4`` (Anserini's defaults). A query term that occurs twice counts
twice, as in Lucene and ``rank_bm25``. ``method="robertson"`` uses
``idf = log((N - df + 0.5) / (df + 0.5))`` floored at 0, which ranks exactly as
``rank_bm25.BM25Okapi(epsilon=0)`` (see ``harness bench bm25``).

Text and tokens
    A document is indexed as ``title + " " + text`` (Pyserini's BEIR *flat* indexes), or its
    text alone when it has no title. Tokens are bm25s's: lower-cased ``\\w\\w+`` words, English
    stopwords removed, then Snowball-stemmed (PyStemmer).

Rankings
    ``search`` returns, per query, the top ``k`` documents that contain at least one query term
    (as Lucene does: documents matching no term are not retrieved, so a query may get fewer than
    ``k``), ordered by score descending and then doc id ascending; ties are broken by doc id
    deterministically, also at the ``k``-th place.

Scoring candidate lists
    ``score(instances)`` builds a small index over each instance's candidates, so IDF and the
    average length come from the candidate list, not from the full corpus. This is the natural
    choice for instance tasks (NIAH chunks, LongMemEval rounds, CLIPPER chapters), whose
    candidate list *is* the collection; for BEIR re-ranking, the first-stage scores from
    ``search`` are the corpus-level ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.progress import progress_enabled
from harness.retrievers.common import check_search, doc_id_ranks, document_text, top_k_indices
from harness.types import Document, Instance, Query, Retriever, Run

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


def _bm25s():
    """Import bm25s and undo its import-time ``setLevel(DEBUG)``, so its logger follows ours."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s

METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")


class BM25Index:
    """A bm25s index over pre-tokenized documents with deterministic top-k.

    ``BM25Index(ids, tokens).top_k(query_tokens, k)`` -> ``[(doc_id, score), ...]``. Used by
    :class:`BM25Retriever` and by ``harness bench bm25`` (which feeds the same tokens to
    ``rank_bm25``).
    """

    def __init__(
        self,
        doc_ids: Sequence[str],
        doc_tokens: Sequence[list[str]],
        *,
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        show_progress: bool = False,
    ) -> None:
        bm25s = _bm25s()

        if not doc_ids:
            raise HarnessError("cannot index an empty corpus")
        self.doc_ids = list(doc_ids)
        #: No document has an indexable word (all empty, or only stopwords): every score is 0.
        self.empty = not any(doc_tokens)
        self.model = None if self.empty else bm25s.BM25(k1=k1, b=b, method=method)
        if self.model is not None:
            self.model.index(list(doc_tokens), show_progress=show_progress)
        self.tie_rank = doc_id_ranks(self.doc_ids)

    def __len__(self) -> int:
        return len(self.doc_ids)

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document (float32, index order); zeros for an unknown query."""
        import numpy as np

        ids = self.model.get_tokens_ids(list(query_tokens)) if self.model is not None else []
        if not ids:
            return np.zeros(len(self.doc_ids), dtype=np.float32)
        return self.model.get_scores_from_ids(ids)

    def top_k(self, query_tokens: Sequence[str], k: int, *, matching_only: bool = True) -> list[tuple[str, float]]:
        """The best ``k`` ``(doc_id, score)`` pairs; with ``matching_only``, only docs scoring > 0."""
        scores = self.scores(query_tokens)
        best = top_k_indices(scores, k, self.tie_rank)
        pairs = list(zip([self.doc_ids[i] for i in best.tolist()], scores[best].tolist()))
        return [(d, s) for d, s in pairs if s > 0] if matching_only else pairs


class BM25Retriever(Retriever):
    """BM25 (bm25s) as a first stage over a corpus and as a scorer of candidate lists.

    Parameters
    ----------
    k1, b:
        BM25 saturation and length normalisation (Anserini defaults 0.9 and 0.4).
    method:
        bm25s variant: ``lucene`` (default), ``robertson``, ``atire``, ``bm25l`` or ``bm25+``.
    stemmer:
        A PyStemmer (Snowball) language such as ``"english"``, or ``None`` for no stemming.
    stopwords:
        A bm25s stopword list name such as ``"en"``, or ``None`` to keep every word.
    show_progress:
        Progress bars; by default on unless the ``DISABLE_TQDM`` environment variable is set
        (:func:`harness.progress.progress_enabled`).

    >>> from harness.types import Document, Query
    >>> corpus = {"a": Document("a", "cats purr"), "b": Document("b", "dogs bark loudly")}
    >>> list(BM25Retriever(show_progress=False).search(corpus, [Query("q", "barking dogs")], k=2)["q"])
    ['b']
    """

    name = "bm25"
    kind = "sparse"
    first_stage = True

    def __init__(
        self,
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        stemmer: str | None = "english",
        stopwords: str | None = "en",
        show_progress: bool | None = None,
    ) -> None:
        try:
            self.k1 = float(k1)
            self.b = float(b)
        except (TypeError, ValueError):
            raise HarnessError(f"bm25: k1 and b must be numbers, got k1={k1!r}, b={b!r}") from None
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise HarnessError(f"bm25: need k1 >= 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")
        if method not in METHODS:
            raise HarnessError(f"bm25: unknown method {method!r} (known: {', '.join(METHODS)})")
        self.method = method
        self.stemmer_name = None if stemmer in (None, "", "none") else str(stemmer)
        self.stopwords = None if stopwords in (None, "", "none") else str(stopwords)
        self.show_progress = progress_enabled(show_progress)
        self._stemmer = self._make_stemmer(self.stemmer_name)
        if self.stopwords is not None:
            from bm25s.tokenization import _infer_stopwords

            try:
                _infer_stopwords(self.stopwords)
            except ValueError:
                raise HarnessError(f"bm25: unknown stopword list {self.stopwords!r} (e.g. 'en')") from None

    @staticmethod
    def _make_stemmer(language: str | None) -> Any:
        if language is None:
            return None
        import Stemmer

        if language not in Stemmer.algorithms():
            raise HarnessError(f"bm25: unknown stemmer {language!r} (PyStemmer knows: {', '.join(Stemmer.algorithms())})")
        return Stemmer.Stemmer(language)

    @property
    def meta(self) -> dict[str, Any]:
        bm25s = _bm25s()

        return {
            "name": self.name,
            "kind": self.kind,
            "model": None,
            "revision": f"bm25s=={bm25s.__version__}",
            "params": {
                "k1": self.k1,
                "b": self.b,
                "method": self.method,
                "stemmer": self.stemmer_name,
                "stopwords": self.stopwords,
            },
            "document_text": "title + ' ' + text",
            # How candidates are scored when re-ranking: with the corpus's statistics or the list's own.
            **({"statistics": "corpus"} if getattr(self, "_corpus_index", None) is not None else {}),
        }

    # ------------------------------------------------------------------ tokens and indexes

    def tokenize(self, texts: Sequence[str], *, progress: bool | None = None) -> list[list[str]]:
        """bm25s tokens of each text (lower-cased words, stopwords removed, stemmed)."""
        bm25s = _bm25s()

        if not texts:
            return []
        tokens = bm25s.tokenize(
            list(texts),
            lower=True,
            stopwords=self.stopwords,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=self.show_progress if progress is None else progress,
        )
        return [list(t) for t in tokens]

    def build_index(self, docs: Sequence[Document], *, progress: bool | None = None) -> BM25Index:
        """Index ``docs`` (their :func:`document_text`); ``progress`` overrides ``show_progress``."""
        return BM25Index(
            [d.id for d in docs],
            self.tokenize([document_text(d) for d in docs], progress=progress),
            k1=self.k1,
            b=self.b,
            method=self.method,
            show_progress=self.show_progress if progress is None else progress,
        )

    # ------------------------------------------------------------------ Retriever contract

    def search(self, corpus: Mapping[str, Document], queries: Sequence[Query], k: int) -> Run:
        """Top ``k`` matching documents of ``corpus`` per query (see the module docstring)."""
        check_search("bm25", corpus, queries, k)
        index = self.build_index(list(corpus.values()))
        if index.empty:
            raise HarnessError(f"bm25: none of the {len(corpus)} documents has an indexable word "
                               "(all are empty or only stopwords)")
        run: Run = {}
        empty = 0
        for query, tokens in zip(queries, self.tokenize([q.text for q in queries])):
            run[query.id] = dict(index.top_k(tokens, k))
            empty += not run[query.id]
        if empty:
            log.warning("bm25: %d of %d queries matched no document (they score 0)", empty, len(queries))
        return run

    def index_corpus(self, corpus: Mapping[str, Document]) -> None:
        """Index the whole corpus: candidates are then scored with corpus statistics, so BM25 over
        its own top-k reproduces its ranking exactly."""
        self._corpus_index = self.build_index(list(corpus.values()))
        self._positions = {doc_id: i for i, doc_id in enumerate(self._corpus_index.doc_ids)}

    def score(self, instances: Sequence[Instance]) -> Iterator[dict[str, float]]:
        """BM25 of each instance's candidates: with corpus statistics after :meth:`index_corpus`
        (the candidates' full indexed text), else with an index over the candidate list itself."""
        corpus_index = getattr(self, "_corpus_index", None)
        for instance in instances:
            if not instance.candidates:
                yield {}
                continue
            if corpus_index is not None and all(d.id in self._positions for d in instance.candidates):
                scores = corpus_index.scores(self.tokenize([instance.query.text], progress=False)[0])
                yield {d.id: float(scores[self._positions[d.id]]) for d in instance.candidates}
                continue
            index = self.build_index(instance.candidates, progress=False)
            scores = index.scores(self.tokenize([instance.query.text], progress=False)[0])
            yield {doc_id: float(s) for doc_id, s in zip(index.doc_ids, scores)}
