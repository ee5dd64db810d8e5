"""The run store: every run, its config, environment, per-query results and aggregates, in one SQLite file.

A run is written in one transaction: it is in the store whole, or not at all. The file and its
schema are described in `workbench.store.schema`; connections, locking and errors come from
`workbench.sqlite`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import PipelineConfig, dumps_config
from .claims import Claims
from .records import QueryRecord, RunRecord, Status, environment_versions
from .schema import StoreError, default_store_path, open_store

if TYPE_CHECKING:
    from ..results import ExperimentResult

__all__ = ["RunStore"]

_RUN_COLUMNS = (
    "id, name, status, config_hash, config_toml, dataset_name, dataset_fingerprint, versions,"
    " started_at, finished_at, n_queries, n_chunks, mean_latency_s, costs, embedding, error,"
    " sweep_id, query_key, build_s"
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(value: dt.datetime | str) -> str:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat()


def _finite(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class RunStore:
    """A SQLite file of runs. Safe for several processes and threads; writes are transactions.

    Args:
        location: a path or `sqlite:///` URL; defaults to `default_store_path()`.
        timeout_s: how long a write waits for another writer before giving up.
        read_only: open without write access (for browsing a shared or archived store).

    Raises:
        StoreError: the file is not a run store (unreadable, empty or foreign), comes from a
            newer workbench, cannot be opened, or (read-only) does not exist or needs a migration.
    """

    def __init__(
        self, location: str | Path | None = None, *, timeout_s: float = 30.0, read_only: bool = False
    ) -> None:
        self.db = open_store(location, timeout_s=timeout_s, read_only=read_only)
        self.path = self.db.path
        self.timeout_s = timeout_s
        self.read_only = read_only

    @classmethod
    def default(cls) -> RunStore:
        """The configured store: `$WORKBENCH_STORE`, else `data/runs.sqlite`."""
        return cls(default_store_path())

    @property
    def schema_version(self) -> int:
        """The schema version of the file."""
        return self.db.version

    @functools.cached_property
    def claims(self) -> Claims:
        """Claims on trials, so that processes sharing this store compute each trial once."""
        return Claims(self.db)

    def close(self) -> None:
        """Close this process's connection (a later call reopens it)."""
        self.db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ---------------------------------------------------------------------------

    def save(
        self,
        result: ExperimentResult,
        *,
        costs: Mapping[str, float] | None = None,
        sweep_id: str | None = None,
        query_key: str = "",
    ) -> str:
        """Store a finished experiment, its per-query rows and aggregates, in one transaction.

        Args:
            result: what `run_experiment` returned.
            costs: money the run spent, e.g. {"total_usd": ..., "per_query_usd": ...}. The
                default is zero: `run_experiment` evaluates retrieval with local models only.
            sweep_id: the sweep this run belongs to, if any.
            query_key: which queries the run answered ("" for all evaluated ones; see
                `workbench.runs.query_key`).

        Returns:
            The new run's id.

        Raises:
            StoreError: the store is read-only or stayed locked past the timeout.
        """
        rows = result.rows
        costs = {"total_usd": 0.0, "per_query_usd": 0.0} if costs is None else costs
        mean_latency = sum(r.latency_s for r in rows) / len(rows) if rows else 0.0
        run_id = uuid.uuid4().hex[:12]
        run = (
            run_id, result.config.name, result.config_hash, dumps_config(result.config), result.dataset_name,
            result.dataset_fingerprint, json.dumps(environment_versions(result.config), sort_keys=True),
            _iso(result.started_at), _iso(result.finished_at), len(rows), result.n_chunks, mean_latency,
            json.dumps(_finite(costs), sort_keys=True),
            json.dumps({k: int(v) for k, v in result.embedding_stats.items()}, sort_keys=True),
            sweep_id, query_key, json.dumps(_finite(result.build_s), sort_keys=True),
        )
        queries = [
            (run_id, i, r.query_id, r.query, json.dumps(list(r.retrieved)), json.dumps(list(r.chunk_ids)),
             json.dumps([float(x) for x in r.scores]), json.dumps(_finite(r.metrics), sort_keys=True),
             float(r.latency_s), json.dumps(_finite(r.stage_latency_s), sort_keys=True))
            for i, r in enumerate(rows)
        ]
        aggregates = [(run_id, k, v) for k, v in _finite(result.aggregates).items()]  # the run's order, kept

        def insert(conn: Any) -> None:
            conn.execute(f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES"
                         " (?, ?, 'completed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?)", run)
            conn.executemany(
                "INSERT INTO query_results (run_id, position, query_id, query, retrieved, chunk_ids, scores,"
                " metrics, latency_s, stage_latency_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", queries)
            conn.executemany("INSERT INTO aggregates VALUES (?, ?, ?)", aggregates)

        self.db.transact("save a run", insert)
        return run_id

    def save_failure(
        self,
        config: PipelineConfig,
        *,
        config_hash: str,
        dataset_name: str,
        dataset_fingerprint: str,
        started_at: dt.datetime | str,
        error: str,
        sweep_id: str | None = None,
        query_key: str = "",
    ) -> str:
        """Record a run that raised, so the failure is visible; failed runs are retried later.

        Returns:
            The new run's id.
        """
        run_id = uuid.uuid4().hex[:12]
        row = (run_id, config.name, config_hash, dumps_config(config), dataset_name, dataset_fingerprint,
               json.dumps(environment_versions(config), sort_keys=True), _iso(started_at), _iso(_now()), error,
               sweep_id, query_key)
        self.db.transact("save a failed run", lambda conn: conn.execute(
            f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES"
            " (?, ?, 'failed', ?, ?, ?, ?, ?, ?, ?, 0, 0, 0.0, '{}', '{}', ?, ?, ?, '{}')", row))
        return run_id

    def create_sweep(self, name: str, spec: Mapping[str, Any]) -> str:
        """Record a sweep (its name and the JSON-able spec it ran) and return its id."""
        sweep_id = uuid.uuid4().hex[:12]
        row = (sweep_id, name, json.dumps(spec, sort_keys=True, default=str), _iso(_now()))
        self.db.transact("record a sweep", lambda conn: conn.execute("INSERT INTO sweeps VALUES (?, ?, ?, ?)", row))
        return sweep_id

    # -- reads ----------------------------------------------------------------------------

    def _records(self, where: str, params: Sequence[Any], suffix: str = "") -> list[RunRecord]:
        rows = self.db.read(f"SELECT {_RUN_COLUMNS} FROM runs {where} {suffix}", params)
        if not rows:
            return []
        ids = [r[0] for r in rows]
        aggregates: dict[str, dict[str, float]] = {i: {} for i in ids}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            for run_id, metric, value in self.db.read(
                f"SELECT run_id, metric, value FROM aggregates WHERE run_id IN ({marks}) ORDER BY rowid", part
            ):
                aggregates[run_id][metric] = value
        return [
            RunRecord(
                id=r[0], name=r[1], status=r[2], config_hash=r[3], config_toml=r[4],
                dataset_name=r[5], dataset_fingerprint=r[6], versions=json.loads(r[7]),
                started_at=dt.datetime.fromisoformat(r[8]), finished_at=dt.datetime.fromisoformat(r[9]),
                n_queries=r[10], n_chunks=r[11], mean_latency_s=r[12], costs=json.loads(r[13]),
                embedding=json.loads(r[14]), error=r[15], sweep_id=r[16], query_key=r[17],
                build_s=json.loads(r[18]), aggregates=aggregates[r[0]],
            )
            for r in rows
        ]

    def find(
        self, config_hash: str, dataset_fingerprint: str, query_key: str = "", *, status: Status = "completed"
    ) -> RunRecord | None:
        """The latest run of this config on this dataset (and these queries) with `status`, or None."""
        found = self._records(
            "WHERE config_hash = ? AND dataset_fingerprint = ? AND query_key = ? AND status = ?",
            (config_hash, dataset_fingerprint, query_key, status),
            "ORDER BY finished_at DESC, rowid DESC LIMIT 1",
        )
        return found[0] if found else None

    def completed_keys(self, dataset_fingerprint: str, query_key: str = "") -> dict[str, str]:
        """config hash -> latest completed run id, for every run on this dataset (and these queries)."""
        rows = self.db.read(
            "SELECT config_hash, id FROM runs WHERE dataset_fingerprint = ? AND query_key = ?"
            " AND status = 'completed' ORDER BY finished_at, rowid",
            (dataset_fingerprint, query_key),
        )
        return dict(rows)

    def get(self, run_id: str) -> RunRecord:
        """The run with this id, or the only one whose id starts with it.

        Raises:
            StoreError: no run, or several runs, match.
        """
        found = self._records("WHERE id LIKE ? ESCAPE '\\'", (_like_prefix(run_id),),
                              "ORDER BY started_at, rowid LIMIT 6")
        if not found:
            raise StoreError(self.path, f"no run {run_id!r} in {str(self.path)!r}", "`workbench runs list` shows the ids")
        exact = [r for r in found if r.id == run_id]
        if exact:
            return exact[0]
        if len(found) > 1:
            raise StoreError(self.path, f"run id prefix {run_id!r} matches several runs ({[r.id for r in found]})",
                             "give more characters")
        return found[0]

    def runs(
        self,
        *,
        dataset: str | None = None,
        status: Status | None = None,
        sweep_id: str | None = None,
        limit: int | None = None,
        dataset_fingerprint: str | None = None,
    ) -> list[RunRecord]:
        """Stored runs, oldest first, optionally filtered by dataset (name or fingerprint), status or sweep."""
        clauses, params = [], []
        for column, value in (("dataset_name", dataset), ("status", status), ("sweep_id", sweep_id),
                              ("dataset_fingerprint", dataset_fingerprint)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        suffix = "ORDER BY started_at, rowid"
        if limit is not None:
            # the newest `limit` runs, still listed oldest first
            where = f"WHERE id IN (SELECT id FROM runs {where} ORDER BY started_at DESC, rowid DESC LIMIT ?)"
            params.append(int(limit))
        return self._records(where, params, suffix)

    def query_records(self, run_id: str) -> list[QueryRecord]:
        """A run's per-query results, in the order the run produced them."""
        rows = self.db.read(
            "SELECT query_id, query, retrieved, chunk_ids, scores, metrics, latency_s, stage_latency_s"
            " FROM query_results WHERE run_id = ? ORDER BY position",
            (run_id,),
        )
        return [
            QueryRecord(query_id=r[0], query=r[1], retrieved=tuple(json.loads(r[2])),
                        chunk_ids=tuple(json.loads(r[3])), scores=tuple(json.loads(r[4])),
                        metrics=json.loads(r[5]), latency_s=r[6], stage_latency_s=json.loads(r[7]))
            for r in rows
        ]

    def result(self, run_id: str) -> ExperimentResult:
        """A completed run as the `ExperimentResult` it was saved from (no recomputation).

        Raises:
            StoreError: no such run, or the run failed (it has no result).
        """
        from ..results import ExperimentResult, QueryRow

        record = self.get(run_id)
        if record.status != "completed":
            raise StoreError(self.path, f"run {record.id} failed ({record.error}), so it has no result",
                             "pick a completed run (`workbench runs list --status completed`)")
        rows = tuple(
            QueryRow(query_id=q.query_id, query=q.query, chunk_ids=q.chunk_ids, retrieved=q.retrieved,
                     scores=q.scores, metrics=dict(q.metrics), latency_s=q.latency_s,
                     stage_latency_s=dict(q.stage_latency_s))
            for q in self.query_records(record.id)
        )
        return ExperimentResult(
            config=record.config, config_hash=record.config_hash, dataset_name=record.dataset_name,
            dataset_fingerprint=record.dataset_fingerprint, rows=rows, aggregates=dict(record.aggregates),
            n_chunks=record.n_chunks, build_s=dict(record.build_s), embedding_stats=dict(record.embedding),
            started_at=record.started_at.isoformat(), finished_at=record.finished_at.isoformat(),
        )

    def per_query(self, run_id: str, metric: str) -> dict[str, float]:
        """query id -> value of `metric` in one run (for `stats.compare_paired`).

        Raises:
            StoreError: the run has no per-query values of `metric`.
        """
        records = self.query_records(run_id)
        values = {r.query_id: r.metrics[metric] for r in records if metric in r.metrics}
        if not values:
            known = sorted({m for r in records for m in r.metrics})
            raise StoreError(self.path, f"run {run_id!r} has no per-query metric {metric!r}; known: {known}")
        return values

    def __len__(self) -> int:
        return int(self.db.read("SELECT COUNT(*) FROM runs")[0][0])
