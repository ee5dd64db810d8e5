"""Vector indexes behind the dense retriever: FAISS (the default), pgvector, Chroma, LanceDB,
Milvus and Qdrant, one backend per module, all answering the `VectorIndex` protocol.

`BACKENDS` (the `retrieval.backend` registry) is the single list of backend names (config
validation, CLI help and errors read it); `make_index(name, spec)` builds one. Only FAISS is a core dependency: the others need the
`vectordb` extra and say so when it is missing. A persistent index folder records the
embedding model, dimension and normalisation it was built with (`IndexInfo`).
"""

from __future__ import annotations

from ..registry import REGISTRIES, Registry
from .base import (
    BaseIndex,
    Condition,
    IndexSpec,
    Neighbours,
    VectorIndex,
    VectorStoreError,
    check_reachable,
    conditions,
    normalised,
    storable,
)
from .chroma import ChromaIndex
from .faiss import FaissIndex
from .folder import DocumentEntry, IndexInfo, index_spec, read_info, read_manifest, write_info, write_manifest
from .lance import LanceIndex
from .milvus import MilvusIndex
from .pgvector import PgvectorIndex, embedded_server
from .qdrant import LOCAL_LABEL, QdrantIndex

__all__ = [
    "VectorIndex",
    "IndexSpec",
    "IndexInfo",
    "Condition",
    "Neighbours",
    "VectorStoreError",
    "BaseIndex",
    "FaissIndex",
    "PgvectorIndex",
    "ChromaIndex",
    "LanceIndex",
    "MilvusIndex",
    "QdrantIndex",
    "BACKENDS",
    "LOCAL_LABEL",
    "make_index",
    "backend_label",
    "embedded_server",
    "check_reachable",
    "conditions",
    "normalised",
    "storable",
    "read_info",
    "write_info",
    "DocumentEntry",
    "read_manifest",
    "write_manifest",
    "index_spec",
]

BACKENDS: Registry = REGISTRIES["retrieval.backend"]  # name -> index class (see workbench.registry)


def make_index(backend: str, spec: IndexSpec) -> BaseIndex:
    """Open (or create) the `backend` index that `spec` describes.

    Raises:
        VectorStoreError: an unknown backend (the message lists them all), an index kind the
            backend lacks, an unreachable URL or a folder/table holding something else.
        ImportError: the backend's client is missing (the message names the `vectordb` extra).
    """
    if backend not in BACKENDS:
        raise VectorStoreError(f"unknown vector backend {backend!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[backend](spec)


def backend_label(backend: str, index: str, url: str = "") -> str:
    """How tables, charts and logs name a backend (Qdrant's local mode says it is not the engine)."""
    if backend == "qdrant" and not url:
        return LOCAL_LABEL
    return f"{backend} ({index})" + (" @ server" if url else "")
