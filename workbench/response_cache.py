"""A response cache: answers reused for repeated (exact) or similar (semantic) questions.

Exact lookups match the question after collapsing whitespace and case. Semantic lookups
embed the question and reuse the stored answer of the most similar earlier question when
the cosine similarity reaches `threshold`. A semantic hit can serve an answer to a different
question, so the cache logs every answer it served (`served`), and `threshold_sweep` measures,
over a query log, how many hits and how many wrong answers each threshold gives.

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
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .config import PipelineConfig, ResponseCacheConfig, config_hash
from .io import DATA_DIR, cache_dir
from .sqlite import Database, Schema
from .types import Answer, Chunk, Usage

if TYPE_CHECKING:
    import pandas as pd

    from .datasets import Dataset
    from .embedding import Embedder

__all__ = [
    "ResponseCache",
    "ResponseCacheError",
    "CacheHit",
    "CacheStats",
    "ServedAnswer",
    "ThresholdSweep",
    "threshold_sweep",
    "normalize_query",
    "corpus_version",
    "cache_scope",
    "open_response_cache",
    "shares_relevance",
    "load_paraphrases",
    "query_log",
    "label_queries",
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


# --- measuring a threshold over a query log ---------------------------------------------------


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

    def choose(self, max_wrong_rate: float) -> tuple[float, float, float]:
        """(threshold, hit rate, wrong rate) of the lowest threshold whose wrong-hit rate stays
        at or under `max_wrong_rate` (the most hits that budget allows).

        Raises:
            ValueError: no threshold stays under the budget.
        """
        for t, h, w in sorted(zip(self.thresholds, self.hit_rate, self.wrong_rate, strict=True)):
            if w <= max_wrong_rate:
                return t, h, w
        raise ValueError(
            f"no threshold in {list(self.thresholds)} keeps the wrong-hit rate at or under {max_wrong_rate}; "
            "try higher thresholds or accept more wrong hits"
        )


def shares_relevance(dataset: Dataset) -> Callable[[Hashable, Hashable], bool]:
    """Whether a cached answer is right for another question of `dataset`, by its judgements.

    Two query ids agree when they are equal, when they share a relevant document (qrels,
    for sets without reference spans) or when their reference spans overlap (span sets:
    sharing a document is too weak there, a handful of documents hold every answer).
    """

    def agree(a: Hashable, b: Hashable) -> bool:
        if a == b:
            return True
        spans_a, spans_b = dataset.spans.get(a), dataset.spans.get(b)  # type: ignore[call-overload]
        if spans_a and spans_b:
            return any(x.doc_id == y.doc_id and x.start < y.end and y.start < x.end for x in spans_a for y in spans_b)
        rel_a = {d for d, g in dataset.qrels.get(a, {}).items() if g > 0}  # type: ignore[call-overload]
        rel_b = {d for d, g in dataset.qrels.get(b, {}).items() if g > 0}  # type: ignore[call-overload]
        return bool(rel_a & rel_b)

    return agree


def threshold_sweep(
    queries: Sequence[str],
    labels: Sequence[Hashable],
    thresholds: Sequence[float],
    *,
    embed: Callable[[Sequence[str]], Any],
    agree: Callable[[Hashable, Hashable], bool] | None = None,
) -> ThresholdSweep:
    """Replay questions in order through a semantic cache at each threshold (exact repeats included).

    Each question looks up every earlier one; it is a hit when the best cosine similarity
    reaches the threshold (an exact repeat always hits), and a wrong hit when the earlier
    question's answer is not right for it: `agree(label_earlier, label_new)` is False.

    Args:
        queries: the questions, in arrival order (a query log).
        labels: one label per question, e.g. its query id in a dataset.
        thresholds: the thresholds to try.
        embed: texts -> array (n, dim), e.g. `Embedder.embed`.
        agree: whether two labels share a right answer; default equality.
            `shares_relevance(dataset)` judges query ids by qrels or reference spans.

    Raises:
        ValueError: lengths differ or no questions.
    """
    if len(queries) != len(labels) or not queries:
        raise ValueError(f"need one label per question and at least one question; got {len(queries)} and {len(labels)}")
    same = agree or (lambda a, b: a == b)
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
        best_right[i] = same(labels[j], labels[i])
    hit_rate, wrong_rate, precision = [], [], []
    for t in thresholds:
        hits = best_sim >= t
        wrong = hits & ~best_right
        hit_rate.append(float(hits.mean()))
        wrong_rate.append(float(wrong.mean()))
        precision.append(float(1 - wrong.sum() / hits.sum()) if hits.any() else 1.0)
    return ThresholdSweep(thresholds=tuple(float(t) for t in thresholds), hit_rate=tuple(hit_rate),
                          wrong_rate=tuple(wrong_rate), precision=tuple(precision), n=len(queries))


def load_paraphrases(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Paraphrased questions by query id from a CSV with columns `query_id` and `paraphrase`
    (a bundled name, "cranfield" or "chunking", reads `data/paraphrases/<name>.csv`).

    Raises:
        ValueError: the file is missing or lacks the two columns.
    """
    import csv

    file = DATA_DIR / "paraphrases" / f"{path}.csv" if str(path) in ("cranfield", "chunking") else Path(path)
    if not file.is_file():
        raise ValueError(f"no paraphrase file {str(file)!r}; give a CSV with columns query_id, paraphrase")
    out: dict[str, list[str]] = {}
    with open(file, encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            qid, text = (row.get("query_id") or "").strip(), (row.get("paraphrase") or "").strip()
            if not qid or not text:
                raise ValueError(f"{file} line {n}: needs a query_id and a paraphrase")
            out.setdefault(qid, []).append(text)
    return {q: tuple(p) for q, p in out.items()}


def query_log(
    dataset: Dataset, paraphrases: Mapping[str, Sequence[str]] | None = None, *, repeat_share: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str]]:
    """A synthetic query log: every evaluated question once, its paraphrases, and exact repeats
    of a `repeat_share` sample of the questions, shuffled together (seeded).

    Returns:
        The questions in arrival order and the query id of each (a paraphrase or repeat carries
        its original's id), ready for `threshold_sweep(..., agree=shares_relevance(dataset))`.

    Raises:
        ValueError: a paraphrase of an unknown or unjudged query, or `repeat_share` outside [0, 1].
    """
    if not 0.0 <= repeat_share <= 1.0:
        raise ValueError(f"repeat_share={repeat_share} must lie in [0, 1]")
    ids = dataset.evaluated_queries
    paraphrases = paraphrases or {}
    unknown = sorted(set(paraphrases) - set(ids))
    if unknown:
        raise ValueError(f"paraphrases name queries {unknown[:5]} that {dataset.name!r} does not judge")
    rng = np.random.default_rng(seed)
    repeats = rng.choice(ids, size=round(repeat_share * len(ids)), replace=False).tolist() if ids else []
    log = [(dataset.queries[q], q) for q in ids + repeats]
    log += [(text, q) for q, texts in paraphrases.items() for text in texts]
    order = rng.permutation(len(log))
    return [log[i][0] for i in order], [log[i][1] for i in order]


def label_queries(queries: Sequence[str], dataset: Dataset | None = None) -> list[str]:
    """Labels for a query log read from traffic (e.g. `[t.query for t in TraceStore().traces()]`).

    A question whose normalised text is one of `dataset`'s gets that query id (so
    `shares_relevance(dataset)` judges it); any other gets its normalised text, so only exact
    repeats of it agree: the wrong-hit rate of a semantic hit between two unjudged questions is
    then an upper bound (a judge, or judgements, would settle it).
    """
    known = {normalize_query(text): qid for qid, text in (dataset.queries.items() if dataset else ())}
    return [known.get(normalize_query(q), normalize_query(q)) for q in queries]
