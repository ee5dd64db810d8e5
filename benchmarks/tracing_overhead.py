"""Tracing overhead per request against tracing off, in one process, as a ratio of retrieval time.

Runs the same Cranfield queries through `Pipeline.search` (retrieve only) and `Pipeline.answer`
(route, retrieve, lexical extractive answer) in interleaved rounds:

  bare      the retriever called directly (no tracing code at all)
  off       the instrumented pipeline with tracing off
  on        tracing on, local SQLite exporter (batched in a background thread)
  sdk       the floor: the retriever plus the same two spans (request, retrieve) with the same
            hit arrays made directly with the OpenTelemetry SDK, no workbench code

and prints the median (and mean) per-request time of each (process CPU time by default: on a
shared machine wall time mostly measures waiting for a core; `--clock wall` for latency), the overhead of `on` over `off` as a share of
retrieval time (target < 5 %), the cost of `off` over `bare`, and the export work per request
(flush time after the timed requests, divided by their number).

    WORKBENCH_CACHE_DIR=.cache/dev python benchmarks/tracing_overhead.py [--config configs/bm25.toml]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from workbench import tracing
from workbench.config import load_config, replace_path
from workbench.datasets import load_dataset
from workbench.experiment import build_pipeline

ROOT = Path(__file__).resolve().parent.parent


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: this process, all its threads


def timed(fn, queries, clock) -> list[float]:
    out = []
    for q in queries:
        t0 = clock()
        fn(q)
        out.append(clock() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "bm25.toml"))
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--block", type=int, default=20, help="queries per on/off block")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu (process CPU time; robust on a shared, loaded machine) or wall")
    parser.add_argument("--no-content", action="store_true", help="trace with record_content=False")
    args = parser.parse_args()

    config = replace_path(load_config(args.config), "generation.extractive_scorer", "lexical")
    dataset = load_dataset("cranfield")
    pipeline = build_pipeline(config, dataset)
    queries = list(dataset.queries.values())[: args.queries]
    k = config.retrieval.k
    clock = CLOCKS[args.clock]
    store_path = Path(tempfile.mkdtemp()) / "runs.sqlite"

    def bare(q: str) -> None:
        pipeline.retriever.retrieve(q, k, None)

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(tracing.SQLiteSpanExporter(tracing.TraceStore(store_path))))
    tracer = provider.get_tracer("floor")

    def sdk(q: str) -> None:
        with tracer.start_as_current_span("search", attributes={"workbench.query": q}):
            with tracer.start_as_current_span("retrieve", attributes={"workbench.stage": "retrieve"}) as span:
                hits = pipeline.retriever.retrieve(q, k, None)[: tracing.HITS_RECORDED]
                span.set_attributes({"workbench.hits.count": len(hits),
                                     "workbench.hits.chunk_ids": [h.chunk.id for h in hits],
                                     "workbench.hits.doc_ids": [h.chunk.doc_id for h in hits],
                                     "workbench.hits.scores": [float(h.score) for h in hits]})

    times: dict[str, list[float]] = {
        m: [] for m in ("bare", "sdk", "search off", "search on", "answer off", "answer on")
    }
    export_s, exported = 0.0, 0
    for q in queries[:10]:  # warm-up: caches, imports, the SDK
        pipeline.answer(q)
    tracing.enable_tracing(store_path, otlp=False)
    pipeline.answer(queries[0])
    tracing.flush()
    tracing.disable_tracing()
    blocks = [queries[i : i + args.block] for i in range(0, len(queries), args.block)]
    for r in range(args.rounds):
        for b, block in enumerate(blocks):
            # bare and off need no switching: alternate them query by query
            for i, q in enumerate(block):
                trio = (("bare", bare), ("search off", pipeline.search), ("sdk", sdk))
                for mode, fn in trio if (i + r) % 2 else trio[::-1]:
                    times[mode] += timed(fn, [q], clock)
            # off and on alternate block by block (switching itself is not timed)
            for on in ((False, True) if (b + r) % 2 else (True, False)):
                if on:
                    tracing.enable_tracing(store_path, otlp=False, record_content=not args.no_content)
                times[f"search {'on' if on else 'off'}"] += timed(pipeline.search, block, clock)
                times[f"answer {'on' if on else 'off'}"] += timed(pipeline.answer, block, clock)
                if on:
                    t0 = time.perf_counter()
                    tracing.flush()
                    export_s += time.perf_counter() - t0
                    exported += 2 * len(block)
                    tracing.disable_tracing()

    med = {m: statistics.median(v) for m, v in times.items()}
    n = len(times["bare"])
    print(f"config {config.name} ({config.retrieval.kind}, k={k}), {len(queries)} queries x {args.rounds} rounds "
          f"= {n} requests per mode, {args.clock} time, content {'off' if args.no_content else 'recorded'}")
    for mode, value in med.items():
        print(f"  {mode:<11} median {1e3 * value:8.3f} ms   mean {1e3 * statistics.fmean(times[mode]):8.3f} ms")
    retrieval = med["search off"]
    for what in ("search", "answer"):
        extra = med[f"{what} on"] - med[f"{what} off"]
        print(f"tracing on vs off, {what}: +{1e6 * extra:7.1f} us per request = "
              f"{extra / retrieval:+.2%} of retrieval time (ratio on/off {med[f'{what} on'] / med[f'{what} off']:.3f})")
    sdk_extra = med["sdk"] - med["bare"]
    print(f"the OpenTelemetry SDK's own floor (2 spans, same hit arrays): +{1e6 * sdk_extra:7.1f} us per request = "
          f"{sdk_extra / retrieval:+.2%} of retrieval time")
    print(f"tracing off vs no tracing code (search): {1e6 * (med['search off'] - med['bare']):+.1f} us per request = "
          f"{(med['search off'] - med['bare']) / med['bare']:+.2%} (ratio {med['search off'] / med['bare']:.3f})")
    provider.shutdown()
    print(f"export still pending at flush: {1e6 * export_s / exported:.1f} us per traced request "
          f"({len(tracing.TraceStore(store_path).traces())} traces stored)")


if __name__ == "__main__":
    main()
