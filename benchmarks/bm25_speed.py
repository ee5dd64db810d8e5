"""BM25 query throughput on Cranfield: our sparse-matrix index against rank_bm25, one process.

Both score the same tokens (whole documents, the default tokenizer) and return the top 100.
The ratio is our queries/s over rank_bm25's (`BM25Okapi.get_scores` + `np.argsort`); the
issue's target is >= 30x (bm25s reaches about 40x on these two cores).

    .venv/bin/python benchmarks/bm25_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib
import time

import numpy as np
from rank_bm25 import BM25Okapi

from workbench.datasets import load_dataset
from workbench.retrieval import BM25Retriever, Bm25Index, Bm25Tokenizer
from workbench.types import Chunk

K = 100


def best_of(repeats: int, run) -> float:
    """The fastest of `repeats` timed calls of `run`, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over all queries; the best counts")
    args = parser.parse_args()
    importlib.import_module("scipy.sparse")  # up front, so our index build time excludes the import
    dataset = load_dataset("cranfield")
    tokenizer = Bm25Tokenizer()
    corpus = [tokenizer(d.text) for d in dataset.documents]
    query_texts = list(dataset.queries.values())
    queries = [tokenizer(q) for q in query_texts]

    t0 = time.perf_counter()
    reference = BM25Okapi(corpus)
    ref_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = Bm25Index(corpus)
    our_build = time.perf_counter() - t0

    ref_top = [np.argsort(-reference.get_scores(q), kind="stable")[:K] for q in queries]
    our_top = [ours.top_k(q, K)[0] for q in queries]
    same_order = sum(np.array_equal(a, b) for a, b in zip(ref_top, our_top))
    same_set = sum(set(a.tolist()) == set(b.tolist()) for a, b in zip(ref_top, our_top))

    ref_s = best_of(args.repeats, lambda: [np.argsort(-reference.get_scores(q))[:K] for q in queries])
    our_s = best_of(args.repeats, lambda: [ours.top_k(q, K) for q in queries])
    chunks = [Chunk(id=d.id, doc_id=d.id, text=d.text, start=0, end=len(d.text)) for d in dataset.documents]
    retriever = BM25Retriever(chunks, tokenizer=tokenizer)
    e2e_s = best_of(args.repeats, lambda: retriever.retrieve_many(query_texts, K))

    n = len(queries)
    print(f"Cranfield: {len(corpus)} documents, {n} queries, top-{K}, best of {args.repeats}")
    print(f"index build: rank_bm25 {ref_build:.3f} s, ours {our_build:.3f} s")
    print(f"rank_bm25 get_scores+argsort: {n / ref_s:9.0f} queries/s")
    print(f"ours (Bm25Index.top_k):       {n / our_s:9.0f} queries/s   ratio {ref_s / our_s:.1f}x")
    print(f"ours end to end (BM25Retriever.retrieve_many: tokenize, top-100, 100 Hit objects): {n / e2e_s:9.0f} queries/s   ratio {ref_s / e2e_s:.1f}x")
    print(f"rank agreement: identical top-{K} order {same_order}/{n}, identical top-{K} set {same_set}/{n}")


if __name__ == "__main__":
    main()
