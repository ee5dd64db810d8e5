"""Routers that need no training: a fixed model, rules on query features, and the escalating cascade."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..types import Answer
from .base import RoutingError, choose_tiers

if TYPE_CHECKING:
    from ..config import RoutingConfig
    from ..resources import Resources

__all__ = [
    "FixedRouter",
    "QueryFeatures",
    "query_features",
    "rule_points",
    "RulesRouter",
    "CascadeOutcome",
    "CascadeRouter",
]


# --------------------------------------------------------------------------- fixed and rules


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True, kw_only=True)
class FixedRouter:
    """Always the same model."""

    model: str

    @classmethod
    def from_config(cls, config: RoutingConfig, resources: Resources) -> FixedRouter:
        """Always `resources.model`, the answering model (`generation.model`)."""
        return cls(model=resources.model)

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

    @classmethod
    def from_config(cls, config: RoutingConfig, resources: Resources) -> RulesRouter:
        """Rules from `config` (tiers, cutoffs, cues, threshold), counting with `resources.load_count_tokens()`."""
        return cls(
            tiers=config.tiers,
            cutoffs=config.rule_cutoffs,
            long_query_tokens=config.long_query_tokens,
            comparison_cues=config.comparison_cues,
            reasoning_cues=config.reasoning_cues,
            count_tokens=resources.load_count_tokens(),
            threshold=config.threshold,
        )

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

    @classmethod
    def from_config(cls, config: RoutingConfig, resources: Resources) -> CascadeRouter:
        """A cascade over `config.tiers` with `resources.answer` and `resources.judge`.

        Raises:
            RoutingError: either callable is missing.
        """
        if resources.answer is None or resources.judge is None:
            raise RoutingError(
                "routing.kind='cascade' needs answer(query, model) -> Answer and judge(query, answer) -> "
                "float: make_router(config, answer=..., judge=...)"
            )
        return cls(tiers=config.tiers, answer=resources.answer, judge=resources.judge, threshold=config.threshold)

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
