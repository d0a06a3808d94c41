"""Metadata blocks into and out of PNG, JPEG and WebP files, with the pixel data copied as it is.

Writing inserts blocks into the file's container and changes nothing else a decoder reads:

- PNG: text chunks (``tEXt``, or ``iTXt`` for text Latin-1 cannot hold) before the first ``IDAT``,
  so readers that stop at the image data see them too; chunks of the same keywords are dropped;
- JPEG: an APP1 ``Exif`` segment and an APP1 XMP segment right after SOI and any APP0 (JFIF)
  segments; earlier ``Exif`` and XMP segments are dropped;
- WebP: a simple file (one ``VP8 `` or ``VP8L`` chunk) becomes the extended form (a ``VP8X``
  chunk with the canvas size and the EXIF and XMP flags, then the image, then ``EXIF`` and
  ``XMP `` chunks); an extended one gets new ``EXIF`` and ``XMP `` chunks; the RIFF size is
  rewritten.

Reading walks the same structures without decoding pixels: PNG text chunks (compressed ones
inflated up to :data:`MAX_TEXT_BYTES`), ``eXIf`` and XMP; JPEG APP1 EXIF and XMP; WebP ``EXIF``
and ``XMP ``. A file whose structure does not hold together raises :class:`Unreadable`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "MAX_TEXT_BYTES",
    "Blocks",
    "Found",
    "Unreadable",
    "embed",
    "extract",
    "sniff",
]

Kind = Literal["png", "jpeg", "webp"]

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
XMP_KEYWORD: Final = "XML:com.adobe.xmp"
"""The PNG ``iTXt`` keyword of an XMP packet."""
EXIF_HEADER: Final = b"Exif\x00\x00"
XMP_HEADER: Final = b"http://ns.adobe.com/xap/1.0/\x00"
MAX_SEGMENT: Final = 65533
"""The most payload one JPEG segment can carry (its length field counts itself)."""
MAX_TEXT_BYTES: Final = 8 * 1024 * 1024
"""The longest text read from one block; a compressed chunk that inflates past it is skipped."""
MAX_TOTAL_TEXT: Final = 32 * 1024 * 1024
"""The most text read from one file, whatever its blocks inflate to."""

_TEXT_CHUNKS: Final = (b"tEXt", b"zTXt", b"iTXt")
_VP8X_EXIF: Final = 0x08
_VP8X_XMP: Final = 0x04
_VP8X_ALPHA: Final = 0x10


class Unreadable(ValueError):
    """The bytes are not a PNG, JPEG or WebP whose structure holds together."""


@dataclass(frozen=True, kw_only=True)
class Blocks:
    """What to write: PNG text chunks by keyword, and for JPEG and WebP an EXIF block (TIFF bytes,
    without the ``Exif`` header) and an XMP packet (either may be empty: not written)."""

    texts: Mapping[str, str] = field(default_factory=dict)
    replaces: Collection[str] = ()
    """PNG keywords whose existing text chunks are dropped (the ones written replace them)."""
    exif: bytes = b""
    xmp: bytes = b""


@dataclass(frozen=True, kw_only=True)
class Found:
    """What a file carries: PNG text chunks by keyword (the first of a keyword wins), its EXIF
    block (TIFF bytes) and its XMP packet."""

    texts: dict[str, str] = field(default_factory=dict)
    exif: bytes | None = None
    xmp: bytes | None = None


def sniff(data: bytes) -> Kind | None:
    """The container ``data`` is, by its first bytes; ``None`` for every other format."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    return None


def embed(data: bytes, blocks: Blocks) -> bytes:
    """``data`` with ``blocks`` written in; :class:`Unreadable` if it is not a file of ours to write."""
    kind = sniff(data)
    if kind == "png":
        return _png_embed(data, blocks)
    if kind == "jpeg":
        return _jpeg_embed(data, blocks)
    if kind == "webp":
        return _webp_embed(data, blocks)
    raise Unreadable("not a PNG, JPEG or WebP file")


def extract(data: bytes) -> Found:
    """The blocks ``data`` carries (nothing for a format without any); :class:`Unreadable` if its
    structure does not hold together."""
    kind = sniff(data)
    if kind == "png":
        return _png_extract(data)
    if kind == "jpeg":
        return _jpeg_extract(data)
    if kind == "webp":
        return _webp_extract(data)
    return Found()


# --- PNG ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Chunk:
    kind: bytes
    start: int
    """Where the chunk (its length field) starts."""
    end: int
    """Just after its CRC."""
    payload: bytes


def _png_chunks(data: bytes) -> Iterator[_Chunk]:
    """Every chunk up to and including ``IEND``."""
    at = len(PNG_SIGNATURE)
    while True:
        if at + 12 > len(data):
            raise Unreadable("PNG ends before its IEND chunk")
        (length,) = struct.unpack_from(">I", data, at)
        kind = data[at + 4 : at + 8]
        end = at + 12 + length
        if length > 0x7FFFFFFF or end > len(data) or not kind.isalpha():
            raise Unreadable("PNG chunk runs past the end of the file")
        yield _Chunk(kind, at, end, data[at + 8 : at + 8 + length])
        if kind == b"IEND":
            return
        at = end


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_text_chunk(keyword: str, text: str) -> bytes:
    """A ``tEXt`` chunk, or an uncompressed ``iTXt`` (UTF-8) for text Latin-1 cannot hold, as
    Pillow's ``PngInfo.add_text`` and so AUTOMATIC1111 write them."""
    key = keyword.encode("latin-1")
    try:
        return _png_chunk(b"tEXt", key + b"\x00" + text.encode("latin-1"))
    except UnicodeEncodeError:
        # keyword, NUL, compression flag and method (0, 0), language tag, NUL, translated keyword, NUL
        return _png_chunk(b"iTXt", key + b"\x00\x00\x00" + b"\x00" + b"\x00" + text.encode("utf-8"))


def _png_keyword(chunk: _Chunk) -> str | None:
    if chunk.kind not in _TEXT_CHUNKS:
        return None
    key, sep, _ = chunk.payload.partition(b"\x00")
    return key.decode("latin-1") if sep else None


def _png_embed(data: bytes, blocks: Blocks) -> bytes:
    chunks = list(_png_chunks(data))
    if not chunks or chunks[0].kind != b"IHDR":
        raise Unreadable("PNG does not start with IHDR")
    first_data = next((i for i, chunk in enumerate(chunks) if chunk.kind == b"IDAT"), None)
    if first_data is None:
        raise Unreadable("PNG has no image data")
    dropped = set(blocks.replaces) | set(blocks.texts)
    written = b"".join(_png_text_chunk(key, text) for key, text in blocks.texts.items())
    out = bytearray(data[: len(PNG_SIGNATURE)])
    for index, chunk in enumerate(chunks):
        if index == first_data:
            out += written
        if _png_keyword(chunk) not in dropped:
            out += data[chunk.start : chunk.end]
    out += data[chunks[-1].end :]  # whatever follows IEND, as it was
    return bytes(out)


class _TextBudget:
    """What is left of :data:`MAX_TOTAL_TEXT` for one file."""

    def __init__(self) -> None:
        self.left = MAX_TOTAL_TEXT

    def inflate(self, compressed: bytes) -> bytes | None:
        """``compressed`` inflated, or ``None`` if it is damaged or longer than allowed."""
        limit = min(MAX_TEXT_BYTES, self.left)
        inflater = zlib.decompressobj()
        try:
            text = inflater.decompress(compressed, limit + 1)
        except zlib.error:
            return None
        if len(text) > limit:
            return None
        return self.take(text)

    def take(self, text: bytes) -> bytes | None:
        if len(text) > min(MAX_TEXT_BYTES, self.left):
            return None
        self.left -= len(text)
        return text


def _png_text(chunk: _Chunk, budget: _TextBudget) -> tuple[str, str] | None:
    """The keyword and text of a text chunk, or ``None`` if it cannot be read."""
    key, sep, rest = chunk.payload.partition(b"\x00")
    if not sep or not 1 <= len(key) <= 79:
        return None
    keyword = key.decode("latin-1")
    if chunk.kind == b"tEXt":
        raw = budget.take(rest)
        return None if raw is None else (keyword, raw.decode("latin-1"))
    if chunk.kind == b"zTXt":
        if not rest or rest[0] != 0:
            return None
        raw = budget.inflate(rest[1:])
        return None if raw is None else (keyword, raw.decode("latin-1"))
    if len(rest) < 2:
        return None
    compressed, method, rest = rest[0], rest[1], rest[2:]
    _language, sep1, rest = rest.partition(b"\x00")
    _translated, sep2, text = rest.partition(b"\x00")
    if not (sep1 and sep2) or method != 0:
        return None
    raw = budget.inflate(text) if compressed else budget.take(text)
    return None if raw is None else (keyword, raw.decode("utf-8", errors="replace"))


def _png_extract(data: bytes) -> Found:
    texts: dict[str, str] = {}
    exif: bytes | None = None
    budget = _TextBudget()
    for chunk in _png_chunks(data):
        if chunk.kind == b"eXIf" and exif is None:
            exif = chunk.payload
        elif chunk.kind in _TEXT_CHUNKS:
            found = _png_text(chunk, budget)
            if found is not None:
                texts.setdefault(*found)
    xmp = texts.pop(XMP_KEYWORD, None)
    return Found(texts=texts, exif=exif, xmp=None if xmp is None else xmp.encode("utf-8"))


# --- JPEG -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Segment:
    marker: int
    start: int
    end: int
    payload: bytes


def _jpeg_header(data: bytes) -> tuple[list[_Segment], int]:
    """The segments before the scan, and where the scan's SOS segment starts."""
    segments: list[_Segment] = []
    at = 2
    while True:
        if at + 1 >= len(data) or data[at] != 0xFF:
            raise Unreadable("JPEG marker expected")
        while at + 1 < len(data) and data[at + 1] == 0xFF:  # fill bytes
            at += 1
        if at + 1 >= len(data):
            raise Unreadable("JPEG ends before its scan")
        marker = data[at + 1]
        if marker == 0xDA:  # SOS: the entropy-coded data follows
            return segments, at
        if marker in (0xD8, 0xD9) or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            raise Unreadable("JPEG marker without a segment before the scan")
        if at + 4 > len(data):
            raise Unreadable("JPEG segment runs past the end of the file")
        (length,) = struct.unpack_from(">H", data, at + 2)
        end = at + 2 + length
        if length < 2 or end > len(data):
            raise Unreadable("JPEG segment runs past the end of the file")
        segments.append(_Segment(marker, at, end, data[at + 4 : end]))
        at = end


def _is_ours_to_replace(segment: _Segment) -> bool:
    return segment.marker == 0xE1 and segment.payload.startswith((EXIF_HEADER, XMP_HEADER))


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    if len(payload) > MAX_SEGMENT:
        raise ValueError("a JPEG segment holds at most 65533 bytes")
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _jpeg_embed(data: bytes, blocks: Blocks) -> bytes:
    segments, scan = _jpeg_header(data)
    written = b""
    if blocks.exif:
        written += _jpeg_segment(0xE1, EXIF_HEADER + blocks.exif)
    if blocks.xmp:
        written += _jpeg_segment(0xE1, XMP_HEADER + blocks.xmp)
    leading = 0
    while leading < len(segments) and segments[leading].marker == 0xE0:  # APP0: JFIF, JFXX
        leading += 1
    out = bytearray(data[:2])
    for index, segment in enumerate(segments):
        if index == leading:
            out += written
        if not _is_ours_to_replace(segment):
            out += data[segment.start : segment.end]
    if leading == len(segments):
        out += written
    out += data[scan:]
    return bytes(out)


def _jpeg_extract(data: bytes) -> Found:
    exif: bytes | None = None
    xmp: bytes | None = None
    for segment in _jpeg_header(data)[0]:
        if segment.marker != 0xE1:
            continue
        if segment.payload.startswith(EXIF_HEADER) and exif is None:
            exif = segment.payload[len(EXIF_HEADER) :]
        elif segment.payload.startswith(XMP_HEADER) and xmp is None:
            xmp = segment.payload[len(XMP_HEADER) :]
    return Found(exif=exif, xmp=xmp)


# --- WebP -----------------------------------------------------------------------------------


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every chunk of the RIFF container as (FourCC, payload)."""
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end = min(len(data), 8 + riff_size)
    chunks: list[tuple[bytes, bytes]] = []
    at = 12
    while at + 8 <= end:
        kind = data[at : at + 4]
        (size,) = struct.unpack_from("<I", data, at + 4)
        if at + 8 + size > end:
            raise Unreadable("WebP chunk runs past the end of the file")
        chunks.append((kind, data[at + 8 : at + 8 + size]))
        at += 8 + size + (size & 1)
    if not chunks:
        raise Unreadable("WebP file has no chunks")
    return chunks


def _webp_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) & 1 else b"")


def _canvas(kind: bytes, payload: bytes) -> tuple[int, int, bool]:
    """Width, height and whether it has alpha, from a simple file's bitstream header."""
    if kind == b"VP8 ":
        if len(payload) < 10 or payload[3:6] != b"\x9d\x01\x2a":
            raise Unreadable("VP8 bitstream without a key frame header")
        width, height = struct.unpack_from("<HH", payload, 6)
        return width & 0x3FFF, height & 0x3FFF, False
    if kind == b"VP8L":
        if len(payload) < 5 or payload[0] != 0x2F:
            raise Unreadable("VP8L bitstream without its signature")
        (bits,) = struct.unpack_from("<I", payload, 1)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool((bits >> 28) & 1)
    raise Unreadable("WebP file without a VP8X, VP8 or VP8L chunk first")


def _webp_embed(data: bytes, blocks: Blocks) -> bytes:
    chunks = _webp_chunks(data)
    kind, payload = chunks[0]
    if kind == b"VP8X":
        if len(payload) < 10:
            raise Unreadable("VP8X chunk too short")
        flags = payload[0]
        header = payload
        rest = chunks[1:]
    else:
        width, height, alpha = _canvas(kind, payload)
        flags = _VP8X_ALPHA if alpha else 0
        # flags, three reserved bytes, then the canvas width and height less one, 24 bits each
        header = bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        rest = chunks
    kept = [(k, p) for k, p in rest if k not in (b"EXIF", b"XMP ")]
    flags &= ~(_VP8X_EXIF | _VP8X_XMP)
    added: list[tuple[bytes, bytes]] = []
    if blocks.exif:
        flags |= _VP8X_EXIF
        added.append((b"EXIF", blocks.exif))
    if blocks.xmp:
        flags |= _VP8X_XMP
        added.append((b"XMP ", blocks.xmp))
    body = _webp_chunk(b"VP8X", bytes((flags,)) + header[1:])
    body += b"".join(_webp_chunk(k, p) for k, p in kept + added)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def _webp_extract(data: bytes) -> Found:
    exif: bytes | None = None
    xmp: bytes | None = None
    for kind, payload in _webp_chunks(data):
        if kind == b"EXIF" and exif is None:
            exif = payload[len(EXIF_HEADER) :] if payload.startswith(EXIF_HEADER) else payload
        elif kind == b"XMP " and xmp is None:
            xmp = payload
    return Found(exif=exif, xmp=xmp)
