"""Dense retrieval: cosine similarity over a FAISS index (exact or HNSW) that knows its model."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import ConfigError, RetrievalConfig
from ..io import atomic_write_bytes, atomic_write_text
from ..types import Chunk, Hit
from .base import Filter, check_chunks, check_k, filter_mask, ranked_hits, top_k

if TYPE_CHECKING:
    from ..embedding import Embedder

__all__ = ["DenseRetriever"]

_INDEX_FILE, _CHUNKS_FILE, _META_FILE = "index.faiss", "chunks.jsonl", "meta.json"
_FORMAT = 1


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("faiss is missing; run `make run` or `pip install faiss-cpu`") from exc
    return faiss


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.array(vectors, dtype=np.float32, ndmin=2, order="C")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _mismatch(built: str, given: str) -> ConfigError:
    return ConfigError(
        f"embedding model mismatch: the index was built with {built!r} but the embedder is {given!r}; "
        f"rebuild the index with {given!r} or set embedding.model = {built!r}"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"chunk metadata value {value!r} ({type(value).__name__}) cannot be saved; use str, number, bool, list or date")


def _json_hook(obj: dict[str, Any]) -> Any:
    if obj.keys() == {"$datetime"}:
        return dt.datetime.fromisoformat(obj["$datetime"])
    if obj.keys() == {"$date"}:
        return dt.date.fromisoformat(obj["$date"])
    return obj


class DenseRetriever:
    """Cosine similarity over a FAISS index (exact `IndexFlatIP`, or HNSW) of chunk embeddings.

    The index records the embedding model id; pairing it with an embedder of another model
    raises `ConfigError` ("embedding model mismatch").
    """

    def __init__(self, chunks: Sequence[Chunk], index: Any, embedder: Embedder, *, model_id: str,
                 ef_search: int = 128) -> None:
        """Wrap a built FAISS index whose i-th vector embeds `chunks[i]`; see `build` and `load`.

        Raises:
            ConfigError: `embedder` is not the model the index was built with.
            ValueError: the index and chunk counts differ.
        """
        if embedder.model_id != model_id:
            raise _mismatch(model_id, embedder.model_id)
        if index.ntotal != len(chunks):
            raise ValueError(f"the index holds {index.ntotal} vectors for {len(chunks)} chunks; rebuild the index")
        self.chunks = list(chunks)
        self.index = index
        self.embedder = embedder
        self.model_id = model_id
        self.dimension = int(index.d)
        self.ef_search = ef_search

    @classmethod
    def build(cls, chunks: Sequence[Chunk], embedder: Embedder, *, index: str = "flat", hnsw_m: int = 32,
              hnsw_ef_construction: int = 200, hnsw_ef_search: int = 128, progress: bool = True) -> DenseRetriever:
        """Embed `chunks` (through the embedder's cache) and index them.

        Args:
            chunks: what to index.
            embedder: the model; its id is recorded with the index.
            index: "flat" (exact inner product) or "hnsw" (approximate, `IndexHNSWFlat`).
            hnsw_m, hnsw_ef_construction, hnsw_ef_search: HNSW graph degree and search breadths.
            progress: show the embedding progress bar.

        Raises:
            ValueError: no chunks, duplicate chunk ids, or an unknown index kind.
        """
        check_chunks(chunks)
        if index not in ("flat", "hnsw"):
            raise ValueError(f"unknown dense index {index!r}; choose one of ['flat', 'hnsw']")
        faiss = _import_faiss()
        vectors = _normalised(embedder.embed([c.text for c in chunks], progress=progress))
        dim = vectors.shape[1]
        if index == "flat":
            built = faiss.IndexFlatIP(dim)
        else:
            built = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            built.hnsw.efConstruction = hnsw_ef_construction
            built.hnsw.efSearch = hnsw_ef_search
        built.add(vectors)
        return cls(chunks, built, embedder, model_id=embedder.model_id, ef_search=hnsw_ef_search)

    @classmethod
    def from_config(cls, config: RetrievalConfig, chunks: Sequence[Chunk], embedder: Embedder | None = None) -> DenseRetriever:
        """A dense retriever with the index settings of `config`.

        Raises:
            ValueError: `embedder` is None.
        """
        if embedder is None:
            raise ValueError(
                f"retrieval.kind={config.kind!r} needs an embedder; pass "
                "workbench.embedding.load_embedder(config.embedding) to build_retriever"
            )
        return cls.build(chunks, embedder, index=config.index, hnsw_m=config.hnsw_m,
                         hnsw_ef_construction=config.hnsw_ef_construction, hnsw_ef_search=config.hnsw_ef_search)

    def retrieve(self, query: str, k: int, where: Filter | None = None) -> list[Hit]:
        """The k chunks most similar to `query` among those passing `where`.

        Raises:
            ValueError: k <= 0 or a malformed filter.
            ConfigError: the embedder's vectors do not fit the index's dimension.
        """
        return self.retrieve_many([query], k, where)[0]

    def retrieve_many(self, queries: Sequence[str], k: int, where: Filter | None = None) -> list[list[Hit]]:
        """`retrieve` for each query: one embedding batch, one FAISS search."""
        check_k(k)
        if not queries:
            return []
        return self.search(self.embedder.embed(list(queries)), k, where)

    def search(self, vectors: np.ndarray, k: int, where: Filter | None = None) -> list[list[Hit]]:
        """The k nearest chunks to each query vector (rows of `vectors`), among those passing `where`.

        Raises:
            ValueError: k <= 0 or a malformed filter.
            ConfigError: the vectors' dimension is not the index's.
        """
        check_k(k)
        faiss = _import_faiss()
        vectors = _normalised(vectors)
        if vectors.shape[1] != self.dimension:
            raise ConfigError(
                f"embedding model mismatch: query vectors have dimension {vectors.shape[1]} but the index "
                f"({self.model_id!r}) has {self.dimension}; rebuild the index or set embedding.model = {self.model_id!r}"
            )
        mask = filter_mask(self.chunks, where)
        allowed = np.flatnonzero(mask) if mask is not None else None
        n_allowed = len(self.chunks) if allowed is None else len(allowed)
        k = min(k, n_allowed)
        if k == 0:
            return [[] for _ in vectors]
        hnsw = hasattr(self.index, "hnsw")
        params = None
        if allowed is not None or hnsw:
            selector = faiss.IDSelectorBatch(allowed.astype(np.int64)) if allowed is not None else None
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k)) if hnsw else faiss.SearchParameters()
            if selector is not None:
                params.sel = selector
        scores, labels = self.index.search(vectors, k, params=params)
        results = []
        for row, (row_scores, row_labels) in enumerate(zip(scores, labels)):
            found = row_labels >= 0
            if found.sum() < k:  # HNSW under a tight filter can run out of graph: score the subset exactly
                row_labels, row_scores = self._exact(vectors[row], k, allowed)
                found = np.ones(len(row_labels), dtype=bool)
            results.append(ranked_hits(self.chunks, row_labels[found], row_scores[found]))
        return results

    def _exact(self, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        ids = np.arange(len(self.chunks)) if allowed is None else allowed
        stored = self.index.reconstruct_batch(ids.astype(np.int64))
        scores = stored @ vector
        best = top_k(scores, k)
        return ids[best], scores[best]

    def save(self, directory: str | Path) -> None:
        """Write the index, its chunks and its model id to `directory` (each file atomically).

        `meta.json` is written last and holds checksums of the other files, so a half-written
        save is detected on load.
        """
        faiss = _import_faiss()
        directory = Path(directory)
        index_bytes = faiss.serialize_index(self.index).tobytes()
        chunk_lines = "".join(
            json.dumps({"id": c.id, "doc_id": c.doc_id, "text": c.text, "start": c.start, "end": c.end,
                        "metadata": dict(c.metadata)}, default=_json_default, ensure_ascii=False) + "\n"
            for c in self.chunks
        ).encode("utf-8")
        atomic_write_bytes(directory / _INDEX_FILE, index_bytes)
        atomic_write_bytes(directory / _CHUNKS_FILE, chunk_lines)
        meta = {
            "format": _FORMAT,
            "model_id": self.model_id,
            "dimension": self.dimension,
            "count": len(self.chunks),
            "ef_search": self.ef_search,
            "sha256": {_INDEX_FILE: hashlib.sha256(index_bytes).hexdigest(),
                       _CHUNKS_FILE: hashlib.sha256(chunk_lines).hexdigest()},
        }
        atomic_write_text(directory / _META_FILE, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path, embedder: Embedder) -> DenseRetriever:
        """Read an index written by `save`.

        Raises:
            ConfigError: `embedder` is not the model the index was built with.
            ValueError: the folder is missing, incomplete or its files do not match their checksums.
        """
        faiss = _import_faiss()
        directory = Path(directory)
        try:
            meta = json.loads((directory / _META_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"{directory} holds no saved dense index ({_META_FILE} is missing); build and save one") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{directory / _META_FILE} is corrupt ({exc}); rebuild the index") from None
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{directory} holds index format {meta.get('format')!r}, expected {_FORMAT}; rebuild the index")
        if embedder.model_id != meta["model_id"]:
            raise _mismatch(meta["model_id"], embedder.model_id)
        blobs = {}
        for name in (_INDEX_FILE, _CHUNKS_FILE):
            try:
                blobs[name] = (directory / name).read_bytes()
            except FileNotFoundError:
                raise ValueError(f"{directory / name} is missing; rebuild the index") from None
            if hashlib.sha256(blobs[name]).hexdigest() != meta["sha256"][name]:
                raise ValueError(f"{directory / name} does not match its checksum in {_META_FILE}; rebuild the index")
        index = faiss.deserialize_index(np.frombuffer(blobs[_INDEX_FILE], dtype=np.uint8))
        chunks = [Chunk(**json.loads(line, object_hook=_json_hook))
                  for line in blobs[_CHUNKS_FILE].decode("utf-8").splitlines()]
        return cls(chunks, index, embedder, model_id=meta["model_id"], ef_search=meta["ef_search"])

