"""The Message Batches API: many Messages requests in one asynchronous, discounted batch.

`run_batch` creates a batch (`client.messages.batches.create`), polls it with exponential
backoff until it ends, reads its results and maps them back by `custom_id`. Each result is
"succeeded", "errored", "canceled", "expired" or (a request the results never mention)
"missing"; `retry_rounds` resubmits the failed ones in a new batch. Costs come from each
result's real `usage` at the batch price. With a `ledger` (`workbench.store.ledger.BatchLedger`,
the run store's `message_batches` table) the batch id is kept under a caller's key before the first poll, so a process that
restarts while the batch is in flight resumes polling that batch instead of paying for a new one.

`answer_requests` and `answers_from` turn (query, context) pairs into batch requests built
like `AnthropicGenerator`'s prompts, and results back into `Answer`s with citations.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .config import GenerationConfig
from .generation.base import Prompt, build_prompt, parse_citations
from .prices import ModelPrice, load_prices, price_of, usage_cost
from .types import Answer, Hit, Usage

if TYPE_CHECKING:
    import anthropic

__all__ = [
    "BatchError",
    "BatchRequest",
    "BatchResult",
    "BatchRun",
    "Ledger",
    "PollPolicy",
    "run_batch",
    "answer_requests",
    "answers_from",
]

Status = Literal["succeeded", "errored", "canceled", "expired", "missing"]
_CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BatchError(RuntimeError):
    """A batch could not be created or did not end in time; `batch_id` (if any) can be resumed."""

    def __init__(self, message: str, batch_id: str | None = None) -> None:
        super().__init__(message)
        self.batch_id = batch_id


@dataclass(frozen=True, kw_only=True)
class BatchRequest:
    """One Messages request of a batch, named by `custom_id` (1-64 letters, digits, _ or -)."""

    custom_id: str
    model: str
    prompt: Prompt
    max_tokens: int

    def params(self) -> dict[str, Any]:
        """The request's Messages API parameters."""
        return {"model": self.model, "max_tokens": self.max_tokens, "system": list(self.prompt.system),
                "messages": list(self.prompt.messages)}


@dataclass(frozen=True, kw_only=True)
class BatchResult:
    """How one request of a batch ended: its text and usage (priced at the batch rate) when it succeeded."""

    custom_id: str
    status: Status
    text: str = ""
    usage: Usage | None = None
    error: str = ""
    batch_id: str = ""


@dataclass(frozen=True, kw_only=True)
class BatchRun:
    """Every request's result by custom id, the batches it took, and how long it ran."""

    results: Mapping[str, BatchResult]
    batch_ids: tuple[str, ...]
    resumed: bool  # the first batch was found in the ledger, not created
    polls: int
    wall_s: float

    @property
    def failed(self) -> list[str]:
        """Custom ids that did not succeed, in request order."""
        return [k for k, r in self.results.items() if r.status != "succeeded"]

    @property
    def cost_usd(self) -> float:
        """What the succeeded requests cost at the batch price (failed ones are not billed)."""
        return sum(r.usage.cost_usd for r in self.results.values() if r.usage is not None)


@dataclass(frozen=True, kw_only=True)
class PollPolicy:
    """Retrieve an in-progress batch after `base_s`, doubling up to `cap_s`; give up after `timeout_s`."""

    base_s: float = 5.0
    cap_s: float = 300.0
    timeout_s: float = 26 * 3600.0  # a batch expires 24 h after creation

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"PollPolicy base_s={self.base_s} must be > 0 and <= cap_s={self.cap_s}")
        if self.timeout_s <= 0:
            raise ValueError(f"PollPolicy timeout_s={self.timeout_s} must be positive")


class Ledger(Protocol):
    """Where in-flight batch ids are kept by job key (the run store's: `workbench.store.ledger.BatchLedger`)."""

    def recall(self, key: str) -> str | None: ...

    def remember(self, key: str, batch_id: str, n_requests: int) -> None: ...

    def finish(self, key: str) -> None: ...


def _check_requests(requests: Sequence[BatchRequest]) -> None:
    if not requests:
        raise ValueError("a batch needs at least one request")
    ids = [r.custom_id for r in requests]
    bad = [i for i in ids if not _CUSTOM_ID.match(i)]
    if bad:
        raise ValueError(f"custom ids {bad[:3]} must be 1-64 letters, digits, '_' or '-'; rename them")
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:3]
        raise ValueError(f"custom ids {dupes} repeat; each request of a batch needs its own id")


def _poll(client: anthropic.Anthropic, batch_id: str, policy: PollPolicy, sleep: Callable[[float], None],
          clock: Callable[[], float]) -> tuple[Any, int]:
    """Retrieve the batch until it ends; (the ended batch, retrieves made)."""
    started, polls, delay = clock(), 0, policy.base_s
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        polls += 1
        if batch.processing_status == "ended":
            return batch, polls
        if clock() - started + delay > policy.timeout_s:
            raise BatchError(
                f"batch {batch_id} still {batch.processing_status} after {clock() - started:.0f}s; run again "
                "with the same key (and ledger) to resume it", batch_id)
        sleep(delay)
        delay = min(policy.cap_s, delay * 2)


def _read(client: anthropic.Anthropic, batch_id: str, wanted: Mapping[str, BatchRequest],
          prices: Mapping[str, ModelPrice], cache_ttl: str) -> dict[str, BatchResult]:
    out: dict[str, BatchResult] = {}
    for item in client.messages.batches.results(batch_id):
        request = wanted.get(item.custom_id)
        if request is None:
            continue  # not ours (a result of an earlier round's id)
        result = item.result
        if result.type == "succeeded":
            message = result.message
            text = "".join(b.text for b in message.content if b.type == "text")
            raw = message.usage
            usage = Usage(model=request.model, input_tokens=int(raw.input_tokens or 0),
                          output_tokens=int(raw.output_tokens or 0),
                          cache_write_tokens=int(raw.cache_creation_input_tokens or 0),
                          cache_read_tokens=int(raw.cache_read_input_tokens or 0), counted=True)
            cost = usage_cost(usage, price_of(request.model, prices), batch=True, cache_ttl=cache_ttl)
            out[item.custom_id] = BatchResult(custom_id=item.custom_id, status="succeeded", text=text,
                                              usage=replace(usage, cost_usd=cost), batch_id=batch_id)
        else:
            error = ""
            if result.type == "errored":
                error = f"{result.error.error.type}: {result.error.error.message}"
            out[item.custom_id] = BatchResult(custom_id=item.custom_id, status=result.type, error=error,
                                              batch_id=batch_id)
    return out


def run_batch(
    client: anthropic.Anthropic,
    requests: Sequence[BatchRequest],
    *,
    key: str | None = None,
    ledger: Ledger | None = None,
    poll: PollPolicy = PollPolicy(),
    retry_rounds: int = 1,
    prices: Mapping[str, ModelPrice] | None = None,
    cache_ttl: str = "5m",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BatchRun:
    """Send `requests` as a batch, wait for it, and map every result back to its custom id.

    Args:
        client: an `anthropic.Anthropic` client (`generation.anthropic_client()`).
        requests: the requests, with unique custom ids.
        key: names the job in the ledger (e.g. "answers:<config hash>:<dataset fingerprint>").
        ledger: where the in-flight batch id is kept; with `key`, a batch in flight is resumed.
        poll: backoff between retrieves, and when to give up.
        retry_rounds: new batches for requests that errored, expired, were canceled or missing.
        prices: the price table (default: data/prices.toml).
        cache_ttl: the prompt-cache TTL the requests' writes are priced at.
        sleep, clock: injectable for tests.

    Returns:
        Every request's result (request order); failed ones keep their last status and error.

    Raises:
        ValueError: no requests, bad or repeated custom ids, a ledger without a key.
        BatchError: the batch did not end within `poll.timeout_s` (its id is kept for resuming).
    """
    _check_requests(requests)
    if ledger is not None and not key:
        raise ValueError("a ledger needs a key naming the job, e.g. key='answers:<config hash>'")
    prices = load_prices() if prices is None else prices
    for r in requests:
        price_of(r.model, prices)  # an unknown model fails before anything is paid
    t0 = time.perf_counter()
    results: dict[str, BatchResult] = {}
    pending = {r.custom_id: r for r in requests}
    batch_ids: list[str] = []
    polls, resumed = 0, False
    for round_ in range(retry_rounds + 1):
        round_key = key if round_ == 0 else f"{key}#retry{round_}"
        batch_id = ledger.recall(round_key) if ledger is not None and round_key else None
        if batch_id is not None:
            resumed = resumed or round_ == 0
        else:
            batch = client.messages.batches.create(
                requests=[{"custom_id": r.custom_id, "params": r.params()} for r in pending.values()])
            batch_id = batch.id
            if ledger is not None and round_key:
                ledger.remember(round_key, batch_id, len(pending))
        batch_ids.append(batch_id)
        _, n = _poll(client, batch_id, poll, sleep, clock)
        polls += n
        got = _read(client, batch_id, pending, prices, cache_ttl)
        for custom_id in pending:
            results[custom_id] = got.get(custom_id) or BatchResult(
                custom_id=custom_id, status="missing", error="the batch results do not mention this request",
                batch_id=batch_id)
        if ledger is not None and round_key:
            ledger.finish(round_key)
        pending = {k: v for k, v in pending.items() if results[k].status != "succeeded"}
        if not pending:
            break
    ordered = {r.custom_id: results[r.custom_id] for r in requests}
    return BatchRun(results=ordered, batch_ids=tuple(batch_ids), resumed=resumed, polls=polls,
                    wall_s=time.perf_counter() - t0)


def answer_requests(
    config: GenerationConfig, items: Sequence[tuple[str, str, Sequence[Hit]]], *, model: str | None = None
) -> list[BatchRequest]:
    """Batch requests answering (custom id, query, context) items with `AnthropicGenerator`'s prompt."""
    return [
        BatchRequest(
            custom_id=custom_id, model=model or config.model, max_tokens=config.max_tokens,
            prompt=build_prompt(query, context, instructions=config.system_prompt, caching=config.prompt_caching,
                                cache_ttl=config.cache_ttl),
        )
        for custom_id, query, context in items
    ]


def answers_from(run: BatchRun, contexts: Mapping[str, Sequence[Hit]]) -> dict[str, Answer]:
    """The answers of a batch's succeeded requests by custom id, citations parsed against each context."""
    return {
        custom_id: Answer(text=r.text, citations=parse_citations(r.text, contexts[custom_id]), usage=r.usage)
        for custom_id, r in run.results.items()
        if r.status == "succeeded" and r.usage is not None
    }

