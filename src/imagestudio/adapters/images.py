"""Pillow adapter for the ``ImageInspector`` port: is this an image, and how big is it?

Decoding happens in a worker thread. Only the header is read to learn the size, so a
decompression bomb is refused before its pixels are ever allocated; the rest of the file is
then verified so that truncated images are refused too.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

import anyio.to_thread
from PIL import Image, UnidentifiedImageError

from imagestudio.domain.errors import InvalidParameters
from imagestudio.domain.model import MAX_INPUT_PIXELS, SourceImage

__all__ = ["PillowImageInspector", "inspect_image_bytes"]

_DATA_URI = re.compile(r"data:image/([A-Za-z0-9.+-]+)((?:;[A-Za-z0-9=._+-]+)*?);base64,", re.ASCII)
_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}


def inspect_image_bytes(data: bytes, field_name: str = "image") -> SourceImage:
    """Check ``data`` is a whole, decodable image of at most 64,000,000 pixels (blocking)."""
    if not data:
        raise InvalidParameters(f"{field_name} is empty, not an image", field=field_name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_INPUT_PIXELS:
                    raise InvalidParameters(
                        f"{field_name} has {width}x{height} pixels; at most {MAX_INPUT_PIXELS:,} are allowed",
                        field=field_name,
                    )
                fmt = image.format or "UNKNOWN"
                image.verify()
    except InvalidParameters:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
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
