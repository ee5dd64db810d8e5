"""Offline generators on the chunking set: latency per answer, groundedness, citation precision.

Retrieval is fixed (recursive 256-token chunks, dense MiniLM, top `context_chunks` = 5) so
only the generator varies. For a seeded sample of questions each generator answers from the
same hits; groundedness is the share of answer sentences whose MiniLM cosine to some context
sentence is >= 0.7, citation precision the share of cited chunks holding at least half of a
reference excerpt, and token F1 is against the reference excerpts (the set has no short
answers, so F1 is low for every generator and only comparable between them).
The local Gemma 3 270M runs when the `local` extra is installed.

    WORKBENCH_CACHE_DIR=.cache/dev .venv/bin/python benchmarks/generators.py [--questions 40] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from workbench.config import ChunkingConfig, GenerationConfig, PipelineConfig, RetrievalConfig
from workbench.datasets import load_dataset
from workbench.embedding import load_embedder
from workbench.experiment import build_pipeline
from workbench.generation import make_generator
from workbench.metrics import citation_precision, groundedness, token_f1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=40, help="questions sampled (seed 0)")
    parser.add_argument("--max-tokens", type=int, default=64, help="output cap for the local model")
    args = parser.parse_args()
    dataset = load_dataset("chunking")
    config = PipelineConfig(chunking=ChunkingConfig(method="recursive", size=256),
                            retrieval=RetrievalConfig(kind="dense", k=5))
    embedder = load_embedder(config.embedding)
    pipeline = build_pipeline(config, dataset, embedder=embedder)
    qids = random.Random(0).sample(list(dataset.evaluated_queries), args.questions)
    contexts = {q: pipeline.search(dataset.queries[q])[0][:5] for q in qids}
    by_id = {c.id: c for c in pipeline.chunks}
    docs = {d.id: d.text for d in dataset.documents}

    kinds = [("extractive-lexical", GenerationConfig(kind="extractive", extractive_scorer="lexical")),
             ("extractive-embedding", GenerationConfig(kind="extractive", extractive_scorer="embedding"))]
    try:
        import llama_cpp  # noqa: F401

        kinds.append(("local-gemma-270m", GenerationConfig(kind="local", max_tokens=args.max_tokens, local_n_ctx=4096)))
    except ImportError:
        print("local generator skipped: the `local` extra is not installed (pip install -e .[local])")

    print(f"{len(qids)} questions of the chunking set, top-5 dense hits (recursive 256-token chunks)")
    print(f"{'generator':<22} {'ms/answer p50':>13} {'mean':>8} {'grounded':>9} {'cite prec':>9} {'F1':>6}")
    for name, gen_config in kinds:
        t0 = time.perf_counter()
        generator = make_generator(gen_config, embedder=embedder)
        load_s = time.perf_counter() - t0
        generator.generate(dataset.queries[qids[0]], contexts[qids[0]])  # warm-up, not timed
        latencies, grounded, precision, f1 = [], [], [], []
        for q in qids:
            hits = contexts[q]
            t0 = time.perf_counter()
            answer = generator.generate(dataset.queries[q], hits)
            latencies.append(time.perf_counter() - t0)
            grounded.append(groundedness(answer.text, [h.chunk.text for h in hits], embedder.embed))
            precision.append(citation_precision(answer.citations, by_id, dataset.spans[q]))
            f1.append(token_f1(answer.text, [docs[s.doc_id][s.start:s.end] for s in dataset.spans[q]]))
        print(f"{name:<22} {1000 * statistics.median(latencies):>13.1f} {1000 * statistics.mean(latencies):>8.1f}"
              f" {statistics.mean(grounded):>9.3f} {statistics.mean(precision):>9.3f} {statistics.mean(f1):>6.3f}"
              f"   (load {load_s:.1f} s)")


if __name__ == "__main__":
    main()
