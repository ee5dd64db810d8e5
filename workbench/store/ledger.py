"""In-flight Message Batches by job key, in the run store (`message_batches`, migration 5).

`workbench.batches.run_batch` takes any `Ledger`; this one keeps the batch id in the run store
before the first poll, so a process that restarts while its batch is in flight resumes it.
"""

from __future__ import annotations

import time
from pathlib import Path

from .schema import open_store

__all__ = ["BatchLedger"]


class BatchLedger:
    """In-flight batch ids by job key, in the run store (`message_batches` table).

    Args:
        location: the run store path (default: `$WORKBENCH_STORE` or data/runs.sqlite).
    """

    def __init__(self, location: str | Path | None = None) -> None:
        self._db = open_store(location)

    def recall(self, key: str) -> str | None:
        """The id of the batch in flight for `key`, if one was created and not yet read."""
        rows = self._db.read("SELECT batch_id FROM message_batches WHERE job_key = ? AND finished_at IS NULL", (key,))
        return rows[0][0] if rows else None

    def remember(self, key: str, batch_id: str, n_requests: int) -> None:
        """Keep `batch_id` as the batch in flight for `key` (replacing a finished one)."""
        self._db.transact("record a message batch", lambda conn: conn.execute(
            "INSERT OR REPLACE INTO message_batches (job_key, batch_id, n_requests, created_at, finished_at) "
            "VALUES (?, ?, ?, ?, NULL)", (key, batch_id, n_requests, time.time())))

    def finish(self, key: str) -> None:
        """Mark the batch of `key` read: a later run with the same key creates a new batch."""
        self._db.transact("finish a message batch", lambda conn: conn.execute(
            "UPDATE message_batches SET finished_at = ? WHERE job_key = ?", (time.time(), key)))

    def close(self) -> None:
        """Close the store."""
        self._db.close()
