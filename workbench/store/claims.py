"""Claims on trials: take a trial in a transaction before computing it, so each is computed once.

Several processes may run the same sweep against one store. Each one, before it computes a
trial, claims the trial's key (config hash, dataset fingerprint, queries) in a `BEGIN IMMEDIATE`
transaction that also looks for a finished run: exactly one process gets "claimed", the others
"done" (reuse the run) or "taken" (wait, then reuse it). A claim names its owner (host, pid, a
token per thread) and carries a heartbeat; a claim whose owner is dead (same host) or whose heartbeat
stopped more than `stale_s` ago is retaken, so a killed sweep never blocks the next one.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from ..sqlite import Database

__all__ = ["TrialKey", "Claims", "ClaimState"]

ClaimState = Literal["claimed", "done", "taken"]


@dataclass(frozen=True)
class TrialKey:
    """What makes two runs the same request: config hash, dataset fingerprint, query selection."""

    config_hash: str
    dataset_fingerprint: str
    query_key: str = ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


class Claims:
    """This process's claims in one run store.

    Args:
        db: the run store database.
        stale_s: a claim whose heartbeat is older than this is retaken (owners beat every
            `stale_s / 10` seconds inside `keep_alive`).
    """

    def __init__(self, db: Database, *, stale_s: float = 60.0) -> None:
        self.db = db
        self.stale_s = stale_s
        self.host = socket.gethostname()
        self._local = threading.local()

    @property
    def token(self) -> str:
        """The owner token of this thread of this process (a forked child, or another thread, has its own)."""
        if getattr(self._local, "pid", None) != os.getpid():
            self._local.pid, self._local.token = os.getpid(), uuid.uuid4().hex
        return self._local.token

    def claim(self, key: TrialKey) -> tuple[ClaimState, str]:
        """Claim `key` unless it is finished or held by a live owner.

        Returns:
            ("done", run id) when a completed run exists; ("taken", "") when another live
            process holds the claim; ("claimed", "") when this process now holds it.
        """
        params = (key.config_hash, key.dataset_fingerprint, key.query_key)
        token, pid, now = self.token, os.getpid(), time.time()

        def take(conn) -> tuple[ClaimState, str]:  # type: ignore[no-untyped-def]
            done = conn.execute(
                "SELECT id FROM runs WHERE config_hash = ? AND dataset_fingerprint = ? AND query_key = ?"
                " AND status = 'completed' ORDER BY finished_at DESC, rowid DESC LIMIT 1", params).fetchone()
            if done:
                return "done", done[0]
            held = conn.execute(
                "SELECT owner_host, owner_pid, owner_token, heartbeat_at FROM claims"
                " WHERE config_hash = ? AND dataset_fingerprint = ? AND query_key = ?", params).fetchone()
            if held and held[2] != token and not self._stale(held[0], held[1], held[3], now):
                return "taken", ""
            conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (*params, self.host, pid, token, now, now))
            return "claimed", ""

        return self.db.transact("claim a trial", take)

    def _stale(self, host: str, pid: int, heartbeat_at: float, now: float) -> bool:
        if now - heartbeat_at > self.stale_s:
            return True
        return host == self.host and not _alive(pid)

    def release(self, key: TrialKey) -> None:
        """Drop this process's claim on `key` (after its run, or its failure, is stored)."""
        self.db.transact("release a claim", lambda conn: conn.execute(
            "DELETE FROM claims WHERE config_hash = ? AND dataset_fingerprint = ? AND query_key = ?"
            " AND owner_token = ?", (key.config_hash, key.dataset_fingerprint, key.query_key, self.token)))

    def beat(self, token: str | None = None) -> None:
        """Refresh the heartbeat of every claim this thread (or the owner of `token`) holds."""
        token = token or self.token
        self.db.transact("refresh its claims", lambda conn: conn.execute(
            "UPDATE claims SET heartbeat_at = ? WHERE owner_token = ?", (time.time(), token)))

    @contextmanager
    def keep_alive(self) -> Iterator[None]:
        """Beat for this thread's claims in a background thread while the body runs (the body releases them)."""
        stop, token = threading.Event(), self.token

        def loop() -> None:
            while not stop.wait(self.stale_s / 10):
                try:
                    self.beat(token)
                except Exception:  # a locked store delays one beat; the next one retries
                    continue

        thread = threading.Thread(target=loop, name="workbench-claims", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
