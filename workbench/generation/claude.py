"""Claude through the Anthropic Messages API: streaming, prompt caching, retries with backoff, fallbacks.

The prompt sends the static prefix (system instructions) first and marks it with
`cache_control`, then the retrieved passages, then history and the question. 429 (honouring
retry-after), 408/409, 5xx, 529, timeouts, broken and malformed streams are retried with
exponential backoff and jitter, then `fallback_models` are tried. The API key is read from the
environment or an argument, handed to the SDK only, and never logged, traced or written.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..config import GenerationConfig
from ..prices import ModelPrice, load_prices, price_of, usage_cost
from ..types import Answer, Hit, Usage
from .base import GenerationError, MissingAPIKeyError, Prompt, build_prompt, parse_citations

if TYPE_CHECKING:
    import anthropic

    from ..resources import Resources

__all__ = ["anthropic_client", "CallRecord", "AnthropicGenerator", "backoff_delay", "RETRY_SEPARATOR"]

log = logging.getLogger(__name__)

RETRY_SEPARATOR = "\n\n[retrying]\n\n"  # streamed when a retried answer diverges from text already sent


def anthropic_client(
    *, api_key: str | None = None, base_url: str | None = None, timeout: float = 60.0, max_retries: int = 0
) -> anthropic.Anthropic:
    """An `anthropic.Anthropic` client with an explicit key (so no profile file is consulted).

    Args:
        api_key: the key; default `$ANTHROPIC_API_KEY`.
        base_url: the endpoint; default `$ANTHROPIC_BASE_URL`, else the SDK's default.
        timeout: seconds to connect and between bytes of a response (a stalled stream).
        max_retries: the SDK's own retries (0: `AnthropicGenerator` retries itself).

    Raises:
        MissingAPIKeyError: no key anywhere (the message says how to set one).
        ImportError: the `anthropic` package is missing.
    """
    try:
        import anthropic
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("the anthropic SDK is missing; run `pip install -e .`") from exc
    key = api_key or os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        raise MissingAPIKeyError(
            "no Anthropic API key: set ANTHROPIC_API_KEY in the environment (export "
            "ANTHROPIC_API_KEY=...) to use Claude, or pick an offline generator with "
            "generation.kind = \"extractive\" or \"local\""
        )
    return anthropic.Anthropic(
        api_key=key, base_url=base_url or None, timeout=timeout, max_retries=max_retries
    )


@dataclass(frozen=True, kw_only=True)
class CallRecord:
    """One HTTP attempt: which model, how it ended, and the usage it reported (if any).

    `outcome` is "ok", "retry" (retried on the same model), "fallback" (the next model was
    tried) or "error" (gave up). A failed stream that had reported usage keeps it here, so
    the sum over records is everything the API reported, each attempt counted once.
    """

    model: str
    attempt: int
    outcome: str
    error: str | None
    usage: Usage | None


@dataclass
class _Attempt:
    """What one streaming attempt saw before it ended."""

    usage: Any = None  # the SDK's Usage, from message_start / message_delta
    text: str = ""
    first_token_at: float | None = None
    stopped: bool = False


class _Relay:
    """Passes text to `on_text` once: a retried stream resends only what was not yet sent."""

    def __init__(self, on_text: Callable[[str], None] | None) -> None:
        self.on_text = on_text
        self.sent = ""
        self.current = ""

    def restart(self) -> None:
        self.current = ""

    def feed(self, piece: str) -> None:
        self.current += piece
        if self.on_text is None:
            return
        if self.current.startswith(self.sent):
            new = self.current[len(self.sent) :]
        elif self.sent.startswith(self.current):
            new = ""  # still replaying what was already sent
        else:
            self.on_text(RETRY_SEPARATOR)
            self.sent, new = "", self.current
        if new:
            self.sent += new
            self.on_text(new)


class _CallbackError(Exception):
    """An exception raised by the caller's `on_text`; never retried."""


class _Malformed(Exception):
    """The response was not a well-formed message stream."""


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date), if present."""
    if not headers:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        if (value := headers.get("retry-after")) is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                from email.utils import parsedate_to_datetime

                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
    return None


def backoff_delay(attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with "equal jitter": uniform in [d/2, d], d = min(cap, base * 2**attempt)."""
    d = min(cap, base * 2**attempt)
    return d / 2 + rand() * d / 2


_RETRYABLE_STREAM_ERRORS = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})


def _classify(exc: BaseException) -> tuple[str, float | None, str]:
    """("retry" | "fallback" | "fatal", retry-after seconds, short reason) for a failed attempt."""
    import anthropic
    import httpx2

    if isinstance(exc, anthropic.APIStatusError):
        code = exc.status_code
        reason = f"HTTP {code} {type(exc).__name__}"
        if code < 400:  # an `error` event inside a 200 stream: judge by its error type
            body = exc.body if isinstance(exc.body, Mapping) else {}
            kind = (body.get("error") or {}).get("type", "") if isinstance(body.get("error"), Mapping) else ""
            if kind in _RETRYABLE_STREAM_ERRORS:
                return "retry", None, f"{kind} event in the stream"
            return "fatal", None, f"error event in the stream: {exc.message}"
        if code in (408, 409, 429) or code >= 500:
            return "retry", _retry_after(exc.response.headers if exc.response is not None else None), reason
        if code == 404:
            return "fallback", None, reason + " (model not found?)"
        if code in (401, 403):
            return "fatal", None, reason + ": the API key was refused; check ANTHROPIC_API_KEY"
        return "fatal", None, f"{reason}: {exc.message}"
    if isinstance(exc, (anthropic.APITimeoutError, httpx2.TimeoutException)):
        return "retry", None, f"timeout ({type(exc).__name__})"
    if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
        return "retry", None, f"connection failed ({type(exc).__name__})"
    if isinstance(exc, (_Malformed, json.JSONDecodeError, anthropic.APIResponseValidationError)):
        return "retry", None, f"malformed response ({type(exc).__name__}: {exc})"
    return "fatal", None, f"{type(exc).__name__}: {exc}"


class AnthropicGenerator:
    """Claude through the Messages API, streamed, with prompt caching, retries and fallbacks.

    `records` keeps every HTTP attempt with the usage it reported; `Answer.usage` is the
    answering attempt's usage plus the tokens and cost of every failed attempt of the same call
    that reported usage (a stream that stalled after `message_start` is billed), so the trace
    and the run's cost count each billed attempt once. `sleep` and `rand` are injectable for tests.
    """

    def __init__(
        self,
        config: GenerationConfig,
        *,
        model: str | None = None,
        api_key: str | None = None,
        prices: Mapping[str, ModelPrice] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        primary = model or config.model
        self.models = tuple(dict.fromkeys((primary, *config.fallback_models)))
        prices = load_prices() if prices is None else prices
        self.prices = {m: price_of(m, prices) for m in self.models}
        self._client = anthropic_client(
            api_key=api_key, base_url=config.base_url or None, timeout=config.timeout_s, max_retries=0
        )
        self._sleep = sleep
        self._rand = rand
        self._records: list[CallRecord] = []
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: GenerationConfig, resources: Resources) -> AnthropicGenerator:
        """`config.model` (then `fallback_models`), priced from `resources.prices`, with the key
        from `$ANTHROPIC_API_KEY`."""
        return cls(config, prices=resources.prices)

    def __repr__(self) -> str:
        return f"AnthropicGenerator(models={self.models!r})"

    @property
    def records(self) -> tuple[CallRecord, ...]:
        """Every attempt so far, in order."""
        with self._lock:
            return tuple(self._records)

    def spent_usd(self) -> float:
        """Cost of every attempt that reported usage, failed ones included."""
        return sum(r.usage.cost_usd for r in self.records if r.usage is not None)

    def generate(
        self,
        query: str,
        context: Sequence[Hit],
        *,
        on_text: Callable[[str], None] | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> Answer:
        """Answer `query` from `context`, streaming text to `on_text`.

        Raises:
            GenerationError: the request is invalid or every model failed (the message lists
                each attempt's reason).
        """
        prompt = build_prompt(
            query, context, history=history, instructions=self.config.system_prompt,
            caching=self.config.prompt_caching, cache_ttl=self.config.cache_ttl,
        )
        text, usage = self.complete(prompt, on_text=on_text)
        return Answer(text=text, citations=parse_citations(text, context), usage=usage, prompt=prompt)

    def count_input_tokens(
        self, query: str, context: Sequence[Hit], *, history: Sequence[tuple[str, str]] = ()
    ) -> int:
        """The API's count of the input tokens `generate` would send (before any caching)."""
        prompt = build_prompt(query, context, history=history, instructions=self.config.system_prompt,
                              caching=False)
        result = self._client.messages.count_tokens(
            model=self.models[0], system=list(prompt.system), messages=list(prompt.messages)
        )
        return int(result.input_tokens)

    def complete(
        self, prompt: Prompt, *, on_text: Callable[[str], None] | None = None
    ) -> tuple[str, Usage]:
        """Run `prompt` with retries and fallbacks; the text and the usage of every billed attempt.

        Raises:
            GenerationError: as for `generate`.
        """
        started = time.perf_counter()
        relay = _Relay(on_text)
        reasons: list[str] = []
        billed: list[Usage] = []  # failed attempts of this call that reported usage
        for m_index, model in enumerate(self.models):
            for attempt in range(self.config.max_retries + 1):
                relay.restart()
                state = _Attempt()
                try:
                    self._stream(model, prompt, state, relay)
                except _CallbackError as exc:
                    self._record(model, attempt, "error", f"on_text raised {exc.__cause__!r}", state)
                    raise exc.__cause__ from None  # type: ignore[misc]
                except Exception as exc:  # classified below; unknown kinds are fatal
                    verdict, wait, reason = _classify(exc)
                    last_try = attempt == self.config.max_retries
                    if verdict == "retry" and wait is not None and wait > self.config.backoff_max_s:
                        verdict, reason = "fallback", (
                            f"{reason}; not retried: the server asked to wait {wait:.0f} s (retry-after), "
                            f"more than generation.backoff_max_s = {self.config.backoff_max_s:g} s"
                        )
                    reasons.append(f"{model} attempt {attempt + 1}: {reason}")
                    has_next = m_index + 1 < len(self.models)
                    if verdict == "fatal" or ((verdict == "fallback" or last_try) and not has_next):
                        self._record(model, attempt, "error", reason, state)
                        raise GenerationError("Claude call failed: " + "; ".join(reasons)) from exc
                    if verdict == "fallback" or last_try:
                        billed += self._record(model, attempt, "fallback", reason, state)
                        log.warning("generation: %s failed (%s); falling back to %s",
                                    model, reason, self.models[m_index + 1])
                        break
                    billed += self._record(model, attempt, "retry", reason, state)
                    delay = wait if wait is not None else backoff_delay(
                        attempt, base=self.config.backoff_base_s, cap=self.config.backoff_max_s, rand=self._rand
                    )
                    log.info("generation: %s (%s); retrying in %.2fs", model, reason, delay)
                    self._sleep(delay)
                    continue
                usage = self._usage(model, state, started)
                with self._lock:
                    self._records.append(CallRecord(model=model, attempt=attempt, outcome="ok", error=None,
                                                    usage=usage))
                return state.text, _with_failed_attempts(usage, billed)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _stream(self, model: str, prompt: Prompt, state: _Attempt, relay: _Relay) -> None:
        # No temperature: the Messages API of SDK 2.x takes none (it applies to the local model).
        with self._client.messages.stream(
            model=model, max_tokens=self.config.max_tokens, system=list(prompt.system),
            messages=list(prompt.messages),
        ) as stream:
            for event in stream:
                if event.type == "message_start":
                    state.usage = event.message.usage.model_copy()
                elif event.type == "message_delta" and state.usage is not None:
                    for name in ("output_tokens", "input_tokens", "cache_creation_input_tokens",
                                 "cache_read_input_tokens"):
                        value = getattr(event.usage, name, None)
                        if value is not None:
                            setattr(state.usage, name, value)
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    if state.first_token_at is None:
                        state.first_token_at = time.perf_counter()
                    state.text += event.delta.text
                    try:
                        relay.feed(event.delta.text)
                    except Exception as exc:
                        raise _CallbackError() from exc
                elif event.type == "message_stop":
                    state.stopped = True
        if state.usage is None or not state.stopped:
            raise _Malformed("the stream ended before message_stop")

    def _to_usage(self, model: str, raw: Any, **timing: Any) -> Usage:
        usage = Usage(
            model=model,
            input_tokens=int(raw.input_tokens or 0),
            output_tokens=int(raw.output_tokens or 0),
            cache_write_tokens=int(raw.cache_creation_input_tokens or 0),
            cache_read_tokens=int(raw.cache_read_input_tokens or 0),
            counted=True,
            **timing,
        )
        return replace(usage, cost_usd=usage_cost(usage, self.prices[model], cache_ttl=self.config.cache_ttl))

    def _usage(self, model: str, state: _Attempt, started: float) -> Usage:
        end = time.perf_counter()
        ttft = None if state.first_token_at is None else state.first_token_at - started
        rate = None
        if state.first_token_at is not None and end > state.first_token_at:
            rate = state.usage.output_tokens / (end - state.first_token_at)
        return self._to_usage(model, state.usage, latency_s=end - started, time_to_first_token_s=ttft,
                              output_tokens_per_s=rate)

    def _record(self, model: str, attempt: int, outcome: str, reason: str, state: _Attempt) -> list[Usage]:
        """Keep a failed attempt; its usage (a one-item list) when the API reported one."""
        usage = None if state.usage is None else self._to_usage(model, state.usage)
        with self._lock:
            self._records.append(CallRecord(model=model, attempt=attempt, outcome=outcome, error=reason,
                                            usage=usage))
        return [] if usage is None else [usage]


def _with_failed_attempts(answering: Usage, failed: Sequence[Usage]) -> Usage:
    """`answering` with the tokens and cost of `failed` attempts added (model and timings its own)."""
    if not failed:
        return answering
    return replace(
        answering,
        input_tokens=answering.input_tokens + sum(u.input_tokens for u in failed),
        output_tokens=answering.output_tokens + sum(u.output_tokens for u in failed),
        cache_write_tokens=answering.cache_write_tokens + sum(u.cache_write_tokens for u in failed),
        cache_read_tokens=answering.cache_read_tokens + sum(u.cache_read_tokens for u in failed),
        cost_usd=answering.cost_usd + sum(u.cost_usd for u in failed),
    )
