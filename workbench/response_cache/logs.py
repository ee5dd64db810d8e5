"""Measuring a response cache on a query log: hit and wrong-hit rates per threshold.

A query log is a dataset's questions, their paraphrases and exact repeats (`query_log`), or
traced traffic (`label_queries`). `threshold_sweep` replays it through a semantic cache at each
threshold; a hit is wrong when the cached question's answer is not right for the new one,
judged by `shares_relevance` (relevant documents from qrels, or overlapping reference spans).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io import DATA_DIR
from .cache import normalize_query

if TYPE_CHECKING:
    import pandas as pd

    from ..datasets import Dataset

__all__ = ["ThresholdSweep", "threshold_sweep", "shares_relevance", "load_paraphrases", "query_log", "label_queries"]


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
