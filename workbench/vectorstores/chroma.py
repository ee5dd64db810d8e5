"""Chroma: `chromadb.PersistentClient` in the index folder, or a Chroma server at an http(s) URL.

Always an HNSW index (cosine space, `hnsw:M`, `hnsw:construction_ef`, `hnsw:search_ef` from the
spec); a `where` filter is a Chroma metadata filter, applied before the top-k cut.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import numpy as np

from .base import BaseIndex, Condition, IndexSpec, Neighbours, VectorStoreError, check_reachable

__all__ = ["ChromaIndex"]

_BATCH = 4000  # under Chroma's maximum batch size


def _filter(conds: list[Condition]) -> dict[str, Any] | None:
    parts = [{c.column: {f"${'in' if c.op == 'in' else c.op}": c.value}} for c in conds]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


class ChromaIndex(BaseIndex):
    """A Chroma collection; metadata columns are Chroma metadata keys."""

    backend = "chroma"
    indexes = ("hnsw",)

    def __init__(self, spec: IndexSpec) -> None:
        super().__init__(spec)
        try:
            import chromadb
            from chromadb.config import Settings
        except ImportError as exc:
            raise ImportError("the chroma backend needs the `vectordb` extra: pip install 'workbench[vectordb]'") from exc
        settings = Settings(anonymized_telemetry=False)
        if spec.url:
            parts = urllib.parse.urlsplit(spec.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise VectorStoreError(f"Chroma URL {spec.url!r} must look like http://host:8000")
            check_reachable(spec.url, spec.timeout_s, default_port=8000)
            self._client = chromadb.HttpClient(host=parts.hostname, port=parts.port or 8000,
                                               ssl=parts.scheme == "https", settings=settings)
        else:
            self._client = chromadb.PersistentClient(path=str(self._storage() / "chroma"), settings=settings)
        metadata = {"hnsw:space": "cosine", "hnsw:M": spec.hnsw_m,
                    "hnsw:construction_ef": spec.hnsw_ef_construction, "hnsw:search_ef": spec.hnsw_ef_search}
        self._collection = self._client.get_or_create_collection(spec.name, metadata=metadata, embedding_function=None)
        stored = self._collection.peek(1)
        embeddings = stored.get("embeddings")
        if embeddings is not None and len(embeddings) and len(embeddings[0]) != spec.dimension:
            raise VectorStoreError(
                f"dimension mismatch: collection {spec.name!r} holds vectors of dimension {len(embeddings[0])}, "
                f"not {spec.dimension}; embed with the index's model or choose another index name"
            )

    @property
    def label(self) -> str:
        """Chroma is always HNSW."""
        return "chroma (hnsw)"

    def _upsert(self, ids: list[str], doc_ids: list[str], vectors: np.ndarray, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(ids), _BATCH):
            stop = start + _BATCH
            metadatas = [{"doc_id": d, **r} for d, r in zip(doc_ids[start:stop], rows[start:stop])]
            self._collection.upsert(ids=ids[start:stop], embeddings=vectors[start:stop], metadatas=metadatas)

    def _delete(self, doc_ids: list[str]) -> int:
        found = self._collection.get(where={"doc_id": {"$in": doc_ids}}, include=[])["ids"]
        if found:
            self._collection.delete(ids=found)
        return len(found)

    def count(self) -> int:
        """Rows in the collection."""
        return int(self._collection.count())

    def _search(self, vectors: np.ndarray, k: int, conds: list[Condition]) -> list[Neighbours]:
        result = self._collection.query(query_embeddings=vectors, n_results=k, where=_filter(conds), include=["distances"])
        return [[(cid, 1.0 - float(d)) for cid, d in zip(ids, distances)]
                for ids, distances in zip(result["ids"], result["distances"])]

    def close(self) -> None:
        """Release the client (Chroma keeps its files)."""
        self._collection = None  # type: ignore[assignment]
        self._client = None  # type: ignore[assignment]
        self._remove_temporary()
