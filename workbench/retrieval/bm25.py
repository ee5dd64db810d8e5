"""BM25 (Okapi, rank_bm25's semantics) over a precomputed sparse term x document score matrix."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import ConfigError, RetrievalConfig
from ..validation import REGEX_TIMEOUT_S, check_token_pattern, shorten
from ..types import Chunk, Hit
from .base import Filter, check_chunks, check_k, filter_mask, ranked_hits, top_k

if TYPE_CHECKING:
    from ..resources import Resources

__all__ = ["ENGLISH_STOPWORDS", "STOPWORD_LISTS", "TOKEN_PATTERN", "Bm25Tokenizer", "Bm25Index", "BM25Retriever"]

TOKEN_PATTERN = r"(?u)\b\w+\b"  # a term is a run of word characters
# Seconds one text may take to tokenise (the `regex` module's timeout): a pattern that backtracks
# on some text fails with a message instead of hanging the run. Far above a megabyte's ~0.02 s.
TOKENIZE_TIMEOUT_S = max(REGEX_TIMEOUT_S, 2.0)

# scikit-learn's English stop words (318 words, from the Glasgow IR group's list). With this list,
# TOKEN_PATTERN, lowercasing and documents as title + " " + text, BM25 on Cranfield gives nDCG@10
# 0.3524 against the 0.350 reference (benchmarks/retrieval_quality.py --variants prints the grid).
ENGLISH_STOPWORDS = frozenset(
    """a about above across after afterwards again against all almost alone along already also
    although always am among amongst amoungst amount an and another any anyhow anyone anything
    anyway anywhere are around as at back be became because become becomes becoming been before
    beforehand behind being below beside besides between beyond bill both bottom but by call can
    cannot cant co con could couldnt cry de describe detail do done down due during each eg
    eight either eleven else elsewhere empty enough etc even ever every everyone everything
    everywhere except few fifteen fifty fill find fire first five for former formerly forty
    found four from front full further get give go had has hasnt have he hence her here
    hereafter hereby herein hereupon hers herself him himself his how however hundred i ie if in
    inc indeed interest into is it its itself keep last latter latterly least less ltd made many
    may me meanwhile might mill mine more moreover most mostly move much must my myself name
    namely neither never nevertheless next nine no nobody none noone nor not nothing now nowhere
    of off often on once one only onto or other others otherwise our ours ourselves out over own
    part per perhaps please put rather re same see seem seemed seeming seems serious several she
    should show side since sincere six sixty so some somehow someone something sometime
    sometimes somewhere still such system take ten than that the their them themselves then
    thence there thereafter thereby therefore therein thereupon these they thick thin third this
    those though three through throughout thru thus to together too top toward towards twelve
    twenty two un under until up upon us very via was we well were what whatever when whence
    whenever where whereafter whereas whereby wherein whereupon wherever whether which while
    whither who whoever whole whom whose why will with within without would yet you your yours
    yourself yourselves""".split()
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
        import regex

        check_token_pattern(self.token_pattern, "token pattern")
        object.__setattr__(self, "_find", regex.compile(self.token_pattern).findall)
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
        """The terms of `text`, in order, repeats kept.

        Raises:
            ConfigError: the token pattern took over `TOKENIZE_TIMEOUT_S` on this text.
        """
        try:
            words = self._find(text.lower() if self.lowercase else text, timeout=TOKENIZE_TIMEOUT_S)
        except TimeoutError:
            raise ConfigError(
                f"token pattern {shorten(self.token_pattern)} took over {TOKENIZE_TIMEOUT_S} s on a "
                f"{len(text):,}-character text (catastrophic backtracking); simplify retrieval.token_pattern"
            ) from None
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
        vocabulary: dict[str, int] = {}  # term -> id, in first-seen order (rank_bm25's order)
        flat: list[int] = []
        for terms in corpus:
            flat.extend([vocabulary.setdefault(term, len(vocabulary)) for term in terms])
        if not vocabulary:
            raise ValueError(
                "no document has a single BM25 term after tokenization; check the stopword list "
                "and token pattern (retrieval.stopwords, retrieval.token_pattern)"
            )
        lengths = np.fromiter((len(terms) for terms in corpus), dtype=np.int64, count=len(corpus))
        n_terms = len(vocabulary)
        # one key per (document, term) occurrence; counting equal keys gives the term frequencies
        keys = np.repeat(np.arange(len(corpus), dtype=np.int64), lengths) * n_terms + np.array(flat, dtype=np.int64)
        pairs, counts = np.unique(keys, return_counts=True)
        doc, term, tf = pairs // n_terms, pairs % n_terms, counts.astype(np.float64)
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
        self.matrix = matrix  # terms x documents, scipy.sparse CSR
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
        check_k(k)
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
        check_chunks(chunks)
        self.chunks = list(chunks)
        self.tokenizer = tokenizer or Bm25Tokenizer()
        self.index = Bm25Index([self.tokenizer(c.text) for c in self.chunks], k1=k1, b=b, epsilon=epsilon)

    @classmethod
    def from_config(cls, config: RetrievalConfig, resources: Resources) -> BM25Retriever:
        """A BM25 retriever over `resources.chunks` with the tokenizer and parameters of `config`."""
        return cls(resources.chunks, tokenizer=Bm25Tokenizer.from_config(config),
                   k1=config.bm25_k1, b=config.bm25_b, epsilon=config.bm25_epsilon)

    def retrieve(self, query: str, k: int, where: Filter | None = None) -> list[Hit]:
        """The k best chunks for `query` among those passing `where`.

        Raises:
            ValueError: k <= 0 or a malformed filter.
        """
        return self.retrieve_many([query], k, where)[0]

    def retrieve_many(
        self, queries: Sequence[str], k: int, where: Filter | None = None, *, vectors: np.ndarray | None = None
    ) -> list[list[Hit]]:
        """`retrieve` for each query, evaluating the filter once (`vectors` are not needed)."""
        check_k(k)
        mask = filter_mask(self.chunks, where)
        results = []
        for query in queries:
            best, scores = self.index.top_k(self.tokenizer(query), k, mask)
            results.append(ranked_hits(self.chunks, best, scores))
        return results

