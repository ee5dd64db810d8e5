"""The documents environment: search and read any dataset through the configured retrieval pipeline.

Tasks are the dataset's evaluated questions. The agent calls `search_documents(query, limit,
filter)` (the pipeline's retrieval, with a metadata filter) and `read_document(id)` (a chunk
or a whole document), then answers citing ids in square brackets. Success is an answer that
cites a relevant document: a cited chunk's span overlapping a reference span (span-annotated
sets), or a cited document judged relevant (qrels).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .tasks import Environment, Task
from .tools import Tool, ToolCall, ToolError

if TYPE_CHECKING:
    from ..config import PipelineConfig
    from ..datasets import Dataset

__all__ = ["documents_environment", "cited_ids"]

_CITATION = re.compile(r"\[([^\[\]\s]+)\]")
SNIPPET_CHARS = 300

SYSTEM = (
    "You answer questions about a document collection. Search it with search_documents, read promising "
    "results with read_document, then answer in one or two sentences and cite the ids you used in square "
    "brackets, e.g. [doc-12]. Cite only ids the tools returned."
)


def cited_ids(answer: str) -> list[str]:
    """The ids cited in square brackets, in order, each once."""
    return list(dict.fromkeys(_CITATION.findall(answer)))


def _overlaps(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def documents_environment(dataset: Dataset | str = "chunking", config: PipelineConfig | None = None,
                          *, questions: int = 0) -> Environment:
    """The documents environment over `dataset` retrieved as `config` says (default: BM25 over recursive chunks).

    Args:
        dataset: a Dataset or a name/folder for `load_dataset`.
        config: the retrieval pipeline (chunking, retriever, reranker).
        questions: keep the first N evaluated questions (0: all).

    Raises:
        ValueError: the dataset has no question with a relevant document or reference span.
    """
    from ..config import PipelineConfig, RetrievalConfig
    from ..datasets import load_dataset
    from ..experiment import build_pipeline

    data = load_dataset(dataset) if isinstance(dataset, str) else dataset
    config = config or PipelineConfig(retrieval=RetrievalConfig(kind="bm25", k=10))
    pipeline = build_pipeline(config, data)
    chunks = {c.id: c for c in pipeline.chunks}
    documents = {d.id: d for d in data.documents}

    def search(state: Mapping[str, Any], *, query: str, limit: int = 5, filter: Mapping[str, Any] | None = None) -> tuple[Any, str]:
        hits, _ = pipeline.search(query, where=dict(filter) if filter else None)
        shown = [{"id": h.chunk.id, "doc_id": h.chunk.doc_id, "score": round(float(h.score), 4),
                  "text": h.chunk.text[:SNIPPET_CHARS]} for h in hits[:limit]]
        return {"seen": sorted({*state["seen"], *(s["id"] for s in shown)})}, json.dumps(shown)

    def read(state: Mapping[str, Any], *, id: str) -> tuple[Any, str]:
        if id in chunks:
            return {"seen": sorted({*state["seen"], id})}, chunks[id].text
        if id in documents:
            return {"seen": sorted({*state["seen"], id})}, documents[id].text
        raise ToolError(f"no chunk or document with id {id!r}; use an id returned by search_documents")

    tools = (
        Tool(name="search_documents", function=search,
             description="Search the collection; returns up to `limit` passages (id, doc_id, score, text).",
             input_schema={"type": "object", "properties": {
                 "query": {"type": "string", "minLength": 1},
                 "limit": {"type": "integer", "minimum": 1, "maximum": 20},
                 "filter": {"type": "object", "description": "metadata field -> required value",
                            "additionalProperties": {"type": ["string", "number", "boolean"]}}},
                 "required": ["query"], "additionalProperties": False}),
        Tool(name="read_document", function=read, description="Read a passage (by its id) or a whole document.",
             input_schema={"type": "object", "properties": {"id": {"type": "string", "minLength": 1}},
                           "required": ["id"], "additionalProperties": False}),
    )

    def where(cited: str) -> tuple[str, int, int] | None:
        if cited in chunks:
            c = chunks[cited]
            return c.doc_id, c.start, c.end
        if cited in documents:
            return cited, 0, len(documents[cited].text)
        return None

    def check(task: Task, state: Any, answer: str) -> bool:
        spans = [where(i) for i in cited_ids(answer)]
        places = [s for s in spans if s is not None]
        goal = task.goal
        if goal["spans"]:
            return any(_overlaps(p, tuple(r)) for p in places for r in goal["spans"])
        return any(p[0] in goal["documents"] for p in places)

    tasks = []
    for qid in data.evaluated_queries[: questions or None]:
        spans = [(s.doc_id, s.start, s.end) for s in data.spans.get(qid, ())]
        relevant = sorted(d for d, grade in data.qrels.get(qid, {}).items() if grade > 0)
        gold = next((c for c in pipeline.chunks if any(_overlaps((c.doc_id, c.start, c.end), s) for s in spans)), None)
        cite = gold.id if gold is not None else (relevant[0] if relevant else "")
        question = data.queries[qid]
        tasks.append(Task(
            id=qid, instruction=question, start={"seen": []},
            goal={"spans": [list(s) for s in spans], "documents": relevant},
            reference=(ToolCall(id="ref_0", name="search_documents", arguments={"query": question, "limit": 5}),
                       ToolCall(id="ref_1", name="read_document", arguments={"id": cite})),
            reference_answer=f"See the cited passage [{cite}].", reference_baseline="I cannot answer without the documents.",
        ))
    if not tasks:
        raise ValueError(f"dataset {data.name!r} has no question with a relevant document or reference span; "
                         "add qrels or spans to use it as a documents environment")
    return Environment(
        name="documents", tools=tools, system=SYSTEM, tasks=tuple(tasks), check=check,
        baseline_schema={"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]},
        from_baseline=lambda task, parsed: task.start, argument_rules={"search_documents": "name_only"},
    )
