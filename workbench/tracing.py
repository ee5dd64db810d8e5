"""Traces of every request through OpenTelemetry: spans, the SQLite exporter, metrics, feedback.

Off until `enable_tracing()` (or `WORKBENCH_TRACING=1`): then `Pipeline.answer` and
`Pipeline.search` open one trace per request with a span per stage (route, retrieve, rerank,
generate), named with the OpenTelemetry GenAI semantic conventions where they exist. Spans go to
the run store (tables `traces`, `spans`, `feedback`) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is
set, to that OTLP/HTTP endpoint too. While off, `request` and `stage` hand back one shared no-op
and the OpenTelemetry SDK is never imported.

Every string recorded passes through `redact`: API keys, tokens, private keys and the values of
secret-looking environment variables never reach a span.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import json
import math
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

    from .config import PipelineConfig
    from .datasets import Dataset
    from .experiment import Response
    from .types import Answer, Hit

__all__ = [
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

STAGES = ("route", "retrieve", "rerank", "generate")
HITS_RECORDED = 20  # hits recorded per retrieve/rerank span (their total is `workbench.hits.count`)
REDACTED = "[REDACTED]"

# --- secrets ---------------------------------------------------------------------------------

_SECRET_PATTERN = re.compile(
    "|".join(
        (
            r"sk-ant-[A-Za-z0-9_\-]{8,}",  # Anthropic
            r"\bsk-[A-Za-z0-9_\-]{16,}",  # OpenAI-style
            r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
            r"\bgh[pousr]_[A-Za-z0-9]{20,}",  # GitHub
            r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack
            r"\bhf_[A-Za-z0-9]{20,}",  # Hugging Face
            r"\bAIza[0-9A-Za-z_\-]{30,}",  # Google
            r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWT
            r"(?i:\bbearer\s+)[A-Za-z0-9._~+/=\-]{16,}",  # HTTP bearer credentials
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        )
    )
)
# "api_key=...", "password: ...", '"token": "..."': keep the name, drop the value.
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b((?:x-)?api[_\-]?key|secret|password|passwd|token|authorization)([\"']?\s*[:=]\s*[\"']?)"
    r"[A-Za-z0-9_\-./+=~]{8,}"
)
_SECRET_NAME = re.compile(r"(?i)(key|token|secret|password|passwd|credential|auth)")
# an attribute named like a credential ("api_key", "x-api-key", "auth_token", "password")
_SECRET_KEY = re.compile(
    r"(?i)(^|[_\-.])(api[_\-]?key|secret|password|passwd|credentials?|authorization|(auth|access|api)?[_\-]?token)$"
)


def _env_secrets() -> tuple[str, ...]:
    """Values of secret-looking environment variables (long enough to be real)."""
    return tuple(v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8)


# Cheap substring checks (on the lower-cased text) that must pass before a regex can match:
# scanning kilobytes of retrieved passages with the regexes alone costs milliseconds.
_PATTERN_MARKERS = ("sk-", "akia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "hf_", "aiza", "eyj",
                    "private key", "bearer")
_ASSIGNED_MARKERS = ("key", "secret", "passw", "token", "authorization")
# attributes holding only ids, numbers and hashes, or built from redacted pieces: not scanned again
_ID_ATTRIBUTES = frozenset({
    "gen_ai.system_instructions", "gen_ai.input.messages", "workbench.context",
    "workbench.hits.chunk_ids", "workbench.hits.doc_ids", "workbench.config_hash", "workbench.stage",
    "workbench.citations", "workbench.cited_doc_ids", "workbench.context.chunk_ids", "workbench.operation",
    "gen_ai.operation.name",
})


def redact(text: str, secrets: Collection[str] = ()) -> str:
    """`text` with anything that looks like a credential replaced by "[REDACTED]".

    Args:
        text: any string about to be recorded.
        secrets: exact values to remove as well (e.g. the API key in use).

    Returns:
        The text, with API keys, bearer tokens, JWTs, private keys, `name=value` assignments of
        keys/tokens/passwords, and each of `secrets` redacted.
    """
    if len(text) < 8:  # shorter than any credential
        return text
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    low = text.lower()
    if any(m in low for m in _PATTERN_MARKERS):
        text = _SECRET_PATTERN.sub(REDACTED, text)
    if any(m in low for m in _ASSIGNED_MARKERS):
        text = _ASSIGNED_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return text


# --- the live tracer --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _State:
    provider: Any  # opentelemetry.sdk.trace.TracerProvider
    tracer: Any
    context: Any  # the opentelemetry.context module
    trace: Any  # the opentelemetry.trace module
    store: TraceStore
    record_content: bool
    secrets: tuple[str, ...]


_state: _State | None = None
_state_lock = threading.Lock()
_auto = os.environ.get("WORKBENCH_TRACING", "").strip().lower() in ("1", "true", "yes", "on")
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("workbench_trace_open", default=False)
_tags: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("workbench_trace_tags", default={})
_last: contextvars.ContextVar[str | None] = contextvars.ContextVar("workbench_last_trace", default=None)


def enable_tracing(
    store: str | Path | None = None, *, record_content: bool = True, otlp: bool | None = None
) -> TraceStore:
    """Start recording a trace for every request (replacing any earlier set-up).

    Args:
        store: the run store file (a path or sqlite:/// URL); default `$WORKBENCH_STORE`, else
            data/runs.sqlite.
        record_content: record queries, prompts, retrieved text and answers (ids, tokens,
            timings and costs are always recorded).
        otlp: also export over OTLP/HTTP; default: when `OTEL_EXPORTER_OTLP_ENDPOINT` or
            `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (the exporter reads the standard
            OTEL_EXPORTER_OTLP_* variables for endpoint, headers, timeout and compression).
            The standard `OTEL_TRACES_SAMPLER` (e.g. "parentbased_traceidratio" with
            `OTEL_TRACES_SAMPLER_ARG=0.1`) keeps a share of requests; dropped ones cost a few us.

    Returns:
        The trace store the local exporter writes to.

    Raises:
        ValueError: `OTEL_EXPORTER_OTLP_PROTOCOL` asks for a protocol other than http/protobuf.
    """
    from opentelemetry import context, trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    global _state
    if otlp is None:
        otlp = bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if otlp and protocol not in (None, "", "http/protobuf"):
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; workbench exports OTLP over "
            "http/protobuf: unset the variable or set it to 'http/protobuf'"
        )
    trace_store = TraceStore(store)
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "workbench"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(SQLiteSpanExporter(trace_store)))
    if otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    with _state_lock:
        previous, _state = _state, _State(
            provider=provider,
            tracer=provider.get_tracer("workbench"),
            context=context,
            trace=trace,
            store=trace_store,
            record_content=record_content,
            secrets=_env_secrets(),
        )
    if previous is not None:
        previous.provider.shutdown()
    return trace_store


def disable_tracing() -> None:
    """Stop tracing; spans already recorded are exported first."""
    global _state, _auto
    with _state_lock:
        previous, _state, _auto = _state, None, False
    if previous is not None:
        previous.provider.shutdown()


def tracing_enabled() -> bool:
    """Whether requests are being traced now."""
    return _state is not None


def flush(timeout_s: float = 30.0) -> bool:
    """Export every finished span now (the exporters batch in the background otherwise).

    Returns:
        False if an exporter did not finish within `timeout_s`.
    """
    state = _state
    return True if state is None else bool(state.provider.force_flush(int(timeout_s * 1000)))


def _current() -> _State | None:
    if _state is None and _auto:
        enable_tracing()
    return _state


@contextmanager
def tags(*, user: str | None = None, feature: str | None = None) -> Iterator[None]:
    """Tag every request opened inside this block with a user and/or a feature name."""
    new = dict(_tags.get())
    new.update({k: v for k, v in (("user", user), ("feature", feature)) if v is not None})
    token = _tags.set(new)
    try:
        yield
    finally:
        _tags.reset(token)


def last_trace_id() -> str | None:
    """The id (32 hex characters) of the last trace finished in this thread/context.

    None before any, or when the sampler dropped it (so it was not recorded).
    """
    return _last.get()


class _NoSpan:
    """Stands in for a span while tracing is off: every call does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        return False

    def record(self, **values: Any) -> None:
        """Do nothing."""


_NO_SPAN = _NoSpan()


class _Span:
    """A live span; `record` turns pipeline values into attributes (redacted).

    A span the sampler drops (OTEL_TRACES_SAMPLER) is not recording: no attribute is built.
    """

    __slots__ = ("_state", "_name", "_root", "_initial", "_more", "_span", "_token", "_inside_token")

    def __init__(
        self, state: _State, name: str, *, root: bool, attributes: dict[str, Any],
        more: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._state, self._name, self._root, self._initial, self._more = state, name, root, attributes, more

    def __enter__(self) -> _Span:
        state = self._state
        self._span = span = state.tracer.start_span(self._name)
        if span.is_recording():
            attributes = {**self._initial, **self._more()} if self._more is not None else self._initial
            span.set_attributes(self._clean(attributes))
        self._token = state.context.attach(state.trace.set_span_in_context(span))
        self._inside_token = _inside.set(True) if self._root else None
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        span = self._span
        recording = span.is_recording()  # False once ended
        try:
            if exc is not None and recording:
                import traceback

                from opentelemetry.trace import Status, StatusCode

                message = redact(str(exc), self._state.secrets)
                span.set_status(Status(StatusCode.ERROR, message))
                span.set_attribute("error.type", type(exc).__qualname__)
                span.add_event(
                    "exception",
                    {
                        "exception.type": type(exc).__qualname__,
                        "exception.message": message,
                        "exception.stacktrace": redact(
                            "".join(traceback.format_exception(exc_type, exc, tb)), self._state.secrets
                        ),
                    },
                )
            span.end()
        finally:
            self._state.context.detach(self._token)
            if self._inside_token is not None:
                _inside.reset(self._inside_token)
                _last.set(format(span.get_span_context().trace_id, "032x") if recording else None)
        return False

    def _clean(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in attributes.items():
            if value is None:
                continue
            if key in _ID_ATTRIBUTES:
                out[key] = value
            elif isinstance(value, str) and _SECRET_KEY.search(key):
                out[key] = REDACTED
            elif isinstance(value, str):
                out[key] = redact(value, self._state.secrets)
            elif isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
                out[key] = [redact(v, self._state.secrets) for v in value]
            else:
                out[key] = value
        return out

    def record(
        self,
        *,
        hits: Sequence[Hit] | None = None,
        answer: Answer | None = None,
        context: Sequence[Hit] | None = None,
        response: Response | None = None,
        **values: Any,
    ) -> None:
        """Record pipeline values on this span.

        Args:
            hits: retrieved or reranked hits (the count; ids, documents and scores of the
                first `HITS_RECORDED`).
            answer: a generated answer; with `context`, the chunks it was given.
            context: the hits given to the generator (with `answer` or `response`; a response
                without it counts every hit as shown).
            response: the whole request's response (on the request's root span).
            **values: scalars recorded as `workbench.<span name>.<key>`.
        """
        if not self._span.is_recording():
            return
        attrs: dict[str, Any] = {}
        content = self._state.record_content
        if hits is not None:
            attrs.update(_hit_attributes(hits))
        if answer is not None:
            attrs.update(_answer_attributes(answer, context or (), content))
        if response is not None:
            attrs["gen_ai.request.model"] = response.model
            shown = context if context is not None else response.hits
            attrs.update(_answer_attributes(response.answer, shown, content))
            for stage_name, seconds in response.stage_latency_s.items():
                attrs[f"workbench.latency_s.{stage_name}"] = float(seconds)
        for key, value in values.items():
            attrs[f"workbench.{self._name}.{key}"] = value
        self._span.set_attributes(self._clean(attrs))


def _hit_attributes(hits: Sequence[Hit]) -> dict[str, Any]:
    # Arrays, not JSON: formatting floats on the request path costs more than BM25 retrieval
    top = hits[:HITS_RECORDED]
    return {
        "workbench.hits.count": len(hits),
        "workbench.hits.chunk_ids": [h.chunk.id for h in top],
        "workbench.hits.doc_ids": [h.chunk.doc_id for h in top],
        "workbench.hits.scores": [float(h.score) for h in top],
    }


def _answer_attributes(answer: Answer, context: Sequence[Hit], content: bool) -> dict[str, Any]:
    usage = answer.usage
    by_id = {h.chunk.id: h.chunk for h in context}
    cited = list(answer.citations)
    attrs: dict[str, Any] = {
        "gen_ai.response.model": usage.model,
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
        "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
        "gen_ai.response.time_to_first_chunk": usage.time_to_first_token_s,
        "workbench.usage.counted": usage.counted,
        "workbench.generation.latency_s": usage.latency_s,
        "workbench.output_tokens_per_s": usage.output_tokens_per_s,
        "workbench.cost_usd": usage.cost_usd,
        "workbench.citations": cited,
        "workbench.cited_doc_ids": [by_id[c].doc_id for c in cited if c in by_id],
        # a citation of a chunk the model was never shown is invented
        "workbench.citation_validity": (sum(c in by_id for c in cited) / len(cited)) if cited else None,
        "workbench.context.chunk_ids": list(by_id),
    }
    if content:
        attrs["gen_ai.output.messages"] = json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": answer.text}], "finish_reason": "stop"}]
        )
    return attrs


def _prompt_attributes(config: Any, query: str, context: Sequence[Hit], state: _State) -> dict[str, Any]:
    kind = config.kind
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat" if kind == "anthropic" else "text_completion",
        "gen_ai.provider.name": {"anthropic": "anthropic", "local": "llama_cpp"}.get(kind, f"workbench.{kind}"),
        "gen_ai.request.max_tokens": config.max_tokens,
        "gen_ai.request.temperature": config.temperature,
    }
    if not state.record_content:
        return attrs
    import dataclasses

    from .generation import build_prompt, completion_prompt

    # Redact each piece once, then build the prompt from the clean pieces: the passages appear
    # in two attributes, and scanning kilobytes twice is most of the cost of recording them.
    secrets = state.secrets
    query = redact(query, secrets)
    hits = [dataclasses.replace(h, chunk=dataclasses.replace(h.chunk, text=redact(h.chunk.text, secrets)))
            for h in context]
    attrs["workbench.context"] = json.dumps(
        [{"id": h.chunk.id, "doc_id": h.chunk.doc_id, "start": h.chunk.start, "end": h.chunk.end,
          "text": h.chunk.text} for h in hits]
    )

    def message(role: str, text: str) -> dict[str, Any]:
        return {"role": role, "parts": [{"type": "text", "content": text}]}

    if kind == "local":
        attrs["gen_ai.input.messages"] = json.dumps([message("user", completion_prompt(query, hits))])
    elif query.strip():
        prompt = build_prompt(query, hits, instructions=redact(getattr(config, "system_prompt", ""), secrets))
        attrs["gen_ai.system_instructions"] = json.dumps([{"type": "text", "content": b["text"]} for b in prompt.system])
        attrs["gen_ai.input.messages"] = json.dumps([message(m["role"], m["content"]) for m in prompt.messages])
    return attrs


@functools.lru_cache(maxsize=64)
def _config_hash(config: PipelineConfig) -> str:
    from .config import config_hash

    return config_hash(config)


def request(operation: str, query: str, config: PipelineConfig) -> _Span | _NoSpan:
    """The root span of one request (a no-op when tracing is off or a request is already open).

    Args:
        operation: "answer" or "search", the span's name.
        query: the user's question (recorded unless content recording is off).
        config: the pipeline serving it.
    """
    state = _current()
    if state is None or _inside.get():
        return _NO_SPAN
    tag = _tags.get()
    attributes = {
        "gen_ai.operation.name": "invoke_workflow",
        "gen_ai.workflow.name": config.name,
        "workbench.operation": operation,
        "workbench.config_hash": _config_hash(config),
        "user.id": tag.get("user"),
        "workbench.feature": tag.get("feature"),
        "workbench.query": query if state.record_content else None,
    }
    return _Span(state, operation, root=True, attributes=attributes)


def stage(name: str, **attributes: Any) -> _Span | _NoSpan:
    """A span for one pipeline stage inside the current request (a no-op when tracing is off).

    Args:
        name: "route", "retrieve", "rerank" or "generate".
        **attributes: recorded as `workbench.<name>.<key>` (`model` as gen_ai.request.model).
            "generate" takes `config` (its GenerationConfig), `query` and `context` (the hits it
            is given) and records the GenAI request attributes and the prompt.
    """
    state = _state
    if state is None:
        return _NO_SPAN
    attrs: dict[str, Any] = {"workbench.stage": name}
    more = None
    if name == "generate":
        config, query, context = attributes.pop("config"), attributes.pop("query"), attributes.pop("context")
        more = functools.partial(_prompt_attributes, config, query, context, state)
    elif name in ("retrieve", "rerank"):
        attrs["gen_ai.operation.name"] = "retrieval"
    for key, value in attributes.items():
        attrs["gen_ai.request.model" if key == "model" else f"workbench.{name}.{key}"] = value
    return _Span(state, name, root=False, attributes=attrs, more=more)


# --- the store --------------------------------------------------------------------------------

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS traces (
        trace_id TEXT PRIMARY KEY,
        operation TEXT NOT NULL,
        started_at TEXT NOT NULL,
        start_ns INTEGER NOT NULL,
        duration_s REAL NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
        error TEXT NOT NULL DEFAULT '',
        user_tag TEXT NOT NULL DEFAULT '',
        feature_tag TEXT NOT NULL DEFAULT '',
        config_name TEXT NOT NULL DEFAULT '',
        config_hash TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        query TEXT NOT NULL DEFAULT '',
        answer TEXT NOT NULL DEFAULT '',
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        ttft_s REAL,
        output_tokens_per_s REAL,
        citation_validity REAL,
        cited_doc_ids TEXT NOT NULL DEFAULT '[]'
    )""",
    "CREATE INDEX IF NOT EXISTS traces_by_start ON traces (start_ns)",
    """CREATE TABLE IF NOT EXISTS spans (
        span_id TEXT PRIMARY KEY,
        trace_id TEXT NOT NULL,
        parent_id TEXT,
        name TEXT NOT NULL,
        start_ns INTEGER NOT NULL,
        end_ns INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
        error TEXT NOT NULL DEFAULT '',
        attributes TEXT NOT NULL,
        events TEXT NOT NULL DEFAULT '[]'
    )""",
    "CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id)",
    """CREATE TABLE IF NOT EXISTS feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        trace_id TEXT NOT NULL,
        score INTEGER NOT NULL CHECK (score IN (-1, 1)),
        comment TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS feedback_by_trace ON feedback (trace_id)",
)


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
    """The `traces`, `spans` and `feedback` tables inside a run store file (SQLite, WAL).

    Args:
        location: a path or sqlite:/// URL; default `$WORKBENCH_STORE`, else data/runs.sqlite.
        timeout_s: how long a write waits for another process's lock.

    Raises:
        workbench.store.StoreError: the file is not a run store, or cannot be opened.
    """

    def __init__(self, location: str | Path | None = None, *, timeout_s: float = 30.0) -> None:
        from .store import RunStore

        run_store = RunStore(location, timeout_s=timeout_s)  # creates or checks the run store schema
        run_store.close()
        self.path = run_store.path
        self.timeout_s = timeout_s
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        with self._write() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # never share a connection across fork()
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection().execute(sql, params).fetchall()

    def close(self) -> None:
        """Close this process's connection (a later call reopens it)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def write(self, spans: Sequence[Mapping[str, Any]], traces: Sequence[Mapping[str, Any]]) -> None:
        """Insert span and trace rows (column -> value) in one transaction."""
        with self._write() as conn:
            for table, rows in (("spans", spans), ("traces", traces)):
                for row in rows:
                    cols = ", ".join(row)
                    marks = ", ".join("?" * len(row))
                    conn.execute(f"INSERT OR REPLACE INTO {table} ({cols}) VALUES ({marks})", tuple(row.values()))

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
        secrets = _state.secrets if _state is not None else _env_secrets()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO feedback (trace_id, score, comment, created_at) VALUES (?, ?, ?, ?)",
                (trace_id, 1 if thumbs_up else -1, redact(comment, secrets), dt.datetime.now(dt.timezone.utc).isoformat()),
            )

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
        except sqlite3.Error:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Close the store connection."""
        self.store.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here; always True."""
        return True


# --- metrics from traces ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LatencySummary:
    """Percentiles (seconds) of one stage's latency, or of the whole request ("request")."""

    stage: str
    count: int
    p50_s: float
    p95_s: float
    p99_s: float
    mean_s: float


def _summary(name: str, values: Sequence[float]) -> LatencySummary:
    import numpy as np

    v = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(v, [50, 95, 99]) if len(v) else (math.nan,) * 3
    return LatencySummary(
        stage=name, count=len(v), p50_s=float(p50), p95_s=float(p95), p99_s=float(p99),
        mean_s=float(v.mean()) if len(v) else math.nan,
    )


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(known) / len(known) if known else None


@dataclass(frozen=True, kw_only=True)
class TraceMetrics:
    """What a set of traces says about latency, cost, errors, citations and feedback.

    `citation_validity` is the share of citations naming a chunk the generator was shown;
    `citation_accuracy` the share of cited documents judged relevant, over the traces whose query
    has judgements in the dataset given (None where nothing is known).
    """

    n_requests: int
    error_rate: float
    latency: tuple[LatencySummary, ...]  # "request" (end to end), each stage, "ttft"
    output_tokens_per_s: float | None
    cost_per_request_usd: float
    total_cost_usd: float
    citation_validity: float | None
    citation_accuracy: float | None
    n_feedback: int
    positive_feedback_rate: float | None
    tag: str = ""

    def latency_frame(self) -> pd.DataFrame:
        """One row per stage: count and P50/P95/P99/mean in milliseconds."""
        import pandas as pd

        return pd.DataFrame(
            [{"stage": s.stage, "count": s.count, "p50_ms": 1e3 * s.p50_s, "p95_ms": 1e3 * s.p95_s,
              "p99_ms": 1e3 * s.p99_s, "mean_ms": 1e3 * s.mean_s} for s in self.latency]
        )

    def to_frame(self) -> pd.DataFrame:
        """One wide row: the scalars and `<stage>_p50_ms`/`_p95_ms`/`_p99_ms` per stage."""
        import pandas as pd

        row: dict[str, Any] = {k: v for k, v in self.__dict__.items() if k != "latency"}
        for s in self.latency:
            row.update({f"{s.stage}_p50_ms": 1e3 * s.p50_s, f"{s.stage}_p95_ms": 1e3 * s.p95_s,
                        f"{s.stage}_p99_ms": 1e3 * s.p99_s})
        return pd.DataFrame([row])


def _relevant_by_query(dataset: Dataset | None) -> dict[str, set[str]]:
    if dataset is None:
        return {}
    return {
        dataset.queries[q].strip(): {d for d, g in rel.items() if g > 0}
        for q, rel in dataset.qrels.items() if q in dataset.queries
    }


def trace_metrics(
    store: TraceStore, where: TraceFilter | None = None, *, dataset: Dataset | None = None, tag: str = ""
) -> TraceMetrics:
    """Latency percentiles per stage and end to end, TTFT, tokens/s, cost, errors, citations, feedback.

    Args:
        store: the trace store.
        where: which traces count (default: all).
        dataset: judgements for citation accuracy, matched to traces by exact query text.
        tag: a label carried into the result (e.g. the user or feature it covers).
    """
    records = store.traces(where)
    stages = store.stage_frame(where)
    relevant = _relevant_by_query(dataset)
    latency = [_summary("request", [r.duration_s for r in records])]
    for name in STAGES:
        durations = stages.loc[stages["stage"] == name, "duration_s"].tolist()
        if durations:
            latency.append(_summary(name, durations))
    ttft = [r.ttft_s for r in records if r.ttft_s is not None]
    if ttft:
        latency.append(_summary("ttft", ttft))
    accuracy = [
        sum(d in relevant[r.query.strip()] for d in r.cited_doc_ids) / len(r.cited_doc_ids)
        for r in records if r.cited_doc_ids and r.query.strip() in relevant
    ]
    ids = {r.trace_id for r in records}
    latest = {f.trace_id: f.score for f in store.feedback() if f.trace_id in ids}
    n = len(records)
    total_cost = sum(r.cost_usd for r in records)
    return TraceMetrics(
        n_requests=n,
        error_rate=sum(r.status == "error" for r in records) / n if n else 0.0,
        latency=tuple(latency),
        output_tokens_per_s=_mean([r.output_tokens_per_s for r in records]),
        cost_per_request_usd=total_cost / n if n else 0.0,
        total_cost_usd=total_cost,
        citation_validity=_mean([r.citation_validity for r in records]),
        citation_accuracy=_mean(accuracy),
        n_feedback=len(latest),
        positive_feedback_rate=(sum(s > 0 for s in latest.values()) / len(latest)) if latest else None,
        tag=tag,
    )


def metrics_by_tag(
    store: TraceStore, by: Literal["user", "feature"], where: TraceFilter | None = None, *, dataset: Dataset | None = None
) -> pd.DataFrame:
    """`trace_metrics` per user tag or per feature tag, one row each (column `tag`).

    Raises:
        ValueError: `by` is neither "user" nor "feature".
    """
    import dataclasses

    import pandas as pd

    column = {"user": "user_tag", "feature": "feature_tag"}.get(by)
    if column is None:
        raise ValueError(f"unknown tag {by!r}; choose one of ['feature', 'user']")
    base = where or TraceFilter()
    values = store.tag_values(column, base)
    frames = [
        trace_metrics(store, dataclasses.replace(base, **{f"{by}s": (v,)}), dataset=dataset, tag=v).to_frame()
        for v in values
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["tag"])


def percentiles_over_time(store: TraceStore, where: TraceFilter | None = None, *, bucket: str = "1min") -> pd.DataFrame:
    """P50/P95/P99 latency per time bucket for the whole request and each stage.

    Args:
        store: the trace store.
        where: which traces count.
        bucket: a pandas frequency ("1min", "1h", "1D").

    Returns:
        Columns: bucket (UTC timestamp), stage, count, p50_ms, p95_ms, p99_ms.
    """
    import pandas as pd

    traces = store.traces_frame(where)[["trace_id", "started_at", "duration_s"]].assign(stage="request")
    frame = pd.concat([traces, store.stage_frame(where)], ignore_index=True)
    columns = ["bucket", "stage", "count", "p50_ms", "p95_ms", "p99_ms"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame["bucket"] = frame["started_at"].dt.floor(bucket)
    grouped = frame.groupby(["bucket", "stage"])["duration_s"]
    out = pd.DataFrame({
        "count": grouped.size(),
        "p50_ms": 1e3 * grouped.quantile(0.50),
        "p95_ms": 1e3 * grouped.quantile(0.95),
        "p99_ms": 1e3 * grouped.quantile(0.99),
    }).reset_index()
    return out[columns]


# --- feedback into evaluation data ------------------------------------------------------------


def export_feedback_dataset(store: TraceStore, folder: str | Path, where: TraceFilter | None = None) -> Path:
    """Write the traces with feedback, and the chunks they were answered from, as a BEIR folder.

    The corpus is the pool of chunks shown to the generator (one document per chunk id; its
    source document and offsets in `metadata`); each query is a trace (id = trace id). A
    thumbs up grades the chunks the answer cited 1 (all of its context if it cited none) and
    the rest of its context 0; a thumbs down grades its whole context 0. `load_dataset(folder)`
    reads the result; `run_experiment` evaluates the thumbs-up queries.

    Args:
        store: the trace store.
        folder: where corpus.jsonl, queries.jsonl and qrels/test.tsv are written (atomically).
        where: which traces count.

    Returns:
        The folder.

    Raises:
        ValueError: no trace matching `where` has feedback, or one was recorded without content.
    """
    from .io import atomic_write_text

    folder = Path(folder)
    chosen = {r.trace_id: r for r in store.traces(where)}
    latest = {f.trace_id: f for f in store.feedback() if f.trace_id in chosen}
    if not latest:
        raise ValueError(
            f"no trace in {str(store.path)!r} matching the filter has feedback; add some with "
            "TraceStore.add_feedback(trace_id, thumbs_up=...)"
        )
    corpus: dict[str, dict[str, Any]] = {}
    queries, qrels = [], []
    for trace_id, fb in latest.items():
        record = chosen[trace_id]
        generate = next((s.attributes for s in store.spans(trace_id) if s.name == "generate"), {})
        if not record.query or "workbench.context" not in generate:
            raise ValueError(
                f"trace {trace_id!r} was recorded without content (record_content=False), so its query "
                "and chunks are unknown; leave it out with a TraceFilter or re-run with record_content=True"
            )
        context = json.loads(generate["workbench.context"])
        citations = set(generate.get("workbench.citations", ()))
        for c in context:
            corpus.setdefault(c["id"], {
                "_id": c["id"], "title": "", "text": c["text"],
                "metadata": {"doc_id": c["doc_id"], "start": c["start"], "end": c["end"]},
            })
        shown = {c["id"] for c in context}
        good = (citations & shown) or shown
        queries.append({"_id": trace_id, "text": record.query, "metadata": {"feedback": fb.score, "comment": fb.comment}})
        qrels += [(trace_id, c["id"], int(fb.score > 0 and c["id"] in good)) for c in context]
    atomic_write_text(folder / "corpus.jsonl", "".join(json.dumps(d) + "\n" for d in corpus.values()))
    atomic_write_text(folder / "queries.jsonl", "".join(json.dumps(q) + "\n" for q in queries))
    atomic_write_text(
        folder / "qrels" / "test.tsv",
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels),
    )
    return folder

