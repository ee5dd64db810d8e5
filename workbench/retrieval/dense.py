"""Dense retrieval: cosine similarity through any `VectorIndex` (FAISS by default) that knows its model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import ConfigError, RetrievalConfig
from ..types import Chunk, Hit
from ..vectorstores import (
    BaseIndex,
    DocumentEntry,
    IndexInfo,
    IndexSpec,
    index_spec,
    make_index,
    read_info,
    read_manifest,
    write_info,
    write_manifest,
)
from .base import Filter, check_chunks, check_k, filter_mask

if TYPE_CHECKING:
    from ..embedding import Embedder
    from ..resources import Resources

__all__ = ["DenseRetriever", "index_settings"]

_UPSERT_BATCH = 5000


def index_settings(config: RetrievalConfig) -> dict[str, Any]:
    """The `IndexSpec` search settings a retrieval config names."""
    return {"hnsw_m": config.hnsw_m, "hnsw_ef_construction": config.hnsw_ef_construction,
            "hnsw_ef_search": config.hnsw_ef_search, "ivf_lists": config.ivf_lists, "ivf_probes": config.ivf_probes}


def _mismatch(built: str, given: str) -> ConfigError:
    return ConfigError(
        f"embedding model mismatch: the index was built with {built!r} but the embedder is {given!r}; "
        f"rebuild the index with {given!r} or set embedding.model = {built!r}"
    )


class DenseRetriever:
    """Cosine similarity over a vector index of chunk embeddings (any backend of `workbench.vectorstores`).

    The retriever records the embedding model id; pairing it with an embedder of another model
    raises `ConfigError` ("embedding model mismatch"). `short_lists` counts filtered result
    lists that came back with fewer than k hits although k chunks passed the filter (a backend
    that post-filters); FAISS and the databases here filter before the top-k cut.
    """

    def __init__(self, chunks: Sequence[Chunk], index: BaseIndex, embedder: Embedder, *, model_id: str) -> None:
        """Wrap an index whose rows are `chunks` (by id); see `build` and `load`.

        Raises:
            ConfigError: `embedder` is not the model the index was built with.
            ValueError: the index and chunk counts differ.
        """
        if embedder.model_id != model_id:
            raise _mismatch(model_id, embedder.model_id)
        stored = index.count()
        if stored != len(chunks):
            raise ValueError(
                f"the {index.label} index holds {stored} vectors for {len(chunks)} chunks; rebuild the index "
                "(or run `workbench ingest` again to finish an interrupted ingest)"
            )
        self.chunks = list(chunks)
        self._by_id = {c.id: c for c in self.chunks}
        self.index = index
        self.embedder = embedder
        self.model_id = model_id
        self.dimension = index.spec.dimension
        self.short_lists = 0

    @classmethod
    def build(cls, chunks: Sequence[Chunk], embedder: Embedder, *, index: str = "flat", backend: str = "faiss",
              url: str = "", folder: Path | None = None, progress: bool = True, **settings: Any) -> DenseRetriever:
        """Embed `chunks` (through the embedder's cache) and index them.

        Args:
            chunks: what to index.
            embedder: the model; its id is recorded with the index.
            index: "flat" (exact), "hnsw" or "ivfflat" (approximate; which the backend has).
            backend: a name from `workbench.vectorstores.BACKENDS`.
            url: the backend's server ("" = embedded).
            folder: where an embedded backend keeps its files (None: memory or a temporary folder).
            progress: show the embedding progress bar.
            settings: `IndexSpec` search settings (hnsw_m, hnsw_ef_search, ivf_probes, ...).

        Raises:
            ValueError: no chunks, duplicate chunk ids, an unknown backend or index kind.
        """
        check_chunks(chunks)
        vectors = embedder.embed([c.text for c in chunks], progress=progress)
        built = make_index(backend, IndexSpec(folder=folder, dimension=int(vectors.shape[1]), index=index, url=url, **settings))
        for start in range(0, len(chunks), _UPSERT_BATCH):
            part = chunks[start : start + _UPSERT_BATCH]
            built.upsert([c.id for c in part], vectors[start : start + _UPSERT_BATCH], [c.metadata for c in part],
                         [c.doc_id for c in part])
        return cls(chunks, built, embedder, model_id=embedder.model_id)

    @classmethod
    def from_config(cls, config: RetrievalConfig, resources: Resources) -> DenseRetriever:
        """A dense retriever over `resources.chunks` with the index settings of `config`, or the
        persistent index at `config.index_path` (its own chunks).

        Raises:
            ValueError: `resources.embedder` is None.
        """
        embedder = resources.embedder
        if embedder is None:
            raise ValueError(
                f"retrieval.kind={config.kind!r} needs an embedder; pass "
                "workbench.embedding.load_embedder(config.embedding) to build_retriever"
            )
        if config.index_path:
            return cls.load(config.index_path, embedder)
        return cls.build(resources.chunks, embedder, index=config.index, backend=config.backend,
                         url=config.backend_url, **index_settings(config))

    @property
    def label(self) -> str:
        """The backend's display name."""
        return self.index.label

    def retrieve(self, query: str, k: int, where: Filter | None = None) -> list[Hit]:
        """The k chunks most similar to `query` among those passing `where`.

        Raises:
            ValueError: k <= 0 or a malformed filter.
            ConfigError: the embedder's vectors do not fit the index's dimension.
        """
        return self.retrieve_many([query], k, where)[0]

    def retrieve_many(
        self, queries: Sequence[str], k: int, where: Filter | None = None, *, vectors: np.ndarray | None = None
    ) -> list[list[Hit]]:
        """`retrieve` for each query: one embedding batch (unless `vectors` are given), one index search."""
        check_k(k)
        if not queries:
            return []
        return self.search(self.embedder.embed(list(queries)) if vectors is None else vectors, k, where)

    def search(self, vectors: np.ndarray, k: int, where: Filter | None = None) -> list[list[Hit]]:
        """The k nearest chunks to each query vector (rows of `vectors`), among those passing `where`.

        Raises:
            ValueError: k <= 0, a malformed filter, or a field the backend cannot filter.
            ConfigError: the vectors' dimension is not the index's.
        """
        check_k(k)
        vectors = np.array(vectors, dtype=np.float32, ndmin=2)
        if vectors.shape[1] != self.dimension:
            raise ConfigError(
                f"embedding model mismatch: query vectors have dimension {vectors.shape[1]} but the index "
                f"({self.model_id!r}) has {self.dimension}; rebuild the index or set embedding.model = {self.model_id!r}"
            )
        mask = filter_mask(self.chunks, where)
        expected = min(k, len(self.chunks) if mask is None else int(mask.sum()))
        results = []
        for row in self.index.search(vectors, k, where):
            if len(row) < expected:
                self.short_lists += 1
            results.append([Hit(chunk=self._by_id[cid], score=score, rank=r) for r, (cid, score) in enumerate(row, 1)])
        return results

    def close(self) -> None:
        """Release the index (its connection, a temporary folder)."""
        self.index.close()

    def save(self, directory: str | Path) -> None:
        """Write a persistent copy of this index (same backend and settings) to an empty folder.

        Raises:
            VectorStoreError: `directory` already holds files.
        """
        directory = Path(directory)
        if read_info(directory) is not None:
            raise ValueError(f"{directory} already holds an index; save to an empty or new folder")
        spec = self.index.spec
        settings = {"name": spec.name, "hnsw_m": spec.hnsw_m, "hnsw_ef_construction": spec.hnsw_ef_construction,
                    "hnsw_ef_search": spec.hnsw_ef_search, "ivf_lists": spec.ivf_lists, "ivf_probes": spec.ivf_probes,
                    "timeout_s": spec.timeout_s}
        info = IndexInfo(backend=self.index.backend, index=spec.index, model_id=self.model_id, dimension=self.dimension,
                         normalize=self.embedder.config.normalize, url=spec.url, settings=settings)
        write_info(directory, info)
        copy = make_index(info.backend, index_spec(directory, info))
        vectors = self.embedder.embed([c.text for c in self.chunks])  # cache hits
        copy.upsert([c.id for c in self.chunks], vectors, [c.metadata for c in self.chunks], [c.doc_id for c in self.chunks])
        copy.close()
        documents: dict[str, list[Chunk]] = {}
        for chunk in self.chunks:
            documents.setdefault(chunk.doc_id, []).append(chunk)
        write_manifest(directory, {d: DocumentEntry(hash="", chunks=tuple(cs)) for d, cs in documents.items()})

    @classmethod
    def load(cls, directory: str | Path, embedder: Embedder) -> DenseRetriever:
        """Open a persistent index (written by `save` or `workbench ingest`).

        Raises:
            ConfigError: `embedder` is not the model (or normalisation) the index was built with.
            ValueError: the folder is missing, not an index, or its files are corrupt.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise ValueError(f"{directory} holds no saved dense index (no such folder); build and save one")
        info = read_info(directory)
        if info is None:
            raise ValueError(f"{directory} holds no saved dense index (it is empty); build and save one")
        info.check_model(embedder.model_id, normalize=embedder.config.normalize)
        documents: Mapping[str, DocumentEntry] = read_manifest(directory)
        chunks = [c for entry in documents.values() for c in entry.chunks]
        index = make_index(info.backend, index_spec(directory, info))
        return cls(chunks, index, embedder, model_id=info.model_id)
