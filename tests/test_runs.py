"""The one run path: every run recorded, an identical request served from the store, across processes."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from test_sweep import BASE, write_tiny_beir
from workbench.cli import main
from workbench.config import replace_path
from workbench.datasets import load_dataset
from workbench.runs import evaluate, query_key
from workbench.store import RunStore, StoreError

ROOT = Path(__file__).resolve().parent.parent
CONFIG = replace_path(BASE, "chunking.size", 64)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return write_tiny_beir(tmp_path_factory.mktemp("data") / "tiny")


def test_a_run_is_recorded_whole_and_an_identical_request_is_served(tmp_path, tiny_dir, caplog):
    dataset = load_dataset(tiny_dir)
    store = RunStore(tmp_path / "runs.sqlite")
    first = evaluate(CONFIG, dataset, store=store)
    assert not first.cached and len(store) == 1
    record = store.get(first.run_id)
    assert record.config == CONFIG and record.dataset_fingerprint == dataset.fingerprint()
    assert record.n_queries == len(dataset.evaluated_queries) > 0
    assert set(record.build_s) == {"chunk", "index"} and record.versions["workbench"] != "absent"
    with caplog.at_level(logging.INFO, logger="workbench.runs"):
        again = evaluate(CONFIG, dataset, store=RunStore(tmp_path / "runs.sqlite"))
    assert again.cached and again.run_id == first.run_id and len(store) == 1
    assert f"served from the run store (run {first.run_id})" in caplog.text
    assert again.describe() == f"served from the run store (run {first.run_id})"
    # the stored result is the computed one: rows, rankings, metrics, stage timings, stats
    assert again.result == first.result


def test_the_queries_asked_are_part_of_the_request(tmp_path, tiny_dir):
    dataset = load_dataset(tiny_dir)
    store = RunStore(tmp_path / "runs.sqlite")
    some = dataset.evaluated_queries[:3]
    part = evaluate(CONFIG, dataset, store=store, query_ids=some)
    assert not part.cached and [r.query_id for r in part.result.rows] == some
    assert not evaluate(CONFIG, dataset, store=store).cached  # all queries: another run
    assert evaluate(CONFIG, dataset, store=store, query_ids=some).cached
    reordered = evaluate(CONFIG, dataset, store=store, query_ids=some[::-1])
    assert not reordered.cached and len(store) == 3
    assert query_key(dataset, dataset.evaluated_queries) == query_key(dataset, None) == ""
    other = replace_path(CONFIG, "retrieval.k", 5)
    assert not evaluate(other, dataset, store=store).cached
    with pytest.raises(ValueError, match="unknown query ids"):
        evaluate(CONFIG, dataset, store=store, query_ids=["nope"])
    assert len(store) == 4 and not store.db.read("SELECT * FROM claims")  # a failed run leaves no claim


def test_another_process_is_served_from_the_store_and_the_cli_says_so(tmp_path, tiny_dir, capsys):
    store_path = tmp_path / "runs.sqlite"
    code = (
        "import json, sys; from workbench.runs import evaluate; from workbench.datasets import load_dataset;"
        "from workbench.store import RunStore; from test_sweep import BASE;"
        "from workbench.config import replace_path;"
        "o = evaluate(replace_path(BASE, 'chunking.size', 64), load_dataset(sys.argv[1]), store=RunStore(sys.argv[2]));"
        "print(json.dumps([o.run_id, o.cached, dict(o.result.aggregates)]))"
    )
    env_path = str(ROOT / "tests")

    def other_process() -> list:
        out = subprocess.run([sys.executable, "-c", code, str(tiny_dir), str(store_path)], capture_output=True,
                             text=True, check=True, cwd=ROOT, env={**__import__("os").environ, "PYTHONPATH": env_path})
        return json.loads(out.stdout.strip().splitlines()[-1])

    run_id, cached, aggregates = other_process()
    assert not cached
    again = other_process()
    assert again == [run_id, True, aggregates]
    config = tmp_path / "c.toml"
    from workbench.config import save_config

    save_config(CONFIG, config)
    args = ["evaluate", "--dataset", str(tiny_dir), "--config", str(config), "--store", str(store_path), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"served from the run store (run {run_id})" in out
    assert len(RunStore(store_path)) == 1


def test_a_truncated_or_foreign_run_store_is_refused_untouched(tmp_path, tiny_dir):
    dataset = load_dataset(tiny_dir)
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(StoreError, match="not a run store: .*empty.sqlite' is empty \\(0 bytes"):
        evaluate(CONFIG, dataset, store=RunStore(empty))
    assert empty.read_bytes() == b""
    good = tmp_path / "good.sqlite"
    evaluate(CONFIG, dataset, store=RunStore(good))
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(good.read_bytes()[:1000])  # the header survives, the pages do not
    with pytest.raises(StoreError, match="not a readable run store") as caught:
        RunStore(truncated).runs()
    assert caught.value.path == str(truncated) and "move it aside" in caught.value.fix
    assert len(truncated.read_bytes()) == 1000
    assert main(["runs", "list", "--store", str(empty)]) == 2  # opened read-only: still "not a run store"
    with pytest.raises(StoreError, match="not a run store: .*empty.sqlite' is empty \\(0 bytes"):
        RunStore(empty, read_only=True)


@pytest.mark.parametrize("content", [b"", b"\x00" * 5000, b"SQLite format 3\x00" + b"\xff" * 5000, "foreign"])
def test_every_kind_of_non_store_says_not_a_run_store(tmp_path, content):
    path = tmp_path / "runs.sqlite"
    if content == "foreign":
        import sqlite3

        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE notes (x)")
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"^not a run store: "):
        RunStore(path).runs()
    assert path.read_bytes() == before  # refused, never repaired or replaced


def test_threads_asking_for_one_run_at_once_compute_it_once(tmp_path, tiny_dir):
    import threading

    dataset = load_dataset(tiny_dir)
    store = RunStore(tmp_path / "runs.sqlite")  # one store object shared by app sessions, say
    start, outcomes = threading.Barrier(4), []

    def ask() -> None:
        start.wait()
        outcomes.append(evaluate(CONFIG, dataset, store=store))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(o.cached for o in outcomes) == [False, True, True, True]
    assert len({o.run_id for o in outcomes}) == 1 and len(store) == 1
