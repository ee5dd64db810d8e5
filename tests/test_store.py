"""Tests of the SQLite run store: round trips, migrations, concurrency, errors and export."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import sqlite3
import sys

import pandas as pd
import pytest

from workbench.cli import main
from workbench.config import PipelineConfig, config_hash, replace_path
from workbench.experiment import ExperimentResult, QueryRow
from workbench.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    RunStore,
    StoreError,
    default_store_path,
    resolve_store_path,
)

T0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def make_result(size: int = 256, *, offset: float = 0.0, n: int = 4, fingerprint: str = "fp1") -> ExperimentResult:
    """A real ExperimentResult with hand-made rows (no pipeline needed to test the store)."""
    config = replace_path(PipelineConfig(name=f"size{size}"), "chunking.size", size)
    rows = tuple(
        QueryRow(
            query_id=f"q{i}", query=f"query {i}", chunk_ids=(f"d{i}#0", f"d{i+1}#3"),
            retrieved=(f"d{i}", f"d{i+1}"), scores=(2.0 - i / 10, 1.0),
            metrics={"ndcg@10": 0.1 * i + offset, "recall@100": 1.0}, latency_s=0.01 * (i + 1),
        )
        for i in range(n)
    )
    return ExperimentResult(
        config=config, config_hash=config_hash(config), dataset_name="tiny",
        dataset_fingerprint=fingerprint, rows=rows,
        aggregates={"ndcg@10": sum(r.metrics["ndcg@10"] for r in rows) / n, "recall@100": 1.0},
        n_chunks=42, build_s={"chunk": 0.1, "index": 0.2}, embedding_stats={"hits": 3, "misses": 7, "batches": 1},
        started_at=T0.isoformat(), finished_at=(T0 + dt.timedelta(seconds=2.5)).isoformat(),
    )


def test_save_and_read_back_everything(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    result = make_result()
    run_id = store.save(result, costs={"total_usd": 0.4, "per_query_usd": 0.1})
    record = store.get(run_id)
    assert record.status == "completed"
    assert record.config == result.config  # TOML round trip gives back the same config
    assert record.config_hash == result.config_hash
    assert (record.dataset_name, record.dataset_fingerprint) == ("tiny", "fp1")
    assert record.started_at == T0 and record.duration_s == pytest.approx(2.5)
    assert record.aggregates == pytest.approx(result.aggregates)
    assert record.costs == {"per_query_usd": 0.1, "total_usd": 0.4}
    assert record.embedding == {"hits": 3, "misses": 7, "batches": 1}
    assert (record.n_queries, record.n_chunks) == (4, 42)
    assert record.mean_latency_s == pytest.approx(0.025)
    assert record.versions["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert record.versions["workbench"] != "absent"
    rows = store.query_records(run_id)
    assert [r.query_id for r in rows] == ["q0", "q1", "q2", "q3"]
    assert rows[1].retrieved == ("d1", "d2") and rows[1].chunk_ids == ("d1#0", "d2#3")
    assert rows[1].scores == (1.9, 1.0)
    assert store.per_query(run_id, "ndcg@10") == pytest.approx({"q0": 0.0, "q1": 0.1, "q2": 0.2, "q3": 0.3})
    with pytest.raises(StoreError, match="no per-query metric 'mrr@10'.*ndcg@10"):
        store.per_query(run_id, "mrr@10")


def test_find_get_and_list(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    a = store.save(make_result(128))
    b = store.save(make_result(512))
    other = store.save(make_result(128, fingerprint="fp2"))
    assert store.find(config_hash(make_result(128).config), "fp1").id == a
    assert store.find(config_hash(make_result(128).config), "fp2").id == other
    assert store.find("0" * 16, "fp1") is None
    assert store.get(b[:6]).id == b  # unique prefix
    assert [r.id for r in store.runs()] == [a, b, other]
    assert len(store.runs(limit=2)) == 2
    assert store.completed_keys("fp1") == {make_result(128).config_hash: a, make_result(512).config_hash: b}
    with pytest.raises(StoreError, match="no run 'zzz'.*runs list"):
        store.get("zzz")
    assert len(store) == 3


def test_failures_are_kept_but_never_found_as_done(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    config = PipelineConfig()
    failed = store.save_failure(config, config_hash=config_hash(config), dataset_name="tiny",
                                dataset_fingerprint="fp1", started_at=T0, error="boom")
    assert store.get(failed).status == "failed" and store.get(failed).error == "boom"
    assert store.find(config_hash(config), "fp1") is None
    assert store.runs(status="failed")[0].id == failed


def test_schema_is_versioned_and_old_stores_migrate(tmp_path):
    path = tmp_path / "old.sqlite"
    # a store as the first release wrote it: schema version 1 only
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (1, 'then')")
    conn.execute(
        "INSERT INTO runs VALUES ('old1', 'old', 'completed', 'h', 'name = \"old\"\n', 'tiny', 'fp1', '{}',"
        " ?, ?, 0, 0, 0.0, '{}', '{}', '')", (T0.isoformat(), T0.isoformat()))
    conn.commit()
    conn.close()
    store = RunStore(path)
    # 2 sweeps, 3 the trace tables, 4 the one run path's columns and trial claims, 5 message batches, 6 agent trials and runs
    assert store.schema_version == SCHEMA_VERSION == 6
    assert store.get("old1").sweep_id is None  # the old run survived the migration
    assert store.get("old1").query_key == "" and store.get("old1").build_s == {}
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "sweeps", "traces", "spans", "feedback", "claims", "message_batches"} <= tables
    assert store.find("h", "fp1").id == "old1"
    new = store.save(make_result(), sweep_id=store.create_sweep("s", {"space": {}}))
    assert store.get(new).sweep_id is not None


def test_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'future')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="schema version 99, newer than this workbench understands.*upgrade"):
        RunStore(path)
    assert path.read_bytes() == before


def test_foreign_files_are_refused(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable run store"):
        RunStore(junk)
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a workbench run store"):
        RunStore(other)


def test_read_only_store_reads_and_refuses_writes(tmp_path):
    path = tmp_path / "runs.sqlite"
    run_id = RunStore(path).save(make_result())
    store = RunStore(path, read_only=True)
    assert store.get(run_id).aggregates["recall@100"] == 1.0
    with pytest.raises(StoreError, match="read-only.*writable.*Nothing was written"):
        store.save(make_result(512))
    assert len(RunStore(path)) == 1
    with pytest.raises(StoreError, match="no run store at"):
        RunStore(tmp_path / "missing.sqlite", read_only=True)


def test_locked_store_gives_a_clear_error_and_loses_nothing(tmp_path):
    path = tmp_path / "runs.sqlite"
    store = RunStore(path, timeout_s=0.2)
    first = store.save(make_result())
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        with pytest.raises(StoreError, match="locked.*0.2s.*Nothing was written"):
            store.save(make_result(512))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [r.id for r in store.runs()] == [first]
    store.save(make_result(512))  # the lock is gone: writing works again
    assert len(store) == 2


def test_store_location_from_url_and_environment(tmp_path, monkeypatch):
    assert resolve_store_path(f"sqlite:///{tmp_path}/a.sqlite") == tmp_path / "a.sqlite"
    assert str(resolve_store_path("sqlite:///rel/a.sqlite")) == "rel/a.sqlite"
    with pytest.raises(StoreError, match="'postgresql'.*only sqlite"):
        resolve_store_path("postgresql://host/db")
    monkeypatch.setenv("WORKBENCH_STORE", str(tmp_path / "env.sqlite"))
    assert default_store_path() == tmp_path / "env.sqlite"
    RunStore().save(make_result())
    assert (tmp_path / "env.sqlite").exists()
    monkeypatch.delenv("WORKBENCH_STORE")
    assert default_store_path().name == "runs.sqlite" and default_store_path().parent.name == "data"


def _writer(path: str, worker: int, count: int) -> None:
    store = RunStore(path, timeout_s=60)
    for i in range(count):
        store.save(make_result(64 + worker * 1000 + i, n=20))


def test_concurrent_writers_in_several_processes_lose_nothing(tmp_path):
    path = tmp_path / "runs.sqlite"
    RunStore(path).close()
    ctx = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = RunStore(path)
    runs = store.runs()
    assert len(runs) == 60
    assert len({r.config_hash for r in runs}) == 60
    assert all(len(store.query_records(r.id)) == 20 for r in runs)


def test_cli_runs_list_compare_pareto_export(tmp_path, capsys):
    path = str(tmp_path / "runs.sqlite")
    store = RunStore(path)
    a = store.save(make_result(128, n=40))
    b = store.save(make_result(512, n=40, offset=0.05), costs={"per_query_usd": 0.001, "total_usd": 0.04})
    assert main(["runs", "list", "--store", path]) == 0
    out = capsys.readouterr().out
    assert a in out and b in out and "ndcg@10" in out
    assert main(["runs", "compare", a, b[:8], "--store", path, "--metric", "ndcg@10", "--resamples", "500"]) == 0
    out = capsys.readouterr().out
    assert "ndcg@10:" in out and "diff +0.0500" in out and "95% CI +0.0500, +0.0500" in out
    assert main(["runs", "pareto", "--store", path]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 runs on the frontier" in out  # b is better but costs more: both stay
    assert main(["runs", "export", str(tmp_path / "all.csv"), "--store", path]) == 0
    assert len(pd.read_csv(tmp_path / "all.csv")) == 2
    assert main(["runs", "export", str(tmp_path / "q.parquet"), "--level", "queries", "--ids", a, "--store", path]) == 0
    assert len(pd.read_parquet(tmp_path / "q.parquet")) == 40
    capsys.readouterr()
    assert main(["runs", "compare", a, "nope", "--store", path]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["runs", "export", "--store", path]) == 2
    assert "--mlflow" in capsys.readouterr().err
    # an empty history is not an error (issue 13): a missing store and an empty one both say so
    assert main(["runs", "list", "--store", str(tmp_path / "missing.sqlite")]) == 0
    assert "no runs yet" in capsys.readouterr().out
    assert not (tmp_path / "missing.sqlite").exists()  # listing creates nothing
    RunStore(tmp_path / "empty.sqlite").close()
    assert main(["runs", "list", "--store", str(tmp_path / "empty.sqlite")]) == 0
    assert "no runs yet" in capsys.readouterr().out
