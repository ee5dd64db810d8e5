"""The semantic response cache measured on both bundled sets: hit rate and wrong-hit rate per threshold.

The query log of each set is every judged question once, the hand-written paraphrases in
data/paraphrases/ (30 Cranfield, 40 chunking-set questions) and exact repeats of a seeded 20%
sample, shuffled (seed 0). A hit is wrong when the cached question shares no relevant
document with the new one (Cranfield qrels) or no overlapping reference span (chunking set).
The chosen threshold is the lowest whose wrong-hit rate stays at or under 1% of all questions
on *both* sets; its measured hit rate on each set then prices the response-cache lever.

    WORKBENCH_CACHE_DIR=.cache/dev HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/response_cache.py
"""

from __future__ import annotations

import numpy as np

from workbench.config import PipelineConfig
from workbench.costs import Workload, cost_per_query
from workbench.datasets import load_dataset
from workbench.embedding import load_embedder
from workbench.response_cache import load_paraphrases, query_log, shares_relevance, threshold_sweep

THRESHOLDS = [round(t, 3) for t in np.arange(0.60, 1.0001, 0.025)]
MAX_WRONG = 0.01


def main() -> None:
    embedder = load_embedder()
    sweeps = {}
    for name in ("cranfield", "chunking"):
        dataset = load_dataset(name)
        queries, labels = query_log(dataset, load_paraphrases(name), repeat_share=0.2, seed=0)
        sweep = threshold_sweep(queries, labels, THRESHOLDS, embed=embedder.embed, agree=shares_relevance(dataset))
        sweeps[name] = sweep
        n_para = sum(len(p) for p in load_paraphrases(name).values())
        print(f"\n{name}: {sweep.n} questions in the log ({len(dataset.evaluated_queries)} judged, "
              f"{n_para} paraphrases, {sweep.n - len(dataset.evaluated_queries) - n_para} exact repeats)")
        print(sweep.to_frame().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    chosen = max(min(t for t, w in zip(s.thresholds, s.wrong_rate, strict=True) if w <= MAX_WRONG)
                 for s in sweeps.values())
    print(f"\nchosen threshold: {chosen} (lowest with wrong-hit rate <= {MAX_WRONG:.0%} on both sets)")
    config = PipelineConfig()
    for name, s in sweeps.items():
        i = s.thresholds.index(chosen)
        hit = s.hit_rate[i]
        cost = cost_per_query(config, Workload(response_cache_hit_rate=hit))
        print(f"  {name}: measured hit rate {hit:.3f}, wrong-hit rate {s.wrong_rate[i]:.3f}, precision "
              f"{s.precision[i]:.3f}; response-cache saving {cost.savings['response_cache'] / cost.naive_total:.1%} "
              "of the naive per-query cost (measured hit rate, default config)")


if __name__ == "__main__":
    main()
