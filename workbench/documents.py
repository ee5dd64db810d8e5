"""Reading the files of a folder as documents, safely: text, Markdown, HTML and PDF.

Nothing here reads outside the folder the user pointed at: every path is resolved (symbolic
links followed) and a file or folder whose real path leaves the root is skipped and reported,
as uploads do for zips. Every failure is a `DatasetError` naming the file (and line or page).
The work a hostile PDF can cause is bounded: pages, characters extracted, and pypdf's per-stream
decompression and parsing limits, lowered to sizes no real page needs.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .io import DatasetError
from .types import Document

__all__ = [
    "FOLDER_SUFFIXES", "MAX_FILE_BYTES", "MAX_HTML_DEPTH", "MAX_PDF_PAGES", "MAX_DOCUMENT_CHARS", "list_files",
    "inside", "read_text", "read_document",
    "html_text",
]

log = logging.getLogger(__name__)

FOLDER_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")
MAX_PDF_PAGES = 5_000
MAX_FILE_BYTES = 200 * 2**20  # the upload limit: no one file may be larger than a whole upload
MAX_DOCUMENT_CHARS = 20_000_000  # about 4,000 pages of dense text: far beyond any one real document
# pypdf's limits per stream (defaults 75 MB out, 2 M tokens) lowered: a real page's content
# stream is a few hundred kB; these stop a decompression bomb in well under a second.
_PDF_LIMITS = {
    "zlib_maximum_output_length": 16_000_000,
    "lzw_maximum_output_length": 16_000_000,
    "run_length_maximum_output_length": 16_000_000,
    "brotli_maximum_output_length": 16_000_000,
    "stream_decoding_work_maximum_length": 64_000_000,
    "stream_parsing_work_maximum_count": 500_000,
}


def inside(path: Path, root: Path) -> Path | None:
    """`path` resolved (links followed), or None when it leaves `root` (already resolved) or cannot resolve."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # a broken link, a link loop (RuntimeError before Python 3.13)
        return None
    return real if real == root or real.is_relative_to(root) else None


def _why_not(path: Path) -> str:
    try:
        path.resolve(strict=True)
    except FileNotFoundError:
        return "a broken link"
    except RuntimeError:  # Python before 3.13
        return "a link loop"
    except OSError as exc:
        return "a link loop" if exc.errno == errno.ELOOP else f"cannot be resolved ({exc.strerror})"
    return "a link to outside the folder"


def list_files(root: Path, suffixes: Sequence[str] = FOLDER_SUFFIXES) -> tuple[list[tuple[str, Path]], list[str]]:
    """Regular files below `root` named with one of `suffixes` whose real path stays inside `root`.

    A file link inside the folder is read under its own name. A folder link is never walked:
    one that stays inside is read under its real path anyway (so loops cost nothing), one that
    leaves is reported. Links out, broken links, loops and special files (FIFOs, devices) are
    left out.

    Returns:
        (path relative to the root, real path) per file, sorted; and what was left out, each as
        "relative/path (why)", sorted.
    """
    top = root.resolve()
    files: list[tuple[str, Path]] = []
    left_out: list[str] = []
    for here, dirs, names in os.walk(top):  # never follows folder links
        base = Path(here)
        for d in dirs:
            if (base / d).is_symlink() and inside(base / d, top) is None:
                left_out.append(f"{(base / d).relative_to(top).as_posix()}/ ({_why_not(base / d)})")
        for name in names:
            path = base / name
            if path.suffix.lower() not in suffixes:
                continue
            rel = path.relative_to(top).as_posix()
            real = inside(path, top)
            if real is None:
                left_out.append(f"{rel} ({_why_not(path)})")
            elif not stat.S_ISREG(real.stat().st_mode):
                left_out.append(f"{rel} (not a regular file)")
            else:
                files.append((rel, real))
    if left_out:
        log.warning("left out %d files of %s: %s", len(left_out), root, left_out[:10])
    return sorted(files), sorted(left_out)


def read_text(path: Path, *, shown: str | Path | None = None) -> str:
    """A UTF-8 file's text, or a `DatasetError` naming the file (and the line of a bad byte).

    Args:
        path: the file to read.
        shown: the name to put in messages (default `path`).
    """
    shown = path if shown is None else shown
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise DatasetError("is a folder, not a file; point at the file itself", path=shown) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise DatasetError(f"cannot be read ({getattr(exc, 'strerror', None) or exc})", path=shown) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError(
            f"is not UTF-8 (line {line}, byte {exc.start}: {exc.reason}); re-save it as UTF-8",
            path=shown, line=line, located=False,
        ) from None


_BLOCK = frozenset({
    "p", "div", "br", "li", "tr", "section", "article", "header", "footer", "main", "aside", "nav", "h1", "h2",
    "h3", "h4", "h5", "h6", "pre", "table", "ul", "ol", "dl", "dt", "dd", "blockquote", "hr", "td", "th",
})
_SKIP = frozenset({"script", "style", "noscript", "template", "head", "-comment"})
_HEADING = re.compile(r"h[1-6]")
_TAG = re.compile(r"<(/?)([a-zA-Z][\w:-]*)")
# Elements that never nest deeper when left open (void, or closed by the next of their kind).
_FLAT = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr", "param",
    "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "thead", "tbody", "tfoot", "colgroup", "caption",
    "rb", "rt", "rtc", "rp", "html", "head", "body",
})
MAX_HTML_DEPTH = 10_000  # HTML5 tree building is quadratic in depth: 10,000 parse in 0.2 s, 50,000 in 16 s


def _depth(html: str) -> int:
    """An upper estimate of how deep the page's elements nest (open tags less closing ones)."""
    depth = deepest = 0
    for m in _TAG.finditer(html):
        if m.group(2).lower() in _FLAT:
            continue
        depth = max(depth - 1, 0) if m.group(1) else depth + 1
        deepest = max(deepest, depth)
    return deepest


def html_text(html: str, *, shown: str | Path | None = None) -> tuple[str, str, list[str]]:
    """Visible text, `<title>` and h1-h6 headings of an HTML page (headings marked '#'..'######').

    Parsed by Lexbor (selectolax), an HTML5 parser: any input, however broken, gives a tree.
    The walk is iterative, so deep markup cannot exhaust the stack, and markup nested past
    `MAX_HTML_DEPTH` is refused before parsing.

    Raises:
        DatasetError: the page nests elements past `MAX_HTML_DEPTH` (named as `shown`).
    """
    from selectolax.lexbor import LexborHTMLParser

    depth = _depth(html)
    if depth > MAX_HTML_DEPTH:
        raise DatasetError(
            f"nests HTML elements about {depth:,} deep, over the limit of {MAX_HTML_DEPTH:,}; close its tags",
            path=shown,
        )
    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node is not None else ""
    parts: list[str] = []
    headings: list[str] = []
    stack: list[tuple[Any, bool]] = [(tree.body, False)] if tree.body is not None else []
    while stack:
        node, leaving = stack.pop()
        tag = node.tag or ""  # processing instructions have none
        if leaving:
            parts.append("\n" if tag in _BLOCK else "")
            continue
        if tag == "-text":
            parts.append(node.text_content or "")
            continue
        if tag in _SKIP:
            continue
        if tag in _BLOCK:
            parts.append("\n")
        if _HEADING.fullmatch(tag):
            parts.append("#" * int(tag[1]) + " ")
            heading = node.text(deep=True, separator=" ", strip=True)
            if heading:
                headings.append(" ".join(heading.split()))
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(list(node.iter(include_text=True))))
    text = re.sub(r"\n\s*\n+", "\n\n", "".join(parts)).strip()
    return text, title, headings


def _read_pdf(path: Path, shown: str) -> str:
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import FileNotDecryptedError, LimitReachedError

    def fail(problem: str, page: int | None = None) -> DatasetError:
        return DatasetError(problem, path=shown, page=page)

    # pypdf raises many types on hostile files (its own, NotImplementedError for unknown
    # encryption, KeyError/TypeError/RecursionError/struct.error on broken objects): any of them
    # means "this PDF cannot be read", which is what the user needs to hear, with the page.
    with apply_configuration(**_PDF_LIMITS):
        try:
            reader = PdfReader(path)
            if reader.is_encrypted and not reader.decrypt(""):
                raise fail("is password-protected; save a copy without a password and load that")
            count = len(reader.pages)
        except DatasetError:
            raise
        except (FileNotDecryptedError, NotImplementedError) as exc:
            raise fail(f"is encrypted in a way that cannot be opened ({exc}); save an unencrypted copy") from None
        except Exception as exc:
            raise fail(f"is not a readable PDF ({type(exc).__name__}: {exc}); check the file") from None
        if count > MAX_PDF_PAGES:
            raise fail(f"has {count:,} pages, over the limit of {MAX_PDF_PAGES:,}; split it into smaller files")
        texts, total = [], 0
        for number in range(1, count + 1):
            try:
                text = reader.pages[number - 1].extract_text() or ""
            except LimitReachedError as exc:
                raise fail(
                    f"decompresses or parses past the limits for one page ({exc}): a damaged file or a "
                    "decompression bomb; check the file", number,
                ) from None
            except Exception as exc:  # see above
                raise fail(f"cannot be read ({type(exc).__name__}: {exc}); check the file", number) from None
            total += len(text)
            if total > MAX_DOCUMENT_CHARS:
                raise fail(
                    f"holds over {MAX_DOCUMENT_CHARS:,} characters of text by this page; split it into smaller files",
                    number,
                )
            texts.append(text)
    return "\n\n".join(texts).strip()


def read_document(path: Path, root: Path, *, rel: str | None = None) -> Document:
    """One file of a folder as a `Document` with source, title, modified date and headings.

    Args:
        path: the file (inside `root`).
        root: the folder; document ids are paths relative to it.
        rel: the id, when `path` is a link's target (default: `path` relative to `root`); its
            suffix decides how the file is read.

    Raises:
        DatasetError: the file is not UTF-8 text, not a readable PDF, too large, or unreadable.
    """
    rel = rel or path.relative_to(root).as_posix()
    suffix = Path(rel).suffix.lower()
    shown = str(root / rel)
    title = Path(rel).stem
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DatasetError(f"is {size / 2**20:,.0f} MB, over the {MAX_FILE_BYTES / 2**20:,.0f} MB limit; split it",
                           path=shown)
    if suffix in (".html", ".htm"):
        text, html_title, headings = html_text(read_text(path, shown=shown), shown=shown)
        title = html_title or title
    elif suffix == ".pdf":
        text = _read_pdf(path, shown)
        headings = []
    else:
        text = read_text(path, shown=shown)
        headings = [m.group(2).strip() for m in re.finditer(r"^(#{1,6})\s+(.+)$", text, re.M)]
        if headings and suffix in (".md", ".markdown"):
            title = headings[0]
    if len(text) > MAX_DOCUMENT_CHARS:
        raise DatasetError(f"holds {len(text):,} characters, over the limit of {MAX_DOCUMENT_CHARS:,}; split it",
                           path=shown)
    modified = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc).date().isoformat()
    return Document(
        id=rel, text=text, metadata={"source": rel, "title": title, "modified": modified, "headings": headings}
    )
