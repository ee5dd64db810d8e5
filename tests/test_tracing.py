"""Tracing: span structure and GenAI attributes, secrets, the OTLP path, metrics, feedback round trip."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from workbench import tracing
from workbench.config import GenerationConfig, PipelineConfig, load_config, replace_path
from workbench.datasets import load_dataset
from workbench.experiment import build_pipeline, run_experiment
from workbench.tracing import TraceFilter, TraceStore
from workbench.types import Hit

sys.path.insert(0, str(Path(__file__).parent))
from anthropic_server import AnthropicServer, Reply, Status  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-ant-api03-" + "Zq7xK2mN9pL4vR8tY1wB6cD3fG5hJ0aS" * 2
QUERIES = ("1", "2", "3")


@pytest.fixture(scope="module")
def config() -> PipelineConfig:
    """BM25 over whole Cranfield documents, answered by the lexical extractive generator."""
    cfg = replace_path(load_config(ROOT / "configs" / "bm25.toml"), "generation.extractive_scorer", "lexical")
    return replace_path(cfg, "generation.context_chunks", 3)


@pytest.fixture(scope="module")
def pipeline(config, cranfield):
    return build_pipeline(config, cranfield)


@pytest.fixture
def store(tmp_path):
    """Tracing on, into a fresh store file; off again afterwards."""
    trace_store = tracing.enable_tracing(tmp_path / "runs.sqlite", otlp=False)
    yield trace_store
    tracing.disable_tracing()


def _everything_recorded(path: Path) -> str:
    """Every value in every table of the store file, as one string."""
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(repr(row) for t in tables for row in conn.execute(f"SELECT * FROM {t}"))


class Reverse:
    """A real reranker: keeps the first k candidates in reverse order."""

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        return [dataclasses.replace(h, rank=i) for i, h in enumerate(list(hits)[::-1][:k], 1)]


# --- spans ------------------------------------------------------------------------------------


def test_answer_is_one_trace_with_a_span_per_stage(store, pipeline, cranfield):
    query = cranfield.queries["1"]
    with tracing.tags(user="ada", feature="playground"):
        response = pipeline.answer(query)
    trace_id = tracing.last_trace_id()
    assert tracing.flush()

    spans = {s.name: s for s in store.spans(trace_id)}
    assert set(spans) == {"answer", "route", "retrieve", "generate"}
    root = spans["answer"]
    assert root.parent_id is None
    for name in ("route", "retrieve", "generate"):
        child = spans[name]
        assert child.trace_id == trace_id and child.parent_id == root.span_id
        assert root.start_s <= child.start_s and child.start_s + child.duration_s <= root.start_s + root.duration_s
        assert child.status == "ok"
    assert spans["route"].start_s < spans["retrieve"].start_s < spans["generate"].start_s

    retrieve = spans["retrieve"].attributes
    assert retrieve["gen_ai.operation.name"] == "retrieval"
    top = response.hits[: tracing.HITS_RECORDED]
    assert retrieve["workbench.hits.chunk_ids"] == [h.chunk.id for h in top]
    assert retrieve["workbench.hits.doc_ids"] == [h.chunk.doc_id for h in top]
    assert retrieve["workbench.hits.scores"] == pytest.approx([h.score for h in top])
    assert retrieve["workbench.hits.count"] == len(response.hits) == pipeline.config.retrieval.k

    gen = spans["generate"].attributes
    assert gen["gen_ai.request.model"] == response.model == spans["route"].attributes["workbench.route.model"]
    assert gen["gen_ai.response.model"] == response.answer.usage.model == "extractive-lexical"
    assert gen["gen_ai.provider.name"] == "workbench.extractive"
    assert gen["gen_ai.request.max_tokens"] == pipeline.config.generation.max_tokens
    for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
                "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_creation.input_tokens"):
        assert isinstance(gen[key], int)
    assert gen["gen_ai.response.time_to_first_chunk"] == pytest.approx(response.answer.usage.time_to_first_token_s)
    assert query in json.loads(gen["gen_ai.input.messages"])[0]["parts"][0]["content"]
    context = [h.chunk for h in response.hits[:3]]
    assert context[0].text in json.loads(gen["gen_ai.system_instructions"])[1]["content"]
    assert json.loads(gen["gen_ai.output.messages"])[0]["parts"][0]["content"] == response.answer.text
    assert [c["text"] for c in json.loads(gen["workbench.context"])] == [c.text for c in context]
    assert gen["workbench.citations"] == list(response.answer.citations)
    assert gen["workbench.citation_validity"] == 1.0

    record = store.trace(trace_id)
    assert (record.operation, record.status, record.user, record.feature) == ("answer", "ok", "ada", "playground")
    assert (record.query, record.answer, record.model) == (query, response.answer.text, response.model)
    assert record.config_name == "bm25" and len(record.config_hash) == 16
    by_id = {h.chunk.id: h.chunk.doc_id for h in response.hits}
    assert record.cited_doc_ids == tuple(by_id[c] for c in response.answer.citations)


@pytest.fixture
def reverse_kind():
    """Reverse registered as reranking.kind "reverse" for one test (configs check kinds against the registry)."""
    from workbench.registry import register, unregister

    register("reranking.kind", "reverse", f"{__name__}:Reverse")
    yield
    unregister("reranking.kind", "reverse")


def test_rerank_span_nests_under_the_request(store, pipeline, reverse_kind):
    config = replace_path(pipeline.config, "reranking.kind", "reverse")
    reranked = dataclasses.replace(pipeline, config=config, reranker=Reverse())
    hits, _ = reranked.search("boundary layer transition")
    assert tracing.flush()
    (trace,) = store.traces()
    spans = {s.name: s for s in store.spans(trace.trace_id)}
    assert set(spans) == {"search", "retrieve", "rerank"}
    assert spans["rerank"].parent_id == spans["search"].span_id
    assert spans["rerank"].attributes["workbench.hits.chunk_ids"] == [h.chunk.id for h in hits[: config.reranking.k]]
    assert spans["rerank"].attributes["workbench.hits.count"] == config.reranking.k
    assert spans["rerank"].attributes["workbench.rerank.kind"] == "reverse"


def test_experiment_runs_trace_each_query_search(store, config, cranfield):
    result = run_experiment(config, cranfield, query_ids=list(QUERIES))
    assert tracing.flush()
    traces = store.traces()
    assert len(traces) == len(result.rows) == 3
    assert {t.operation for t in traces} == {"search"}
    assert sorted(t.query for t in traces) == sorted(cranfield.queries[q] for q in QUERIES)
    assert all({s.name for s in store.spans(t.trace_id)} == {"search", "retrieve"} for t in traces)


def test_every_request_is_in_the_store_after_flush(store, pipeline, cranfield):
    queries = list(cranfield.queries.values())[:150]  # more than a batch: the export thread wakes mid-way
    ids = []
    for query in queries:
        pipeline.search(query)
        ids.append(tracing.last_trace_id())
    assert any(t.name == "workbench-trace-export" for t in threading.enumerate())
    assert tracing.flush()
    assert len(set(ids)) == len(queries)
    assert {t.trace_id for t in store.traces()} == set(ids)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0] == 2 * len(queries)


def _run_python(script: str) -> str:
    """Run `script` in a fresh interpreter (from the repository root); its stdout."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_stage_spans_end_explicitly_or_as_context_managers(store, config):
    with tracing.request("search", "q", config):
        retrieve = tracing.stage("retrieve", kind="bm25")
        retrieve.end(depth=7)
        with pytest.raises(ValueError), tracing.stage("rerank", kind="mmr"):
            raise ValueError("reranker broke")
        tracing.stage("route")  # never ended: it ends with the request
    request = tracing.last_trace_id()
    alone = tracing.stage("route", kind="rules")  # outside a request: a trace of its own
    alone.end(tokens=3)
    assert tracing.last_trace_id() == request  # only a request opened with `with` becomes the context's last
    assert tracing.flush()
    spans = {s.name: s for s in store.spans(request)}
    assert set(spans) == {"search", "retrieve", "rerank", "route"}
    assert spans["retrieve"].attributes["workbench.retrieve.depth"] == 7
    assert (spans["rerank"].status, spans["rerank"].attributes["error.type"]) == ("error", "ValueError")
    assert store.trace(request).status == "ok"  # the error was handled inside the request
    assert spans["route"].status == "ok" and spans["route"].duration_s <= spans["search"].duration_s
    assert all(s.parent_id == spans["search"].span_id for name, s in spans.items() if name != "search")
    others = [t for t in store.traces() if t.trace_id != request]
    assert [t.operation for t in others] == ["route"]
    assert store.spans(others[0].trace_id)[0].attributes["workbench.route.tokens"] == 3


def test_process_exit_exports_pending_requests(tmp_path):
    path = tmp_path / "runs.sqlite"
    trace_id = _run_python(f"""
        from workbench import tracing
        from workbench.config import load_config

        tracing.enable_tracing({str(path)!r}, otlp=False)
        with tracing.request("search", "exit query", load_config("configs/bm25.toml")):
            with tracing.stage("retrieve", kind="bm25") as span:
                span.record(depth=3)
        print(tracing.last_trace_id())  # and exit without flush()
    """)
    store = TraceStore(path)
    assert store.trace(trace_id).query == "exit query"
    spans = {s.name: s for s in store.spans(trace_id)}
    assert set(spans) == {"search", "retrieve"}
    assert spans["retrieve"].parent_id == spans["search"].span_id
    assert spans["retrieve"].attributes["workbench.retrieve.depth"] == 3


def test_other_libraries_spans_nest_in_the_stages(tmp_path):
    path = tmp_path / "runs.sqlite"
    out = json.loads(_run_python(f"""
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from workbench import tracing
        from workbench.config import load_config

        theirs = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(theirs))
        trace.set_tracer_provider(provider)  # another library traces in this process
        tracing.enable_tracing({str(path)!r}, otlp=False)
        tracer = trace.get_tracer("their-library")
        with tracer.start_as_current_span("their request"):
            with tracing.request("search", "q", load_config("configs/bm25.toml")):
                with tracing.stage("retrieve", kind="bm25"):
                    with tracer.start_as_current_span("their call"):
                        pass
        assert tracing.flush()
        spans = {{s.name: s for s in theirs.get_finished_spans()}}
        call = spans["their call"]
        print(json.dumps({{"ours": tracing.last_trace_id(), "theirs": format(spans["their request"].context.trace_id, "032x"),
                          "call_trace": format(call.context.trace_id, "032x"), "call_parent": format(call.parent.span_id, "016x")}}))
    """))
    spans = {s.name: s for s in TraceStore(path).spans(out["ours"])}
    assert set(spans) == {"search", "retrieve"} and spans["search"].parent_id is None  # a request is a trace
    assert out["ours"] != out["theirs"]
    assert (out["call_trace"], out["call_parent"]) == (out["ours"], spans["retrieve"].span_id)


def test_tracing_off_records_nothing(tmp_path, pipeline, monkeypatch):
    path = tmp_path / "runs.sqlite"
    monkeypatch.setenv("WORKBENCH_STORE", str(path))
    tracing.disable_tracing()
    assert not tracing.tracing_enabled()
    assert tracing.request("answer", "q", pipeline.config) is tracing.stage("retrieve")  # the shared no-op
    before = tracing.last_trace_id()
    pipeline.answer("shock waves")
    assert tracing.last_trace_id() == before
    assert not path.exists()


def test_requests_the_sampler_drops_are_not_recorded(tmp_path, pipeline, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    store = tracing.enable_tracing(tmp_path / "runs.sqlite", otlp=False)
    try:
        response = pipeline.answer("shock waves on a wedge")
        tracing.flush()
    finally:
        tracing.disable_tracing()
    assert response.answer.text and tracing.last_trace_id() is None
    assert store.traces() == []


def test_a_ratio_sampler_keeps_the_requests_the_sdk_sampler_would(tmp_path, pipeline, monkeypatch):
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    store = tracing.enable_tracing(tmp_path / "runs.sqlite", otlp=False)
    try:
        kept = []
        for i in range(60):
            pipeline.search(f"shock waves {i}")
            kept.append(tracing.last_trace_id())
        assert tracing.flush()
    finally:
        tracing.disable_tracing()
    recorded = {t.trace_id for t in store.traces()}
    assert 0 < len(recorded) < 60 and recorded == {k for k in kept if k is not None}
    sdk = TraceIdRatioBased(0.5)
    assert all(sdk.should_sample(None, int(t, 16), "search").decision.is_sampled() for t in recorded)


def test_without_content_only_ids_tokens_and_timings_are_kept(tmp_path, pipeline, cranfield):
    store = tracing.enable_tracing(tmp_path / "runs.sqlite", record_content=False, otlp=False)
    try:
        query = cranfield.queries["2"]
        response = pipeline.answer(query)
        trace_id = tracing.last_trace_id()
        tracing.flush()
    finally:
        tracing.disable_tracing()
    record = store.trace(trace_id)
    assert record.query == record.answer == ""
    spans = {s.name: s.attributes for s in store.spans(trace_id)}
    assert not {"gen_ai.input.messages", "gen_ai.output.messages", "workbench.context"} & set(spans["generate"])
    assert spans["retrieve"]["workbench.hits.chunk_ids"] == [h.chunk.id for h in response.hits[: tracing.HITS_RECORDED]]
    assert query not in _everything_recorded(store.path)
    store.add_feedback(trace_id, thumbs_up=True)
    with pytest.raises(ValueError, match="record_content"):
        tracing.export_feedback_dataset(store, tmp_path / "out")


# --- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"my key is {KEY} ok", KEY),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345", "abcdefghijklmnopqrstuvwxyz012345"),
        ("connect with password=hunter2hunter2 now", "hunter2hunter2"),
        ('{"api_key": "k-93jd83hd73hs"}', "k-93jd83hd73hs"),
        ("aws AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
        ("token ghp_" + "a" * 36, "ghp_" + "a" * 36),
        ("jwt eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0NTY3.SflKxwRJSMeKKF2QT4fwpM", "SflKxwRJSMeKKF2QT4fwpM"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "MIIEowIBAAKCAQEA"),
    ],
)
def test_redact_removes_credentials(text, secret):
    out = tracing.redact(text)
    assert tracing.REDACTED in out and secret not in out


def test_redact_leaves_ordinary_text_and_removes_given_values():
    text = "Skin friction at Mach 2? The password reset process and token estimates are unrelated (sk-ant)."
    assert tracing.redact(text) == text
    assert tracing.redact("value s3cr3t-v4lue here", ["s3cr3t-v4lue"]) == f"value {tracing.REDACTED} here"


@pytest.fixture
def claude(monkeypatch):
    """The local Anthropic-compatible server, with the key in the environment."""
    with AnthropicServer(api_key=KEY, responder=lambda body: Reply(text="Supersonic flow [1].")) as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        yield server


def _claude_pipeline(pipeline, url: str, **generation):
    gen = GenerationConfig(kind="anthropic", base_url=url, context_chunks=2, backoff_base_s=0.0, **generation)
    return dataclasses.replace(pipeline, config=dataclasses.replace(pipeline.config, generation=gen))


def test_claude_tokens_and_cache_tokens_are_traced_and_the_key_never(tmp_path, pipeline, claude):
    store = tracing.enable_tracing(tmp_path / "runs.sqlite", otlp=False)  # picks up the key from the env
    try:
        served = _claude_pipeline(pipeline, claude.url)
        leaky = f"why do shock waves form? (my api key is {KEY})"
        responses = [served.answer(leaky), served.answer("why do shock waves form?")]
        tracing.flush()
    finally:
        tracing.disable_tracing()
    assert [r.outcome for r in claude.requests] == ["ok", "ok"]
    traces = sorted(store.traces(), key=lambda t: t.started_at)
    for trace, response in zip(traces, responses, strict=True):
        usage = response.answer.usage
        assert usage.counted and usage.output_tokens > 0
        assert (trace.input_tokens, trace.output_tokens) == (usage.input_tokens, usage.output_tokens)
        assert (trace.cache_read_tokens, trace.cache_write_tokens) == (usage.cache_read_tokens, usage.cache_write_tokens)
        assert trace.cost_usd == pytest.approx(usage.cost_usd) and trace.cost_usd > 0
        assert trace.answer == "Supersonic flow [1]."
        gen = next(s.attributes for s in store.spans(trace.trace_id) if s.name == "generate")
        assert gen["gen_ai.provider.name"] == "anthropic" and gen["gen_ai.operation.name"] == "chat"
        assert gen["gen_ai.usage.cache_creation.input_tokens"] == usage.cache_write_tokens
    assert traces[0].cache_write_tokens > 0 and traces[1].cache_read_tokens > 0  # the instructions were cached
    assert tracing.REDACTED in traces[0].query
    assert KEY not in _everything_recorded(store.path)
    assert KEY[10:30] not in _everything_recorded(store.path)


def test_the_generate_span_records_the_prompt_the_model_was_sent(tmp_path, pipeline, claude):
    # the generator hands over what it sent (`Answer.prompt`); nothing is rebuilt from the config
    store = tracing.enable_tracing(tmp_path / "runs.sqlite", otlp=False)
    try:
        served = _claude_pipeline(pipeline, claude.url, system_prompt="Answer like a test pilot.")
        served.answer("why do shock waves form?")
        tracing.flush()
    finally:
        tracing.disable_tracing()
    (sent,) = [r.body for r in claude.requests]
    (trace,) = store.traces()
    gen = next(s.attributes for s in store.spans(trace.trace_id) if s.name == "generate")
    system = [b["content"] for b in json.loads(gen["gen_ai.system_instructions"])]
    assert system == [b["text"] for b in sent["system"]] and system[0] == "Answer like a test pilot."
    messages = [(m["role"], m["parts"][0]["content"]) for m in json.loads(gen["gen_ai.input.messages"])]
    assert messages == [(m["role"], m["content"]) for m in sent["messages"]]


def test_a_failing_stage_marks_its_span_and_the_trace_as_errors(tmp_path, pipeline, claude):
    from workbench.generation import GenerationError

    store = tracing.enable_tracing(tmp_path / "runs.sqlite", otlp=False)
    try:
        claude.script(Status(500, message=f"upstream broke for {KEY}"))
        with pytest.raises(GenerationError):
            _claude_pipeline(pipeline, claude.url, max_retries=0).answer("why do shock waves form?")
        _claude_pipeline(pipeline, claude.url).answer("what is a boundary layer?")
        tracing.flush()
    finally:
        tracing.disable_tracing()
    failed = store.traces(TraceFilter(status="error"))
    assert len(failed) == 1 and failed[0].error
    spans = {s.name: s for s in store.spans(failed[0].trace_id)}
    assert spans["generate"].status == "error"
    assert spans["generate"].attributes["error.type"] == "GenerationError"
    assert spans["generate"].events[0]["name"] == "exception"
    assert spans["retrieve"].status == "ok"
    assert tracing.trace_metrics(store).error_rate == 0.5
    assert KEY not in _everything_recorded(store.path)


# --- OTLP -------------------------------------------------------------------------------------


class OtlpReceiver:
    """A collector-compatible OTLP/HTTP receiver: POST /v1/traces, protobuf, decoded and kept."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, object]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                    ExportTraceServiceRequest,
                    ExportTraceServiceResponse,
                )

                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                message = ExportTraceServiceRequest()
                message.ParseFromString(body)
                receiver.requests.append((self.path, self.headers.get("Content-Type", ""), message))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def spans(self) -> list[tuple[dict, object]]:
        """(resource attributes, span) for every span received."""
        out = []
        for _, _, message in self.requests:
            for rs in message.resource_spans:
                resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                out += [(resource, span) for ss in rs.scope_spans for span in ss.spans]
        return out


def _attrs(span) -> dict:
    values = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        values[a.key] = getattr(a.value, kind) if kind != "array_value" else [
            getattr(v, v.WhichOneof("value")) for v in a.value.array_value.values
        ]
    return values


def test_spans_reach_an_otlp_endpoint_from_the_standard_variable(tmp_path, pipeline, cranfield, monkeypatch):
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "wb-test")
        store = tracing.enable_tracing(tmp_path / "runs.sqlite")
        try:
            response = pipeline.answer(cranfield.queries["3"] + f" api_key={KEY}")
            trace_id = tracing.last_trace_id()
            assert tracing.flush()
        finally:
            tracing.disable_tracing()
    assert receiver.requests and all(p == "/v1/traces" for p, _, _ in receiver.requests)
    assert all(ct == "application/x-protobuf" for _, ct, _ in receiver.requests)
    received = receiver.spans()
    assert {r["service.name"] for r, _ in received} == {"wb-test"}
    spans = {s.name: s for _, s in received}
    assert set(spans) == {"answer", "route", "retrieve", "generate"}
    assert {s.trace_id.hex() for s in spans.values()} == {trace_id}
    root = spans["answer"]
    assert all(spans[n].parent_span_id == root.span_id for n in ("route", "retrieve", "generate"))
    gen = _attrs(spans["generate"])
    assert gen["gen_ai.request.model"] == response.model
    assert gen["workbench.citations"] == list(response.answer.citations)
    assert KEY not in str(_attrs(root)) and tracing.REDACTED in _attrs(root)["workbench.query"]
    assert {s.name for s in store.spans(trace_id)} == set(spans)  # the local exporter got them too


def test_unsupported_otlp_protocol_is_refused_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ValueError, match="http/protobuf"):
        tracing.enable_tracing(tmp_path / "runs.sqlite")
    assert not tracing.tracing_enabled()


# --- store, metrics ---------------------------------------------------------------------------


def test_trace_tables_live_in_a_valid_run_store(store):
    from workbench.store import RunStore, StoreError

    with RunStore(store.path) as runs:
        assert len(runs) == 0
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    foreign = store.path.with_name("foreign.sqlite")
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE other (x)")
    with pytest.raises(StoreError, match="not a workbench run store"):
        TraceStore(foreign)


def _synthetic(store: TraceStore, n: int = 100) -> list[float]:
    """n traces of 1..n ms (alternating users), each with a retrieve span of half its time."""
    t0 = int(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc).timestamp() * 1e9)
    traces, spans, durations = [], [], []
    for i in range(1, n + 1):
        start, seconds = t0 + i * 1_000_000_000, i / 1000
        durations.append(seconds)
        tid, sid = f"{i:032x}", f"{i:016x}"
        traces.append({
            "trace_id": tid, "operation": "answer", "started_at": dt.datetime.fromtimestamp(start / 1e9, dt.timezone.utc).isoformat(),
            "start_ns": start, "duration_s": seconds, "status": "error" if i % 10 == 0 else "ok",
            "user_tag": "even" if i % 2 == 0 else "odd", "feature_tag": "chat", "query": f"q{i}",
            "cost_usd": 0.001 * i, "ttft_s": seconds / 4, "output_tokens_per_s": 100.0,
            "cited_doc_ids": json.dumps(["rel", "other"] if i <= 50 else ["rel"]), "citation_validity": 1.0,
        })
        for span_id, parent, name, length in ((sid, None, "answer", seconds), (f"{i + 1000:016x}", sid, "retrieve", seconds / 2)):
            spans.append({"span_id": span_id, "trace_id": tid, "parent_id": parent, "name": name, "start_ns": start,
                          "end_ns": start + int(length * 1e9), "status": "ok", "attributes": "{}"})
    store.write(spans, traces)
    return durations


def test_metrics_percentiles_costs_errors_and_citation_accuracy_by_hand(tmp_path):
    store = TraceStore(tmp_path / "runs.sqlite")
    durations = _synthetic(store)
    qrels = {f"q{i}": {"rel": 1, "other": 0} for i in range(1, 101)}
    m = tracing.trace_metrics(store, dataset=_tiny_dataset(qrels))
    request = next(s for s in m.latency if s.stage == "request")
    assert (request.p50_s, request.p95_s, request.p99_s) == pytest.approx((0.0505, 0.09505, 0.09901))
    assert request.p50_s == pytest.approx(float(np.percentile(durations, 50)))
    retrieve = next(s for s in m.latency if s.stage == "retrieve")
    assert retrieve.p95_s == pytest.approx(0.09505 / 2)
    ttft = next(s for s in m.latency if s.stage == "ttft")
    assert ttft.p50_s == pytest.approx(0.0505 / 4)
    assert m.n_requests == 100 and m.error_rate == pytest.approx(0.1)
    assert m.cost_per_request_usd == pytest.approx(0.0505) and m.total_cost_usd == pytest.approx(5.05)
    assert m.output_tokens_per_s == 100.0 and m.citation_validity == 1.0
    assert m.citation_accuracy == pytest.approx((50 * 0.5 + 50 * 1.0) / 100)
    assert tracing.trace_metrics(store).citation_accuracy is None  # unknown without judgements

    by_user = tracing.metrics_by_tag(store, "user").set_index("tag")
    assert list(by_user.index) == ["even", "odd"]
    assert by_user.loc["even", "n_requests"] == 50 and by_user.loc["even", "error_rate"] == pytest.approx(0.2)
    assert by_user.loc["odd", "error_rate"] == 0.0
    assert by_user.loc["odd", "request_p50_ms"] == pytest.approx(50.0)  # 1, 3, ..., 99 ms
    assert list(tracing.metrics_by_tag(store, "feature")["tag"]) == ["chat"]
    with pytest.raises(ValueError, match="feature"):
        tracing.metrics_by_tag(store, "team")

    over_time = tracing.percentiles_over_time(store, bucket="1min")
    request_rows = over_time[over_time["stage"] == "request"]
    assert request_rows["count"].tolist() == [59, 41]  # seconds 1..59, then 60..100
    assert request_rows["p50_ms"].iloc[0] == pytest.approx(30.0)

    since = dt.datetime(2025, 1, 1, 0, 1, tzinfo=dt.timezone.utc)
    assert len(store.traces(TraceFilter(since=since))) == 41
    assert len(store.traces(TraceFilter(users=("odd",), status="error"))) == 0
    assert [t.query for t in store.traces(TraceFilter(text="Q10"))] == ["q100", "q10"]
    with pytest.raises(ValueError, match="time zone"):
        store.traces(TraceFilter(since=dt.datetime(2025, 1, 1)))


def _tiny_dataset(qrels):
    from workbench.datasets import Dataset
    from workbench.types import Document

    return Dataset(
        name="judged",
        documents=(Document(id="rel", text="relevant"), Document(id="other", text="other")),
        queries={q: q for q in qrels},
        qrels=qrels,
    )


# --- feedback ---------------------------------------------------------------------------------


def test_feedback_becomes_a_dataset_the_runner_evaluates(store, pipeline, config, cranfield, tmp_path):
    ids = []
    for qid in QUERIES:
        pipeline.answer(cranfield.queries[qid])
        ids.append(tracing.last_trace_id())
    store.add_feedback(ids[0], thumbs_up=True, comment="spot on")
    store.add_feedback(ids[1], thumbs_up=False, comment="wrong paper")
    store.add_feedback(ids[1], thumbs_up=True)  # changed their mind: the latest counts
    store.add_feedback(ids[2], thumbs_up=False, comment="password=hunter2hunter2")
    with pytest.raises(KeyError, match="last_trace_id"):
        store.add_feedback("0" * 32, thumbs_up=True)
    assert [f.score for f in store.feedback(ids[1])] == [-1, 1]
    assert "hunter2hunter2" not in store.feedback(ids[2])[0].comment

    folder = tracing.export_feedback_dataset(store, tmp_path / "feedback")
    dataset = load_dataset(folder)
    assert set(dataset.queries) == set(ids)
    assert dataset.queries[ids[0]] == cranfield.queries["1"]
    assert sorted(dataset.evaluated_queries) == sorted(ids[:2])  # a thumbs down grades nothing relevant
    assert set(dataset.qrels[ids[2]].values()) == {0}
    for tid in ids[:2]:
        cited = set(store.trace(tid).cited_doc_ids)
        relevant = {d for d, g in dataset.qrels[tid].items() if g > 0}
        assert {dataset_doc.metadata["doc_id"] for dataset_doc in dataset.documents if dataset_doc.id in relevant} == cited
    doc = next(d for d in dataset.documents)
    source = next(d for d in cranfield.documents if d.id == doc.metadata["doc_id"])
    assert source.text[doc.metadata["start"]:doc.metadata["end"]] == doc.text

    result = run_experiment(config, dataset)
    assert {r.query_id for r in result.rows} == set(ids[:2])
    assert all(r.metrics["recall@100"] == 1.0 for r in result.rows)
    assert tracing.trace_metrics(store).positive_feedback_rate == pytest.approx(2 / 3)

    with pytest.raises(ValueError, match="add_feedback"):
        tracing.export_feedback_dataset(store, tmp_path / "none", TraceFilter(users=("nobody",)))


# --- the page ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_trace_page_lists_filters_and_shows_a_request(store, pipeline, cranfield, monkeypatch):
    from streamlit.testing.v1 import AppTest

    with tracing.tags(user="ada", feature="playground"):
        response = pipeline.answer(cranfield.queries["1"])
    with tracing.tags(user="bob", feature="search"):
        pipeline.answer(cranfield.queries["2"])
    trace_id = tracing.last_trace_id()
    tracing.flush()
    monkeypatch.setenv("WORKBENCH_STORE", str(store.path))

    app = AppTest.from_file(str(ROOT / "pages" / "1_Traces.py"), default_timeout=60).run()
    assert not app.exception
    assert len(app.dataframe[0].value) == 2
    app.multiselect(key="traces_users").set_value(["ada"]).run()
    assert not app.exception
    assert len(app.dataframe[0].value) == 1
    assert app.selectbox(key="traces_selected").value.startswith(store.traces(TraceFilter(users=("ada",)))[0].trace_id[:12])
    shown = " ".join(m.value for m in app.markdown) + " ".join(c.value for c in app.code)
    assert response.answer.text[:60] in shown
    assert len(app.get("plotly_chart")) >= 2  # the timeline and the percentiles over time

    app.multiselect(key="traces_users").set_value([]).run()
    app.selectbox(key="traces_selected").set_value(trace_id).run()
    app.button(key="traces_thumbs_down").click().run()
    assert not app.exception
    assert [f.score for f in store.feedback(trace_id)] == [-1]


@pytest.mark.parametrize(
    ("typed", "match"),
    [
        ("sqlite:///{tmp}/nowhere/runs.sqlite", r"no run store at .*nowhere/runs.sqlite' \(read from the URL .*its folder does not exist"),
        ("postgresql://host/db", r"uses 'postgresql'; only sqlite"),
        ("{tmp}/newdir/sub/x.sqlite", r"no run store at .*: its folder does not exist.*nothing was created"),
        ("{tmp}/missing.sqlite", r"no run store at .*: there is no such file"),
        ("{tmp}/a\0b.sqlite", r"holds a NUL character"),
        ("{tmp}", r"is a folder, not a run store file"),
        ("   ", r"no run store path given"),
        ("{tmp}/foreign.sqlite", r"not a workbench run store"),
        ("{tmp}/empty.sqlite", r"not a run store: .* is empty \(0 bytes"),
    ],
)
def test_opening_a_typed_in_store_creates_nothing_and_says_what_is_wrong(tmp_path, typed, match):
    from workbench.store import StoreError

    with sqlite3.connect(tmp_path / "foreign.sqlite") as conn:
        conn.execute("CREATE TABLE other (x)")
    (tmp_path / "empty.sqlite").write_bytes(b"")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(StoreError, match=match):
        TraceStore.open_existing(typed.format(tmp=tmp_path))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert not Path("sqlite:").exists()


def test_opening_an_existing_or_the_configured_store(tmp_path, monkeypatch):
    path = tmp_path / "runs.sqlite"
    TraceStore(path).close()
    assert TraceStore.open_existing(f"sqlite:///{path}").path == path
    configured = tmp_path / "configured" / "runs.sqlite"
    monkeypatch.setenv("WORKBENCH_STORE", str(configured))
    TraceStore.open_existing(str(configured)).close()  # the configured store is made on first use
    assert configured.exists()


@pytest.mark.slow
def test_trace_page_refuses_a_bad_store_path_in_place(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WORKBENCH_STORE", str(tmp_path / "runs.sqlite"))
    monkeypatch.chdir(tmp_path)
    app = AppTest.from_file(str(ROOT / "pages" / "1_Traces.py"), default_timeout=60).run()
    assert not app.exception
    for typed, shown in (("sqlite:///runs2.sqlite", "no run store at 'runs2.sqlite'"),
                         ("newdir/sub/x.sqlite", "its folder does not exist"),
                         ("bad\0path.sqlite", "NUL")):
        app.text_input(key="traces_store").set_value(typed).run()
        assert not app.exception, typed
        assert any(shown in e.value for e in app.error), (typed, [e.value for e in app.error])
    assert {p.name.removesuffix("-wal").removesuffix("-shm") for p in tmp_path.iterdir()} == {"runs.sqlite"}
