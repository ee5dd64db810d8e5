"""Builders of real files, good and hostile, for the loader tests and benchmarks/hostile_inputs.py.

Each returns bytes written from the format's own rules (PDF objects and cross-reference table,
zip entries), so the loaders meet what a user or an attacker could hand them.
"""

from __future__ import annotations

import io
import stat
import zipfile
import zlib

__all__ = ["pdf", "page_pdf", "minimal_pdf", "encrypted_pdf", "ENCRYPTIONS", "bomb_pdf", "many_pages_pdf", "zipped"]


def pdf(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF of numbered `objects` (1 is the catalog) with a correct cross-reference table."""
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    return bytes(out)


def page_pdf(stream: bytes, *, filters: bytes = b"", encrypt: bytes | None = None, kids: int = 1) -> bytes:
    """A PDF whose page tree lists one page `kids` times; the page draws content `stream`."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b"3 0 R " * kids, kids),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d %s>>\nstream\n" % (len(stream), filters) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    trailer = b""
    if encrypt is not None:
        objects.append(encrypt)
        trailer = b"/Encrypt 6 0 R /ID [<00112233445566778899aabbccddeeff> <00112233445566778899aabbccddeeff>] "
    return pdf(objects, trailer)


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose content stream draws `text` (enough for a text extractor)."""
    return page_pdf(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())


# Encryption dictionaries pypdf cannot open: a security handler other than Standard, versions
# beyond the standard's, and the Standard handler with a user password we do not have.
ENCRYPTIONS = {
    "custom handler": b"<< /Filter /FooSecurity /V 9 /R 9 /Length 128 /O <00> /U <00> /P -4 >>",
    "unknown version 7": b"<< /Filter /Standard /V 7 /R 7 /Length 128 /O <00> /U <00> /P -4 >>",
    "public-key handler": b"<< /Filter /Adobe.PubSec /SubFilter /adbe.pkcs7.s5 /V 4 /R 4 /Length 128 >>",
    "password RC4": b"<< /Filter /Standard /V 2 /R 3 /Length 128 /O <0011> /U <0011> /P -4 >>",
}


def encrypted_pdf(kind: str) -> bytes:
    """A one-page PDF encrypted with one of `ENCRYPTIONS`, or (kind "AES-256") by pypdf with a password."""
    if kind == "AES-256":
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(io.BytesIO(minimal_pdf("secret text"))))
        writer.encrypt(user_password="open sesame", algorithm="AES-256")
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()
    return page_pdf(b"BT /F1 12 Tf 72 720 Td (secret) Tj ET", encrypt=ENCRYPTIONS[kind])


def bomb_pdf(kind: str = "text") -> bytes:
    """A page whose deflated content stream is small and decompresses to tens of MB.

    kind "text": 600,000 text-showing operators (20 MB of operators, 17 M characters);
    kind "blank": 40 MB of spaces. Both past the loader's 16 MB per stream, in 60 kB or less.
    """
    if kind == "text":
        body = b"BT /F1 12 Tf 72 720 Td " + b"(AAAAAAAAAAAAAAAAAAAAAAAAAAAA) Tj " * 600_000 + b"ET"
    else:
        body = b" " * 40_000_000
    return page_pdf(zlib.compress(body, 9), filters=b"/Filter /FlateDecode ")


def many_pages_pdf(pages: int) -> bytes:
    """A small file whose page tree lists one page `pages` times."""
    return page_pdf(b"BT /F1 12 Tf 72 720 Td (again) Tj ET", kids=pages)


def zipped(members: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    """A deflated zip of `members` (name -> bytes) plus symbolic-link entries (name -> target)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return buffer.getvalue()
