"""A persistent index folder: its record (`index.json`), its chunks (`manifest.json`), its rows.

`index.json` says which backend holds the vectors and which embedding model, dimension and
normalisation built them; it is written when the folder is created and read on every open, so
querying with another model fails with the fix on every backend, and a folder that holds
something else (or a corrupted record) is refused rather than overwritten. `manifest.json`
maps each indexed document to its content hash and chunks (rewritten atomically after every
batch of an ingest); the backend's own files (or a server's table) hold the vectors.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from ..types import Chunk
from .base import IndexSpec, VectorStoreError

__all__ = ["IndexInfo", "DocumentEntry", "INFO_FILE", "MANIFEST_FILE", "read_info", "write_info",
           "read_manifest", "write_manifest", "index_spec"]

INFO_FILE = "index.json"
MANIFEST_FILE = "manifest.json"
_FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class IndexInfo:
    """What a persistent index was built with; `settings` are the backend's search settings."""

    backend: str
    index: str
    model_id: str
    dimension: int
    normalize: bool
    url: str = ""
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def check_model(self, model_id: str, dimension: int | None = None, normalize: bool | None = None) -> None:
        """Raise unless an embedder of `model_id` (dimension, normalisation) fits this index.

        Raises:
            ConfigError: a different model, dimension or normalisation ("embedding model mismatch").
        """
        from ..config import ConfigError

        if model_id != self.model_id:
            raise ConfigError(
                f"embedding model mismatch: the index was built with {self.model_id!r} but the embedder is "
                f"{model_id!r}; rebuild the index with {model_id!r} or set embedding.model = {self.model_id!r}"
            )
        if dimension is not None and dimension != self.dimension:
            raise ConfigError(
                f"embedding model mismatch: the index holds {self.dimension}-d vectors of {self.model_id!r}, "
                f"the embedder gives {dimension}-d; rebuild the index"
            )
        if normalize is not None and normalize != self.normalize:
            raise ConfigError(
                f"embedding normalisation mismatch: the index was built with embedding.normalize = "
                f"{self.normalize}; set it so or rebuild the index"
            )


def write_info(folder: Path, info: IndexInfo) -> None:
    """Record `info` in `folder/index.json` (atomically)."""
    data = {"format": _FORMAT, **dataclasses.asdict(info)}
    atomic_write_text(Path(folder) / INFO_FILE, json.dumps(data, indent=2) + "\n")


def read_info(folder: Path) -> IndexInfo | None:
    """The record of an index folder; None for a folder that does not exist or is empty.

    Raises:
        VectorStoreError: the folder holds other files but no record (not an index), or a
            record that is corrupt or of another format.
    """
    folder = Path(folder)
    path = folder / INFO_FILE
    if not path.exists():
        if folder.exists() and any(folder.iterdir()):
            raise VectorStoreError(
                f"{folder} is not empty and holds no {INFO_FILE}: it is not a workbench index; "
                "point at an empty or new folder, or at an index built by `workbench ingest`"
            )
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        found = data.pop("format", None)
        if found != _FORMAT:
            raise VectorStoreError(f"{path} has index format {found!r}, expected {_FORMAT}; rebuild the index")
        return IndexInfo(**data)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise VectorStoreError(f"{path} is corrupt ({type(exc).__name__}: {exc}); delete {folder} and rebuild the index") from None


# ------------------------------------------------------------------------- the chunk manifest


@dataclass(frozen=True)
class DocumentEntry:
    """One indexed document: the hash of its content and the chunks stored for it."""

    hash: str
    chunks: tuple[Chunk, ...]


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"chunk metadata value {value!r} ({type(value).__name__}) cannot be saved; use str, number, bool, list or date")


def _json_hook(obj: dict[str, Any]) -> Any:
    if obj.keys() == {"$datetime"}:
        return dt.datetime.fromisoformat(obj["$datetime"])
    if obj.keys() == {"$date"}:
        return dt.date.fromisoformat(obj["$date"])
    return obj


def write_manifest(folder: Path, documents: Mapping[str, DocumentEntry]) -> None:
    """Record every indexed document's hash and chunks in `folder/manifest.json` (atomically)."""
    body = {doc_id: {"hash": e.hash, "chunks": [dataclasses.asdict(c) for c in e.chunks]}
            for doc_id, e in documents.items()}
    text = json.dumps({"format": _FORMAT, "documents": body}, default=_json_default, ensure_ascii=False)
    atomic_write_text(Path(folder) / MANIFEST_FILE, text + "\n")


def read_manifest(folder: Path) -> dict[str, DocumentEntry]:
    """The documents an index folder holds ({} before the first ingest).

    Raises:
        VectorStoreError: the manifest is corrupt.
    """
    path = Path(folder) / MANIFEST_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_hook=_json_hook)
        return {doc_id: DocumentEntry(hash=e["hash"], chunks=tuple(Chunk(**c) for c in e["chunks"]))
                for doc_id, e in data["documents"].items()}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise VectorStoreError(
            f"{path} is corrupt ({type(exc).__name__}: {exc}); delete {folder} and rebuild the index"
        ) from None


def index_spec(folder: Path, info: IndexInfo) -> IndexSpec:
    """The spec that opens the index recorded by `info` in `folder`."""
    return IndexSpec(folder=Path(folder), dimension=info.dimension, index=info.index, url=info.url, **info.settings)
