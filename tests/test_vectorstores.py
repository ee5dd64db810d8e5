"""Vector indexes: one contract suite run on every backend for real (FAISS, PostgreSQL + pgvector,
Chroma, LanceDB, Milvus Lite, Qdrant local mode), checked against numpy brute force."""

from __future__ import annotations

import datetime as dt
import json
import socket
import sys
import uuid

import numpy as np
import pytest

from workbench.retrieval import DenseRetriever, build_retriever, filter_mask
from workbench.types import Chunk
from workbench.vectorstores import (
    BACKENDS,
    LOCAL_LABEL,
    IndexSpec,
    VectorStoreError,
    make_index,
    read_info,
)

# (backend, index kind, exact): every backend and index kind this machine runs
CASES = [
    ("faiss", "flat", True), ("faiss", "hnsw", False),
    ("pgvector", "flat", True), ("pgvector", "hnsw", False), ("pgvector", "ivfflat", False),
    ("chroma", "hnsw", False),
    ("lancedb", "flat", True), ("lancedb", "ivfflat", False),
    ("milvus", "flat", True), ("milvus", "ivfflat", False),
    ("qdrant", "hnsw", True),  # local mode scores every point
]
IDS = [f"{b}-{i}" for b, i, _ in CASES]
N, DIM = 400, 16


def corpus() -> tuple[list[str], np.ndarray, list[dict], list[str]]:
    """400 clustered vectors in 16-d, 4 chunks per document, metadata of every filterable kind."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(8, DIM))
    vectors = (centres[rng.integers(0, 8, N)] + 0.7 * rng.normal(size=(N, DIM))).astype(np.float32)
    ids = [f"c{i}" for i in range(N)]
    docs = [f"d{i // 4}" for i in range(N)]
    metadata = [{"year": 1950 + i % 20, "group": "abcd"[i % 4], "weight": (i % 10) / 4, "even": i % 2 == 0,
                 "published": dt.date(1960, 1, 1) + dt.timedelta(days=11 * i),
                 "stamp": f"2024-03-{1 + i % 28:02d}T{i % 24:02d}:00:00", "tags": ["x", "y"]} for i in range(N)]
    return ids, vectors, metadata, docs


FILTERS = [
    {"year": 1955},
    {"group": {"in": ["a", "c"]}},
    {"year": {"gte": 1960, "lt": 1963}, "even": True},
    {"weight": {"gt": 1.0, "lte": 2.0}},
    {"published": {"gte": "1965-01-01", "lte": dt.date(1968, 6, 30)}},
    {"stamp": {"lt": dt.datetime(2024, 3, 5, 12)}},
    {"group": "b", "year": {"in": [1951, 1955, 1959]}},  # 4 documents' worth: a tight filter
]


def truth(vectors: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[list[int]]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    if mask is not None:
        scores[:, ~mask] = -np.inf
    return [[int(i) for i in np.argsort(-row, kind="stable")[:k] if np.isfinite(row[i])] for row in scores]


@pytest.fixture()
def open_index(request, tmp_path, pg_url):
    """A factory of fresh indexes of one backend (each closed after the test)."""
    opened = []

    def make(backend: str, index: str, folder=None, name: str | None = None, dimension: int = DIM, **settings):
        url = pg_url if backend == "pgvector" else ""
        spec = IndexSpec(folder=folder or tmp_path / "index", name=name or f"t_{uuid.uuid4().hex[:10]}",
                         dimension=dimension, index=index, url=url, hnsw_ef_search=64, ivf_probes=8, **settings)
        built = make_index(backend, spec)
        opened.append(built)
        return built

    yield make
    for built in opened:
        try:
            built.close()
        except Exception:  # noqa: BLE001 - already closed by the test
            pass


def loaded(open_index, backend, index):
    ids, vectors, metadata, docs = corpus()
    built = open_index(backend, index)
    built.upsert(ids[:150], vectors[:150], metadata[:150], docs[:150])  # two batches: the schema grows into
    built.upsert(ids[150:], vectors[150:], metadata[150:], docs[150:])  # an existing table or collection
    return built


@pytest.mark.parametrize(("backend", "index", "exact"), CASES, ids=IDS)
def test_search_and_filters_match_brute_force(open_index, backend, index, exact):
    ids, vectors, metadata, docs = corpus()
    built = loaded(open_index, backend, index)
    assert built.count() == N
    rng = np.random.default_rng(1)
    queries = vectors[rng.integers(0, N, 12)] + 0.3 * rng.normal(size=(12, DIM)).astype(np.float32)
    results = built.search(queries, 10)
    expected = truth(vectors, queries, 10)
    recall = np.mean([len({ids[i] for i in e} & {c for c, _ in r}) / 10 for r, e in zip(results, expected)])
    assert recall == 1.0 if exact else recall >= 0.9, (backend, index, recall)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries[0] / np.linalg.norm(queries[0])
    for cid, score in results[0]:  # scores are cosine similarities, best first
        assert score == pytest.approx(float(unit[ids.index(cid)] @ q), abs=2e-3)
    assert [s for _, s in results[0]] == sorted((s for _, s in results[0]), reverse=True)
    chunks = [Chunk(id=c, doc_id=d, text=c, start=0, end=1, metadata=m) for c, d, m in zip(ids, docs, metadata)]
    for where in FILTERS:
        mask = filter_mask(chunks, where)
        allowed = {ids[i] for i in np.flatnonzero(mask)}
        assert 0 < len(allowed) < N, where
        got = built.search(queries, 10, where)
        want = truth(vectors, queries, 10, mask)
        for row, best in zip(got, want):
            assert {c for c, _ in row} <= allowed, where
            if built.may_return_short:  # LanceDB's IVF prefilters only the probed partitions
                assert len(row) <= min(10, len(allowed))
                continue
            assert len(row) == min(10, len(allowed)), (where, len(row))  # filtered before the top-k cut
            overlap = len({c for c, _ in row} & {ids[i] for i in best}) / len(best)
            assert overlap == 1.0 if exact else overlap >= 0.7, (where, overlap)
    assert built.may_return_short == ((backend, index) == ("lancedb", "ivfflat"))


@pytest.mark.parametrize(("backend", "index", "exact"), CASES, ids=IDS)
def test_upsert_replaces_delete_by_document_and_reopen(open_index, backend, index, exact, tmp_path):
    ids, vectors, metadata, docs = corpus()
    built = loaded(open_index, backend, index)
    name = built.spec.name
    flipped = -vectors[:4]  # document d0 changes: same chunk ids, new vectors
    built.upsert(ids[:4], flipped, metadata[:4], docs[:4])
    assert built.count() == N
    top = built.search(flipped[:1], 1)[0]
    assert top[0][0] == "c0" and top[0][1] == pytest.approx(1.0, abs=1e-3)
    assert built.delete_documents(["d0", "d1"]) == 8
    assert built.delete_documents(["d0", "no-such-document"]) == 0  # deleting what is not there is a no-op
    assert built.count() == N - 8
    assert not {c for row in built.search(vectors[:8], 20) for c, _ in row} & set(ids[:8])
    built.close()
    reopened = open_index(backend, index, name=name)  # same folder (and table): the rows persisted
    assert reopened.count() == N - 8
    assert reopened.search(vectors[10:11], 1)[0][0][0] == "c10"
    assert reopened.search(vectors[10:11], 3, {"group": "c"})[0][0][0] == "c10"
    reopened.close()
    with pytest.raises(VectorStoreError, match="dimension mismatch.*dimension 16"):
        open_index(backend, index, name=name, dimension=8)


@pytest.mark.parametrize(("backend", "index", "exact"), CASES, ids=IDS)
def test_bad_input_is_refused_with_the_fix(open_index, backend, index, exact):
    ids, vectors, metadata, docs = corpus()
    built = loaded(open_index, backend, index)
    with pytest.raises(VectorStoreError, match="dimension mismatch: vectors of dimension 8.*dimension 16"):
        built.search(np.ones((1, 8), dtype=np.float32), 3)
    with pytest.raises(VectorStoreError, match="dimension mismatch"):
        built.upsert(["new"], np.ones((1, 8), dtype=np.float32), [{}], ["dx"])
    with pytest.raises(VectorStoreError, match=r"chunk ids must be unique; duplicated: \['c1'\]"):
        built.upsert(["c1", "c1"], vectors[:2], metadata[:2], docs[:2])
    with pytest.raises(VectorStoreError, match=r"cannot filter on field 'tags'.*filterable fields: \['even', 'group'"):
        built.search(vectors[:1], 3, {"tags": "x"})
    with pytest.raises(VectorStoreError, match="cannot filter on field 'colour'"):
        built.search(vectors[:1], 3, {"colour": "red"})
    with pytest.raises(VectorStoreError, match="holds int values, so compare it with a int"):
        built.search(vectors[:1], 3, {"year": "1955"})
    with pytest.raises(VectorStoreError, match="'group' holds str and int values"):
        built.upsert(["new"], vectors[:1], [{"group": 3}], ["dx"])
    with pytest.raises(ValueError, match="unknown operator 'ne'"):
        built.search(vectors[:1], 3, {"year": {"ne": 1955}})
    with pytest.raises(ValueError, match="k must be a positive integer"):
        built.search(vectors[:1], 0)
    assert built.count() == N  # nothing above wrote a row


def test_every_backend_is_in_the_registry_and_unknown_names_list_them():
    assert sorted(BACKENDS) == ["chroma", "faiss", "lancedb", "milvus", "pgvector", "qdrant"]
    assert {b for b, _, _ in CASES} == set(BACKENDS)
    with pytest.raises(VectorStoreError, match=r"unknown vector backend 'weaviate'; choose one of \['chroma', 'faiss'"):
        make_index("weaviate", IndexSpec(dimension=4))
    with pytest.raises(VectorStoreError, match=r"chroma has no 'flat' index; choose one of \['hnsw'\]"):
        make_index("chroma", IndexSpec(dimension=4, index="flat"))
    with pytest.raises(VectorStoreError, match="Milvus Lite has no HNSW"):
        make_index("milvus", IndexSpec(dimension=4, index="hnsw"))
    with pytest.raises(VectorStoreError, match="index name 'my-index'"):
        IndexSpec(dimension=4, name="my-index")


def test_qdrant_local_mode_says_it_is_not_the_engine(tmp_path):
    built = make_index("qdrant", IndexSpec(folder=tmp_path, dimension=4, index="hnsw"))
    assert built.label == LOCAL_LABEL == "qdrant-local (Python reimplementation, not the Qdrant engine)"
    built.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("backend", "scheme"), [("pgvector", "postgresql://u:secret@"), ("chroma", "http://"),
                                                 ("milvus", "http://"), ("qdrant", "http://")])
def test_unreachable_server_url_is_a_clear_error(tmp_path, backend, scheme):
    url = f"{scheme}127.0.0.1:{_closed_port()}/db"
    with pytest.raises(VectorStoreError, match=r"cannot reach .*127\.0\.0\.1.* within 2 s.*start the server or fix the URL"):
        make_index(backend, IndexSpec(folder=tmp_path, dimension=4, index="hnsw", url=url, timeout_s=2))
    with pytest.raises(VectorStoreError, match="must"):
        make_index(backend, IndexSpec(folder=tmp_path, dimension=4, index="hnsw", url="ftp://nowhere"))


def test_a_missing_extra_names_it(tmp_path, monkeypatch):
    for module, backend in (("chromadb", "chroma"), ("lancedb", "lancedb"), ("pymilvus", "milvus"),
                            ("qdrant_client", "qdrant"), ("psycopg", "pgvector")):
        monkeypatch.setitem(sys.modules, module, None)  # what Python does for a package that is not installed
        with pytest.raises(ImportError, match=r"needs the `vectordb` extra: pip install 'workbench\[vectordb\]'"):
            make_index(backend, IndexSpec(folder=tmp_path / backend, dimension=4, index="hnsw" if backend != "lancedb" else "flat"))


def test_foreign_or_corrupt_folders_and_tables_are_refused(tmp_path, pg_url):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not an index", encoding="utf-8")
    with pytest.raises(VectorStoreError, match="not empty and holds no index.json: it is not a workbench index"):
        read_info(tmp_path / "mine")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "index.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(VectorStoreError, match="index.json is corrupt.*rebuild the index"):
        read_info(tmp_path / "broken")
    (tmp_path / "broken" / "index.json").write_text(json.dumps({"format": 99}), encoding="utf-8")
    with pytest.raises(VectorStoreError, match="index format 99"):
        read_info(tmp_path / "broken")
    assert read_info(tmp_path / "new") is None
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS someone_elses (id int, payload text)")
    with pytest.raises(VectorStoreError, match="table 'someone_elses' exists and is not a workbench index"):
        make_index("pgvector", IndexSpec(folder=tmp_path, name="someone_elses", dimension=4, url=pg_url))
    spec = IndexSpec(folder=tmp_path / "faiss", dimension=4)
    built = make_index("faiss", spec)
    built.upsert(["a"], np.ones((1, 4)), [{}], ["d"])
    built.close()  # writes the files
    (tmp_path / "faiss" / "chunks.faiss.npy").write_bytes(b"garbage")
    with pytest.raises(VectorStoreError, match="does not match its checksum; rebuild the index"):
        make_index("faiss", spec)


@pytest.fixture(scope="module")
def titles(cranfield) -> list[Chunk]:
    return [Chunk(id=d.id, doc_id=d.id, text=d.metadata["title"], start=0, end=len(d.metadata["title"]),
                  metadata={"year": 1950 + i % 20}) for i, d in enumerate(cranfield.documents[:120])]


@pytest.mark.parametrize(("backend", "index"), [("pgvector", "flat"), ("chroma", "hnsw"), ("lancedb", "flat"),
                                                ("milvus", "flat"), ("qdrant", "hnsw")])
def test_dense_and_hybrid_retrieval_over_any_backend_equal_faiss(titles, embedder, backend, index, pg_url):
    from workbench.config import RetrievalConfig

    url = pg_url if backend == "pgvector" else ""
    reference = DenseRetriever.build(titles, embedder, progress=False)
    other = DenseRetriever.build(titles, embedder, backend=backend, index=index, url=url, progress=False)
    queries = ["pressure distribution on a cone at supersonic speed", "heat transfer in boundary layers"]
    for where in (None, {"year": {"lt": 1955}}):
        want, got = reference.retrieve_many(queries, 8, where), other.retrieve_many(queries, 8, where)
        assert [[h.chunk.id for h in row] for row in got] == [[h.chunk.id for h in row] for row in want]
    assert other.short_lists == 0
    config = RetrievalConfig(kind="hybrid", backend=backend, index=index, backend_url=url, fusion_depth=20)
    hybrid = build_retriever(config, titles, embedder)
    assert hybrid.dense.index.backend == backend
    faiss_hybrid = build_retriever(RetrievalConfig(kind="hybrid", fusion_depth=20), titles, embedder)
    assert [h.chunk.id for h in hybrid.retrieve(queries[0], 10)] == [h.chunk.id for h in faiss_hybrid.retrieve(queries[0], 10)]
    other.close()
    hybrid.dense.close()


@pytest.mark.slow
def test_the_comparison_study_measures_against_exact_search():
    from workbench.evaluation.vectordb import recommend_backend, synthetic_comparison

    results = synthetic_comparison(1500, ["faiss-flat", "lancedb", "qdrant-local"], queries=10, isolate=False)
    results += synthetic_comparison(1500, ["faiss-hnsw"], queries=10)  # its own spawned process
    by = {r.backend: r for r in results}
    assert not any(r.error for r in results)
    assert by["faiss-flat"].recall_at_10_vs_exact == 1.0 and by["lancedb"].recall_at_10_vs_exact == 1.0
    assert by["faiss-flat"].p50_vs_faiss_flat == 1.0 and by["faiss-hnsw"].p50_vs_faiss_flat is None  # another run
    assert by["qdrant-local"].label == LOCAL_LABEL
    assert by["faiss-hnsw"].peak_rss_mb > 0 and np.isnan(by["faiss-flat"].peak_rss_mb)  # measured only when isolated
    for r in results:
        assert r.rows == 1500 and r.ndcg_at_10 is None  # synthetic vectors have no judgements
        assert set(r.short_lists) == {"50pct", "10pct", "1pct", "0_1pct"} and not any(r.short_lists.values())
        assert r.filtered_recall["1pct"] == pytest.approx(1.0, abs=0.05)
        assert r.p50_ms <= r.p95_ms <= r.p99_ms and r.build_s > 0 and r.disk_mb > 0
    row = by["lancedb"].to_dict()
    assert {"recall_at_10_vs_exact", "p50_ms", "filtered_recall_0_1pct", "short_lists_50pct"} <= set(row)
    assert "qdrant-local" not in recommend_backend(results)
