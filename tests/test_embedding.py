"""The embedder and its content-addressed cache, on the packaged all-MiniLM-L6-v2."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from workbench.config import ConfigError, EmbeddingConfig
from workbench.embedding import Embedder, VectorCache, load_embedder, resolve_model

ROOT = Path(__file__).resolve().parent.parent


def fresh(embedder: Embedder, path: Path) -> Embedder:
    """An embedder sharing the loaded model but with its own cache file and counters."""
    other = Embedder(embedder.config, VectorCache(path))
    other._model = embedder.model
    return other


def test_vectors_are_normalised_ordered_and_deduplicated(embedder, tmp_path: Path) -> None:
    e = fresh(embedder, tmp_path / "c.sqlite")
    texts = ["the wing stalls", "boundary layer transition", "the wing stalls"]
    v = e.embed(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(v[0], v[2])
    assert (e.stats.hits, e.stats.misses) == (0, 2)
    assert float(v[0] @ v[1]) < 0.9
    np.testing.assert_allclose(e.embed_query("boundary layer transition"), v[1], rtol=1e-6)
    assert e.stats.hits == 1


def test_second_process_performs_zero_forward_passes(embedder, tmp_path: Path) -> None:
    cache = tmp_path / "shared.sqlite"
    texts = [f"passage {i} about supersonic flow" for i in range(40)]
    code = (
        "import sys; from workbench.embedding import *; from workbench.config import EmbeddingConfig;"
        f"e = Embedder(EmbeddingConfig(), VectorCache({str(cache)!r})); e.embed({texts!r});"
        "print(e.stats.misses)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "40"
    e = Embedder(EmbeddingConfig(), VectorCache(cache))  # model never loaded: all hits
    v = e.embed(texts)
    assert (e.stats.hits, e.stats.misses, e.stats.batches) == (40, 0, 0)
    assert e._model is None
    np.testing.assert_allclose(v, fresh(embedder, tmp_path / "other.sqlite").embed(texts), atol=1e-5)


def test_corrupt_entry_is_recomputed_and_corrupt_file_moved_aside(embedder, tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    e = fresh(embedder, path)
    good = e.embed(["mach number"])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE vectors SET data = ?", (b"\x00\x01",))
    e2 = fresh(embedder, path)
    np.testing.assert_allclose(e2.embed(["mach number"]), good, atol=1e-6)
    assert e2.stats.misses == 1
    e2.cache.close()
    e.cache.close()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)
    e3 = fresh(embedder, path)
    np.testing.assert_allclose(e3.embed(["mach number"]), good, atol=1e-6)
    assert list(tmp_path.glob("c.sqlite.corrupt-*")), "the unreadable file is kept aside, not deleted"


def test_interrupted_run_resumes_without_recomputing(tmp_path: Path) -> None:
    cache = tmp_path / "resume.sqlite"
    n = 600
    code = (
        "from workbench.embedding import *; from workbench.config import EmbeddingConfig;"
        f"e = Embedder(EmbeddingConfig(batch_size=16), VectorCache({str(cache)!r}));"
        f"e.embed([f'sentence {{i}} on heat transfer in slabs' for i in range({n})])"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 240
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.exists():
            try:
                with sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=1) as conn:
                    done = conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            except sqlite3.OperationalError:  # table not created yet, or busy
                done = 0
            if done >= 256:
                break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = len(VectorCache(cache))
    assert 256 <= kept < n, "the kill should land after the first block and before the end"
    e = Embedder(EmbeddingConfig(batch_size=16), VectorCache(cache))
    e.embed([f"sentence {i} on heat transfer in slabs" for i in range(n)])
    assert (e.stats.hits, e.stats.misses) == (kept, n - kept)
    assert len(e.cache) == n


def test_model_names_resolve_offline_and_paths_are_checked(embedder) -> None:
    packaged = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert Path(packaged).is_dir() and resolve_model("all-MiniLM-L6-v2") == packaged
    assert resolve_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    by_path = Embedder(EmbeddingConfig(model=packaged), VectorCache(":memory:"))
    np.testing.assert_allclose(
        by_path.model.encode(["lift"], normalize_embeddings=True)[0], embedder.model.encode(["lift"], normalize_embeddings=True)[0], atol=1e-5
    )
    with pytest.raises(ConfigError, match="does not exist"):
        Embedder(EmbeddingConfig(model="./no/such/model"), VectorCache(":memory:")).model


def test_load_embedder_is_memoised(embedder) -> None:
    assert load_embedder() is embedder
    assert load_embedder(EmbeddingConfig(batch_size=8)) is not embedder


def _dense_search(e: Embedder, docs: list[str], queries: list[str]) -> tuple[np.ndarray, list[list[int]]]:
    vectors = e.embed(docs + queries)
    d, q = vectors[: len(docs)], vectors[len(docs) :]
    return vectors, [list(np.argsort(-(d @ v), kind="stable")[:5]) for v in q]


def test_a_cache_corrupted_anywhere_serves_only_verified_vectors(embedder, tmp_path: Path) -> None:
    """Garbage over any page of a real cache file: the same search results, or the file moved aside."""
    docs = [f"passage {i}: the {w} of a {s} wing at high angle of attack"
            for i, (w, s) in enumerate((w, s) for w in ("lift", "drag", "stall", "buffet", "flutter")
                                       for s in ("swept", "delta", "straight", "tapered", "slender", "thin", "thick"))]
    queries = ["flutter of a delta wing", "drag of thin wings", "stall of a swept wing"]
    clean_path = tmp_path / "clean.sqlite"
    clean = fresh(embedder, clean_path)
    reference, ranking = _dense_search(clean, docs, queries)
    clean.cache.close()  # the last connection checkpoints the WAL into the file
    assert not Path(f"{clean_path}-wal").exists()
    data = clean_path.read_bytes()
    rng = np.random.default_rng(7)
    offsets = sorted({*range(0, len(data), 4096), *range(1500, len(data), 4096), *range(3000, len(data), 4096)})
    assert len(offsets) >= 20
    recomputed = moved = 0
    for n, offset in enumerate(offsets):
        folder = tmp_path / f"case{n}"
        folder.mkdir()
        path = folder / "c.sqlite"
        garbage = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        path.write_bytes(data[:offset] + garbage + data[offset + 64 :])
        e = fresh(embedder, path)  # never a raw sqlite3.DatabaseError, whatever the page
        vectors, got = _dense_search(e, docs, queries)
        assert np.isfinite(vectors).all(), offset
        np.testing.assert_allclose(vectors, reference, atol=1e-5, err_msg=f"offset {offset}")
        assert got == ranking, offset
        assert e.stats.hits + e.stats.misses == len(docs) + len(queries)
        recomputed += e.stats.misses > 0
        moved += bool(list(folder.glob("c.sqlite.corrupt-*")))
        e.cache.close()
        again = fresh(embedder, path)  # recomputed entries were rewritten: a second pass is all hits
        np.testing.assert_allclose(again.embed(docs + queries), reference, atol=1e-5)
        assert again.stats.misses == 0, offset
        again.cache.close()
    assert recomputed >= len(offsets) // 3, "most corruptions should hit stored entries"
    assert moved >= 1, "a corrupt header must move the file aside"


def test_entries_from_before_checksums_are_verified_then_checksummed(embedder, tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    good = embedder.embed(["mach number", "shock wave"])
    bad = np.full(384, np.nan, dtype=np.float32)
    with sqlite3.connect(path) as conn:  # a cache as workbench wrote it before the shared SQLite layer
        conn.execute("CREATE TABLE vectors (key BLOB PRIMARY KEY, shape TEXT NOT NULL, data BLOB NOT NULL) WITHOUT ROWID")
        namespace = f"{embedder.model_id}|normalize=True"
        rows = [(VectorCache.key(namespace, "mach number"), "384", good[0].tobytes()),
                (VectorCache.key(namespace, "shock wave"), "384", (good[1] * 3).tobytes()),  # not unit norm
                (VectorCache.key(namespace, "nan"), "384", bad.tobytes())]
        conn.executemany("INSERT INTO vectors VALUES (?, ?, ?)", rows)
    e = fresh(embedder, path)
    vectors = e.embed(["mach number", "shock wave", "nan"])
    assert (e.stats.hits, e.stats.misses) == (1, 2)  # only the plausible old entry counts as a hit
    np.testing.assert_allclose(vectors[:2], good, atol=1e-5)
    assert np.isfinite(vectors).all()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM vectors WHERE checksum IS NULL").fetchone()[0] == 0
