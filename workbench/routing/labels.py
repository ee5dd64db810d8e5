"""Labelled routing sets (queries tagged with their cheapest adequate tier) and the bundled demo labels."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import RoutingConfig
from ..io import DATA_DIR, atomic_write_text
from .base import RoutingError

if TYPE_CHECKING:
    from ..datasets import Dataset

__all__ = ["LabelledSet", "load_labels", "DEMO_LABELS", "derive_demo_labels", "write_demo_labels"]

DEMO_LABELS = DATA_DIR / "routing" / "chunking_labels.csv"


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
    from ..datasets import load_dataset

    path = Path(path)
    atomic_write_text(path, derive_demo_labels(load_dataset("chunking"), tiers or RoutingConfig().tiers))
    return path
