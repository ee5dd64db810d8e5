"""Vector databases compared on Cranfield, the chunking set and 100k synthetic 384-d vectors.

Every backend runs in its own spawned process on the same unit vectors; recall@10 is against
exact numpy search, latency is one query at a time, p50 also as a ratio to FAISS flat in the
same run, with one OpenMP thread. qdrant-local is qdrant-client's pure-Python local mode, not
the Qdrant engine.

    WORKBENCH_CACHE_DIR=.cache/dev HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/vectordb.py [--scale 100000] [--skip-datasets]
"""

from __future__ import annotations

import argparse
import json
import os
import time

# One query at a time on a shared two-core machine: FAISS's OpenMP pool spins against the other
# processes (a 100k flat query took 260 ms with the default threads); the databases answer one
# query on one core too. Set before faiss loads, and inherited by each backend's process.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from workbench.datasets import load_dataset
from workbench.evaluation.vectordb import BACKEND_CHOICES, compare_backends, format_table, recommend_backend, synthetic_comparison

ALL = ",".join(BACKEND_CHOICES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default=ALL)
    parser.add_argument("--scale", type=int, action="append", help="synthetic rows (default 100000)")
    parser.add_argument("--skip-datasets", action="store_true", help="only the synthetic run(s)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", help="also write every result to this JSON file")
    args = parser.parse_args()
    names = args.backends.split(",")
    results = []
    if not args.skip_datasets:
        for dataset in ("cranfield", "chunking"):
            t0 = time.perf_counter()
            part = compare_backends(load_dataset(dataset), names, queries=args.queries)
            print(format_table(part), f"\n({dataset}: {time.perf_counter() - t0:.0f} s)\nrecommendation: {recommend_backend(part)}\n", flush=True)
            results += part
    for n in args.scale or [100_000]:
        t0 = time.perf_counter()
        part = synthetic_comparison(n, names, queries=args.queries, progress=lambda r: print(json.dumps(r.to_dict()), flush=True))
        print(format_table(part), f"\n(synthetic {n}: {time.perf_counter() - t0:.0f} s)\nrecommendation: {recommend_backend(part)}\n", flush=True)
        results += part
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([r.to_dict() for r in results], f, indent=1)


if __name__ == "__main__":
    main()
