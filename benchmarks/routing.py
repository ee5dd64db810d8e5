"""Routers on the demo routing labels: decision latency, and cost saved at a quality target.

    WORKBENCH_CACHE_DIR=.cache/dev HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/routing.py

Labels: data/routing/chunking_labels.csv (a proxy derived from reference spans; see its
PROVENANCE.md). Quality per tier: 1 at or above the label's tier, x0.5 per tier short.
Cost per call: query + 1,500 context tokens in, 300 out, at data/prices.toml list prices.
Split: stratified 60/40 train/test, seed 0. Each router's threshold is chosen on the
training split (out-of-fold estimates for the trained routers) as the cheapest keeping the
target share of top-model quality, then applied to the test split, which is what is printed.
The cascade has no offline model to judge: its judge is simulated as the proxy quality of
each tier's answer plus Gaussian noise (sd 0.3), so its row shows the mechanics and the price
of the discarded first calls, not a measured groundedness check.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from workbench.config import ChunkingConfig, RetrievalConfig, RoutingConfig
from workbench.chunking import make_chunker
from workbench.datasets import load_dataset
from workbench.embedding import load_embedder
from workbench.resources import Resources
from workbench.retrieval import build_retriever
from workbench.routing import (
    DEMO_LABELS,
    LearnedRouter,
    RetrievalRouter,
    cross_validated_adequacy,
    evaluate_routing,
    choose_tiers,
    load_labels,
    make_router,
    sweep_thresholds,
    tier_costs,
    tier_quality,
)

SEED = 0
TARGETS = (0.90, 0.95)
JUDGE_NOISE = 0.3


def median_ms(fn: Callable[[str], object], queries: Sequence[str]) -> float:
    """Median wall time of fn(query) in milliseconds, after one warm-up call."""
    fn(queries[0])
    times = []
    for q in queries:
        start = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    config = RoutingConfig()
    tiers = config.tiers
    labels = load_labels(DEMO_LABELS, tiers)
    train, test = labels.split(0.4, seed=SEED)
    y_train, y_test = train.label_index, test.label_index
    q_train, q_test = tier_quality(y_train, len(tiers)), tier_quality(y_test, len(tiers))
    c_train, c_test = tier_costs(train.queries, tiers), tier_costs(test.queries, tiers)

    dataset = load_dataset("chunking")
    chunker = make_chunker(ChunkingConfig())
    chunks = [c for d in dataset.documents for c in chunker.chunk(d)]
    embedder = load_embedder()
    bm25 = build_retriever(RetrievalConfig(kind="bm25"), chunks)
    dense = build_retriever(RetrievalConfig(kind="dense"), chunks, embedder)
    print(f"labels: {len(labels.ids)} ({len(train.ids)} train / {len(test.ids)} test); "
          f"test label shares {np.bincount(y_test, minlength=3) / len(y_test)}; {len(chunks)} chunks")

    rules = make_router(RoutingConfig(kind="rules"))
    makers: dict[str, Callable[[], object]] = {
        "learned-logistic": lambda: LearnedRouter.untrained(config, Resources(embedder=embedder)),
        "learned-knn": lambda: LearnedRouter.untrained(replace(config, classifier="knn"), Resources(embedder=embedder)),
        "retrieval-logistic": lambda: RetrievalRouter.untrained(config, Resources(retriever=dense)),
    }
    # scores[name] = (train scores for choosing the threshold, test scores, cascade?)
    scores: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {
        "rules": (rules.adequacy(train.queries), rules.adequacy(test.queries), False)
    }
    routers = {"rules": rules}
    for name, make in makers.items():
        oof = cross_validated_adequacy(make, train, folds=5, seed=SEED)
        routers[name] = make().fit(train)
        scores[name] = (oof, routers[name].adequacy(test.queries), False)
    rng = np.random.default_rng(SEED)
    judge = lambda q: np.clip(q + rng.normal(0, JUDGE_NOISE, q.shape), 0, 1)  # noqa: E731
    scores["cascade (simulated judge)"] = (judge(q_train), judge(q_test), True)

    print("\n== decision latency (median per query over the test queries; query embeddings cached) ==")
    retrieval_ms = {
        "bm25": median_ms(lambda q: bm25.retrieve(q, 10), test.queries),
        "dense": median_ms(lambda q: dense.retrieve(q, 10), test.queries),
    }
    encode_ms = median_ms(lambda q: embedder.model.encode([q]), test.queries[:20])
    print(f"retrieval call: bm25 {retrieval_ms['bm25']:.3f} ms, dense {retrieval_ms['dense']:.3f} ms; "
          f"uncached query embedding (forward pass) {encode_ms:.3f} ms")
    fixed = make_router(RoutingConfig(kind="fixed"))
    for name, router in [("fixed", fixed), *routers.items()]:
        ms = median_ms(router.route, test.queries)
        print(f"{name:20s} {ms:8.3f} ms   x{ms / retrieval_ms['bm25']:7.2f} of bm25   "
              f"x{ms / retrieval_ms['dense']:6.2f} of dense")
    print(f"{'learned, cold query':20s} {'':8s}    add {encode_ms:.3f} ms when the query embedding is not cached "
          "(dense retrieval needs it too)")
    print("cascade: one generation call per tier tried (not a cheap decision)")

    for target in TARGETS:
        print(f"\n== test split, threshold chosen on train to keep {target:.0%} of top-model quality ==")
        print(f"{'router':27s} {'thr':>5s} {'acc@thr':>7s} {'acc@0.5':>7s} {'cost saved':>10s} "
              f"{'quality':>8s} {'random@same cost':>16s}  tier shares")
        for name, (s_train, s_test, cascade) in scores.items():
            curve = sweep_thresholds(s_train, q_train, c_train, tiers=tiers, labels=y_train, cascade=cascade)
            threshold = curve.operating_point(target).threshold
            point = sweep_thresholds(s_test, q_test, c_test, tiers=tiers, labels=y_test,
                                     thresholds=(threshold,), cascade=cascade).points[0]
            acc05 = float(np.mean(choose_tiers(s_test, 0.5) == y_test))
            shares = " ".join(f"{s:.2f}" for s in point.tier_shares)
            print(f"{name:27s} {threshold:5.3f} {point.accuracy:7.3f} {acc05:7.3f} "
                  f"{point.cost_reduction:10.1%} {point.quality_retained:8.1%} "
                  f"{point.random_quality_retained:16.1%}  {shares}")
        always_cheap = evaluate_routing(np.zeros(len(y_test), dtype=int), q_test, c_test, tiers=tiers, labels=y_test)
        print(f"{'always cheapest':27s} {'':5s} {always_cheap.accuracy:7.3f} {'':7s} "
              f"{always_cheap.cost_reduction:10.1%} {always_cheap.quality_retained:8.1%}")


if __name__ == "__main__":
    main()
