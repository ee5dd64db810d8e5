"""Sweeps: grid or random search over config fields, resumable through the run store.

A trial is one `PipelineConfig` on one dataset. Before anything runs, every trial is looked up
in the store by (config hash, dataset fingerprint); only the missing ones are computed, so a
killed sweep restarted with the same arguments picks up where it stopped, and an immediate
rerun computes nothing. Each finished trial is stored at once, in its own transaction.

Trials run in this process, in a pool of local processes, or as Ray tasks (`executor="ray"`:
a local Ray instance, or an existing cluster through `ray_address`; see `workbench.executors`). Parallel trials share
the embedding cache (SQLite in WAL mode); to keep two workers from embedding the same chunks
at once, the first trial of each (chunking, embedding) group runs before the rest of its group.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
import random
import statistics
import time
import tomllib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .config import ConfigError, PipelineConfig, config_hash, from_dict, replace_path, to_dict
from .executors import Executor, make_executor
from .store import RunStore, TrialKey

if TYPE_CHECKING:
    import pandas as pd

    from .datasets import Dataset
    from .experiment import ExperimentResult

__all__ = [
    "SweepSettings",
    "SweepSpec",
    "SweepPlan",
    "SweepRefused",
    "Trial",
    "SweepResult",
    "expand_space",
    "plan_sweep",
    "sweep",
    "load_sweep_spec",
]

# Rough rates for the up-front estimate of a sweep that has no history in the store yet:
# all-MiniLM-L6-v2 on two CPU cores embeds ~100 chunks/s; a query through BM25/FAISS ~5 ms.
_EMBED_TEXTS_PER_S = 100.0
_QUERY_S = 0.005
_SUBWORDS_PER_WORD = 1.3
_POLL_S = 0.2  # how often a sweep looks again at trials another process is computing


class SweepRefused(RuntimeError):
    """A sweep too large to start without confirmation, or one the user declined."""


@dataclass(frozen=True, kw_only=True)
class SweepSettings:
    """How a sweep searches and where its trials run.

    `method="grid"` runs every combination; `"random"` draws `trials` distinct combinations
    (seeded). `executor="local"` with `workers=1` runs trials in this process (models load
    once); `workers>1` uses that many processes. `executor="ray"` submits trials as Ray tasks
    to `ray_address` ("" starts a local instance; "auto" or "ray://head:10001" joins a
    cluster). More than `confirm_above` pending trials need explicit confirmation.
    """

    method: Literal["grid", "random"] = "grid"
    trials: int = 0
    seed: int = 0
    executor: Literal["local", "ray"] = "local"
    workers: int = 1
    ray_address: str = ""
    confirm_above: int = 1000

    def __post_init__(self) -> None:
        if self.method not in ("grid", "random"):
            raise ConfigError(f"unknown sweep method {self.method!r}; choose one of ['grid', 'random']")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"unknown sweep executor {self.executor!r}; choose one of ['local', 'ray']")
        if self.method == "random" and self.trials <= 0:
            raise ConfigError(f"a random sweep needs trials > 0, got trials={self.trials}")
        if self.method == "grid" and self.trials:
            raise ConfigError("trials applies to method='random' only; drop it or set method='random'")
        if self.workers < 1:
            raise ConfigError(f"workers={self.workers} must be at least 1")
        if self.confirm_above < 0:
            raise ConfigError(f"confirm_above={self.confirm_above} must be >= 0")


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """A sweep as written in a TOML file: dataset, base config, search space and settings."""

    name: str = "sweep"
    dataset: str = "cranfield"
    base: PipelineConfig = field(default_factory=PipelineConfig)
    space: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    settings: SweepSettings = field(default_factory=SweepSettings)


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


def expand_space(
    base: PipelineConfig,
    space: Mapping[str, Sequence[Any]],
    settings: SweepSettings | None = None,
) -> list[tuple[dict[str, Any], PipelineConfig]]:
    """The trials of a search space: (swept values, config) pairs, duplicates removed.

    Args:
        base: the config every trial starts from.
        space: dotted field -> values to try, e.g. {"chunking.size": [128, 256]}.
        settings: grid (every combination, in order) or random (`trials` distinct
            combinations drawn with `seed`); grid by default.

    Returns:
        Trials in a stable order; each config's `name` is the base name plus the swept values.

    Raises:
        ConfigError: a field that does not exist, an empty list of values, or a combination
            of values no config accepts (the message names the trial).
    """
    settings = settings or SweepSettings()
    if not space:
        raise ConfigError("the search space is empty; give at least one field, e.g. {'chunking.size': [128, 256]}")
    for dotted, values in space.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"sweep field {dotted!r} needs a non-empty list of values, got {values!r}")
        _check_field(base, dotted)
    names = list(space)
    combos: list[tuple[Any, ...]] = list(itertools.product(*(space[n] for n in names)))
    if settings.method == "random":
        rng = random.Random(settings.seed)
        combos = rng.sample(combos, min(settings.trials, len(combos)))
    # Build each stage's sub-config once per distinct combination of its swept values: a
    # grid of thousands of trials has only tens of distinct stage configs to validate.
    stages: dict[tuple[Any, ...], Any] = {}
    trials: list[tuple[dict[str, Any], PipelineConfig]] = []
    seen: set[str] = set()
    for combo in combos:
        params = dict(zip(names, combo))
        label = ",".join(f"{n}={v}" for n, v in params.items())
        by_stage: dict[str, list[tuple[str, Any]]] = {}
        for dotted, value in params.items():
            head, _, rest = dotted.partition(".")
            by_stage.setdefault(head, []).append((rest, value))
        try:
            changes = {}
            for head, items in by_stage.items():
                key = (head, tuple((rest, repr(value)) for rest, value in items))
                if key not in stages:
                    stages[key] = _apply(base, head, items)
                changes[head] = stages[key]
        except ConfigError as exc:
            raise ConfigError(f"sweep trial [{label}] is not a valid config: {exc}") from None
        config = dataclasses.replace(base, **changes, name=f"{base.name}[{label}]")
        key = config_hash(config)
        if key not in seen:
            seen.add(key)
            trials.append((params, config))
    return trials


def _check_field(base: PipelineConfig, dotted: str) -> None:
    obj: Any = base
    for part in dotted.split("."):
        known = sorted(f.name for f in dataclasses.fields(obj)) if dataclasses.is_dataclass(obj) else []
        if part not in known:
            raise ConfigError(
                f"cannot sweep {dotted!r}: {type(obj).__name__} has no field {part!r}; known: {known}"
            )
        obj = getattr(obj, part)


def _apply(base: PipelineConfig, head: str, items: list[tuple[str, Any]]) -> Any:
    """Field `head` of `base` with all (sub-path, value) replacements applied at once.

    At once, not one by one: each intermediate step could be invalid on its own (overlap 300
    before size 512 with a base size of 256) while the final combination is fine.
    """
    if any(not rest for rest, _ in items):  # a top-level field such as `name`
        return getattr(replace_path(base, head, items[-1][1]), head)
    sub = getattr(base, head)
    if any("." in rest for rest, _ in items):  # deeper nesting: no cross-field checks to order
        for rest, value in items:
            sub = replace_path(sub, rest, value)
        return sub
    return from_dict(type(sub), {**to_dict(sub), **dict(items)}, where=head)


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
    from .experiment import needs_embedder

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
    from .datasets import load_dataset

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
        from .experiment import needs_embedder

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
        from .experiment import needs_embedder

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


# -- spec files -----------------------------------------------------------------------------


def load_sweep_spec(path: str | Path) -> SweepSpec:
    """Read a sweep from TOML.

    The file holds `name`, `dataset`, a `[base]` table (a pipeline config) or `base = "file.toml"`
    (relative to the spec), a `[space]` table of dotted field -> list of values, and an optional
    `[settings]` table (`SweepSettings` fields).

    Raises:
        ConfigError: the file is missing or invalid, or a key or value is unknown.
    """
    from .config import load_config

    path = Path(path)
    where = f"sweep file {str(path)!r}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{where} is a folder; give the path of a sweep .toml file") from None
    except UnicodeDecodeError as exc:  # a binary file, or text in another encoding
        raise ConfigError(f"{where} is not UTF-8 TOML ({exc}); save it as UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    known = {f.name for f in dataclasses.fields(SweepSpec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; known keys are {sorted(known)}")
    for key, example in (("name", '"sizes"'), ("dataset", '"cranfield" or a folder path')):
        if key in data and not (isinstance(data[key], str) and data[key].strip()):
            raise ConfigError(f"{key} = {data[key]!r} in {where} must be a non-empty string, e.g. {key} = {example}")
    for key in ("space", "settings"):
        if key in data and not isinstance(data[key], Mapping):
            raise ConfigError(f"{key} = {data[key]!r} in {where} must be a table ([{key}])")
    base_data = data.get("base", {})
    if isinstance(base_data, str):
        base = load_config(path.parent / base_data)
    elif isinstance(base_data, Mapping):
        base = from_dict(PipelineConfig, {"name": data.get("name", path.stem), **base_data}, where="base")
    else:
        raise ConfigError(f"base = {base_data!r} in {where} must be a [base] table or the path of a config file")
    space = data.get("space", {})
    if not space:
        raise ConfigError(
            f"{where} needs a [space] table, e.g. \"chunking.size\" = [128, 256]"
        )
    return SweepSpec(
        name=data.get("name", path.stem),
        dataset=data.get("dataset", "cranfield"),
        base=base,
        space={k: tuple(v) if isinstance(v, list) else v for k, v in space.items()},
        settings=from_dict(SweepSettings, data.get("settings", {}), where="settings"),
    )
