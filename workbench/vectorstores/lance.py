"""LanceDB (embedded): a Lance table in the index folder, searched exactly or through IVF_FLAT.

"flat" scans every vector (exact); "ivfflat" builds LanceDB's IVF_FLAT index (about sqrt(rows)
partitions, `ivf_probes` probed; rows added after the build are scanned exactly until the
index is rebuilt). Filters are SQL predicates applied before the vector search (`prefilter`),
but with IVF_FLAT only within the probed partitions, so a tight filter can return fewer than k
rows (`may_return_short`; the dense retriever counts such lists).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import BaseIndex, Condition, IndexSpec, Neighbours, VectorStoreError

__all__ = ["LanceIndex"]

_ARROW = {"str": "string", "int": "int64", "float": "float64", "bool": "bool_"}
_SQL_TYPES = {"str": "STRING", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN"}
_SQL_OPS = {"eq": "=", "gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _where(conds: list[Condition]) -> str | None:
    parts = []
    for c in conds:
        if c.op == "in":
            parts.append(f"{c.column} IN ({', '.join(map(_literal, c.value))})" if c.value else "FALSE")
        else:
            parts.append(f"{c.column} {_SQL_OPS[c.op]} {_literal(c.value)}")
    return " AND ".join(parts) or None


class LanceIndex(BaseIndex):
    """A LanceDB table: id, doc_id, vector and one column per metadata field."""

    backend = "lancedb"
    indexes = ("flat", "ivfflat")

    def __init__(self, spec: IndexSpec) -> None:
        super().__init__(spec)
        if spec.url:
            raise VectorStoreError("the lancedb backend is embedded; leave retrieval.backend_url empty")
        try:
            import lancedb
            import pyarrow as pa
        except ImportError as exc:
            raise ImportError("the lancedb backend needs the `vectordb` extra: pip install 'workbench[vectordb]'") from exc
        self._pa = pa
        self._db = lancedb.connect(str(self._storage() / "lance"))
        self._table: Any = None
        self._indexed = False
        if spec.name in self._db.list_tables().tables:
            self._table = self._db.open_table(spec.name)
            vector_type = self._table.schema.field("vector").type
            if getattr(vector_type, "list_size", None) != spec.dimension:
                raise VectorStoreError(
                    f"dimension mismatch: table {spec.name!r} holds vectors of dimension "
                    f"{getattr(vector_type, 'list_size', '?')}, not {spec.dimension}; embed with the index's model"
                )
            self._indexed = bool(self._table.list_indices())

    @property
    def may_return_short(self) -> bool:
        """IVF_FLAT prefilters only the probed partitions: a tight filter can leave fewer than k rows."""
        return self._indexed

    def _schema(self) -> Any:
        pa = self._pa
        return pa.schema([("id", pa.string()), ("doc_id", pa.string()),
                          ("vector", pa.list_(pa.float32(), self.spec.dimension)),
                          *((c, getattr(pa, _ARROW[k])()) for c, k in self.fields.items())])

    def _add_fields(self, new: dict[str, str]) -> None:  # type: ignore[override]
        if self._table is None:
            return  # the table is created with every field on the first upsert
        added = {c: k for c, k in new.items() if c not in self.fields}
        widened = [c for c in new if c in self.fields]
        if added:
            self._table.add_columns({c: f"CAST(NULL AS {_SQL_TYPES[k]})" for c, k in added.items()})
        if widened:
            self._table.alter_columns(*({"path": c, "data_type": self._pa.float64()} for c in widened))

    def _upsert(self, ids: list[str], doc_ids: list[str], vectors: np.ndarray, rows: list[dict[str, Any]]) -> None:
        pa = self._pa
        schema = self._schema()
        columns = {"id": ids, "doc_id": doc_ids,
                   "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), self.spec.dimension)}
        for column in self.fields:
            columns[column] = [r.get(column) for r in rows]
        data = pa.table({name: pa.array(values, schema.field(name).type) if name != "vector" else values
                         for name, values in columns.items()}, schema=schema)
        if self._table is None:
            self._table = self._db.create_table(self.spec.name, data=data, schema=schema)
            return
        self._table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)

    def _delete(self, doc_ids: list[str]) -> int:
        if self._table is None:
            return 0
        predicate = f"doc_id IN ({', '.join(map(_literal, doc_ids))})"
        found = self._table.count_rows(predicate)
        if found:
            self._table.delete(predicate)
        return found

    def count(self) -> int:
        """Rows in the table."""
        return 0 if self._table is None else int(self._table.count_rows())

    def _search(self, vectors: np.ndarray, k: int, conds: list[Condition]) -> list[Neighbours]:
        if self._table is None:
            return [[] for _ in vectors]
        if self.spec.index == "ivfflat" and not self._indexed and self.count() >= 256:
            partitions = self.spec.ivf_lists or max(1, round(math.sqrt(self.count())))
            self._table.create_index(metric="cosine", index_type="IVF_FLAT", num_partitions=partitions,
                                     vector_column_name="vector")
            self._indexed = True
        where = _where(conds)
        results = []
        for vector in vectors:
            query = self._table.search(vector, vector_column_name="vector").distance_type("cosine").limit(k)
            if self._indexed:
                query = query.nprobes(self.spec.ivf_probes)
            if where:
                query = query.where(where, prefilter=True)
            table = query.select(["id", "_distance"]).to_arrow()
            results.append(list(zip(table["id"].to_pylist(), (1.0 - np.asarray(table["_distance"].to_pylist(), dtype=np.float64)).tolist())))
        return results

    def close(self) -> None:
        """Release the table (Lance keeps its files)."""
        self._table = None
        self._remove_temporary()
