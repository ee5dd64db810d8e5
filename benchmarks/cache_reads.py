"""What verifying every embedding-cache entry costs on a read (checksum, shape, finiteness).

    .venv/bin/python benchmarks/cache_reads.py [--n 20000] [--repeats 5]

Fills a fresh cache with `n` random 384-d vectors (no model needed), then times, interleaved in
this process, `VectorCache.get_many` (every entry verified) against a baseline that reads the
same rows with one plain SELECT and decodes them without any check. Prints the median of each
and their ratio; the ratio is the figure to compare across machines.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from workbench.embedding import VectorCache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wb-cache-reads-") as tmp:
        path = Path(tmp) / "c.sqlite"
        cache = VectorCache(path)
        texts = [f"text {i}" for i in range(args.n)]
        vectors = np.random.default_rng(0).standard_normal((args.n, 384)).astype(np.float32)
        cache.put_many("bench", texts, vectors)
        keys = [VectorCache.key("bench", t) for t in texts]
        raw = sqlite3.connect(path)

        def baseline() -> list[np.ndarray]:
            out = []
            for i in range(0, len(keys), 500):
                part = keys[i : i + 500]
                rows = raw.execute(f"SELECT data FROM vectors WHERE key IN ({','.join('?' * len(part))})", part)
                out += [np.frombuffer(r[0], dtype=np.float32) for r in rows]
            return out

        timings: dict[str, list[float]] = {"verified": [], "baseline": []}
        for _ in range(args.repeats):
            for name, read in (("verified", lambda: cache.get_many("bench", texts)), ("baseline", baseline)):
                t0 = time.perf_counter()
                got = read()
                timings[name].append(time.perf_counter() - t0)
                assert len(got) == args.n and all(v is not None for v in got)
        verified, base = (statistics.median(timings[k]) for k in ("verified", "baseline"))
        print(f"{args.n} vectors of 384 floats, median of {args.repeats} interleaved reads")
        print(f"get_many (checksum + shape + finiteness): {verified * 1e3:.1f} ms "
              f"({args.n / verified:,.0f} vectors/s)")
        print(f"plain SELECT + decode, no checks:        {base * 1e3:.1f} ms ({args.n / base:,.0f} vectors/s)")
        print(f"ratio verified / plain: {verified / base:.2f}x")


if __name__ == "__main__":
    main()
