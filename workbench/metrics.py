"""Evaluation metrics as pure functions.

Ranking metrics take `relevance` (document id -> graded relevance; > 0 means relevant) and a
ranked list of ids. Gains are linear in the grade and discounts log2(rank + 1), as in
trec_eval / pytrec_eval (and so BEIR). Span metrics follow Chroma's chunking evaluation: the
characters of the retrieved chunks against the characters of the reference excerpts.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .types import Chunk, Span

__all__ = [
    "ndcg_at_k",
    "recall_at_k",
    "precision_at_k",
    "mrr_at_k",
    "average_precision",
    "hit_rate_at_k",
    "span_scores",
    "SpanScores",
    "RANKING_METRICS",
]


def _check_k(k: int) -> None:
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")


def _relevant(relevance: Mapping[str, int]) -> set[str]:
    return {doc for doc, grade in relevance.items() if grade > 0}


def ndcg_at_k(relevance: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """Normalised discounted cumulative gain of the first k of `ranked`, graded, linear gains."""
    _check_k(k)
    dcg = sum(relevance.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if relevance.get(doc, 0) > 0)
    ideal = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_k(relevance: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """Fraction of the relevant ids found in the first k of `ranked`."""
    _check_k(k)
    relevant = _relevant(relevance)
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def precision_at_k(relevance: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """Fraction of the first k positions holding a relevant id (short lists count as misses)."""
    _check_k(k)
    relevant = _relevant(relevance)
    return sum(doc in relevant for doc in ranked[:k]) / k


def mrr_at_k(relevance: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """Reciprocal rank of the first relevant id within the first k, else 0."""
    _check_k(k)
    relevant = _relevant(relevance)
    return next((1.0 / (i + 1) for i, doc in enumerate(ranked[:k]) if doc in relevant), 0.0)


def average_precision(relevance: Mapping[str, int], ranked: Sequence[str], k: int | None = None) -> float:
    """Average precision over the (first k of the) ranking, divided by all relevant ids (MAP's term)."""
    if k is not None:
        _check_k(k)
    relevant = _relevant(relevance)
    if not relevant:
        return 0.0
    found, total = 0, 0.0
    for i, doc in enumerate(ranked[:k] if k else ranked):
        if doc in relevant:
            found += 1
            total += found / (i + 1)
    return total / len(relevant)


def hit_rate_at_k(relevance: Mapping[str, int], ranked: Sequence[str], k: int) -> float:
    """1.0 when any relevant id is in the first k, else 0.0."""
    _check_k(k)
    return float(bool(_relevant(relevance) & set(ranked[:k])))


RANKING_METRICS: dict[str, Callable[[Mapping[str, int], Sequence[str], int], float]] = {
    "ndcg": ndcg_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "mrr": mrr_at_k,
    "map": average_precision,
    "hit_rate": hit_rate_at_k,
}


# --- span metrics -------------------------------------------------------------------------

Interval = tuple[int, int]


def _union(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[list[int]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def _length(intervals: Iterable[Interval]) -> int:
    return sum(b - a for a, b in intervals)


def _intersection(a: list[Interval], b: list[Interval]) -> int:
    total, i, j = 0, 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


@dataclass(frozen=True)
class SpanScores:
    """Character-level recall, precision and IoU of retrieved text against reference text.

    `precision` and `iou` follow Chroma's chunking evaluation: every retrieved chunk's characters
    count, so text shared by overlapping chunks counts once per chunk, as the model receives it.
    `unique_precision` and `unique_iou` count each retrieved character once. Without overlapping
    chunks the two pairs are equal.
    """

    recall: float
    precision: float
    iou: float
    unique_precision: float
    unique_iou: float


def span_scores(retrieved: Sequence[Span], references: Sequence[Span]) -> SpanScores:
    """Character-level recall, precision and IoU of retrieved spans against reference spans.

    With R the retrieved spans, G the union of the references and |R| the sum of the retrieved
    spans' lengths (Chroma's `_scores_from_dataset_and_retrievals`): recall = |U(R) & G| / |G|,
    precision = |U(R) & G| / |R|, iou = |U(R) & G| / (|R| + |G - U(R)|). The `unique_` pair
    replaces |R| by |U(R)|, which makes iou the plain |U(R) & G| / |U(R) | G|.

    Raises:
        ValueError: no reference spans (nothing to score against).
    """
    if not references:
        raise ValueError("span_scores needs at least one reference span")
    docs = {s.doc_id for s in (*retrieved, *references)}
    inter = got = want = 0
    for doc in docs:
        r = _union((s.start, s.end) for s in retrieved if s.doc_id == doc)
        g = _union((s.start, s.end) for s in references if s.doc_id == doc)
        inter += _intersection(r, g)
        got += _length(r)
        want += _length(g)
    sent = sum(max(0, s.end - s.start) for s in retrieved)  # overlaps counted once per chunk
    missed = want - inter
    return SpanScores(
        recall=inter / want if want else 0.0,
        precision=inter / sent if sent else 0.0,
        iou=inter / (sent + missed) if sent + missed else 0.0,
        unique_precision=inter / got if got else 0.0,
        unique_iou=inter / (got + missed) if got + missed else 0.0,
    )


# --- answer metrics -----------------------------------------------------------------------
# Pure functions over answer text. Exact match and token F1 follow the SQuAD evaluation script
# (lowercase, strip punctuation and English articles, collapse whitespace; best over references).

__all__ += [
    "split_sentences",
    "strip_citations",
    "normalize_answer",
    "exact_match",
    "token_f1",
    "citation_precision",
    "groundedness",
    "parse_judgement",
]

_SENTENCE_END = re.compile(
    r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bvs\.)(?<!\be\.g\.)(?<!\bi\.e\.)"
    r"(?<=[.!?])[\"')\]”’]*\s+(?=[\"'(\[“‘]?[A-Z0-9])|\n\s*\n|\n(?=\s*[-*#>\d])"
    r"|(?<=\s[.!?])\s+"  # punctuation set off by spaces, as in tokenised text ("... slipstream . an ...")
)
_CITATION = re.compile(r"\s*\[([^\[\]\n]{1,200})\]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`: split after . ! ? before a capital or digit, after a free-standing . ! ?
    (tokenised text), at blank lines and list items."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def strip_citations(text: str) -> str:
    """`text` without bracketed citation marks such as "[doc#3]" or "[a, b]"."""
    return _CITATION.sub("", text).strip()


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _references(references: str | Sequence[str]) -> list[str]:
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise ValueError("need at least one reference answer")
    return refs


def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised reference, else 0.0.

    Raises:
        ValueError: no references.
    """
    pred = normalize_answer(strip_citations(prediction))
    return float(any(pred == normalize_answer(r) for r in _references(references)))


def token_f1(prediction: str, references: str | Sequence[str]) -> float:
    """Best token-overlap F1 of the normalised prediction against any reference (SQuAD).

    Raises:
        ValueError: no references.
    """
    pred = normalize_answer(strip_citations(prediction)).split()
    best = 0.0
    for ref in _references(references):
        gold = normalize_answer(ref).split()
        if not pred or not gold:
            best = max(best, float(pred == gold))
            continue
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            precision, recall = common / len(pred), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def citation_precision(
    cited: Sequence[str],
    chunks: Mapping[str, Span | Chunk],
    references: Sequence[Span],
    *,
    min_fraction: float = 0.5,
) -> float:
    """Share of cited chunks that contain supporting text.

    A cited chunk supports the answer when it holds at least `min_fraction` of the characters
    of some reference span; a cited id missing from `chunks` (an invented citation) does not.
    An answer that cites nothing scores 0.0.

    Args:
        cited: the chunk ids the answer cites (duplicates count once).
        chunks: the location of each retrieved chunk (a `Chunk` works: it has doc_id, start, end).
        references: the reference excerpts that answer the question.
        min_fraction: how much of a reference a chunk must hold, in (0, 1].

    Raises:
        ValueError: `min_fraction` outside (0, 1].
    """
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction={min_fraction} must lie in (0, 1]")
    unique = list(dict.fromkeys(cited))
    if not unique:
        return 0.0

    def supports(chunk: Span) -> bool:
        return any(
            ref.doc_id == chunk.doc_id
            and ref.end > ref.start
            and min(chunk.end, ref.end) - max(chunk.start, ref.start) >= min_fraction * (ref.end - ref.start)
            for ref in references
        )

    return sum(cid in chunks and supports(chunks[cid]) for cid in unique) / len(unique)


def groundedness(
    answer: str,
    context: Sequence[str],
    embed: Callable[[Sequence[str]], Any],
    *,
    threshold: float = 0.7,
) -> float:
    """Share of the answer's sentences supported by the retrieved text, by embedding similarity.

    A sentence (citation marks removed) is supported when its cosine similarity to some
    sentence of `context` is at least `threshold`. Deterministic for a deterministic `embed`.

    Args:
        answer: the answer text.
        context: the retrieved texts the answer was generated from.
        embed: texts -> array of shape (n, dim), e.g. `Embedder.embed`.
        threshold: cosine similarity that counts as support (0.7 suits all-MiniLM-L6-v2).

    Returns:
        The share in [0, 1]; 0.0 for an empty answer or no context.
    """
    import numpy as np

    claims = [s for s in (strip_citations(x) for x in split_sentences(answer)) if s]
    evidence = [s for text in context for s in split_sentences(text)]
    if not claims or not evidence:
        return 0.0
    vectors = np.asarray(embed([*claims, *evidence]), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms > 0, norms, 1.0)
    similarity = vectors[: len(claims)] @ vectors[len(claims) :].T
    return float(np.mean(similarity.max(axis=1) >= threshold))


_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.S)


def parse_judgement(text: str) -> tuple[float, float]:
    """(faithfulness, relevance) in [0, 1] from a judge's reply holding JSON 1-5 scores.

    The reply must contain an object like {"faithfulness": 4, "relevance": 5}; a score s
    maps to (s - 1) / 4.

    Raises:
        ValueError: no such object, or a score outside 1-5 (the message quotes the reply).
    """
    for match in _JSON_OBJECT.finditer(text):
        try:
            data = json.loads(match.group())
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and {"faithfulness", "relevance"} <= data.keys():
            scores = (data["faithfulness"], data["relevance"])
            if all(isinstance(s, (int, float)) and not isinstance(s, bool) and 1 <= s <= 5 for s in scores):
                return tuple((float(s) - 1) / 4 for s in scores)  # type: ignore[return-value]
    raise ValueError(f'judge reply holds no {{"faithfulness": 1-5, "relevance": 1-5}} object: {text[:200]!r}')
