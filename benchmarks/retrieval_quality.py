"""Retrieval quality on Cranfield, whole documents: nDCG@10, recall@100 and MRR@10 per retriever.

Reference figures measured with the anchor libraries (rank_bm25 with lowercasing and stopwords,
no stemming; sentence-transformers all-MiniLM-L6-v2; RRF with k=60): nDCG@10 0.350, 0.382, 0.407.

    WORKBENCH_CACHE_DIR=.cache/dev HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/retrieval_quality.py [--variants]

Documents are title + " " + text, as BEIR indexes them (Cranfield's `text` repeats the title,
so the title appears twice); BM25 uses scikit-learn's English stop words and `\b\w+\b` tokens.
That one setting reproduces all three references within 0.005. `--variants` prints BM25 nDCG@10
for each document text, stopword list and token pattern tried while reproducing them.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from workbench.config import RetrievalConfig
from workbench.datasets import Dataset, load_dataset
from workbench.embedding import load_embedder
from workbench.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from workbench.retrieval import ENGLISH_STOPWORDS, Bm25Index, Bm25Tokenizer, build_retriever
from workbench.types import Chunk

REFERENCE_NDCG10 = {"bm25": 0.350, "dense": 0.382, "hybrid-rrf": 0.407}

# NLTK's English list (as bm25s bundles it) and Lucene's English stop set (bm25s's default).
NLTK_STOPWORDS = frozenset(
    """a about above after again against ain all am an and any are aren aren't as at be because been
    before being below between both but by can couldn couldn't d did didn didn't do does doesn doesn't
    doing don don't down during each few for from further had hadn hadn't has hasn hasn't have haven
    haven't having he her here hers herself him himself his how i if in into is isn isn't it it's its
    itself just ll m ma me mightn mightn't more most mustn mustn't my myself needn needn't no nor not
    now o of off on once only or other our ours ourselves out over own re s same shan shan't she she's
    should should've shouldn shouldn't so some such t than that that'll the their theirs them
    themselves then there these they this those through to too under until up ve very was wasn wasn't
    we were weren weren't what when where which while who whom why will with won won't wouldn
    wouldn't y you you'd you'll you're you've your yours yourself yourselves""".split()
)
# Lucene's English stop set, bm25s's default STOPWORDS_EN.
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)


def whole_documents(dataset: Dataset) -> list[Chunk]:
    """One chunk per document (chunking method "none")."""
    return [Chunk(id=d.id, doc_id=d.id, text=d.text, start=0, end=len(d.text), metadata=d.metadata) for d in dataset.documents]


def score(dataset: Dataset, rankings: dict[str, list[str]]) -> dict[str, float]:
    """Mean nDCG@10, recall@100 and MRR@10 over the judged queries."""
    qids = dataset.evaluated_queries
    rows = [(ndcg_at_k(dataset.qrels[q], rankings[q], 10), recall_at_k(dataset.qrels[q], rankings[q], 100),
             mrr_at_k(dataset.qrels[q], rankings[q], 10)) for q in qids]
    return {name: sum(r[i] for r in rows) / len(rows) for i, name in enumerate(("ndcg@10", "recall@100", "mrr@10"))}


def variants(dataset: Dataset) -> None:
    """BM25 nDCG@10 for each document text x stopword list x token pattern."""
    print("\nBM25 reproduction grid (nDCG@10; rank_bm25 semantics, no stemming)")
    lists = {"sklearn (ours)": ENGLISH_STOPWORDS, "nltk": NLTK_STOPWORDS, "lucene/bm25s": LUCENE_STOPWORDS}
    patterns = {r"\b\w\w+\b": r"(?u)\b\w\w+\b", r"\b\w+\b": r"(?u)\b\w+\b"}
    texts = {"title + ' ' + text": [d.text for d in dataset.documents],
             "text": [d.text[len(d.metadata.get("title", "")):].strip() for d in dataset.documents]}
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

    print(f"embedding cache: {embedder.stats}")
    if args.variants:
        variants(dataset)


if __name__ == "__main__":
    main()
