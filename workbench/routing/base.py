"""What every router shares: the `Router` protocol, the error type, the price-table check, tier choice."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..prices import load_prices
from ..validation import shorten

if TYPE_CHECKING:
    from ..prices import ModelPrice

__all__ = ["RoutingError", "Router", "check_models", "choose_tiers"]


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
        prices = load_prices()
    missing = [m for m in models if m not in prices]
    if missing:
        raise RoutingError(
            f"model(s) {shorten(missing)} are not in the price table; known models are {sorted(prices)}. "
            "Fix routing.tiers / generation.model, or add the model to a copy of data/prices.toml "
            "and point WORKBENCH_PRICES at it"
        )


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
