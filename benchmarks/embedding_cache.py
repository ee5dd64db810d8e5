"""A sweep over three chunk sizes on one shared embedding cache, against three cold runs.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/embedding_cache.py [--dataset chunking]

Prints, per chunk size, the texts embedded and served from the cache, and the time of the
sweep against three runs that each start from an empty cache; then a rerun of the whole sweep
(zero forward passes expected), and the peak resident memory of this process.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from workbench.config import PipelineConfig, replace_path
from workbench.datasets import load_dataset
from workbench.embedding import Embedder, VectorCache, load_embedder
from workbench.experiment import clear_caches, run_experiment

SIZES = (128, 256, 512)


def run(config: PipelineConfig, dataset, cache: Path, model) -> tuple[float, dict[str, int]]:
    embedder = Embedder(config.embedding, VectorCache(cache))
    embedder._model = model  # share the loaded weights: only the cache differs
    clear_caches()  # rebuild chunks and indexes, so every embedding goes through the cache
    t0 = time.perf_counter()
    result = run_experiment(config, dataset, embedder=embedder)
    return time.perf_counter() - t0, dict(result.embedding_stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="chunking")
    args = parser.parse_args()
    dataset = load_dataset(args.dataset)
    model = load_embedder().model
    base = replace_path(PipelineConfig(name="sweep"), "retrieval.kind", "dense")
    configs = [replace_path(base, "chunking.size", size) for size in SIZES]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cold = [run(c, dataset, tmp / f"cold-{c.chunking.size}.sqlite", model)[0] for c in configs]
        sweep = [run(c, dataset, tmp / "shared.sqlite", model) for c in configs]
        rerun = [run(c, dataset, tmp / "shared.sqlite", model) for c in configs]
    print(f"dataset {dataset.name}: {len(dataset.documents)} documents, {len(dataset.evaluated_queries)} queries, dense, recursive chunks")
    print(f"{'size':>5s} {'cold s':>8s} {'sweep s':>8s} {'embedded':>9s} {'cache hits':>10s} {'rerun s':>8s} {'rerun embedded':>15s}")
    for size, c, (s, stats), (r, rstats) in zip(SIZES, cold, sweep, rerun):
        print(f"{size:5d} {c:8.1f} {s:8.1f} {stats['misses']:9d} {stats['hits']:10d} {r:8.1f} {rstats['misses']:15d}")
    total_cold, total_sweep = sum(cold), sum(s for s, _ in sweep)
    print(f"three cold runs {total_cold:.1f} s; sweep on a shared cache {total_sweep:.1f} s "
          f"({total_sweep / total_cold:.2f}x); rerun {sum(r for r, _ in rerun):.1f} s "
          f"({sum(r for r, _ in rerun) / total_cold:.3f}x), "
          f"{sum(s['misses'] for _, s in rerun)} texts embedded")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
