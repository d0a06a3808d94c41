"""Sampler: the small latent denoised toward the scene, and the picture quantised and encoded.

A latent of 1/8 of each side starts as seeded noise and is denoised toward the scene over
``steps`` steps, the way a latent diffusion sampler would. Whatever noise is left is added
back, so few steps look blotchy and many steps look clean.
"""

from __future__ import annotations

import functools
import io
import math
from typing import Final

import numpy as np
from PIL import Image

from imagestudio.adapters.local_engine.canvas import _enlarge
from imagestudio.adapters.local_engine.palette import F32, _f32
from imagestudio.domain.ports import ProgressCallback

JPEG_QUALITY: Final = 95
LATENT_FACTOR: Final = 8
LATENT_NOISE: Final = 0.32  # standard deviation of the starting latent, in 0..1 colour units


def _leftover(steps: int) -> float:
    """The share of the starting noise a sampler of ``steps`` steps leaves behind."""
    return 0.85 * math.exp(-steps / 5.0)


def _downsample(image: F32) -> F32:
    """Average ``LATENT_FACTOR``-square blocks of a planar picture: the latent's target."""
    f = LATENT_FACTOR
    h, w = image.shape[1] // f * f, image.shape[2] // f * f
    rows = image[:, 0:h:f, :w].copy()
    for offset in range(1, f):
        rows += image[:, offset:h:f, :w]
    return _f32(rows.reshape(3, h // f, w // f, f).sum(axis=3) * np.float32(1 / (f * f)))


def _blur(latent: F32) -> F32:
    """A cheap [1, 2, 1] blur, applied twice, of a small latent (edges repeat)."""
    out = latent
    for _ in range(2):
        padded = np.pad(out, ((0, 0), (1, 1), (1, 1)), mode="edge")
        out = (padded[:, :-2] + 2 * padded[:, 1:-1] + padded[:, 2:]) * 0.25
        out = (out[:, :, :-2] + 2 * out[:, :, 1:-1] + out[:, :, 2:]) * 0.25
    return out.astype(np.float32)


def _denoise(
    target: F32, strength: float, steps: int, rng: np.random.Generator, progress: ProgressCallback
) -> F32:
    """Run the sampler on the latent; return what it leaves between itself and ``target``.

    The latent starts at ``target`` plus noise scaled by ``strength``. Each step predicts the
    clean latent (blurrier while noise is high: coarse first, detail later) and moves toward
    it along a geometric noise schedule, as a deterministic DDIM sampler does.
    """
    noise = rng.standard_normal(target.shape, dtype=np.float32)
    if strength <= 0:
        for done in range(1, steps + 1):
            progress(done, steps)
        return np.zeros_like(target)
    coarse = _blur(target)
    sigmas = strength * _leftover(steps) ** (np.arange(steps + 1, dtype=np.float64) / steps)
    latent = target + noise * np.float32(LATENT_NOISE * strength)
    for index in range(steps):
        now, after = float(sigmas[index]), float(sigmas[index + 1])
        predicted = target + (coarse - target) * np.float32(0.6 * min(1.0, now))
        latent = predicted + (latent - predicted) * np.float32(after / now)
        progress(index + 1, steps, functools.partial(_preview, latent))
    return (latent - target).astype(np.float32)


PREVIEW_SIDE: Final = 256
PREVIEW_QUALITY: Final = 70


def _preview(latent: F32) -> bytes:
    """A JPEG of the latent as it stands, at most ``PREVIEW_SIDE`` px on its long side (the
    latent is 1/8 of the picture, so a small one is enlarged to that, never past the picture)."""
    _, height, width = latent.shape
    planes = np.clip(latent * 255 + 0.5, 0, 255).astype(np.uint8)
    image = Image.merge("RGB", [Image.fromarray(planes[k]) for k in range(3)])
    scale = min(PREVIEW_SIDE / max(width, height), LATENT_FACTOR)
    if scale > 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=PREVIEW_QUALITY)
    return out.getvalue()


def _finish(image: F32, residual: F32) -> Image.Image:
    """Add the sampler's leftover to the planar picture and quantise it to 8-bit RGB."""
    # a leftover under about two levels is invisible in 8 bits; adding it would only cost time
    if float(np.abs(residual).max()) >= 2.0 / 255:
        _, height, width = image.shape
        for k in range(3):
            image[k] += _enlarge(residual[k], height, width, Image.Resampling.BILINEAR)
    image *= 255
    image += 0.5
    np.clip(image, 0, 255, out=image)
    planes = image.astype(np.uint8)
    return Image.merge("RGB", [Image.fromarray(planes[k]) for k in range(3)])


def _encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
