"""Routers trained on labelled queries: a classifier on query embeddings or on retrieval signals."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import RoutingConfig
from ..io import atomic_write_bytes
from ..types import Hit
from .base import RoutingError, choose_tiers
from .labels import LabelledSet

if TYPE_CHECKING:
    from ..embedding import Embedder
    from ..resources import Resources
    from ..retrieval import Retriever

__all__ = [
    "LearnedRouter",
    "RETRIEVAL_FEATURES",
    "retrieval_features",
    "RetrievalRouter",
    "cross_validated_adequacy",
]

_FORMAT = 1  # version of the saved-router file layout


def _need_path(config: RoutingConfig, cls: str) -> str:
    if not config.path:
        raise RoutingError(
            f"routing.kind={config.kind!r} needs routing.path, a router saved with "
            f"{cls}.untrained(config, resources).fit(load_labels(...)).save(path)"
        )
    return config.path


def _need_retriever(resources: Resources) -> Retriever:
    if resources.retriever is None:
        raise RoutingError("routing.kind='retrieval' needs a retriever: make_router(config, retriever=...)")
    return resources.retriever


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
    def untrained(cls, config: RoutingConfig, resources: Resources) -> LearnedRouter:
        """A router to `fit`, with the config's tiers, classifier, knn_k and threshold."""
        return cls(tiers=config.tiers, embedder=resources.load_embedder(), classifier=config.classifier,
                   knn_k=config.knn_k, threshold=config.threshold)

    @classmethod
    def from_config(cls, config: RoutingConfig, resources: Resources) -> LearnedRouter:
        """The router saved at `routing.path`, over `resources.load_embedder()`.

        Raises:
            RoutingError: no `routing.path`, or a saved router that does not match (see `load`).
        """
        return cls.load(_need_path(config, cls.__name__), tiers=config.tiers, embedder=resources.load_embedder(),
                        threshold=config.threshold)

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
    def untrained(cls, config: RoutingConfig, resources: Resources) -> RetrievalRouter:
        """A router to `fit` over `resources.retriever`, with the config's tiers, retrieval_k,
        place_gap_chars, classifier and threshold."""
        return cls(tiers=config.tiers, retriever=_need_retriever(resources), k=config.retrieval_k,
                   place_gap_chars=config.place_gap_chars, classifier=config.classifier,
                   knn_k=config.knn_k, threshold=config.threshold)

    @classmethod
    def from_config(cls, config: RoutingConfig, resources: Resources) -> RetrievalRouter:
        """The router saved at `routing.path`, over `resources.retriever`.

        Raises:
            RoutingError: no retriever, no `routing.path`, or a saved router that does not match.
        """
        retriever = _need_retriever(resources)
        return cls.load(_need_path(config, cls.__name__), tiers=config.tiers, retriever=retriever,
                        k=config.retrieval_k, place_gap_chars=config.place_gap_chars, threshold=config.threshold)

    def features(self, queries: Sequence[str]) -> np.ndarray:
        """One row of `RETRIEVAL_FEATURES` per query."""
        return np.array(
            [retrieval_features(hits, self.place_gap_chars) for hits in self.retriever.retrieve_many(queries, self.k)],
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
