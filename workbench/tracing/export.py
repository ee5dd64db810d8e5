"""Feedback into evaluation data: the traces with a thumbs up or down, written as a BEIR folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import TraceFilter, TraceStore

__all__ = ["export_feedback_dataset"]


def export_feedback_dataset(store: TraceStore, folder: str | Path, where: TraceFilter | None = None) -> Path:
    """Write the traces with feedback, and the chunks they were answered from, as a BEIR folder.

    The corpus is the pool of chunks shown to the generator (one document per chunk id; its
    source document and offsets in `metadata`); each query is a trace (id = trace id). A
    thumbs up grades the chunks the answer cited 1 (all of its context if it cited none) and
    the rest of its context 0; a thumbs down grades its whole context 0. `load_dataset(folder)`
    reads the result; `run_experiment` evaluates the thumbs-up queries.

    Args:
        store: the trace store.
        folder: where corpus.jsonl, queries.jsonl and qrels/test.tsv are written (atomically).
        where: which traces count.

    Returns:
        The folder.

    Raises:
        ValueError: no trace matching `where` has feedback, or one was recorded without content.
    """
    from ..io import atomic_write_text

    folder = Path(folder)
    chosen = {r.trace_id: r for r in store.traces(where)}
    latest = {f.trace_id: f for f in store.feedback() if f.trace_id in chosen}
    if not latest:
        raise ValueError(
            f"no trace in {str(store.path)!r} matching the filter has feedback; add some with "
            "TraceStore.add_feedback(trace_id, thumbs_up=...)"
        )
    corpus: dict[str, dict[str, Any]] = {}
    queries, qrels = [], []
    for trace_id, fb in latest.items():
        record = chosen[trace_id]
        generate = next((s.attributes for s in store.spans(trace_id) if s.name == "generate"), {})
        if not record.query or "workbench.context" not in generate:
            raise ValueError(
                f"trace {trace_id!r} was recorded without content (record_content=False), so its query "
                "and chunks are unknown; leave it out with a TraceFilter or re-run with record_content=True"
            )
        context = json.loads(generate["workbench.context"])
        citations = set(generate.get("workbench.citations", ()))
        for c in context:
            corpus.setdefault(c["id"], {
                "_id": c["id"], "title": "", "text": c["text"],
                "metadata": {"doc_id": c["doc_id"], "start": c["start"], "end": c["end"]},
            })
        shown = {c["id"] for c in context}
        good = (citations & shown) or shown
        queries.append({"_id": trace_id, "text": record.query, "metadata": {"feedback": fb.score, "comment": fb.comment}})
        qrels += [(trace_id, c["id"], int(fb.score > 0 and c["id"] in good)) for c in context]
    atomic_write_text(folder / "corpus.jsonl", "".join(json.dumps(d) + "\n" for d in corpus.values()))
    atomic_write_text(folder / "queries.jsonl", "".join(json.dumps(q) + "\n" for q in queries))
    atomic_write_text(
        folder / "qrels" / "test.tsv",
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels),
    )
    return folder
