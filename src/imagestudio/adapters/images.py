"""Pillow adapters for the ``ImageInspector`` port (is this an image, and how big is it?) and the
``ThumbnailMaker`` port (the small WebP of a stored image).

Decoding happens in a worker thread. Only the header is read to learn the size, so a
decompression bomb is refused before its pixels are ever allocated; the rest of the file is
then verified so that truncated images are refused too. Only common raster formats are opened
(:data:`ACCEPTED_FORMATS`): Pillow's other plugins (EPS through Ghostscript, PSD, ICO, ...) are
attack surface a studio does not need. The size reported is the upright one, after the EXIF
orientation, because that is the picture the engines work on.

Memory: every full decode in this process takes its decoded size from one :class:`DecodeBudget`
(:data:`DECODE_BUDGET`, 512 MiB: 128 million RGB pixels as Pillow stores them) before it
allocates, so a few tall images cannot take gigabytes at once: a decode that does not fit waits
for others to finish, and one larger than the whole budget runs alone. Thumbnails take their
decode from the same budget. After a burst,
:func:`release_freed_memory` hands the memory the C allocator kept back to the system.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import io
import re
import struct
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Final, cast

import anyio.to_thread
from PIL import Image, UnidentifiedImageError

from imagestudio.domain.errors import InvalidParameters, StorageError
from imagestudio.domain.model import MAX_INPUT_PIXELS, THUMBNAIL_SIDE, SourceImage

__all__ = [
    "ACCEPTED_FORMATS",
    "DECODE_BUDGET",
    "DecodeBudget",
    "PillowImageInspector",
    "PillowThumbnailMaker",
    "decoded_bytes",
    "inspect_image_bytes",
    "make_thumbnail",
    "release_freed_memory",
    "upright_size",
]

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG opens MPO files too
"""The Pillow formats an input image may be in; anything else is refused as not an image."""
_EXIF_ORIENTATION = 0x0112
_QUARTER_TURNS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height

_DATA_URI = re.compile(r"data:image/([A-Za-z0-9.+-]+)((?:;[A-Za-z0-9=._+-]+)*?);base64,", re.ASCII)
_FORMATS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tiff",
}
_TOO_MANY = "{field} has more than {limit:,} pixels"


class DecodeBudget:
    """A weighted semaphore over bytes of decoded pixels, shared by threads.

    Rules:
    - ``take(n)`` blocks until ``n`` more bytes fit under ``limit``; a request larger than the
      whole budget is clamped to it (it waits until nothing else is decoding, then runs alone);
    - waiting is first come, first served, so a large decode is not starved by small ones.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a decode budget needs at least one byte")
        self.limit = limit
        self.in_use = 0
        self.waiting = 0
        self._changed = threading.Condition()
        self._tickets = 0
        self._serving = 0

    @contextmanager
    def take(self, size: int) -> Iterator[None]:
        size = max(0, min(size, self.limit))
        with self._changed:
            ticket = self._tickets
            self._tickets += 1
            self.waiting += 1
            try:
                self._changed.wait_for(lambda: self._serving == ticket and self.in_use + size <= self.limit)
            finally:
                self.waiting -= 1
            self.in_use += size
            self._serving += 1
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= size
                self._changed.notify_all()


DECODE_BUDGET: Final = DecodeBudget(512 * 1024 * 1024)
"""The process's budget of decoded pixel bytes (see the module docstring)."""

_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "LA": 4, "PA": 4}


_ROW_POINTER = 8  # Pillow keeps a pointer per row: a 1x64,000,000 image spends 512 MB on them alone


def decoded_bytes(image: Image.Image, copy: int = 0) -> int:
    """The bytes Pillow allocates to decode ``image`` (from its header: nothing is decoded), plus a
    copy of ``copy`` bytes a pixel (a conversion made while the decode is held)."""
    width, height = image.size
    return height * _ROW_POINTER + width * height * (_BYTES_PER_PIXEL.get(image.mode, 4) + copy)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        try:  # glibc's name first: find_library runs ldconfig in a child process
            libc = ctypes.CDLL("libc.so.6")
        except OSError:
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return cast("Callable[[int], int]", trim)


_TRIM_DELAY: Final = 2.0  # seconds: the requests a burst's last task answers free their bodies meanwhile
_trim_pending = threading.Lock()


def release_freed_memory() -> None:
    """Soon give the memory the C allocator keeps after large frees back to the system (glibc's
    ``malloc_trim``, in a thread of its own a moment later, once per moment; nothing elsewhere)."""
    if _malloc_trim() is None or not _trim_pending.acquire(blocking=False):
        return
    timer = threading.Timer(_TRIM_DELAY, _trim_now)
    timer.daemon = True
    timer.start()


def _trim_now() -> None:
    try:
        trim = _malloc_trim()
        if trim is not None:
            trim(0)
    finally:
        _trim_pending.release()


def upright_size(image: Image.Image) -> tuple[int, int]:
    """Width and height as displayed: swapped when the EXIF orientation turns the picture a quarter."""
    width, height = image.size
    return (height, width) if _orientation(image) in _QUARTER_TURNS else (width, height)


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation of an opened image (``None`` without one), read from its header."""
    if image.format == "PNG" and "exif" not in image.info:
        return None  # Pillow would decode every pixel to look for an eXIf chunk after the data
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except (OSError, SyntaxError, ValueError, struct.error):  # a damaged EXIF block is ignored, as viewers do
        return None
    return orientation if isinstance(orientation, int) else None


def inspect_image_bytes(data: bytes, field_name: str = "image") -> SourceImage:
    """Check ``data`` is a whole, decodable image of at most 64,000,000 pixels (blocking)."""
    if not data:
        raise InvalidParameters(f"{field_name} is empty, not an image", field=field_name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
                width, height = image.size
                if width * height > MAX_INPUT_PIXELS:
                    raise InvalidParameters(
                        f"{field_name} has {width}x{height} pixels; at most {MAX_INPUT_PIXELS:,} are allowed",
                        field=field_name,
                    )
                width, height = upright_size(image)
                fmt = image.format or "UNKNOWN"
                image.verify()
    except InvalidParameters:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # Pillow's own guard fires first for sizes far past ours: the same answer, from the header alone
        message = _TOO_MANY.format(field=field_name, limit=MAX_INPUT_PIXELS)
        raise InvalidParameters(message, field=field_name) from error
    except UnidentifiedImageError as error:
        raise InvalidParameters(f"{field_name} is not a supported image", field=field_name) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InvalidParameters(f"{field_name} is truncated or damaged", field=field_name) from error
    if width <= 0 or height <= 0:
        raise InvalidParameters(f"{field_name} has no pixels", field=field_name)
    return SourceImage(data=data, width=width, height=height, format=_FORMATS.get(fmt, fmt.lower()))


_BASE64_SLICE = 1 << 18
"""Characters of base64 decoded per call (a multiple of 4): each call holds the GIL for well under a
millisecond, so the event loop keeps answering while a 32 MiB data URI is decoded in a thread."""


def decode_data_uri(uri: str, field_name: str) -> bytes:
    """Decode ``data:image/<type>[;params];base64,<payload>`` (blocking for large payloads).

    The payload is decoded slice by slice into one buffer: no copy of the whole payload is made,
    and the GIL is given up between slices. Padding (``=``) may only end the payload.
    """
    match = _DATA_URI.match(uri)
    if match is None:
        raise InvalidParameters(f"{field_name} must be a data:image/...;base64, URI", field=field_name)
    start, end = match.end(), len(uri)
    decoded = bytearray()
    try:
        for at in range(start, end, _BASE64_SLICE):
            piece = uri[at : min(at + _BASE64_SLICE, end)]
            chunk = base64.b64decode(piece, validate=True)
            if at + _BASE64_SLICE < end and len(chunk) != len(piece) // 4 * 3:
                raise ValueError("padding before the end of the payload")
            decoded += chunk
    except (binascii.Error, ValueError) as error:
        raise InvalidParameters(f"{field_name} holds invalid base64", field=field_name) from error
    return bytes(decoded)


_UPRIGHT: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""The turn that shows an image upright, by its EXIF orientation."""
THUMBNAIL_QUALITY: Final = 80
_THUMBNAIL_METHOD: Final = 2  # libwebp's effort (0-6): 4, its default, took twice the time for 7% fewer bytes
_REDUCING_GAP: Final = 2.0  # Image.thumbnail's default: reduce by whole factors to twice the size first
_RESIZABLE_MODES = frozenset({"RGB", "RGBA", "L", "LA"})


def make_thumbnail(data: bytes, side: int = THUMBNAIL_SIDE) -> bytes:
    """A WebP of the image ``data`` at most ``side`` pixels on its long side (blocking).

    Upright (EXIF orientation applied), aspect kept, never enlarged, without metadata but its
    colour profile. A JPEG is decoded at a reduced scale when it is much larger; the decode takes
    its size from :data:`DECODE_BUDGET` first, and the full-size pixels are freed before it is given
    back. ``StorageError`` if ``data`` is not an image this can decode.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as opened:
                if opened.width * opened.height > MAX_INPUT_PIXELS:
                    raise StorageError(
                        f"Could not make the thumbnail: the image has more than {MAX_INPUT_PIXELS:,} pixels"
                    )
                orientation = _orientation(opened)
                turn = None if orientation is None else _UPRIGHT.get(orientation)
                profile = opened.info.get("icc_profile")
                if opened.format in ("JPEG", "MPO"):
                    # decoded at 1/2, 1/4 or 1/8 scale, never below the thumbnail's size: libjpeg's
                    # scaled decode is most of the shrinking, and the budget is taken for what it allocates
                    opened.draft("RGB", (side, side))
                with DECODE_BUDGET.take(decoded_bytes(opened, copy=4)):
                    try:
                        opened.load()
                        image: Image.Image = opened
                        if image.mode not in _RESIZABLE_MODES:  # palette, 16-bit, CMYK: resized as colour
                            image = image.convert("RGBA" if image.has_transparency_data else "RGB")
                        image.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
                        if image is opened:
                            image = image.copy()  # small now; the file's pixels go with the file
                    finally:
                        opened.close()
        if turn is not None:
            image = image.transpose(turn)  # after shrinking: the square bound does not care
        out = io.BytesIO()
        image.save(
            out, format="WEBP", quality=THUMBNAIL_QUALITY, method=_THUMBNAIL_METHOD, icc_profile=profile
        )
        return out.getvalue()
    except StorageError:
        raise
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
    ) as error:
        raise StorageError("Could not make the thumbnail: the image could not be decoded") from error


class PillowThumbnailMaker:
    """``ThumbnailMaker`` on Pillow (:func:`make_thumbnail`); the work runs in a worker thread."""

    def __init__(self, side: int = THUMBNAIL_SIDE) -> None:
        self.side = side

    async def thumbnail(self, data: bytes) -> bytes:
        return await anyio.to_thread.run_sync(make_thumbnail, data, self.side)


class PillowImageInspector:
    """``ImageInspector`` on Pillow; all work runs in a worker thread."""

    async def inspect(self, data: bytes, field_name: str = "image") -> SourceImage:
        return await anyio.to_thread.run_sync(inspect_image_bytes, data, field_name)

    async def decode_data_uri(self, uri: str, field_name: str) -> bytes:
        return await anyio.to_thread.run_sync(decode_data_uri, uri, field_name)
