"""Running a sweep: plan it against the store, claim and compute the missing trials, store each once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..config import PipelineConfig, config_hash
from ..executors import Executor, make_executor
from ..store import RunStore, TrialKey
from .space import SweepSettings, expand_space

if TYPE_CHECKING:
    import pandas as pd

    from ..datasets import Dataset
    from ..results import ExperimentResult

__all__ = ["SweepRefused", "Trial", "SweepPlan", "SweepResult", "plan_sweep", "sweep"]

# Rough rates for the up-front estimate of a sweep that has no history in the store yet:
# all-MiniLM-L6-v2 on two CPU cores embeds ~100 chunks/s; a query through BM25/FAISS ~5 ms.
_EMBED_TEXTS_PER_S = 100.0
_QUERY_S = 0.005
_SUBWORDS_PER_WORD = 1.3
_POLL_S = 0.2  # how often a sweep looks again at trials another process is computing


class SweepRefused(RuntimeError):
    """A sweep too large to start without confirmation, or one the user declined."""


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One point of a sweep and what became of it.

    `status` is "computed" (run now), "reused" (found in the store) or "failed" (raised;
    `error` says why, and the next run of the sweep retries it).
    """

    params: Mapping[str, Any]
    config: PipelineConfig
    config_hash: str
    status: Literal["computed", "reused", "failed"]
    run_id: str
    aggregates: Mapping[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    embedded_texts: int = 0
    error: str = ""


@dataclass(frozen=True, kw_only=True)
class SweepPlan:
    """What a sweep will do before it does it: trials found, trials to run, estimated work."""

    trials: tuple[tuple[Mapping[str, Any], PipelineConfig], ...]
    done: Mapping[str, str]
    pending: tuple[tuple[Mapping[str, Any], PipelineConfig], ...]
    embedding_groups: int
    estimated_texts: int
    estimated_s: float

    def describe(self) -> str:
        """A few lines for a confirmation prompt or a log."""
        return (
            f"{len(self.trials)} trials: {len(self.done)} already in the store, {len(self.pending)} to run; "
            f"about {self.estimated_texts:,} chunk embeddings over {self.embedding_groups} distinct "
            f"chunkings (cached ones are free) and roughly {_duration(self.estimated_s)} in all"
        )


@dataclass(frozen=True, kw_only=True)
class SweepResult:
    """Every trial of a sweep, in the order of the search space."""

    sweep_id: str
    dataset_name: str
    dataset_fingerprint: str
    trials: tuple[Trial, ...]
    wall_s: float

    def count(self, status: Literal["computed", "reused", "failed"]) -> int:
        """How many trials ended with `status`."""
        return sum(t.status == status for t in self.trials)

    def best(self, metric: str) -> Trial:
        """The trial with the highest value of `metric` among those that did not fail.

        Raises:
            KeyError: no trial reports `metric`.
        """
        scored = [t for t in self.trials if metric in t.aggregates]
        if not scored:
            known = sorted({m for t in self.trials for m in t.aggregates})
            raise KeyError(f"no trial reports metric {metric!r}; known: {known}")
        return max(scored, key=lambda t: t.aggregates[metric])

    def to_frame(self) -> pd.DataFrame:
        """One row per trial: swept values, status, run id, duration, embedded texts, metrics."""
        import pandas as pd

        return pd.DataFrame(
            [
                {**t.params, "status": t.status, "run_id": t.run_id, "config_hash": t.config_hash,
                 "duration_s": t.duration_s, "embedded_texts": t.embedded_texts, **t.aggregates,
                 "error": t.error}
                for t in self.trials
            ]
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _group_key(config: PipelineConfig) -> tuple[Any, ...]:
    """Trials with equal keys embed exactly the same chunks."""
    return (config.chunking, config.embedding)


def _estimate_chunks(dataset: Dataset, config: PipelineConfig) -> int:
    if config.chunking.method == "none":
        return len(dataset.documents)
    step = config.chunking.size - config.chunking.overlap
    return sum(
        max(1, math.ceil(len(d.text.split()) * _SUBWORDS_PER_WORD / step)) for d in dataset.documents
    )


def plan_sweep(
    trials: Sequence[tuple[Mapping[str, Any], PipelineConfig]],
    dataset: Dataset,
    store: RunStore,
    *,
    workers: int = 1,
) -> SweepPlan:
    """Split trials into those the store already has and those to run, and estimate the work.

    The time estimate uses the median duration of this dataset's completed runs in the store
    when there are any, else fixed rates for CPU embedding and retrieval; both are rough.
    """
    from ..experiment import needs_embedder

    fingerprint = dataset.fingerprint()
    completed = store.completed_keys(fingerprint)
    done: dict[str, str] = {}
    pending = []
    for params, config in trials:
        key = config_hash(config)
        if key in completed:
            done[key] = completed[key]
        else:
            pending.append((params, config))
    groups = {_group_key(c): c for _, c in pending if needs_embedder(c)}
    texts = sum(_estimate_chunks(dataset, c) for c in groups.values())
    history = [r.duration_s for r in store.runs(dataset=dataset.name, status="completed")
               if r.dataset_fingerprint == fingerprint]
    if history:
        seconds = len(pending) * statistics.median(history) / workers
    else:
        queries = len(dataset.evaluated_queries)
        seconds = texts / _EMBED_TEXTS_PER_S + len(pending) * queries * _QUERY_S / workers
    return SweepPlan(
        trials=tuple(trials),
        done=done,
        pending=tuple(pending),
        embedding_groups=len(groups),
        estimated_texts=texts,
        estimated_s=seconds,
    )


# -- the sweep ------------------------------------------------------------------------------


def sweep(
    base: PipelineConfig,
    space: Mapping[str, Sequence[Any]],
    *,
    dataset: Dataset | str = "cranfield",
    store: RunStore | None = None,
    settings: SweepSettings | None = None,
    confirm: Callable[[SweepPlan], bool] | None = None,
    on_trial: Callable[[Trial], None] | None = None,
    progress: bool = False,
) -> SweepResult:
    """Run every trial of a search space that the store does not already hold.

    Args:
        base: the config every trial starts from.
        space: dotted field -> values, e.g. {"chunking.size": [128, 256, 512]}.
        dataset: a `Dataset` or a name/path for `load_dataset`.
        store: where runs are looked up and saved; the default store if None.
        settings: search method and executor; grid in this process by default.
        confirm: asked, with the plan, when more than `settings.confirm_above` trials are
            pending; return True to go ahead. Without it such a sweep is refused.
        on_trial: called after each trial is stored (or found, or failed).
        progress: show progress bars (in-process executor only).

    Returns:
        All trials, computed, reused and failed, in the order of the search space.

    Raises:
        ConfigError: a swept field does not exist or a value is invalid.
        SweepRefused: too many pending trials and no confirmation.
        StoreError: the store is read-only, locked or from a newer workbench.
    """
    from ..datasets import load_dataset

    started = time.perf_counter()
    settings = settings or SweepSettings()
    if isinstance(dataset, str):
        dataset = load_dataset(dataset)
    store = store if store is not None else RunStore()
    trials = expand_space(base, space, settings)
    plan = plan_sweep(trials, dataset, store, workers=settings.workers)
    if len(plan.pending) > settings.confirm_above:
        if confirm is None:
            raise SweepRefused(
                f"this sweep needs confirmation: {plan.describe()}. Narrow the search space, use "
                "method='random' with fewer trials, or confirm (--yes on the command line)"
            )
        if not confirm(plan):
            raise SweepRefused(f"sweep declined; nothing was run ({plan.describe()})")
    fingerprint = dataset.fingerprint()
    sweep_id = store.create_sweep(
        base.name,
        {"space": {k: list(v) for k, v in space.items()}, "settings": dataclasses.asdict(settings),
         "dataset": dataset.name, "dataset_fingerprint": fingerprint, "base_hash": config_hash(base)},
    )
    runner = _Runner(trials, store, dataset, sweep_id, on_trial)
    for index, (params, config) in enumerate(trials):
        key = config_hash(config)
        if key in plan.done:
            runner.record(index, _reused(params, config, store, plan.done[key]))
        else:
            runner.schedule(index)
    executor = make_executor(settings.executor, dataset, workers=settings.workers,
                             ray_address=settings.ray_address, progress=progress)
    try:
        with store.claims.keep_alive():
            runner.run(executor, settings.workers)
    finally:
        executor.close()
        runner.release_all()
    return SweepResult(
        sweep_id=sweep_id,
        dataset_name=dataset.name,
        dataset_fingerprint=fingerprint,
        trials=tuple(runner.outcomes[i] for i in sorted(runner.outcomes)),
        wall_s=time.perf_counter() - started,
    )


class _Runner:
    """Runs a sweep's pending trials: claims each in the store, computes it, stores it, once.

    A group's first trial (the one that embeds its chunks) runs alone; the rest of the group
    follows once the cache holds those vectors. A trial another process has claimed waits
    until that process stores it (then it is reused) or dies (then it is claimed here).
    """

    def __init__(self, trials: Sequence[tuple[Mapping[str, Any], PipelineConfig]], store: RunStore,
                 dataset: Dataset, sweep_id: str, on_trial: Callable[[Trial], None] | None) -> None:
        self.trials, self.store, self.dataset, self.sweep_id = trials, store, dataset, sweep_id
        self.fingerprint = dataset.fingerprint()
        self.on_trial = on_trial
        self.outcomes: dict[int, Trial] = {}
        self.ready: deque[int] = deque()
        self.followers: dict[tuple[Any, ...], list[int]] = {}
        self.waiting: list[int] = []
        self.waited: set[int] = set()
        self.held: dict[int, dt.datetime] = {}  # claimed here, not stored yet: index -> submitted at
        self.started = dt.datetime.now(dt.timezone.utc)

    def key(self, index: int) -> TrialKey:
        return TrialKey(config_hash(self.trials[index][1]), self.fingerprint)

    def record(self, index: int, trial: Trial) -> None:
        self.outcomes[index] = trial
        if self.on_trial is not None:
            self.on_trial(trial)

    def schedule(self, index: int) -> None:
        from ..experiment import needs_embedder

        config = self.trials[index][1]
        group = _group_key(config)
        if not needs_embedder(config):
            self.ready.append(index)
        elif group in self.followers:
            self.followers[group].append(index)
        else:
            self.followers[group] = []
            self.ready.append(index)

    def release(self, config: PipelineConfig) -> None:
        # Only a trial that embeds fills the cache for its group (a BM25 trial with the same
        # chunking does not). Followers go next: in-process they then reuse the group's index.
        from ..experiment import needs_embedder

        if needs_embedder(config):
            self.ready.extendleft(reversed(self.followers.pop(_group_key(config), [])))

    def claim(self, index: int) -> bool:
        """Claim trial `index`; True when this process should compute it."""
        params, config = self.trials[index]
        state, run_id = self.store.claims.claim(self.key(index))
        if state == "taken":
            self.waiting.append(index)
            self.waited.add(index)
            return False
        if state == "done":
            self.record(index, _reused(params, config, self.store, run_id))
            self.release(config)
            return False
        failed = self.store.find(*astuple(self.key(index)), status="failed") if index in self.waited else None
        if failed is not None and failed.finished_at >= self.started:  # it failed in the process we waited for
            self.store.claims.release(self.key(index))
            self.record(index, Trial(params=params, config=config, config_hash=failed.config_hash,
                                     status="failed", run_id=failed.id, error=failed.error))
            self.release(config)
            return False
        self.held[index] = dt.datetime.now(dt.timezone.utc)
        return True

    def run(self, executor: Executor, workers: int) -> None:
        in_flight = 0
        while self.ready or in_flight or self.waiting:
            if not self.ready and not in_flight:  # only trials other processes hold: look again soon
                time.sleep(_POLL_S)
            self.ready.extend(self.waiting)
            self.waiting.clear()
            while self.ready and in_flight < workers:
                index = self.ready.popleft()
                if self.claim(index):
                    executor.submit(index, self.trials[index][1])
                    in_flight += 1
            if in_flight:
                self.store_outcome(*executor.next_done())
                in_flight -= 1

    def store_outcome(self, index: int, outcome: ExperimentResult | BaseException) -> None:
        params, config = self.trials[index]
        self.release(config)
        if not isinstance(outcome, BaseException) and outcome.config_hash != config_hash(config):
            outcome = RuntimeError(  # stored under the worker's key, later sweeps would never find it
                f"the worker hashed this config as {outcome.config_hash}, this process as {config_hash(config)}: "
                "the worker runs another workbench version; install the same one on every node")
        if isinstance(outcome, BaseException):
            run_id = self.store.save_failure(
                config, config_hash=config_hash(config), dataset_name=self.dataset.name,
                dataset_fingerprint=self.fingerprint, started_at=self.held[index],
                error=f"{type(outcome).__name__}: {outcome}", sweep_id=self.sweep_id,
            )
            trial = Trial(params=params, config=config, config_hash=config_hash(config),
                          status="failed", run_id=run_id, error=str(outcome))
        else:
            run_id = self.store.save(outcome, sweep_id=self.sweep_id)
            trial = Trial(
                params=params, config=config, config_hash=outcome.config_hash, status="computed",
                run_id=run_id, aggregates=dict(outcome.aggregates),
                duration_s=(dt.datetime.fromisoformat(outcome.finished_at)
                            - dt.datetime.fromisoformat(outcome.started_at)).total_seconds(),
                embedded_texts=int(outcome.embedding_stats.get("misses", 0)),
            )
        self.store.claims.release(self.key(index))
        del self.held[index]
        self.record(index, trial)

    def release_all(self) -> None:
        """Drop the claims of trials that never got stored (the sweep was interrupted)."""
        for index in list(self.held):
            self.store.claims.release(self.key(index))
        self.held.clear()


def _reused(params: Mapping[str, Any], config: PipelineConfig, store: RunStore, run_id: str) -> Trial:
    record = store.get(run_id)
    return Trial(params=params, config=config, config_hash=record.config_hash, status="reused",
                 run_id=run_id, aggregates=dict(record.aggregates), duration_s=record.duration_s)
