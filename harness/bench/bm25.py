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
    :class:`retrievers.bm25.BM25Retriever`, tokenization included) is timed as well, for
    reference.

The corpus (real text, offline, from ``../shared/data``)
    Cranfield (1,400 abstracts) and CACM (3,204 records) documents as they are, plus the Paul
    Graham essays, the CLIPPER sample's book chapters and the HotpotQA sample's paragraphs split
    into passages of at most ``--passage-words`` words. Queries: Cranfield, CACM, the BEIR
    SciFact/FiQA/NFCorpus/TREC-COVID test topics and the HotpotQA questions.
"""

from __future__ import annotations

import argparse
import gzip
import html
import json
import logging
import os
import platform
import re
import tarfile
import time
from pathlib import Path
from typing import Any

from harness.bench._common import add_output_arguments, cpu_model, load_average_1m, write_and_print
from harness.errors import HarnessError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BEIR_TOPICS = ("scifact", "fiqa", "nfcorpus", "trec-covid")


# --------------------------------------------------------------------------------------------
# Real text from ../shared/data
# --------------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    """``$HARNESS_SHARED_DATA`` or ``../shared/data`` next to the repository."""
    return Path(os.environ.get("HARNESS_SHARED_DATA", REPO.parent / "shared" / "data"))


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _smart_fields(text: str) -> list[dict[str, str]]:
    """Records of a SMART-format file (``.I id`` then ``.X`` fields), as ``{field: text}``."""
    records: list[dict[str, str]] = []
    field = None
    for line in text.split("\n"):
        if line.startswith(".I"):
            records.append({"I": line[2:].strip()})
            field = None
        elif len(line) == 2 and line.startswith(".") and records:
            field = line[1]
            records[-1][field] = ""
        elif field is not None:
            records[-1][field] += line + "\n"
    return records


def cranfield_documents(data: Path) -> list[tuple[str, str]]:
    """``(id, text)`` of the 1,400 Cranfield abstracts (the ``.W`` field, which opens with the title)."""
    return [(f"cran-{r['I']}", " ".join(r.get("W", "").split())) for r in _smart_fields(_read(data / "cranfield" / "cran.all.1400"))]


def cranfield_queries(data: Path) -> list[tuple[str, str]]:
    return [(f"cran-q{r['I']}", " ".join(r.get("W", "").split())) for r in _smart_fields(_read(data / "cranfield" / "cran.qry"))]


def cacm_documents(data: Path) -> list[tuple[str, str]]:
    """``(id, text)`` of the 3,204 CACM records (HTML tags removed)."""
    out = []
    path = data / "cacm" / "cacm.tar.gz"
    try:
        with tarfile.open(path) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if not member.isfile() or not member.name.endswith(".html"):
                    continue
                handle = tar.extractfile(member)
                raw = handle.read().decode("utf-8", errors="replace") if handle else ""
                text = html.unescape(re.sub(r"<[^>]+>", " ", raw))
                out.append((Path(member.name).stem, " ".join(text.split())))
    except (OSError, tarfile.TarError) as exc:
        raise HarnessError(f"{path}: cannot read ({exc})") from None
    return out


def cacm_queries(data: Path) -> list[tuple[str, str]]:
    text = _read(data / "cacm" / "topics.cacm.txt")
    out = []
    for block in re.findall(r"<DOC>(.*?)</DOC>", text, flags=re.DOTALL):
        number = re.search(r"<DOCNO>\s*(\S+)\s*</DOCNO>", block)
        body = re.sub(r"<DOCNO>.*?</DOCNO>", " ", block, flags=re.DOTALL)
        if number:
            out.append((f"cacm-q{number.group(1)}", " ".join(body.split())))
    return out


def beir_queries(data: Path, name: str) -> list[tuple[str, str]]:
    path = data / "beir_queries_qrels_only" / name / "anserini" / f"topics.beir-v1.0.0-{name}.test.tsv.gz"
    try:
        lines = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read ({exc})") from None
    return [(f"{name}-q{qid}", text.strip()) for qid, _, text in (line.partition("\t") for line in lines if line.strip())]


def passages(prefix: str, text: str, words: int) -> list[tuple[str, str]]:
    """Consecutive passages of at most ``words`` words of ``text``, ids ``prefix-0``, ``prefix-1``, ..."""
    tokens = text.split()
    return [(f"{prefix}-{i // words}", " ".join(tokens[i : i + words])) for i in range(0, len(tokens), words)]


def long_text_passages(data: Path, words: int) -> list[tuple[str, str]]:
    """Paul Graham essays, CLIPPER chapters and HotpotQA paragraphs, split into passages."""
    out: list[tuple[str, str]] = []
    for path in sorted((data / "paul_graham_essays").glob("*.txt")):
        out += passages(f"pg-{path.stem}", _read(path), words)
    for path in sorted((data / "clipper_sample" / "books").glob("*/*.txt")):
        out += passages(f"clipper-{path.parent.name}-{path.stem}", _read(path), words)
    hotpot = data / "hotpotqa_dev_distractor_sample100_hfschema" / "hotpot_dev_distractor_v1.json"
    seen: set[str] = set()
    for example in json.loads(_read(hotpot)):
        for title, sentences in zip(example["context"]["title"], example["context"]["sentences"]):
            if title in seen:
                continue
            out += passages(f"hotpot-{len(seen)}", f"{title}. {''.join(sentences)}", words)
            seen.add(title)
    return out


def hotpot_queries(data: Path) -> list[tuple[str, str]]:
    hotpot = data / "hotpotqa_dev_distractor_sample100_hfschema" / "hotpot_dev_distractor_v1.json"
    return [(f"hotpot-q{i}", ex["question"]) for i, ex in enumerate(json.loads(_read(hotpot)))]


def build_corpus(data: Path, passage_words: int = 50) -> list[tuple[str, str]]:
    """The benchmark corpus: ``(doc_id, text)`` pairs, ids unique."""
    if not data.is_dir():
        raise HarnessError(f"{data}: shared data folder not found (pass --data or set HARNESS_SHARED_DATA)")
    docs = cranfield_documents(data) + cacm_documents(data) + long_text_passages(data, passage_words)
    ids = [d for d, _ in docs]
    if len(set(ids)) != len(ids):
        raise HarnessError("benchmark corpus: duplicate document ids")
    return docs


def build_queries(data: Path) -> list[tuple[str, str]]:
    """The benchmark queries: ``(query_id, text)`` pairs."""
    queries = cranfield_queries(data) + cacm_queries(data)
    for name in BEIR_TOPICS:
        queries += beir_queries(data, name)
    return queries + hotpot_queries(data)


# --------------------------------------------------------------------------------------------
# The two implementations on the same tokens
# --------------------------------------------------------------------------------------------


def ours_top_k(
    doc_ids: list[str], doc_tokens: list[list[str]], query_tokens: list[list[str]], k: int, k1: float, b: float
) -> list[list[str]]:
    """bm25s (robertson) index + deterministic top-k for every query."""
    from retrievers.bm25 import BM25Index

    index = BM25Index(doc_ids, doc_tokens, k1=k1, b=b, method="robertson")
    return [[d for d, _ in index.top_k(q, k, matching_only=False)] for q in query_tokens]


def rank_bm25_top_k(
    doc_ids: list[str], doc_tokens: list[list[str]], query_tokens: list[list[str]], k: int, k1: float, b: float
) -> list[list[str]]:
    """``rank_bm25.BM25Okapi(epsilon=0)`` + the same top-k rule for every query."""
    import numpy as np
    from rank_bm25 import BM25Okapi

    from retrievers.bm25 import doc_id_ranks, top_k_indices

    model = BM25Okapi(doc_tokens, k1=k1, b=b, epsilon=0.0)
    tie_rank = doc_id_ranks(doc_ids)
    return [[doc_ids[i] for i in top_k_indices(np.asarray(model.get_scores(q)), k, tie_rank)] for q in query_tokens]


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def machine() -> dict[str, Any]:
    """CPU model, core count and library versions, for the record."""
    from retrievers.bm25 import _bm25s

    bm25s = _bm25s()
    import numpy

    try:
        from importlib.metadata import version

        rank_bm25_version = version("rank-bm25")
    except Exception:  # noqa: BLE001 - only informative
        rank_bm25_version = "unknown"
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "bm25s": bm25s.__version__,
        "rank_bm25": rank_bm25_version,
        "numpy": numpy.__version__,
        "load_average_1m_at_start": load_average_1m(),
    }


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
    from harness.types import Document, Query
    from retrievers.bm25 import BM25Retriever

    host = machine()  # before the work, so the load average says how busy the machine was
    docs = build_corpus(data, passage_words)
    queries = build_queries(data)
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
        "speedup": round(ref_s / ours_s, 2),
        f"identical_top{top}_pct": round(100 * same / len(queries), 3),
        f"identical_top{top}_set_pct": round(100 * same_sets / len(queries), 3),
        "ours_default_search_seconds": round(default_s, 4),
        "ours_default_search_note": "BM25Retriever() (lucene, k1=0.9, b=0.4).search incl. tokenization",
        "machine": host,
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
            (f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; Python {m['python']}, "
            f"bm25s {m['bm25s']}, rank_bm25 {m['rank_bm25']}, numpy {m['numpy']}; "
            f"1-minute load average when it started: {m.get('load_average_1m_at_start')} "
            "(the machine may be shared; both implementations run single-threaded, one after the other)."),
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

