"""Qdrant: a Qdrant server at a URL, or qdrant-client's local mode, which is not the engine.

Local mode (`QdrantClient(path=...)`, no URL) is a pure-Python reimplementation that scores
every point; it is labelled "qdrant-local (Python reimplementation, not the Qdrant engine)"
wherever it is shown, and its speed says nothing about Qdrant's. Point ids are UUIDs derived
from chunk ids (Qdrant accepts only UUIDs and integers); filters are Qdrant payload filters
applied before the top-k cut.
"""

from __future__ import annotations

import math
import uuid
import warnings
from typing import Any

import numpy as np

from .base import BaseIndex, Condition, IndexSpec, Neighbours, VectorStoreError, check_reachable

__all__ = ["QdrantIndex", "LOCAL_LABEL"]

LOCAL_LABEL = "qdrant-local (Python reimplementation, not the Qdrant engine)"
_BATCH = 1000


def _point_id(chunk_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, chunk_id))


class QdrantIndex(BaseIndex):
    """A Qdrant collection (cosine); chunk ids and document ids kept in the payload."""

    backend = "qdrant"
    indexes = ("hnsw", "flat")

    def __init__(self, spec: IndexSpec) -> None:
        super().__init__(spec)
        try:
            from qdrant_client import QdrantClient, models
        except ImportError as exc:
            raise ImportError("the qdrant backend needs the `vectordb` extra: pip install 'workbench[vectordb]'") from exc
        self._models = models
        if spec.url:
            if not spec.url.startswith(("http://", "https://")):
                raise VectorStoreError(f"Qdrant URL {spec.url!r} must look like http://host:6333")
            check_reachable(spec.url, spec.timeout_s, default_port=6333)
            self._client = QdrantClient(url=spec.url, timeout=math.ceil(spec.timeout_s))
        else:
            self._client = QdrantClient(path=str(self._storage() / "qdrant"))
        if self._client.collection_exists(spec.name):
            size = self._client.get_collection(spec.name).config.params.vectors.size  # type: ignore[union-attr]
            if size != spec.dimension:
                raise VectorStoreError(
                    f"dimension mismatch: collection {spec.name!r} holds vectors of dimension {size}, not "
                    f"{spec.dimension}; embed with the index's model or choose another index name"
                )
        else:
            hnsw = models.HnswConfigDiff(m=spec.hnsw_m, ef_construct=spec.hnsw_ef_construction)
            self._client.create_collection(
                spec.name, vectors_config=models.VectorParams(size=spec.dimension, distance=models.Distance.COSINE),
                hnsw_config=hnsw)
            if spec.url:  # a server filters deletes by document through a payload index
                self._client.create_payload_index(spec.name, "doc_id", models.PayloadSchemaType.KEYWORD)

    @property
    def label(self) -> str:
        """The local mode says what it is."""
        return LOCAL_LABEL if not self.spec.url else f"qdrant ({self.spec.index})"

    def _filter(self, conds: list[Condition]) -> Any:
        m = self._models
        must = []
        for c in conds:
            if c.op == "in":
                if c.value and all(isinstance(v, float) for v in c.value):
                    must.append(m.Filter(should=[m.FieldCondition(key=c.column, range=m.Range(gte=v, lte=v)) for v in c.value]))
                else:
                    must.append(m.FieldCondition(key=c.column, match=m.MatchAny(any=list(c.value))))
            elif c.op == "eq":
                if isinstance(c.value, float):
                    must.append(m.FieldCondition(key=c.column, range=m.Range(gte=c.value, lte=c.value)))
                else:
                    must.append(m.FieldCondition(key=c.column, match=m.MatchValue(value=c.value)))
            else:
                must.append(m.FieldCondition(key=c.column, range=m.Range(**{c.op: c.value})))
        return m.Filter(must=must) if must else None

    def _upsert(self, ids: list[str], doc_ids: list[str], vectors: np.ndarray, rows: list[dict[str, Any]]) -> None:
        m = self._models
        for start in range(0, len(ids), _BATCH):
            stop = start + _BATCH
            points = [m.PointStruct(id=_point_id(c), vector=v.tolist(), payload={"cid": c, "doc_id": d, **r})
                      for c, d, v, r in zip(ids[start:stop], doc_ids[start:stop], vectors[start:stop], rows[start:stop])]
            with warnings.catch_warnings():  # local mode warns above 20,000 points: it is labelled as such
                warnings.simplefilter("ignore")
                self._client.upsert(self.spec.name, points=points, wait=True)

    def _delete(self, doc_ids: list[str]) -> int:
        m = self._models
        selector = m.Filter(must=[m.FieldCondition(key="doc_id", match=m.MatchAny(any=doc_ids))])
        found = self._client.count(self.spec.name, count_filter=selector, exact=True).count
        if found:
            self._client.delete(self.spec.name, points_selector=m.FilterSelector(filter=selector), wait=True)
        return int(found)

    def count(self) -> int:
        """Points in the collection."""
        return int(self._client.count(self.spec.name, exact=True).count)

    def _search(self, vectors: np.ndarray, k: int, conds: list[Condition]) -> list[Neighbours]:
        m = self._models
        query_filter = self._filter(conds)
        # local mode always scores every point and rejects search parameters
        params = m.SearchParams(hnsw_ef=max(self.spec.hnsw_ef_search, k), exact=self.spec.index == "flat") if self.spec.url else None
        requests = [m.QueryRequest(query=v.tolist(), limit=k, filter=query_filter, params=params, with_payload=["cid"])
                    for v in vectors]
        responses = self._client.query_batch_points(self.spec.name, requests=requests)
        return [[(p.payload["cid"], float(p.score)) for p in r.points] for r in responses]  # type: ignore[index]

    def close(self) -> None:
        """Close the client (local mode keeps its files)."""
        self._client.close()
        self._remove_temporary()
