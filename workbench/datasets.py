"""Evaluation datasets: the BEIR layout, span-annotated chunking sets, and folders of files."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import html.parser
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .io import DATA_DIR
from .types import Document, Span

__all__ = [
    "Dataset", "DatasetError", "load_dataset", "load_beir", "load_span_set", "load_folder", "read_span_questions",
    "BUNDLED",
]

log = logging.getLogger(__name__)

BUNDLED = ("cranfield", "chunking")
FOLDER_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")


class DatasetError(ValueError):
    """A dataset file is missing, malformed or inconsistent; the message names the fix."""


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """Documents, queries and their relevance judgements.

    `qrels` maps a query id to graded document relevance (higher is more relevant, 0 is not
    relevant). `spans` holds reference excerpts for span-annotated sets. `skipped` lists the ids
    of empty documents left out of the corpus (their judgements stay, as in BEIR's evaluation).
    """

    name: str
    documents: tuple[Document, ...]
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    spans: Mapping[str, tuple[Span, ...]] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.documents:
            raise DatasetError(f"dataset {self.name!r} has no documents; add at least one non-empty document")
        ids = [d.id for d in self.documents]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise DatasetError(f"dataset {self.name!r} has duplicate document ids {dupes}; ids must be unique")
        for doc in self.documents:
            if not doc.text.strip():
                raise DatasetError(
                    f"document {doc.id!r} in {self.name!r} is empty or whitespace only; remove it or "
                    "load with empty='skip'"
                )
        known_docs = set(ids) | set(self.skipped)
        for qid, text in self.queries.items():
            if not text.strip():
                raise DatasetError(f"query {qid!r} in {self.name!r} is empty; remove it from the queries file")
        for kind, table in (("qrels", self.qrels), ("spans", self.spans)):
            unknown_q = sorted(set(table) - set(self.queries))
            if unknown_q:
                raise DatasetError(
                    f"{kind} of {self.name!r} name unknown queries {unknown_q[:5]}; "
                    "fix the query ids or add the queries"
                )
        unknown_d = sorted({d for rel in self.qrels.values() for d in rel} - known_docs)
        unknown_d += sorted({s.doc_id for spans in self.spans.values() for s in spans} - known_docs)
        if unknown_d:
            raise DatasetError(
                f"judgements of {self.name!r} name unknown documents {unknown_d[:5]}; "
                "fix the document ids or add the documents"
            )
        texts = {d.id: d.text for d in self.documents}
        for qid, spans in self.spans.items():
            for s in spans:
                if not 0 <= s.start < s.end <= len(texts.get(s.doc_id, "")):
                    raise DatasetError(
                        f"reference span {s.start}:{s.end} of query {qid!r} lies outside document "
                        f"{s.doc_id!r}; fix its offsets"
                    )

    @property
    def evaluated_queries(self) -> list[str]:
        """Ids of the queries that have at least one relevant document or reference span."""
        return [
            q for q in self.queries
            if any(g > 0 for g in self.qrels.get(q, {}).values()) or self.spans.get(q)
        ]

    def subset(self, doc_ids: Iterable[str]) -> Dataset:
        """The same dataset cut to some of its documents, keeping the queries judged within them.

        A judged query stays only if every one of its relevant documents and reference spans
        lies in the subset, so its metrics mean the same as on the whole set; unjudged queries
        go. The name records the cut, so runs on the subset never pass for runs on the whole.

        Args:
            doc_ids: ids of documents of this dataset.

        Returns:
            A new `Dataset`.

        Raises:
            DatasetError: no ids, or an id this dataset does not have.
        """
        keep = list(dict.fromkeys(doc_ids))
        known = {d.id for d in self.documents}
        unknown = [i for i in keep if i not in known]
        if not keep or unknown:
            raise DatasetError(
                f"cannot cut {self.name!r} to documents {keep[:5]}: "
                + (f"unknown ids {unknown[:5]}; " if unknown else "no ids given; ")
                + f"pick from {sorted(known)[:5]}{' ...' if len(known) > 5 else ''}"
            )
        inside = set(keep)
        queries = [
            q for q in self.evaluated_queries
            if {d for d, g in self.qrels.get(q, {}).items() if g > 0} <= inside
            and {s.doc_id for s in self.spans.get(q, ())} <= inside
        ]
        return Dataset(
            name=f"{self.name}[{','.join(keep)}]",
            documents=tuple(d for d in self.documents if d.id in inside),
            queries={q: self.queries[q] for q in queries},
            qrels={q: {d: g for d, g in self.qrels[q].items() if d in inside} for q in queries if q in self.qrels},
            spans={q: self.spans[q] for q in queries if q in self.spans},
        )

    def fingerprint(self) -> str:
        """A content hash of documents, queries and judgements (16 hex characters)."""
        h = hashlib.sha256()
        for doc in self.documents:
            h.update(json.dumps([doc.id, doc.text, dict(doc.metadata)], sort_keys=True, default=str).encode())
        blob = {
            "queries": dict(self.queries),
            "qrels": {q: dict(r) for q, r in self.qrels.items()},
            "spans": {q: [[s.doc_id, s.start, s.end] for s in sp] for q, sp in self.spans.items()},
        }
        h.update(json.dumps(blob, sort_keys=True).encode())
        return h.hexdigest()[:16]


def load_dataset(name_or_path: str | Path, **kwargs: Any) -> Dataset:
    """Load a bundled dataset by name, or a dataset folder by path.

    Args:
        name_or_path: "cranfield" or "chunking" (bundled in data/), a BEIR folder (corpus.jsonl),
            a span-annotated folder (questions.csv + corpora/), or any folder of .txt/.md/.html/.pdf.
        **kwargs: passed to the matching loader.

    Raises:
        DatasetError: unknown name, missing folder, or malformed files.
    """
    if str(name_or_path) == "cranfield":
        return load_beir(DATA_DIR / "cranfield", name="cranfield", empty="skip", **kwargs)
    if str(name_or_path) == "chunking":
        return load_span_set(DATA_DIR / "chunking", name="chunking", **kwargs)
    path = Path(name_or_path)
    if not path.is_dir():
        raise DatasetError(
            f"no dataset {str(name_or_path)!r}: not a bundled name ({', '.join(BUNDLED)}) nor a folder"
        )
    if (path / "corpus.jsonl").exists():
        return load_beir(path, **kwargs)
    if (path / "questions.csv").exists() and (path / "corpora").is_dir():
        return load_span_set(path, **kwargs)
    return load_folder(path, **kwargs)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path} is not UTF-8 (byte {exc.start}: {exc.reason}); re-save it as UTF-8"
        ) from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{n} is not valid JSON ({exc.msg})") from None
    return rows


def load_beir(
    path: str | Path, *, name: str | None = None, split: str = "test", empty: Literal["error", "skip"] = "error"
) -> Dataset:
    """Load the BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv (graded scores).

    Document text is the title, a space and the text, as BEIR's own evaluation embeds and
    indexes it. Empty documents raise, or with `empty="skip"` are left out of the corpus while
    their judgements stay.
    """
    path = Path(path)
    for required in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (path / required).exists():
            raise DatasetError(f"{path / required} is missing; a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/{split}.tsv")
    documents, skipped = [], []
    for row in _read_jsonl(path / "corpus.jsonl"):
        doc_id, title, text = str(row["_id"]), row.get("title", "") or "", row.get("text", "") or ""
        full = f"{title} {text}".strip()
        if not full.strip():
            if empty == "skip":
                skipped.append(doc_id)
                continue
            raise DatasetError(f"document {doc_id!r} in {path / 'corpus.jsonl'} is empty; remove it or pass empty='skip'")
        metadata = {"title": title, **(row.get("metadata") or {})}
        documents.append(Document(id=doc_id, text=full, metadata=metadata))
    if skipped:
        log.info("left out %d empty documents of %s: %s", len(skipped), path, skipped)
    queries, qrels = load_beir_judgements(path, split)
    return Dataset(
        name=name or path.name, documents=tuple(documents), queries=queries, qrels=qrels, skipped=tuple(skipped)
    )


def load_span_set(path: str | Path, *, name: str | None = None) -> Dataset:
    """Load a span-annotated set: corpora/<id>.md files and questions.csv with character references.

    questions.csv has columns `question`, `references` (a JSON list of objects with `start_index`
    and `end_index`) and `corpus_id`. Query ids are the 1-based row numbers. A document is
    relevant (grade 1) to a query when it holds one of its reference spans.
    """
    path = Path(path)
    corpora = sorted(p for p in (path / "corpora").iterdir() if p.suffix in (".md", ".txt"))
    documents = tuple(
        Document(id=p.stem, text=_read_text(p), metadata={"source": f"corpora/{p.name}", "title": p.stem})
        for p in corpora
    )
    queries: dict[str, str] = {}
    spans: dict[str, tuple[Span, ...]] = {}
    with open(path / "questions.csv", encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 1):
            qid = str(n)
            try:
                refs = json.loads(row["references"])
                spans[qid] = tuple(
                    Span(doc_id=row["corpus_id"], start=int(r["start_index"]), end=int(r["end_index"])) for r in refs
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetError(f"{path / 'questions.csv'} row {n}: bad references ({exc})") from None
            queries[qid] = row["question"]
    qrels = {q: {s.doc_id: 1 for s in sp} for q, sp in spans.items()}
    return Dataset(name=name or path.name, documents=documents, queries=queries, qrels=qrels, spans=spans)


class _HTMLText(html.parser.HTMLParser):
    """Visible text of an HTML page, its <title>, and its h1-h6 headings."""

    _SKIP = {"script", "style", "noscript", "template"}
    _BLOCK = {"p", "div", "br", "li", "tr", "section", "article", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.headings: list[str] = []
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._stack.append(tag)
        if tag in self._BLOCK:
            self.parts.append("\n")
        if re.fullmatch(r"h[1-6]", tag):
            self.parts.append("#" * int(tag[1]) + " ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._stack:
            while self._stack and self._stack.pop() != tag:
                pass
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        inside = set(self._stack)
        if "title" in inside:
            self.title += data.strip()
        elif not inside & self._SKIP:
            self.parts.append(data)
            if self._stack and re.fullmatch(r"h[1-6]", self._stack[-1]) and data.strip():
                self.headings.append(data.strip())

    def text(self) -> str:
        return re.sub(r"\n\s*\n+", "\n\n", "".join(self.parts)).strip()


def _read_pdf(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        return "\n\n".join((page.extract_text() or "") for page in PdfReader(path).pages).strip()
    except (PdfReadError, ValueError, OSError) as exc:
        raise DatasetError(f"{path} is not a readable PDF ({exc}); check the file") from None


def read_document(path: Path, root: Path) -> Document:
    """One file of a folder as a `Document` with source, title, modified date and headings."""
    suffix = path.suffix.lower()
    rel = path.relative_to(root).as_posix()
    title = path.stem
    if suffix in (".html", ".htm"):
        parser = _HTMLText()
        parser.feed(_read_text(path))
        text, headings, title = parser.text(), parser.headings, parser.title or title
    elif suffix == ".pdf":
        text = _read_pdf(path)
        headings = []
    else:
        text = _read_text(path)
        headings = [m.group(2).strip() for m in re.finditer(r"^(#{1,6})\s+(.+)$", text, re.M)]
        if headings and suffix in (".md", ".markdown"):
            title = headings[0]
    modified = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc).date().isoformat()
    return Document(
        id=rel, text=text, metadata={"source": rel, "title": title, "modified": modified, "headings": headings}
    )


def load_folder(
    path: str | Path, *, name: str | None = None, empty: Literal["error", "skip"] = "error"
) -> Dataset:
    """Load every .txt/.md/.html/.pdf file below a folder as a document.

    Questions are optional: a BEIR `queries.jsonl` + `qrels/test.tsv` (document ids are paths
    relative to the folder), or a `questions.csv` with `question`, `references` and `corpus_id`.
    """
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES)
    documents, skipped = [], []
    for file in files:
        doc = read_document(file, root)
        if not doc.text.strip():
            if empty == "skip":
                skipped.append(doc.id)
                continue
            raise DatasetError(f"{file} is empty or has no text; remove it or load with empty='skip'")
        documents.append(doc)
    if not documents:
        raise DatasetError(
            f"no documents in {root}: it holds no non-empty {', '.join(FOLDER_SUFFIXES)} files"
        )
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    spans: dict[str, tuple[Span, ...]] = {}
    if (root / "queries.jsonl").exists() and (root / "qrels" / "test.tsv").exists():
        queries, qrels = load_beir_judgements(root)
    elif (root / "questions.csv").exists():
        queries, spans = read_span_questions(root / "questions.csv", documents)
        qrels = {q: {s.doc_id: 1 for s in sp} for q, sp in spans.items()}
    return Dataset(
        name=name or root.name, documents=tuple(documents), queries=queries, qrels=qrels, spans=spans,
        skipped=tuple(skipped),
    )


def read_span_questions(
    path: Path, documents: Sequence[Document]
) -> tuple[dict[str, str], dict[str, tuple[Span, ...]]]:
    """Queries and reference spans of a questions.csv (`question`, `references`, `corpus_id`).

    Query ids are the 1-based row numbers; `corpus_id` names a document by id or file stem.

    Raises:
        DatasetError: a row lacks a question or has malformed references.
    """
    ids = {d.id for d in documents}
    docs_by_stem = {Path(d.id).stem: d.id for d in documents}
    queries: dict[str, str] = {}
    spans: dict[str, tuple[Span, ...]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 1):
            qid, corpus = str(n), row.get("corpus_id") or ""
            doc_id = corpus if corpus in ids else docs_by_stem.get(corpus, corpus)
            try:
                refs = json.loads(row.get("references") or "[]")
                spans[qid] = tuple(
                    Span(doc_id=doc_id, start=int(r["start_index"]), end=int(r["end_index"])) for r in refs
                )
                queries[qid] = row["question"]
            except (KeyError, TypeError, ValueError) as exc:
                raise DatasetError(
                    f"{path} row {n}: needs a question and references like "
                    f'[{{"start_index": 0, "end_index": 10}}] ({type(exc).__name__}: {exc})'
                ) from None
    return queries, spans


def load_beir_judgements(root: Path, split: str = "test") -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """queries.jsonl and qrels/<split>.tsv of a BEIR-style folder (header 'query-id corpus-id score')."""
    queries = {str(r["_id"]): r["text"] for r in _read_jsonl(root / "queries.jsonl")}
    qrels_path = root / "qrels" / f"{split}.tsv"
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_path, encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise DatasetError(f"{qrels_path} must start with the header 'query-id<TAB>corpus-id<TAB>score'")
        for n, row in enumerate(reader, 2):
            try:
                qid, did, score = row[0], row[1], int(row[2])
            except (IndexError, ValueError):
                raise DatasetError(f"{qrels_path}:{n} is not 'query-id<TAB>corpus-id<TAB>integer score'") from None
            qrels.setdefault(qid, {})[did] = score
    return queries, qrels
