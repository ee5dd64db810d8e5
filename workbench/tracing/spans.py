"""The live tracer: tracing on and off, and the request and stage spans on the request's own thread.

A request's own thread only notes a trace id, nanosecond timestamps and references to the
values passed to `record`/`end` (a few microseconds per span: the pipeline ends its stages with
`span.end(...)` rather than `with`: a BM25 search measured +15.6 us against +23.2 us). One context variable
holds the open request; stages are its children. A background thread (`recorder`) turns each
finished request into OpenTelemetry SDK spans (`ReadableSpan`s: GenAI attributes, prompts and answers,
redacted), writes them to the trace store one batch per transaction and hands them to the
OTLP span processor. `flush()`, `disable_tracing()` and the process's exit export everything
still pending.

When the process had set a global OpenTelemetry tracer provider before `enable_tracing`, other
libraries' spans opened inside a stage nest under it, and a request opened inside another
library's span links to that span (each request stays a trace of its own).
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import os
import random
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .recorder import BATCH, Recorder
from .redaction import env_secrets, redact

if TYPE_CHECKING:
    from ..config import PipelineConfig
    from ..results import Response
    from ..types import Answer, Hit
    from .store import SQLiteSpanExporter, TraceStore

__all__ = [
    "STAGES",
    "HITS_RECORDED",
    "enable_tracing",
    "disable_tracing",
    "tracing_enabled",
    "flush",
    "active_secrets",
    "tags",
    "last_trace_id",
    "request",
    "stage",
]

STAGES = ("route", "retrieve", "rerank", "generate")
HITS_RECORDED = 20  # hits recorded per retrieve/rerank span (their total is `workbench.hits.count`)

# --- the live tracer --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class _State:
    provider: Any  # opentelemetry.sdk.trace.TracerProvider: sampler, id generator, resource, OTLP processor
    recorder: Recorder
    trace: Any  # the opentelemetry.trace module
    context: Any  # the opentelemetry.context module
    store: TraceStore
    record_content: bool
    secrets: tuple[str, ...]
    sample_all: bool  # the sampler keeps every new trace: it is not asked each time
    ratio_bound: int | None  # a trace-id ratio sampler (or always-off: 0): its bound, compared here, not asked
    instrumented: bool  # a global tracer provider was set when tracing was enabled: other libraries trace too
    new_trace_id: Callable[[], int]  # the provider's id generator (the default one without a Python frame)


_state: _State | None = None
_state_lock = threading.Lock()
_auto = os.environ.get("WORKBENCH_TRACING", "").strip().lower() in ("1", "true", "yes", "on")
# the request open in this context, else the last one finished in it (`_done`): one variable set per request
_request: contextvars.ContextVar[_Request | None] = contextvars.ContextVar("workbench_request", default=None)
_tags: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("workbench_trace_tags", default={})
# Where `enable_tracing` writes: the trace store and its span exporter, handed over by the
# `workbench.tracing` package (which runs before this module can be used), so that the runner
# and the stages, which import this module, never import the stores above them.
_stores: tuple[type[TraceStore], type[SQLiteSpanExporter]] | None = None


def use_store(store: type[TraceStore], exporter: type[SQLiteSpanExporter]) -> None:
    """Set the trace store class `enable_tracing` opens and the exporter that writes to it."""
    global _stores
    _stores = (store, exporter)


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
            OTEL_EXPORTER_OTLP_* variables for endpoint, headers, timeout and compression, and
            its batching the OTEL_BSP_* ones). The standard `OTEL_TRACES_SAMPLER` (e.g.
            "parentbased_traceidratio" with `OTEL_TRACES_SAMPLER_ARG=0.1`) keeps a share of
            requests. Other libraries' spans nest in the stage spans when a global tracer
            provider (`opentelemetry.trace.set_tracer_provider`) was set before this call.

    Returns:
        The trace store the local exporter writes to.

    Raises:
        ValueError: `OTEL_EXPORTER_OTLP_PROTOCOL` asks for a protocol other than http/protobuf.
    """
    from opentelemetry import context, trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, DEFAULT_ON

    if _stores is None:  # pragma: no cover - `workbench.tracing` sets it on import
        raise RuntimeError("import workbench.tracing (not only workbench.tracing.spans) before enabling tracing")
    TraceStore, SQLiteSpanExporter = _stores  # noqa: N806 - the classes `use_store` was given

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
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)  # `_at_exit` drains, then shuts it down
    processors = []
    if otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processors.append(BatchSpanProcessor(OTLPSpanExporter()))  # a remote endpoint may lag: its own queue
        provider.add_span_processor(processors[-1])
    secrets = env_secrets()
    recorder = Recorder(local=SQLiteSpanExporter(trace_store), processors=tuple(processors))
    with _state_lock:
        previous, _state = _state, _State(
            provider=provider,
            recorder=recorder,
            trace=trace,
            context=context,
            store=trace_store,
            record_content=record_content,
            secrets=secrets,
            sample_all=provider.sampler.get_description() in (ALWAYS_ON.get_description(), DEFAULT_ON.get_description()),
            ratio_bound=_ratio_bound(provider.sampler),
            instrumented=not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider)),
            new_trace_id=(functools.partial(random.getrandbits, 128) if type(provider.id_generator) is RandomIdGenerator
                          else provider.id_generator.generate_trace_id),
        )
    if previous is not None:
        _shut_down(previous)
    return trace_store


_TRACE_ID_LIMIT = (1 << 64) - 1  # opentelemetry.sdk.trace.sampling.TraceIdRatioBased.TRACE_ID_LIMIT
_RATIO_SAMPLER = re.compile(r"(?:ParentBased\{root:)?(?:TraceIdRatioBased\{(?P<rate>[^}]+)\}|(?P<off>AlwaysOffSampler))")


def _ratio_bound(sampler: Any) -> int | None:
    """For a built-in sampler that decides a new trace by its id alone (trace-id ratio, always off), its bound."""
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    match = _RATIO_SAMPLER.match(sampler.get_description())
    if match is None:
        return None
    return 0 if match["off"] else TraceIdRatioBased.get_bound_for_rate(float(match["rate"]))


def _shut_down(state: _State) -> None:
    state.recorder.shutdown()
    state.provider.shutdown()


def disable_tracing() -> None:
    """Stop tracing; spans already recorded are exported first."""
    global _state, _auto
    with _state_lock:
        previous, _state, _auto = _state, None, False
    if previous is not None:
        _shut_down(previous)


@atexit.register
def _at_exit() -> None:
    """Export what is pending when the process exits (the export thread is a daemon)."""
    state = _state
    if state is not None:
        _shut_down(state)


def _after_fork() -> None:
    state = _state
    if state is not None:
        state.recorder.restart_after_fork()


os.register_at_fork(after_in_child=_after_fork)


def tracing_enabled() -> bool:
    """Whether requests are being traced now."""
    return _state is not None


def flush(timeout_s: float = 30.0) -> bool:
    """Export every finished span now (the exporters batch in the background otherwise).

    Returns:
        False if an exporter failed or did not finish within `timeout_s`.
    """
    state = _state
    if state is None:
        return True
    written = state.recorder.drain()
    return written and bool(state.provider.force_flush(int(timeout_s * 1000)))


def active_secrets() -> tuple[str, ...]:
    """The secrets the live tracer redacts; while off, those of the environment now."""
    state = _state
    return state.secrets if state is not None else env_secrets()


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

    None before any, while a request is open, or when the sampler dropped it (so it was not
    recorded). Only requests opened as context managers count (`request`, or a `stage` outside
    a request used with `with`).
    """
    last = _request.get()
    return format(last._trace_id, "032x") if last is not None and last._done and last.sampled else None


class _NoSpan:
    """Stands in for a span while tracing is off: every call does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        return False

    def record(self, **values: Any) -> None:
        """Do nothing."""

    def end(self, **values: Any) -> None:
        """Do nothing."""


_NO_SPAN = _NoSpan()


class _Span:
    """A live stage span, a child of its request, started when made: notes its times and what it records.

    Close it with `end(**values)` or use it as a context manager. A stage still open when its
    request closes ends with the request (and with the request's error, if it failed).
    Attributes are built at export. The values passed to `stage`, `record` and `end` are kept
    by reference until then: the pipeline's hits, answers and responses are frozen (hit lists
    are copied). Span ids are drawn at export unless other libraries' spans may nest in this
    one. The request thread sets only what every span has; `_end`, `_error`, `_span_id` and
    `_otel_token` are set when there is one (read with `getattr`).
    """

    __slots__ = ("_root", "_name", "_given", "_records", "_start", "_end", "_error", "_span_id", "_otel_token")
    sampled = True  # a stage span only exists inside a sampled request

    def __init__(self, root: _Request, name: str, given: dict[str, Any] | None) -> None:
        self._root, self._name, self._given, self._records = root, name, given, ()
        root._spans.append(self)
        if root._state.instrumented:
            self._attach()
        self._start = time.time_ns()

    def __enter__(self) -> _Span:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is not None:
            self._error = _error(exc_type, exc, tb, self._root._state.secrets)
        self.end()
        return False

    def end(
        self,
        *,
        hits: Sequence[Hit] | None = None,
        answer: Answer | None = None,
        context: Sequence[Hit] | None = None,
        response: Response | None = None,
        **values: Any,
    ) -> None:
        """Close the stage, recording what it is given first (the arguments of `record`).

        It repeats `record`'s keywords and body rather than forwarding `**values` to it: on a
        0.45 ms BM25 search that forwarding measured about 5 us more per request.
        """
        self._end = time.time_ns()
        if hits is not None or answer is not None or response is not None or values:
            self._records += ((  # `_entry`, inlined: one call less on every stage
                None if hits is None else (len(hits), hits[:HITS_RECORDED]),
                answer,
                None if context is None else tuple(context),
                response,
                values,
            ),)
        if self._root._state.instrumented:
            self._detach()

    def _detach(self) -> None:
        """Undo `_attach` (once)."""
        token = getattr(self, "_otel_token", None)
        if token is not None:
            self._otel_token = None
            self._root._state.context.detach(token)

    def _attach(self) -> None:
        """Make this span the current OpenTelemetry span, so other libraries' spans nest in it."""
        root = self._root
        state, trace = root._state, root._state.trace
        flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if root.sampled else trace.TraceFlags.DEFAULT)
        self._span_id = state.provider.id_generator.generate_span_id()
        sampling = getattr(root, "_sampling", None)
        trace_state = sampling.trace_state if sampling is not None else None
        context = trace.SpanContext(root._trace_id, self._span_id, is_remote=False, trace_flags=flags, trace_state=trace_state)
        self._otel_token = state.context.attach(trace.set_span_in_context(trace.NonRecordingSpan(context)))

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
        if self.sampled:
            self._records += (_entry(hits, answer, context, response, values),)


class _Request(_Span):
    """The root span of a trace: draws the trace id, asks the sampler, queues its spans when it closes.

    A request the sampler drops (OTEL_TRACES_SAMPLER) records nothing, nor do its stages.
    Used as a context manager, it is the context's `_request` from then on (also once done:
    what `last_trace_id` reads). `_link` (another library's span around it) and `_sampling`
    (a custom sampler's result) are set when there is one.
    """

    __slots__ = ("_state", "_request", "_trace_id", "_link", "_sampling", "_spans", "_done", "sampled")

    def __init__(self, state: _State, name: str, request: tuple[Any, ...] | None, given: dict[str, Any] | None) -> None:
        self._state, self._name, self._request, self._given = state, name, request, given
        self._root, self._records, self._spans, self._done = self, (), [self], False
        self._trace_id = trace_id = state.new_trace_id()
        if state.sample_all:
            self.sampled = True
        elif state.ratio_bound is not None:  # what TraceIdRatioBased.should_sample decides, without its frames
            self.sampled = trace_id & _TRACE_ID_LIMIT < state.ratio_bound
        else:  # asked as for a new trace: an empty parent context
            self._sampling = state.provider.sampler.should_sample(state.context.Context(), trace_id, name)
            self.sampled = self._sampling.decision.is_sampled()
        if state.instrumented:  # another library's span around ours: linked, not a parent (a trace is a request)
            around = state.trace.get_current_span().get_span_context()
            if around.is_valid:
                self._link = around
            self._attach()
        self._start = time.time_ns()

    def __enter__(self) -> _Request:
        _request.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        self._end = time.time_ns()
        self._done = True
        if exc is not None and self.sampled:
            self._error = _error(exc_type, exc, tb, self._state.secrets)
        if self._state.instrumented:
            for span in reversed(self._spans):  # OpenTelemetry contexts detach in the reverse order
                span._detach()
        if self.sampled:
            recorder = self._state.recorder
            recorder.queue.append(self._spans)
            if len(recorder.queue) == BATCH:
                recorder.wake.set()
        return False

    def end(self, **values: Any) -> None:
        """Close the request (and any stage still open), recording `values` first; queue it for export."""
        if values:
            self.record(**values)
        self.__exit__(None, None, None)


def _entry(hits: Sequence[Hit] | None, answer: Answer | None, context: Sequence[Hit] | None,
           response: Response | None, values: dict[str, Any]) -> tuple[Any, ...]:
    """One `record`: hit lists copied (their count and first `HITS_RECORDED`), the rest by reference."""
    return (
        None if hits is None else (len(hits), hits[:HITS_RECORDED]),
        answer,
        None if context is None else tuple(context),
        response,
        values,
    )


def _error(exc_type: Any, exc: BaseException, tb: Any, secrets: Sequence[str]) -> tuple[str, str, str]:
    """A failure's type, message and stack trace, redacted."""
    return (
        type(exc).__qualname__,
        redact(str(exc), secrets),
        redact("".join(traceback.format_exception(exc_type, exc, tb)), secrets),
    )


def request(operation: str, query: str, config: PipelineConfig) -> _Span | _NoSpan:
    """The root span of one request (a no-op when tracing is off or a request is already open).

    Args:
        operation: "answer" or "search", the span's name.
        query: the user's question (recorded unless content recording is off).
        config: the pipeline serving it.
    """
    state = _state if _state is not None or not _auto else _current()
    if state is None:
        return _NO_SPAN
    current = _request.get()
    if current is not None and not current._done:
        return _NO_SPAN
    return _Request(state, operation, (operation, query, config, _tags.get()), None)


def stage(name: str, **attributes: Any) -> _Span | _NoSpan:
    """Start a span for one pipeline stage, a child of the current request (a no-op when tracing is off).

    Close it with `span.end(**values)`, or use it as a context manager (`with stage(...) as
    span: ... span.record(...)`), which also notes an error raised inside. A stage left open
    when its request closes ends with it. Outside a request it is a trace of its own (use it
    as a context manager or end it). Stages do not nest in each other: a stage opened inside
    another one is its sibling.

    Args:
        name: "route", "retrieve", "rerank" or "generate".
        **attributes: recorded as `workbench.<name>.<key>` (`model` as gen_ai.request.model).
            "generate" takes `config` (its GenerationConfig), `query` and `context` (the hits it
            is given) and records the GenAI request attributes and the prompt.
    """
    state = _state
    if state is None:
        return _NO_SPAN
    current = _request.get()
    if "context" in attributes:
        attributes["context"] = tuple(attributes["context"])
    if current is None or current._done:
        return _Request(state, name, None, attributes)
    return _Span(current, name, attributes) if current.sampled else _NO_SPAN
