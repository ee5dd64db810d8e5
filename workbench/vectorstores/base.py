"""What every vector index shares: the protocol, its spec, stored metadata fields and filters.

A backend stores (chunk id, document id, unit vector, scalar metadata) rows and answers
cosine top-k queries. Metadata values are kept per field as one of str / int / float / bool;
dates, datetimes and ISO date strings are kept as given (ISO text) plus a companion epoch-seconds
field, so range filters on dates run natively in every database. `conditions` turns a
`workbench.retrieval.Filter` into a flat list of `Condition`s each backend translates.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import shutil
import socket
import tempfile
import urllib.parse
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from ..io import atomic_write_text

__all__ = [
    "VectorIndex",
    "IndexSpec",
    "Condition",
    "Neighbours",
    "VectorStoreError",
    "BaseIndex",
    "conditions",
    "storable",
    "normalised",
    "check_reachable",
    "epoch_seconds",
]

Neighbours = list[tuple[str, float]]
"""One query's result: (chunk id, cosine similarity), best first."""

FieldKind = Literal["str", "int", "float", "bool"]
_FIELDS_FILE = "fields.json"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class VectorStoreError(ValueError):
    """A vector index cannot do what was asked; the message names the value and the fix."""


class VectorIndex(Protocol):
    """A store of chunk vectors that answers filtered cosine top-k queries."""

    label: str

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]],
               doc_ids: Sequence[str]) -> None: ...

    def delete_documents(self, doc_ids: Sequence[str]) -> int: ...

    def search(self, vectors: np.ndarray, k: int, where: Mapping[str, Any] | None = None) -> list[Neighbours]: ...

    def count(self) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class IndexSpec:
    """Where an index lives and how it searches.

    `folder` holds the index (embedded backends) or only its field list (servers at `url`);
    None keeps a FAISS index in memory and gives the others a temporary folder removed on close;
    `name` is the table or collection. `index` is "flat" (exact), "hnsw" or "ivfflat"; each
    backend lists the kinds it has. `timeout_s` bounds connecting to a server.
    """

    folder: Path | None = None  # None: in memory (FAISS) or a temporary folder
    name: str = "chunks"
    dimension: int
    index: str = "flat"
    url: str = ""
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_lists: int = 0  # 0 = about sqrt(rows)
    ivf_probes: int = 20
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise VectorStoreError(
                f"index name {self.name!r} must be a letter or _ followed by up to 62 letters, digits or _"
            )
        if self.dimension <= 0:
            raise VectorStoreError(f"dimension must be positive, got {self.dimension}")


@dataclass(frozen=True)
class Condition:
    """One AND-ed test on a stored column: op is eq, in, gte, gt, lte or lt."""

    column: str
    op: str
    value: Any


def normalised(vectors: Any) -> np.ndarray:
    """float32 rows scaled to unit length (zero rows stay zero)."""
    vectors = np.array(vectors, dtype=np.float32, ndmin=2, order="C")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def epoch_seconds(value: dt.date | dt.datetime) -> float:
    """Seconds since 1970-01-01 (naive datetimes and dates read as UTC)."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def _as_date(value: Any) -> dt.date | dt.datetime | None:
    from ..retrieval.base import _as_date as parse  # the filters' own date reading

    return parse(value)


def storable(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The filterable part of chunk metadata as stored columns.

    A field `f` becomes column `m_f` (str, int, float or bool; a date or datetime as ISO text),
    plus `t_f` (epoch seconds) when the value is or reads as a date. Lists, mappings, None and
    fields whose names are not identifiers are left out (filtering on them is an error).
    """
    row: dict[str, Any] = {}
    for name, value in metadata.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            continue
        if isinstance(value, (np.integer, np.floating, np.bool_)):
            value = value.item()
        if isinstance(value, (dt.date, dt.datetime)):
            row[f"t_{name}"] = epoch_seconds(_as_date(value))  # type: ignore[arg-type]
            row[f"m_{name}"] = value.isoformat()
        elif isinstance(value, (bool, int, float)):
            row[f"m_{name}"] = value
        elif isinstance(value, str):
            row[f"m_{name}"] = value
            parsed = _as_date(value) if len(value) >= 10 and value[:4].isdigit() else None
            if parsed is not None:
                row[f"t_{name}"] = epoch_seconds(parsed)
    return row


def _kind(value: Any) -> FieldKind:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def merge_fields(fields: Mapping[str, FieldKind], rows: Sequence[Mapping[str, Any]]) -> dict[str, FieldKind]:
    """The stored columns' kinds after adding `rows` (int and float merge to float).

    Raises:
        VectorStoreError: a field holds text in one chunk and a number or bool in another.
    """
    merged = dict(fields)
    for row in rows:
        for column, value in row.items():
            kind, known = _kind(value), merged.get(column)
            if known is None or known == kind:
                merged[column] = kind
            elif {known, kind} == {"int", "float"}:
                merged[column] = "float"
            else:
                raise VectorStoreError(
                    f"metadata field {column[2:]!r} holds {known} and {kind} values; a vector database "
                    "column has one type: make the field one type in every document"
                )
    return merged


def _operand(name: str, kind: FieldKind | None, value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        value = value.isoformat()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if kind is None:
        raise VectorStoreError(f"no stored chunk has a value for field {name!r}")
    ok = {"str": isinstance(value, str), "bool": isinstance(value, bool),
          "int": isinstance(value, (int, float)) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool)}[kind]
    if not ok:
        raise VectorStoreError(f"filter {name!r}: the field holds {kind} values, so compare it with a {kind}, got {value!r}")
    return float(value) if kind == "float" else value


def _day_bounds(op: str, bound: dt.date) -> tuple[str, float]:
    """A calendar-day comparison as one on epoch seconds (`lte` a day = before the next day)."""
    start, next_day = epoch_seconds(bound), epoch_seconds(bound + dt.timedelta(days=1))
    return {"gte": ("gte", start), "gt": ("gte", next_day), "lte": ("lt", next_day), "lt": ("lt", start)}[op]


def conditions(where: Mapping[str, Any] | None, fields: Mapping[str, FieldKind], backend: str) -> list[Condition]:
    """A `Filter` as AND-ed conditions on stored columns, with the same meaning as `compile_filter`.

    Raises:
        ValueError: a malformed filter (from `compile_filter`).
        VectorStoreError: a field the backend cannot filter on (never stored as a scalar), or an
            operand of the wrong type; the message lists the filterable fields.
    """
    from ..retrieval.base import compile_filter

    if where is None:
        return []
    compile_filter(where)  # the shared validation and its messages
    filterable = sorted(c[2:] for c in fields if c.startswith("m_"))
    out: list[Condition] = []
    for name, condition in where.items():
        column = f"m_{name}"
        if column not in fields:
            raise VectorStoreError(
                f"{backend} cannot filter on field {name!r}: no chunk stored it as text, a number, a bool "
                f"or a date (lists and nested values are not filterable); filterable fields: {filterable}"
            )
        kind = fields[column]
        if not isinstance(condition, Mapping):
            out.append(Condition(column, "eq", _operand(name, kind, condition)))
            continue
        for op, operand in condition.items():
            if op == "in":
                out.append(Condition(column, "in", [_operand(name, kind, v) for v in operand]))
            elif isinstance(operand, (int, float, np.integer, np.floating)) and not isinstance(operand, bool):
                out.append(Condition(column, op, _operand(name, kind, operand)))
            else:
                bound = _as_date(operand)
                if f"t_{name}" not in fields:
                    raise VectorStoreError(f"filter {name!r}: {op!r} with a date, but the field holds no dates")
                if isinstance(bound, dt.datetime):
                    out.append(Condition(f"t_{name}", op, epoch_seconds(bound)))
                else:
                    out.append(Condition(f"t_{name}", *_day_bounds(op, bound)))  # type: ignore[arg-type]
    return out


def check_reachable(url: str, timeout_s: float, *, default_port: int) -> None:
    """Open (and close) a TCP connection to the server of `url` within `timeout_s` seconds.

    Raises:
        VectorStoreError: the host does not resolve or nothing answers on the port in time.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    if not host:
        return  # a Unix socket (e.g. postgresql:///db?host=/folder): the client reports it
    try:
        port = parts.port or default_port
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise VectorStoreError(
            f"cannot reach {url!r} within {timeout_s:g} s ({exc}); start the server or fix the URL"
        ) from None


class BaseIndex:
    """Checks and bookkeeping shared by every backend; subclasses store and search rows.

    Subclasses set `backend` and `indexes` and implement `_upsert`, `_delete`, `_search`,
    `count` and `close`. `_search` gets unit query vectors and returns (id, similarity) lists.
    """

    backend: ClassVar[str]
    indexes: ClassVar[tuple[str, ...]]

    def __init__(self, spec: IndexSpec) -> None:
        if spec.index not in self.indexes:
            raise VectorStoreError(
                f"{self.backend} has no {spec.index!r} index; choose one of {list(self.indexes)} "
                "(retrieval.index)"
            )
        self.spec = spec
        self.fields: dict[str, FieldKind] = self._read_fields()
        self._tmp: Path | None = None

    @property
    def label(self) -> str:
        """How tables, charts and logs name this backend."""
        return f"{self.backend} ({self.spec.index})"

    @property
    def may_return_short(self) -> bool:
        """Whether a filtered query can return fewer than k rows although k rows pass the filter."""
        return False

    # -- the protocol ----------------------------------------------------------------------

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]],
               doc_ids: Sequence[str]) -> None:
        """Insert or replace rows: chunk ids, their vectors, metadata and documents.

        Raises:
            VectorStoreError: lengths differ, an id repeats, or the vectors' dimension is not the index's.
        """
        ids = [str(i) for i in ids]
        vectors = normalised(vectors) if len(ids) else np.zeros((0, self.spec.dimension), np.float32)
        if not len(vectors) == len(ids) == len(metadata) == len(doc_ids):
            raise VectorStoreError(
                f"upsert got {len(ids)} ids, {len(vectors)} vectors, {len(metadata)} metadata and "
                f"{len(doc_ids)} document ids; pass one of each per chunk"
            )
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dupes = sorted({i for i in ids if i in seen or seen.add(i)})[:5]  # type: ignore[func-returns-value]
            raise VectorStoreError(f"chunk ids must be unique; duplicated: {dupes}")
        self._check_dimension(vectors)
        if not ids:
            return
        rows = [storable(m) for m in metadata]
        fields = merge_fields(self.fields, rows)
        if fields != self.fields:
            self._add_fields({c: k for c, k in fields.items() if self.fields.get(c) != k})
            self.fields = fields
            self._write_fields()
        self._upsert(ids, [str(d) for d in doc_ids], vectors, rows)

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        """Remove every chunk of these documents; returns how many rows went (0 for unknown documents)."""
        doc_ids = sorted({str(d) for d in doc_ids})
        return self._delete(doc_ids) if doc_ids else 0

    def search(self, vectors: np.ndarray, k: int, where: Mapping[str, Any] | None = None) -> list[Neighbours]:
        """The k nearest rows (cosine) to each query vector among those passing `where`, best first.

        Raises:
            ValueError: k is not a positive integer, or a malformed filter.
            VectorStoreError: the vectors' dimension is not the index's, or an unfilterable field.
        """
        from ..retrieval.base import check_k

        check_k(k)
        vectors = normalised(vectors)
        self._check_dimension(vectors)
        conds = conditions(where, self.fields, self.label)
        if not len(vectors):
            return []
        results = self._search(vectors, int(k), conds)
        return [sorted(row, key=lambda pair: -pair[1]) for row in results]  # relaxed-order scans

    def flush(self) -> None:
        """Make every change durable (the databases already are; FAISS writes its files here)."""

    def disk_bytes(self) -> int:
        """Bytes the index occupies on disk (its folder; 0 in memory or on a server)."""
        folder = self.spec.folder or self._tmp
        if folder is None or self.spec.url:
            return 0
        return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())

    # -- for subclasses ----------------------------------------------------------------------

    def _upsert(self, ids: list[str], doc_ids: list[str], vectors: np.ndarray, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _delete(self, doc_ids: list[str]) -> int:
        raise NotImplementedError

    def _search(self, vectors: np.ndarray, k: int, conds: list[Condition]) -> list[Neighbours]:
        raise NotImplementedError

    def _add_fields(self, new: Mapping[str, FieldKind]) -> None:
        """Make room for new (or widened) metadata columns; schemaless backends need nothing."""

    def _storage(self) -> Path:
        """The index folder (created), or a temporary one removed on close or exit."""
        if self.spec.folder is not None:
            self.spec.folder.mkdir(parents=True, exist_ok=True)
            return self.spec.folder
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix=f"workbench-{self.backend}-"))
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._tmp, True)
        return self._tmp

    def _remove_temporary(self) -> None:
        if self._tmp is not None:
            self._finalizer()

    def _check_dimension(self, vectors: np.ndarray) -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.spec.dimension:
            raise VectorStoreError(
                f"dimension mismatch: vectors of dimension {vectors.shape[-1]} for a {self.label} index of "
                f"dimension {self.spec.dimension}; embed with the index's model or rebuild the index"
            )

    def _read_fields(self) -> dict[str, FieldKind]:
        if self.spec.folder is None:
            return {}
        path = self.spec.folder / f"{self.spec.name}.{_FIELDS_FILE}"
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise VectorStoreError(f"{path} is corrupt ({exc}); delete the index folder and rebuild it") from None
        if not isinstance(data, dict) or not all(v in ("str", "int", "float", "bool") for v in data.values()):
            raise VectorStoreError(f"{path} is not a workbench field list; delete the index folder and rebuild it")
        return data

    def _write_fields(self) -> None:
        if self.spec.folder is None:
            return
        atomic_write_text(self.spec.folder / f"{self.spec.name}.{_FIELDS_FILE}", json.dumps(self.fields, indent=1) + "\n")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label} {dataclasses.replace(self.spec, url=_redact(self.spec.url))}>"


def _redact(url: str) -> str:
    """A URL without its password."""
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url
