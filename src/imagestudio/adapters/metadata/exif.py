"""EXIF blocks: the one we write (``Software`` and ``UserComment``) and the fields we read back.

We write what AUTOMATIC1111 writes into its JPEG and WebP files through piexif: a big-endian
TIFF structure whose Exif IFD holds ``UserComment`` (0x9286) as the 8-byte character code
``UNICODE\\0`` followed by the text in UTF-16 (big-endian, the byte order of the block), plus
``Software`` in IFD0. Reading goes through Pillow's EXIF parser, which never decodes pixels.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from typing import Final

from PIL import Image

__all__ = ["ExifFields", "exif_block", "read_exif", "user_comment_text"]

_SOFTWARE: Final = 0x0131
_MAKE: Final = 0x010F
_MODEL: Final = 0x0110
_EXIF_IFD: Final = 0x8769
_USER_COMMENT: Final = 0x9286
_ASCII: Final = 2
_LONG: Final = 4
_UNDEFINED: Final = 7

UNICODE_PREFIX: Final = b"UNICODE\x00"
ASCII_PREFIX: Final = b"ASCII\x00\x00\x00"
JIS_PREFIX: Final = b"JIS\x00\x00\x00\x00\x00"
UNDEFINED_PREFIX: Final = b"\x00" * 8


def _entry(tag: int, kind: int, count: int, value: int) -> bytes:
    return struct.pack(">HHII", tag, kind, count, value)


def exif_block(user_comment: str, software: str) -> bytes:
    """A TIFF structure (no ``Exif`` header) with ``Software`` and the Exif IFD's ``UserComment``."""
    comment = UNICODE_PREFIX + user_comment.encode("utf-16-be", errors="surrogatepass")
    name = software.encode("ascii", errors="replace") + b"\x00"
    name_at = 8 + 2 + 2 * 12 + 4  # after the header and IFD0 (two entries and the next-IFD link)
    exif_ifd_at = name_at + len(name) + (len(name) & 1)
    comment_at = exif_ifd_at + 2 + 12 + 4
    ifd0 = struct.pack(">H", 2) + _entry(_SOFTWARE, _ASCII, len(name), name_at)
    ifd0 += _entry(_EXIF_IFD, _LONG, 1, exif_ifd_at) + struct.pack(">I", 0)
    exif_ifd = struct.pack(">H", 1) + _entry(_USER_COMMENT, _UNDEFINED, len(comment), comment_at)
    exif_ifd += struct.pack(">I", 0)
    padding = b"\x00" if len(name) & 1 else b""
    return b"MM\x00\x2a" + struct.pack(">I", 8) + ifd0 + name + padding + exif_ifd + comment


def user_comment_text(value: bytes) -> str | None:
    """The text of a ``UserComment`` by its character code; ``None`` when it holds none.

    ``UNICODE`` text is UTF-16 of either byte order (piexif writes big-endian; writers of
    little-endian EXIF write little-endian): a byte order mark decides, else the order whose
    high bytes are the zeros.
    """
    prefix, body = value[:8], value[8:]
    if prefix == UNICODE_PREFIX:
        text = _utf16(body)
    elif prefix == ASCII_PREFIX:
        text = body.decode("ascii", errors="replace")
    elif prefix == JIS_PREFIX:
        text = body.decode("shift_jis", errors="replace")
    elif prefix == UNDEFINED_PREFIX:
        text = body.decode("utf-8", errors="replace")
    else:
        text = value.decode("utf-8", errors="replace")  # no character code: as AUTOMATIC1111 reads it
    text = text.strip("\x00").strip()
    return text or None


def _utf16(body: bytes) -> str:
    body = body[: len(body) & ~1]
    if body.startswith(b"\xfe\xff"):
        return body[2:].decode("utf-16-be", errors="replace")
    if body.startswith(b"\xff\xfe"):
        return body[2:].decode("utf-16-le", errors="replace")
    big_endian = body[0::2].count(0) >= body[1::2].count(0)
    return body.decode("utf-16-be" if big_endian else "utf-16-le", errors="replace")


@dataclass(frozen=True, kw_only=True)
class ExifFields:
    """The EXIF fields records of generation parameters are kept in."""

    user_comment: str | None = None
    make: str | None = None
    """IFD0 ``Make``: ComfyUI's animated WebP keeps ``workflow:<JSON>`` there."""
    model: str | None = None
    """IFD0 ``Model``: ComfyUI's animated WebP keeps ``prompt:<JSON>`` there."""


def read_exif(block: bytes) -> ExifFields:
    """The fields of an EXIF block (TIFF bytes, with or without the ``Exif`` header); nothing
    for a block Pillow cannot parse."""
    exif = Image.Exif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of each damaged tag it skips
            exif.load(block)
            ifd = exif.get_ifd(_EXIF_IFD)
            comment = ifd.get(_USER_COMMENT)
            make, model = exif.get(_MAKE), exif.get(_MODEL)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error, EOFError):
        return ExifFields()  # a damaged EXIF block is ignored, as viewers do
    text = user_comment_text(comment) if isinstance(comment, bytes) else None
    return ExifFields(
        user_comment=text,
        make=make if isinstance(make, str) else None,
        model=model if isinstance(model, str) else None,
    )
