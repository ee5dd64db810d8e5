"""Safe handling of user uploads: documents, zips of documents, and an optional questions file.

Everything an upload writes lands in one fresh folder under `uploads_root()` (the app's own data
folder, `cache_dir() / "uploads"`), named by a hash of the upload's content so the same upload
is stored once. A zip is checked before anything is written: no member may climb out of its
folder (absolute paths, drive letters, `..`), and neither the upload nor what it unpacks to may
exceed `MAX_UPLOAD_BYTES`. Files are unpacked into a temporary folder beside the target and
renamed into place, so a failed upload leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .documents import FOLDER_SUFFIXES
from .io import DatasetError, cache_dir, clip

__all__ = [
    "UploadError",
    "UploadedFile",
    "Upload",
    "MAX_UPLOAD_BYTES",
    "DOCUMENT_SUFFIXES",
    "QUESTION_FILES",
    "uploads_root",
    "store_upload",
]

MAX_UPLOAD_BYTES = 200 * 1024 * 1024  # Streamlit's own default upload cap, and ours
DOCUMENT_SUFFIXES = FOLDER_SUFFIXES  # what `load_folder` reads: .txt .md .markdown .html .htm .pdf
# Questions a folder may carry (see `workbench.datasets.load_folder`): span references, or BEIR.
QUESTION_FILES = ("questions.csv", "queries.jsonl", "qrels/test.tsv")
_MAX_MEMBERS = 10_000
_COPY_BLOCK = 1024 * 1024
_MAX_NAME_BYTES = 255  # one path part, as Linux, macOS and Windows file systems allow
_MAX_PATH_BYTES = 1024


class UploadError(DatasetError):
    """An upload is empty, corrupt, too large, unsafe or holds no documents; the message says the fix.

    A `DatasetError`, so the app and the CLI catch one type for every bad input file.
    """


@dataclass(frozen=True, kw_only=True)
class UploadedFile:
    """One uploaded file: its name as the user's machine gave it, its bytes, and its size."""

    name: str
    data: BinaryIO
    size: int


@dataclass(frozen=True, kw_only=True)
class Upload:
    """Where an upload was stored, what it holds, and what was left out and why."""

    path: Path
    documents: tuple[str, ...]
    questions: tuple[str, ...]
    skipped: tuple[str, ...]


def uploads_root() -> Path:
    """The only folder uploads are written to: `cache_dir() / "uploads"`."""
    return cache_dir() / "uploads"


def _member_path(name: str) -> PurePosixPath:
    """A zip member's name as a safe relative path, or an `UploadError` if it climbs out."""
    unified = name.replace("\\", "/")
    path = PurePosixPath(unified)
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":") or ".." in path.parts:
        raise UploadError(
            f"zip member {clip(name)} points outside the zip's folder (absolute path or '..'); "
            "re-create the zip from inside the folder of documents"
        )
    return PurePosixPath(*[p for p in path.parts if p not in ("", ".")])


def _shown(name: str) -> str:
    """A name fit for a message: as it is when printable and short, else escaped and cut."""
    return name if name.isprintable() and len(name) <= 120 else clip(name)


def _hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _bad_name(rel: PurePosixPath) -> str | None:
    """Why a name cannot be a file name here, or None."""
    if any(ord(c) < 32 or c == "\x7f" for c in rel.as_posix()):
        return "its name holds a NUL or another control character"
    if any(len(part.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES for part in rel.parts):
        return f"a part of its name is over {_MAX_NAME_BYTES} bytes"
    if len(rel.as_posix().encode("utf-8", "surrogatepass")) > _MAX_PATH_BYTES:
        return f"its path is over {_MAX_PATH_BYTES} bytes"
    return None


def _kind(rel: PurePosixPath) -> str:
    """'document', 'questions', or why the file is skipped."""
    bad = _bad_name(rel)
    if bad:
        return bad
    if any(_hidden(part) for part in rel.parts):
        return "hidden or system file"
    if any(parent.as_posix() in QUESTION_FILES for parent in rel.parents):
        return "inside a folder named like a questions file; rename the folder"
    if rel.as_posix() in QUESTION_FILES:
        return "questions"
    if rel.suffix.lower() in DOCUMENT_SUFFIXES:
        return "document"
    return f"not one of {', '.join(DOCUMENT_SUFFIXES)}"


def _check_size(name: str, size: int, limit: int) -> None:
    if size == 0:
        raise UploadError(f"{clip(name)} is empty (0 bytes); upload a file with content")
    if size > limit:
        raise UploadError(
            f"{clip(name)} is {size / 2**20:.1f} MB, over the {limit / 2**20:.0f} MB limit; "
            "split it into smaller uploads"
        )


def _copy(src: BinaryIO, dest: Path, *, budget: int, name: str) -> int:
    """Copy at most `budget` bytes from `src` to `dest`; raise if there are more."""
    written = 0
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        out = open(dest, "xb")
    except OSError as exc:  # a file and a folder of one name, a name the file system refuses
        raise UploadError(
            f"{clip(name)}: cannot store {clip(dest.name)} ({exc.strerror}); a file and a folder may share "
            "its name, or the file system refuses it; rename it"
        ) from None
    with out:
        while block := src.read(_COPY_BLOCK):
            written += len(block)
            if written > budget:
                raise UploadError(
                    f"{clip(name)} unpacks to more than {MAX_UPLOAD_BYTES / 2**20:.0f} MB; "
                    "upload fewer or smaller documents"
                )
            out.write(block)
    return written


def _unzip(file: UploadedFile, into: Path, budget: int) -> tuple[list[str], int]:
    """Unpack the allowed members of a zip into `into`; return the skipped names and bytes used."""
    try:
        archive = zipfile.ZipFile(file.data)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadError(f"{clip(file.name)} is not a readable zip file ({exc}); re-create the zip") from None
    skipped: list[str] = []
    with archive:
        members = archive.infolist()
        if len(members) > _MAX_MEMBERS:
            raise UploadError(f"{clip(file.name)} holds {len(members)} entries, over the limit of {_MAX_MEMBERS}")
        paths = [(m, _member_path(m.filename)) for m in members]  # check every name before writing
        # A zip of a folder nests everything under the folder's name: unpack its contents instead.
        shown = [rel for m, rel in paths if not m.is_dir() and rel.parts and not _hidden(rel.parts[0])]
        if len({rel.parts[0] for rel in shown}) == 1 and all(len(rel.parts) > 1 for rel in shown):
            top = shown[0].parts[0]
            paths = [(m, PurePosixPath(*rel.parts[1:]) if rel.parts[:1] == (top,) else rel) for m, rel in paths]
        declared = sum(m.file_size for m in members)
        if declared > budget:
            raise UploadError(
                f"{clip(file.name)} unpacks to {declared / 2**20:.1f} MB, over the "
                f"{MAX_UPLOAD_BYTES / 2**20:.0f} MB limit; upload fewer or smaller documents"
            )
        # A name that is a file in one member and a folder in another ('x.txt' and 'x.txt/y.txt').
        folders = {parent for m, rel in paths if not m.is_dir() for parent in rel.parents}
        for member, rel in paths:
            if member.is_dir() or not rel.parts:
                continue
            if stat.S_ISLNK(member.external_attr >> 16):
                skipped.append(f"{member.filename} (symbolic link)")
                continue
            if rel in folders:
                skipped.append(f"{_shown(member.filename)} (also a folder in the zip; rename one)")
                continue
            kind = _kind(rel)
            if kind not in ("document", "questions"):
                skipped.append(f"{_shown(member.filename)} ({kind})")
                continue
            target = into.joinpath(*rel.parts)
            if target.exists():
                raise UploadError(f"{clip(file.name)} holds {clip(rel.as_posix())} twice; keep one copy")
            try:
                with archive.open(member) as src:
                    budget -= _copy(src, target, budget=budget, name=file.name)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise UploadError(
                    f"{clip(file.name)} is corrupt at {clip(member.filename)} ({exc}); re-create the zip"
                ) from None
    return skipped, budget


def _single_name(name: str) -> PurePosixPath:
    base = PurePosixPath(name.replace("\\", "/")).name
    if base in ("", ".", ".."):
        raise UploadError(f"upload name {clip(name)} is not a file name; rename the file")
    return PurePosixPath(base)


def _question_target(name: PurePosixPath) -> PurePosixPath:
    if name.suffix.lower() == ".csv":
        return PurePosixPath("questions.csv")
    if name.suffix.lower() == ".jsonl":
        return PurePosixPath("queries.jsonl")
    if name.suffix.lower() == ".tsv":
        return PurePosixPath("qrels/test.tsv")
    raise UploadError(
        f"questions file {name.as_posix()!r} is not .csv (question, references, corpus_id), "
        ".jsonl (BEIR queries) or .tsv (BEIR qrels); upload one of those"
    )


def _digest(files: Sequence[UploadedFile], questions: Sequence[UploadedFile]) -> str:
    h = hashlib.sha256()
    for role, group in (("d", files), ("q", questions)):
        for f in group:
            h.update(f"{role}\0{f.name}\0{f.size}\0".encode())
            f.data.seek(0)
            while block := f.data.read(_COPY_BLOCK):
                h.update(block)
            f.data.seek(0)
    return h.hexdigest()[:16]


def store_upload(
    files: Sequence[UploadedFile],
    questions: Sequence[UploadedFile] = (),
    *,
    root: Path | None = None,
) -> Upload:
    """Store uploaded documents (loose files or zips) and optional questions as a dataset folder.

    Args:
        files: .txt/.md/.html/.pdf files and .zip files of them (a zip may also carry
            questions.csv, or queries.jsonl with qrels/test.tsv, at its top level).
        questions: an optional questions.csv (span references), or queries.jsonl + a qrels .tsv.
        root: where upload folders go; default `uploads_root()`. Nothing is written elsewhere.

    Returns:
        The stored folder (ready for `workbench.datasets.load_dataset`) and what it holds.

    Raises:
        UploadError: no files, an empty, corrupt or oversized file, a zip member that climbs
            out of its folder, an unsupported file type, or no documents at all.
    """
    if not files:
        raise UploadError("no files uploaded; add .txt, .md, .html or .pdf files, or a .zip of them")
    for f in (*files, *questions):
        _check_size(f.name, f.size, MAX_UPLOAD_BYTES)
    total = sum(f.size for f in (*files, *questions))
    if total > MAX_UPLOAD_BYTES:
        raise UploadError(
            f"the upload is {total / 2**20:.1f} MB in all, over the {MAX_UPLOAD_BYTES / 2**20:.0f} MB "
            "limit; upload fewer or smaller files"
        )
    root = uploads_root() if root is None else Path(root)
    target = root / _digest(files, questions)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    try:
        skipped: list[str] = []
        budget = MAX_UPLOAD_BYTES
        for f in files:
            name = _single_name(f.name)
            f.data.seek(0)
            bad = _bad_name(name)
            if bad:
                skipped.append(f"{_shown(f.name)} ({bad})")
                continue
            if name.suffix.lower() == ".zip":
                more, budget = _unzip(f, staging, budget)
                skipped += more
                continue
            if name.suffix.lower() not in DOCUMENT_SUFFIXES:
                raise UploadError(
                    f"{clip(f.name)} is not a supported document; upload {', '.join(DOCUMENT_SUFFIXES)} files or a .zip"
                )
            if (staging / name.as_posix()).exists():
                raise UploadError(f"two uploaded files are named {name.as_posix()!r}; rename one")
            budget -= _copy(f.data, staging / name.as_posix(), budget=budget, name=f.name)
        for q in questions:
            rel = _question_target(_single_name(q.name))
            q.data.seek(0)
            dest = staging.joinpath(*rel.parts)
            dest.unlink(missing_ok=True)  # an uploaded questions file wins over one in a zip
            budget -= _copy(q.data, dest, budget=budget, name=q.name)
        stored = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        documents = tuple(p for p in stored if _kind(PurePosixPath(p)) == "document")
        found_questions = tuple(p for p in stored if p in QUESTION_FILES)
        if not documents:
            raise UploadError(
                f"the upload holds no {', '.join(DOCUMENT_SUFFIXES)} documents"
                + (f" (skipped: {', '.join(skipped[:5])})" if skipped else "")
                + "; add at least one"
            )
        if ("queries.jsonl" in found_questions) != ("qrels/test.tsv" in found_questions):
            raise UploadError(
                "BEIR questions need both queries.jsonl and a qrels .tsv (query-id, corpus-id, score); "
                "upload the missing one, or a questions.csv instead"
            )
        if target.exists():
            shutil.rmtree(staging)
        else:
            os.replace(staging, target)
        return Upload(path=target, documents=documents, questions=found_questions, skipped=tuple(skipped))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
