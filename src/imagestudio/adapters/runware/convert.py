"""Input images as Runware takes them: PNG, JPG or WEBP, 8 bits, RGB(A), no larger than needed.

RUNWARE.md point 6: Runware reads PNG, JPG and WEBP only. GIF (its first frame), BMP, TIFF and
anything else becomes PNG, lossless; so do CMYK and 16-bit images, which some decoders refuse
or misread. An image larger than the model needs is shrunk (Lanczos) before it travels.
"""

from __future__ import annotations

import io
from typing import Final

import numpy as np
from PIL import Image

from imagestudio.domain.model import SourceImage

__all__ = ["as_sent"]

_SENDABLE: Final = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}
_PLAIN_MODES: Final = frozenset({"RGB", "RGBA", "L", "LA", "P"})


def as_sent(source: SourceImage, *, max_side: int | None = None) -> tuple[bytes, str]:
    """The bytes to send for ``source`` and their media type (blocking: run it in a worker thread)."""
    media_type = _SENDABLE.get(source.format.lower())
    too_large = max_side is not None and max(source.width, source.height) > max_side
    with Image.open(io.BytesIO(source.data)) as image:
        if media_type is not None and image.mode in _PLAIN_MODES and not too_large:
            return source.data, media_type
        image.seek(0)
        picture = _eight_bit(image)
        if too_large:
            assert max_side is not None
            picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue(), "image/png"


def _eight_bit(image: Image.Image) -> Image.Image:
    """An RGB or RGBA copy of ``image``; 16-bit and float images are scaled down, not clipped."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(values * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    has_alpha = "A" in image.getbands() or (mode == "P" and "transparency" in image.info)
    return image.convert("RGBA" if has_alpha else "RGB")
