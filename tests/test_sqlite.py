"""The one SQLite layer on real files: migrations, caches moved aside, stores refused, fork safety, races."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from workbench.sqlite import Database, Schema, SQLiteError, connect, write

SCHEMA = Schema("test store", (
    ("CREATE TABLE items (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",),
    ("ALTER TABLE items ADD COLUMN size INTEGER NOT NULL DEFAULT 0", "CREATE INDEX items_by_size ON items (size)"),
))
CACHE = Schema("test cache", (
    ("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",),  # adopts older files
    SCHEMA.migrations[1],
), adopt=frozenset({"items"}))


def _count(db: Database) -> int:
    return db.read("SELECT COUNT(*) FROM items")[0][0]


def test_migrations_run_in_order_once_and_newer_files_are_refused_untouched(tmp_path):
    path = tmp_path / "s.sqlite"
    db = Database(path, SCHEMA, kind="store")
    assert db.version == 2
    db.transact("add", lambda conn: conn.execute("INSERT INTO items (text, size) VALUES ('a', 3)"))
    db.close()
    again = Database(path, SCHEMA, kind="store")  # nothing reapplied: the row and the version stay
    assert again.version == 2 and again.read("SELECT text, size FROM items") == [("a", 3)]
    assert [r[0] for r in again.read("SELECT version FROM schema_migrations ORDER BY version")] == [1, 2]
    assert again.read("PRAGMA journal_mode") == [("wal",)]
    again.close()
    older = Database(tmp_path / "old.sqlite", Schema("test store", SCHEMA.migrations[:1]), kind="store")
    older.transact("add", lambda conn: conn.execute("INSERT INTO items (text) VALUES ('kept')"))
    older.close()
    moved = Database(tmp_path / "old.sqlite", SCHEMA, kind="store")  # migrated forward, data kept
    assert moved.read("SELECT text, size FROM items") == [("kept", 0)]
    moved.close()
    for kind in ("store", "cache"):
        newer = tmp_path / f"newer-{kind}.sqlite"
        Database(newer, Schema("x", SCHEMA.migrations + (("CREATE TABLE extra (x)",),)), kind=kind).close()
        before = newer.read_bytes()
        with pytest.raises(SQLiteError, match="schema version 3, newer than this workbench understands") as caught:
            Database(newer, SCHEMA if kind == "store" else CACHE, kind=kind)
        assert newer.read_bytes() == before and caught.value.path == str(newer) and "upgrade" in caught.value.fix


@pytest.mark.parametrize("content", [b"", b"not a database at all " * 300, None])
def test_a_bad_store_is_refused_and_left_as_it_was(tmp_path, content):
    path = tmp_path / "s.sqlite"
    if content is None:  # a SQLite file of something else
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE theirs (x)")
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    expected = {b"": "not a test store: .* is empty", None: "not a workbench test store"}.get(content,
                                                                                              "not a readable test store")
    with pytest.raises(SQLiteError, match=expected):
        Database(path, SCHEMA, kind="store")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sqlite"]  # no -wal, nothing moved


def test_an_unreadable_cache_is_moved_aside_on_open_and_in_use(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"garbage" * 1000)
    with caplog.at_level(logging.WARNING, logger="workbench.sqlite"):
        db = Database(path, CACHE, kind="cache")
    assert "test cache" in caplog.text and "moved it to" in caplog.text
    aside = list(tmp_path.glob("c.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"garbage" * 1000  # kept for inspection
    db.transact("add", lambda conn: conn.executemany("INSERT INTO items (text) VALUES (?)",
                                                     [(f"t{i}" * 200,) for i in range(200)]))
    db.close()
    data = bytearray(path.read_bytes())
    data[4096 : 4096 * 3] = b"\xff" * 8192  # wreck b-tree pages of a file that opens fine
    path.write_bytes(bytes(data))
    db = Database(path, CACHE, kind="cache")
    assert _count(db) == 0  # the read hit the corruption: moved aside, and a new empty cache answers
    db.transact("add", lambda conn: conn.execute("INSERT INTO items (text) VALUES ('fresh')"))
    assert _count(db) == 1
    assert len([p for p in tmp_path.glob("c.sqlite.corrupt-*") if not p.name.endswith("-wal")]) == 2  # none overwritten
    legacy = tmp_path / "legacy.sqlite"  # an unversioned file with only adopted tables is upgraded in place
    with sqlite3.connect(legacy) as conn:
        conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
        conn.execute("INSERT INTO items (text) VALUES ('old')")
    assert Database(legacy, CACHE, kind="cache").read("SELECT text, size FROM items") == [("old", 0)]


def test_a_write_is_one_transaction(tmp_path):
    db = Database(tmp_path / "s.sqlite", SCHEMA, kind="store")

    def half(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO items (text) VALUES ('first')")
        raise RuntimeError("stop halfway")

    with pytest.raises(RuntimeError, match="halfway"):
        db.transact("add", half)
    assert _count(db) == 0
    conn = connect(tmp_path / "s.sqlite", kind="store", timeout_s=0.1)
    with pytest.raises(ZeroDivisionError), write(conn):
        conn.execute("INSERT INTO items (text) VALUES ('x')")
        1 / 0  # noqa: B018
    assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
    holder = connect(tmp_path / "s.sqlite", kind="store")
    holder.execute("BEGIN IMMEDIATE")
    slow = Database(tmp_path / "s.sqlite", SCHEMA, kind="store", timeout_s=0.2)
    with pytest.raises(SQLiteError, match=r"locked.*0.2s.*Nothing was written"):
        slow.transact("add", lambda c: c.execute("INSERT INTO items (text) VALUES ('y')"))
    holder.execute("ROLLBACK")


def _child_writes(db: Database, n: int) -> None:
    for i in range(n):
        db.transact("add", lambda conn, i=i: conn.execute("INSERT INTO items (text) VALUES (?)", (f"child{i}",)))


def test_a_connection_never_crosses_fork(tmp_path):
    db = Database(tmp_path / "s.sqlite", SCHEMA, kind="store")
    db.transact("add", lambda conn: conn.execute("INSERT INTO items (text) VALUES ('parent')"))
    parent_conn = db._connection()
    children = [multiprocessing.get_context("fork").Process(target=_child_writes, args=(db, 20)) for _ in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [c.exitcode for c in children] == [0, 0, 0]
    assert db._connection() is parent_conn  # the parent's connection still works, untouched by the children
    assert _count(db) == 61


def _open_new(path: str) -> int:
    return Database(path, SCHEMA, kind="store").version


def test_processes_creating_one_new_store_at_once_never_see_it_half_made(tmp_path):
    for attempt in range(3):
        path = str(tmp_path / f"new{attempt}.sqlite")
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            assert pool.map(_open_new, [path] * 8) == [2] * 8
        db = Database(path, SCHEMA, kind="store")
        assert [r[0] for r in db.read("SELECT version FROM schema_migrations")] == [1, 2]
    assert not list(tmp_path.glob(".*.new*"))  # no build files left behind


def test_paths_with_a_nul_or_a_folder_are_refused(tmp_path):
    with pytest.raises(SQLiteError, match="holds a NUL character"):
        Database(f"{tmp_path}/a\0b", SCHEMA, kind="cache")
    with pytest.raises(SQLiteError, match="is a folder"):
        Database(tmp_path, SCHEMA, kind="store")
    memory = Database(":memory:", SCHEMA, kind="cache")
    memory.transact("add", lambda conn: conn.execute("INSERT INTO items (text) VALUES ('m')"))
    assert _count(memory) == 1 and not list(Path.cwd().glob(":memory:*"))
