"""The one run path: a config on a dataset, run once, recorded in the run store, served from it after.

`evaluate` is what the command line, the app and the studies call to get a result; sweeps,
whose workers compute the runs, claim, key and save them the same way (`workbench.sweep`). A
request is identified by (config hash, dataset fingerprint, the queries asked); one already in
the store is served from it, in this process or any later one, and says so (`cached=True`,
and the log line "served from the run store (run <id>)"). Otherwise the run is computed and
recorded with everything needed to read it back: config, dataset fingerprint, per-query rows,
aggregates, build and embedding stats, and the versions of the environment. Processes that
ask for the same run at once compute it once: the first claims it (`workbench.store.claims`),
the others wait for its record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import PipelineConfig, config_hash
from .results import ExperimentResult
from .store import RunStore, TrialKey

if TYPE_CHECKING:
    from .datasets import Dataset

__all__ = ["RunOutcome", "evaluate", "query_key", "request_key"]

log = logging.getLogger(__name__)

_POLL_S = 0.25  # how often a process waiting for another's run looks again


@dataclass(frozen=True, kw_only=True)
class RunOutcome:
    """A run's result, its id in the store, and whether it was served from the store."""

    result: ExperimentResult
    run_id: str
    cached: bool

    def describe(self) -> str:
        """One line saying where the result came from."""
        if self.cached:
            return f"served from the run store (run {self.run_id})"
        return f"computed and stored (run {self.run_id})"


def query_key(dataset: Dataset, query_ids: Sequence[str] | None) -> str:
    """The stored key of a query selection: "" for all evaluated queries, else a hash of the ids in order."""
    if query_ids is None:
        return ""
    ids = list(query_ids)
    if ids == list(dataset.evaluated_queries):
        return ""
    return "q" + hashlib.blake2b(json.dumps(ids).encode(), digest_size=10).hexdigest()


def request_key(config: PipelineConfig, dataset: Dataset, query_ids: Sequence[str] | None = None) -> TrialKey:
    """What makes two requests the same run: config hash, dataset fingerprint, queries."""
    return TrialKey(config_hash(config), dataset.fingerprint(), query_key(dataset, query_ids))


def evaluate(
    config: PipelineConfig,
    dataset: Dataset,
    *,
    store: RunStore | None = None,
    query_ids: Sequence[str] | None = None,
    progress: bool | None = None,
) -> RunOutcome:
    """Run `config` on `dataset` and record it, or serve the identical run the store already holds.

    Args:
        config: the pipeline.
        dataset: documents, queries and judgements.
        store: where runs are looked up and recorded; `RunStore.default()` if None.
        query_ids: evaluate only these queries, in this order (default: every judged query).
        progress: show progress bars while computing.

    Returns:
        The result, its run id, and `cached=True` when it came from the store.

    Raises:
        ValueError: an unknown query id.
        StoreError: the store is not a run store, is read-only or stayed locked.
    """
    from .experiment import run_experiment

    store = store if store is not None else RunStore.default()
    key = request_key(config, dataset, query_ids)
    with store.claims.keep_alive():
        state, run_id = store.claims.claim(key)
        while state == "taken":  # another process is computing this very run: wait for its record
            time.sleep(_POLL_S)
            state, run_id = store.claims.claim(key)
        if state == "done":
            log.info("served from the run store (run %s)", run_id)
            return RunOutcome(result=store.result(run_id), run_id=run_id, cached=True)
        try:
            result = run_experiment(config, dataset, progress=bool(progress), query_ids=query_ids)
            run_id = store.save(result, query_key=key.query_key)
        finally:
            store.claims.release(key)
    return RunOutcome(result=result, run_id=run_id, cached=False)
