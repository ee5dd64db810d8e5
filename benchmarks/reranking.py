"""Does reranking pay? Each offline reranker against its hybrid input, on Cranfield and the chunking set.

For each dataset: hybrid retrieval (RRF of BM25 and MiniLM) gives the top 100; each reranker
reorders the top N (10, 20, 50, 100) to k=10. Printed per (reranker, N): nDCG@10 before -> after,
precision/recall@10, wins/losses/ties over queries, the paired randomisation test's p-value,
milliseconds per query added and that time as a ratio of the first-stage retrieval time measured
in the same process. Then the MaxSim token-selection ablation at N=50, and the fine-tuned
cross-encoder: training seconds, nDCG@10 on some of its training queries (the sanity check: it
must beat the input there), held-out nDCG@10 against its input, alone and fused with the input
at the weight its validation queries chose (MaxSim on the same held-out queries, for comparison).
The pointwise LLM reranker runs on a few queries only (it costs seconds per query on two cores)
and only when the `local` extra is installed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reranking.py [--datasets cranfield chunking]
        [--depths 10 20 50 100] [--llm-queries 10 (0: skip)] [--no-train | --train-only]
        [--train-epochs 1] [--cross-encoder NAME_OR_PATH]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from workbench.config import ChunkingConfig, PipelineConfig, RerankingConfig, RetrievalConfig  # noqa: E402
from workbench.datasets import load_dataset  # noqa: E402
from workbench.embedding import load_embedder  # noqa: E402
from workbench.evaluation import TrainConfig, evaluate_reranker, retrieve_candidates, train_reranker  # noqa: E402
from workbench.reranking import MaxSimReranker, make_reranker  # noqa: E402

K = 10
TRAIN_DEPTH = 20


def pipeline_for(name: str) -> PipelineConfig:
    # Cranfield abstracts are short: one chunk per document. The chunking set's three long
    # documents use the default recursive 256-token chunks.
    chunking = ChunkingConfig(method="none") if name == "cranfield" else ChunkingConfig()
    return PipelineConfig(chunking=chunking, retrieval=RetrievalConfig(kind="hybrid", k=100))


def print_evaluation(ev, retrieval_ms: float) -> None:
    for s in ev.summaries:
        print(
            f"  {ev.name:22s} N={s.depth:<3d} nDCG@{s.k} {s.ndcg_before:.4f} -> {s.ndcg_after:.4f} "
            f"({s.mean_diff:+.4f})  P {s.precision_before:.3f}->{s.precision_after:.3f}  "
            f"R {s.recall_before:.3f}->{s.recall_after:.3f}  W/L/T {s.wins}/{s.losses}/{s.ties}  "
            f"p={s.p_value:.4f}  +{s.ms_per_query:.1f} ms/q ({s.ms_per_query / retrieval_ms:.1f}x retrieval)  "
            f"{s.verdict}",
            flush=True,
        )


def compare_rerankers(args, embedder, candidates, retrieval_ms: float) -> None:
    """The MaxSim ablation at N=50, then each reranker at each N."""
    texts = list(dict.fromkeys(h.chunk.text for hits in candidates.hits.values() for h in hits))
    t0 = time.perf_counter()
    MaxSimReranker(embedder).passage_tokens(texts)
    print(f"  MaxSim passage token cache: {len(texts)} passages ready in {time.perf_counter() - t0:.1f} s "
          "(one-off; ~0 s when already cached)", flush=True)

    print(f"-- MaxSim: which tokens count (N=50, k={K})", flush=True)
    for tokens in ("all", "content", "no-stopwords"):
        for idf in (False, True):
            reranker = MaxSimReranker(embedder, query_tokens=tokens, idf=idf)
            ev = evaluate_reranker(reranker, candidates, depths=(50,), k=K, name=f"maxsim {tokens} idf={idf}")
            print_evaluation(ev, retrieval_ms)

    rerankers = {
        "maxsim (default)": RerankingConfig(kind="maxsim"),
        "maxsim + input w=.5": RerankingConfig(kind="maxsim", input_weight=0.5),
        "mmr lambda=0.7": RerankingConfig(kind="mmr", mmr_lambda=0.7),
    }
    if args.cross_encoder:
        rerankers["cross-encoder"] = RerankingConfig(kind="cross-encoder", model=args.cross_encoder)
    print(f"-- each reranker at each N (k={K})", flush=True)
    for label, config in rerankers.items():
        reranker = make_reranker(config, embedder=embedder)
        ev = evaluate_reranker(reranker, candidates, depths=args.depths, k=K, name=label)
        print_evaluation(ev, retrieval_ms)

    if args.llm_queries <= 0:
        return
    try:
        llm = make_reranker(RerankingConfig(kind="llm"))
    except ImportError as exc:
        print(f"  llm: skipped ({exc})", flush=True)
        return
    some = list(candidates.hits)[: args.llm_queries]
    ev = evaluate_reranker(llm, candidates, depths=(10, 20), k=K, name="llm (gemma 270m)", query_ids=some)
    print_evaluation(ev, retrieval_ms)


def train_and_compare(dataset, embedder, candidates, retrieval_ms: float, epochs: int) -> None:
    """Fine-tune on 60% of the queries (20% more choose the fusion weight); test on the held-out 20%."""
    print(f"-- fine-tuned cross-encoder (packaged MiniLM, pointwise BCE, BM25 hard + random negatives), "
          f"N={TRAIN_DEPTH}, {epochs} epoch(s)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        # The defaults: 2 positives, 3 hard and 1 random negative per query, one epoch at a high
        # learning rate (few steps), scored at N=20 (cross-encoding 50 candidates of every
        # validation and held-out query would cost more than the training).
        config = TrainConfig(depth=TRAIN_DEPTH, epochs=epochs)
        report = train_reranker(dataset, os.path.join(tmp, "ce"), candidates=candidates, config=config)
        print(f"  {report.summary()}", flush=True)
        print("  validation nDCG@10 by input_weight: "
              + ", ".join(f"{w}: {v:.4f}" for w, v in report.validation_ndcg.items()), flush=True)
        print_evaluation(report.raw_evaluation, retrieval_ms)
        print_evaluation(report.evaluation, retrieval_ms)
        # The sanity check: on its own training queries (20 of them) the model must beat the input.
        trained = make_reranker(report.reranking_config(input_weight=0.0), embedder=embedder)
        ev = evaluate_reranker(trained, candidates, depths=(TRAIN_DEPTH,), k=K, name="trained (TRAIN queries)",
                               query_ids=list(report.train_queries)[:20])
        print_evaluation(ev, retrieval_ms)
        held = list(report.heldout_queries)
        for label, config_ in (
            ("maxsim (held-out)", RerankingConfig(kind="maxsim")),
            ("maxsim + input w=.5", RerankingConfig(kind="maxsim", input_weight=0.5)),
        ):
            reranker = make_reranker(config_, embedder=embedder)
            ev = evaluate_reranker(reranker, candidates, depths=(TRAIN_DEPTH,), k=K, name=label, query_ids=held)
            print_evaluation(ev, retrieval_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["cranfield", "chunking"])
    parser.add_argument("--depths", nargs="+", type=int, default=[10, 20, 50, 100])
    parser.add_argument("--llm-queries", type=int, default=10)
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--train-only", action="store_true", help="only the fine-tuned cross-encoder part")
    parser.add_argument("--train-epochs", type=int, default=1, help="epochs of the fine-tuned cross-encoder")
    parser.add_argument("--cross-encoder", default="", help="a cross-encoder name or path (needs it locally)")
    args = parser.parse_args()

    embedder = load_embedder()
    for name in args.datasets:
        dataset = load_dataset(name)
        t0 = time.perf_counter()
        candidates = retrieve_candidates(pipeline_for(name), dataset, depth=max(args.depths))
        print(
            f"\n== {name}: {len(candidates.hits)} queries, {len(candidates.chunks)} chunks, judged per "
            f"{candidates.unit}; hybrid top-{candidates.depth} in {time.perf_counter() - t0:.0f} s, "
            f"{candidates.retrieval_ms:.1f} ms/query (batched)",
            flush=True,
        )
        if not args.train_only:
            compare_rerankers(args, embedder, candidates, candidates.retrieval_ms)
        if not args.no_train:
            train_and_compare(dataset, embedder, candidates, candidates.retrieval_ms, args.train_epochs)


if __name__ == "__main__":
    main()
