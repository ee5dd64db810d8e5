"""What every retriever shares: the protocol, metadata filters and the top-k cut."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ..types import Chunk, Hit

__all__ = ["Filter", "Retriever", "OPERATORS", "compile_filter", "filter_mask", "top_k", "check_k", "check_chunks", "ranked_hits"]

Filter = Mapping[str, Any]
"""Chunk-metadata conditions, AND-ed: `{"field": value}`, `{"field": {"in": [...]}}`,
`{"field": {"gte" | "gt" | "lte" | "lt": number or date}}`."""


class Retriever(Protocol):
    """Finds the k chunks that best answer each query, optionally among those matching a filter.

    Built by `Kind.from_config(config: RetrievalConfig, resources: Resources)` over
    `resources.chunks`. Each of ours also has `retrieve(query, k, where)`, the same for one query.
    `vectors`, when given, are the queries' embeddings (rows in order), which the caller already
    computed: a retriever that embeds queries uses them instead; one that does not ignores them.
    """

    def retrieve_many(
        self, queries: Sequence[str], k: int, where: Filter | None = None, *, vectors: np.ndarray | None = None
    ) -> list[list[Hit]]:
        """For each query, its k best hits (fewer when fewer chunks pass `where`), ranked 1..k."""
        ...


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


def check_k(k: int) -> None:
    """Raise ValueError unless k is a positive integer."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def check_chunks(chunks: Sequence[Chunk]) -> None:
    """Raise ValueError for an empty chunk list or duplicate chunk ids."""
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


def ranked_hits(chunks: Sequence[Chunk], indices: Sequence[int], scores: Sequence[float]) -> list[Hit]:
    """Hits for `chunks[i]` with the given scores, ranked 1, 2, ... in the given order."""
    # Plain Python ints and floats: iterating numpy arrays element by element is slow.
    pairs = zip(np.asarray(indices).tolist(), np.asarray(scores, dtype=np.float64).tolist())
    return [Hit(chunk=chunks[i], score=s, rank=r) for r, (i, s) in enumerate(pairs, 1)]

