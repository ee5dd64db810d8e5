"""Retrieval quality on Cranfield, whole documents: nDCG@10, recall@100 and MRR@10 per retriever.

Reference figures measured with the anchor libraries (rank_bm25 with lowercasing and stopwords,
no stemming; sentence-transformers all-MiniLM-L6-v2; RRF with k=60): nDCG@10 0.350, 0.382, 0.407.

    WORKBENCH_CACHE_DIR=.cache/dev HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/retrieval_quality.py [--variants]

The dataset's document text is Cranfield's `text`, which already begins with the title. The
dense reference is reproduced only when documents are embedded as title + " " + text (BEIR's
convention, the title twice): the "reproduction" rows show that, and the hybrid built from
BM25 on the text and dense on title + text.
`--variants` also prints BM25 nDCG@10 for each document text, stopword list and token pattern
that was tried while reproducing the 0.350 reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from workbench.config import RetrievalConfig
from workbench.datasets import Dataset, load_dataset
from workbench.embedding import load_embedder
from workbench.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from workbench.retrieval import ENGLISH_STOPWORDS, Bm25Index, Bm25Tokenizer, HybridRetriever, build_retriever
from workbench.types import Chunk

REFERENCE_NDCG10 = {"bm25": 0.350, "dense": 0.382, "hybrid-rrf": 0.407}

# Lucene's English stop set, bm25s's default STOPWORDS_EN.
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)


def whole_documents(dataset: Dataset, *, with_title: bool = False) -> list[Chunk]:
    """One chunk per document (chunking method "none"), optionally as title + " " + text."""
    chunks = []
    for d in dataset.documents:
        text = f"{d.metadata.get('title', '')} {d.text}" if with_title else d.text
        chunks.append(Chunk(id=d.id, doc_id=d.id, text=text, start=0, end=len(text), metadata=d.metadata))
    return chunks


def score(dataset: Dataset, rankings: dict[str, list[str]]) -> dict[str, float]:
    """Mean nDCG@10, recall@100 and MRR@10 over the judged queries."""
    qids = dataset.evaluated_queries
    rows = [(ndcg_at_k(dataset.qrels[q], rankings[q], 10), recall_at_k(dataset.qrels[q], rankings[q], 100),
             mrr_at_k(dataset.qrels[q], rankings[q], 10)) for q in qids]
    return {name: sum(r[i] for r in rows) / len(rows) for i, name in enumerate(("ndcg@10", "recall@100", "mrr@10"))}


def variants(dataset: Dataset) -> None:
    """BM25 nDCG@10 for each document text x stopword list x token pattern."""
    print("\nBM25 reproduction grid (nDCG@10; rank_bm25 semantics, no stemming)")
    lists = {"nltk (ours)": ENGLISH_STOPWORDS, "sklearn": frozenset(ENGLISH_STOP_WORDS), "lucene/bm25s": LUCENE_STOPWORDS}
    patterns = {r"\b\w\w+\b": r"(?u)\b\w\w+\b", r"\b\w+\b": r"(?u)\b\w+\b"}
    texts = {"text": [d.text for d in dataset.documents],
             "title + ' ' + text": [f"{d.metadata.get('title', '')} {d.text}" for d in dataset.documents]}
    ids = [d.id for d in dataset.documents]
    for text_name, doc_texts in texts.items():
        for list_name, stopwords in lists.items():
            for pattern_name, pattern in patterns.items():
                tokenizer = Bm25Tokenizer(stopwords=stopwords, token_pattern=pattern)
                index = Bm25Index([tokenizer(t) for t in doc_texts])
                rankings = {q: [ids[i] for i in index.top_k(tokenizer(dataset.queries[q]), 100)[0]]
                            for q in dataset.evaluated_queries}
                print(f"  {text_name:20s} {list_name:13s} {pattern_name:10s} {score(dataset, rankings)['ndcg@10']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", action="store_true", help="also print the BM25 reproduction grid")
    args = parser.parse_args()
    dataset = load_dataset("cranfield")
    chunks = whole_documents(dataset)
    embedder = load_embedder()
    queries = [dataset.queries[q] for q in dataset.evaluated_queries]
    base = RetrievalConfig()
    configs = {
        "bm25": dataclasses.replace(base, kind="bm25"),
        "bm25-stemmed": dataclasses.replace(base, kind="bm25", stemmer="english"),
        "dense": dataclasses.replace(base, kind="dense"),
        "dense-hnsw": dataclasses.replace(base, kind="dense", index="hnsw"),
        "hybrid-rrf": dataclasses.replace(base, kind="hybrid", fusion="rrf", rrf_k=60),
        "hybrid-weighted": dataclasses.replace(base, kind="hybrid", fusion="weighted", dense_weight=0.5),
        "hybrid-rrf-stemmed": dataclasses.replace(base, kind="hybrid", fusion="rrf", rrf_k=60, stemmer="english"),
    }
    print(f"Cranfield: {len(chunks)} documents, {len(queries)} judged queries, whole documents")
    header = f"{'retriever':34s} {'nDCG@10':>8s} {'recall@100':>10s} {'MRR@10':>8s} {'reference':>9s} {'build s':>8s} {'ms/query':>8s}"
    print(header)

    def report(name: str, retriever, build_s: float, reference: float | None = None) -> None:
        t0 = time.perf_counter()
        results = retriever.retrieve_many(queries, 100)
        query_s = time.perf_counter() - t0
        rankings = {q: [h.chunk.doc_id for h in hits] for q, hits in zip(dataset.evaluated_queries, results)}
        m = score(dataset, rankings)
        ref_text = f"{reference:.3f}" if reference is not None else ""
        print(f"{name:34s} {m['ndcg@10']:8.4f} {m['recall@100']:10.4f} {m['mrr@10']:8.4f} {ref_text:>9s} "
              f"{build_s:8.2f} {1000 * query_s / len(queries):8.2f}", flush=True)

    for name, config in configs.items():
        t0 = time.perf_counter()
        retriever = build_retriever(config, chunks, embedder if config.kind != "bm25" else None)
        report(name, retriever, time.perf_counter() - t0, REFERENCE_NDCG10.get(name))

    print("reproduction: dense on title + ' ' + text")
    titled = whole_documents(dataset, with_title=True)
    t0 = time.perf_counter()
    dense_titled = build_retriever(configs["dense"], titled, embedder)
    report("dense (title + text)", dense_titled, time.perf_counter() - t0, REFERENCE_NDCG10["dense"])
    t0 = time.perf_counter()
    bm25 = build_retriever(configs["bm25"], chunks)
    mixed = HybridRetriever(dense_titled, bm25, configs["hybrid-rrf"])
    report("hybrid-rrf (bm25 text, dense t+t)", mixed, time.perf_counter() - t0, REFERENCE_NDCG10["hybrid-rrf"])
    print(f"embedding cache: {embedder.stats}")
    if args.variants:
        variants(dataset)


if __name__ == "__main__":
    main()
