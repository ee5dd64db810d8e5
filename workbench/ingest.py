"""Incremental ingestion of a folder into a persistent vector index (`python -m workbench ingest`).

Each document's content hash (its text, metadata and the chunking settings) decides what is
done: new and changed documents are re-chunked and re-embedded (through the embedding cache),
removed ones deleted from the index, unchanged ones left alone; an unchanged folder embeds
nothing and writes nothing. The manifest (document -> hash and chunks) is rewritten atomically
after every batch of documents, after the index has taken the batch, so an interrupted ingest
resumes: a batch the index took but the manifest does not record is deleted by document and
written again, never duplicated or lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ConfigError, PipelineConfig
from .io import DATA_DIR
from .types import Document
from .vectorstores import (
    DocumentEntry,
    IndexInfo,
    backend_label,
    index_spec,
    make_index,
    read_info,
    read_manifest,
    write_info,
    write_manifest,
)

if TYPE_CHECKING:
    from .embedding import Embedder

__all__ = ["IngestReport", "ingest", "ingest_every", "index_folder", "parse_interval", "document_hash"]

INDEXES_DIR = DATA_DIR / "indexes"


@dataclass(frozen=True, kw_only=True)
class IngestReport:
    """What one ingest did: documents by outcome, texts embedded, index rows written and deleted."""

    index: str
    backend: str
    added: int
    changed: int
    deleted: int
    unchanged: int
    texts_embedded: int
    rows_written: int
    rows_deleted: int
    chunks: int  # rows in the index afterwards
    seconds: float

    def summary(self) -> str:
        """One line for the terminal."""
        return (f"{self.index} [{self.backend}]: {self.added} added, {self.changed} changed, {self.deleted} deleted, "
                f"{self.unchanged} unchanged; {self.texts_embedded} texts embedded, {self.rows_written} rows written, "
                f"{self.rows_deleted} rows deleted; {self.chunks} chunks; {self.seconds:.1f} s")


def index_folder(name: str) -> Path:
    """Where index `name` lives: the path itself when it names a folder, else data/indexes/NAME."""
    if "/" in name or "\\" in name or name.startswith("."):
        return Path(name)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ValueError(f"index name {name!r} must be letters, digits, '_', '.' or '-' (or a folder path)")
    return INDEXES_DIR / name


def document_hash(doc: Document, config: PipelineConfig) -> str:
    """SHA-256 of a document's text and metadata and the chunking settings that split it."""
    blob = json.dumps([doc.text, dict(doc.metadata), dataclasses.asdict(config.chunking)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def parse_interval(text: str) -> float:
    """Seconds in "90s", "10m", "2h" or "1d".

    Raises:
        ValueError: anything else.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"interval {text!r} must be a positive number and a unit, e.g. 30s, 10m, 2h or 1d")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _new_info(folder: Path, config: PipelineConfig, embedder: Embedder, backend: str, url: str) -> IndexInfo:
    from .retrieval.dense import index_settings

    r = config.retrieval
    # on a shared server each index gets its own table or collection
    stem = re.sub(r"[^A-Za-z0-9_]", "_", folder.name)[:40] or "index"
    name = f"wb_{stem}_{uuid.uuid4().hex[:8]}" if url else "chunks"
    return IndexInfo(backend=backend, index=r.index, model_id=embedder.model_id, dimension=embedder.dimension,
                     normalize=config.embedding.normalize, url=url, settings={"name": name, **index_settings(r)})


def _open_info(folder: Path, config: PipelineConfig, embedder: Embedder, backend: str | None, url: str | None) -> IndexInfo:
    info = read_info(folder)
    if info is None:
        info = _new_info(folder, config, embedder, backend or config.retrieval.backend,
                         config.retrieval.backend_url if url is None else url)
        make_index(info.backend, index_spec(folder, info)).close()  # fails here, before any record, if it cannot open
        write_info(folder, info)
        return info
    info.check_model(embedder.model_id, normalize=config.embedding.normalize)
    if backend is not None and backend != info.backend:
        raise ConfigError(
            f"{folder} is a {info.backend} index; ingest into it with --backend {info.backend}, "
            f"or give a new index name for a {backend} index"
        )
    return info


def ingest(
    source: str | Path,
    index: str | Path,
    *,
    config: PipelineConfig | None = None,
    backend: str | None = None,
    url: str | None = None,
    embedder: Embedder | None = None,
    batch_documents: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> IngestReport:
    """Bring the persistent index at `index` up to date with the documents in folder `source`.

    Args:
        source: a folder of .txt/.md/.html/.pdf files (`datasets.load_folder`).
        index: the index folder (created on first use; `index_folder` resolves bare names).
        config: chunking, embedding and index settings (default: `PipelineConfig()`); a new
            index takes its backend, URL and search settings from `config.retrieval`.
        backend, url: override the backend (and server) of a new index; an existing index
            refuses another backend.
        embedder: the embedder (default: the process-wide one for `config.embedding`).
        batch_documents: documents per batch (the manifest is written after each).
        on_batch: called with the number of documents done after each batch is recorded.

    Raises:
        ConfigError: the index was built with another embedding model or backend.
        VectorStoreError: the folder is not an index, or the backend refuses (unreachable URL...).
        DatasetError: `source` holds no documents.
    """
    from .chunking import make_chunker
    from .datasets import load_folder
    from .embedding import load_embedder
    from .resources import Resources

    t0 = time.perf_counter()
    config = config or PipelineConfig()
    if batch_documents <= 0:
        raise ValueError(f"batch_documents must be positive, got {batch_documents}")
    embedder = embedder or load_embedder(config.embedding)
    folder = Path(index)
    documents = {d.id: d for d in load_folder(source, empty="skip").documents}
    info = _open_info(folder, config, embedder, backend, url)
    manifest = read_manifest(folder)
    hashes = {doc_id: document_hash(doc, config) for doc_id, doc in documents.items()}
    added = [d for d in documents if d not in manifest]
    changed = [d for d in documents if d in manifest and manifest[d].hash != hashes[d]]
    deleted = [d for d in manifest if d not in documents]
    counts = {"texts_embedded": 0, "rows_written": 0, "rows_deleted": 0}
    total = sum(len(e.chunks) for e in manifest.values())
    if added or changed or deleted:
        store = make_index(info.backend, index_spec(folder, info))
        try:
            if deleted:
                counts["rows_deleted"] += store.delete_documents(deleted)
                store.flush()
                for doc_id in deleted:
                    del manifest[doc_id]
                write_manifest(folder, manifest)
            chunker = make_chunker(config.chunking, Resources.for_config(config, embedder=embedder))
            todo = added + changed
            for start in range(0, len(todo), batch_documents):
                batch = todo[start : start + batch_documents]
                chunks = {d: tuple(chunker.chunk(documents[d])) for d in batch}
                flat = [c for d in batch for c in chunks[d]]
                misses = embedder.stats.misses
                vectors = embedder.embed([c.text for c in flat])
                counts["texts_embedded"] += embedder.stats.misses - misses
                # rows of these documents from before (or from an interrupted run) go first
                counts["rows_deleted"] += store.delete_documents(batch)
                store.upsert([c.id for c in flat], vectors, [c.metadata for c in flat], [c.doc_id for c in flat])
                store.flush()  # durable before the manifest says so
                counts["rows_written"] += len(flat)
                manifest.update({d: DocumentEntry(hash=hashes[d], chunks=chunks[d]) for d in batch})
                write_manifest(folder, manifest)
                if on_batch is not None:
                    on_batch(start + len(batch))
            total = store.count()
        finally:
            store.close()
    return IngestReport(
        index=str(folder), backend=backend_label(info.backend, info.index, info.url), added=len(added),
        changed=len(changed), deleted=len(deleted), unchanged=len(documents) - len(added) - len(changed),
        chunks=total, seconds=time.perf_counter() - t0, **counts,
    )


def ingest_every(interval_s: float, run: Callable[[], IngestReport], report: Callable[[IngestReport], None],
                 *, runs: int | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    """Run `run` now and then every `interval_s` seconds (`runs` times, or until interrupted).

    A failed run is reported on stderr and retried at the next tick (the manifest makes it
    resume); a `ConfigError` (another model or backend) stops it. Returns the number of runs that failed.
    """
    import sys

    failures, done = 0, 0
    while runs is None or done < runs:
        started = time.monotonic()
        try:
            report(run())
        except ConfigError:
            raise  # a wrong model or backend does not fix itself by waiting
        except Exception as exc:  # noqa: BLE001 - a database down for a while: the next tick resumes
            failures += 1
            print(f"error: {type(exc).__name__}: {exc}; retrying in {interval_s:g} s", file=sys.stderr)
        done += 1
        if runs is None or done < runs:
            sleep(max(0.0, interval_s - (time.monotonic() - started)))
    return failures
