"""Canvas: a planar float32 RGB picture, the noise fields and the masks the scene paints with.

Pictures are planar float32 arrays of shape (3, height, width) with values in [0, 1]: with the
channel first, a (height, width) mask broadcasts over long rows instead of 3-element pixels,
which makes every blend several times faster than with interleaved RGB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
from PIL import Image

from imagestudio.adapters.local_engine.palette import F32, _f32


def _smooth_noise(rng: np.random.Generator, points: int, n: int) -> F32:
    """``n`` samples of 1-D value noise through ``points`` random knots in [-1, 1]."""
    knots = rng.uniform(-1.0, 1.0, points + 1).astype(np.float32)
    t = (np.arange(n, dtype=np.float32) + 0.5) * (points / n)
    index = np.minimum(t.astype(np.int64), points - 1)
    frac = t - index
    frac = frac * frac * (3 - 2 * frac)
    return _f32(knots[index] + (knots[index + 1] - knots[index]) * frac)


def _fbm(rng: np.random.Generator, n: int, octaves: int, base: int, ridged: bool) -> F32:
    """1-D fractal noise normalised to [0, 1]; ``ridged`` gives sharp peaks."""
    total = np.zeros(n, dtype=np.float32)
    amplitude = 1.0
    for octave in range(octaves):
        layer = _smooth_noise(rng, base * 2**octave, n)
        total += amplitude * ((1 - np.abs(layer)) if ridged else layer)
        amplitude *= 0.5
    low, high = float(total.min()), float(total.max())
    return ((total - low) / max(high - low, 1e-6)).astype(np.float32)


def _enlarge(small: F32, height: int, width: int, method: Image.Resampling) -> F32:
    """Resize a 2-D float32 array with Pillow (fast, and smooth for smooth fields)."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(small)).resize((width, height), method))


def _field(rng: np.random.Generator, h: int, w: int, cells: int) -> F32:
    """A smooth 2-D noise field of shape (h, w), roughly in [-1, 1], with ``cells`` blobs across."""
    gw = cells + 1
    gh = max(2, round(cells * h / max(w, 1) * 0.6) + 1)
    mid_h, mid_w = max(1, h // 4), max(1, w // 4)
    mid = np.zeros((mid_h, mid_w), dtype=np.float32)
    for octave, weight in enumerate((0.6, 0.3, 0.15)):
        grid = rng.standard_normal((gh * 2**octave, gw * 2**octave)).astype(np.float32)
        mid += weight * _enlarge(grid, mid_h, mid_w, Image.Resampling.BICUBIC)
    return np.array(_enlarge(mid, h, w, Image.Resampling.BILINEAR))


def _edge(distance: F32) -> F32:
    """An antialiased mask from a signed distance in pixels (positive inside)."""
    return _f32(np.clip(distance + 0.5, 0.0, 1.0))


def _col(colour: F32) -> F32:
    """A colour of shape (3,) as (3, 1, 1); bigger colour arrays pass through."""
    return colour[:, None, None] if colour.ndim == 1 else colour


def _lerp(a: F32, b: F32, t: float) -> F32:
    return (a + (b - a) * t).astype(np.float32)


_WHITE: Final = np.ones(3, dtype=np.float32)


class _Canvas:
    """A planar float32 RGB picture with helpers that paint masks onto parts of it."""

    def __init__(self, height: int, width: int) -> None:
        self.h = height
        self.w = width
        self.unit = float(min(height, width))
        self.img: F32 = np.zeros((3, height, width), dtype=np.float32)
        self.ys: F32 = (np.arange(height, dtype=np.float32) + 0.5)[:, None]
        self.xs: F32 = (np.arange(width, dtype=np.float32) + 0.5)[None, :]

    def rows(self, top: float, bottom: float) -> tuple[int, int]:
        return max(0, math.floor(top)), min(self.h, math.ceil(bottom) + 1)

    def cols(self, left: float, right: float) -> tuple[int, int]:
        return max(0, math.floor(left)), min(self.w, math.ceil(right) + 1)

    def paint(self, top: int, left: int, mask: F32, colour: F32) -> None:
        """Blend ``colour`` over the region whose top-left corner is (top, left), by ``mask``."""
        region = self.img[:, top : top + mask.shape[0], left : left + mask.shape[1]]
        change = _col(colour) - region
        change *= mask
        region += change

    def screen(self, top: int, mask: F32, colour: F32) -> None:
        """Add light: a screen blend of ``colour`` by ``mask`` onto the rows from ``top``."""
        region = self.img[:, top : top + mask.shape[0]]
        change = 1.0 - region
        change *= _col(colour)
        change *= mask
        region += change

    def disc(self, cx: float, cy: float, r: float, colour: F32) -> None:
        top, bottom = self.rows(cy - r - 1, cy + r + 1)
        left, right = self.cols(cx - r - 1, cx + r + 1)
        if top >= bottom or left >= right:
            return
        d = np.sqrt((self.ys[top:bottom] - cy) ** 2 + (self.xs[:, left:right] - cx) ** 2)
        self.paint(top, left, _edge(r - d), colour)

    def polygon(self, points: Sequence[tuple[float, float]], colour: F32) -> None:
        """Fill a convex polygon given clockwise on screen (x right, y down)."""
        xs_, ys_ = [p[0] for p in points], [p[1] for p in points]
        top, bottom = self.rows(min(ys_) - 1, max(ys_) + 1)
        left, right = self.cols(min(xs_) - 1, max(xs_) + 1)
        if top >= bottom or left >= right:
            return
        ys, xs = self.ys[top:bottom], self.xs[:, left:right]
        mask = np.ones((bottom - top, right - left), dtype=np.float32)
        for (x0, y0), (x1, y1) in zip(points, [*points[1:], points[0]], strict=True):
            length = math.hypot(x1 - x0, y1 - y0) or 1.0
            inside = ((x1 - x0) * (ys - y0) - (y1 - y0) * (xs - x0)) / length
            np.minimum(mask, _edge(inside), out=mask)
        self.paint(top, left, mask, colour)

    def band(self, top_y: F32, bottom: float) -> tuple[int, int]:
        """The rows a :meth:`profile` fill covers."""
        return self.rows(float(top_y.min()), bottom)

    def profile(self, top_y: F32, band: tuple[int, int], bottom: float, colour: F32) -> None:
        """Fill below a per-column top edge ``top_y`` (shape (w,)) down to the row ``bottom``.

        ``band`` is :meth:`band` of the same edge; ``colour`` broadcasts to (3, rows, w).
        """
        start, end = band
        if start >= end:
            return
        ys = self.ys[start:end]
        mask = _edge(ys - top_y[None, :])
        if bottom < self.h:
            mask *= _edge(bottom - ys)
        self.paint(start, 0, mask, colour)
