"""Tracing overhead per request against tracing off, in one process, as a share of retrieval time.

For each retriever kind (configs bm25, dense, hybrid; the lexical extractive generator answers),
every Cranfield query goes through `Pipeline.search` (retrieve only) and `Pipeline.answer`
(route, retrieve, generate) once per mode, the modes in a fresh random order for each query:

  off      tracing off: the in-process baseline
  on       tracing on, every request sampled, local SQLite exporter
  on 10%   tracing on, OTEL_TRACES_SAMPLER=parentbased_traceidratio, OTEL_TRACES_SAMPLER_ARG=0.1
  sdk      (search only) the retriever plus the same two spans made directly with the
           OpenTelemetry SDK on the request thread: what tracing cost when spans were built there
  bare     (search only) the retriever called directly: what the no-op tracing calls cost

Both traced modes stay enabled the whole run (each with its export thread and store
connection, as in an application); the benchmark only swaps which one is live between two
requests (`workbench.tracing.spans._state`), because switching tracing on (opening the store,
starting a thread) evicts caches and would be charged to the next requests. Each query runs
once untimed first, so caches its first run fills (e.g. its embedding) are full for every mode.

Each request is timed (its result freed after the clock stops, in every mode: a trace keeps
the response until it is exported, so freeing it inside the timing would favour tracing) by
the CPU time of its own thread (`time.thread_time`: robust on a
shared, loaded machine, where wall time mostly measures waiting for a core) and by wall time.
An overhead is the median of the paired differences (same query, same round), taken apart
for the requests where either mode ran first and averaged; its 95% interval resamples queries.
The export work (building the spans, redaction, the SQLite writes) runs on the export thread
or in `flush()`; it is measured apart, per traced request of each kind, as process CPU time
minus the requests' own thread time, and added to the request thread's share for the CPU a
traced request costs in all (what throughput pays). On a machine with few cores the export
thread also slows whatever runs beside it; that slows every mode alike here (all tracers stay
live), so it is in no difference above.

    WORKBENCH_CACHE_DIR=.cache/dev python benchmarks/tracing_overhead.py [--kinds bm25 dense hybrid]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from workbench import tracing
from workbench.config import load_config, replace_path
from workbench.datasets import load_dataset
from workbench.experiment import build_pipeline
from workbench.tracing import spans

ROOT = Path(__file__).resolve().parent.parent
SAMPLING = {"on": None, "on 10%": "0.1"}  # OTEL_TRACES_SAMPLER_ARG of each traced mode (None: every request)


def set_sampling(ratio: str | None) -> None:
    """Set (or clear) the standard sampler variables the next `enable_tracing` reads."""
    if ratio is None:
        os.environ.pop("OTEL_TRACES_SAMPLER", None)
        os.environ.pop("OTEL_TRACES_SAMPLER_ARG", None)
    else:
        os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        os.environ["OTEL_TRACES_SAMPLER_ARG"] = ratio


def live_states(store_path: Path, content: bool) -> dict[str, object]:
    """An enabled tracer per traced mode, all alive at once; tracing is left off."""
    states = {}
    for mode, ratio in SAMPLING.items():
        set_sampling(ratio)
        tracing.enable_tracing(store_path, otlp=False, record_content=content)
        states[mode], spans._state = spans._state, None  # keep it running, detached
    set_sampling(None)
    return states


def sdk_search(pipeline, tracer, k: int) -> Callable[[str], None]:
    """Search with the two spans made on the request thread by the OpenTelemetry SDK."""

    def search(q: str) -> None:
        with tracer.start_as_current_span("search", attributes={"workbench.query": q}):
            with tracer.start_as_current_span("retrieve", attributes={"workbench.stage": "retrieve"}) as span:
                hits = pipeline.retriever.retrieve(q, k, None)
                top = hits[: tracing.HITS_RECORDED]
                span.set_attributes({"workbench.hits.count": len(hits),
                                     "workbench.hits.chunk_ids": [h.chunk.id for h in top],
                                     "workbench.hits.doc_ids": [h.chunk.doc_id for h in top],
                                     "workbench.hits.scores": [float(h.score) for h in top]})

    return search


def paired(a: dict, b: dict, first: dict, keys: list | None = None) -> float:
    """The median of a[key] - b[key], balanced for which of the two ran first (`first[key]`: a did)."""
    keys = list(a) if keys is None else keys
    groups = [[a[key] - b[key] for key in keys if first[key] is f] for f in (True, False)]
    return statistics.fmean(statistics.median(g) for g in groups if g)


def interval(a: dict, b: dict, first: dict, resamples: int = 300) -> tuple[float, float]:
    """A 95% bootstrap interval of `paired`, resampling queries (all rounds of a query together)."""
    by_query: dict[int, list] = {}
    for key in a:
        by_query.setdefault(key[1], []).append(key)
    queries = list(by_query)
    rng = random.Random(1)
    stats = sorted(
        paired(a, b, first, [key for q in rng.choices(queries, k=len(queries)) for key in by_query[q]])
        for _ in range(resamples)
    )
    return stats[int(0.025 * resamples)], stats[int(0.975 * resamples) - 1]


def export_cpu(fn: Callable[[str], object], queries: list[str], store_path: Path, ratio: str | None,
               content: bool) -> float:
    """CPU seconds per traced request of `fn` spent off its thread (export thread and `flush()`)."""
    set_sampling(ratio)
    tracing.enable_tracing(store_path, otlp=False, record_content=content)
    set_sampling(None)
    own, p0 = 0.0, time.process_time()
    for q in queries:
        t0 = time.thread_time()
        fn(q)
        own += time.thread_time() - t0
    assert tracing.flush()
    spent = time.process_time() - p0 - own
    tracing.disable_tracing()
    return spent / len(queries)


def bench_kind(kind: str, dataset, args, store_path: Path) -> dict[str, float]:
    """Time one retriever kind; print its table and return its overheads (share of retrieval)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    config = replace_path(load_config(ROOT / "configs" / f"{kind}.toml"), "generation.extractive_scorer", "lexical")
    pipeline = build_pipeline(config, dataset)
    queries = list(dataset.queries.values())[: args.queries]
    k = config.retrieval.k
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(tracing.SQLiteSpanExporter(tracing.TraceStore(store_path))))
    runs = {
        "search": {"bare": lambda q: pipeline.retriever.retrieve(q, k, None),
                   "sdk": sdk_search(pipeline, provider.get_tracer("floor"), k)},
        "answer": {},
    }
    states = {"off": None, **live_states(store_path, not args.no_content)}
    shuffle = random.Random(0).shuffle
    cpu: dict[str, dict] = {}
    wall: dict[str, dict] = {}
    position: dict[str, dict] = {}  # mode -> (round, query, what) -> its place in that query's order
    for q in queries[:5]:  # warm-up: imports, the SDK, each tracer
        for state in states.values():
            spans._state = state
            pipeline.answer(q)
    for r in range(args.rounds):
        for i, q in enumerate(queries):
            spans._state = None
            pipeline.answer(q)  # untimed: the caches this query fills are full for every mode
            for what, fn in (("search", pipeline.search), ("answer", pipeline.answer)):
                order = [*states, *runs[what]]
                shuffle(order)
                for place, mode in enumerate(order):
                    spans._state = states.get(mode)
                    call = runs[what].get(mode, fn)
                    t0, w0 = time.thread_time(), time.perf_counter()
                    result = call(q)
                    cpu.setdefault(f"{what} {mode}", {})[r, i] = time.thread_time() - t0
                    wall.setdefault(f"{what} {mode}", {})[r, i] = time.perf_counter() - w0
                    del result  # freed untimed in every mode (a trace holds it until it is exported)
                    position.setdefault(f"{what} {mode}", {})[r, i] = place
                spans._state = None
    for state in states.values():  # export what they hold, stop their threads
        if state is not None:
            spans._state = state
            tracing.disable_tracing()
    provider.shutdown()
    export = {(what, mode): export_cpu(getattr(pipeline, what), queries[: args.export_queries], store_path, ratio,
                                       not args.no_content)
              for mode, ratio in SAMPLING.items() for what in ("search", "answer")}

    def overhead(times: dict, a: str, b: str, ci: bool = False) -> float | tuple[float, float]:
        first = {key: position[a][key] < position[b][key] for key in position[a]}
        return interval(times[a], times[b], first) if ci else paired(times[a], times[b], first)

    med = {m: statistics.median(v.values()) for m, v in cpu.items()}
    wmed = {m: statistics.median(v.values()) for m, v in wall.items()}
    retrieval, wretrieval = med["search off"], wmed["search off"]
    print(f"\n== {kind} (k={k}): {len(queries)} queries x {args.rounds} rounds = {args.rounds * len(queries)} "
          f"requests per mode, content {'off' if args.no_content else 'recorded'}")
    print(f"  {'mode':<16}{'thread CPU median':>18}{'wall median':>14}")
    for mode in sorted(cpu):
        print(f"  {mode:<16}{1e3 * med[mode]:15.3f} ms{1e3 * wmed[mode]:11.3f} ms")
    out = {}
    for mode in SAMPLING:
        for what in ("search", "answer"):
            extra = overhead(cpu, f"{what} {mode}", f"{what} off")
            low, high = overhead(cpu, f"{what} {mode}", f"{what} off", ci=True)
            wextra = overhead(wall, f"{what} {mode}", f"{what} off")
            out[f"{what} {mode}"] = extra / retrieval
            print(f"  tracing {mode:<6} vs off, {what}: {1e6 * extra:+7.1f} us = {extra / retrieval:+6.2%} of retrieval "
                  f"[95% {low / retrieval:+.2%}, {high / retrieval:+.2%}] (ratio {1 + extra / med[f'{what} off']:.3f}); "
                  f"wall {1e6 * wextra:+7.1f} us = {wextra / wretrieval:+6.2%}")
            work = export[what, mode]
            print(f"      + export work off the request thread: {1e6 * work:7.1f} us CPU per request "
                  f"= {work / retrieval:+7.2%} of retrieval; all CPU added per request {(extra + work) / retrieval:+7.2%}")
    sdk = overhead(cpu, "search sdk", "search bare")
    print(f"  OpenTelemetry SDK spans on the request thread (search): {1e6 * sdk:+7.1f} us = {sdk / retrieval:+6.2%} of retrieval")
    off = overhead(cpu, "search off", "search bare")
    print(f"  tracing off vs no tracing code (search): {1e6 * off:+7.1f} us = {off / med['search bare']:+6.2%}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["bm25", "dense", "hybrid"], choices=["bm25", "dense", "hybrid"])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--export-queries", type=int, default=200, help="queries of the export-work pass")
    parser.add_argument("--no-content", action="store_true", help="trace with record_content=False")
    args = parser.parse_args()

    dataset = load_dataset("cranfield")
    store_path = Path(tempfile.mkdtemp()) / "runs.sqlite"
    results = {kind: bench_kind(kind, dataset, args, store_path) for kind in args.kinds}
    print(f"\nsummary: tracing overhead on the request thread, share of retrieval time (target < 5%); "
          f"{len(tracing.TraceStore(store_path).traces())} traces stored")
    print(f"  {'kind':<8}" + "".join(f"{key:>17}" for key in next(iter(results.values()))))
    for kind, out in results.items():
        print(f"  {kind:<8}" + "".join(f"{value:>+17.2%}" for value in out.values()))


if __name__ == "__main__":
    main()
