"""FAISS: exact inner product (`IndexFlatIP`) or HNSW over unit vectors, filters by id selector.

The default backend. Rows live in memory (and, with a folder, in three files written atomically
by `flush` and `close`, checked by their SHA-256 on open). A filter becomes a FAISS `IDSelector`, so
it applies before the top-k cut; when HNSW runs out of graph under a tight filter the allowed
rows are scored exactly, so a filtered query returns k rows whenever k exist; a filter that
keeps at most 4,096 rows (or 5%) is scored exactly from the start, where HNSW loses recall.
"""

from __future__ import annotations

import hashlib
import io
import json
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from ..io import atomic_write_bytes, atomic_write_text
from .base import BaseIndex, Condition, IndexSpec, Neighbours, VectorStoreError

__all__ = ["FaissIndex", "import_faiss", "row_mask"]

_EXACT_ROWS = 4096  # filtered HNSW queries with at most this many (or 5% of) allowed rows are exact
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq, "gte": operator.ge, "gt": operator.gt, "lte": operator.le, "lt": operator.lt,
}


def import_faiss() -> Any:
    """The faiss module (a core dependency)."""
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("faiss is missing; run `make run` or `pip install faiss-cpu`") from exc
    return faiss


def row_mask(rows: list[dict[str, Any]], conds: list[Condition]) -> np.ndarray | None:
    """Boolean mask of the stored rows passing every condition (None: no conditions)."""
    if not conds:
        return None
    mask = np.ones(len(rows), dtype=bool)
    for cond in conds:
        if cond.op == "in":
            members = set(cond.value)
            test: Callable[[Any], bool] = lambda v, members=members: v in members
        else:
            compare, bound = _OPS[cond.op], cond.value
            test = lambda v, compare=compare, bound=bound: compare(v, bound)
        column = cond.column
        mask &= np.fromiter(((v := row.get(column)) is not None and test(v) for row in rows), dtype=bool, count=len(rows))
    return mask


class FaissIndex(BaseIndex):
    """Vectors in a FAISS flat or HNSW index; the index is rebuilt after deletes or replacements."""

    backend = "faiss"
    indexes = ("flat", "hnsw")

    def __init__(self, spec: IndexSpec) -> None:
        super().__init__(spec)
        self._faiss = import_faiss()
        self._ids: list[str] = []
        self._docs: list[str] = []
        self._rows: list[dict[str, Any]] = []
        self._vectors = np.zeros((0, spec.dimension), dtype=np.float32)
        self._index: Any = None  # built on first search after a change
        self._dirty = False  # changes not yet written to the folder
        if spec.folder is not None and self._path("json").exists():
            self._load()

    def _path(self, suffix: str):  # type: ignore[no-untyped-def]
        assert self.spec.folder is not None  # noqa: S101 - only called with a folder
        return self.spec.folder / f"{self.spec.name}.faiss.{suffix}"

    # -- storage -----------------------------------------------------------------------------

    def _upsert(self, ids: list[str], doc_ids: list[str], vectors: np.ndarray, rows: list[dict[str, Any]]) -> None:
        position = {cid: i for i, cid in enumerate(self._ids)}
        new = [j for j, cid in enumerate(ids) if cid not in position]
        for j, cid in enumerate(ids):
            if cid in position:
                i = position[cid]
                self._vectors[i], self._docs[i], self._rows[i] = vectors[j], doc_ids[j], rows[j]
                self._index = None
        if new:
            if self._index is not None:
                self._index.add(vectors[new])  # appends keep the built graph
            self._vectors = np.concatenate([self._vectors, vectors[new]])
            self._ids += [ids[j] for j in new]
            self._docs += [doc_ids[j] for j in new]
            self._rows += [rows[j] for j in new]
        self._dirty = True

    def _delete(self, doc_ids: list[str]) -> int:
        gone = set(doc_ids)
        keep = [i for i, d in enumerate(self._docs) if d not in gone]
        removed = len(self._ids) - len(keep)
        if removed:
            self._vectors = self._vectors[keep]
            self._ids = [self._ids[i] for i in keep]
            self._docs = [self._docs[i] for i in keep]
            self._rows = [self._rows[i] for i in keep]
            self._index = None
            self._dirty = True
        return removed

    def count(self) -> int:
        """Rows stored."""
        return len(self._ids)

    def flush(self) -> None:
        """Write the rows to the folder (nothing in memory-only mode or when unchanged)."""
        if self._dirty:
            self._save()
            self._dirty = False

    def close(self) -> None:
        """Write pending changes and drop the built index."""
        self.flush()
        self._index = None

    def vectors(self) -> np.ndarray:
        """The stored unit vectors, one row per chunk id in `ids()` order."""
        return self._vectors

    def ids(self) -> list[str]:
        """The stored chunk ids."""
        return list(self._ids)

    def _save(self) -> None:
        if self.spec.folder is None:
            return
        buffer = io.BytesIO()
        np.save(buffer, self._vectors, allow_pickle=False)
        blobs = {
            "npy": buffer.getvalue(),
            "jsonl": "".join(json.dumps([c, d, r], ensure_ascii=False) + "\n"
                             for c, d, r in zip(self._ids, self._docs, self._rows)).encode("utf-8"),
        }
        for suffix, blob in blobs.items():
            atomic_write_bytes(self._path(suffix), blob)
        meta = {"count": len(self._ids), "sha256": {s: hashlib.sha256(b).hexdigest() for s, b in blobs.items()}}
        atomic_write_text(self._path("json"), json.dumps(meta) + "\n")  # last: it vouches for the others

    def _load(self) -> None:
        try:
            meta = json.loads(self._path("json").read_text(encoding="utf-8"))
            blobs = {s: self._path(s).read_bytes() for s in ("npy", "jsonl")}
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise VectorStoreError(f"the FAISS index in {self.spec.folder} is incomplete or corrupt ({exc}); rebuild it") from None
        for suffix, blob in blobs.items():
            if not isinstance(meta, dict) or hashlib.sha256(blob).hexdigest() != meta.get("sha256", {}).get(suffix):
                raise VectorStoreError(f"{self._path(suffix)} does not match its checksum; rebuild the index")
        vectors = np.load(io.BytesIO(blobs["npy"]), allow_pickle=False)
        entries = [json.loads(line) for line in blobs["jsonl"].decode("utf-8").splitlines()]
        if vectors.ndim != 2 or len(vectors) != len(entries):
            raise VectorStoreError(f"the FAISS index in {self.spec.folder} holds {vectors.shape} vectors for "
                                   f"{len(entries)} rows; rebuild the index")
        if vectors.shape[1] != self.spec.dimension:
            raise VectorStoreError(
                f"dimension mismatch: the FAISS index in {self.spec.folder} holds vectors of dimension "
                f"{vectors.shape[1]}, not {self.spec.dimension}; embed with the index's model or rebuild the index"
            )
        self._vectors = vectors.astype(np.float32)
        self._ids, self._docs, self._rows = ([e[i] for e in entries] for i in range(3))

    # -- search ------------------------------------------------------------------------------

    def _built(self) -> Any:
        if self._index is None:
            faiss, dim = self._faiss, self.spec.dimension
            if self.spec.index == "flat":
                index = faiss.IndexFlatIP(dim)
            else:
                index = faiss.IndexHNSWFlat(dim, self.spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = self.spec.hnsw_ef_construction
            index.add(self._vectors)
            self._index = index
        return self._index

    def _search(self, vectors: np.ndarray, k: int, conds: list[Condition]) -> list[Neighbours]:
        faiss = self._faiss
        mask = row_mask(self._rows, conds)
        allowed = np.flatnonzero(mask) if mask is not None else None
        k = min(k, len(self._ids) if allowed is None else len(allowed))
        if k == 0:
            return [[] for _ in vectors]
        if allowed is not None and self.spec.index == "hnsw" and len(allowed) <= max(_EXACT_ROWS, len(self._ids) // 20):
            # a tight filter cuts HNSW's graph into islands; scoring the few allowed rows is exact and cheap
            return [list(zip(*(a.tolist() for a in self._exact_ids(v, k, allowed)))) for v in vectors]
        index = self._built()
        hnsw = self.spec.index == "hnsw"
        params = None
        if allowed is not None or hnsw:
            params = faiss.SearchParametersHNSW(efSearch=max(self.spec.hnsw_ef_search, k)) if hnsw else faiss.SearchParameters()
            if allowed is not None:
                params.sel = faiss.IDSelectorBatch(allowed.astype(np.int64))
        scores, labels = index.search(vectors, k, params=params)
        results = []
        for row, (row_scores, row_labels) in enumerate(zip(scores, labels)):
            found = row_labels >= 0
            if found.sum() < k:  # HNSW under a tight filter can run out of graph: score the subset exactly
                row_labels, row_scores = self._exact(vectors[row], k, allowed)
                found = np.ones(len(row_labels), dtype=bool)
            results.append([(self._ids[i], s) for i, s in zip(row_labels[found].tolist(), row_scores[found].tolist())])
        return results

    def _exact_ids(self, vector: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, scores = self._exact(vector, k, allowed)
        return np.array(self._ids, dtype=object)[rows], scores

    def _exact(self, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        from ..retrieval.base import top_k

        ids = np.arange(len(self._ids)) if allowed is None else allowed
        scores = self._vectors[ids] @ vector
        best = top_k(scores, k)
        return ids[best], scores[best]
