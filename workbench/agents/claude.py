"""Claude as an agent model: native `tool_use` / `tool_result` blocks, parallel calls, the static prefix cached.

The tool definitions and the system prompt come first in every request and are marked with
`cache_control` (the guide's advice: in a loop they are resent on every turn, so from the second
turn on they are read from the cache). Replies stream, so time to first token is measured per
call. Faults are retried as `generation.claude` retries them (429 honouring retry-after, 5xx,
529, timeouts, broken streams), with the same backoff; after the last attempt `respond` raises
`AgentModelError` and the runner fails that task only.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ..prices import load_prices, price_of, usage_cost
from ..generation.claude import _classify, anthropic_client, backoff_delay
from ..types import Usage
from .models import AgentModelError, ModelRequest, ModelTurn
from .tools import ToolCall, tool_specs

__all__ = ["ClaudeAgentModel", "request_body"]

log = logging.getLogger(__name__)

_CACHE = {"type": "ephemeral"}


def request_body(model: str, request: ModelRequest, *, max_tokens: int, caching: bool = True) -> dict[str, Any]:
    """The Messages API request for `request`: tools, then system, then messages; the prefix marked for caching."""
    tools = tool_specs(request.tools)
    system: list[dict[str, Any]] = [{"type": "text", "text": request.system}]
    if caching:
        system[-1]["cache_control"] = _CACHE  # caches tools + system: tools come first in the cache order
        if tools:
            tools[-1]["cache_control"] = _CACHE
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "system": system,
                            "messages": [dict(m) for m in request.messages]}
    if tools:
        body["tools"] = tools
    if request.purpose in ("plan", "replan") and tools:
        body["tool_choice"] = {"type": "tool", "name": tools[0]["name"]}
    return body


class ClaudeAgentModel:
    """A Claude model answering the agent graph's nodes.

    Args:
        model: the model id (priced from the price table).
        api_key: default `$ANTHROPIC_API_KEY`.
        base_url: the endpoint (tests point it at the local Messages server).
        max_tokens: output tokens per turn.
        max_retries: retries per turn after the first attempt.
        caching: mark the static prefix with `cache_control`.
        sleep, rand: injectable for tests.
    """

    def __init__(self, model: str, *, api_key: str | None = None, base_url: str | None = None, max_tokens: int = 1024,
                 max_retries: int = 3, backoff_base_s: float = 0.5, backoff_max_s: float = 8.0, timeout_s: float = 60.0,
                 caching: bool = True, prices: Mapping[str, Any] | None = None,
                 sleep: Callable[[float], None] = time.sleep, rand: Callable[[], float] = random.random) -> None:
        self.model = model
        self.price = price_of(model, load_prices() if prices is None else prices)
        self.max_tokens = max_tokens
        self.max_retries = max_retries
        self.backoff = (backoff_base_s, backoff_max_s)
        self.caching = caching
        self._client = anthropic_client(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0)
        self._sleep = sleep
        self._rand = rand

    def respond(self, request: ModelRequest) -> ModelTurn:
        """One turn, retried on transient faults.

        Raises:
            AgentModelError: every attempt failed, or the request was refused (the message lists why).
        """
        body = request_body(self.model, request, max_tokens=self.max_tokens, caching=self.caching)
        reasons = []
        for attempt in range(self.max_retries + 1):
            started = time.perf_counter()
            try:
                return self._once(body, started)
            except Exception as exc:
                verdict, wait, reason = _classify(exc)
                reasons.append(f"attempt {attempt + 1}: {reason}")
                if verdict != "retry" or attempt == self.max_retries:
                    raise AgentModelError(f"Claude ({self.model}) failed: " + "; ".join(reasons)) from exc
                delay = wait if wait is not None else backoff_delay(attempt, base=self.backoff[0], cap=self.backoff[1],
                                                                    rand=self._rand)
                log.info("agent model %s: %s; retrying in %.2fs", self.model, reason, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, body: dict[str, Any], started: float) -> ModelTurn:
        first = None
        with self._client.messages.stream(**body) as stream:
            for event in stream:
                if first is None and event.type == "content_block_delta":
                    first = time.perf_counter()
            message = stream.get_final_message()
        end = time.perf_counter()
        text = "".join(b.text for b in message.content if b.type == "text")
        calls = tuple(ToolCall(id=b.id, name=b.name, arguments=dict(b.input or {}))
                      for b in message.content if b.type == "tool_use")
        raw = message.usage
        usage = Usage(model=self.model, input_tokens=int(raw.input_tokens or 0), output_tokens=int(raw.output_tokens or 0),
                      cache_write_tokens=int(raw.cache_creation_input_tokens or 0),
                      cache_read_tokens=int(raw.cache_read_input_tokens or 0), latency_s=end - started,
                      time_to_first_token_s=None if first is None else first - started, counted=True)
        usage = replace(usage, cost_usd=usage_cost(usage, self.price))
        return ModelTurn(text=text, calls=calls, usage=usage)

