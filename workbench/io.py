"""Small file helpers shared by loaders, caches and stores: atomic writes, the data and cache
folders, and `DatasetError`, the one error every loader raises for a bad input file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "cache_dir", "clip", "DatasetError", "DATA_DIR"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def clip(value: object, limit: int = 120) -> str:
    """`repr(value)` cut to about `limit` characters, so a huge value never floods a message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


class DatasetError(ValueError):
    """A dataset file is missing, malformed, unsafe or inconsistent.

    `path`, `line` (1-based) and `page` (1-based, PDFs) say where, when known; `problem` says
    what is wrong and the fix. `str()` reads "path problem", or "path, line 3: problem" (page
    likewise). A subclass of ValueError, so code that caught ValueError before still catches it.
    """

    def __init__(
        self, problem: str, *, path: str | os.PathLike[str] | None = None, line: int | None = None,
        page: int | None = None, located: bool = True,
    ) -> None:
        """`located=False` when `problem` already says the line or page (the message keeps its order)."""
        self.problem = problem
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.page = page
        message = problem
        if self.path is not None:
            where = self.path if len(self.path) <= 200 else f"{self.path[:200]}... ({len(self.path):,} characters)"
            at = f"line {line}" if line is not None else f"page {page}" if page is not None else ""
            message = f"{where}, {at}: {problem}" if at and located else f"{where} {problem}"
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:  # keep path/line/page across processes (sweep workers)
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[DatasetError], args: tuple[object, ...], state: dict[str, object]) -> DatasetError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def cache_dir() -> Path:
    """Where caches live: `$WORKBENCH_CACHE_DIR`, else `$XDG_CACHE_HOME/workbench` (~/.cache)."""
    explicit = os.environ.get("WORKBENCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "workbench"
