"""Where sweep trials and bulk embedding run: this process, local processes, or a Ray cluster.

Every executor takes trials (a `PipelineConfig` and its position) and hands back each result,
or the exception it raised, as it finishes. Executors take plain arguments (a kind, a worker
count, an address), so they know nothing of sweeps. Local worker processes die with their
driver: on Linux the kernel sends them SIGKILL when it exits (PR_SET_PDEATHSIG), and a watchdog
thread in each worker exits when its parent changes (any platform), so a killed sweep leaves
no workers behind. Ray runs a local instance by default, or joins the cluster at `ray_address`
(e.g. "ray://head:10001" or "auto"); `embed_bulk` spreads distinct texts over Ray tasks, each
embedding through its node's vector cache.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .config import PipelineConfig

if TYPE_CHECKING:
    import numpy as np

    from .config import EmbeddingConfig
    from .datasets import Dataset
    from .results import ExperimentResult

__all__ = ["Executor", "make_executor", "embed_bulk", "die_with_parent"]

Outcome = tuple[int, "ExperimentResult | BaseException"]


class Executor(Protocol):
    """Runs trials: `submit` them by index, collect each with `next_done` as it finishes."""

    def submit(self, index: int, config: PipelineConfig) -> None: ...
    def next_done(self) -> Outcome: ...
    def close(self) -> None: ...


_worker_dataset: Dataset | None = None
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_WATCH_S = 0.5


def die_with_parent(parent_pid: int) -> None:
    """Make this process exit when `parent_pid` (its parent) does, however the parent ends.

    Linux: the kernel sends SIGKILL to this process when its parent exits (PR_SET_PDEATHSIG);
    everywhere: a daemon thread checks every half second whether the parent changed.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog below still works
            pass
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_WATCH_S)
        os._exit(1)

    threading.Thread(target=watch, name="workbench-parent-watchdog", daemon=True).start()


def _init_worker(dataset: Dataset, threads: int, parent_pid: int) -> None:
    global _worker_dataset
    die_with_parent(parent_pid)
    import torch

    torch.set_num_threads(threads)  # workers split the cores instead of fighting over them
    _worker_dataset = dataset


def _worker_trial(config: PipelineConfig) -> ExperimentResult:
    from .experiment import run_experiment

    if _worker_dataset is None:
        raise RuntimeError("worker process was started without its dataset (use the sweep initializer)")
    return run_experiment(config, _worker_dataset)


def _trial(config: PipelineConfig, dataset: Dataset) -> ExperimentResult:
    from .experiment import run_experiment

    return run_experiment(config, dataset)


class _InProcess:
    """Runs each trial on submission, in this process: one model load, warm in-process indexes."""

    def __init__(self, dataset: Dataset, progress: bool) -> None:
        self._dataset = dataset
        self._progress = progress
        self._done: deque[Outcome] = deque()

    def submit(self, index: int, config: PipelineConfig) -> None:
        from .experiment import run_experiment

        try:
            self._done.append((index, run_experiment(config, self._dataset, progress=self._progress)))
        except Exception as exc:  # recorded as a failed trial; the sweep goes on
            self._done.append((index, exc))

    def next_done(self) -> Outcome:
        return self._done.popleft()

    def close(self) -> None:
        self._done.clear()


class _ProcessPool:
    """Trials in `workers` spawned processes, each holding the dataset and its own model."""

    def __init__(self, dataset: Dataset, workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        threads = max(1, (os.cpu_count() or 1) // workers)
        # spawn, not fork: a forked child of a process that already started torch threads can hang
        self._pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(dataset, threads, os.getpid()),
        )
        self._futures: dict[Any, int] = {}

    def submit(self, index: int, config: PipelineConfig) -> None:
        self._futures[self._pool.submit(_worker_trial, config)] = index

    def next_done(self) -> Outcome:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(list(self._futures), return_when=FIRST_COMPLETED)
        future = next(iter(done))
        index = self._futures.pop(future)
        exc = future.exception()
        return index, exc if exc is not None else future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _ray(address: str) -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError("executor='ray' needs the ray extra: pip install 'workbench[ray]'") from exc
    if not ray.is_initialized():
        ray.init(address=address or None, log_to_driver=False)
    return ray


class _RayTasks:
    """Trials as Ray tasks (one CPU each); the dataset is put in the object store once."""

    def __init__(self, dataset: Dataset, address: str) -> None:
        self._ray = _ray(address)
        self._dataset_ref = self._ray.put(dataset)
        self._remote = self._ray.remote(num_cpus=1)(_trial)
        self._refs: dict[Any, int] = {}

    def submit(self, index: int, config: PipelineConfig) -> None:
        self._refs[self._remote.remote(config, self._dataset_ref)] = index

    def next_done(self) -> Outcome:
        [ref], _ = self._ray.wait(list(self._refs), num_returns=1)
        index = self._refs.pop(ref)
        try:
            return index, self._ray.get(ref)
        except Exception as exc:  # a task's exception arrives wrapped; keep its message
            return index, exc

    def close(self) -> None:
        for ref in self._refs:
            self._ray.cancel(ref)
        self._refs.clear()


def make_executor(
    kind: Literal["local", "ray"],
    dataset: Dataset,
    *,
    workers: int = 1,
    ray_address: str = "",
    progress: bool = False,
) -> Executor:
    """An executor of trials on `dataset`: in this process (1 local worker), a process pool, or Ray tasks.

    Args:
        kind: "local" (this machine) or "ray".
        dataset: what every trial runs on (sent to each worker once).
        workers: local processes; 1 runs trials in this process (models load once).
        ray_address: "" starts a local Ray instance; "auto" or "ray://head:10001" joins a cluster.
        progress: show progress bars (in-process only).

    Raises:
        ValueError: an unknown kind or fewer than one worker.
        ImportError: `kind = "ray"` without the ray extra installed.
    """
    if kind not in ("local", "ray"):
        raise ValueError(f"unknown executor {kind!r}; choose one of ['local', 'ray']")
    if workers < 1:
        raise ValueError(f"workers={workers} must be at least 1")
    if kind == "ray":
        return _RayTasks(dataset, ray_address)
    if workers == 1:
        return _InProcess(dataset, progress)
    return _ProcessPool(dataset, workers)


# -- bulk embedding -------------------------------------------------------------------------


def _embed_shard(texts: Sequence[str], config: EmbeddingConfig, cache_path: str | None) -> np.ndarray:
    from .embedding import VectorCache, load_embedder

    cache = VectorCache(cache_path) if cache_path else None
    return load_embedder(config, cache=cache).embed(texts)


def embed_bulk(
    texts: Sequence[str],
    config: EmbeddingConfig | None = None,
    *,
    executor: Literal["local", "ray"] = "local",
    shards: int = 4,
    ray_address: str = "",
    cache_path: str | Path | None = None,
) -> np.ndarray:
    """Embed many texts, on this machine or spread over a Ray cluster in `shards` tasks.

    Each Ray worker embeds through its own node's vector cache (`cache_path` if given, else
    its default cache), so a repeated job only computes what that node has not seen.

    Args:
        texts: the texts, in order.
        config: the embedding model; the packaged default if None.
        executor: "local" (this process) or "ray".
        shards: how many Ray tasks to split the distinct texts into.
        ray_address: as in `SweepSettings.ray_address`.
        cache_path: a specific vector cache file.

    Returns:
        float32 array (len(texts), dimension), rows in the order of `texts`.

    Raises:
        ValueError: an unknown executor or a shard count below 1.
    """
    import numpy as np

    from .config import EmbeddingConfig

    config = config or EmbeddingConfig()
    path = str(cache_path) if cache_path is not None else None
    if executor == "local":
        return _embed_shard(texts, config, path)
    if executor != "ray":
        raise ValueError(f"unknown executor {executor!r}; choose one of ['local', 'ray']")
    if shards < 1:
        raise ValueError(f"shards={shards} must be at least 1")
    unique = list(dict.fromkeys(texts))
    if not unique:
        return _embed_shard([], config, path)
    ray = _ray(ray_address)
    remote = ray.remote(num_cpus=1)(_embed_shard)
    size = math.ceil(len(unique) / shards)
    parts = [unique[i : i + size] for i in range(0, len(unique), size)]
    arrays = ray.get([remote.remote(part, config, path) for part in parts])
    vectors = dict(zip(unique, np.concatenate(arrays)))
    return np.stack([vectors[t] for t in texts]).astype(np.float32, copy=False)
