"""The one SQLite layer: connections, write transactions, schemas with migrations, and errors.

Every SQLite file workbench keeps (the run store with its trace tables, the embedding cache,
the response cache) opens through `Database`:

- WAL mode, so readers never wait for a writer; a busy timeout, so concurrent writers queue
  instead of failing; `BEGIN IMMEDIATE` write transactions (`write`), which take the write lock
  up front, so two writers never deadlock upgrading a read lock.
- One connection per process: a connection opened before `fork()` is never used in the child
  (the child opens its own), and one lock per `Database` serialises its threads.
- A schema is an ordered list of migrations (each a tuple of SQL statements), recorded in a
  `schema_migrations` table: a file is moved forward on open, and a file from a newer
  workbench is refused untouched. A new file is built beside its path and linked into place
  once migrated, so no other process ever sees it empty.

The two kinds of file fail differently. A *cache* can always be rebuilt: an unreadable cache
is moved aside (`<name>.corrupt-<time>`, kept for inspection), a warning is logged and a new
one is started, even in the middle of an operation. A *store* holds the user's history: an
unreadable, empty or foreign store is refused with `SQLiteError`, and the file is not changed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = ["Kind", "Schema", "SQLiteError", "Database", "connect", "write", "MEMORY"]

log = logging.getLogger(__name__)

Kind = Literal["cache", "store"]
MEMORY = ":memory:"
T = TypeVar("T")


class SQLiteError(RuntimeError):
    """A SQLite file cannot do what was asked. `path` names the file, `fix` what to do about it."""

    def __init__(self, path: str | Path, problem: str, fix: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}" if fix else problem)


@dataclass(frozen=True)
class Schema:
    """What a file holds: its name in messages and its migrations, oldest first.

    Migration i moves the file from version i to i + 1, in one transaction with its record.
    Append new migrations; never edit a released one (files in the wild already ran it).
    `adopt` names the tables of an older, unversioned file of this schema (version 0) that
    the first migration takes over; any other table in an unversioned file makes it foreign.
    """

    name: str
    migrations: tuple[tuple[str, ...], ...]
    adopt: frozenset[str] = frozenset()

    @property
    def version(self) -> int:
        """The version the newest migration reaches."""
        return len(self.migrations)


def connect(
    path: str | Path, *, kind: Kind, timeout_s: float = 30.0, read_only: bool = False
) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions via `write`), WAL, busy timeout, foreign keys.

    A store commits with `synchronous=FULL` (a finished run survives a power cut); a cache with
    `NORMAL` (a lost last write is only recomputed).
    """
    if read_only:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s,
                               isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        if str(path) != MEMORY:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if kind == 'store' else 'NORMAL'}")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: `BEGIN IMMEDIATE`, then COMMIT, or ROLLBACK if the body raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class _Unreadable(Exception):
    """Internal: the file is not a readable database of the schema (a cache gets moved aside)."""


class Database:
    """One SQLite file of one schema, shared safely by this process's threads and by other processes.

    Args:
        path: the file, or ":memory:".
        schema: its tables, as migrations.
        kind: "cache" (moved aside and restarted when unreadable) or "store" (refused).
        timeout_s: how long a write waits for another writer's lock.
        read_only: open without write access; the file must exist at the current version.

    Raises:
        SQLiteError: a store that is unreadable, empty, foreign, newer than this workbench or
            (read-only) missing or behind; a path with a NUL; a folder that cannot be created.
    """

    def __init__(
        self, path: str | Path, schema: Schema, *, kind: Kind, timeout_s: float = 30.0, read_only: bool = False
    ) -> None:
        if "\0" in str(path):
            raise SQLiteError(str(path).replace("\0", "\\0"), f"the {schema.name} path {str(path)!r} holds a NUL "
                              "character", "type the path again without it")
        self.path = Path(path)
        self.schema = schema
        self.kind = kind
        self.timeout_s = timeout_s
        self.read_only = read_only
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        with self._lock:
            self._open()

    @property
    def memory(self) -> bool:
        """Whether this is an in-memory database (lost when closed)."""
        return str(self.path) == MEMORY

    # -- opening --------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._check_file()
            self._migrate()
        except _Unreadable as exc:
            if self.kind == "store":
                raise SQLiteError(self.path, str(exc), "move it aside or choose another path") from None
            self._move_aside(str(exc))
            self._migrate()

    def _check_file(self) -> None:
        if self.memory:
            return
        empty = self.path.is_file() and self.path.stat().st_size == 0
        if empty and (self.kind == "store" or self.read_only):  # read-only too: never "version 0"
            raise SQLiteError(
                self.path, f"not a {self.schema.name}: {str(self.path)!r} is empty (0 bytes; truncated?)",
                "delete it to start a new one, or choose another path")
        if self.read_only:
            if not self.path.is_file():
                raise SQLiteError(self.path, f"no {self.schema.name} at {str(self.path)!r}",
                                  "check the path")
            return
        if self.path.exists() and not self.path.is_file():
            raise SQLiteError(self.path, f"{str(self.path)!r} is a folder, not a {self.schema.name}",
                              "choose a file path")
        if empty:  # an empty cache: start it afresh
            self.path.unlink()
        if not self.path.exists():
            self._create()
        else:
            self._probe()

    def _probe(self) -> None:
        """Check an existing file on a read-only connection first: a foreign or newer file is left unchanged
        (opening it for writing would switch it to WAL mode)."""
        with self._errors("read its schema version"):
            probe = connect(self.path, kind=self.kind, timeout_s=self.timeout_s, read_only=True)
            try:
                self._check_not_newer(self.version_of(probe))
            finally:
                probe.close()

    def _create(self) -> None:
        """Build a migrated file beside the path and link it into place (never seen half-made)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SQLiteError(self.path, f"cannot create the folder of {self.schema.name} {str(self.path)!r} "
                              f"({exc})", "choose a writable location") from exc
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.new")
        try:
            with self._errors("create it"):
                conn = connect(tmp, kind=self.kind, timeout_s=self.timeout_s)
                try:
                    self._apply_migrations(conn)
                finally:
                    conn.close()  # checkpoints the WAL into the file; WAL mode stays set in it
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass  # another process created it first: use theirs
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{tmp}{suffix}").unlink(missing_ok=True)

    def _move_aside(self, why: str) -> None:
        self._drop_connection()
        stamp = f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        aside, n = self.path.with_name(stamp), 1
        while aside.exists():  # never overwrite an earlier corrupt copy
            aside, n = self.path.with_name(f"{stamp}-{n}"), n + 1
        log.warning("%s %s is unreadable (%s); moved it to %s and started a new one",
                    self.schema.name, self.path, why, aside)
        if self.path.exists():
            os.replace(self.path, aside)
        wal = Path(f"{self.path}-wal")
        if wal.exists():
            os.replace(wal, Path(f"{aside}-wal"))
        Path(f"{self.path}-shm").unlink(missing_ok=True)
        self._check_file()

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross fork(): the child opens its own and leaves the parent's alone.
        if self._conn is None or self._pid != os.getpid():
            with self._errors("open it"):
                self._conn = connect(self.path, kind=self.kind, timeout_s=self.timeout_s, read_only=self.read_only)
            self._pid = os.getpid()
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None

    # -- schema ---------------------------------------------------------------------------

    def version_of(self, conn: sqlite3.Connection) -> int:
        """The schema version recorded in the file (0 for a new or unversioned file)."""
        has_log = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
        ).fetchone()
        if not has_log:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables - self.schema.adopt:
                raise _Unreadable(
                    f"not a {self.schema.name}: {str(self.path)!r} is a SQLite file but not a workbench "
                    f"{self.schema.name} (it has tables {sorted(tables)[:5]} and no schema_migrations table)")
            return 0
        return int(conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0)

    @property
    def version(self) -> int:
        """The schema version of the file."""
        return self._run("read its schema version", self.version_of)

    def _check_not_newer(self, version: int) -> None:
        if version > self.schema.version:
            raise SQLiteError(
                self.path, f"{self.schema.name} {str(self.path)!r} has schema version {version}, newer than this "
                f"workbench understands ({self.schema.version})",
                "upgrade workbench (pip install -U workbench) or use another file. The file was not changed.")

    def _apply_migrations(self, conn: sqlite3.Connection) -> None:
        with write(conn):
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations"
                         " (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            version = self.version_of(conn)  # another process may have migrated meanwhile
            self._check_not_newer(version)
            for number in range(version + 1, self.schema.version + 1):
                for statement in self.schema.migrations[number - 1]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)",
                             (number, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))

    def _migrate(self) -> None:
        with self._errors("read its schema version"):
            conn = self._connection()
            version = self.version_of(conn)
            self._check_not_newer(version)
            if version == self.schema.version:
                return
            if self.read_only:
                raise SQLiteError(
                    self.path, f"{self.schema.name} {str(self.path)!r} has schema version {version} and needs "
                    f"migrating to {self.schema.version}", "open it once without read_only to upgrade it")
        with self._errors("migrate its schema"):
            self._apply_migrations(self._connection())

    # -- errors ---------------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        name, where = self.schema.name, str(self.path)
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if "readonly" in text or "read-only" in text:
                raise SQLiteError(self.path, f"{name} {where!r} is read-only, so it cannot {action}",
                                  "make the file and its folder writable, or point --store / WORKBENCH_STORE "
                                  "at a writable file. Nothing was written.") from exc
            if "locked" in text or "busy" in text:
                raise SQLiteError(self.path, f"{name} {where!r} is locked: another process held it for more "
                                  f"than {self.timeout_s:g}s, so this process could not {action}",
                                  "wait for that process or raise the timeout. Nothing was written.") from exc
            if "unable to open" in text:
                raise SQLiteError(self.path, f"cannot open {name} {where!r} ({exc})",
                                  "check that its folder exists and is writable, or choose another path") from exc
            if "malformed" in text or "not a database" in text or "corrupt" in text:
                raise _Unreadable(f"not a {name}: {where!r} is not a readable {name} ({exc})") from exc
            raise SQLiteError(self.path, f"{name} {where!r} failed to {action}: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # "file is not a database", "disk image is malformed", ...
            raise _Unreadable(f"not a {name}: {where!r} is not a readable {name} ({exc})") from exc

    def _run(self, action: str, body: Callable[[sqlite3.Connection], T]) -> T:
        """`body` on this process's connection; a cache found unreadable is restarted and `body` rerun."""
        with self._lock:
            try:
                with self._errors(action):
                    return body(self._connection())
            except _Unreadable as exc:
                if self.kind == "store":
                    raise SQLiteError(self.path, str(exc), "move it aside or choose another path") from None
                self._move_aside(str(exc))
                self._migrate()
            with self._errors(action):
                return body(self._connection())

    # -- use ------------------------------------------------------------------------------

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of one query (a cache found unreadable reads as a new, empty one)."""
        return self._run("read", lambda conn: conn.execute(sql, params).fetchall())

    def transact(self, action: str, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body(conn)` in one write transaction and return what it returns.

        `action` completes "could not ..." in error messages. A cache found unreadable is moved
        aside and `body` runs again on the new one; a store raises `SQLiteError`.
        """

        def transaction(conn: sqlite3.Connection) -> T:
            with write(conn):
                return body(conn)

        return self._run(action, transaction)

    def close(self) -> None:
        """Close this process's connection (a later call reopens it)."""
        with self._lock:
            self._drop_connection()
