"""``harness bench bm25``: our first-stage BM25 against ``rank_bm25`` on the same tokens.

What is timed
    For each implementation: building the index from pre-tokenized documents, then scoring
    every query and selecting its top ``--depth`` (200) documents. Both get the *same* token
    lists (bm25s's tokenizer with PyStemmer English stemming and English stopwords, run once,
    timed separately), and both use the same BM25 variant: bm25s ``method="robertson"`` (IDF
    ``log((N - df + 0.5) / (df + 0.5))`` floored at 0) and ``rank_bm25.BM25Okapi`` with
    ``epsilon=0`` (negative IDFs set to 0), with the same ``k1``/``b``. The top-k selection of
    both rankings uses the same deterministic (-score, doc id) rule, so any difference in the
    top 10 comes from the scores alone. Our default configuration (``method="lucene"``, through
    :class:`harness.retrievers.bm25.BM25Retriever`, tokenization included) is timed as well, for
    reference.

The corpus (real text, offline, from ``../shared/data``, read through the tasks' own loaders)
    Cranfield (1,400 abstracts) and CACM (3,204 records) documents as the ``cranfield`` and
    ``cacm`` tasks load them, plus the Paul Graham essays (the ``niah`` haystack), the CLIPPER
    sample's book chapters and the HotpotQA sample's paragraphs (the ``hotpotqa`` task) split
    into passages of at most ``--passage-words`` words. Queries: the judged Cranfield and CACM
    queries (225 and 52), the BEIR SciFact/FiQA/NFCorpus/TREC-COVID test topics (Anserini's topic
    files, read by :func:`harness.trec.read_trec_topics`) and the HotpotQA questions.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from harness.benchmarks._common import add_output_arguments, machine_line, write_and_print
from harness.errors import HarnessError
from harness.provenance import load_average, machine

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
BEIR_TOPICS = ("scifact", "fiqa", "nfcorpus", "trec-covid")
HOTPOT_FILE = Path("hotpotqa_dev_distractor_sample100_hfschema") / "hotpot_dev_distractor_v1.json"


# --------------------------------------------------------------------------------------------
# Real text from ../shared/data, read through the tasks
# --------------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    """``$HARNESS_SHARED_DATA`` or ``../shared/data`` next to the repository."""
    return Path(os.environ.get("HARNESS_SHARED_DATA", REPO.parent / "shared" / "data"))


def passages(prefix: str, text: str, words: int) -> list[tuple[str, str]]:
    """Consecutive passages of at most ``words`` words of ``text``, ids ``prefix-0``, ``prefix-1``, ..."""
    tokens = text.split()
    return [(f"{prefix}-{i // words}", " ".join(tokens[i : i + words])) for i in range(0, len(tokens), words)]


def classic_collections(data: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Documents and judged queries of Cranfield and CACM, as the ``cranfield`` and ``cacm`` tasks load them.

    Cranfield's text is its ``.W`` abstract (which opens with the title); CACM's is title and text.
    """
    from harness.registry import make_task

    cran = make_task("cranfield", data=str(data)).load()
    cacm = make_task("cacm", data=str(data)).load()
    assert cran.corpus is not None and cacm.corpus is not None
    docs = [(f"cran-{d.id}", d.text) for d in cran.corpus.values()]
    docs += [(d.id, f"{d.title or ''} {d.text}".strip()) for d in cacm.corpus.values()]
    queries = [(f"cran-q{q.id}", q.text) for q in cran.queries] + [(f"cacm-q{q.id}", q.text) for q in cacm.queries]
    return docs, queries


def hotpot_collection(data: Path, words: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The HotpotQA sample through the ``hotpotqa`` task: each distinct paragraph (by title) as
    passages of ``title. text``, and the questions."""
    from harness.registry import make_task

    instances = make_task("hotpotqa", data=str(data / HOTPOT_FILE)).load().instances or []
    docs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for inst in instances:
        for doc in inst.candidates:
            if (doc.title or "") not in seen:
                docs += passages(f"hotpot-{len(seen)}", f"{doc.title}. {doc.text}", words)
                seen.add(doc.title or "")
    return docs, [(f"hotpot-q{i}", inst.query.text) for i, inst in enumerate(instances)]


def long_text_passages(data: Path, words: int) -> list[tuple[str, str]]:
    """The Paul Graham essays (the ``niah`` haystack reader: one stream of words in file-name order)
    and the CLIPPER sample's book chapters (the ``clipper`` chapter reader), split into passages."""
    from harness.tasks.clipper import read_book_chapters
    from harness.tasks.niah import haystack_folder, read_haystack

    essays, _, _ = read_haystack(haystack_folder(str(data / "paul_graham_essays"))[0])
    out = passages("pg", " ".join(essays), words)
    books = data / "clipper_sample" / "books"
    for book in sorted(p for p in books.iterdir() if p.is_dir()) if books.is_dir() else []:
        for chapter in read_book_chapters(book):
            out += passages(f"clipper-{book.name}-{chapter.id}", chapter.text, words)
    return out


def beir_queries(data: Path, name: str) -> list[tuple[str, str]]:
    """A BEIR dataset's test topics (Anserini's TSV; there is no corpus to make a ``beir`` task of)."""
    from harness.trec import read_trec_topics

    path = data / "beir_queries_qrels_only" / name / "anserini" / f"topics.beir-v1.0.0-{name}.test.tsv.gz"
    return [(f"{name}-q{qid}", text) for qid, text in read_trec_topics(path).items()]


def build_collection(data: Path, passage_words: int = 50) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The benchmark's ``(doc_id, text)`` documents (ids unique) and ``(query_id, text)`` queries."""
    if not data.is_dir():
        raise HarnessError(f"{data}: shared data folder not found (pass --data or set HARNESS_SHARED_DATA)")
    docs, queries = classic_collections(data)
    hotpot_docs, hotpot_queries = hotpot_collection(data, passage_words)
    docs += long_text_passages(data, passage_words) + hotpot_docs
    for name in BEIR_TOPICS:
        queries += beir_queries(data, name)
    ids = [d for d, _ in docs]
    if len(set(ids)) != len(ids):
        raise HarnessError("benchmark corpus: duplicate document ids")
    return docs, queries + hotpot_queries


# --------------------------------------------------------------------------------------------
# The two implementations on the same tokens
# --------------------------------------------------------------------------------------------


def ours_top_k(
    doc_ids: list[str], doc_tokens: list[list[str]], query_tokens: list[list[str]], k: int, k1: float, b: float
) -> list[list[str]]:
    """bm25s (robertson) index + deterministic top-k for every query."""
    from harness.retrievers.bm25 import BM25Index

    index = BM25Index(doc_ids, doc_tokens, k1=k1, b=b, method="robertson")
    return [[d for d, _ in index.top_k(q, k, matching_only=False)] for q in query_tokens]


def rank_bm25_top_k(
    doc_ids: list[str], doc_tokens: list[list[str]], query_tokens: list[list[str]], k: int, k1: float, b: float
) -> list[list[str]]:
    """``rank_bm25.BM25Okapi(epsilon=0)`` + the same top-k rule for every query."""
    import numpy as np
    from rank_bm25 import BM25Okapi

    from harness.retrievers.common import doc_id_ranks, top_k_indices

    model = BM25Okapi(doc_tokens, k1=k1, b=b, epsilon=0.0)
    tie_rank = doc_id_ranks(doc_ids)
    return [[doc_ids[i] for i in top_k_indices(np.asarray(model.get_scores(q)), k, tie_rank)] for q in query_tokens]


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def benchmark(
    data: Path,
    *,
    depth: int = 200,
    passage_words: int = 50,
    k1: float = 0.9,
    b: float = 0.4,
    top: int = 10,
    max_queries: int | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    """Run the comparison and return the result record (see the module docstring).

    ``max_queries`` keeps an evenly spaced subset of the queries (every source represented),
    for a quick check; the recorded benchmark uses all of them. Each of ``repeats`` rounds times
    ours then rank_bm25; the speed-up is the ratio of the best (minimum) times, the usual
    estimate on a machine that other work may slow down.
    """
    from harness.retrievers.bm25 import BM25Retriever
    from harness.types import Document, Query

    host = machine(packages=("bm25s", "rank-bm25", "numpy"))  # before the work: the load average says how busy it was
    docs, queries = build_collection(data, passage_words)
    if max_queries is not None and max_queries < len(queries):
        step = len(queries) / max_queries
        queries = [queries[int(i * step)] for i in range(max_queries)]
    if depth > len(docs):
        raise HarnessError(f"--depth {depth} is larger than the benchmark corpus ({len(docs)} documents)")
    doc_ids = [d for d, _ in docs]
    retriever = BM25Retriever(k1=k1, b=b, method="robertson", show_progress=False)
    (doc_tokens, query_tokens), tokenize_s = _timed(
        lambda: (retriever.tokenize([t for _, t in docs]), retriever.tokenize([t for _, t in queries]))
    )
    log.info("corpus %d docs, %d queries, tokenized in %.2fs", len(docs), len(queries), tokenize_s)

    ours_times, ref_times = [], []
    for round_ in range(repeats):
        ours, seconds = _timed(ours_top_k, doc_ids, doc_tokens, query_tokens, depth, k1, b)
        ours_times.append(seconds)
        ref, seconds = _timed(rank_bm25_top_k, doc_ids, doc_tokens, query_tokens, depth, k1, b)
        ref_times.append(seconds)
        log.info("round %d: bm25s %.2fs, rank_bm25 %.2fs", round_ + 1, ours_times[-1], ref_times[-1])
    ours_s, ref_s = min(ours_times), min(ref_times)
    same = sum(a[:top] == r[:top] for a, r in zip(ours, ref))
    same_sets = sum(set(a[:top]) == set(r[:top]) for a, r in zip(ours, ref))

    corpus = {d: Document(d, t) for d, t in docs}
    query_objs = [Query(q, t) for q, t in queries]
    _, default_s = _timed(BM25Retriever(show_progress=False).search, corpus, query_objs, depth)

    return {
        "benchmark": "bm25 first stage: index + top-k for all queries, same tokens",
        "corpus": {
            "documents": len(docs),
            "tokens": sum(map(len, doc_tokens)),
            "passage_words": passage_words,
            "sources": "cranfield, cacm, paul_graham_essays, clipper_sample chapters, hotpotqa sample paragraphs",
        },
        "queries": len(queries),
        "depth": depth,
        "params": {"k1": k1, "b": b, "ours": "bm25s method=robertson", "reference": "rank_bm25.BM25Okapi epsilon=0"},
        "repeats": repeats,
        "seconds": {"tokenize_once": round(tokenize_s, 4), "ours": round(ours_s, 4), "rank_bm25": round(ref_s, 4)},
        "seconds_all_rounds": {"ours": [round(t, 4) for t in ours_times], "rank_bm25": [round(t, 4) for t in ref_times]},
        "queries_per_s": {"ours": round(len(queries) / ours_s, 1), "rank_bm25": round(len(queries) / ref_s, 1)},
        "speedup": round(ref_s / ours_s, 2),
        f"identical_top{top}_pct": round(100 * same / len(queries), 3),
        f"identical_top{top}_set_pct": round(100 * same_sets / len(queries), 3),
        "ours_default_search_seconds": round(default_s, 4),
        "ours_default_search_note": "BM25Retriever() (lucene, k1=0.9, b=0.4).search incl. tokenization",
        "machine": {**host, "load_average_at_end": load_average()},
    }


def markdown(result: dict[str, Any]) -> str:
    """A short human summary of a :func:`benchmark` record."""
    m, s = result["machine"], result["seconds"]
    top_key = next(k for k in result if k.startswith("identical_top") and not k.endswith("set_pct"))
    return "\n".join(
        [
            "# BM25 first-stage benchmark: bm25s (ours) vs rank_bm25",
            "",
            (f"Corpus: {result['corpus']['documents']:,} documents ({result['corpus']['sources']}; "
            f"long texts split into passages of at most {result['corpus']['passage_words']} words), "
            f"{result['queries']:,} queries, top-{result['depth']}. Generated by `harness bench bm25`; "
            f"best of {result['repeats']} rounds."),
            "",
            "| | seconds |",
            "|---|---|",
            f"| tokenization (once, shared) | {s['tokenize_once']:.2f} |",
            f"| ours: bm25s index + top-{result['depth']} | {s['ours']:.2f} |",
            f"| rank_bm25 BM25Okapi: index + top-{result['depth']} | {s['rank_bm25']:.2f} |",
            f"| ours, default `bm25` search (lucene, incl. tokenization) | {result['ours_default_search_seconds']:.2f} |",
            "",
            (f"**Speed-up: {result['speedup']:.1f}x.** Identical top-10 (same ids, same order): "
            f"{result[top_key]:.2f}% of queries (same set: {result[top_key.replace('_pct', '_set_pct')]:.2f}%)."),
            "",
            machine_line(m, "both implementations run single-threaded, one after the other"),
            "",
        ]
    )


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``harness bench bm25``."""
    parser.add_argument("--data", type=Path, default=None, help="shared data folder (default: ../shared/data)")
    parser.add_argument("--depth", type=int, default=200, help="documents retrieved per query (default 200)")
    parser.add_argument("--passage-words", "--passage_words", type=int, default=50, help="passage length for long texts")
    parser.add_argument("--k1", type=float, default=0.9)
    parser.add_argument("--b", type=float, default=0.4)
    parser.add_argument("--max-queries", "--max_queries", type=int, default=None, help="evenly spaced subset of queries (quick check)")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds; the best time of each counts (default 3)")
    add_output_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; print a summary (or JSON) and optionally write the record."""
    from harness.io import check_writable

    if args.depth <= 0:
        raise HarnessError(f"--depth {args.depth} must be at least 1")
    if args.passage_words <= 0:
        raise HarnessError(f"--passage-words {args.passage_words} must be at least 1")
    if args.repeats <= 0:
        raise HarnessError(f"--repeats {args.repeats} must be at least 1")
    if args.max_queries is not None and args.max_queries <= 0:
        raise HarnessError(f"--max-queries {args.max_queries} must be at least 1")
    if args.output is not None:
        check_writable(args.output)
    result = benchmark(
        args.data or default_data_dir(),
        depth=args.depth,
        passage_words=args.passage_words,
        k1=args.k1,
        b=args.b,
        max_queries=args.max_queries,
        repeats=args.repeats,
    )
    return write_and_print(args, result, markdown(result))

