"""Tests of sweeps: search spaces, reuse through the store, kill-and-resume, parallel and Ray runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from workbench.cli import main
from workbench.config import ConfigError, PipelineConfig, replace_path
from workbench.executors import embed_bulk
from workbench.io import DATA_DIR
from workbench.store import RunStore
from workbench.sweep import (
    SweepRefused,
    SweepSettings,
    expand_space,
    load_sweep_spec,
    sweep,
)

# BM25 over whitespace tokens: trials take milliseconds and load no model.
BASE = PipelineConfig(name="t")
for _path, _value in (("chunking.tokenizer", "whitespace"), ("retrieval.kind", "bm25"),
                      ("chunking.method", "fixed")):
    BASE = replace_path(BASE, _path, _value)
SPACE = {"chunking.size": [32, 64, 128, 256], "retrieval.bm25_k1": [1.2, 1.5]}


def write_tiny_beir(root: Path, n_docs: int = 60) -> Path:
    """The first `n_docs` Cranfield documents with the queries judged against them."""
    corpus = (DATA_DIR / "cranfield" / "corpus.jsonl").read_text().splitlines()
    docs = [json.loads(line) for line in corpus if line.strip()][:n_docs]
    ids = {d["_id"] for d in docs if (d.get("text") or "").strip()}
    qrels = [line.split("\t") for line in (DATA_DIR / "cranfield" / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    kept = [r for r in qrels if r[1] in ids and int(r[2]) > 0]
    qids = {r[0] for r in kept}
    queries = [json.loads(line) for line in (DATA_DIR / "cranfield" / "queries.jsonl").read_text().splitlines()
               if line.strip() and json.loads(line)["_id"] in qids]
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs if d["_id"] in ids))
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "\n".join("\t".join(r) for r in kept)
    )
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from workbench.datasets import load_dataset

    return load_dataset(write_tiny_beir(tmp_path_factory.mktemp("data") / "tiny"))


def test_grid_expansion_names_and_order():
    trials = expand_space(BASE, SPACE)
    assert [p for p, _ in trials][:3] == [
        {"chunking.size": 32, "retrieval.bm25_k1": 1.2},
        {"chunking.size": 32, "retrieval.bm25_k1": 1.5},
        {"chunking.size": 64, "retrieval.bm25_k1": 1.2},
    ]
    assert len(trials) == 8
    config = trials[3][1]
    assert (config.chunking.size, config.retrieval.bm25_k1) == (64, 1.5)
    assert config.name == "t[chunking.size=64,retrieval.bm25_k1=1.5]"
    assert config.retrieval.kind == "bm25"  # base values are kept


def test_random_search_is_seeded_distinct_and_bounded():
    space = {"chunking.size": [32, 64, 128, 256], "retrieval.k": [10, 20, 50]}
    a = expand_space(BASE, space, SweepSettings(method="random", trials=5, seed=3))
    b = expand_space(BASE, space, SweepSettings(method="random", trials=5, seed=3))
    c = expand_space(BASE, space, SweepSettings(method="random", trials=5, seed=4))
    assert [p for p, _ in a] == [p for p, _ in b] != [p for p, _ in c]
    assert len({json.dumps(p, sort_keys=True) for p, _ in a}) == 5
    assert len(expand_space(BASE, space, SweepSettings(method="random", trials=99))) == 12


def test_duplicate_points_run_once():
    assert len(expand_space(BASE, {"chunking.size": [64, 64, 128]})) == 2


def test_fields_of_one_stage_are_set_together():
    # overlap 300 alone is invalid with the base size 256; with size 512 it is fine
    [(_, config)] = expand_space(BASE, {"chunking.overlap": [300], "chunking.size": [512]})
    assert (config.chunking.overlap, config.chunking.size) == (300, 512)


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ({"chunking.sise": [1]}, "cannot sweep 'chunking.sise'.*no field 'sise'.*known"),
        ({"nope.size": [1]}, "no field 'nope'"),
        ({"chunking.size": []}, "non-empty list"),
        ({"chunking.size": "128"}, "non-empty list"),
        ({}, "empty"),
        ({"chunking.size": [8, 16], "chunking.overlap": [12]}, r"trial \[chunking.size=8,chunking.overlap=12\]"),
    ],
)
def test_bad_spaces_are_named(space, match):
    with pytest.raises(ConfigError, match=match):
        expand_space(BASE, space)


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="executor 'spark'.*'local', 'ray'"):
        SweepSettings(executor="spark")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="random sweep needs trials"):
        SweepSettings(method="random")


def test_sweep_stores_every_trial_and_a_rerun_computes_nothing(tmp_path, tiny):
    store = RunStore(tmp_path / "runs.sqlite")
    first = sweep(BASE, SPACE, dataset=tiny, store=store)
    assert first.count("computed") == 8 and first.count("failed") == 0
    assert len(store) == 8
    assert len(store.runs(sweep_id=first.sweep_id)) == 8
    seen = []
    again = sweep(BASE, SPACE, dataset=tiny, store=store, on_trial=seen.append)
    assert again.count("reused") == 8 and len(seen) == 8
    assert len(store) == 8  # nothing recomputed, nothing stored twice
    assert [t.run_id for t in again.trials] == [t.run_id for t in first.trials]
    assert [t.aggregates for t in again.trials] == [pytest.approx(t.aggregates) for t in first.trials]
    best = first.best("ndcg@10")
    assert best.aggregates["ndcg@10"] == max(t.aggregates["ndcg@10"] for t in first.trials)
    frame = first.to_frame()
    assert list(frame["chunking.size"]) == [32, 32, 64, 64, 128, 128, 256, 256]
    # a wider space reuses the overlap and computes only the new points
    wider = sweep(BASE, {**SPACE, "chunking.size": [32, 64, 128, 256, 512]}, dataset=tiny, store=store)
    assert (wider.count("reused"), wider.count("computed")) == (8, 2)


def test_large_grid_needs_confirmation_and_stores_nothing_when_refused(tmp_path, tiny):
    store = RunStore(tmp_path / "runs.sqlite")
    space = {"retrieval.k": list(range(1, 41)), "chunking.size": list(range(16, 16 + 30))}  # 1200 trials
    with pytest.raises(SweepRefused, match=r"1200 trials: 0 already in the store, 1200 to run.*--yes"):
        sweep(BASE, space, dataset=tiny, store=store)
    asked = []
    with pytest.raises(SweepRefused, match="declined"):
        sweep(BASE, space, dataset=tiny, store=store, confirm=lambda plan: asked.append(plan) or False)
    assert len(asked[0].pending) == 1200 and asked[0].estimated_s > 0
    assert len(store) == 0
    small = {"chunking.size": [32, 64, 128]}
    result = sweep(BASE, small, dataset=tiny, store=store, settings=SweepSettings(confirm_above=2),
                   confirm=lambda plan: True)
    assert result.count("computed") == 3


def test_failed_trials_are_recorded_and_retried(tmp_path, tiny):
    store = RunStore(tmp_path / "runs.sqlite")
    # a model path is only checked when the model loads, i.e. inside the trial (BM25 loads none)
    base = replace_path(BASE, "embedding.model", "./no-such-model")
    space = {"retrieval.kind": ["bm25", "dense"]}
    result = sweep(base, space, dataset=tiny, store=store)
    assert [t.status for t in result.trials] == ["computed", "failed"]
    failed = result.trials[1]
    assert "no-such-model" in failed.error and store.get(failed.run_id).status == "failed"
    assert "no-such-model" in store.get(failed.run_id).error
    assert not store.db.read("SELECT * FROM claims")  # a failed trial leaves no claim behind
    again = sweep(base, space, dataset=tiny, store=store)
    assert [t.status for t in again.trials] == ["reused", "failed"]  # retried, failed again
    assert len(store.runs(status="failed")) == 2


SCRIPT = """
import json, sys, time
from workbench.config import PipelineConfig, replace_path
from workbench.store import RunStore
from workbench.sweep import sweep
base = PipelineConfig(name="t")
for path, value in (("chunking.tokenizer", "whitespace"), ("retrieval.kind", "bm25"), ("chunking.method", "fixed")):
    base = replace_path(base, path, value)
data, store_path, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
result = sweep(base, json.loads(sys.argv[4]), dataset=data, store=RunStore(store_path),
               on_trial=lambda trial: (print("done", trial.run_id, flush=True), time.sleep(pause)))
print(json.dumps({t.config_hash: [t.status, t.aggregates] for t in result.trials}))
"""


@pytest.mark.slow
def test_killed_sweep_resumes_without_running_any_trial_twice(tmp_path):
    data = write_tiny_beir(tmp_path / "tiny")
    script = tmp_path / "run_sweep.py"
    script.write_text(SCRIPT)
    killed_store = tmp_path / "killed.sqlite"

    def run(store: Path, pause: float) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(data), str(store), str(pause), json.dumps(SPACE)],
                                stdout=subprocess.PIPE, text=True)

    proc = run(killed_store, 2.0)  # slow trials, so the kill lands mid-sweep
    done = 0
    while done < 3:
        line = proc.stdout.readline()
        assert line, "sweep subprocess ended before it could be killed"
        done += line.startswith("done")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    stored = RunStore(killed_store).runs()
    assert 3 <= len(stored) < 8

    resumed = run(killed_store, 0.0)
    out, _ = resumed.communicate(timeout=120)
    outcome = json.loads(out.strip().splitlines()[-1])
    statuses = [status for status, _ in outcome.values()]
    assert statuses.count("reused") == len(stored)
    assert statuses.count("computed") == 8 - len(stored)
    runs = RunStore(killed_store).runs()
    assert len(runs) == 8 and len({r.config_hash for r in runs}) == 8  # no trial twice

    clean = run(tmp_path / "clean.sqlite", 0.0)
    out, _ = clean.communicate(timeout=120)
    reference = json.loads(out.strip().splitlines()[-1])
    assert set(reference) == set(outcome)
    for key, (_, aggregates) in reference.items():
        assert outcome[key][1] == pytest.approx(aggregates)


# BM25 trials share the chunking of the dense ones but embed nothing: they must not release
# a group's followers before its leader has filled the cache.
DENSE_SPACE = {"chunking.size": [48, 96], "retrieval.kind": ["bm25", "dense", "hybrid"]}


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    """A cold embedding cache, so the test sees real embedding work."""
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _rankings(store: RunStore, result) -> dict[str, list]:
    return {t.config_hash: [(r.query_id, r.retrieved[:10]) for r in store.query_records(t.run_id)]
            for t in result.trials}


@pytest.mark.slow
def test_parallel_processes_match_in_process_and_embed_each_group_once(tmp_path, tiny, fresh_cache):
    base = replace_path(BASE, "chunking.tokenizer", "embedding")
    parallel_store = RunStore(tmp_path / "parallel.sqlite")
    parallel = sweep(base, DENSE_SPACE, dataset=tiny, store=parallel_store,
                     settings=SweepSettings(workers=2))
    assert parallel.count("computed") == 6
    by_group: dict[int, list] = {}
    for t in parallel.trials:
        if t.params["retrieval.kind"] != "bm25":
            by_group.setdefault(t.params["chunking.size"], []).append(t.embedded_texts)
    for size, misses in by_group.items():
        # the leader embeds the group's chunks; its follower finds them all in the shared cache
        assert sorted(misses)[0] == 0, (size, misses)
        assert sorted(misses)[1] > 0
    local_store = RunStore(tmp_path / "local.sqlite")
    local = sweep(base, DENSE_SPACE, dataset=tiny, store=local_store)
    assert sum(t.embedded_texts for t in local.trials) == 0  # the workers filled the same cache
    assert _rankings(parallel_store, parallel) == _rankings(local_store, local)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    # Ray waits a fixed 30 s for its raylet to register; a busy two-core machine can take
    # longer on a cold start, and a second start (warm page cache) is much faster.
    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            break
        except Exception as exc:
            ray.shutdown()
            if "timed out during startup" not in str(exc) or attempt == 2:
                raise
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_executor_matches_local(tmp_path, tiny, ray_local):
    local_store = RunStore(tmp_path / "local.sqlite")
    ray_store = RunStore(tmp_path / "ray.sqlite")
    space = {**SPACE, "retrieval.kind": ["bm25", "dense"]}
    local = sweep(BASE, space, dataset=tiny, store=local_store)
    on_ray = sweep(BASE, space, dataset=tiny, store=ray_store, settings=SweepSettings(executor="ray", workers=2))
    assert on_ray.count("computed") == 16
    assert [t.config_hash for t in on_ray.trials] == [t.config_hash for t in local.trials]
    assert [t.aggregates for t in on_ray.trials] == [pytest.approx(t.aggregates) for t in local.trials]
    assert _rankings(ray_store, on_ray) == _rankings(local_store, local)


@pytest.mark.slow
def test_bulk_embedding_on_ray_matches_local(tmp_path, tiny, ray_local):
    texts = [d.text[:300] for d in tiny.documents[:40]] + [tiny.documents[0].text[:300]]
    local = embed_bulk(texts, cache_path=tmp_path / "local.sqlite")
    on_ray = embed_bulk(texts, executor="ray", shards=2, cache_path=tmp_path / "ray.sqlite")
    assert on_ray.shape == local.shape == (41, 384)
    np.testing.assert_allclose(on_ray, local, atol=1e-5)
    np.testing.assert_array_equal(on_ray[0], on_ray[-1])
    with pytest.raises(ValueError, match="executor 'dask'"):
        embed_bulk(texts, executor="dask")  # type: ignore[arg-type]


def test_sweep_spec_file(tmp_path):
    (tmp_path / "base.toml").write_text('[retrieval]\nkind = "bm25"\n')
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(
        'name = "sizes"\ndataset = "cranfield"\nbase = "base.toml"\n'
        '[space]\n"chunking.size" = [128, 256]\n[settings]\nworkers = 2\n'
    )
    spec = load_sweep_spec(spec_path)
    assert spec.base.retrieval.kind == "bm25" and spec.space == {"chunking.size": (128, 256)}
    assert spec.settings.workers == 2 and spec.name == "sizes"
    spec_path.write_text('[space]\n"chunking.size" = [1]\n[settings]\nexecuter = "ray"\n')
    with pytest.raises(ConfigError, match="unknown key.*executer.*executor"):
        load_sweep_spec(spec_path)
    spec_path.write_text('dataset = "cranfield"\n')
    with pytest.raises(ConfigError, match=r"needs a \[space\] table"):
        load_sweep_spec(spec_path)


@pytest.mark.slow
def test_cli_sweep_runs_then_reuses_and_refuses_huge_grids(tmp_path, capsys):
    data = write_tiny_beir(tmp_path / "tiny")
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "cli"\ndataset = "{data}"\n'
        '[base.chunking]\nmethod = "fixed"\ntokenizer = "whitespace"\n[base.retrieval]\nkind = "bm25"\n'
        '[space]\n"chunking.size" = [32, 64]\n"retrieval.bm25_b" = [0.5, 0.75]\n'
    )
    store = str(tmp_path / "runs.sqlite")
    assert main(["sweep", str(spec), "--store", store, "--quiet"]) == 0
    assert "4 computed, 0 found in the store, 0 failed" in capsys.readouterr().out
    assert main(["sweep", str(spec), "--store", store, "--quiet"]) == 0
    assert "0 computed, 4 found in the store" in capsys.readouterr().out
    spec.write_text(spec.read_text() + '"retrieval.k" = ' + str(list(range(1, 301))) + "\n")  # 1200 trials
    assert main(["sweep", str(spec), "--store", store, "--quiet"]) == 2  # stdin is not a terminal
    err = capsys.readouterr().err
    assert "refusing without --yes" in err and "1196 to run" in err and "chunk embeddings" in err
    assert len(RunStore(store)) == 4


# -- processes sharing one store, and workers that die with their driver ------------------------

RACE = """
import json, multiprocessing, sys, threading, time
from pathlib import Path
from workbench.config import PipelineConfig, replace_path
from workbench.store import RunStore
from workbench.sweep import SweepSettings, sweep


def report_workers(count):
    while len(multiprocessing.active_children()) < count:
        time.sleep(0.05)
    print("workers", *[p.pid for p in multiprocessing.active_children()], flush=True)


if __name__ == "__main__":  # workers are spawned: they import this file without running it
    base = PipelineConfig(name="t")
    for path, value in json.loads(sys.argv[7]):
        base = replace_path(base, path, value)
    data, store, go, workers = sys.argv[1], RunStore(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[6])
    print("ready", flush=True)
    while not go.exists():  # every process starts its sweep at the same moment
        time.sleep(0.01)
    if workers > 1:
        threading.Thread(target=report_workers, args=(workers,), daemon=True).start()
    result = sweep(base, json.loads(sys.argv[5]), dataset=data, store=store,
                   on_trial=lambda trial: time.sleep(float(sys.argv[4])), settings=SweepSettings(workers=workers))
    print(json.dumps({t.config_hash: [t.status, t.aggregates] for t in result.trials}))
"""
BM25_TINY = [["chunking.tokenizer", "whitespace"], ["retrieval.kind", "bm25"], ["chunking.method", "fixed"]]


def _start(tmp_path: Path, data: Path | str, store: Path, pause: float, space: dict, workers: int = 1,
           base: list = BM25_TINY) -> subprocess.Popen:
    script = tmp_path / "race.py"
    script.write_text(RACE)
    return subprocess.Popen([sys.executable, str(script), str(data), str(store), str(tmp_path / "go"), str(pause),
                             json.dumps(space), str(workers), json.dumps(base)], stdout=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 4])
def test_processes_running_one_sweep_on_one_store_compute_each_trial_once(tmp_path, processes):
    data = write_tiny_beir(tmp_path / "tiny")
    store = tmp_path / "runs.sqlite"
    procs = [_start(tmp_path, data, store, 0.05, SPACE) for _ in range(processes)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    (tmp_path / "go").touch()
    outcomes = [json.loads(proc.communicate(timeout=300)[0].strip().splitlines()[-1]) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    computed = [sum(status == "computed" for status, _ in o.values()) for o in outcomes]
    assert sum(computed) == 8, computed  # each trial computed by exactly one process
    assert all(set(o) == set(outcomes[0]) and len(o) == 8 for o in outcomes)
    for key, (_, aggregates) in outcomes[0].items():  # the others reused the very same runs
        assert all(o[key][1] == pytest.approx(aggregates) for o in outcomes)
    runs = RunStore(store).runs()
    assert len(runs) == 8 and len({r.config_hash for r in runs}) == 8
    assert not RunStore(store).db.read("SELECT * FROM claims")


def test_a_claim_of_a_dead_process_is_retaken_and_a_live_one_waited_for(tmp_path, tiny):
    import socket

    from workbench.config import config_hash

    store = RunStore(tmp_path / "runs.sqlite")
    trials = expand_space(BASE, {"chunking.size": [32, 64]})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    now = time.time()
    for (_, config), pid in zip(trials, (int(dead.stdout), holder.pid)):
        store.db.transact("plant a claim", lambda conn, c=config, p=pid: conn.execute(
            "INSERT INTO claims VALUES (?, ?, '', ?, ?, 'other', ?, ?)",
            (config_hash(c), tiny.fingerprint(), socket.gethostname(), p, now, now)))
    t0 = time.monotonic()
    result = sweep(BASE, {"chunking.size": [32, 64]}, dataset=tiny, store=store)
    holder.wait()
    assert time.monotonic() - t0 >= 1.0, "the live holder's trial must wait for the holder"
    assert [t.status for t in result.trials] == ["computed", "computed"]  # the holder stored nothing, then died
    assert len(store) == 2 and not store.db.read("SELECT * FROM claims")


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie has exited; only its parent's reaping is left


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_workers_die_with_their_driver(tmp_path, fresh_cache, how):
    # Two workers embed Cranfield into a cold cache (minutes of work) when the driver dies.
    (tmp_path / "go").touch()
    driver = _start(tmp_path, "cranfield", tmp_path / "runs.sqlite", 0.0, {"chunking.size": [100, 120]},
                    workers=2, base=[["retrieval.kind", "dense"]])
    assert driver.stdout.readline().strip() == "ready"
    line = driver.stdout.readline().split()
    assert line[:1] == ["workers"], line
    workers = [int(pid) for pid in line[1:]]
    assert len(workers) == 2
    time.sleep(3)  # in the middle of loading the model or embedding
    assert not any(_gone(pid) for pid in workers), "the workers should still be busy"
    driver.send_signal(how)
    driver.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(_gone(pid) for pid in workers):
        time.sleep(0.1)
    left = [pid for pid in workers if not _gone(pid)]
    for pid in left:  # do not leave them behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their driver ({how.name})"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", r"spec.toml' is not UTF-8 TOML"),
        ('name = "caf\u00e9"\n'.encode("latin-1"), r"spec.toml' is not UTF-8 TOML"),
        (b'dataset = 5\n[space]\n"chunking.size" = [1]\n', r"dataset = 5 in sweep file .* must be a non-empty string"),
        (b'name = ["x"]\n[space]\n"chunking.size" = [1]\n', r"name = \['x'\] .* must be a non-empty string"),
        (b'base = 3\n[space]\n"chunking.size" = [1]\n', r"base = 3 .* must be a \[base\] table"),
        (b'space = 3\n', r"space = 3 .* must be a table"),
        (b'settings = "fast"\n[space]\n"chunking.size" = [1]\n', r"settings = 'fast' .* must be a table"),
        (b"[space\n", r"spec.toml' is not valid TOML"),
    ],
)
def test_broken_sweep_files_are_named_with_what_is_wrong(tmp_path, content, match):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        load_sweep_spec(spec)
    with pytest.raises(ConfigError, match="is a folder"):
        load_sweep_spec(tmp_path)


def test_cli_names_a_broken_sweep_file(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(b"\xff\xfe\x00binary")
    assert main(["sweep", str(spec), "--store", str(tmp_path / "runs.sqlite")]) == 2
    err = capsys.readouterr().err
    assert "spec.toml' is not UTF-8 TOML" in err and "Traceback" not in err
    assert not (tmp_path / "runs.sqlite").exists()  # nothing was created for a sweep that never started


def test_a_worker_that_hashes_configs_differently_fails_its_trial(tmp_path, tiny, monkeypatch):
    # A worker on another workbench version would store its runs under keys no later sweep finds.
    import dataclasses

    import workbench.experiment as experiment

    real = experiment.run_experiment
    monkeypatch.setattr(experiment, "run_experiment",
                        lambda *a, **k: dataclasses.replace(real(*a, **k), config_hash="0" * 16))
    store = RunStore(tmp_path / "runs.sqlite")
    result = sweep(BASE, {"chunking.size": [32]}, dataset=tiny, store=store)
    assert [t.status for t in result.trials] == ["failed"]
    assert "another workbench version" in result.trials[0].error
    assert store.runs(status="completed") == []
