"""One query's hits and reference spans as tables, with the matching characters highlighted."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from ..datasets import Dataset
    from ..results import QueryRow
    from ..types import Chunk

__all__ = ["highlight_html", "hit_frame", "relevant_frame"]

def highlight_html(text: str, offset: int, spans: Sequence[tuple[int, int]]) -> str:
    """`text` (which starts at character `offset` of its document) as HTML, with `spans` marked.

    Args:
        text: a chunk's text.
        offset: where the chunk starts in its document.
        spans: (start, end) character ranges in the same document; parts outside the chunk
            are ignored, overlapping ones merged.

    Returns:
        Escaped text with each covered part wrapped in <mark>.
    """
    cuts = sorted((max(s, offset) - offset, min(e, offset + len(text)) - offset) for s, e in spans
                  if s < offset + len(text) and e > offset)
    merged: list[list[int]] = []
    for s, e in cuts:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    parts, pos = [], 0
    for s, e in merged:
        parts.append(html.escape(text[pos:s]))
        parts.append(f"<mark>{html.escape(text[s:e])}</mark>")
        pos = e
    parts.append(html.escape(text[pos:]))
    return "".join(parts)


def hit_frame(row: QueryRow, chunks: Mapping[str, Chunk], dataset: Dataset, *, k: int = 5) -> pd.DataFrame:
    """The top `k` hits of one query, for the drill-down.

    Returns:
        Columns rank, score, doc_id, grade (the document's relevance, 0 if unjudged),
        reference_chars (characters of reference spans inside the chunk), chunk_id, html
        (the chunk's text with reference spans marked).

    Raises:
        KeyError: a chunk id of the row is not in `chunks` (the chunks of another config).
    """
    import pandas as pd

    relevance = dataset.qrels.get(row.query_id, {})
    spans = dataset.spans.get(row.query_id, ())
    records = []
    for rank, (chunk_id, score) in enumerate(zip(row.chunk_ids[:k], row.scores[:k]), 1):
        chunk = chunks[chunk_id]
        mine = [(s.start, s.end) for s in spans if s.doc_id == chunk.doc_id]
        covered = sum(max(0, min(e, chunk.end) - max(s, chunk.start)) for s, e in mine)
        records.append({
            "rank": rank, "score": score, "doc_id": chunk.doc_id, "grade": relevance.get(chunk.doc_id, 0),
            "reference_chars": covered, "chunk_id": chunk_id,
            "html": highlight_html(chunk.text, chunk.start, mine),
        })
    return pd.DataFrame(records, columns=["rank", "score", "doc_id", "grade", "reference_chars", "chunk_id", "html"])


def relevant_frame(row: QueryRow, dataset: Dataset) -> pd.DataFrame:
    """Each relevant document of a query, its grade, and the rank it was found at (NaN: missed).

    Ranks count documents, each at its best chunk, over everything the config retrieved.
    """
    import pandas as pd

    ranks = {doc: i for i, doc in enumerate(row.retrieved, 1)}
    relevant = sorted(((d, g) for d, g in dataset.qrels.get(row.query_id, {}).items() if g > 0),
                      key=lambda dg: (-dg[1], dg[0]))
    return pd.DataFrame(
        [{"doc_id": d, "grade": g, "rank": ranks.get(d, float("nan")), "found": d in ranks} for d, g in relevant],
        columns=["doc_id", "grade", "rank", "found"],
    )
