"""Model routing: send each query to the cheapest model tier that answers it well, and measure it.

Routers read `RoutingConfig.tiers` (model ids from the price table, cheapest first). The
scoring routers (rules, learned, retrieval-aware) estimate, for each tier, the chance that it or
a cheaper one is adequate, and pick the cheapest tier whose estimate reaches `threshold`; the
cascade answers with the cheapest tier first and escalates while the answer's confidence stays
below `threshold`. The evaluation functions turn per-query choices into a confusion matrix, cost
against always-the-strongest-model, quality retained and a threshold sweep (the cost-quality
curve), in the manner of RouteLLM (Ong et al., 2024).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .config import RoutingConfig
from .io import DATA_DIR, atomic_write_bytes, atomic_write_text
from .types import Answer, Hit

if TYPE_CHECKING:
    import pandas as pd

    from .costs import ModelPrice
    from .datasets import Dataset
    from .embedding import Embedder
    from .retrieval import Retriever

__all__ = [
    "Router",
    "RoutingError",
    "ROUTERS",
    "make_router",
    "check_models",
    "FixedRouter",
    "RulesRouter",
    "LearnedRouter",
    "RetrievalRouter",
    "cross_validated_adequacy",
    "CascadeRouter",
    "CascadeOutcome",
    "QueryFeatures",
    "query_features",
    "rule_points",
    "RETRIEVAL_FEATURES",
    "retrieval_features",
    "LabelledSet",
    "load_labels",
    "DEMO_LABELS",
    "derive_demo_labels",
    "write_demo_labels",
    "tier_quality",
    "adequate_tiers",
    "measure_tier_quality",
    "tier_costs",
    "choose_tiers",
    "cascade_tiers",
    "RoutingEvaluation",
    "evaluate_routing",
    "CostQualityCurve",
    "sweep_thresholds",
]

DEMO_LABELS = DATA_DIR / "routing" / "chunking_labels.csv"
_FORMAT = 1  # version of the saved-router file layout


class RoutingError(ValueError):
    """Routing input is invalid (unknown model or tier, bad labels, a mismatched saved router)."""


class Router(Protocol):
    """Picks the model that answers a query."""

    def route(self, query: str) -> str:
        """A model id from the price table."""
        ...


def check_models(models: Sequence[str], prices: Mapping[str, ModelPrice] | None = None) -> None:
    """Check that every model is in the price table.

    Raises:
        RoutingError: a model is missing; the message lists the known models.
    """
    if prices is None:
        from .costs import load_prices

        prices = load_prices()
    missing = [m for m in models if m not in prices]
    if missing:
        raise RoutingError(
            f"model(s) {missing} are not in the price table; known models are {sorted(prices)}. "
            "Fix routing.tiers / routing.model, or add the model to a copy of data/prices.toml "
            "and point WORKBENCH_PRICES at it"
        )


# --------------------------------------------------------------------------- tier choice


def choose_tiers(adequacy: np.ndarray, threshold: float) -> np.ndarray:
    """The cheapest tier whose adequacy estimate reaches `threshold`, per query.

    Args:
        adequacy: shape (n, tiers); entry [i, t] estimates P(tier t or a cheaper one suffices
            for query i). The strongest tier always counts as adequate.
        threshold: in [0, 1]; higher buys quality with cost.

    Returns:
        int array of shape (n,), tier indices.
    """
    ok = np.asarray(adequacy, dtype=float) >= threshold
    ok[:, -1] = True
    return ok.argmax(axis=1)


def cascade_tiers(confidence: np.ndarray, threshold: float, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a cascade: try tiers cheapest first, stop at the first confident answer.

    Args:
        confidence: shape (n, tiers); the judge's score of each tier's answer to each query.
        threshold: an answer scoring at least this is kept; below it the cascade escalates.
        cost: shape (n, tiers); USD of one call per query and tier.

    Returns:
        (tier indices, USD spent per query including the escalated-from calls).
    """
    chosen = choose_tiers(confidence, threshold)
    tried = np.arange(cost.shape[1])[None, :] <= chosen[:, None]
    return chosen, (np.asarray(cost) * tried).sum(axis=1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# --------------------------------------------------------------------------- fixed and rules


@dataclass(frozen=True, kw_only=True)
class FixedRouter:
    """Always the same model."""

    model: str

    def route(self, query: str) -> str:
        """`model`, whatever the query."""
        return self.model


@dataclass(frozen=True, kw_only=True)
class QueryFeatures:
    """Surface features of a query that hint at how hard it is."""

    tokens: int
    questions: int  # question marks, at least 1
    clauses: int  # coordinated parts: 1 + "and", ";", "as well as", "while"
    comparison: bool
    reasoning: bool
    numbers_or_code: bool


_WORDS = re.compile(r"[a-z]+")
_CLAUSE_MARKS = re.compile(r"\band\b|;|\bas well as\b|\bwhile\b", re.IGNORECASE)
_NUMBER_OR_CODE = re.compile(r"\d|`|[{}<>=]|\b\w+\(\)?|::")


def query_features(
    query: str,
    *,
    comparison_cues: Sequence[str],
    reasoning_cues: Sequence[str],
    count_tokens: Callable[[str], int],
) -> QueryFeatures:
    """Measure the rule router's features of one query."""
    words = set(_WORDS.findall(query.lower()))
    return QueryFeatures(
        tokens=count_tokens(query),
        questions=max(1, query.count("?")),
        clauses=1 + len(_CLAUSE_MARKS.findall(query)),
        comparison=bool(words & set(comparison_cues)),
        reasoning=bool(words & set(reasoning_cues)),
        numbers_or_code=bool(_NUMBER_OR_CODE.search(query)),
    )


def rule_points(features: QueryFeatures, long_query_tokens: int) -> float:
    """One point per difficulty signal: long, each extra question or clause, cues, numbers or code."""
    return float(
        (features.tokens >= long_query_tokens)
        + (features.questions - 1)
        + (features.clauses - 1)
        + features.comparison
        + features.reasoning
        + features.numbers_or_code
    )


@dataclass(frozen=True, kw_only=True)
class RulesRouter:
    """Thresholds on query features: more than `cutoffs[i]` points sends a query above tiers[i].

    `adequacy` is sigmoid(cutoff - points), so threshold 0.5 applies the cutoffs as written and
    any other threshold shifts every cutoff by -logit(threshold) points.
    """

    tiers: tuple[str, ...]
    cutoffs: tuple[float, ...]
    long_query_tokens: int
    comparison_cues: tuple[str, ...]
    reasoning_cues: tuple[str, ...]
    count_tokens: Callable[[str], int]
    threshold: float = 0.5

    def points(self, query: str) -> float:
        """The query's difficulty points."""
        features = query_features(
            query,
            comparison_cues=self.comparison_cues,
            reasoning_cues=self.reasoning_cues,
            count_tokens=self.count_tokens,
        )
        return rule_points(features, self.long_query_tokens)

    def adequacy(self, queries: Sequence[str]) -> np.ndarray:
        """Shape (n, tiers): the estimate that each tier (or a cheaper one) suffices."""
        points = np.array([self.points(q) for q in queries], dtype=float)
        cut = np.array([*self.cutoffs, math.inf], dtype=float)
        return _sigmoid(cut[None, :] - points[:, None])

    def route(self, query: str) -> str:
        """The cheapest tier the rules find adequate."""
        return self.tiers[int(choose_tiers(self.adequacy([query]), self.threshold)[0])]


# --------------------------------------------------------------------------- labelled sets


@dataclass(frozen=True, kw_only=True)
class LabelledSet:
    """Queries labelled with the cheapest adequate tier."""

    tiers: tuple[str, ...]  # cheapest first
    ids: tuple[str, ...]
    queries: tuple[str, ...]
    labels: tuple[str, ...]  # one of `tiers` per query

    def __post_init__(self) -> None:
        if not len(self.ids) == len(self.queries) == len(self.labels):
            raise RoutingError("ids, queries and labels must have the same length")
        for i, (qid, query, label) in enumerate(zip(self.ids, self.queries, self.labels)):
            if not query.strip():
                raise RoutingError(f"query {qid!r} (row {i + 1}) is empty; remove the row or write the query")
            if label not in self.tiers:
                raise RoutingError(
                    f"query {qid!r} (row {i + 1}) has unknown tier {label!r}; known tiers are "
                    f"{list(self.tiers)}: fix the label or list the tier in routing.tiers"
                )

    @property
    def label_index(self) -> np.ndarray:
        """The labels as tier indices (0 = cheapest)."""
        order = {t: i for i, t in enumerate(self.tiers)}
        return np.array([order[label] for label in self.labels], dtype=int)

    def fingerprint(self) -> str:
        """A content hash of tiers, queries and labels (16 hex characters)."""
        import hashlib

        blob = json.dumps([self.tiers, self.queries, self.labels], separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def subset(self, rows: Sequence[int]) -> LabelledSet:
        """The rows at the given positions."""
        return LabelledSet(
            tiers=self.tiers,
            ids=tuple(self.ids[i] for i in rows),
            queries=tuple(self.queries[i] for i in rows),
            labels=tuple(self.labels[i] for i in rows),
        )

    def split(self, test_share: float, seed: int) -> tuple[LabelledSet, LabelledSet]:
        """A stratified (train, test) split with a fixed seed."""
        if not 0.0 < test_share < 1.0:
            raise RoutingError(f"test_share={test_share} must lie strictly between 0 and 1")
        rng = np.random.default_rng(seed)
        labels = self.label_index
        test: list[int] = []
        for tier in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == tier))
            test.extend(rows[: round(len(rows) * test_share)].tolist())
        chosen = set(test)
        return self.subset([i for i in range(len(self.ids)) if i not in chosen]), self.subset(sorted(test))


def load_labels(path: str | Path, tiers: Sequence[str]) -> LabelledSet:
    """Read a labelled routing file: CSV or JSONL with `query` and `tier` (and optional `id`).

    Args:
        path: a .csv file with a header row, or a .jsonl file of objects.
        tiers: the known tiers, cheapest first (usually `RoutingConfig.tiers`).

    Raises:
        RoutingError: missing file or column, an empty query, or a tier not in `tiers`.
    """
    path = Path(path)
    if not path.is_file():
        raise RoutingError(f"labelled routing file {str(path)!r} does not exist; check the path")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise RoutingError(f"{path} is not valid JSONL: {exc}") from None
    elif path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        raise RoutingError(f"labelled routing file {str(path)!r} must end in .csv or .jsonl")
    for n, row in enumerate(rows, 1):
        missing = [c for c in ("query", "tier") if not isinstance(row, dict) or c not in row]
        if missing:
            raise RoutingError(f"{path} row {n} lacks column(s) {missing}; each row needs `query` and `tier`")
    return LabelledSet(
        tiers=tuple(tiers),
        ids=tuple(str(row.get("id") or n) for n, row in enumerate(rows, 1)),
        queries=tuple(str(row["query"]) for row in rows),
        labels=tuple(str(row["tier"]) for row in rows),
    )


def derive_demo_labels(dataset: Dataset, tiers: Sequence[str], *, gap_chars: int = 200) -> str:
    """The demo routing labels as CSV text, derived from a span-annotated set's reference spans.

    The rule (a proxy for difficulty, not a measured one): one reference span -> tiers[0]; several
    spans that all lie within `gap_chars` of each other (one place) -> tiers[1]; spans from two
    or more places further apart -> tiers[-1].

    Args:
        dataset: a span-annotated set (`load_dataset("chunking")`).
        tiers: at least three model ids, cheapest first; the middle ones past tiers[1] are unused.
        gap_chars: the largest gap between two spans of one place.

    Returns:
        CSV with columns id, query, tier, spans, places.
    """
    if len(tiers) < 3:
        raise RoutingError(f"derive_demo_labels needs three tiers or more, got {list(tiers)}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "query", "tier", "spans", "places"])
    for qid, query in dataset.queries.items():
        spans = sorted(dataset.spans.get(qid, ()), key=lambda s: (s.doc_id, s.start))
        if not spans:
            continue
        places = 1 + sum(
            b.doc_id != a.doc_id or b.start - a.end > gap_chars for a, b in zip(spans, spans[1:])
        )
        tier = tiers[0] if len(spans) == 1 else tiers[1] if places == 1 else tiers[-1]
        writer.writerow([qid, query, tier, len(spans), places])
    return out.getvalue()


def write_demo_labels(path: str | Path = DEMO_LABELS, tiers: Sequence[str] | None = None) -> Path:
    """Derive the demo labels from the bundled chunking set and write them atomically."""
    from .datasets import load_dataset

    path = Path(path)
    atomic_write_text(path, derive_demo_labels(load_dataset("chunking"), tiers or RoutingConfig().tiers))
    return path


# --------------------------------------------------------------------------- fitted routers


@dataclass
class _Classifier:
    """Logistic regression (scikit-learn) or kNN over feature rows, saved as plain arrays (no pickle).

    kNN predicts in numpy: scikit-learn's per-call overhead (~35 ms) dwarfs a single query's work.
    """

    kind: str
    n_tiers: int
    knn_k: int
    standardize: bool
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale[scale == 0] = 1.0
        if not self.standardize:
            mean, scale = np.zeros_like(mean), np.ones_like(scale)
        self.arrays = {"mean": mean, "scale": scale}
        z = (x - mean) / scale
        if self.kind == "knn":
            self.arrays |= {"x": z, "y": y}
        else:
            from sklearn.linear_model import LogisticRegression

            if len(np.unique(y)) < 2:
                raise RoutingError("the labelled set has a single tier; a classifier needs two or more")
            model = LogisticRegression(max_iter=2000).fit(z, y)
            self.arrays |= {"coef": model.coef_, "intercept": model.intercept_, "classes": model.classes_}

    def adequacy(self, x: np.ndarray) -> np.ndarray:
        a = self.arrays
        z = (x - a["mean"]) / a["scale"]
        full = np.zeros((len(x), self.n_tiers))
        if self.kind == "knn":
            k = min(self.knn_k, len(a["y"]))
            dist = (a["x"] ** 2).sum(axis=1)[None, :] - 2 * z @ a["x"].T  # + |z|^2, same per row
            nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
            for row, idx in enumerate(nearest):
                full[row] = np.bincount(a["y"][idx], minlength=self.n_tiers) / k
        else:
            logits = z @ a["coef"].T + a["intercept"]
            if logits.shape[1] == 1:  # scikit-learn's binary case: one logit for classes[1]
                logits = np.hstack([np.zeros_like(logits), logits])
            proba = np.exp(logits - logits.max(axis=1, keepdims=True))
            full[:, a["classes"].astype(int)] = proba / proba.sum(axis=1, keepdims=True)
        return np.cumsum(full, axis=1)


class _FittedRouter:
    """Shared fit / adequacy / route / save / load of the learned and retrieval-aware routers."""

    KIND = ""
    _FIX = ""  # how to resolve a mismatch between a saved router and what loads it

    def __init__(
        self, *, tiers: Sequence[str], classifier: str, knn_k: int, threshold: float, standardize: bool
    ) -> None:
        if classifier not in ("logistic", "knn"):
            raise RoutingError(f"unknown classifier {classifier!r}; choose one of ['knn', 'logistic']")
        self.tiers = tuple(tiers)
        self.threshold = threshold
        self.labels_hash = ""
        self._classifier = _Classifier(kind=classifier, n_tiers=len(self.tiers), knn_k=knn_k, standardize=standardize)

    def features(self, queries: Sequence[str]) -> np.ndarray:
        """Shape (n, features): what the classifier sees."""
        raise NotImplementedError

    def _identity(self) -> dict[str, Any]:
        """What a loaded router must match: the source of its features."""
        raise NotImplementedError

    def fit(self, labelled: LabelledSet) -> _FittedRouter:
        """Train on queries labelled with their cheapest adequate tier; returns self.

        Raises:
            RoutingError: the set's tiers differ from the router's.
        """
        if labelled.tiers != self.tiers:
            raise RoutingError(
                f"labelled set has tiers {list(labelled.tiers)} but the router has {list(self.tiers)}; "
                "load the labels with the router's tiers"
            )
        self._classifier.fit(self.features(labelled.queries), labelled.label_index)
        self.labels_hash = labelled.fingerprint()
        return self

    def adequacy(self, queries: Sequence[str]) -> np.ndarray:
        """Shape (n, tiers): the estimated P(tier t or a cheaper one suffices).

        Raises:
            RoutingError: the router has not been fitted or loaded.
        """
        if not self._classifier.arrays:
            raise RoutingError(f"this {type(self).__name__} is not trained; call fit(labelled) or load(path)")
        return self._classifier.adequacy(self.features(queries))

    def route(self, query: str) -> str:
        """The cheapest tier whose adequacy estimate reaches `threshold`."""
        return self.tiers[int(choose_tiers(self.adequacy([query]), self.threshold)[0])]

    def save(self, path: str | Path) -> Path:
        """Write the trained router (arrays and a JSON header, no pickle) atomically to `path` (.npz)."""
        import sklearn

        if not self._classifier.arrays:
            raise RoutingError(f"this {type(self).__name__} is not trained; call fit(labelled) before save")
        meta = {
            "format": _FORMAT,
            "kind": self.KIND,
            "tiers": list(self.tiers),
            "classifier": self._classifier.kind,
            "knn_k": self._classifier.knn_k,
            "labels_hash": self.labels_hash,
            "sklearn": sklearn.__version__,
            **self._identity(),
        }
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)), **self._classifier.arrays)
        path = Path(path)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def _restore(self, path: str | Path) -> _FittedRouter:
        path = Path(path)
        if not path.is_file():
            raise RoutingError(
                f"no saved router at {str(path)!r}; train one with {type(self).__name__}(...).fit(labels) "
                "and .save(path), then set routing.path to it"
            )
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {k: data[k] for k in data.files if k != "meta"}
        except (ValueError, OSError, KeyError) as exc:
            raise RoutingError(f"{str(path)!r} is not a saved router ({exc}); save one with .save(path)") from None
        if meta.get("format") != _FORMAT or meta.get("kind") != self.KIND:
            raise RoutingError(
                f"{str(path)!r} holds a {meta.get('kind')!r} router (format {meta.get('format')}), not a "
                f"{self.KIND!r} one (format {_FORMAT}); set routing.kind to match or refit and save"
            )
        if tuple(meta["tiers"]) != self.tiers:
            raise RoutingError(
                f"router {str(path)!r} was trained for tiers {meta['tiers']} but routing.tiers is "
                f"{list(self.tiers)}; set routing.tiers to match or refit with the new tiers"
            )
        for key, value in self._identity().items():
            if meta.get(key) != value:
                raise RoutingError(
                    f"router {str(path)!r} was trained with {key}={meta.get(key)!r} but is being loaded "
                    f"with {key}={value!r}; {self._FIX}"
                )
        self._classifier = _Classifier(
            kind=meta["classifier"], n_tiers=len(self.tiers), knn_k=meta["knn_k"],
            standardize=self._classifier.standardize,
        )
        self._classifier.arrays = arrays
        self.labels_hash = meta["labels_hash"]
        return self


class LearnedRouter(_FittedRouter):
    """A classifier (logistic regression or kNN) on query embeddings.

    A saved router records the embedding model it was trained with; loading it with another
    embedder is an error: set `embedding.model` to the recorded one, or refit.
    """

    KIND = "learned"
    _FIX = (
        "set embedding.model to the model it was trained with, or refit the router with this "
        "embedder and save it again"
    )

    def __init__(
        self,
        *,
        tiers: Sequence[str],
        embedder: Embedder,
        classifier: str = "logistic",
        knn_k: int = 15,
        threshold: float = 0.5,
    ) -> None:
        # raw embeddings: rescaling each dimension would distort the cosine geometry kNN relies on
        super().__init__(tiers=tiers, classifier=classifier, knn_k=knn_k, threshold=threshold, standardize=False)
        self.embedder = embedder

    @classmethod
    def from_config(cls, config: RoutingConfig, embedder: Embedder) -> LearnedRouter:
        """An untrained router with the config's tiers, classifier, knn_k and threshold."""
        return cls(tiers=config.tiers, embedder=embedder, classifier=config.classifier,
                   knn_k=config.knn_k, threshold=config.threshold)

    def features(self, queries: Sequence[str]) -> np.ndarray:
        """The queries' embeddings (through the embedding cache)."""
        return self.embedder.embed(list(queries)).astype(float)

    def _identity(self) -> dict[str, Any]:
        return {"embedding_model": self.embedder.model_id}

    @classmethod
    def load(cls, path: str | Path, *, tiers: Sequence[str], embedder: Embedder, threshold: float = 0.5) -> LearnedRouter:
        """A router saved by `save`.

        Raises:
            RoutingError: no such file, another kind of router, other tiers, or another embedding model.
        """
        router = cls(tiers=tiers, embedder=embedder, threshold=threshold)
        router._restore(path)
        return router


RETRIEVAL_FEATURES = ("top_score", "margin", "mean_score", "distinct_documents", "distinct_places")


def retrieval_features(hits: Sequence[Hit], place_gap_chars: int) -> tuple[float, ...]:
    """Signals of how concentrated a query's evidence is, in the order of `RETRIEVAL_FEATURES`.

    Args:
        hits: the retriever's hits, best first.
        place_gap_chars: hits of one document whose starts lie further apart than this count as
            different places.

    Returns:
        top score, top-1 minus top-2 score, mean score, distinct documents, distinct places.
    """
    if not hits:
        return (0.0, 0.0, 0.0, 0.0, 0.0)
    scores = [h.score for h in hits]
    starts = sorted((h.chunk.doc_id, h.chunk.start) for h in hits)
    places = 1 + sum(
        b[0] != a[0] or b[1] - a[1] > place_gap_chars for a, b in zip(starts, starts[1:])
    )
    return (
        float(scores[0]),
        float(scores[0] - scores[1]) if len(scores) > 1 else 0.0,
        float(np.mean(scores)),
        float(len({h.chunk.doc_id for h in hits})),
        float(places),
    )


class RetrievalRouter(_FittedRouter):
    """A classifier on retrieval signals: scattered or weak evidence suggests a harder query.

    It is built with the pipeline's retriever and runs one retrieval per decision (a pipeline
    that already retrieved can share the hits through a caching retriever). A saved router
    records the retriever's class and `k`; loading with another is an error.
    """

    KIND = "retrieval"
    _FIX = (
        "load it with the retriever kind, routing.retrieval_k and routing.place_gap_chars it was "
        "trained with, or refit the router and save it again"
    )

    def __init__(
        self,
        *,
        tiers: Sequence[str],
        retriever: Retriever,
        k: int = 10,
        place_gap_chars: int = 2000,
        classifier: str = "logistic",
        knn_k: int = 15,
        threshold: float = 0.5,
    ) -> None:
        # retrieval signals live on unrelated scales (scores, counts): standardise them
        super().__init__(tiers=tiers, classifier=classifier, knn_k=knn_k, threshold=threshold, standardize=True)
        self.retriever = retriever
        self.k = k
        self.place_gap_chars = place_gap_chars

    @classmethod
    def from_config(cls, config: RoutingConfig, retriever: Retriever) -> RetrievalRouter:
        """An untrained router with the config's tiers, retrieval_k, place_gap_chars, classifier and threshold."""
        return cls(tiers=config.tiers, retriever=retriever, k=config.retrieval_k,
                   place_gap_chars=config.place_gap_chars, classifier=config.classifier,
                   knn_k=config.knn_k, threshold=config.threshold)

    def features(self, queries: Sequence[str]) -> np.ndarray:
        """One row of `RETRIEVAL_FEATURES` per query."""
        return np.array(
            [retrieval_features(self.retriever.retrieve(q, self.k), self.place_gap_chars) for q in queries],
            dtype=float,
        ).reshape(len(queries), len(RETRIEVAL_FEATURES))

    def _identity(self) -> dict[str, Any]:
        return {
            "retriever": type(self.retriever).__name__,
            "retrieval_k": self.k,
            "place_gap_chars": self.place_gap_chars,
        }

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        tiers: Sequence[str],
        retriever: Retriever,
        k: int = 10,
        place_gap_chars: int = 2000,
        threshold: float = 0.5,
    ) -> RetrievalRouter:
        """A router saved by `save`.

        Raises:
            RoutingError: no such file, another kind of router, other tiers, or another retriever or k.
        """
        router = cls(tiers=tiers, retriever=retriever, k=k, place_gap_chars=place_gap_chars, threshold=threshold)
        router._restore(path)
        return router


def cross_validated_adequacy(
    make: Callable[[], _FittedRouter], labelled: LabelledSet, *, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Out-of-fold adequacy estimates: each query scored by a router not trained on it.

    Pick a threshold on these (with `sweep_thresholds(...).operating_point`) rather than on the
    data you report, so the chosen operating point is not fitted to the test set.

    Args:
        make: builds a fresh, untrained router.
        labelled: the training set.
        folds: number of folds (at least 2).
        seed: fixes the fold assignment.

    Returns:
        shape (len(labelled.ids), tiers).
    """
    if not 2 <= folds <= len(labelled.ids):
        raise RoutingError(f"folds={folds} must lie between 2 and the number of labelled queries")
    fold = np.random.default_rng(seed).permutation(len(labelled.ids)) % folds
    out = np.zeros((len(labelled.ids), len(labelled.tiers)))
    for f in range(folds):
        held = np.flatnonzero(fold == f)
        router = make().fit(labelled.subset(np.flatnonzero(fold != f).tolist()))
        out[held] = router.adequacy([labelled.queries[i] for i in held])
    return out


# --------------------------------------------------------------------------- cascade


@dataclass(frozen=True, kw_only=True)
class CascadeOutcome:
    """What a cascade did for one query: every answer it paid for, cheapest first."""

    model: str
    attempts: tuple[Answer, ...]
    confidences: tuple[float, ...]

    @property
    def answer(self) -> Answer:
        """The kept answer (the last attempt)."""
        return self.attempts[-1]

    @property
    def cost_usd(self) -> float:
        """USD of every call, the discarded ones included."""
        return sum(a.usage.cost_usd for a in self.attempts)

    @property
    def wasted_usd(self) -> float:
        """USD of the calls whose answers were discarded."""
        return sum(a.usage.cost_usd for a in self.attempts[:-1])


@dataclass(frozen=True, kw_only=True)
class CascadeRouter:
    """Answer with the cheapest tier; escalate while the judge scores the answer below `threshold`.

    `answer(query, model)` produces an `Answer` (its usage carries the cost); `judge(query,
    answer)` scores it in [0, 1], e.g. groundedness in the retrieved context or the model's
    stated confidence. Use `run` to keep the final answer; `route` alone discards it.
    """

    tiers: tuple[str, ...]
    answer: Callable[[str, str], Answer]
    judge: Callable[[str, Answer], float]
    threshold: float = 0.5

    def run(self, query: str) -> CascadeOutcome:
        """Try tiers cheapest first until an answer is confident enough (or the strongest answers)."""
        attempts: list[Answer] = []
        confidences: list[float] = []
        for model in self.tiers:
            attempts.append(self.answer(query, model))
            confidences.append(float(self.judge(query, attempts[-1])))
            if confidences[-1] >= self.threshold:
                break
        return CascadeOutcome(model=model, attempts=tuple(attempts), confidences=tuple(confidences))

    def route(self, query: str) -> str:
        """The tier whose answer the cascade keeps."""
        return self.run(query).model


# --------------------------------------------------------------------------- factory


@dataclass(frozen=True, kw_only=True)
class _Resources:
    embedder: Embedder | None
    retriever: Retriever | None
    answer: Callable[[str, str], Answer] | None
    judge: Callable[[str, Answer], float] | None
    count_tokens: Callable[[str], int] | None


def _fixed(config: RoutingConfig, r: _Resources) -> Router:
    return FixedRouter(model=config.model)


def _rules(config: RoutingConfig, r: _Resources) -> Router:
    if r.count_tokens is None:
        from .costs import estimate_tokens

        count_tokens: Callable[[str], int] = estimate_tokens
    else:
        count_tokens = r.count_tokens
    return RulesRouter(
        tiers=config.tiers,
        cutoffs=config.rule_cutoffs,
        long_query_tokens=config.long_query_tokens,
        comparison_cues=config.comparison_cues,
        reasoning_cues=config.reasoning_cues,
        count_tokens=count_tokens,
        threshold=config.threshold,
    )


def _need_path(config: RoutingConfig, cls: str) -> str:
    if not config.path:
        raise RoutingError(
            f"routing.kind={config.kind!r} needs routing.path, a router saved with "
            f"{cls}(...).fit(load_labels(...)).save(path)"
        )
    return config.path


def _learned(config: RoutingConfig, r: _Resources) -> Router:
    from .embedding import load_embedder

    path = _need_path(config, "LearnedRouter")
    embedder = r.embedder if r.embedder is not None else load_embedder()
    return LearnedRouter.load(path, tiers=config.tiers, embedder=embedder, threshold=config.threshold)


def _retrieval(config: RoutingConfig, r: _Resources) -> Router:
    if r.retriever is None:
        raise RoutingError("routing.kind='retrieval' needs a retriever: make_router(config, retriever=...)")
    return RetrievalRouter.load(
        _need_path(config, "RetrievalRouter"),
        tiers=config.tiers,
        retriever=r.retriever,
        k=config.retrieval_k,
        place_gap_chars=config.place_gap_chars,
        threshold=config.threshold,
    )


def _cascade(config: RoutingConfig, r: _Resources) -> Router:
    if r.answer is None or r.judge is None:
        raise RoutingError(
            "routing.kind='cascade' needs answer(query, model) -> Answer and judge(query, answer) -> "
            "float: make_router(config, answer=..., judge=...)"
        )
    return CascadeRouter(tiers=config.tiers, answer=r.answer, judge=r.judge, threshold=config.threshold)


ROUTERS: dict[str, Callable[[RoutingConfig, _Resources], Router]] = {
    "fixed": _fixed,
    "rules": _rules,
    "learned": _learned,
    "retrieval": _retrieval,
    "cascade": _cascade,
}


def make_router(
    config: RoutingConfig,
    *,
    prices: Mapping[str, ModelPrice] | None = None,
    embedder: Embedder | None = None,
    retriever: Retriever | None = None,
    answer: Callable[[str, str], Answer] | None = None,
    judge: Callable[[str, Answer], float] | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> Router:
    """Build the router `config.kind` names.

    Args:
        config: the routing config.
        prices: the price table; defaults to `workbench.costs.load_prices()`.
        embedder: for "learned" (defaults to the default embedder).
        retriever: for "retrieval".
        answer, judge: for "cascade".
        count_tokens: for "rules" (defaults to `workbench.costs.estimate_tokens`).

    Raises:
        RoutingError: an unknown kind (lists the known ones), a model missing from the price
            table, or a missing resource or saved router.
    """
    factory = ROUTERS.get(config.kind)
    if factory is None:
        raise RoutingError(f"unknown router {config.kind!r}; choose one of {sorted(ROUTERS)}")
    check_models([config.model] if config.kind == "fixed" else config.tiers, prices)
    return factory(config, _Resources(embedder=embedder, retriever=retriever, answer=answer, judge=judge,
                                      count_tokens=count_tokens))


# --------------------------------------------------------------------------- evaluation


def tier_quality(labels: Sequence[int], n_tiers: int, *, below: float = 0.5) -> np.ndarray:
    """Per-query quality of each tier, from labels of the cheapest adequate tier.

    A tier at or above the label scores 1; each tier short of it multiplies by `below`
    (so 0.5, 0.25, ... by default). A stated proxy, not a measurement.

    Returns:
        shape (n, n_tiers).
    """
    if not 0.0 <= below < 1.0:
        raise RoutingError(f"below={below} must lie in [0, 1)")
    labels = np.asarray(labels, dtype=int)
    short = np.clip(labels[:, None] - np.arange(n_tiers)[None, :], 0, None)
    return below**short


def adequate_tiers(quality: np.ndarray, *, tolerance: float = 0.0) -> np.ndarray:
    """The cheapest tier per query whose quality is within `tolerance` of the query's best."""
    quality = np.asarray(quality, dtype=float)
    return (quality >= quality.max(axis=1, keepdims=True) - tolerance - 1e-12).argmax(axis=1)


def measure_tier_quality(
    queries: Sequence[str],
    tiers: Sequence[str],
    answer: Callable[[str, str], Answer],
    score: Callable[[str, Answer], float],
) -> np.ndarray:
    """Run every tier on every query and score the answers (e.g. with an API key set).

    Returns:
        shape (len(queries), len(tiers)): score(query, answer(query, tier)).
    """
    return np.array([[float(score(q, answer(q, t))) for t in tiers] for q in queries]).reshape(
        len(queries), len(tiers)
    )


def tier_costs(
    queries: Sequence[str],
    tiers: Sequence[str],
    *,
    prices: Mapping[str, ModelPrice] | None = None,
    context_tokens: int = 1500,
    output_tokens: int = 300,
    count_tokens: Callable[[str], int] | None = None,
) -> np.ndarray:
    """USD of one call per query and tier: the query plus `context_tokens` in, `output_tokens` out.

    Returns:
        shape (len(queries), len(tiers)).

    Raises:
        RoutingError: a tier is missing from the price table.
    """
    from .costs import estimate_tokens, load_prices

    prices = load_prices() if prices is None else prices
    check_models(tiers, prices)
    count = count_tokens or estimate_tokens
    tokens_in = np.array([count(q) + context_tokens for q in queries], dtype=float)
    rate_in = np.array([prices[t].input for t in tiers]) / 1e6
    rate_out = np.array([prices[t].output for t in tiers]) / 1e6
    return tokens_in[:, None] * rate_in[None, :] + output_tokens * rate_out[None, :]


@dataclass(frozen=True, kw_only=True)
class RoutingEvaluation:
    """A router's choices on a labelled set, against always-the-strongest and random routing.

    `random_*` is RouteLLM's baseline: each query goes to the strongest tier with the
    probability that makes the expected cost equal the router's, else to the cheapest.
    """

    tiers: tuple[str, ...]
    threshold: float | None
    n: int
    accuracy: float
    confusion: tuple[tuple[int, ...], ...]  # rows: label tier, columns: chosen tier
    tier_shares: tuple[float, ...]
    under_routed: float  # share sent below its label (quality lost)
    over_routed: float  # share sent above its label (money wasted)
    cost_usd: float
    strongest_cost_usd: float
    quality: float
    strongest_quality: float
    cheapest_quality: float
    random_quality: float

    @property
    def cost_share(self) -> float:
        """Router cost over always-the-strongest cost."""
        return self.cost_usd / self.strongest_cost_usd

    @property
    def cost_reduction(self) -> float:
        """1 - cost_share."""
        return 1.0 - self.cost_share

    @property
    def quality_retained(self) -> float:
        """Router quality over always-the-strongest quality."""
        return self.quality / self.strongest_quality

    @property
    def random_quality_retained(self) -> float:
        """Random routing's quality at the same cost, over the strongest's."""
        return self.random_quality / self.strongest_quality

    @property
    def gap_recovered(self) -> float:
        """RouteLLM's PGR: share of the cheapest-to-strongest quality gap the router recovers."""
        gap = self.strongest_quality - self.cheapest_quality
        return (self.quality - self.cheapest_quality) / gap if gap else 1.0

    def summary(self) -> str:
        """The headline: X% cost reduction at Y% of top-model quality, with the random baseline."""
        return (
            f"{100 * self.cost_reduction:.1f}% cost reduction at {100 * self.quality_retained:.1f}% of "
            f"top-model quality (random routing at the same cost: {100 * self.random_quality_retained:.1f}%)"
        )

    def to_frame(self) -> pd.DataFrame:
        """One row of the headline numbers."""
        import pandas as pd

        row: dict[str, Any] = {
            "threshold": self.threshold,
            "n": self.n,
            "accuracy": self.accuracy,
            "cost_usd": self.cost_usd,
            "cost_share": self.cost_share,
            "cost_reduction": self.cost_reduction,
            "quality": self.quality,
            "quality_retained": self.quality_retained,
            "gap_recovered": self.gap_recovered,
            "random_quality_retained": self.random_quality_retained,
            "under_routed": self.under_routed,
            "over_routed": self.over_routed,
        }
        row |= {f"share:{t}": s for t, s in zip(self.tiers, self.tier_shares)}
        return pd.DataFrame([row])

    def confusion_frame(self) -> pd.DataFrame:
        """The confusion matrix: rows are label tiers, columns chosen tiers."""
        import pandas as pd

        return pd.DataFrame(
            self.confusion,
            index=pd.Index(self.tiers, name="label"),
            columns=pd.Index(self.tiers, name="chosen"),
        )


def evaluate_routing(
    choices: Sequence[int],
    quality: np.ndarray,
    cost: np.ndarray,
    *,
    tiers: Sequence[str],
    labels: Sequence[int] | None = None,
    spent: Sequence[float] | None = None,
    threshold: float | None = None,
) -> RoutingEvaluation:
    """Score one set of routing choices.

    Args:
        choices: the chosen tier index per query.
        quality: shape (n, tiers); per-query quality of each tier.
        cost: shape (n, tiers); USD of one call per query and tier.
        tiers: the model ids, cheapest first.
        labels: the cheapest adequate tier per query; defaults to `adequate_tiers(quality)`.
        spent: USD actually spent per query (a cascade's discarded calls included); defaults
            to the cost of the chosen tier.
        threshold: recorded with the result.

    Raises:
        RoutingError: shapes that do not match.
    """
    quality, cost = np.asarray(quality, dtype=float), np.asarray(cost, dtype=float)
    choices = np.asarray(choices, dtype=int)
    n, n_tiers = quality.shape
    if cost.shape != quality.shape or choices.shape != (n,) or len(tiers) != n_tiers or n == 0:
        raise RoutingError(
            f"shapes do not match: choices {choices.shape}, quality {quality.shape}, cost {cost.shape}, "
            f"{len(tiers)} tiers; pass one row per query and one column per tier"
        )
    labels = adequate_tiers(quality) if labels is None else np.asarray(labels, dtype=int)
    rows = np.arange(n)
    total = float(np.sum(spent)) if spent is not None else float(cost[rows, choices].sum())
    cheap_cost, strong_cost = float(cost[:, 0].sum()), float(cost[:, -1].sum())
    cheap_q, strong_q = float(quality[:, 0].mean()), float(quality[:, -1].mean())
    p = float(np.clip((total - cheap_cost) / (strong_cost - cheap_cost), 0, 1)) if strong_cost > cheap_cost else 1.0
    confusion = np.zeros((n_tiers, n_tiers), dtype=int)
    np.add.at(confusion, (labels, choices), 1)
    return RoutingEvaluation(
        tiers=tuple(tiers),
        threshold=threshold,
        n=n,
        accuracy=float(np.mean(choices == labels)),
        confusion=tuple(tuple(int(c) for c in row) for row in confusion),
        tier_shares=tuple(float(s) for s in np.bincount(choices, minlength=n_tiers) / n),
        under_routed=float(np.mean(choices < labels)),
        over_routed=float(np.mean(choices > labels)),
        cost_usd=total,
        strongest_cost_usd=strong_cost,
        quality=float(quality[rows, choices].mean()),
        strongest_quality=strong_q,
        cheapest_quality=cheap_q,
        random_quality=(1 - p) * cheap_q + p * strong_q,
    )


@dataclass(frozen=True, kw_only=True)
class CostQualityCurve:
    """A router evaluated at each threshold of a sweep."""

    points: tuple[RoutingEvaluation, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row per threshold."""
        import pandas as pd

        return pd.concat([p.to_frame() for p in self.points], ignore_index=True)

    def operating_point(self, min_quality_retained: float = 0.95) -> RoutingEvaluation:
        """The cheapest point keeping at least `min_quality_retained` of top-model quality.

        Raises:
            RoutingError: no point keeps that much; lower the target or sweep higher thresholds.
        """
        ok = [p for p in self.points if p.quality_retained >= min_quality_retained - 1e-12]
        if not ok:
            best = max(p.quality_retained for p in self.points)
            raise RoutingError(
                f"no threshold keeps {min_quality_retained:.0%} of top-model quality (best: {best:.1%}); "
                "lower the target or include threshold 1.0 in the sweep"
            )
        return min(ok, key=lambda p: (p.cost_usd, -p.quality))


def sweep_thresholds(
    scores: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    *,
    tiers: Sequence[str],
    labels: Sequence[int] | None = None,
    thresholds: Sequence[float] | None = None,
    cascade: bool = False,
) -> CostQualityCurve:
    """The cost-quality curve of a router over thresholds.

    Args:
        scores: shape (n, tiers); adequacy estimates (a scoring router's `adequacy`), or with
            `cascade=True` the judge's confidence in each tier's answer.
        quality, cost, tiers, labels: as in `evaluate_routing`.
        thresholds: the thresholds to try; by default 0, 1 and the distinct score values (at
            most 201 of them, by quantile), which traces the whole curve.
        cascade: count the calls a cascade escalates from as spent.
    """
    if thresholds is None:
        distinct = np.unique(np.clip(np.asarray(scores, dtype=float)[:, :-1], 0.0, 1.0))
        if len(distinct) > 199:
            distinct = np.quantile(distinct, np.linspace(0.0, 1.0, 199))
        thresholds = np.unique(np.concatenate([[0.0, 1.0], distinct]))
    points = []
    for threshold in thresholds:
        if cascade:
            choices, spent = cascade_tiers(scores, threshold, cost)
        else:
            choices, spent = choose_tiers(scores, threshold), None
        points.append(
            evaluate_routing(choices, quality, cost, tiers=tiers, labels=labels, spent=spent, threshold=float(threshold))
        )
    return CostQualityCurve(points=tuple(points))
