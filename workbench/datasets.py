"""Evaluation datasets: the BEIR layout, span-annotated chunking sets, and folders of files."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .documents import FOLDER_SUFFIXES, inside, list_files, read_document, read_text
from .io import DATA_DIR, DatasetError, clip
from .types import Document, Span

__all__ = [
    "Dataset", "DatasetError", "load_dataset", "load_beir", "load_span_set", "load_folder", "read_span_questions",
    "load_beir_judgements", "BUNDLED", "FOLDER_SUFFIXES",
]

log = logging.getLogger(__name__)

BUNDLED = ("cranfield", "chunking")


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """Documents, queries and their relevance judgements.

    `qrels` maps a query id to graded document relevance (higher is more relevant, 0 is not
    relevant). `spans` holds reference excerpts for span-annotated sets. `skipped` lists the ids
    of empty documents left out of the corpus (their judgements stay, as in BEIR's evaluation).
    `left_out` lists files of a folder that were not read, each as "path (why)": links that
    leave the folder, broken links, link loops, special files.
    """

    name: str
    documents: tuple[Document, ...]
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    spans: Mapping[str, tuple[Span, ...]] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()

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
    if not str(name_or_path) or not os.path.isdir(path):  # never raises (a NUL, a name too long); "" is not "."
        raise DatasetError(
            f"no dataset {clip(str(name_or_path))}: not a bundled name ({', '.join(BUNDLED)}) nor a folder"
        )
    if _exists(path / "corpus.jsonl"):
        return load_beir(path, **kwargs)
    if _exists(path / "questions.csv") and (path / "corpora").is_dir():
        return load_span_set(path, **kwargs)
    return load_folder(path, **kwargs)


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _member(root: Path, rel: str) -> Path:
    """`root/rel` as a real path, when it is a file that stays inside `root`; else a `DatasetError`."""
    path = root / rel
    if not _exists(path):
        raise DatasetError("is missing", path=path)
    real = inside(path, root.resolve())
    if real is None:
        raise DatasetError(
            "is a link that leaves its folder (or a broken link, or a link loop); copy the file into the folder",
            path=path,
        )
    if real.is_dir():
        raise DatasetError("is a folder, not a file; put the file itself there", path=path)
    return real


def _table_text(path: Path, shown: Path) -> str:
    """A JSON Lines, CSV or TSV file's text, less the byte-order mark Excel and Notepad write."""
    return read_text(path, shown=shown).removeprefix("\ufeff")


def _index(value: Any) -> int:
    """A character offset: an integer (1.5, "3" or true would silently move a reference span)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"offset {clip(value, 40)} is not an integer")
    return value


def _read_jsonl(path: Path, shown: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON Lines file."""
    rows = []
    # split on newlines only: str.splitlines also breaks at U+2028 and others, legal inside JSON strings
    for n, line in enumerate(_table_text(path, shown).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"is not valid JSON ({exc.msg} at column {exc.colno})", path=shown, line=n) from None
        except RecursionError:
            raise DatasetError("nests JSON too deeply to read", path=shown, line=n) from None
        if not isinstance(row, dict):
            raise DatasetError(
                f'is a JSON {type(row).__name__}, not an object like {{"_id": "1", "text": "..."}}', path=shown, line=n
            )
        rows.append((n, row))
    return rows


def _field(row: Mapping[str, Any], key: str, shown: Path, line: int, *, required: bool = True) -> str:
    """A string field of a JSON row (ids may be integers); a `DatasetError` when missing or not text."""
    value = row.get(key)
    if value is None and not required:
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and key == "_id":
        return str(value)
    if not isinstance(value, str) or (key == "_id" and not value):
        problem = "has no" if value is None else "has an empty" if value == "" else f"has a {type(value).__name__} as"
        raise DatasetError(f"{problem} {key!r}; each row needs a text {key!r} ({clip(value, 60)} given)",
                           path=shown, line=line)
    return value


def _unique(seen: dict[str, int], key: str, line: int, shown: Path, what: str) -> None:
    if key in seen:
        raise DatasetError(
            f"{what} {clip(key, 60)} appears on lines {seen[key]} and {line}; ids must be unique", path=shown, line=line
        )
    seen[key] = line


def load_beir(
    path: str | Path, *, name: str | None = None, split: str = "test", empty: Literal["error", "skip"] = "error"
) -> Dataset:
    """Load the BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv (graded scores).

    Document text is the title, a space and the text, as BEIR's own evaluation embeds and
    indexes it. Empty documents raise, or with `empty="skip"` are left out of the corpus while
    their judgements stay.

    Raises:
        DatasetError: a missing or malformed file, a row of the wrong shape, a duplicate id; the
            message names the file and line.
    """
    path = Path(path)
    for required in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not _exists(path / required):
            raise DatasetError(
                f"is missing; a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/{split}.tsv",
                path=path / required,
            )
    shown = path / "corpus.jsonl"
    documents, skipped, seen = [], [], {}
    for n, row in _read_jsonl(_member(path, "corpus.jsonl"), shown):
        doc_id = _field(row, "_id", shown, n)
        title, text = _field(row, "title", shown, n, required=False), _field(row, "text", shown, n, required=False)
        _unique(seen, doc_id, n, shown, "document id")
        metadata = row.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise DatasetError(f"has a {type(metadata).__name__} as 'metadata'; it must be an object",
                               path=shown, line=n)
        full = f"{title} {text}".strip()
        if not full:
            if empty == "skip":
                skipped.append(doc_id)
                continue
            raise DatasetError(f"document {doc_id!r} has no title or text: it is empty; remove it or pass "
                               "empty='skip'", path=shown, line=n)
        documents.append(Document(id=doc_id, text=full, metadata={"title": title, **metadata}))
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

    Raises:
        DatasetError: see `read_span_questions`; or corpora/ is missing.
    """
    path = Path(path)
    if not (path / "corpora").is_dir():
        raise DatasetError("is missing or not a folder; a span-annotated set keeps its documents there",
                           path=path / "corpora")
    files, left_out = list_files(path / "corpora", (".md", ".txt"))
    documents = tuple(
        Document(id=rel.rsplit(".", 1)[0], text=read_text(real, shown=path / "corpora" / rel),
                 metadata={"source": f"corpora/{rel}", "title": Path(rel).stem})
        for rel, real in files
    )
    queries, spans = read_span_questions(_member(path, "questions.csv"), documents, shown=path / "questions.csv")
    qrels = {q: {s.doc_id: 1 for s in sp} for q, sp in spans.items()}
    return Dataset(name=name or path.name, documents=documents, queries=queries, qrels=qrels, spans=spans,
                   left_out=tuple(left_out))


def load_folder(
    path: str | Path, *, name: str | None = None, empty: Literal["error", "skip"] = "error",
    unreadable: Literal["error", "skip"] = "error",
) -> Dataset:
    """Load every .txt/.md/.html/.pdf file below a folder as a document.

    Files whose real path leaves the folder (links out, broken links, loops) are never read:
    they are listed in `Dataset.left_out`. Questions are optional: a BEIR `queries.jsonl` +
    `qrels/test.tsv` (document ids are paths relative to the folder), or a `questions.csv` with
    `question`, `references` and `corpus_id`.

    Args:
        path: the folder.
        name: the dataset's name (default: the folder's).
        empty: what to do with a document without text: raise, or leave it out (`skipped`).
        unreadable: what to do with a document that cannot be read (not UTF-8, an encrypted or
            damaged PDF, over a size bound): raise, or leave it out with the reason in
            `left_out`, so the rest of an upload stays usable.

    Raises:
        DatasetError: no documents, an unreadable or malformed file (named, with line or page).
    """
    root = Path(path)
    if not os.path.isdir(root):  # also a link loop, which Path.resolve would raise on
        raise DatasetError("is not a folder; point at a folder of documents", path=root)
    files, left_out = list_files(root)
    documents, skipped = [], []
    for rel, real in files:
        try:
            doc = read_document(real, root, rel=rel)
        except DatasetError as exc:
            if unreadable == "error":
                raise
            left_out.append(f"{rel} ({'' if exc.page is None else f'page {exc.page}: '}{exc.problem})")
            continue
        if not doc.text.strip():
            if empty == "skip":
                skipped.append(doc.id)
                continue
            raise DatasetError("is empty or has no text; remove it or load with empty='skip'", path=root / rel)
        documents.append(doc)
    if not documents:
        raise DatasetError(
            f"no documents in {root}: it holds no non-empty {', '.join(FOLDER_SUFFIXES)} files"
            + (f" (left out: {', '.join(left_out[:5])})" if left_out else "")
        )
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    spans: dict[str, tuple[Span, ...]] = {}
    beir = [_exists(root / "queries.jsonl"), _exists(root / "qrels" / "test.tsv")]
    if any(beir) and not all(beir):
        missing = "qrels/test.tsv" if beir[0] else "queries.jsonl"
        raise DatasetError(f"BEIR questions need both queries.jsonl and qrels/test.tsv; add {missing}", path=root)
    if all(beir):
        queries, qrels = load_beir_judgements(root)
    elif _exists(root / "questions.csv"):
        queries, spans = read_span_questions(_member(root, "questions.csv"), documents, shown=root / "questions.csv")
        qrels = {q: {s.doc_id: 1 for s in sp} for q, sp in spans.items()}
    return Dataset(
        name=name or root.name, documents=tuple(documents), queries=queries, qrels=qrels, spans=spans,
        skipped=tuple(skipped), left_out=tuple(left_out),
    )


def _csv_rows(text: str, shown: Path, **options: Any) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) of each row; a `DatasetError` naming the line for malformed CSV."""
    reader = csv.reader(io.StringIO(text, newline=""), **options)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            hint = "; a field this large is not a question or a reference" if "field limit" in str(exc) else ""
            raise DatasetError(f"is not valid CSV ({exc}){hint}", path=shown, line=reader.line_num) from None
        yield reader.line_num, row


def read_span_questions(
    path: Path, documents: Sequence[Document], *, shown: Path | None = None
) -> tuple[dict[str, str], dict[str, tuple[Span, ...]]]:
    """Queries and reference spans of a questions.csv (`question`, `references`, `corpus_id`).

    Query ids are the 1-based row numbers; `corpus_id` names a document by id or file stem.

    Args:
        path: the file.
        documents: the documents the references point into.
        shown: the name to put in messages (default `path`).

    Raises:
        DatasetError: the file is not UTF-8 CSV with those columns, or a row lacks a question,
            has malformed references, names an unknown document or a span outside it; the
            message names the file and line.
    """
    shown = Path(path) if shown is None else shown
    texts = {d.id: d.text for d in documents}
    docs_by_stem = {Path(d.id).stem: d.id for d in documents}
    rows = iter(_csv_rows(_table_text(Path(path), shown), shown))
    _, header = next(rows, (1, []))
    if not {"question", "references"} <= set(header):
        raise DatasetError(
            f"needs a header with the columns question, references and corpus_id (found {clip(header, 80)})",
            path=shown, line=1,
        )
    queries: dict[str, str] = {}
    spans: dict[str, tuple[Span, ...]] = {}
    for n, (line, values) in enumerate(rows, 1):
        if not any(v.strip() for v in values):
            continue
        row = dict(zip(header, values))
        qid, corpus, question = str(n), row.get("corpus_id") or "", row.get("question") or ""
        doc_id = corpus if corpus in texts else docs_by_stem.get(corpus, corpus)
        try:
            refs = json.loads(row.get("references") or "[]")
            found = tuple(Span(doc_id=doc_id, start=_index(r["start_index"]), end=_index(r["end_index"])) for r in refs)
        except (KeyError, TypeError, ValueError, RecursionError) as exc:
            raise DatasetError(
                f"row {n} needs references like "
                f'[{{"start_index": 0, "end_index": 10}}] ({type(exc).__name__}: {clip(str(exc), 80)})',
                path=shown, line=line,
            ) from None
        if not question.strip():
            raise DatasetError(f"row {n} has no question; fill it in or remove the row", path=shown, line=line)
        if found and doc_id not in texts:
            raise DatasetError(
                f"row {n} names corpus_id {clip(corpus, 60)}, which is no document here; "
                f"use one of {sorted(texts)[:5]}", path=shown, line=line,
            )
        for s in found:
            if not 0 <= s.start < s.end <= len(texts[doc_id]):
                raise DatasetError(
                    f"row {n}: reference {s.start}:{s.end} lies outside {doc_id!r} "
                    f"({len(texts[doc_id]):,} characters); fix its offsets", path=shown, line=line,
                )
        queries[qid], spans[qid] = question, found
    return queries, spans


def load_beir_judgements(root: Path, split: str = "test") -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """queries.jsonl and qrels/<split>.tsv of a BEIR-style folder (header 'query-id corpus-id score').

    Raises:
        DatasetError: a missing or malformed file, a row of the wrong shape, a duplicate query
            id or judgement; the message names the file and the lines.
    """
    root = Path(root)
    shown = root / "queries.jsonl"
    queries: dict[str, str] = {}
    seen: dict[str, int] = {}
    for n, row in _read_jsonl(_member(root, "queries.jsonl"), shown):
        qid, text = _field(row, "_id", shown, n), _field(row, "text", shown, n)
        _unique(seen, qid, n, shown, "query id")
        if not text.strip():
            raise DatasetError(f"query {qid!r} has no text: it is empty; remove it from the queries file",
                               path=shown, line=n)
        queries[qid] = text
    shown = root / "qrels" / f"{split}.tsv"
    rows = iter(_csv_rows(_table_text(_member(root, f"qrels/{split}.tsv"), shown), shown, delimiter="\t"))
    _, header = next(rows, (1, []))
    if [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
        raise DatasetError("must start with the header 'query-id<TAB>corpus-id<TAB>score'", path=shown, line=1)
    qrels: dict[str, dict[str, int]] = {}
    pairs: dict[str, int] = {}
    for n, row in rows:
        if not row:
            continue
        try:
            qid, did, score = row[0], row[1], int(row[2])
        except (IndexError, ValueError):
            raise DatasetError("is not 'query-id<TAB>corpus-id<TAB>integer score'", path=shown, line=n) from None
        _unique(pairs, f"{qid}\t{did}", n, shown, "judgement")
        qrels.setdefault(qid, {})[did] = score
    return queries, qrels
