"""First-stage retrieval: BM25 over a sparse score matrix, dense FAISS indexes, hybrid fusion.

Every retriever answers `retrieve(query, k, where)` with `Hit`s ranked best first. A metadata
filter (`where`) is applied before the top-k cut, so a filtered query still gets k hits whenever
k matching chunks exist.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .config import ConfigError, RetrievalConfig
from .io import atomic_write_bytes, atomic_write_text
from .types import Chunk, Hit

if TYPE_CHECKING:
    import scipy.sparse

    from .embedding import Embedder

__all__ = [
    "Filter",
    "Retriever",
    "compile_filter",
    "filter_mask",
    "ENGLISH_STOPWORDS",
    "TOKEN_PATTERN",
    "Bm25Tokenizer",
    "Bm25Index",
    "BM25Retriever",
    "DenseRetriever",
    "HybridRetriever",
    "reciprocal_rank_fusion",
    "weighted_score_fusion",
    "FUSIONS",
    "RETRIEVERS",
    "build_retriever",
]

Filter = Mapping[str, Any]
"""Chunk-metadata conditions, AND-ed: `{"field": value}`, `{"field": {"in": [...]}}`,
`{"field": {"gte" | "gt" | "lte" | "lt": number or date}}`."""


class Retriever(Protocol):
    """Finds the k chunks that best answer a query, optionally among those matching a filter."""

    def retrieve(self, query: str, k: int, where: Filter | None = None) -> list[Hit]: ...


# --------------------------------------------------------------------------------- filters

Predicate = Callable[[Any], bool]

_RANGE_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "gte": lambda value, bound: value >= bound,
    "gt": lambda value, bound: value > bound,
    "lte": lambda value, bound: value <= bound,
    "lt": lambda value, bound: value < bound,
}
OPERATORS = ("in", *_RANGE_OPERATORS)


def _as_date(value: Any) -> dt.date | dt.datetime | None:
    """A date or naive UTC datetime from a date, datetime or ISO string; None if it is neither."""
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value) if len(value) == 10 else dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value
    return value if isinstance(value, dt.date) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _range_predicate(name: str, op: str, bound: Any) -> Predicate:
    compare = _RANGE_OPERATORS[op]
    if _is_number(bound):
        return lambda value: _is_number(value) and compare(value, bound)
    date_bound = _as_date(bound)
    if date_bound is None:
        raise ValueError(
            f"filter {name!r}: {op!r} needs a number, a datetime.date or an ISO date string "
            f"such as '2024-01-31', got {bound!r}"
        )
    if isinstance(date_bound, dt.datetime):
        def datetime_predicate(value: Any) -> bool:
            parsed = _as_date(value)
            if parsed is None:
                return False
            if not isinstance(parsed, dt.datetime):
                parsed = dt.datetime.combine(parsed, dt.time())
            return compare(parsed, date_bound)

        return datetime_predicate

    def date_predicate(value: Any) -> bool:  # a bare date bound compares calendar days
        parsed = _as_date(value)
        if parsed is None:
            return False
        return compare(parsed.date() if isinstance(parsed, dt.datetime) else parsed, date_bound)

    return date_predicate


def _condition(name: str, condition: Any) -> Predicate:
    if not isinstance(condition, Mapping):
        return lambda value: value == condition
    if not condition:
        raise ValueError(f"filter {name!r} has an empty operator table; use one of {list(OPERATORS)}")
    tests: list[Predicate] = []
    for op, operand in condition.items():
        if op == "in":
            if isinstance(operand, (str, bytes)) or not isinstance(operand, (list, tuple, set, frozenset)):
                raise ValueError(
                    f"filter {name!r}: 'in' needs a list of values, got {operand!r}; "
                    f"write {{'in': [{operand!r}]}} for a single value"
                )
            members = list(operand)
            tests.append(lambda value, members=members: value in members)
        elif op in _RANGE_OPERATORS:
            tests.append(_range_predicate(name, op, operand))
        else:
            raise ValueError(f"filter {name!r} uses unknown operator {op!r}; known operators are {list(OPERATORS)}")
    return lambda value: all(test(value) for test in tests)


_MISSING = object()


def compile_filter(where: Filter | None) -> Callable[[Mapping[str, Any]], bool]:
    """Check a metadata filter and turn it into a predicate on chunk metadata.

    Args:
        where: field -> value (equality) or field -> {operator: operand}; fields are AND-ed.
            Operators: "in" (a list), "gte"/"gt"/"lte"/"lt" (a number, or a date / ISO date
            string, compared as dates). A chunk without the field does not match.

    Returns:
        A function of a metadata mapping, True where the chunk passes the filter.

    Raises:
        ValueError: `where` is not a mapping, or names an unknown operator or a bad operand.
    """
    if where is None:
        return lambda metadata: True
    if not isinstance(where, Mapping):
        raise ValueError(f"a filter must be a mapping of metadata field -> condition, got {where!r}")
    fields = [(str(name), _condition(str(name), condition)) for name, condition in where.items()]

    def predicate(metadata: Mapping[str, Any]) -> bool:
        for name, test in fields:
            value = metadata.get(name, _MISSING)
            if value is _MISSING or not test(value):
                return False
        return True

    return predicate


def filter_mask(chunks: Sequence[Chunk], where: Filter | None) -> np.ndarray | None:
    """Boolean mask of the chunks that pass `where`, or None when there is no filter."""
    if where is None:
        return None
    predicate = compile_filter(where)
    return np.fromiter((predicate(c.metadata) for c in chunks), dtype=bool, count=len(chunks))


# ----------------------------------------------------------------------------- shared bits


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _check_chunks(chunks: Sequence[Chunk]) -> None:
    if not chunks:
        raise ValueError("cannot build a retriever over no chunks; load a dataset with at least one non-empty document")
    ids = [c.id for c in chunks]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dupes = sorted({i for i in ids if i in seen or seen.add(i)})[:5]  # type: ignore[func-returns-value]
        raise ValueError(f"chunk ids must be unique; duplicated: {dupes}")


def top_k(scores: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k best scores (among `mask`), best first; ties go to the lower index.

    Args:
        scores: one score per item.
        k: how many to return; fewer when fewer items pass the mask.
        mask: boolean array, True where an item may be returned; None allows all.

    Returns:
        int64 indices into `scores`.
    """
    candidates = np.flatnonzero(mask) if mask is not None else None
    values = scores[candidates] if candidates is not None else scores
    n = len(values)
    k = min(k, n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if k < n:
        threshold = np.partition(values, n - k)[n - k]
        above = np.flatnonzero(values > threshold)
        ties = np.flatnonzero(values == threshold)[: k - len(above)]
        chosen = np.concatenate([above, ties])
    else:
        chosen = np.arange(n)
    chosen = chosen[np.lexsort((chosen, -values[chosen]))]
    return candidates[chosen] if candidates is not None else chosen.astype(np.int64)


def _hits(chunks: Sequence[Chunk], indices: Sequence[int], scores: Sequence[float]) -> list[Hit]:
    return [Hit(chunk=chunks[i], score=float(s), rank=r) for r, (i, s) in enumerate(zip(indices, scores), 1)]


# -------------------------------------------------------------------------------------- BM25

TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's and bm25s's: words of two or more characters

# NLTK's English stopword list (179 words, as bundled by bm25s as STOPWORDS_EN_PLUS). With this
# list, TOKEN_PATTERN and lowercasing, BM25 on Cranfield gives the reference nDCG@10 of 0.350.
ENGLISH_STOPWORDS = frozenset(
    """a about above after again against ain all am an and any are aren aren't as at be because been
    before being below between both but by can couldn couldn't d did didn didn't do does doesn doesn't
    doing don don't down during each few for from further had hadn hadn't has hasn hasn't have haven
    haven't having he her here hers herself him himself his how i if in into is isn isn't it it's its
    itself just ll m ma me mightn mightn't more most mustn mustn't my myself needn needn't no nor not
    now o of off on once only or other our ours ourselves out over own re s same shan shan't she she's
    should should've shouldn shouldn't so some such t than that that'll the their theirs them
    themselves then there these they this those through to too under until up ve very was wasn wasn't
    we were weren weren't what when where which while who whom why will with won won't wouldn
    wouldn't y you you'd you'll you're you've your yours yourself yourselves""".split()
)
STOPWORD_LISTS: dict[str, frozenset[str]] = {"english": ENGLISH_STOPWORDS, "none": frozenset()}


@lru_cache(maxsize=8)
def _stemmer(language: str) -> Any:
    try:
        import Stemmer
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("PyStemmer is missing; run `make run` or `pip install -e .`") from exc
    return Stemmer.Stemmer(language)


@dataclass(frozen=True, kw_only=True)
class Bm25Tokenizer:
    """Text -> BM25 terms: optional lowercasing, a regex of words, stopword removal, stemming."""

    lowercase: bool = True
    stopwords: frozenset[str] = ENGLISH_STOPWORDS
    stemmer: str | None = None  # a PyStemmer (Snowball) language such as "english"
    token_pattern: str = TOKEN_PATTERN
    _find: Callable[[str], list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "_find", re.compile(self.token_pattern).findall)
        except re.error as exc:
            raise ConfigError(f"token pattern {self.token_pattern!r} is not a valid regex: {exc}") from None
        if self.stemmer is not None:
            try:
                _stemmer(self.stemmer)
            except KeyError:
                raise ConfigError(f"PyStemmer has no stemmer for {self.stemmer!r}; try 'english'") from None

    @classmethod
    def from_config(cls, config: RetrievalConfig) -> Bm25Tokenizer:
        """The tokenizer that `config` describes."""
        return cls(
            lowercase=config.lowercase,
            stopwords=STOPWORD_LISTS[config.stopwords],
            stemmer=None if config.stemmer == "none" else config.stemmer,
            token_pattern=config.token_pattern,
        )

    def __call__(self, text: str) -> list[str]:
        """The terms of `text`, in order, repeats kept."""
        words = self._find(text.lower() if self.lowercase else text)
        if self.stopwords:
            words = [w for w in words if w not in self.stopwords]
        if self.stemmer is not None:
            words = _stemmer(self.stemmer).stemWords(words)
        return words


class Bm25Index:
    """Okapi BM25 with rank_bm25's exact semantics, precomputed as a term -> document score matrix.

    As in bm25s (Lù, 2024), every (term, document) contribution
    idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl)) is computed once at index
    time, so scoring a query only sums a few sparse rows. idf(t) = log((N - n_t + 0.5) /
    (n_t + 0.5)), and negative idfs are floored to epsilon times the mean idf, as rank_bm25's
    BM25Okapi does; the arithmetic follows its order, so scores match it to the last bit.
    """

    def __init__(self, corpus: Sequence[Sequence[str]], *, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25):
        """Index tokenised documents.

        Args:
            corpus: the terms of each document.
            k1, b, epsilon: BM25Okapi's parameters.

        Raises:
            ValueError: an empty corpus, or one without a single term.
        """
        import scipy.sparse

        if not corpus:
            raise ValueError("cannot index an empty corpus; pass at least one document")
        vocabulary: dict[str, int] = {}
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        freqs: list[np.ndarray] = []
        lengths = np.zeros(len(corpus), dtype=np.int64)
        for d, terms in enumerate(corpus):
            lengths[d] = len(terms)
            counts: dict[int, int] = {}
            for term in terms:
                t = vocabulary.setdefault(term, len(vocabulary))
                counts[t] = counts.get(t, 0) + 1
            cols.append(np.full(len(counts), d, dtype=np.int64))
            rows.append(np.fromiter(counts.keys(), dtype=np.int64, count=len(counts)))
            freqs.append(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
        if not vocabulary:
            raise ValueError(
                "no document has a single BM25 term after tokenization; check the stopword list "
                "and token pattern (retrieval.stopwords, retrieval.token_pattern)"
            )
        term, doc, tf = np.concatenate(rows), np.concatenate(cols), np.concatenate(freqs)
        n_docs = len(corpus)
        df = np.bincount(term, minlength=len(vocabulary))
        idf = np.array([math.log(n_docs - n + 0.5) - math.log(n + 0.5) for n in df.tolist()])
        # rank_bm25 sums idfs one by one in first-seen order: cumsum keeps that order exactly.
        eps = epsilon * (np.cumsum(idf)[-1] / len(idf))
        idf[idf < 0] = eps
        avgdl = lengths.sum() / n_docs
        norm = k1 * (1 - b + b * lengths / avgdl)
        data = idf[term] * (tf * (k1 + 1) / (tf + norm[doc]))
        matrix = scipy.sparse.csr_matrix((data, (term, doc)), shape=(len(vocabulary), n_docs))
        matrix.sort_indices()
        self.vocabulary = vocabulary
        self.idf = idf
        self.n_docs = n_docs
        self.matrix: scipy.sparse.csr_matrix = matrix  # terms x documents
        self._indptr, self._indices, self._data = matrix.indptr, matrix.indices, matrix.data

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for the query terms (repeats count, unknown terms add 0)."""
        scores = np.zeros(self.n_docs)
        indptr, indices, data = self._indptr, self._indices, self._data
        for term in query:
            t = self.vocabulary.get(term)
            if t is not None:
                lo, hi = indptr[t], indptr[t + 1]
                scores[indices[lo:hi]] += data[lo:hi]
        return scores

    def top_k(self, query: Sequence[str], k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(document indices, scores) of the k best documents among `mask`, best first."""
        _check_k(k)
        scores = self.scores(query)
        best = top_k(scores, k, mask)
        return best, scores[best]


class BM25Retriever:
    """BM25 over chunk texts; a filter masks the score vector before the top-k cut."""

    def __init__(self, chunks: Sequence[Chunk], *, tokenizer: Bm25Tokenizer | None = None,
                 k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> None:
        """Tokenise and index `chunks`.

        Raises:
            ValueError: no chunks, duplicate chunk ids, or no term in any chunk.
        """
        _check_chunks(chunks)
        self.chunks = list(chunks)
        self.tokenizer = tokenizer or Bm25Tokenizer()
        self.index = Bm25Index([self.tokenizer(c.text) for c in self.chunks], k1=k1, b=b, epsilon=epsilon)

    @classmethod
    def from_config(cls, config: RetrievalConfig, chunks: Sequence[Chunk], embedder: Embedder | None = None) -> BM25Retriever:
        """A BM25 retriever with the tokenizer and parameters of `config` (`embedder` is unused)."""
        return cls(chunks, tokenizer=Bm25Tokenizer.from_config(config),
                   k1=config.bm25_k1, b=config.bm25_b, epsilon=config.bm25_epsilon)

    def retrieve(self, query: str, k: int, where: Filter | None = None) -> list[Hit]:
        """The k best chunks for `query` among those passing `where`.

        Raises:
            ValueError: k <= 0 or a malformed filter.
        """
        return self.retrieve_many([query], k, where)[0]

    def retrieve_many(self, queries: Sequence[str], k: int, where: Filter | None = None) -> list[list[Hit]]:
        """`retrieve` for each query, evaluating the filter once."""
        _check_k(k)
        mask = filter_mask(self.chunks, where)
        results = []
        for query in queries:
            best, scores = self.index.top_k(self.tokenizer(query), k, mask)
            results.append(_hits(self.chunks, best, scores))
        return results


# ------------------------------------------------------------------------------------- dense

_INDEX_FILE, _CHUNKS_FILE, _META_FILE = "index.faiss", "chunks.jsonl", "meta.json"
_FORMAT = 1


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("faiss is missing; run `make run` or `pip install faiss-cpu`") from exc
    return faiss


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.array(vectors, dtype=np.float32, ndmin=2, order="C")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _mismatch(built: str, given: str) -> ConfigError:
    return ConfigError(
        f"embedding model mismatch: the index was built with {built!r} but the embedder is {given!r}; "
        f"rebuild the index with {given!r} or set embedding.model = {built!r}"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"chunk metadata value {value!r} ({type(value).__name__}) cannot be saved; use str, number, bool, list or date")


def _json_hook(obj: dict[str, Any]) -> Any:
    if obj.keys() == {"$datetime"}:
        return dt.datetime.fromisoformat(obj["$datetime"])
    if obj.keys() == {"$date"}:
        return dt.date.fromisoformat(obj["$date"])
    return obj


class DenseRetriever:
    """Cosine similarity over a FAISS index (exact `IndexFlatIP`, or HNSW) of chunk embeddings.

    The index records the embedding model id; pairing it with an embedder of another model
    raises `ConfigError` ("embedding model mismatch").
    """

    def __init__(self, chunks: Sequence[Chunk], index: Any, embedder: Embedder, *, model_id: str,
                 ef_search: int = 128) -> None:
        """Wrap a built FAISS index whose i-th vector embeds `chunks[i]`; see `build` and `load`.

        Raises:
            ConfigError: `embedder` is not the model the index was built with.
            ValueError: the index and chunk counts differ.
        """
        if embedder.model_id != model_id:
            raise _mismatch(model_id, embedder.model_id)
        if index.ntotal != len(chunks):
            raise ValueError(f"the index holds {index.ntotal} vectors for {len(chunks)} chunks; rebuild the index")
        self.chunks = list(chunks)
        self.index = index
        self.embedder = embedder
        self.model_id = model_id
        self.dimension = int(index.d)
        self.ef_search = ef_search

    @classmethod
    def build(cls, chunks: Sequence[Chunk], embedder: Embedder, *, index: str = "flat", hnsw_m: int = 32,
              hnsw_ef_construction: int = 200, hnsw_ef_search: int = 128, progress: bool = True) -> DenseRetriever:
        """Embed `chunks` (through the embedder's cache) and index them.

        Args:
            chunks: what to index.
            embedder: the model; its id is recorded with the index.
            index: "flat" (exact inner product) or "hnsw" (approximate, `IndexHNSWFlat`).
            hnsw_m, hnsw_ef_construction, hnsw_ef_search: HNSW graph degree and search breadths.
            progress: show the embedding progress bar.

        Raises:
            ValueError: no chunks, duplicate chunk ids, or an unknown index kind.
        """
        _check_chunks(chunks)
        faiss = _import_faiss()
        vectors = _normalised(embedder.embed([c.text for c in chunks], progress=progress))
        dim = vectors.shape[1]
        if index == "flat":
            built = faiss.IndexFlatIP(dim)
        elif index == "hnsw":
            built = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            built.hnsw.efConstruction = hnsw_ef_construction
            built.hnsw.efSearch = hnsw_ef_search
        else:
            raise ValueError(f"unknown dense index {index!r}; choose one of ['flat', 'hnsw']")
        built.add(vectors)
        return cls(chunks, built, embedder, model_id=embedder.model_id, ef_search=hnsw_ef_search)

    @classmethod
    def from_config(cls, config: RetrievalConfig, chunks: Sequence[Chunk], embedder: Embedder | None = None) -> DenseRetriever:
        """A dense retriever with the index settings of `config`.

        Raises:
            ValueError: `embedder` is None.
        """
        if embedder is None:
            raise ValueError(
                f"retrieval.kind={config.kind!r} needs an embedder; pass "
                "workbench.embedding.load_embedder(config.embedding) to build_retriever"
            )
        return cls.build(chunks, embedder, index=config.index, hnsw_m=config.hnsw_m,
                         hnsw_ef_construction=config.hnsw_ef_construction, hnsw_ef_search=config.hnsw_ef_search)

    def retrieve(self, query: str, k: int, where: Filter | None = None) -> list[Hit]:
        """The k chunks most similar to `query` among those passing `where`.

        Raises:
            ValueError: k <= 0 or a malformed filter.
            ConfigError: the embedder's vectors do not fit the index's dimension.
        """
        return self.retrieve_many([query], k, where)[0]

    def retrieve_many(self, queries: Sequence[str], k: int, where: Filter | None = None) -> list[list[Hit]]:
        """`retrieve` for each query: one embedding batch, one FAISS search."""
        _check_k(k)
        if not queries:
            return []
        return self.search(self.embedder.embed(list(queries)), k, where)

    def search(self, vectors: np.ndarray, k: int, where: Filter | None = None) -> list[list[Hit]]:
        """The k nearest chunks to each query vector (rows of `vectors`), among those passing `where`.

        Raises:
            ValueError: k <= 0 or a malformed filter.
            ConfigError: the vectors' dimension is not the index's.
        """
        _check_k(k)
        faiss = _import_faiss()
        vectors = _normalised(vectors)
        if vectors.shape[1] != self.dimension:
            raise ConfigError(
                f"embedding model mismatch: query vectors have dimension {vectors.shape[1]} but the index "
                f"({self.model_id!r}) has {self.dimension}; rebuild the index or set embedding.model = {self.model_id!r}"
            )
        mask = filter_mask(self.chunks, where)
        allowed = np.flatnonzero(mask) if mask is not None else None
        n_allowed = len(self.chunks) if allowed is None else len(allowed)
        k = min(k, n_allowed)
        if k == 0:
            return [[] for _ in vectors]
        hnsw = hasattr(self.index, "hnsw")
        params = None
        if allowed is not None or hnsw:
            selector = faiss.IDSelectorBatch(allowed.astype(np.int64)) if allowed is not None else None
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k)) if hnsw else faiss.SearchParameters()
            if selector is not None:
                params.sel = selector
        scores, labels = self.index.search(vectors, k, params=params)
        results = []
        for row, (row_scores, row_labels) in enumerate(zip(scores, labels)):
            found = row_labels >= 0
            if found.sum() < k:  # HNSW under a tight filter can run out of graph: score the subset exactly
                row_labels, row_scores = self._exact(vectors[row], k, allowed)
                found = np.ones(len(row_labels), dtype=bool)
            results.append(_hits(self.chunks, row_labels[found], row_scores[found]))
        return results

    def _exact(self, vector: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        ids = np.arange(len(self.chunks)) if allowed is None else allowed
        stored = self.index.reconstruct_batch(ids.astype(np.int64))
        scores = stored @ vector
        best = top_k(scores, k)
        return ids[best], scores[best]

    def save(self, directory: str | Path) -> None:
        """Write the index, its chunks and its model id to `directory` (each file atomically).

        `meta.json` is written last and holds checksums of the other files, so a half-written
        save is detected on load.
        """
        faiss = _import_faiss()
        directory = Path(directory)
        index_bytes = faiss.serialize_index(self.index).tobytes()
        chunk_lines = "".join(
            json.dumps({"id": c.id, "doc_id": c.doc_id, "text": c.text, "start": c.start, "end": c.end,
                        "metadata": dict(c.metadata)}, default=_json_default, ensure_ascii=False) + "\n"
            for c in self.chunks
        ).encode("utf-8")
        atomic_write_bytes(directory / _INDEX_FILE, index_bytes)
        atomic_write_bytes(directory / _CHUNKS_FILE, chunk_lines)
        meta = {
            "format": _FORMAT,
            "model_id": self.model_id,
            "dimension": self.dimension,
            "count": len(self.chunks),
            "ef_search": self.ef_search,
            "sha256": {_INDEX_FILE: hashlib.sha256(index_bytes).hexdigest(),
                       _CHUNKS_FILE: hashlib.sha256(chunk_lines).hexdigest()},
        }
        atomic_write_text(directory / _META_FILE, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path, embedder: Embedder) -> DenseRetriever:
        """Read an index written by `save`.

        Raises:
            ConfigError: `embedder` is not the model the index was built with.
            ValueError: the folder is missing, incomplete or its files do not match their checksums.
        """
        faiss = _import_faiss()
        directory = Path(directory)
        try:
            meta = json.loads((directory / _META_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"{directory} holds no saved dense index ({_META_FILE} is missing); build and save one") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{directory / _META_FILE} is corrupt ({exc}); rebuild the index") from None
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{directory} holds index format {meta.get('format')!r}, expected {_FORMAT}; rebuild the index")
        if embedder.model_id != meta["model_id"]:
            raise _mismatch(meta["model_id"], embedder.model_id)
        blobs = {}
        for name in (_INDEX_FILE, _CHUNKS_FILE):
            try:
                blobs[name] = (directory / name).read_bytes()
            except FileNotFoundError:
                raise ValueError(f"{directory / name} is missing; rebuild the index") from None
            if hashlib.sha256(blobs[name]).hexdigest() != meta["sha256"][name]:
                raise ValueError(f"{directory / name} does not match its checksum in {_META_FILE}; rebuild the index")
        index = faiss.deserialize_index(np.frombuffer(blobs[_INDEX_FILE], dtype=np.uint8))
        chunks = [Chunk(**json.loads(line, object_hook=_json_hook))
                  for line in blobs[_CHUNKS_FILE].decode("utf-8").splitlines()]
        return cls(chunks, index, embedder, model_id=meta["model_id"], ef_search=meta["ef_search"])


# ------------------------------------------------------------------------------------ hybrid


def reciprocal_rank_fusion(dense: Sequence[Hit], sparse: Sequence[Hit], *, rrf_k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion (Cormack et al., 2009): score(c) = sum over lists of 1 / (rrf_k + rank).

    Args:
        dense, sparse: two ranked hit lists (ranks 1-based).
        rrf_k: the damping constant; 60 in the paper.

    Returns:
        Every chunk of either list, best first, ranked 1..n; ties keep first-seen order
        (the dense list, then the sparse one).
    """
    return _fuse([(dense, lambda h: 1.0 / (rrf_k + h.rank)), (sparse, lambda h: 1.0 / (rrf_k + h.rank))])


def _min_max(hits: Sequence[Hit]) -> Callable[[Hit], float]:
    if not hits:
        return lambda h: 0.0
    low, high = min(h.score for h in hits), max(h.score for h in hits)
    if high == low:
        return lambda h: 1.0
    return lambda h: (h.score - low) / (high - low)


def weighted_score_fusion(dense: Sequence[Hit], sparse: Sequence[Hit], *, dense_weight: float = 0.5) -> list[Hit]:
    """Convex combination of min-max normalised scores: w * dense + (1 - w) * sparse.

    A chunk missing from one list gets 0 from it; a list whose scores are all equal maps them to 1.

    Args:
        dense, sparse: two hit lists with their raw scores.
        dense_weight: w, in [0, 1].

    Returns:
        Every chunk of either list, best first, ranked 1..n; ties keep first-seen order.
    """
    if not 0.0 <= dense_weight <= 1.0:
        raise ValueError(f"dense_weight={dense_weight} must lie in [0, 1]")
    dense_norm, sparse_norm = _min_max(dense), _min_max(sparse)
    return _fuse([(dense, lambda h: dense_weight * dense_norm(h)), (sparse, lambda h: (1 - dense_weight) * sparse_norm(h))])


def _fuse(parts: Sequence[tuple[Sequence[Hit], Callable[[Hit], float]]]) -> list[Hit]:
    chunks: dict[str, Chunk] = {}
    scores: dict[str, float] = {}
    for hits, contribution in parts:
        for hit in hits:
            chunks.setdefault(hit.chunk.id, hit.chunk)
            scores[hit.chunk.id] = scores.get(hit.chunk.id, 0.0) + contribution(hit)
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)  # stable: ties keep first-seen order
    return [Hit(chunk=chunks[cid], score=scores[cid], rank=r) for r, cid in enumerate(ranked, 1)]


Fusion = Callable[[Sequence[Hit], Sequence[Hit], RetrievalConfig], list[Hit]]

FUSIONS: dict[str, Fusion] = {
    "rrf": lambda dense, sparse, config: reciprocal_rank_fusion(dense, sparse, rrf_k=config.rrf_k),
    "weighted": lambda dense, sparse, config: weighted_score_fusion(dense, sparse, dense_weight=config.dense_weight),
}


class HybridRetriever:
    """Dense and BM25 retrieval fused by a function from `FUSIONS`; both sides see the filter."""

    def __init__(self, dense: DenseRetriever, sparse: BM25Retriever, config: RetrievalConfig) -> None:
        """Fuse `dense` and `sparse` as `config.fusion` says, from `config.fusion_depth` candidates each.

        Raises:
            ValueError: an unknown fusion name.
        """
        if config.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {config.fusion!r}; choose one of {sorted(FUSIONS)}")
        self.dense = dense
        self.sparse = sparse
        self.config = config
        self._fuse = FUSIONS[config.fusion]

    @classmethod
    def from_config(cls, config: RetrievalConfig, chunks: Sequence[Chunk], embedder: Embedder | None = None) -> HybridRetriever:
        """Build both sides over `chunks`.

        Raises:
            ValueError: `embedder` is None, or no chunks.
        """
        dense = DenseRetriever.from_config(config, chunks, embedder)
        return cls(dense, BM25Retriever.from_config(config, chunks), config)

    def retrieve(self, query: str, k: int, where: Filter | None = None) -> list[Hit]:
        """The k best fused chunks for `query` among those passing `where`.

        Raises:
            ValueError: k <= 0 or a malformed filter.
        """
        return self.retrieve_many([query], k, where)[0]

    def retrieve_many(self, queries: Sequence[str], k: int, where: Filter | None = None) -> list[list[Hit]]:
        """`retrieve` for each query, batching the dense side."""
        _check_k(k)
        depth = max(self.config.fusion_depth, k)
        dense = self.dense.retrieve_many(queries, depth, where)
        sparse = self.sparse.retrieve_many(queries, depth, where)
        return [self._fuse(d, s, self.config)[:k] for d, s in zip(dense, sparse)]


# ----------------------------------------------------------------------------------- factory

RetrieverFactory = Callable[[RetrievalConfig, Sequence[Chunk], "Embedder | None"], Retriever]

RETRIEVERS: dict[str, RetrieverFactory] = {
    "bm25": BM25Retriever.from_config,
    "dense": DenseRetriever.from_config,
    "hybrid": HybridRetriever.from_config,
}


def build_retriever(config: RetrievalConfig, chunks: Sequence[Chunk], embedder: Embedder | None = None) -> Retriever:
    """Build the retriever `config.kind` names over `chunks`.

    Args:
        config: the retrieval settings.
        chunks: what to index (ids unique).
        embedder: required for "dense" and "hybrid".

    Returns:
        A `Retriever` (each of ours also has `retrieve_many`).

    Raises:
        ValueError: an unknown kind (the message lists the known ones), no chunks, duplicate
            chunk ids, or a missing embedder.
    """
    try:
        factory = RETRIEVERS[config.kind]
    except KeyError:
        raise ValueError(f"unknown retriever {config.kind!r}; choose one of {sorted(RETRIEVERS)}") from None
    _check_chunks(chunks)
    return factory(config, chunks, embedder)
