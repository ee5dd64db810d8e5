"""A response cache: answers reused for repeated (exact) or similar (semantic) questions.

Exact lookups match the question after collapsing whitespace and case. Semantic lookups
embed the question and reuse the stored answer of the most similar earlier question when
the cosine similarity reaches `threshold`. A semantic hit can serve an answer to a different
question, so the cache logs every answer it served (`served`), and `threshold_sweep` shows on
labelled questions how many hits, and how many wrong answers, each threshold gives.

Entries persist in SQLite (WAL mode, one transaction per write, so readers never see a part),
partitioned by `scope` (e.g. a config hash and model) so pipelines never share answers.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .io import cache_dir
from .types import Answer, Usage

if TYPE_CHECKING:
    import pandas as pd

    from .embedding import Embedder

__all__ = [
    "ResponseCache",
    "CacheHit",
    "CacheStats",
    "ServedAnswer",
    "ThresholdSweep",
    "threshold_sweep",
    "normalize_query",
]

log = logging.getLogger(__name__)


def normalize_query(query: str) -> str:
    """The exact-match key of a question: case-folded, whitespace collapsed."""
    return " ".join(query.casefold().split())


@dataclass(frozen=True, kw_only=True)
class CacheHit:
    """A cached answer for a question: how it matched and which stored question it came from."""

    answer: Answer
    kind: Literal["exact", "semantic"]
    similarity: float
    matched_query: str


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

    Raises:
        ValueError: `threshold` outside [-1, 1], or set without an `embedder`.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        embedder: Embedder | None = None,
        threshold: float | None = None,
        scope: str = "",
    ) -> None:
        if threshold is not None:
            if not -1.0 <= threshold <= 1.0:
                raise ValueError(f"threshold={threshold} must lie in [-1, 1] (a cosine similarity), or be None")
            if embedder is None:
                raise ValueError("a semantic cache (threshold set) needs an embedder; pass embedder=load_embedder()")
        self.path = Path(path) if path is not None else cache_dir() / "responses.sqlite"
        self.embedder = embedder
        self.threshold = threshold
        self.scope = scope
        self._lock = threading.Lock()
        self._served: list[ServedAnswer] = []
        self._lookups = self._exact = self._semantic = 0
        self._ids: list[int] = []
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._seen_rowid = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.warning("response cache %s is unreadable (%s); moved it to %s", self.path, exc, aside)
            os.replace(self.path, aside)
            self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS responses (id INTEGER PRIMARY KEY, scope TEXT NOT NULL, "
            "key TEXT NOT NULL, query TEXT NOT NULL, answer TEXT NOT NULL, model TEXT, vector BLOB, "
            "created REAL NOT NULL, UNIQUE (scope, key))"
        )
        return conn

    @property
    def _model_id(self) -> str | None:
        return None if self.embedder is None else self.embedder.model_id

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses WHERE scope = ?", (self.scope,)).fetchone()[0]

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
        row = (self.scope, normalize_query(query), query, _answer_to_json(answer), self._model_id, vector, time.time())
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("DELETE FROM responses WHERE scope = ? AND key = ?", row[:2])
                self._conn.execute(
                    "INSERT INTO responses (scope, key, query, answer, model, vector, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", row,
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._seen_rowid = 0  # a replaced row changes ids: reload the vectors on next lookup

    def get(self, query: str) -> CacheHit | None:
        """The cached answer for `query`: an exact match, else the most similar stored question
        at or above the threshold, else None. Each call counts as one lookup."""
        with self._lock:
            self._lookups += 1
            row = self._conn.execute(
                "SELECT query, answer FROM responses WHERE scope = ? AND key = ?", (self.scope, normalize_query(query))
            ).fetchone()
        if row is not None:
            return self._serve(query, CacheHit(answer=_answer_from_json(row[1]), kind="exact", similarity=1.0,
                                               matched_query=row[0]))
        if self.threshold is None or self.embedder is None:
            return None
        vector = np.asarray(self.embedder.embed_query(query), dtype=np.float32)
        with self._lock:
            self._refresh()
            if not self._ids:
                return None
            similarities = self._matrix @ vector
            best = int(np.argmax(similarities))
            similarity = float(similarities[best])
            if similarity < self.threshold:
                return None
            matched = self._conn.execute(
                "SELECT query, answer FROM responses WHERE id = ?", (self._ids[best],)
            ).fetchone()
        if matched is None:  # replaced by another process since the refresh
            return None
        return self._serve(query, CacheHit(answer=_answer_from_json(matched[1]), kind="semantic",
                                           similarity=similarity, matched_query=matched[0]))

    def _refresh(self) -> None:
        """Load the scope's vectors when rows were added since the last load (lock held)."""
        newest = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM responses").fetchone()[0]
        if newest == self._seen_rowid:
            return
        rows = self._conn.execute(
            "SELECT id, vector FROM responses WHERE scope = ? AND model IS ? AND vector IS NOT NULL ORDER BY id",
            (self.scope, self._model_id),
        ).fetchall()
        self._ids = [r[0] for r in rows]
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


@dataclass(frozen=True, kw_only=True)
class ThresholdSweep:
    """Per threshold: the share of questions a semantic cache would answer, and wrongly."""

    thresholds: tuple[float, ...]
    hit_rate: tuple[float, ...]
    wrong_rate: tuple[float, ...]  # share of all questions served another question's answer
    precision: tuple[float, ...]  # share of hits that were right (1.0 when no hits)
    n: int

    def to_frame(self) -> pd.DataFrame:
        """One row per threshold: threshold, hit_rate, wrong_rate, precision."""
        import pandas as pd

        return pd.DataFrame({"threshold": self.thresholds, "hit_rate": self.hit_rate,
                             "wrong_rate": self.wrong_rate, "precision": self.precision})


def threshold_sweep(
    queries: Sequence[str],
    labels: Sequence[str],
    thresholds: Sequence[float],
    *,
    embed: Callable[[Sequence[str]], Any],
) -> ThresholdSweep:
    """Replay questions in order through a semantic cache at each threshold (exact repeats included).

    Each question looks up every earlier one; it is a hit when the best cosine similarity
    reaches the threshold, and a wrong hit when that earlier question has a different label
    (labels mark questions that share one right answer).

    Args:
        queries: the questions, in arrival order.
        labels: one label per question; equal labels mean the same answer is right for both.
        thresholds: the thresholds to try.
        embed: texts -> array (n, dim), e.g. `Embedder.embed`.

    Raises:
        ValueError: lengths differ or no questions.
    """
    if len(queries) != len(labels) or not queries:
        raise ValueError(f"need one label per question and at least one question; got {len(queries)} and {len(labels)}")
    vectors = np.asarray(embed(list(queries)), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms > 0, norms, 1.0)
    similarity = vectors @ vectors.T
    keys = [normalize_query(q) for q in queries]
    best_sim = np.full(len(queries), -np.inf)
    best_right = np.zeros(len(queries), dtype=bool)
    for i in range(1, len(queries)):
        earlier = [j for j in range(i) if keys[j] == keys[i]]
        j = earlier[-1] if earlier else int(np.argmax(similarity[i, :i]))
        best_sim[i] = 1.0 if earlier else similarity[i, j]
        best_right[i] = labels[j] == labels[i]
    hit_rate, wrong_rate, precision = [], [], []
    for t in thresholds:
        hits = best_sim >= t
        wrong = hits & ~best_right
        hit_rate.append(float(hits.mean()))
        wrong_rate.append(float(wrong.mean()))
        precision.append(float(1 - wrong.sum() / hits.sum()) if hits.any() else 1.0)
    return ThresholdSweep(thresholds=tuple(float(t) for t in thresholds), hit_rate=tuple(hit_rate),
                          wrong_rate=tuple(wrong_rate), precision=tuple(precision), n=len(queries))
