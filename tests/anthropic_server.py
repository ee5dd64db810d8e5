"""A real local HTTP server that speaks enough of the Anthropic Messages API for tests.

It answers `POST /v1/messages` (JSON, or server-sent events when `stream` is true),
`POST /v1/messages/count_tokens` and the Message Batches endpoints (create, retrieve, results,
cancel: a batch ends after `batch_polls` retrieves; `fail_in_batch` scripts per-request
errored / expired / canceled results), simulates prompt caching from `cache_control` marks, and
records every request. A queue of scripted steps replaces the next replies with faults::

    with AnthropicServer(api_key="sk-test") as server:
        server.script(Status(429, headers={"retry-after": "1"}), Status(529), Stall(deltas=2))
        client = anthropic.Anthropic(api_key="sk-test", base_url=server.url)
        ...
        assert [r.outcome for r in server.requests] == ["429", "529", "stall", "ok"]

Tokens are whitespace-separated words of the request's text, so tests can compute the
expected usage by hand; `tokens(text)` is that count.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "AnthropicServer", "Reply", "Status", "Stall", "StreamError", "Malformed", "Recorded", "tokens", "ERROR_TYPES",
]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def tokens(text: str) -> int:
    """The server's token count of a text: its whitespace-separated words."""
    return len(text.split())


@dataclass(frozen=True, kw_only=True)
class Reply:
    """A successful reply. Usage fields left as None are computed from the request."""

    text: str = "The answer is in the context."
    output_tokens: int | None = None
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    piece_chars: int = 8  # characters per streamed text delta
    delay_s: float = 0.0  # pause before each delta
    # tool_use blocks after the text, each {"name": ..., "input": {...}} (an "id" is made when absent);
    # with any, stop_reason is "tool_use" and streamed inputs arrive as input_json_delta pieces
    tool_calls: tuple[Mapping[str, Any], ...] = ()

    def content(self, message_id: str) -> list[dict[str, Any]]:
        """The reply's content blocks: the text (when any), then one tool_use block per call."""
        blocks: list[dict[str, Any]] = [{"type": "text", "text": self.text}] if self.text or not self.tool_calls else []
        return blocks + [
            {"type": "tool_use", "id": call.get("id", f"toolu_{message_id}_{n}"), "name": call["name"],
             "input": dict(call["input"])}
            for n, call in enumerate(self.tool_calls)
        ]

    @property
    def stop_reason(self) -> str:
        return "tool_use" if self.tool_calls else "end_turn"


@dataclass(frozen=True, kw_only=True)
class _Step:
    pass


@dataclass(frozen=True)
class Status(_Step):
    """An HTTP error reply with Anthropic's error body, e.g. Status(429, headers={"retry-after": "1"})."""

    code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    message: str = "scripted error"


@dataclass(frozen=True, kw_only=True)
class Stall(_Step):
    """A stream that sends message_start and `deltas` text deltas, then goes silent."""

    deltas: int = 1
    seconds: float = 30.0


@dataclass(frozen=True, kw_only=True)
class StreamError(_Step):
    """A stream that sends message_start and `deltas` text deltas, then an `error` event."""

    deltas: int = 1
    kind: str = "overloaded_error"


@dataclass(frozen=True, kw_only=True)
class Malformed(_Step):
    """A 200 reply whose body is not what the API sends (by default an SSE event with broken JSON)."""

    body: bytes = b'event: message_start\ndata: {"type": "message_start", "message": {\n\n'
    content_type: str = "text/event-stream"


@dataclass(frozen=True, kw_only=True)
class Recorded:
    """One request the server received and what it did with it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    outcome: str  # "ok", "count", a status code ("429"), "stall", "malformed" or "error:<type>"
    usage: Mapping[str, int] | None = None  # the usage the reply carried, if any


class AnthropicServer:
    """The server; use it as a context manager (or `start()` / `stop()`).

    Args:
        api_key: when set, requests carrying neither `x-api-key: KEY` nor `authorization: Bearer KEY`
            get a 401.
        responder: maps a request body to the `Reply` (or reply text) of a successful call.
        min_cache_tokens: a `cache_control` prefix shorter than this is not cached (the API's
            per-model minimum; 0 caches any prefix).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        responder: Callable[[dict[str, Any]], Reply | str] | None = None,
        min_cache_tokens: int = 0,
    ) -> None:
        self.api_key = api_key
        self._default_responder = responder or (lambda body: Reply())
        self.responder = self._default_responder
        self.min_cache_tokens = min_cache_tokens
        self._requests: list[Recorded] = []
        self._active = 0  # requests being handled (a stalled stream counts as handled)
        self._steps: deque[_Step] = deque()
        self._cache: set[str] = set()
        self.batch_polls = 1  # retrieves of an in-progress batch before it ends
        self._batches: dict[str, dict[str, Any]] = {}
        self._batch_faults: dict[str, str] = {}
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- control ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give the SDK (`base_url=`)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running; use it as a context manager or call start()")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> AnthropicServer:
        """Start serving on a free port of 127.0.0.1 in a background thread."""
        server = self

        class Handler(_Handler):
            owner = server

        self._stopping.clear()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release stalled streams."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> AnthropicServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *steps: _Step) -> None:
        """Queue faults: each replaces the reply to one coming `/v1/messages` request, in order."""
        with self._lock:
            self._steps.extend(steps)

    def reset(self) -> None:
        """Forget recorded requests, queued steps and the prompt cache; restore the responder.

        Waits (up to 10 s) for requests still being answered first, so an earlier test's last
        request, recorded late, cannot appear among the next test's requests.
        """
        with self._lock:
            self._lock.wait_for(lambda: self._active == 0, timeout=10)
            self.responder = self._default_responder
            self._requests.clear()
            self._steps.clear()
            self._cache.clear()
            self._batches.clear()
            self._batch_faults.clear()
            self.batch_polls = 1

    @property
    def requests(self) -> list[Recorded]:
        """The requests received so far, in order.

        Waits (up to 10 s) for requests still being answered, so a test that reads this right
        after its client returned sees that request, however the threads were scheduled.
        """
        with self._lock:
            self._lock.wait_for(lambda: self._active == 0, timeout=10)
            return list(self._requests)

    def fail_in_batch(self, **outcomes: str) -> None:
        """Script the next batch result of custom ids: "errored", "expired" or "canceled" (e.g. q2="errored");
        each is used once, so a resubmitted request succeeds."""
        bad = {k: v for k, v in outcomes.items() if v not in ("errored", "expired", "canceled")}
        if bad:
            raise ValueError(f"unknown batch outcomes {bad}; use errored, expired or canceled")
        with self._lock:
            self._batch_faults.update(outcomes)

    @property
    def batches(self) -> dict[str, dict[str, Any]]:
        """The batches created so far by id (their JSON, and `requests` as received)."""
        with self._lock:
            return {k: dict(v) for k, v in self._batches.items()}

    @property
    def pending(self) -> int:
        """Scripted steps not yet used."""
        with self._lock:
            return len(self._steps)

    # --- behaviour -------------------------------------------------------------------------

    def _begin(self) -> None:
        with self._lock:
            self._active += 1

    def _end(self) -> None:
        with self._lock:
            self._active -= 1
            self._lock.notify_all()

    def _next_step(self) -> _Step | None:
        with self._lock:
            return self._steps.popleft() if self._steps else None

    def _record(self, handler: _Handler, body: Any, outcome: str, usage: Mapping[str, int] | None = None) -> None:
        with self._lock:
            self._requests.append(
                Recorded(method=handler.command, path=handler.path, headers=dict(handler.headers.items()),
                         body=body, outcome=outcome, usage=usage)
            )
        if outcome == "stall":  # the stream now idles; it is answered as far as tests can see
            handler.counted = False
            self._end()

    def usage_for(self, body: Mapping[str, Any], reply: Reply) -> dict[str, int]:
        """The usage of a reply to `body`, simulating the prompt cache (which it updates)."""
        blocks = _blocks(body)
        total = sum(tokens(text) for text, _ in blocks)
        marks = [i for i, (_, marked) in enumerate(blocks) if marked]
        write = read = 0
        if marks:
            prefix_tokens = sum(tokens(text) for text, _ in blocks[: marks[-1] + 1])
            if prefix_tokens >= self.min_cache_tokens:
                # as the API: the longest prefix cached by an earlier request (it looks back from the last
                # mark) is read, the rest up to the last mark is written, and every marked prefix is cached
                texts = [text for text, _ in blocks]  # the content counts, not where the marks sit
                key = lambda end: hashlib.sha256(json.dumps([body.get("model"), texts[:end]]).encode()).hexdigest()  # noqa: E731
                with self._lock:
                    hit = next((end for end in range(marks[-1] + 1, 0, -1) if key(end) in self._cache), 0)
                    read = sum(tokens(text) for text in texts[:hit])
                    write = prefix_tokens - read
                    self._cache.update(key(m + 1) for m in marks)
        usage = {
            "input_tokens": total - write - read,
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
            "output_tokens": tokens(reply.text) + sum(tokens(json.dumps(c["input"])) for c in reply.tool_calls),
        }
        for name in usage:
            if getattr(reply, name) is not None:
                usage[name] = getattr(reply, name)
        return usage


def _iso(seconds: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _text_of(content: Any) -> list[tuple[str, bool]]:
    if isinstance(content, str):
        return [(content, False)]
    return [(_block_text(block), "cache_control" in block) for block in content]


def _block_text(block: Mapping[str, Any]) -> str:
    """The text a content block counts as: a tool call's input JSON, a tool result's content."""
    if block.get("type") == "tool_use":
        return json.dumps(block.get("input", {}))
    if block.get("type") == "tool_result":
        inner = block.get("content", "")
        return inner if isinstance(inner, str) else " ".join(_block_text(b) for b in inner)
    return block.get("text", "")


def _blocks(body: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """The request's text blocks in cache order (tools, system, messages), each with its mark."""
    blocks = [(json.dumps(tool), "cache_control" in tool) for tool in body.get("tools", [])]
    if "system" in body:
        blocks += _text_of(body["system"])
    for message in body.get("messages", []):
        blocks += _text_of(message["content"])
    return blocks


class _Handler(BaseHTTPRequestHandler):
    owner: AnthropicServer
    counted: bool  # whether this request still counts as being answered
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Many small writes (SSE events): without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms stalls.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.owner._begin()
        self.counted = True
        try:
            self._post()
        finally:
            if self.counted:
                self.owner._end()

    def _post(self) -> None:
        owner = self.owner
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._error(400, "body is not JSON")
            owner._record(self, raw.decode(errors="replace"), "400")
            return
        if owner.api_key is not None and owner.api_key not in (
            self.headers.get("x-api-key"), self.headers.get("authorization", "").removeprefix("Bearer ")
        ):
            self._error(401, "invalid API key")
            owner._record(self, body, "401")
            return
        path = self.path.split("?")[0]
        if path == "/v1/messages/count_tokens":
            count = sum(tokens(text) for text, _ in _blocks(body))
            self._json(200, {"input_tokens": count})
            owner._record(self, body, "count")
        elif path == "/v1/messages":
            self._messages(body)
        elif path.startswith("/v1/messages/batches"):
            self._batch_post(path, body)
        else:
            self._error(404, f"no route {path}")
            owner._record(self, body, "404")

    def _messages(self, body: dict[str, Any]) -> None:
        owner = self.owner
        step = owner._next_step()
        if isinstance(step, Status):
            self._error(step.code, step.message, step.headers)
            owner._record(self, body, str(step.code))
            return
        if isinstance(step, Malformed):
            self.send_response(200)
            self.send_header("content-type", step.content_type)
            self.send_header("content-length", str(len(step.body)))
            self.end_headers()
            self.wfile.write(step.body)
            owner._record(self, body, "malformed")
            return
        made = owner.responder(body)
        reply = Reply(text=made) if isinstance(made, str) else made
        usage = owner.usage_for(body, reply)
        message = {
            "id": f"msg_{len(owner._requests):04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        if not body.get("stream"):
            message.update(content=reply.content(message["id"]), stop_reason=reply.stop_reason, usage=usage)
            self._json(200, message)
            owner._record(self, body, "ok", usage)
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", message["id"])
        self.end_headers()
        pieces = [reply.text[i : i + reply.piece_chars] for i in range(0, len(reply.text), reply.piece_chars)]
        try:
            self._event("message_start", {"type": "message_start", "message": message})
            self._event("content_block_start",
                        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
            self._event("ping", {"type": "ping"})
            for n in range(len(pieces) + 1):
                if isinstance(step, Stall) and n >= min(step.deltas, len(pieces)):
                    owner._record(self, body, "stall", {**usage, "output_tokens": 1})
                    owner._stopping.wait(step.seconds)
                    self.close_connection = True
                    return
                if isinstance(step, StreamError) and n >= min(step.deltas, len(pieces)):
                    self._event("error", {"type": "error", "error": {"type": step.kind, "message": "scripted"}})
                    self._chunk(b"")
                    owner._record(self, body, f"error:{step.kind}", {**usage, "output_tokens": 1})
                    return
                if n == len(pieces):
                    break
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                self._event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                    "delta": {"type": "text_delta", "text": pieces[n]}})
            self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
            self._tool_blocks(reply, message["id"])
            self._event("message_delta", {"type": "message_delta",
                                          "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                                          "usage": {"output_tokens": usage["output_tokens"]}})
            self._event("message_stop", {"type": "message_stop"})
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            owner._record(self, body, "disconnected", {**usage, "output_tokens": 1})
            return
        owner._record(self, body, "ok", usage)

    def _tool_blocks(self, reply: Reply, message_id: str) -> None:
        """Stream the reply's tool_use blocks (indexes after the text block), inputs in JSON pieces."""
        for index, block in enumerate((b for b in reply.content(message_id) if b["type"] == "tool_use"), 1):
            start = {**block, "input": {}}
            self._event("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
            raw = json.dumps(block["input"])
            for i in range(0, len(raw), reply.piece_chars):
                self._event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                    "type": "input_json_delta", "partial_json": raw[i : i + reply.piece_chars]}})
            self._event("content_block_stop", {"type": "content_block_stop", "index": index})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.owner._begin()
        self.counted = True
        try:
            self._batch_get(self.path.split("?")[0])
        finally:
            if self.counted:
                self.owner._end()

    # --- Message Batches ---------------------------------------------------------------------

    def _batch_post(self, path: str, body: dict[str, Any]) -> None:
        owner = self.owner
        if path == "/v1/messages/batches":
            requests = body.get("requests")
            ids = [r.get("custom_id") for r in requests or []]
            if not requests or len(set(ids)) != len(ids):
                self._error(400, "requests must be a non-empty list with unique custom_id values")
                owner._record(self, body, "400")
                return
            now = time.time()
            with owner._lock:
                batch_id = f"msgbatch_{len(owner._batches) + 1:04d}"
                owner._batches[batch_id] = {
                    "id": batch_id, "type": "message_batch", "processing_status": "in_progress",
                    "created_at": _iso(now), "expires_at": _iso(now + 86400), "ended_at": None,
                    "cancel_initiated_at": None, "archived_at": None, "results_url": None,
                    "request_counts": {"processing": len(requests), "succeeded": 0, "errored": 0,
                                       "canceled": 0, "expired": 0},
                    "requests": requests, "polls": 0, "results": None,
                }
            self._json(200, self._batch_json(batch_id))
            owner._record(self, body, "batch-created")
            return
        batch_id, _, action = path.removeprefix("/v1/messages/batches/").partition("/")
        if action == "cancel" and batch_id in owner._batches:
            with owner._lock:
                owner._batches[batch_id]["cancel"] = True
                owner._batches[batch_id]["processing_status"] = "canceling"
            self._json(200, self._batch_json(batch_id))
            owner._record(self, body, "batch-cancel")
            return
        self._error(404, f"no batch route {path}")
        owner._record(self, body, "404")

    def _batch_get(self, path: str) -> None:
        owner = self.owner
        batch_id, _, action = path.removeprefix("/v1/messages/batches/").partition("/")
        if not path.startswith("/v1/messages/batches/") or batch_id not in owner._batches:
            self._error(404, f"no batch at {path}")
            owner._record(self, None, "404")
            return
        batch = owner._batches[batch_id]
        if action == "results":
            if batch["results"] is None:
                self._error(400, "the batch has not ended")
                owner._record(self, None, "400")
                return
            data = "".join(json.dumps(line) + "\n" for line in batch["results"]).encode()
            self.send_response(200)
            self.send_header("content-type", "application/binary")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            owner._record(self, None, "batch-results")
            return
        with owner._lock:
            batch["polls"] += 1
            ready = batch["results"] is None and (batch["polls"] >= owner.batch_polls or batch.get("cancel"))
        if ready:
            self._end_batch(batch)
        self._json(200, self._batch_json(batch_id))
        owner._record(self, None, "batch-retrieve")

    def _end_batch(self, batch: dict[str, Any]) -> None:
        """Answer every request of the batch (or fail it as scripted) and mark the batch ended."""
        owner = self.owner
        results, counts = [], {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for request in batch["requests"]:
            custom_id, params = request["custom_id"], request["params"]
            with owner._lock:
                fault = owner._batch_faults.pop(custom_id, None) or ("canceled" if batch.get("cancel") else None)
            if fault == "errored":
                result: dict[str, Any] = {"type": "errored", "error": {"type": "error", "error": {
                    "type": "overloaded_error", "message": "scripted batch error"}}}
            elif fault in ("expired", "canceled"):
                result = {"type": fault}
            else:
                made = owner.responder(params)
                reply = Reply(text=made) if isinstance(made, str) else made
                usage = owner.usage_for(params, reply)
                result = {"type": "succeeded", "message": {
                    "id": f"msg_{custom_id}", "type": "message", "role": "assistant", "model": params.get("model", ""),
                    "content": [{"type": "text", "text": reply.text}], "stop_reason": "end_turn",
                    "stop_sequence": None, "usage": usage}}
            counts[result["type"]] += 1
            results.append({"custom_id": custom_id, "result": result})
        with owner._lock:
            batch.update(results=results, request_counts=counts, processing_status="ended", ended_at=_iso(time.time()),
                         results_url=f"{owner.url}/v1/messages/batches/{batch['id']}/results")

    def _batch_json(self, batch_id: str) -> dict[str, Any]:
        batch = self.owner._batches[batch_id]
        return {k: v for k, v in batch.items() if k not in ("requests", "polls", "results", "cancel")}

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, name: str, data: Mapping[str, Any]) -> None:
        self._chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

    def _json(self, code: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_test")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        kind = ERROR_TYPES.get(code, "api_error")
        self._json(code, {"type": "error", "error": {"type": kind, "message": message}}, headers)
