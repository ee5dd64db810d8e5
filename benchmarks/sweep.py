"""Benchmark sweeps on Cranfield: reuse, embedding work, kill-and-resume, local vs Ray.

    WORKBENCH_CACHE_DIR=/work/main/.cache/dev .venv/bin/python benchmarks/sweep.py [--skip-ray]

Every figure comes from runs in this process (or its children) against fresh run stores in a
temporary folder; the embedding cache is the shared one, so "embedded" counts only texts no
earlier run on this machine had embedded. The naive figure is what a sweep without a cache
would embed: every dense/hybrid trial embedding all its chunks and all queries.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from workbench.chunking import make_chunker  # noqa: E402
from workbench.config import PipelineConfig, replace_path  # noqa: E402
from workbench.datasets import load_dataset  # noqa: E402
from workbench.experiment import needs_embedder  # noqa: E402
from workbench.store import RunStore  # noqa: E402
from workbench.sweep import SweepSettings, sweep  # noqa: E402

SPACE = {"chunking.size": [256, 512, 1024], "retrieval.kind": ["bm25", "dense", "hybrid"],
         "chunking.overlap": [0, 64]}
BASE = replace_path(PipelineConfig(name="bench"), "chunking.method", "fixed")

CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
from benchmarks.sweep import BASE, SPACE
from workbench.store import RunStore
from workbench.sweep import sweep
result = sweep(BASE, SPACE, dataset="cranfield", store=RunStore(sys.argv[1]),
               on_trial=lambda t: print("trial", t.status, flush=True))
print(json.dumps({{"computed": result.count("computed"), "reused": result.count("reused"),
                   "aggregates": {{t.config_hash: t.aggregates for t in result.trials}}}}), flush=True)
"""


def distinct_texts(dataset, configs) -> int:
    """Chunk texts + queries a perfectly caching sweep embeds (each distinct text once)."""
    texts = set(dataset.queries[q] for q in dataset.evaluated_queries)
    for chunking in {c.chunking for c in configs if needs_embedder(c)}:
        chunker = make_chunker(chunking, embedding_model=BASE.embedding.model)
        texts.update(ch.text for doc in dataset.documents for ch in chunker.chunk(doc))
    return len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-ray", action="store_true", help="compare local executors only")
    parser.add_argument("--executors-only", action="store_true", help="run part 3 only")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wb-sweep-bench-"))
    dataset = load_dataset("cranfield")
    print(f"cranfield: {len(dataset.documents)} docs, {len(dataset.evaluated_queries)} queries; "
          f"space {SPACE} ({3 * 3 * 2} trials); embedding cache {os.environ.get('WORKBENCH_CACHE_DIR')}")

    if not args.executors_only:
        sweep_and_resume(dataset, tmp)
    compare_executors(dataset, tmp, ray_too=not args.skip_ray)


def sweep_and_resume(dataset, tmp: Path) -> None:
    """Parts 1 and 2: the sweep, its rerun, and a killed-and-resumed copy of it."""
    # 1. the full sweep, then an immediate rerun
    store = RunStore(tmp / "main.sqlite")
    t0 = time.perf_counter()
    first = sweep(BASE, SPACE, dataset=dataset, store=store)
    total = time.perf_counter() - t0
    records = {r.config_hash: r for r in store.runs()}
    embedding_trials = [t for t in first.trials if needs_embedder(t.config)]
    naive = sum(records[t.config_hash].n_chunks + len(dataset.evaluated_queries) for t in embedding_trials)
    distinct = distinct_texts(dataset, [t.config for t in first.trials])
    embedded = sum(t.embedded_texts for t in first.trials)
    print(f"[sweep] {first.count('computed')} trials computed in {total:.1f} s "
          f"({first.count('failed')} failed)")
    print(f"[embeddings] naive sweep: {naive} texts embedded ({len(embedding_trials)} dense/hybrid trials x "
          f"their chunks + queries); this sweep needs {distinct} distinct texts "
          f"({naive / distinct:.1f}x fewer); computed now (cache misses): {embedded}")
    t0 = time.perf_counter()
    again = sweep(BASE, SPACE, dataset=dataset, store=store)
    rerun = time.perf_counter() - t0
    print(f"[rerun] {again.count('reused')} of 18 trials found in the store, {again.count('computed')} "
          f"computed: {rerun:.2f} s ({total / rerun:.0f}x faster than the sweep)")
    best = first.best("ndcg@10")
    print(f"[best] ndcg@10 {best.aggregates['ndcg@10']:.4f}: {best.config.name}")

    # 2. kill after half the trials, resume, compare
    killed = tmp / "killed.sqlite"
    script = tmp / "child.py"
    script.write_text(CHILD.format(root=str(Path(__file__).resolve().parent.parent)))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script), str(killed)], stdout=subprocess.PIPE, text=True)
    done = 0
    while done < 9:
        line = proc.stdout.readline()
        if not line:
            break
        done += line.startswith("trial")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(RunStore(killed))
    out = subprocess.run([sys.executable, str(script), str(killed)], capture_output=True, text=True, check=True).stdout
    resumed = json.loads(out.strip().splitlines()[-1])
    runs = RunStore(killed).runs()
    same = all(
        abs(resumed["aggregates"][t.config_hash][m] - v) < 1e-9
        for t in first.trials for m, v in t.aggregates.items()
    )
    print(f"[kill-and-resume] killed with {before} of 18 trials stored; resume computed {resumed['computed']}, "
          f"reused {resumed['reused']}; store holds {len(runs)} runs for {len({r.config_hash for r in runs})} "
          f"configs (no trial twice: {len(runs) == 18}); results equal the uninterrupted sweep: {same}; "
          f"{time.perf_counter() - t0:.1f} s in all")



def compare_executors(dataset, tmp: Path, *, ray_too: bool) -> None:
    """Part 3: in-process, two local processes and two Ray workers on the same sweep."""
    # warm embedding cache, fresh stores: this measures scheduling and per-process start-up
    timings = {}
    results = {}
    modes = [("in-process", SweepSettings()), ("local x2", SweepSettings(workers=2))]
    if ray_too:
        import ray

        # a busy two-core machine can take longer than Ray's defaults to register the node
        os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        modes.append(("ray x2", SweepSettings(executor="ray", workers=2)))
    for label, settings in modes:
        s = RunStore(tmp / f"{label.replace(' ', '_')}.sqlite")
        t0 = time.perf_counter()
        r = sweep(BASE, SPACE, dataset=dataset, store=s, settings=settings)
        timings[label] = time.perf_counter() - t0
        results[label] = [(t.config_hash, s.query_records(t.run_id)[0].retrieved[:10], t.aggregates)
                          for t in r.trials]
    reference = results["in-process"]
    for label, seconds in timings.items():
        print(f"[executor] {label}: {seconds:.1f} s (x{seconds / timings['in-process']:.2f} of in-process), "
              f"results identical to in-process: {results[label] == reference}")
    if "ray x2" in timings:
        print(f"[executor] ray x2 / local x2 time ratio: {timings['ray x2'] / timings['local x2']:.2f}")


if __name__ == "__main__":
    main()
