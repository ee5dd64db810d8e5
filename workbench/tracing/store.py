"""The trace store (tables `traces`, `spans`, `feedback` of the run store schema) and the exporter filling it."""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..sqlite import SQLiteError
from .redaction import redact
from .spans import active_secrets, flush

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TraceFilter", "TraceRecord", "SpanRecord", "FeedbackRecord", "TraceStore", "SQLiteSpanExporter"]


@dataclass(frozen=True, kw_only=True)
class TraceFilter:
    """Which traces to read: each set field must match (times are UTC, `since` inclusive).

    `users` and `features` match any of their values; empty matches all.
    """

    users: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    operation: str | None = None
    status: Literal["ok", "error"] | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    text: str | None = None  # a substring of the query or the answer

    def sql(self, table: str = "") -> tuple[str, list[Any]]:
        """A WHERE clause (or "") over the `traces` table (aliased `table`) and its parameters."""
        t = f"{table}." if table else ""
        parts, params = [], []
        for column, values in (("user_tag", self.users), ("feature_tag", self.features)):
            if values:
                parts.append(f"{t}{column} IN ({', '.join('?' * len(values))})")
                params += list(values)
        for column, value in (("operation", self.operation), ("status", self.status)):
            if value is not None:
                parts.append(f"{t}{column} = ?")
                params.append(value)
        if self.since is not None:
            parts.append(f"{t}start_ns >= ?")
            params.append(_to_ns(self.since))
        if self.until is not None:
            parts.append(f"{t}start_ns < ?")
            params.append(_to_ns(self.until))
        if self.text:
            parts.append(f"(instr(lower({t}query), ?) > 0 OR instr(lower({t}answer), ?) > 0)")
            params += [self.text.lower()] * 2
        return (" WHERE " + " AND ".join(parts)) if parts else "", params


def _to_ns(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"datetime {moment.isoformat()} has no time zone; pass an aware datetime (UTC)")
    return int(moment.timestamp() * 1e9)


@dataclass(frozen=True, kw_only=True)
class TraceRecord:
    """One request: its root span's summary (content fields are empty if not recorded)."""

    trace_id: str
    operation: str
    started_at: dt.datetime
    duration_s: float
    status: Literal["ok", "error"]
    error: str
    user: str
    feature: str
    config_name: str
    config_hash: str
    model: str
    query: str
    answer: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    ttft_s: float | None
    output_tokens_per_s: float | None
    citation_validity: float | None
    cited_doc_ids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class SpanRecord:
    """One stored span; `start_s` is seconds after its trace started."""

    span_id: str
    trace_id: str
    parent_id: str | None
    name: str
    start_s: float
    duration_s: float
    status: Literal["ok", "error"]
    error: str
    attributes: Mapping[str, Any]
    events: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, kw_only=True)
class FeedbackRecord:
    """A thumbs up (+1) or down (-1) with an optional comment, attached to a trace."""

    trace_id: str
    score: Literal[-1, 1]
    comment: str
    created_at: dt.datetime


class TraceStore:
    """The `traces`, `spans` and `feedback` tables of a run store file (migration 3 of its schema).

    Args:
        location: a path or sqlite:/// URL; default `$WORKBENCH_STORE`, else data/runs.sqlite.
        timeout_s: how long a write waits for another process's lock.

    Raises:
        workbench.store.StoreError: the file is not a run store, or cannot be opened.
    """

    def __init__(self, location: str | Path | None = None, *, timeout_s: float = 30.0) -> None:
        from ..store import open_store

        self.db = open_store(location, timeout_s=timeout_s)  # creates, or checks and migrates, the run store
        self.path = self.db.path
        self.timeout_s = timeout_s

    @classmethod
    def open_existing(cls, location: str | Path) -> TraceStore:
        """The trace store of a run store that exists already, or of the configured one; nothing else is created.

        For a location typed into a form: a URL of another database, a NUL, a missing folder or
        file, a folder, or a file that is not a run store each raise with what is wrong.

        Raises:
            workbench.store.StoreError: what is wrong with `location`, and the fix.
        """
        from ..store import existing_store_path

        return cls(existing_store_path(location))

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.db.read(sql, params)

    def close(self) -> None:
        """Close this process's connection (a later call reopens it)."""
        self.db.close()

    def write(self, spans: Sequence[Mapping[str, Any]], traces: Sequence[Mapping[str, Any]]) -> None:
        """Insert span and trace rows (column -> value; unnamed columns take their defaults) in one transaction."""
        def insert(conn: sqlite3.Connection) -> None:
            for table, rows in (("spans", spans), ("traces", traces)):
                by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
                for row in rows:
                    by_columns.setdefault(tuple(row), []).append(tuple(row.values()))
                for columns, values in by_columns.items():
                    conn.executemany(
                        f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                        values,
                    )

        self.db.transact("record spans", insert)

    def tag_values(self, column: Literal["user_tag", "feature_tag"], where: TraceFilter | None = None) -> list[str]:
        """The distinct values of a tag column among the traces matching `where`."""
        if column not in ("user_tag", "feature_tag"):
            raise ValueError(f"unknown tag column {column!r}; choose one of ['feature_tag', 'user_tag']")
        clause, params = (where or TraceFilter()).sql()
        return [r[0] for r in self._read(f"SELECT DISTINCT {column} FROM traces{clause} ORDER BY 1", params)]

    def traces(self, where: TraceFilter | None = None, *, limit: int | None = None) -> list[TraceRecord]:
        """Stored traces matching `where`, newest first."""
        clause, params = (where or TraceFilter()).sql()
        suffix = f" LIMIT {int(limit)}" if limit is not None else ""
        rows = self._read(f"SELECT {_TRACE_COLUMNS} FROM traces{clause} ORDER BY start_ns DESC{suffix}", params)
        return [_trace_record(r) for r in rows]

    def trace(self, trace_id: str) -> TraceRecord:
        """One stored trace.

        Raises:
            KeyError: no trace has that id.
        """
        rows = self._read(f"SELECT {_TRACE_COLUMNS} FROM traces WHERE trace_id = ?", (trace_id,))
        if not rows:
            raise KeyError(f"no trace {trace_id!r} in {str(self.path)!r}; list ids with TraceStore.traces()")
        return _trace_record(rows[0])

    def spans(self, trace_id: str) -> list[SpanRecord]:
        """The spans of one trace, in start order."""
        rows = self._read(
            "SELECT span_id, trace_id, parent_id, name, start_ns, end_ns, status, error, attributes, events"
            " FROM spans WHERE trace_id = ? ORDER BY start_ns, end_ns DESC",
            (trace_id,),
        )
        t0 = min((r[4] for r in rows), default=0)
        return [
            SpanRecord(
                span_id=r[0], trace_id=r[1], parent_id=r[2], name=r[3], start_s=(r[4] - t0) / 1e9,
                duration_s=(r[5] - r[4]) / 1e9, status=r[6], error=r[7], attributes=json.loads(r[8]),
                events=tuple(json.loads(r[9])),
            )
            for r in rows
        ]

    def add_feedback(self, trace_id: str, *, thumbs_up: bool, comment: str = "") -> None:
        """Attach a thumbs up or down (and a comment) to a trace; the latest one counts.

        Raises:
            KeyError: no trace has that id (spans still batching are flushed first).
        """
        if not self._read("SELECT 1 FROM traces WHERE trace_id = ?", (trace_id,)):
            flush()
            if not self._read("SELECT 1 FROM traces WHERE trace_id = ?", (trace_id,)):
                raise KeyError(
                    f"no trace {trace_id!r} in {str(self.path)!r}; take the id from "
                    "tracing.last_trace_id() or TraceStore.traces()"
                )
        row = (trace_id, 1 if thumbs_up else -1, redact(comment, active_secrets()),
               dt.datetime.now(dt.timezone.utc).isoformat())
        self.db.transact("store feedback", lambda conn: conn.execute(
            "INSERT INTO feedback (trace_id, score, comment, created_at) VALUES (?, ?, ?, ?)", row))

    def feedback(self, trace_id: str | None = None) -> list[FeedbackRecord]:
        """Feedback on one trace (or on all), oldest first."""
        clause, params = (" WHERE trace_id = ?", (trace_id,)) if trace_id else ("", ())
        rows = self._read(f"SELECT trace_id, score, comment, created_at FROM feedback{clause} ORDER BY id", params)
        return [
            FeedbackRecord(trace_id=r[0], score=r[1], comment=r[2], created_at=dt.datetime.fromisoformat(r[3]))
            for r in rows
        ]

    def traces_frame(self, where: TraceFilter | None = None) -> pd.DataFrame:
        """Traces as a DataFrame, newest first, with the latest feedback score (NaN if none)."""
        import pandas as pd

        records = self.traces(where)
        latest = {f.trace_id: f for f in self.feedback()}
        frame = pd.DataFrame(
            [{**r.__dict__, "feedback": latest[r.trace_id].score if r.trace_id in latest else math.nan} for r in records],
            columns=[*TraceRecord.__dataclass_fields__, "feedback"],
        )
        frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
        return frame

    def stage_frame(self, where: TraceFilter | None = None) -> pd.DataFrame:
        """One row per (trace, stage span): trace_id, stage, started_at of the trace, duration_s."""
        import pandas as pd

        clause, params = (where or TraceFilter()).sql("t")
        rows = self._read(
            "SELECT s.trace_id, s.name, t.start_ns, (s.end_ns - s.start_ns) / 1e9 FROM spans s JOIN traces t"
            f" ON s.trace_id = t.trace_id AND s.parent_id IS NOT NULL{clause}",
            params,
        )
        frame = pd.DataFrame(rows, columns=["trace_id", "stage", "start_ns", "duration_s"])
        frame["started_at"] = pd.to_datetime(frame.pop("start_ns"), unit="ns", utc=True)
        return frame


_TRACE_COLUMNS = (
    "trace_id, operation, started_at, duration_s, status, error, user_tag, feature_tag, config_name, config_hash,"
    " model, query, answer, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, ttft_s,"
    " output_tokens_per_s, citation_validity, cited_doc_ids"
)


def _trace_record(r: Sequence[Any]) -> TraceRecord:
    return TraceRecord(
        trace_id=r[0], operation=r[1], started_at=dt.datetime.fromisoformat(r[2]), duration_s=r[3], status=r[4],
        error=r[5], user=r[6], feature=r[7], config_name=r[8], config_hash=r[9], model=r[10], query=r[11],
        answer=r[12], input_tokens=r[13], output_tokens=r[14], cache_read_tokens=r[15], cache_write_tokens=r[16],
        cost_usd=r[17], ttft_s=r[18], output_tokens_per_s=r[19], citation_validity=r[20],
        cited_doc_ids=tuple(json.loads(r[21])),
    )


# --- the local exporter -----------------------------------------------------------------------


def _answer_text(attrs: Mapping[str, Any]) -> str:
    messages = attrs.get("gen_ai.output.messages")
    if not messages:
        return ""
    return "".join(p.get("content", "") for m in json.loads(messages) for p in m.get("parts", ()))


def _trace_row(span: Any, attrs: Mapping[str, Any], status: str, error: str) -> dict[str, Any]:
    return {
        "trace_id": format(span.context.trace_id, "032x"),
        "operation": attrs.get("workbench.operation", span.name),
        "started_at": dt.datetime.fromtimestamp(span.start_time / 1e9, dt.timezone.utc).isoformat(),
        "start_ns": span.start_time,
        "duration_s": (span.end_time - span.start_time) / 1e9,
        "status": status,
        "error": error,
        "user_tag": attrs.get("user.id", ""),
        "feature_tag": attrs.get("workbench.feature", ""),
        "config_name": attrs.get("gen_ai.workflow.name", ""),
        "config_hash": attrs.get("workbench.config_hash", ""),
        "model": attrs.get("gen_ai.request.model", ""),
        "query": attrs.get("workbench.query", ""),
        "answer": _answer_text(attrs),
        "input_tokens": attrs.get("gen_ai.usage.input_tokens", 0),
        "output_tokens": attrs.get("gen_ai.usage.output_tokens", 0),
        "cache_read_tokens": attrs.get("gen_ai.usage.cache_read.input_tokens", 0),
        "cache_write_tokens": attrs.get("gen_ai.usage.cache_creation.input_tokens", 0),
        "cost_usd": attrs.get("workbench.cost_usd", 0.0),
        "ttft_s": attrs.get("gen_ai.response.time_to_first_chunk"),
        "output_tokens_per_s": attrs.get("workbench.output_tokens_per_s"),
        "citation_validity": attrs.get("workbench.citation_validity"),
        "cited_doc_ids": json.dumps(list(attrs.get("workbench.cited_doc_ids", ()))),
    }


class SQLiteSpanExporter:
    """An OpenTelemetry span exporter that writes finished spans into a `TraceStore`.

    Each batch is one transaction; a request's root span also writes its `traces` row.
    """

    def __init__(self, store: TraceStore) -> None:
        self.store = store

    def export(self, spans: Sequence[Any]) -> Any:
        """Write a batch of `ReadableSpan`s; returns SUCCESS, or FAILURE if the store refused."""
        from opentelemetry.sdk.trace.export import SpanExportResult
        from opentelemetry.trace import StatusCode

        span_rows, trace_rows = [], []
        for span in spans:
            attrs = dict(span.attributes or {})
            status = "error" if span.status.status_code is StatusCode.ERROR else "ok"
            error = (span.status.description or "") if status == "error" else ""
            parent = format(span.parent.span_id, "016x") if span.parent is not None else None
            span_rows.append({
                "span_id": format(span.context.span_id, "016x"),
                "trace_id": format(span.context.trace_id, "032x"),
                "parent_id": parent,
                "name": span.name,
                "start_ns": span.start_time,
                "end_ns": span.end_time,
                "status": status,
                "error": error,
                "attributes": json.dumps(attrs, default=list),
                "events": json.dumps([{"name": e.name, **dict(e.attributes or {})} for e in span.events]),
            })
            if parent is None:
                trace_rows.append(_trace_row(span, attrs, status, error))
        try:
            self.store.write(span_rows, trace_rows)
        except (sqlite3.Error, SQLiteError):
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Close the store connection."""
        self.store.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here; always True."""
        return True
