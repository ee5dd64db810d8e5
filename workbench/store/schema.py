"""The run store file: where it lives, and its schema (runs, sweeps, traces, trial claims) as migrations.

One SQLite file (`data/runs.sqlite` by default; `$WORKBENCH_STORE` or an explicit path or
`sqlite:///` URL otherwise) holds every run and, since migration 3, the trace tables
(`workbench.tracing.store` reads and writes those). It opens through `workbench.sqlite` as a
*store*: WAL, queued writers, and anything unreadable, empty or foreign is refused, not replaced.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..io import DATA_DIR
from ..sqlite import Database, Schema, SQLiteError

__all__ = [
    "StoreError",
    "MIGRATIONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "default_store_path",
    "resolve_store_path",
    "existing_store_path",
    "open_store",
]

StoreError = SQLiteError
"""The run store cannot do what was asked; the message names the file and the fix."""

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
    (  # 3: traces, their spans and feedback (IF NOT EXISTS: the trace store used to add them itself)
        """CREATE TABLE IF NOT EXISTS traces (
            trace_id TEXT PRIMARY KEY,
            operation TEXT NOT NULL,
            started_at TEXT NOT NULL,
            start_ns INTEGER NOT NULL,
            duration_s REAL NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
            error TEXT NOT NULL DEFAULT '',
            user_tag TEXT NOT NULL DEFAULT '',
            feature_tag TEXT NOT NULL DEFAULT '',
            config_name TEXT NOT NULL DEFAULT '',
            config_hash TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            query TEXT NOT NULL DEFAULT '',
            answer TEXT NOT NULL DEFAULT '',
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            ttft_s REAL,
            output_tokens_per_s REAL,
            citation_validity REAL,
            cited_doc_ids TEXT NOT NULL DEFAULT '[]'
        )""",
        "CREATE INDEX IF NOT EXISTS traces_by_start ON traces (start_ns)",
        """CREATE TABLE IF NOT EXISTS spans (
            span_id TEXT PRIMARY KEY,
            trace_id TEXT NOT NULL,
            parent_id TEXT,
            name TEXT NOT NULL,
            start_ns INTEGER NOT NULL,
            end_ns INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
            error TEXT NOT NULL DEFAULT '',
            attributes TEXT NOT NULL,
            events TEXT NOT NULL DEFAULT '[]'
        )""",
        "CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id)",
        """CREATE TABLE IF NOT EXISTS feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            trace_id TEXT NOT NULL,
            score INTEGER NOT NULL CHECK (score IN (-1, 1)),
            comment TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS feedback_by_trace ON feedback (trace_id)",
    ),
    (  # 4: the one run path (which queries a run answered, build and stage timings) and trial claims
        "ALTER TABLE runs ADD COLUMN query_key TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE runs ADD COLUMN build_s TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE query_results ADD COLUMN stage_latency_s TEXT NOT NULL DEFAULT '{}'",
        "CREATE INDEX runs_by_request ON runs (config_hash, dataset_fingerprint, query_key, status)",
        """CREATE TABLE claims (
            config_hash TEXT NOT NULL,
            dataset_fingerprint TEXT NOT NULL,
            query_key TEXT NOT NULL,
            owner_host TEXT NOT NULL,
            owner_pid INTEGER NOT NULL,
            owner_token TEXT NOT NULL,
            claimed_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            PRIMARY KEY (config_hash, dataset_fingerprint, query_key)
        )""",
    ),
    (  # 5: Message Batches in flight by job key (workbench.batches resumes them after a restart)
        """CREATE TABLE message_batches (
            job_key TEXT PRIMARY KEY,
            batch_id TEXT NOT NULL,
            n_requests INTEGER NOT NULL,
            created_at REAL NOT NULL,
            finished_at REAL
        )""",
    ),
    (  # 6: agent evaluations (workbench.evaluation.agents): each finished trial as it ends, then the run
        """CREATE TABLE agent_trials (
            config_key TEXT NOT NULL,
            task_id TEXT NOT NULL,
            trial INTEGER NOT NULL,
            status TEXT NOT NULL,
            success INTEGER NOT NULL,
            result TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            PRIMARY KEY (config_key, task_id, trial)
        )""",
        """CREATE TABLE agent_runs (
            id TEXT PRIMARY KEY,
            config_key TEXT NOT NULL,
            config TEXT NOT NULL,
            task_set TEXT NOT NULL,
            summary TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX agent_runs_by_key ON agent_runs (config_key)",
    ),
)
SCHEMA = Schema("run store", MIGRATIONS)
SCHEMA_VERSION = SCHEMA.version


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
            raise StoreError(text, f"run store URL {text!r} uses {scheme!r}; only sqlite:///PATH URLs (or plain "
                             "paths) are supported")
        # sqlite:///relative/path and sqlite:////absolute/path, as in SQLAlchemy
        return Path(rest[1:] if rest.startswith("/") else rest)
    return Path(text)


def default_store_path() -> Path:
    """`$WORKBENCH_STORE` if set (path or `sqlite:///` URL), else `data/runs.sqlite` in the repo."""
    explicit = os.environ.get("WORKBENCH_STORE")
    return resolve_store_path(explicit) if explicit else DATA_DIR / "runs.sqlite"


def existing_store_path(location: str | Path) -> Path:
    """The path of a run store that already exists (or is the configured default), for a typed-in location.

    Nothing is created: a UI text box must not make folders or files out of a typo.

    Raises:
        StoreError: an empty location, a NUL in it, a URL of another database, a missing folder
            or file, or a folder given as the file.
    """
    text = str(location).strip()
    if not text:
        raise StoreError(text, "no run store path given", f"type a path such as {str(default_store_path())!r}")
    if "\0" in text:
        raise StoreError(text.replace("\0", "\\0"), f"the run store path {text.replace(chr(0), '')!r} holds a NUL "
                         "character", "type the path again without it")
    path = resolve_store_path(text)
    if path.expanduser().resolve() == default_store_path().resolve():
        return path  # the configured store: created on first use
    if path.is_dir():
        raise StoreError(path, f"{str(path)!r} is a folder, not a run store file", "give the path of a .sqlite file")
    if not path.is_file():
        where = "its folder does not exist" if not path.parent.is_dir() else "there is no such file"
        url = f" (read from the URL {text!r})" if "://" in text else ""
        raise StoreError(path, f"no run store at {str(path)!r}{url}: {where}",
                         f"give the path of an existing run store, or use the configured one "
                         f"({str(default_store_path())!r}); nothing was created")
    return path


def open_store(location: str | Path | None = None, *, timeout_s: float = 30.0, read_only: bool = False) -> Database:
    """The run store database at `location` (default: `default_store_path()`), migrated to this schema.

    Raises:
        StoreError: the file is not a run store, is newer than this workbench, cannot be opened,
            or (read-only) does not exist or needs a migration.
    """
    path = resolve_store_path(location)
    if read_only and not path.exists():
        raise StoreError(path, f"no run store at {str(path)!r}", "check the path or run a sweep first")
    return Database(path, SCHEMA, kind="store", timeout_s=timeout_s, read_only=read_only)
