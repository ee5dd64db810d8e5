"""Traces of every request through OpenTelemetry: spans, the SQLite exporter, metrics, feedback.

Off until `enable_tracing()` (or `WORKBENCH_TRACING=1`): then `Pipeline.answer` and
`Pipeline.search` open one trace per request with a span per stage (route, retrieve, rerank,
generate), named with the OpenTelemetry GenAI semantic conventions where they exist. Spans go to
the run store (tables `traces`, `spans`, `feedback`) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is
set, to that OTLP/HTTP endpoint too: a background thread builds and writes them in batches, so
read the store after `flush()` (process exit flushes too). While off, `request` and `stage` hand back one shared no-op
and the OpenTelemetry SDK is never imported.

Every string recorded passes through `redact`: API keys, tokens, private keys and the values of
secret-looking environment variables never reach a span.
"""

from __future__ import annotations

from .export import export_feedback_dataset
from .metrics import LatencySummary, TraceMetrics, metrics_by_tag, percentiles_over_time, trace_metrics
from .redaction import REDACTED, redact
from .spans import (
    HITS_RECORDED,
    STAGES,
    disable_tracing,
    enable_tracing,
    flush,
    last_trace_id,
    request,
    stage,
    tags,
    tracing_enabled,
)
from .spans import use_store
from .store import FeedbackRecord, SQLiteSpanExporter, SpanRecord, TraceFilter, TraceRecord, TraceStore

use_store(TraceStore, SQLiteSpanExporter)  # the live tracer (spans, a lower floor) writes to this store

__all__ = [
    "STAGES",
    "REDACTED",
    "TraceFilter",
    "TraceRecord",
    "SpanRecord",
    "FeedbackRecord",
    "LatencySummary",
    "TraceMetrics",
    "TraceStore",
    "SQLiteSpanExporter",
    "HITS_RECORDED",
    "enable_tracing",
    "disable_tracing",
    "tracing_enabled",
    "flush",
    "request",
    "stage",
    "tags",
    "last_trace_id",
    "redact",
    "trace_metrics",
    "metrics_by_tag",
    "percentiles_over_time",
    "export_feedback_dataset",
]
