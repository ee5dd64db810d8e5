"""Vector database study: every backend on the same vectors, measured against exact search.

Each backend runs in its own fresh process (spawned), so its peak memory and latency are its
own: it loads the same unit vectors (the dataset's chunks embedded once, through the cache, or
synthetic 384-d clustered vectors), then answers the same queries one at a time. Reported:
recall@10 against exact (numpy) search, nDCG@10 on the judgements (documents ranked by their
best chunk in the top 10), filtered recall and short result lists at 50/10/1/0.1% selectivity
(a `bucket` field spread uniformly over 1,000 values), p50/p95/p99 latency and its ratio to
FAISS flat in the same run, ingest throughput, build time, disk size and the peak RSS of the
client process (the PostgreSQL and Milvus Lite servers run as separate processes, not counted).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from ..datasets import Dataset

__all__ = ["BACKEND_CHOICES", "DEFAULT_SETTINGS", "SELECTIVITIES", "BackendResult", "compare_backends",
           "synthetic_comparison", "synthetic_vectors", "format_table", "to_frame", "recommend_backend"]

# name -> (backend, index kind); the names the CLI and the notebook accept
BACKEND_CHOICES: Mapping[str, tuple[str, str]] = {
    "faiss-flat": ("faiss", "flat"),
    "faiss-hnsw": ("faiss", "hnsw"),
    "pgvector": ("pgvector", "hnsw"),
    "pgvector-ivfflat": ("pgvector", "ivfflat"),
    "pgvector-flat": ("pgvector", "flat"),
    "chroma": ("chroma", "hnsw"),
    "lancedb": ("lancedb", "flat"),
    "lancedb-ivfflat": ("lancedb", "ivfflat"),
    "milvus": ("milvus", "flat"),
    "milvus-ivfflat": ("milvus", "ivfflat"),
    "qdrant-local": ("qdrant", "hnsw"),
}
# the defaults measured here (benchmarks/vectordb.py): HNSW m=16, ef_construction=200,
# ef_search=100; IVF about sqrt(rows) lists, 20 probed
DEFAULT_SETTINGS: Mapping[str, Any] = {"hnsw_m": 16, "hnsw_ef_construction": 200, "hnsw_ef_search": 100,
                                       "ivf_lists": 0, "ivf_probes": 20}
SELECTIVITIES = (0.5, 0.1, 0.01, 0.001)
_BUCKETS = 1000
_FILTERED_QUERIES = 50
_BATCH = 5000


def _pct(share: float) -> str:
    return f"{share * 100:g}pct".replace(".", "_")


@dataclass(frozen=True, kw_only=True)
class BackendResult:
    """One backend on one set of vectors. `error` is set (and the figures NaN) when it failed."""

    backend: str
    label: str
    dataset: str
    rows: int
    dimension: int
    queries: int
    settings: str
    recall_at_10_vs_exact: float
    ndcg_at_10: float | None
    filtered_recall: Mapping[str, float]  # by selectivity key (50pct, 10pct, 1pct, 0_1pct)
    short_lists: Mapping[str, int]  # filtered result lists with fewer than min(10, matching) rows
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p50_vs_faiss_flat: float | None
    ingest_rows_per_s: float
    build_s: float
    disk_mb: float
    peak_rss_mb: float
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Flat snake_case fields (filtered figures as `filtered_recall_<s>` and `short_lists_<s>`)."""
        data = dataclasses.asdict(self)
        for key in ("filtered_recall", "short_lists"):
            data.update({f"{key}_{s}": v for s, v in data.pop(key).items()})
        return data


def synthetic_vectors(n: int, dim: int = 384, *, queries: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` clustered unit vectors (1,000 Gaussian clusters) and `queries` perturbed copies of some of them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    data = centres[rng.integers(0, 1000, n)] + 0.8 * rng.normal(size=(n, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    picked = data[rng.integers(0, n, queries)] + 0.05 * rng.normal(size=(queries, dim)).astype(np.float32)
    return data, picked / np.linalg.norm(picked, axis=1, keepdims=True)


def _buckets(ids: Sequence[str]) -> np.ndarray:
    return np.array([zlib.crc32(i.encode("utf-8")) % _BUCKETS for i in ids], dtype=np.int64)


def _exact(data: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[list[int]]:
    out = []
    for start in range(0, len(queries), 64):
        scores = queries[start : start + 64] @ data.T
        if mask is not None:
            scores[:, ~mask] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out += [[int(i) for i in row if np.isfinite(s[i])] for row, s in zip(top, scores)]
    return out


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: reset by exec, unlike ru_maxrss which a spawned
    child inherits from its parent)."""
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _measure(job: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: load one backend, time its ingest and queries (spawn target)."""
    import time

    from ..vectorstores import IndexSpec, make_index

    work = Path(job["work"])
    data = np.load(work / "vectors.npy")
    queries = np.load(work / "queries.npy")
    meta = json.loads((work / "rows.json").read_text(encoding="utf-8"))
    ids, docs, buckets = meta["ids"], meta["docs"], meta["buckets"]
    spec = IndexSpec(folder=Path(job["folder"]), dimension=int(data.shape[1]), index=job["index"], **job["settings"])
    index = make_index(job["backend"], spec)
    t0 = time.perf_counter()
    for start in range(0, len(ids), _BATCH):
        stop = start + _BATCH
        index.upsert(ids[start:stop], data[start:stop], [{"bucket": b} for b in buckets[start:stop]], docs[start:stop])
    index.flush()
    ingest_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    index.search(queries[:1], 10)  # builds what a backend builds lazily (IVF lists)
    build_s = ingest_s + time.perf_counter() - t1
    for q in queries[:5]:  # warm caches and prepared statements
        index.search(q[None], 10)
    latencies, found = [], []
    for q in queries:
        t = time.perf_counter()
        row = index.search(q[None], 10)[0]
        latencies.append(time.perf_counter() - t)
        found.append([c for c, _ in row])
    filtered = {}
    for share in SELECTIVITIES:
        where = {"bucket": {"lt": max(1, round(share * _BUCKETS))}}
        filtered[_pct(share)] = [[c for c, _ in index.search(q[None], 10, where)[0]] for q in queries[:_FILTERED_QUERIES]]
    result = {"label": index.label, "ingest_s": ingest_s, "build_s": build_s, "latencies": latencies, "found": found,
              "filtered": filtered, "disk_bytes": index.disk_bytes(), "count": index.count(),
              "peak_rss_mb": _peak_rss_mb()}
    index.close()
    return result


def _run(name: str, work: Path, settings: Mapping[str, Any], isolate: bool) -> dict[str, Any]:
    import concurrent.futures
    import multiprocessing

    backend, index = BACKEND_CHOICES[name]
    folder = work / name
    folder.mkdir()
    job = {"work": str(work), "folder": str(folder), "backend": backend, "index": index, "settings": dict(settings)}
    if not isolate:  # in this process: quicker, but the peak memory is the whole process's, so not reported
        return {**_measure(job), "peak_rss_mb": float("nan")}
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measure, job).result()


def _compare(dataset: str, data: np.ndarray, queries: np.ndarray, ids: list[str], docs: list[str],
             names: Sequence[str], *, qrels: Sequence[Mapping[str, int]] | None = None,
             settings: Mapping[str, Any] | None = None, isolate: bool = True,
             progress: Callable[[BackendResult], None] | None = None) -> list[BackendResult]:
    from ..metrics import RANKING_METRICS

    settings = {**DEFAULT_SETTINGS, **(settings or {})}
    buckets = _buckets(ids)
    truth = _exact(data, queries, 10)
    filtered_truth = {_pct(s): _exact(data, queries[:_FILTERED_QUERIES], 10, buckets < max(1, round(s * _BUCKETS)))
                      for s in SELECTIVITIES}
    doc_of = dict(zip(ids, docs))
    work = Path(tempfile.mkdtemp(prefix="workbench-vectordb-"))
    work.chmod(0o755)  # started by root, PostgreSQL runs as user `pgserver` and must reach its folder
    results: list[BackendResult] = []
    try:
        np.save(work / "vectors.npy", data)
        np.save(work / "queries.npy", queries)
        (work / "rows.json").write_text(json.dumps({"ids": ids, "docs": docs, "buckets": buckets.tolist()}), encoding="utf-8")
        for name in names:
            label = name
            try:
                m = _run(name, work, settings, isolate)
            except Exception as exc:  # noqa: BLE001 - one backend failing must not hide the others' figures
                results.append(_failed(name, dataset, data, queries, settings, f"{type(exc).__name__}: {exc}"))
                if progress is not None:
                    progress(results[-1])
                continue
            label = m["label"]
            recall = float(np.mean([len(set(f) & {ids[i] for i in t}) / max(1, len(t)) for f, t in zip(m["found"], truth)]))
            ndcg = None
            if qrels is not None:
                ndcg = float(np.mean([RANKING_METRICS["ndcg"](rel, list(dict.fromkeys(doc_of[c] for c in f)), 10)
                                      for f, rel in zip(m["found"], qrels)]))
            frecall, short = {}, {}
            for key, want in filtered_truth.items():
                got = m["filtered"][key]
                shares = [len(set(g) & {ids[i] for i in w}) / len(w) for g, w in zip(got, want) if w]
                frecall[key] = float(np.mean(shares)) if shares else float("nan")  # NaN: no row matched
                short[key] = int(sum(len(g) < len(w) for g, w in zip(got, want)))
            ms = 1000 * np.asarray(m["latencies"])
            results.append(BackendResult(
                backend=name, label=label, dataset=dataset, rows=m["count"], dimension=int(data.shape[1]),
                queries=len(queries), settings=_describe(name, settings), recall_at_10_vs_exact=recall, ndcg_at_10=ndcg,
                filtered_recall=frecall, short_lists=short, p50_ms=float(np.percentile(ms, 50)),
                p95_ms=float(np.percentile(ms, 95)), p99_ms=float(np.percentile(ms, 99)), p50_vs_faiss_flat=None,
                ingest_rows_per_s=len(ids) / max(m["ingest_s"], 1e-9), build_s=m["build_s"],
                disk_mb=m["disk_bytes"] / 2**20, peak_rss_mb=m["peak_rss_mb"]))
            if progress is not None:
                progress(results[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = next((r.p50_ms for r in results if r.backend == "faiss-flat" and not r.error), None)
    return [dataclasses.replace(r, p50_vs_faiss_flat=r.p50_ms / base if base else None) for r in results]


def _describe(name: str, settings: Mapping[str, Any]) -> str:
    index = BACKEND_CHOICES[name][1]
    if index == "hnsw":
        return f"m={settings['hnsw_m']}, ef_construction={settings['hnsw_ef_construction']}, ef_search={settings['hnsw_ef_search']}"
    if index == "ivfflat":
        return f"lists={settings['ivf_lists'] or 'sqrt(rows)'}, probes={settings['ivf_probes']}"
    return "exact"


def _failed(name: str, dataset: str, data: np.ndarray, queries: np.ndarray, settings: Mapping[str, Any], error: str) -> BackendResult:
    nan = float("nan")
    return BackendResult(backend=name, label=name, dataset=dataset, rows=0, dimension=int(data.shape[1]),
                         queries=len(queries), settings=_describe(name, settings), recall_at_10_vs_exact=nan,
                         ndcg_at_10=None, filtered_recall={}, short_lists={}, p50_ms=nan, p95_ms=nan, p99_ms=nan,
                         p50_vs_faiss_flat=None, ingest_rows_per_s=nan, build_s=nan, disk_mb=nan, peak_rss_mb=nan,
                         error=error[:500])


def compare_backends(dataset: Dataset, names: Sequence[str], *, queries: int = 200, config: Any = None,
                     settings: Mapping[str, Any] | None = None, isolate: bool = True,
                     progress: Callable[[BackendResult], None] | None = None) -> list[BackendResult]:
    """Every backend in `names` on `dataset`'s chunks (chunked and embedded as `config` says).

    Args:
        dataset: documents and judged queries.
        names: keys of `BACKEND_CHOICES`.
        queries: how many judged queries (the first ones) to ask.
        config: a `PipelineConfig` for chunking and embedding (default: the defaults).
        settings: `IndexSpec` search settings over `DEFAULT_SETTINGS`.
        isolate: run each backend in its own spawned process (its own peak memory); False runs
            them here, quicker, with `peak_rss_mb` NaN.
        progress: called with each backend's result as it is measured.
    """
    from ..chunking import make_chunker
    from ..config import PipelineConfig
    from ..embedding import load_embedder
    from ..resources import Resources

    config = config or PipelineConfig()
    embedder = load_embedder(config.embedding)
    chunker = make_chunker(config.chunking, Resources.for_config(config, embedder=embedder))
    chunks = [c for doc in dataset.documents for c in chunker.chunk(doc)]
    qids = dataset.evaluated_queries[:queries]
    data = np.asarray(embedder.embed([c.text for c in chunks]), dtype=np.float32)
    query_vectors = np.asarray(embedder.embed([dataset.queries[q] for q in qids]), dtype=np.float32)
    return _compare(dataset.name, data, query_vectors, [c.id for c in chunks], [c.doc_id for c in chunks], names,
                    qrels=[dataset.qrels[q] for q in qids], settings=settings, isolate=isolate,
                    progress=progress)


def synthetic_comparison(n: int, names: Sequence[str], *, queries: int = 200, settings: Mapping[str, Any] | None = None,
                         isolate: bool = True, progress: Callable[[BackendResult], None] | None = None) -> list[BackendResult]:
    """Every backend in `names` on `n` synthetic clustered 384-d vectors (no judgements: nDCG is None)."""
    data, query_vectors = synthetic_vectors(n, queries=queries)
    ids = [f"v{i}" for i in range(n)]
    return _compare(f"synthetic-{n}", data, query_vectors, ids, ids, names, settings=settings, isolate=isolate,
                    progress=progress)


def to_frame(results: Sequence[BackendResult]) -> pd.DataFrame:
    """One row per backend and dataset, every figure a column."""
    import pandas as pd

    return pd.DataFrame([r.to_dict() for r in results])


def format_table(results: Sequence[BackendResult]) -> str:
    """The comparison as a text table (the main figures)."""
    import pandas as pd

    frame = to_frame(results)
    columns = ["dataset", "label", "rows", "recall_at_10_vs_exact", "ndcg_at_10", "filtered_recall_1pct",
               *[f"short_lists_{_pct(s)}" for s in SELECTIVITIES], "p50_ms", "p99_ms", "p50_vs_faiss_flat",
               "ingest_rows_per_s", "build_s", "disk_mb", "peak_rss_mb", "error"]
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.precision", 3):
        return frame.reindex(columns=columns).to_string(index=False)


def recommend_backend(results: Sequence[BackendResult], *, min_recall: float = 0.95) -> str:
    """The fastest (p50) backend whose recall@10 vs exact reaches `min_recall` with no short filtered
    lists; a sentence that says why. Qdrant's local mode is never picked (it is not the engine)."""
    eligible = [r for r in results if not r.error and r.recall_at_10_vs_exact >= min_recall
                and not any(r.short_lists.values()) and not r.backend.startswith("qdrant-local")]
    if not eligible:
        return f"no backend reached recall@10 >= {min_recall} without short filtered lists"
    best = min(eligible, key=lambda r: r.p50_ms)
    return (f"{best.label}: recall@10 vs exact {best.recall_at_10_vs_exact:.3f}, no short filtered lists, "
            f"p50 {best.p50_ms:.2f} ms, the fastest of {len(eligible)} backends that meet recall >= {min_recall} "
            f"on {best.dataset} ({best.rows} rows)")
