"""CLIPPER narrative claim verification (docs/PROTOCOL.md §4.3): chapters are the documents.

Every claim pair (a true claim and its corrupted, false twin about the same book) gives two
queries, ``{pair_id}:true`` and ``{pair_id}:false``, over the same candidates: the book's chapters
in book order (``Document.id`` = the chapter number as a string). Gold = the claim's ``source``
chapters. Both claims carry ``meta["context_id"]`` (the book, so an attention engine can encode the
book once for both) and ``meta["pair_id"]``. Recall is averaged over both claims of every pair
(the paper does not say which it used).

Layouts (``data=``)
-------------------
* **CLIPPER repository CSVs** (a folder with ``books/`` and claims CSVs, as in
  ``shared/data/clipper_sample`` or the repository's ``data/``): chapters from
  ``books/{book}/{N}.txt``; claims from ``claims_{single,multiple}_corrupted_final.csv`` found under
  ``claims/{book}/`` or ``output/{book}/claims/``. A row holds the true claim (``facts``), its twin
  (``corrupted_facts``), ``source`` ("Chapter 1 (Items 1, 2)", "Chapters 2, 5, 7": the chapter
  numbers outside parentheses) and ``verify_facts``. The pair id is
  ``{book}/{single|multiple}/{row}`` (``row`` = 1-based data row). Rows whose ``verify_facts`` is
  not ``VALID`` are dropped unless ``verified_only=False`` (count in provenance).
* **QRHead files** (a folder with ``test-00000-of-00002.json``, the true claims, and
  ``test-00001-of-00002.json``, the false ones; the hub default, ``PrincetonPLI/QRHead``
  ``data/clipper_data/``): ICR-format entries ``{idx, question, gt_docs, paragraphs[{idx,
  paragraph_text}]}``. True and false claims are paired by ``idx``, **never by position** (QRHead's
  ``zip`` assumes the files align, docs/PROTOCOL.md §4.3); the twins must share the same chapters.
* **Hugging Face rows** (``chtmp223/CLIPPER`` test: a ``.parquet``/``.json``/``.jsonl`` file or a
  folder of ``test-*.parquet``): each row has ``id``, ``book_name``, ``true_claim`` and
  ``false_claim``. These rows carry neither chapters nor evidence, so they need
  ``books=`` (the repository's ``data/books`` folder) and a ``source`` column; a missing field is
  an error naming the row and field.

A claim without its twin is an error naming it; ``allow_unpaired=True`` skips it with a warning.

Generation and scoring
----------------------
CLIPPER's prompt over the given chapters sorted by chapter number and joined by ``"\\n\\n\\n"``.
The answer is the first ``<answer>…</answer>``, stripped and lowercased. Per query:
``claim_accuracy`` (true→``true``, false→``false``) and ``missing_answer_tag``; on the ``:true``
entry of each pair also ``pair_accuracy`` (1 iff both claims are right; a missing tag fails the
pair) and ``accuracy`` (the same value: the paper's CLIPPER accuracy is pairwise).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import HarnessError
from harness.hub import require_hub
from harness.io import iter_jsonl, read_json, read_text, sha256_file
from harness.params import as_bool
from harness.tasks.qa_scoring import parse_answer_tag
from harness.types import Document, Instance, Query, Task, TaskData

log = logging.getLogger(__name__)

HUB_REPO = "PrincetonPLI/QRHead"
HUB_FILES = ("data/clipper_data/test-00000-of-00002.json", "data/clipper_data/test-00001-of-00002.json")
TRUE_FILE, FALSE_FILE = (name.rsplit("/", 1)[1] for name in HUB_FILES)
CSV_PATTERN = re.compile(r"claims_(?P<kind>[a-z]+)_corrupted_final\.csv$")
CSV_COLUMNS = ("facts", "corrupted_facts", "source")

PROMPT_TEMPLATE = (
    "You are provided with a context and a statement. Your task is to carefully read the context and "
    "then determine whether the statement is true or false.  \n\n"
    "Answer TRUE if the statement is true in its entirety based on the context provided.\n"
    "Answer FALSE if any part of the statement is false based on the context provided.\n\n"
    "<context>{context}</context>\n\n\n<statement>{statement}</statement>\n\n"
    "<question>Based on the context provided, is the above statement TRUE or FALSE?</question>\n\n"
    "First provide an explanation of your decision-making process, and then provide your final answer. "
    "Use the following format:\n\n<explanation>YOUR EXPLANATION</explanation>\n<answer>YOUR ANSWER</answer>"
)


def parse_source_chapters(source: str) -> list[str]:
    """Chapter numbers of a CLIPPER ``source`` string, in order, without duplicates.

    Parenthesised parts (outline items) are ignored:

    >>> parse_source_chapters("Chapter 1 (Items 1, 2)")
    ['1']
    >>> parse_source_chapters("Chapters 2, 5, 7")
    ['2', '5', '7']
    """
    without_items = re.sub(r"\([^)]*\)", " ", str(source))
    chapters: list[str] = []
    for number in re.findall(r"\d+", without_items):
        chapter = str(int(number))
        if chapter not in chapters:
            chapters.append(chapter)
    return chapters


def read_book_chapters(folder: Path) -> list[Document]:
    """A book's chapter files ``{N}.txt`` as documents in chapter order (id = ``N``)."""
    if not folder.is_dir():
        raise HarnessError(f"{folder}: book folder not found")
    files = [p for p in folder.iterdir() if p.suffix == ".txt"]
    bad = [p.name for p in files if not p.stem.isdigit()]
    if bad:
        raise HarnessError(f"{folder}: chapter files must be named N.txt, found {bad[0]!r}")
    if not files:
        raise HarnessError(f"{folder}: no chapter files N.txt")
    files.sort(key=lambda p: int(p.stem))
    return [Document(id=str(int(p.stem)), text=read_text(p), meta={"chapter": int(p.stem)}) for p in files]


def _pair_instances(
    pair_id: str,
    true_claim: str,
    false_claim: str,
    chapters: list[Document],
    gold: Mapping[str, int],
    context_id: str,
    meta: Mapping[str, Any],
) -> list[Instance]:
    out = []
    for label, claim in (("true", true_claim), ("false", false_claim)):
        qid = f"{pair_id}:{label}"
        out.append(
            Instance(
                query=Query(id=qid, text=claim, meta={"label": label, "pair_id": pair_id}),
                candidates=list(chapters),
                gold=dict(gold),
                answer=label,
                meta={"order": "natural", "context_id": context_id, "pair_id": pair_id, "label": label, **meta},
            )
        )
    return out


class ClipperTask(Task):
    """``clipper``: CLIPPER claims over book chapters, recall@k and pairwise accuracy.

    Parameters: ``allow_unpaired`` (skip claims without a twin instead of failing),
    ``verified_only`` (CSV layout: keep ``VALID`` rows only, default true), ``books`` (chapter
    folder for the HF rows layout), ``revision`` (hub revision), ``limit`` (first N pairs).
    """

    family: ClassVar[str] = "clipper"
    main_metric: ClassVar[str] = "R@5"
    metrics: ClassVar[tuple[str, ...]] = ("R@3", "R@5", "R_all@5", "R_any@5")
    supports_generation: ClassVar[bool] = True
    max_tokens: ClassVar[int] = 1000
    #: ``--max-queries N`` samples N claim pairs (both claims of each), never single claims.
    sample_group: ClassVar[str | None] = "pair_id"
    parameters: ClassVar[frozenset[str]] = frozenset({"allow_unpaired", "books", "limit", "revision", "verified_only"})

    @classmethod
    def variant_note(cls, provenance: Mapping[str, Any]) -> str | None:
        """A local sample of books is its own variant: ``2 books`` (R@5 over 3 chapters is not R@5 over 20)."""
        source = str(provenance.get("source") or "")
        if source.startswith("hf:"):
            return None
        books = provenance.get("n_books")
        return f"{books} books" if books else super().variant_note(provenance)

    def __init__(self, name: str | None = None, data: str | None = None, **params: Any) -> None:
        super().__init__(name=name, data=data, **params)
        self.allow_unpaired = _as_bool(params.get("allow_unpaired", False))
        self.verified_only = _as_bool(params.get("verified_only", True))

    # -- loading -------------------------------------------------------------------------------
    def load(self) -> TaskData:
        provenance: dict[str, Any]
        if self.data is None:
            instances, provenance = self._load_qrhead(self._download(), f"hf:{HUB_REPO}/data/clipper_data")
        else:
            path = Path(self.data)
            if path.is_dir() and (path / TRUE_FILE).is_file() and (path / FALSE_FILE).is_file():
                instances, provenance = self._load_qrhead((path / TRUE_FILE, path / FALSE_FILE), str(path))
            elif path.is_dir() and (path / "books").is_dir():
                instances, provenance = self._load_csv(path)
            elif path.suffix in (".parquet", ".json", ".jsonl") or (
                path.is_dir() and list(path.glob("test-*.parquet"))
            ):
                instances, provenance = self._load_hf_rows(path)
            elif not path.exists():
                raise HarnessError(f"{path}: no such file or folder")
            else:
                raise HarnessError(
                    f"{path}: not a CLIPPER layout (expected a folder with books/ and claims CSVs, a folder with "
                    f"{TRUE_FILE} and {FALSE_FILE}, or HF test rows as .parquet/.json/.jsonl)"
                )
        limit = self.params.get("limit")
        if limit is not None:
            instances = instances[: 2 * int(limit)]
            provenance["limit_pairs"] = int(limit)
        if not instances:
            raise HarnessError(f"clipper: no claim pairs loaded from {self.data or HUB_REPO}")
        provenance.update(
            n_pairs=len(instances) // 2,
            n_queries=len(instances),
            n_books=len({inst.meta["context_id"] for inst in instances}),
            recall_over="both claims of each pair",
        )
        return TaskData.from_instances(instances, self.metrics, provenance)

    def _download(self) -> tuple[Path, Path]:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        revision = self.params.get("revision")
        require_hub("task clipper", f"{HUB_REPO} ({', '.join(HUB_FILES)})",
                    "pass --data DIR with the two claim files or the CLIPPER books folder")
        paths = []
        for filename in HUB_FILES:
            try:
                paths.append(Path(hf_hub_download(HUB_REPO, filename, repo_type="dataset", revision=revision)))
            except (OSError, ValueError, EntryNotFoundError) as exc:  # network, offline mode, missing revision
                raise HarnessError(
                    f"clipper: cannot download {HUB_REPO}/{filename} ({type(exc).__name__}: {exc}); pass --data with a local copy"
                ) from None
        return paths[0], paths[1]

    def _unpaired(self, what: str) -> None:
        if not self.allow_unpaired:
            raise HarnessError(f"{what} (pass allow_unpaired=true to skip such claims)")
        log.warning("clipper: skipping %s", what)

    def _load_csv(self, root: Path) -> tuple[list[Instance], dict[str, Any]]:
        files = sorted(p for p in root.rglob("claims_*_corrupted_final.csv") if CSV_PATTERN.search(p.name))
        if not files:
            raise HarnessError(f"{root}: no claims_*_corrupted_final.csv files")
        instances: list[Instance] = []
        shas: dict[str, str] = {}
        books: dict[str, list[Document]] = {}
        counts: dict[str, int] = {}
        n_invalid = n_unpaired = 0
        for path in files:
            rel = str(path.relative_to(root))
            shas[rel] = sha256_file(path)
            book = path.parent.parent.name if path.parent.name == "claims" else path.parent.name
            kind = CSV_PATTERN.search(path.name).group("kind")  # type: ignore[union-attr]
            if book not in books:
                books[book] = read_book_chapters(root / "books" / book)
                for chapter_file in sorted((root / "books" / book).glob("*.txt")):
                    shas[str(chapter_file.relative_to(root))] = sha256_file(chapter_file)
            chapters = books[book]
            chapter_ids = {d.id for d in chapters}
            rows = list(csv.DictReader(io.StringIO(read_text(path), newline="")))
            if rows:
                missing = [c for c in CSV_COLUMNS if c not in rows[0]]
                if missing:
                    raise HarnessError(f"{path}: missing column {missing[0]!r}")
            kept = 0
            for row_number, row in enumerate(rows, start=1):
                pair_id = f"{book}/{kind}/{row_number}"
                where = f"{path}: row {row_number} (claim {pair_id})"
                if self.verified_only and "verify_facts" in row and str(row["verify_facts"]).strip().upper() != "VALID":
                    n_invalid += 1
                    continue
                true_claim, false_claim = (row.get("facts") or "").strip(), (row.get("corrupted_facts") or "").strip()
                if not true_claim or not false_claim:
                    n_unpaired += 1
                    self._unpaired(
                        f"{where}: has no {'false twin (corrupted_facts)' if true_claim else 'true claim (facts)'}"
                    )
                    continue
                gold = parse_source_chapters(row.get("source") or "")
                if not gold:
                    raise HarnessError(f"{where}: field 'source' names no chapter ({row.get('source')!r})")
                unknown = [c for c in gold if c not in chapter_ids]
                if unknown:
                    raise HarnessError(
                        f"{where}: source chapter {unknown[0]} is not in books/{book} ({len(chapters)} chapters)"
                    )
                instances.extend(
                    _pair_instances(
                        pair_id,
                        true_claim,
                        false_claim,
                        chapters,
                        {c: 1 for c in gold},
                        book,
                        {"book": book, "claim_type": kind},
                    )
                )
                kept += 1
            counts[f"{book}/{kind}"] = kept
        provenance = {
            "source": str(root),
            "layout": "clipper-repository-csv",
            "sha256": shas,
            "split": "sample",
            "pairs_per_file": counts,
            "n_dropped_unverified": n_invalid,
            "verified_only": self.verified_only,
            "n_skipped_unpaired": n_unpaired,
        }
        return instances, provenance

    def _load_qrhead(self, files: tuple[Path, Path], source: str) -> tuple[list[Instance], dict[str, Any]]:
        true_entries = self._read_icr(files[0])
        false_entries = self._read_icr(files[1])
        instances: list[Instance] = []
        n_unpaired = 0
        for idx, (true_entry, where) in true_entries.items():
            twin = false_entries.get(idx)
            if twin is None:
                n_unpaired += 1
                self._unpaired(f"{where}: true claim idx {idx!r} has no false twin in {files[1]}")
                continue
            false_entry, false_where = twin
            chapters = self._icr_chapters(true_entry, where)
            if [(d.id, d.text) for d in chapters] != [
                (d.id, d.text) for d in self._icr_chapters(false_entry, false_where)
            ]:
                raise HarnessError(
                    f"{false_where}: claim idx {idx!r} is paired with a different book than in {files[0]}"
                )
            gold = {str(g): 1 for g in true_entry.get("gt_docs") or []}
            unknown = [g for g in gold if g not in {d.id for d in chapters}]
            if unknown:
                raise HarnessError(f"{where}: gt_docs chapter {unknown[0]!r} is not among its paragraphs")
            digest = hashlib.sha256("\x00".join(d.text for d in chapters).encode()).hexdigest()[:16]
            instances.extend(
                _pair_instances(
                    str(idx),
                    str(true_entry["question"]),
                    str(false_entry["question"]),
                    chapters,
                    gold,
                    f"book-{digest}",
                    {},
                )
            )
        for idx, (_, where) in false_entries.items():
            if idx not in true_entries:
                n_unpaired += 1
                self._unpaired(f"{where}: false claim idx {idx!r} has no true twin in {files[0]}")
        provenance = {
            "source": source,
            "layout": "qrhead-icr-json",
            "sha256": {p.name: sha256_file(p) for p in files},
            "split": "test",
            "n_skipped_unpaired": n_unpaired,
            "pairing": "by idx",
        }
        return instances, provenance

    @staticmethod
    def _read_icr(path: Path) -> dict[str, tuple[Mapping[str, Any], str]]:
        entries = read_json(path)
        if not isinstance(entries, list):
            raise HarnessError(f"{path}: expected a JSON list of claims")
        out: dict[str, tuple[Mapping[str, Any], str]] = {}
        for number, entry in enumerate(entries):
            where = f"{path}: entry {number}"
            if not isinstance(entry, dict):
                raise HarnessError(f"{where}: expected an object")
            for name in ("idx", "question", "paragraphs"):
                if name not in entry:
                    raise HarnessError(f"{where}: missing field {name!r}")
            idx = str(entry["idx"])
            if idx in out:
                raise HarnessError(f"{where}: duplicate idx {idx!r}")
            out[idx] = (entry, f"{where} (idx {idx})")
        return out

    @staticmethod
    def _icr_chapters(entry: Mapping[str, Any], where: str) -> list[Document]:
        docs = []
        for number, para in enumerate(entry["paragraphs"]):
            if not isinstance(para, dict) or "idx" not in para or "paragraph_text" not in para:
                raise HarnessError(f"{where}: paragraphs[{number}] needs 'idx' and 'paragraph_text'")
            docs.append(Document(id=str(para["idx"]), text=str(para["paragraph_text"]), title=para.get("title")))
        try:
            docs.sort(key=lambda d: int(d.id))
        except ValueError:
            raise HarnessError(f"{where}: paragraph idx must be chapter numbers") from None
        return docs

    def _load_hf_rows(self, path: Path) -> tuple[list[Instance], dict[str, Any]]:
        files = sorted(path.glob("test-*.parquet")) if path.is_dir() else [path]
        books_dir = self.params.get("books")
        if not books_dir:
            raise HarnessError(
                f"{path}: CLIPPER HF rows carry no chapters; pass books=PATH (the CLIPPER repository's data/books folder)"
            )
        rows: list[tuple[str, Mapping[str, Any]]] = []
        for file in files:
            rows.extend((f"{file}: row {n}", row) for n, row in _read_rows(file))
        books: dict[str, list[Document]] = {}
        instances: list[Instance] = []
        seen: set[str] = set()
        n_unpaired = 0
        for where, row in rows:
            for name in ("id", "book_name", "source"):
                if name not in row or row[name] is None:
                    hint = (
                        " (the HF rows do not name evidence chapters; use the QRHead files or the repository CSVs)"
                        if name == "source"
                        else ""
                    )
                    raise HarnessError(f"{where}: missing field {name!r}{hint}")
            pair_id = str(row["id"])
            if pair_id in seen:
                raise HarnessError(f"{where}: duplicate id {pair_id!r}")
            seen.add(pair_id)
            true_claim, false_claim = (
                str(row.get("true_claim") or "").strip(),
                str(row.get("false_claim") or "").strip(),
            )
            if not true_claim or not false_claim:
                n_unpaired += 1
                self._unpaired(f"{where} (id {pair_id}): has no {'false_claim' if true_claim else 'true_claim'}")
                continue
            book = str(row["book_name"])
            if book not in books:
                books[book] = read_book_chapters(Path(books_dir) / book)
            gold = parse_source_chapters(str(row["source"]))
            if not gold:
                raise HarnessError(f"{where}: field 'source' names no chapter")
            instances.extend(
                _pair_instances(
                    pair_id,
                    true_claim,
                    false_claim,
                    books[book],
                    {c: 1 for c in gold},
                    book,
                    {"book": book, "claim_type": row.get("claim_type")},
                )
            )
        provenance = {
            "source": str(path),
            "layout": "hf-rows",
            "sha256": {f.name: sha256_file(f) for f in files},
            "split": "test",
            "books": str(books_dir),
            "n_skipped_unpaired": n_unpaired,
        }
        return instances, provenance

    # -- generation ----------------------------------------------------------------------------
    def generation_prompt(self, instance: Instance, docs: Sequence[Document]) -> list[dict[str, str]]:
        """CLIPPER's prompt with ``docs`` sorted by chapter number, joined by three newlines."""
        try:
            ordered = sorted(docs, key=lambda d: int(d.id))
        except ValueError:
            raise HarnessError(
                f"clipper: document ids must be chapter numbers, got {[d.id for d in docs][:3]}"
            ) from None
        context = "\n\n\n".join(d.text for d in ordered)
        return [{"role": "user", "content": PROMPT_TEMPLATE.format(context=context, statement=instance.query.text)}]

    def score_generations(
        self, instances: Sequence[Instance], outputs: Sequence[str], judge: Any | None = None
    ) -> dict[str, dict[str, float]]:
        """Per-claim ``claim_accuracy``/``missing_answer_tag``; ``pair_accuracy`` on ``:true`` entries."""
        if len(instances) != len(outputs):
            raise HarnessError(f"clipper: {len(instances)} instances but {len(outputs)} outputs")
        answers: dict[str, str | None] = {}
        scores: dict[str, dict[str, float]] = {}
        by_pair: dict[str, dict[str, str]] = {}
        for inst, output in zip(instances, outputs):
            label = inst.meta["label"]
            answer = parse_answer_tag(output)
            answers[inst.query.id] = answer
            scores[inst.query.id] = {
                "claim_accuracy": float(answer == label),
                "missing_answer_tag": float(answer is None),
            }
            by_pair.setdefault(inst.meta["pair_id"], {})[label] = inst.query.id
        incomplete = []
        for pair_id, members in by_pair.items():
            if set(members) != {"true", "false"}:
                incomplete.append(pair_id)
                continue
            pair = float(answers[members["true"]] == "true" and answers[members["false"]] == "false")
            scores[members["true"]].update(pair_accuracy=pair, accuracy=pair)
        if incomplete:
            log.warning(
                "clipper: %d pairs have only one claim generated and get no pair_accuracy, e.g. %s",
                len(incomplete),
                incomplete[0],
            )
        missing = sum(int(row["missing_answer_tag"]) for row in scores.values())
        if missing:
            log.warning("clipper: %d of %d outputs have no <answer> tag (their pairs fail)", missing, len(scores))
        return scores


def _as_bool(value: Any) -> bool:
    return as_bool(value, f"expected a boolean, got {value!r}")


def _read_rows(path: Path) -> Iterable[tuple[int, Mapping[str, Any]]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        columns = ["id", "book_name", "true_claim", "false_claim", "claim_type", "source"]
        table = pq.read_table(path)
        present = [c for c in columns if c in table.column_names]
        for number, row in enumerate(table.select(present).to_pylist()):
            yield number, row
    elif path.suffix == ".jsonl":
        for number, row in iter_jsonl(path):
            yield number, row
    else:
        rows = read_json(path)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise HarnessError(f"{path}: expected a JSON list of row objects")
        yield from enumerate(rows)
