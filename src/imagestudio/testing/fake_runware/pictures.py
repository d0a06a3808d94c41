"""The pictures: a deterministic render of prompt and seed, a Lanczos upscale, input image formats.

A text-to-image picture is rendered once per (prompt, seed, size, format) and then served from a
small cache: a real provider renders on its own machines, so a fake on the client's machine should
not charge the client's CPU for it on every call.
"""

from __future__ import annotations

import functools
import hashlib
import io
from typing import Final

import numpy as np
from PIL import Image

__all__ = ["MAX_UPSCALE_SIDE"]

MAX_UPSCALE_SIDE: Final = 4096

_FORMATS: Final = {
    "JPG": ("jpg", "JPEG", "image/jpeg"),
    "PNG": ("png", "PNG", "image/png"),
    "WEBP": ("webp", "WEBP", "image/webp"),
}
_INPUT_FORMATS: Final = frozenset({"JPEG", "PNG", "WEBP"})  # RUNWARE.md point 6
_MEDIA_TYPES: Final = {ext: media for ext, _, media in _FORMATS.values()}


def _encode_image(image: Image.Image, output_format: str, quality: int) -> bytes:
    _, pillow_format, _ = _FORMATS[output_format]
    if pillow_format == "JPEG" and image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=pillow_format, quality=quality)
    return buffer.getvalue()


def _render(
    prompt: str,
    seed: int,
    width: int,
    height: int,
    seed_image: bytes | None,
    strength: float,
    output_format: str,
    quality: int,
) -> bytes:
    """A deterministic picture of prompt and seed: a two-colour gradient with soft stripes."""
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    start, end = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
    angle, frequency = rng.uniform(0, np.pi), rng.uniform(2, 12)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xs / max(width - 1, 1)) * np.cos(angle) + (ys / max(height - 1, 1)) * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    stripes = 0.5 + 0.5 * np.sin(ramp * frequency * np.pi)
    mix = (0.7 * ramp + 0.3 * stripes)[..., None]
    pixels = start * (1 - mix) + end * mix
    if seed_image is not None:
        with Image.open(io.BytesIO(seed_image)) as source:
            base = np.asarray(
                source.convert("RGB").resize((width, height), Image.Resampling.LANCZOS), np.float32
            )
        pixels = base * (1 - strength) + pixels * strength
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return _encode_image(picture, output_format, quality)


@functools.lru_cache(maxsize=32)
def _rendered(prompt: str, seed: int, width: int, height: int, output_format: str, quality: int) -> bytes:
    """:func:`_render` of a text-to-image picture, remembered (the same arguments give the same bytes)."""
    return _render(prompt, seed, width, height, None, 0.0, output_format, quality)


def _upscaled(data: bytes, factor: int, output_format: str, quality: int) -> bytes:
    """``data`` enlarged ``factor`` times with Lanczos, shrunk to fit 4096 px a side like Runware."""
    with Image.open(io.BytesIO(data)) as source:
        source.load()
        width, height = source.size
        target_w, target_h = width * factor, height * factor
        largest = max(target_w, target_h)
        if largest > MAX_UPSCALE_SIDE:
            target_w = max(1, round(target_w * MAX_UPSCALE_SIDE / largest))
            target_h = max(1, round(target_h * MAX_UPSCALE_SIDE / largest))
        mode = "RGBA" if "A" in source.getbands() and output_format != "JPG" else "RGB"
        bigger = source.convert(mode).resize((target_w, target_h), Image.Resampling.LANCZOS)
    return _encode_image(bigger, output_format, quality)


def _image_extension(data: bytes) -> str | None:
    """The extension under which the fake serves ``data``; ``None`` unless it is a whole PNG, JPG or WEBP."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            pillow_format = image.format
            image.verify()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    if pillow_format not in _INPUT_FORMATS:
        return None
    extensions = {pillow: ext for ext, pillow, _ in _FORMATS.values()}
    return extensions[pillow_format]
