"""Pillow adapter for the ``ImageInspector`` port: is this an image, and how big is it?

Decoding happens in a worker thread. Only the header is read to learn the size, so a
decompression bomb is refused before its pixels are ever allocated; the rest of the file is
then verified so that truncated images are refused too. Only common raster formats are opened
(:data:`ACCEPTED_FORMATS`): Pillow's other plugins (EPS through Ghostscript, PSD, ICO, ...) are
attack surface a studio does not need. The size reported is the upright one, after the EXIF
orientation, because that is the picture the engines work on.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
import warnings

import anyio.to_thread
from PIL import Image, UnidentifiedImageError

from imagestudio.domain.errors import InvalidParameters
from imagestudio.domain.model import MAX_INPUT_PIXELS, SourceImage

__all__ = ["ACCEPTED_FORMATS", "PillowImageInspector", "inspect_image_bytes", "upright_size"]

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


def upright_size(image: Image.Image) -> tuple[int, int]:
    """Width and height as displayed: swapped when the EXIF orientation turns the picture a quarter."""
    width, height = image.size
    if image.format == "PNG" and "exif" not in image.info:
        return width, height  # Pillow would decode every pixel to look for an eXIf chunk after the data
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except (OSError, SyntaxError, ValueError, struct.error):  # a damaged EXIF block is ignored, as viewers do
        orientation = None
    return (height, width) if orientation in _QUARTER_TURNS else (width, height)


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


def decode_data_uri(uri: str, field_name: str) -> bytes:
    """Decode ``data:image/<type>[;params];base64,<payload>`` (blocking for large payloads)."""
    match = _DATA_URI.match(uri)
    if match is None:
        raise InvalidParameters(f"{field_name} must be a data:image/...;base64, URI", field=field_name)
    payload = uri[match.end() :]
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidParameters(f"{field_name} holds invalid base64", field=field_name) from error


class PillowImageInspector:
    """``ImageInspector`` on Pillow; all work runs in a worker thread."""

    async def inspect(self, data: bytes, field_name: str = "image") -> SourceImage:
        return await anyio.to_thread.run_sync(inspect_image_bytes, data, field_name)

    async def decode_data_uri(self, uri: str, field_name: str) -> bytes:
        return await anyio.to_thread.run_sync(decode_data_uri, uri, field_name)
