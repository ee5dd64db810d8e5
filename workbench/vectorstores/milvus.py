"""Milvus: Milvus Lite (a local file in the index folder) or a Milvus server URI (the scale-out path).

Rows are (id, doc_id, vector) plus dynamic fields for metadata; a filter is a Milvus boolean
expression applied before the top-k cut. "flat" is exact (FLAT), "ivfflat" is IVF_FLAT with
about sqrt(rows) lists built on the first upsert and `ivf_probes` probed; "hnsw" needs a server
(Milvus Lite has no HNSW).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .base import BaseIndex, Condition, IndexSpec, Neighbours, VectorStoreError, check_reachable

__all__ = ["MilvusIndex"]

_OPS = {"eq": "==", "gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}
_INDEX_TYPES = {"flat": "FLAT", "ivfflat": "IVF_FLAT", "hnsw": "HNSW"}
_BATCH = 2000


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a double-quoted string with escapes


def _expression(conds: list[Condition]) -> str:
    parts = []
    for c in conds:
        if c.op == "in":
            parts.append(f"{c.column} in [{', '.join(map(_literal, c.value))}]")
        else:
            parts.append(f"{c.column} {_OPS[c.op]} {_literal(c.value)}")
    return " and ".join(parts)


class MilvusIndex(BaseIndex):
    """A Milvus collection with an inner-product index over unit vectors."""

    backend = "milvus"
    indexes = ("flat", "ivfflat", "hnsw")

    def __init__(self, spec: IndexSpec) -> None:
        super().__init__(spec)
        try:
            from pymilvus import DataType, MilvusClient
        except ImportError as exc:
            raise ImportError("the milvus backend needs the `vectordb` extra: pip install 'workbench[vectordb]'") from exc
        if spec.url:
            if not spec.url.startswith(("http://", "https://", "tcp://")):
                raise VectorStoreError(f"Milvus URI {spec.url!r} must look like http://host:19530")
            check_reachable(spec.url, spec.timeout_s, default_port=19530)
            self._client = MilvusClient(uri=spec.url, timeout=spec.timeout_s)
        else:
            if spec.index == "hnsw":
                raise VectorStoreError("Milvus Lite has no HNSW index; use index 'flat' or 'ivfflat', or a Milvus server URL")
            self._client = MilvusClient(str(self._storage() / "milvus.db"))
        name = spec.name
        if self._client.has_collection(name):
            described = self._client.describe_collection(name)
            dims = [f.get("params", {}).get("dim") for f in described["fields"] if f["name"] == "vector"]
            if not dims:
                raise VectorStoreError(f"collection {name!r} is not a workbench index (no 'vector' field); choose another name")
            if int(dims[0]) != spec.dimension:
                raise VectorStoreError(
                    f"dimension mismatch: collection {name!r} holds vectors of dimension {dims[0]}, not "
                    f"{spec.dimension}; embed with the index's model or choose another index name"
                )
            self._client.load_collection(name)
            return
        schema = self._client.create_schema(auto_id=False, enable_dynamic_field=True)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=1024)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=4096)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=spec.dimension)
        self._client.create_collection(name, schema=schema)

    def _build_index(self, rows: int) -> None:
        params = self._client.prepare_index_params()
        extra: dict[str, Any] = {}
        if self.spec.index == "ivfflat":
            extra = {"nlist": self.spec.ivf_lists or max(1, round(math.sqrt(rows)))}
        elif self.spec.index == "hnsw":
            extra = {"M": self.spec.hnsw_m, "efConstruction": self.spec.hnsw_ef_construction}
        params.add_index(field_name="vector", index_type=_INDEX_TYPES[self.spec.index], metric_type="IP", params=extra)
        self._client.create_index(self.spec.name, params)
        self._client.load_collection(self.spec.name)

    def _upsert(self, ids: list[str], doc_ids: list[str], vectors: np.ndarray, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(ids), _BATCH):
            stop = start + _BATCH
            data = [{"id": c, "doc_id": d, "vector": v, **r}
                    for c, d, v, r in zip(ids[start:stop], doc_ids[start:stop], vectors[start:stop], rows[start:stop])]
            self._client.upsert(self.spec.name, data)
        if not self._client.list_indexes(self.spec.name):
            self._build_index(len(ids))

    def _delete(self, doc_ids: list[str]) -> int:
        result = self._client.delete(self.spec.name, filter=f"doc_id in [{', '.join(map(_literal, doc_ids))}]")
        return int(result["delete_count"] if isinstance(result, dict) else len(result))

    def count(self) -> int:
        """Rows in the collection."""
        if not self._client.list_indexes(self.spec.name):
            return 0
        rows = self._client.query(self.spec.name, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _search(self, vectors: np.ndarray, k: int, conds: list[Condition]) -> list[Neighbours]:
        if not self._client.list_indexes(self.spec.name):
            return [[] for _ in vectors]
        params: dict[str, Any] = {"metric_type": "IP"}
        if self.spec.index == "ivfflat":
            params["params"] = {"nprobe": self.spec.ivf_probes}
        elif self.spec.index == "hnsw":
            params["params"] = {"ef": max(self.spec.hnsw_ef_search, k)}
        results = self._client.search(self.spec.name, data=vectors.tolist(), limit=k, filter=_expression(conds),
                                      output_fields=["id"], search_params=params)
        return [[(str(hit["id"]), float(hit["distance"])) for hit in row] for row in results]

    def close(self) -> None:
        """Close the client (Milvus Lite keeps its file)."""
        self._client.close()
        self._remove_temporary()
