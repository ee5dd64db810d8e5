"""The live tracer: tracing on and off, the request and stage spans, and their (GenAI-named) attributes."""

from __future__ import annotations

import contextvars
import functools
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .redaction import REDACTED, env_secrets, redact

if TYPE_CHECKING:
    from ..config import PipelineConfig
    from ..experiment import Response
    from ..types import Answer, Hit
    from .store import TraceStore

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

# an attribute named like a credential ("api_key", "x-api-key", "auth_token", "password")
_SECRET_KEY = re.compile(
    r"(?i)(^|[_\-.])(api[_\-]?key|secret|password|passwd|credentials?|authorization|(auth|access|api)?[_\-]?token)$"
)
# attributes holding only ids, numbers and hashes, or built from redacted pieces: not scanned again
_ID_ATTRIBUTES = frozenset({
    "gen_ai.system_instructions", "gen_ai.input.messages", "workbench.context",
    "workbench.hits.chunk_ids", "workbench.hits.doc_ids", "workbench.config_hash", "workbench.stage",
    "workbench.citations", "workbench.cited_doc_ids", "workbench.context.chunk_ids", "workbench.operation",
    "gen_ai.operation.name",
})


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

    from .store import SQLiteSpanExporter, TraceStore  # here: .store imports this module

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
            secrets=env_secrets(),
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

    from ..generation import build_prompt, completion_prompt

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
    from ..config import config_hash

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
