"""The run store: every run, sweep, trace and trial claim in one SQLite file.

`schema` says where the file lives and what it holds (migrations); `records` the frozen
records it hands back; `runstore` the runs themselves; `claims` how processes sharing a store
compute each trial once. The trace tables are read and written by `workbench.tracing.store`.
"""

from __future__ import annotations

from .claims import Claims, ClaimState, TrialKey
from .records import QueryRecord, RunRecord, Status, environment_versions
from .runstore import RunStore
from .schema import (
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    StoreError,
    default_store_path,
    existing_store_path,
    open_store,
    resolve_store_path,
)

__all__ = [
    "StoreError",
    "RunRecord",
    "QueryRecord",
    "Status",
    "RunStore",
    "Claims",
    "ClaimState",
    "TrialKey",
    "MIGRATIONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "default_store_path",
    "resolve_store_path",
    "existing_store_path",
    "open_store",
    "environment_versions",
]
