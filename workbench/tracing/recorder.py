"""The export side of tracing: a thread that turns finished requests into OpenTelemetry spans and writes them.

`spans` (the request thread) queues each finished request's spans on the `Recorder`; its
thread builds their attributes (GenAI conventions, prompts and answers, redacted), makes SDK
`ReadableSpan`s, writes them to the trace store in batches and hands them to the OTLP
processor. A generate span records the prompt the generator says it sent (`Answer.prompt`),
never one rebuilt here.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..config import config_hash
from .redaction import REDACTED, redact

if TYPE_CHECKING:
    from ..config import PipelineConfig
    from ..types import Answer, Hit, Prompt
    from .spans import _Span, _State
    from .store import SQLiteSpanExporter

__all__ = ["BATCH", "Recorder", "readable_span"]

BATCH = 64  # finished requests that wake the export thread before its delay is up
_DELAY_S = 1.0  # the export thread's longest sleep
_EXPORT_MAX = 512  # spans per exporter call (one store transaction)

_log = logging.getLogger(__name__)

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



class Recorder:
    """Queues finished requests; a daemon thread builds their spans and exports them in batches.

    A finishing request appends its spans to `queue` and sets `wake` when the queue reaches
    `BATCH` requests; otherwise the thread wakes every `_DELAY_S` seconds.

    Args:
        local: the trace store's exporter, called with each batch (one transaction).
        processors: span processors also given every span (the OTLP one).
    """

    def __init__(self, *, local: SQLiteSpanExporter, processors: tuple[Any, ...]) -> None:
        self._local, self._processors = local, processors
        self.queue: collections.deque[list[_Span]] = collections.deque()
        self._stopped = False
        self.restart_after_fork(clear=False)

    def restart_after_fork(self, *, clear: bool = True) -> None:
        """A fresh lock, wake-up and export thread (a forked child has none; the parent exports its queue)."""
        if clear:
            self.queue.clear()
        self._lock = threading.Lock()
        self.wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workbench-trace-export", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped:
            self.wake.wait(_DELAY_S)
            self.wake.clear()
            try:
                self.drain()
            except Exception:  # noqa: BLE001 - keep exporting later batches; flush() reports failures
                _log.exception("workbench tracing: exporting a batch of spans failed")

    def drain(self) -> bool:
        """Build and export every queued request now.

        Returns:
            False if the store refused a batch (its spans are lost, as with any OpenTelemetry exporter).
        """
        from opentelemetry.sdk.trace.export import SpanExportResult

        written = True
        with self._lock:
            while self.queue:
                spans: list[Any] = []
                failed: list[Exception] = []
                while self.queue and len(spans) < _EXPORT_MAX:
                    finished = self.queue.popleft()
                    try:
                        spans += [readable_span(s) for s in finished]
                    except Exception as exc:  # noqa: BLE001 - a tracing bug must not stop the export thread
                        failed.append(exc)
                if failed:
                    _log.error("workbench tracing: dropped %d requests whose spans could not be built",
                               len(failed), exc_info=failed[0])
                if not spans:
                    continue
                if self._local.export(spans) is not SpanExportResult.SUCCESS:
                    _log.warning("workbench tracing: the trace store refused %d spans", len(spans))
                    written = False
                for processor in self._processors:
                    for span in spans:
                        processor.on_end(span)
        return written

    def shutdown(self) -> None:
        """Stop the thread, export what is queued and close the store connection."""
        self._stopped = True
        self.wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self.drain()
        self._local.shutdown()


@functools.cache
def _sdk() -> Any:
    """The OpenTelemetry classes `readable_span` uses, imported once (and workbench's instrumentation scope)."""
    import types

    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import Link, SpanContext, TraceFlags
    from opentelemetry.trace.status import Status, StatusCode

    return types.SimpleNamespace(
        Event=Event, ReadableSpan=ReadableSpan, Link=Link, SpanContext=SpanContext, Status=Status,
        StatusCode=StatusCode, unset=Status(StatusCode.UNSET), sampled=TraceFlags(TraceFlags.SAMPLED),
        scope=InstrumentationScope("workbench"),
    )


def readable_span(span: _Span) -> Any:
    """The OpenTelemetry SDK span (`ReadableSpan`) of a finished `_Span`, its attributes built now."""
    sdk = _sdk()
    SpanContext = sdk.SpanContext  # noqa: N806 - the class
    root = span._root
    attrs = _span_attributes(span)
    sampling = getattr(root, "_sampling", None)
    link = getattr(root, "_link", None) if span is root else None
    end, error = getattr(span, "_end", None), getattr(span, "_error", None)
    if end is None:  # a stage still open when its request closed: it ends, and fails, with the request
        end, error = root._end, error or getattr(root, "_error", None)
    events, status = (), sdk.unset
    if span is root and sampling is not None and sampling.attributes:
        attrs.update(sampling.attributes)
    if error is not None:
        kind, message, stack = error
        attrs["error.type"] = kind
        status = sdk.Status(sdk.StatusCode.ERROR, message)
        events = (sdk.Event("exception", {"exception.type": kind, "exception.message": message,
                                          "exception.stacktrace": stack}, timestamp=end),)
    flags = sdk.sampled
    trace_state = sampling.trace_state if sampling is not None else None
    parent = None if span is root else SpanContext(
        root._trace_id, _span_id(root), is_remote=False, trace_flags=flags, trace_state=trace_state
    )
    return sdk.ReadableSpan(
        name=span._name,
        context=SpanContext(root._trace_id, _span_id(span), is_remote=False, trace_flags=flags, trace_state=trace_state),
        parent=parent,
        resource=root._state.provider.resource,
        attributes=attrs,  # already of OpenTelemetry attribute types (`_clean`)
        events=events,
        links=(sdk.Link(link),) if link is not None else (),
        status=status,
        start_time=span._start,
        end_time=end,
        instrumentation_scope=sdk.scope,
    )


def _span_id(span: _Span) -> int:
    """The span's id, drawn now if it has none yet (only the export thread draws it then)."""
    span_id = getattr(span, "_span_id", None)
    if span_id is None:
        span._span_id = span_id = span._root._state.provider.id_generator.generate_span_id()
    return span_id


def _span_attributes(span: _Span) -> dict[str, Any]:
    """A span's attributes (GenAI conventions where they exist), redacted, None values left out."""
    state = span._root._state
    content = state.record_content
    if span is span._root and span._request is not None:
        operation, query, config, tag = span._request
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": config.name,
            "workbench.operation": operation,
            "workbench.config_hash": _config_hash(config),
            "user.id": tag.get("user"),
            "workbench.feature": tag.get("feature"),
            "workbench.query": query if content else None,
        }
    else:
        name, given = span._name, dict(span._given or {})
        attrs = {"workbench.stage": name}
        prompt = {}
        if name == "generate":
            prompt = _generate_attributes(given.pop("config"), given.pop("context"), state)
        elif name in ("retrieve", "rerank"):
            attrs["gen_ai.operation.name"] = "retrieval"
        for key, value in given.items():
            attrs["gen_ai.request.model" if key == "model" else f"workbench.{name}.{key}"] = value
        attrs.update(prompt)
    for hits, answer, context, response, values in span._records:
        if hits is not None:
            attrs.update(_hit_attributes(*hits))
        if answer is not None:
            attrs.update(_answer_attributes(answer, context or (), content))
            if content and answer.prompt is not None:
                attrs.update(_prompt_attributes(answer.prompt, state.secrets))
        if response is not None:
            attrs["gen_ai.request.model"] = response.model
            shown = context if context is not None else response.hits
            attrs.update(_answer_attributes(response.answer, shown, content))
            for stage_name, seconds in response.stage_latency_s.items():
                attrs[f"workbench.latency_s.{stage_name}"] = float(seconds)
        for key, value in values.items():
            attrs[f"workbench.{span._name}.{key}"] = value
    return _clean(attrs, state.secrets)


def _clean(attributes: Mapping[str, Any], secrets: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if key in _ID_ATTRIBUTES:
            out[key] = value
        elif isinstance(value, str) and _SECRET_KEY.search(key):
            out[key] = REDACTED
        elif isinstance(value, str):
            out[key] = redact(value, secrets)
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
            out[key] = [redact(v, secrets) for v in value]
        elif isinstance(value, (bool, int, float, list, tuple)):
            out[key] = value
        else:  # not an OpenTelemetry attribute type: recorded as text
            out[key] = redact(str(value), secrets)
    return out


def _hit_attributes(count: int, top: Sequence[Hit]) -> dict[str, Any]:
    return {
        "workbench.hits.count": count,
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


def _generate_attributes(config: Any, context: Sequence[Hit], state: _State) -> dict[str, Any]:
    """The generate span's request settings, and the passages it was given (each redacted once)."""
    kind = config.kind
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat" if kind == "anthropic" else "text_completion",
        "gen_ai.provider.name": {"anthropic": "anthropic", "local": "llama_cpp"}.get(kind, f"workbench.{kind}"),
        "gen_ai.request.max_tokens": config.max_tokens,
        "gen_ai.request.temperature": config.temperature,
    }
    if state.record_content:
        # The same passages come back request after request: each is scanned once (`_redact_passage`).
        attrs["workbench.context"] = json.dumps(
            [{"id": h.chunk.id, "doc_id": h.chunk.doc_id, "start": h.chunk.start, "end": h.chunk.end,
              "text": _redact_passage(h.chunk.text, state.secrets)} for h in context]
        )
    return attrs


def _prompt_attributes(prompt: Prompt, secrets: tuple[str, ...]) -> dict[str, Any]:
    """What the generator sent (`Answer.prompt`), redacted: its system blocks and its messages."""

    def message(role: str, content: Any) -> dict[str, Any]:
        text = content if isinstance(content, str) else json.dumps(content)
        return {"role": role, "parts": [{"type": "text", "content": redact(text, secrets)}]}

    attrs: dict[str, Any] = {
        "gen_ai.input.messages": json.dumps([message(m["role"], m["content"]) for m in prompt.messages])
    }
    if prompt.system:  # the instructions block repeats across requests: remembered like a passage
        attrs["gen_ai.system_instructions"] = json.dumps(
            [{"type": "text", "content": _redact_passage(b["text"], secrets)} for b in prompt.system]
        )
    return attrs


@functools.lru_cache(maxsize=4096)
def _redact_passage(text: str, secrets: tuple[str, ...]) -> str:
    """`redact` for retrieved passages, remembered (a str caches its hash: a repeat costs a lookup)."""
    return redact(text, secrets)


@functools.lru_cache(maxsize=64)
def _config_hash(config: PipelineConfig) -> str:
    return config_hash(config)
