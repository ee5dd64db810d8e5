"""The response cache itself: answers reused for repeated (exact) or similar (semantic) questions.

Exact lookups match the question after collapsing whitespace and case. Semantic lookups
embed the question and reuse the stored answer of the most similar earlier question when
the cosine similarity reaches `threshold`. A semantic hit can serve an answer to a different
question, so the cache logs every answer it served (`served`), and `logs.threshold_sweep`
measures, over a query log, how many hits and how many wrong answers each threshold gives.

Entries persist in SQLite (WAL mode, one transaction per write, so readers never see a part),
partitioned by `scope`: `cache_scope` builds it from the config hash and the index's corpus
version (a fingerprint of the chunks), so re-ingesting documents retires stale answers. Entries
older than `ttl_s` are never served. A file holds the vectors of one embedding model only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..config import PipelineConfig, ResponseCacheConfig, config_hash
from ..io import cache_dir
from ..sqlite import Database, Schema
from ..types import Answer, Chunk, Usage

if TYPE_CHECKING:
    from ..embedding import Embedder

__all__ = [
    "ResponseCache",
    "ResponseCacheError",
    "CacheHit",
    "CacheStats",
    "ServedAnswer",
    "normalize_query",
    "corpus_version",
    "cache_scope",
    "open_response_cache",
]

RESPONSE_SCHEMA = Schema(
    "response cache",
    ((
        "CREATE TABLE IF NOT EXISTS responses (id INTEGER PRIMARY KEY, scope TEXT NOT NULL, "
        "key TEXT NOT NULL, query TEXT NOT NULL, answer TEXT NOT NULL, model TEXT, vector BLOB, "
        "created REAL NOT NULL, UNIQUE (scope, key))",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),),
    adopt=frozenset({"responses", "meta"}),  # files from before the shared SQLite layer
)


class ResponseCacheError(ValueError):
    """The cache file cannot serve this pipeline; the message names the file and the fix."""


def normalize_query(query: str) -> str:
    """The exact-match key of a question: case-folded, whitespace collapsed."""
    return " ".join(query.casefold().split())


def corpus_version(chunks: Sequence[Chunk]) -> str:
    """A fingerprint of an index's chunks (ids, documents, offsets, text), 16 hex characters."""
    h = hashlib.sha256()
    for c in chunks:
        h.update(json.dumps([c.id, c.doc_id, c.start, c.end, c.text]).encode())
    return h.hexdigest()[:16]


def cache_scope(config: PipelineConfig, version: str) -> str:
    """The partition a pipeline reads and writes: its config hash (the cache settings left out,
    so a new threshold keeps the answers) and the corpus version of its index."""
    plain = dataclasses.replace(config, response_cache=ResponseCacheConfig())
    return f"{config_hash(plain)}:{version}"


@dataclass(frozen=True, kw_only=True)
class CacheHit:
    """A cached answer for a question: how it matched and which stored question it came from."""

    answer: Answer
    kind: Literal["exact", "semantic"]
    similarity: float
    matched_query: str
    age_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ServedAnswer:
    """One answer the cache served (or would have): the question asked and the one it matched."""

    query: str
    matched_query: str
    kind: Literal["exact", "semantic"]
    similarity: float
    answer_text: str


@dataclass(frozen=True, kw_only=True)
class CacheStats:
    """Lookups and hits of one cache object since it was opened."""

    lookups: int
    exact_hits: int
    semantic_hits: int

    @property
    def hit_rate(self) -> float:
        """Share of lookups answered from the cache."""
        return (self.exact_hits + self.semantic_hits) / self.lookups if self.lookups else 0.0


def _answer_to_json(answer: Answer) -> str:
    return json.dumps({"text": answer.text, "citations": list(answer.citations), "usage": asdict(answer.usage)})


def _answer_from_json(blob: str) -> Answer:
    data = json.loads(blob)
    return Answer(text=data["text"], citations=tuple(data["citations"]), usage=Usage(**data["usage"]))


class ResponseCache:
    """Exact and (with `threshold`) semantic answer reuse, persisted in one SQLite file.

    Args:
        path: the database; default `responses.sqlite` in `cache_dir()`.
        embedder: embeds questions for semantic lookups (needed when `threshold` is set).
        threshold: cosine similarity at or above which a similar question's answer is served;
            None for exact matching only.
        scope: the partition to read and write (answers of other scopes are never served).
        ttl_s: entries older than this many seconds are not served (0: no expiry).
        clock: seconds since the epoch (injectable for tests).

    Raises:
        ValueError: `threshold` outside [0, 1], set without an `embedder`, or a negative `ttl_s`.
        ResponseCacheError: the file holds vectors of another embedding model.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        embedder: Embedder | None = None,
        threshold: float | None = None,
        scope: str = "",
        ttl_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if threshold is not None:
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold={threshold} must lie in [0, 1] (a cosine similarity), or be None")
            if embedder is None:
                raise ValueError("a semantic cache (threshold set) needs an embedder; pass embedder=load_embedder()")
        if ttl_s < 0:
            raise ValueError(f"ttl_s={ttl_s} must be >= 0 (0 = entries never expire)")
        self.path = Path(path) if path is not None else cache_dir() / "responses.sqlite"
        self.embedder = embedder
        self.threshold = threshold
        self.scope = scope
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._served: list[ServedAnswer] = []
        self._lookups = self._exact = self._semantic = 0
        self._ids: list[int] = []
        self._created = np.zeros(0)
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._seen_rowid = 0
        self.db = Database(self.path, RESPONSE_SCHEMA, kind="cache", timeout_s=60.0)
        self._check_model()

    def _check_model(self) -> None:
        """Bind the file to one embedding model: vectors of two models are not comparable."""
        if self._model_id is None:
            return
        def bind(conn: Any) -> str:
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('embedding_model', ?)", (self._model_id,))
            return conn.execute("SELECT value FROM meta WHERE key = 'embedding_model'").fetchone()[0]

        stored = self.db.transact("record its embedding model", bind)
        if stored != self._model_id:
            self.db.close()
            raise ResponseCacheError(
                f"response cache {str(self.path)!r} holds question vectors of embedding model {stored!r}, "
                f"not {self._model_id!r}; set response_cache.path to another file, or delete this one"
            )

    @property
    def _model_id(self) -> str | None:
        return None if self.embedder is None else self.embedder.model_id

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.db.read("SELECT COUNT(*) FROM responses WHERE scope = ?", (self.scope,))[0][0]

    @property
    def stats(self) -> CacheStats:
        """Lookups and hits so far."""
        with self._lock:
            return CacheStats(lookups=self._lookups, exact_hits=self._exact, semantic_hits=self._semantic)

    @property
    def served(self) -> tuple[ServedAnswer, ...]:
        """Every answer served so far, in order; compare with fresh answers to price a threshold."""
        with self._lock:
            return tuple(self._served)

    def put(self, query: str, answer: Answer) -> None:
        """Store (or replace) the answer to `query`, atomically."""
        vector = None
        if self.embedder is not None:
            vector = np.asarray(self.embedder.embed_query(query), dtype=np.float32).tobytes()
        row = (self.scope, normalize_query(query), query, _answer_to_json(answer), self._model_id, vector,
               self._clock())
        def replace(conn: Any) -> None:
            conn.execute("DELETE FROM responses WHERE scope = ? AND key = ?", row[:2])
            conn.execute("INSERT INTO responses (scope, key, query, answer, model, vector, created) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", row)

        with self._lock:
            self.db.transact("store an answer", replace)
            self._seen_rowid = 0  # a replaced row changes ids: reload the vectors on next lookup

    def _fresh_after(self) -> float:
        return self._clock() - self.ttl_s if self.ttl_s else -np.inf

    def get(self, query: str) -> CacheHit | None:
        """The cached answer for `query`: an exact match, else the most similar stored question
        at or above the threshold, else None (expired entries never match). Each call counts
        as one lookup."""
        with self._lock:
            self._lookups += 1
            found = self.db.read(
                "SELECT query, answer, created FROM responses WHERE scope = ? AND key = ? AND created >= ?",
                (self.scope, normalize_query(query), self._fresh_after()),
            )
        row = found[0] if found else None
        if row is not None:
            return self._serve(query, CacheHit(answer=_answer_from_json(row[1]), kind="exact", similarity=1.0,
                                               matched_query=row[0], age_s=self._clock() - row[2]))
        if self.threshold is None or self.embedder is None:
            return None
        vector = np.asarray(self.embedder.embed_query(query), dtype=np.float32)
        with self._lock:
            self._refresh()
            if not self._ids:
                return None
            similarities = np.where(self._created >= self._fresh_after(), self._matrix @ vector, -np.inf)
            best = int(np.argmax(similarities))
            similarity = float(similarities[best])
            if similarity < self.threshold:
                return None
            found = self.db.read("SELECT query, answer, created FROM responses WHERE id = ?", (self._ids[best],))
        matched = found[0] if found else None
        if matched is None:  # replaced by another process since the refresh
            return None
        return self._serve(query, CacheHit(answer=_answer_from_json(matched[1]), kind="semantic",
                                           similarity=similarity, matched_query=matched[0],
                                           age_s=self._clock() - matched[2]))

    def _refresh(self) -> None:
        """Load the scope's vectors when rows were added since the last load (lock held)."""
        newest = self.db.read("SELECT COALESCE(MAX(id), 0) FROM responses")[0][0]
        if newest == self._seen_rowid:
            return
        rows = self.db.read(
            "SELECT id, vector, created FROM responses WHERE scope = ? AND model IS ? AND vector IS NOT NULL "
            "ORDER BY id", (self.scope, self._model_id),
        )
        self._ids = [r[0] for r in rows]
        self._created = np.array([r[2] for r in rows], dtype=float)
        vectors = [np.frombuffer(r[1], dtype=np.float32) for r in rows]
        self._matrix = np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
        norms = np.linalg.norm(self._matrix, axis=1, keepdims=True) if vectors else None
        if norms is not None:
            self._matrix = self._matrix / np.where(norms > 0, norms, 1.0)
        self._seen_rowid = newest

    def _serve(self, query: str, hit: CacheHit) -> CacheHit:
        with self._lock:
            if hit.kind == "exact":
                self._exact += 1
            else:
                self._semantic += 1
            self._served.append(ServedAnswer(query=query, matched_query=hit.matched_query, kind=hit.kind,
                                             similarity=hit.similarity, answer_text=hit.answer.text))
        return hit


def open_response_cache(
    config: PipelineConfig, version: str, embedder: Embedder | None
) -> ResponseCache | None:
    """The cache `config.response_cache` describes for a pipeline whose index has corpus
    `version` (None when the mode is "off").

    Raises:
        ValueError: mode "semantic" without an embedder.
        ResponseCacheError: the file holds vectors of another embedding model.
    """
    rc = config.response_cache
    if rc.mode == "off":
        return None
    semantic = rc.mode == "semantic"
    return ResponseCache(
        rc.path or None, embedder=embedder if semantic else None, threshold=rc.threshold if semantic else None,
        scope=cache_scope(config, version), ttl_s=rc.ttl_s,
    )
