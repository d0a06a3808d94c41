"""Scene: one composition (sky, light, land, water, city, trees, shapes) painted on a canvas.

A scene is painted at full resolution with vectorised numpy from a reading, a palette and
random streams seeded per layer, so one layer's presence never moves another. It stays one
module of about 500 lines because it is one concept: the layers of one picture, in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from imagestudio.adapters.local_engine.canvas import (
    _WHITE,
    _Canvas,
    _col,
    _edge,
    _enlarge,
    _fbm,
    _field,
    _lerp,
    _smooth_noise,
)
from imagestudio.adapters.local_engine.palette import F32, _f
from imagestudio.adapters.local_engine.reading import _SHAPES, _Reading, _stable_hash
from imagestudio.domain.model import ImageSpec


@dataclass(frozen=True, slots=True)
class _Light:
    """The sun or moon: where it is and what colour it shines."""

    x: float
    y: float
    r: float
    colour: F32


class _Scene:
    """Paints one composition from a reading, a palette and seeded random streams."""

    def __init__(self, spec: ImageSpec, reading: _Reading, pal: dict[str, F32]) -> None:
        self.c = _Canvas(spec.height, spec.width)
        self.reading = reading
        self.pal = pal
        self.forms = reading.forms
        self.moods = set(reading.moods)
        self._entropy = [spec.seed, _stable_hash(spec.prompt)]
        layout = self.rng(0)
        span = (0.62, 0.72)
        if "water" in self.forms and not self.forms & {"mountains", "city"}:
            span = (0.5, 0.62)
        self.horizon = spec.height * float(layout.uniform(*span))
        self.night = bool(self.moods & {"night", "neon"})
        self.shore_line: float | None = None

    def rng(self, layer: int) -> np.random.Generator:
        """A random stream per layer, so one layer's presence never moves another."""
        return np.random.default_rng([*self._entropy, layer])

    def render(self) -> F32:
        forms = self.forms
        self.sky()
        if "stars" in forms or "night" in self.moods:
            self.stars()
        light = self.light()
        if "clouds" in forms or "storm" in self.moods:
            self.clouds(dense="storm" in self.moods)
        if not (forms or self.moods or self.reading.lands):
            self.orbs()
        if "mountains" in forms:
            self.ridges(layers=3, ridged=True)
        if "hills" in forms or not forms & {"water", "city"}:
            self.ridges(layers=2, ridged=False)
        if "city" in forms:
            self.city()
        if "water" in forms:
            self.water(light)
            if forms & {"trees", "cabin"} or "desert" in self.reading.lands:
                self.shore()
        else:
            self.ground()
        if "trees" in forms or "cabin" in forms:
            self.trees_and_cabin()
        self.shapes(light)
        self.vignette()
        return self.c.img

    # --- layers ---

    def sky(self) -> None:
        c = self.c
        t = np.clip(c.ys / self.horizon, 0.0, 1.0) ** 1.25
        gradient = _col(self.pal["sky_top"]) + _col(self.pal["sky_horizon"] - self.pal["sky_top"]) * t
        texture = _field(self.rng(1), c.h, c.w, 5)
        texture *= 0.035
        texture += 1
        np.multiply(gradient, texture, out=c.img)

    def light(self) -> _Light | None:
        c, pal = self.c, self.pal
        rng = self.rng(2)
        x = c.w * float(rng.uniform(0.22, 0.78))
        sunset = bool(self.moods & {"sunset", "fire"})
        banned = self.reading.banned
        wants_sun = "sun" in self.forms or (sunset and not ({"sun", "moon"} & (self.forms | banned)))
        wants_moon = "moon" in self.forms or ("night" in self.moods and "moon" not in banned)
        if not wants_sun and not (wants_moon and rng.random() < 0.75):
            return None
        if wants_sun:
            r = c.unit * float(rng.uniform(0.07, 0.1) if sunset else rng.uniform(0.05, 0.075))
            if not sunset:
                y = c.h * float(rng.uniform(0.14, 0.3))
            elif self.forms & {"mountains", "city"}:
                y = self.horizon - c.h * float(rng.uniform(0.22, 0.34))
            else:
                y = self.horizon - r * float(rng.uniform(0.1, 0.9))
            colour = pal["accent"] if sunset else _lerp(pal["accent"], _WHITE, 0.6)
            glow, reach = (0.45, 0.28) if sunset else (0.3, 0.26)
        else:
            r = c.unit * float(rng.uniform(0.045, 0.07))
            y = c.h * float(rng.uniform(0.12, 0.28))
            colour = _lerp(pal["accent"], _f((236, 236, 226)), 0.5)
            glow, reach = (0.28, 0.25)
        bottom = min(c.h, math.ceil(self.horizon) + 2)
        sigma = c.unit * reach
        # the glow is smooth, so it is computed at 1/8 scale and enlarged
        small_h, small_w = max(2, bottom // 8), max(2, c.w // 8)
        sy = (np.arange(small_h, dtype=np.float32)[:, None] + 0.5) * (bottom / small_h)
        sx = (np.arange(small_w, dtype=np.float32)[None, :] + 0.5) * (c.w / small_w)
        exponent = np.maximum(((sy - y) ** 2 + (sx - x) ** 2) * np.float32(-0.5 / sigma**2), -30.0)
        small = (np.exp(exponent) * glow).astype(np.float32)
        c.screen(0, _enlarge(small, bottom, c.w, Image.Resampling.BILINEAR), pal["accent"])
        if wants_sun or rng.random() < 0.4:
            c.disc(x, y, r, colour)
        else:
            # a crescent: the part of the disc outside a second, offset disc is lit
            phase = float(rng.uniform(0.3, 0.65)) * (1 if rng.random() < 0.5 else -1)
            top, bottom = c.rows(y - r - 1, y + r + 1)
            left, right = c.cols(x - r - 1, x + r + 1)
            ys, xs = c.ys[top:bottom], c.xs[:, left:right]
            body = _edge(r - np.sqrt((ys - y) ** 2 + (xs - x) ** 2))
            shadow = _edge(r * 0.97 - np.sqrt((ys - y + r * 0.15) ** 2 + (xs - x - r * phase) ** 2))
            c.paint(top, left, body * 0.9, pal["sky_top"] * 0.8)
            c.paint(top, left, body * (1 - shadow), colour)
        return _Light(x, y, r, colour)

    def stars(self) -> None:
        c = self.c
        rng = self.rng(3)
        count = 900
        u = rng.random(count)
        v = rng.random(count) ** 1.3
        brightness = (0.25 + 0.75 * rng.random(count) ** 3).astype(np.float32)
        keep = rng.random(count) < c.w * c.h / (1024 * 1024) * 0.9 + 0.1
        ys = (v * self.horizon * 0.97).astype(np.int64)[keep]
        xs = (u * c.w).astype(np.int64)[keep]
        brightness = brightness[keep] * (1 - ys / self.horizon).astype(np.float32) ** 0.5
        colour = _lerp(self.pal["accent"], _WHITE, 0.6)[:, None]
        big = brightness > 0.75
        for dy, dx, share in ((0, 0, 1.0), (0, 1, 0.45), (0, -1, 0.45), (1, 0, 0.45), (-1, 0, 0.45)):
            pick = np.ones_like(big) if share == 1.0 else big
            yy = np.clip(ys[pick] + dy, 0, c.h - 1)
            xx = np.clip(xs[pick] + dx, 0, c.w - 1)
            alpha = brightness[pick] * share
            c.img[:, yy, xx] += (colour - c.img[:, yy, xx]) * alpha

    def clouds(self, dense: bool) -> None:
        c, pal = self.c, self.pal
        top, bottom = c.rows(0, self.horizon)
        h = bottom - top
        rng = self.rng(4)
        n = _field(rng, h, c.w, 4)
        threshold = 0.0 if dense else 0.35
        shift = max(1, round(h * 0.04))
        lower = np.empty_like(n)
        lower[shift:] = n[:-shift]
        lower[:shift] = n[:1]
        ys = c.ys[top:bottom]
        fade = np.clip(ys / (self.horizon * 0.15), 0, 1) * np.clip(
            (self.horizon * 0.95 - ys) / (self.horizon * 0.3), 0, 1
        )
        mask = np.clip((n - threshold) / 0.35, 0.0, 1.0) * (fade * (0.95 if dense else 0.9))
        lit = np.clip((n - lower) * 2.5 + 0.55, 0.0, 1.0)
        shade = pal["cloud"] * 0.72
        c.paint(top, 0, mask, _col(shade) + _col(pal["cloud"] - shade) * lit)

    def orbs(self) -> None:
        """The abstract fallback for prompts without forms: soft glowing discs in the prompt's hues."""
        c, pal = self.c, self.pal
        rng = self.rng(5)
        hues = [pal[f"orb{i}"] for i in range(4)]
        for index in range(int(rng.integers(4, 8))):
            r = c.unit * float(rng.uniform(0.06, 0.2))
            x = c.w * float(rng.uniform(0.1, 0.9))
            y = self.horizon * float(rng.uniform(0.15, 0.85))
            top, bottom = c.rows(y - r, y + r)
            left, right = c.cols(x - r, x + r)
            d = np.sqrt((c.ys[top:bottom] - y) ** 2 + (c.xs[:, left:right] - x) ** 2) / r
            mask = np.clip((1 - d) / 0.25, 0, 1) * (0.75 + 0.25 * d) * float(rng.uniform(0.45, 0.8))
            c.paint(top, left, mask.astype(np.float32), _lerp(hues[index % len(hues)], _WHITE, 0.15))

    def ridges(self, layers: int, ridged: bool) -> None:
        c, pal = self.c, self.pal
        rng = self.rng(6 if ridged else 7)
        snowy = "snow" in self.reading.lands
        for layer in range(layers):
            depth = layer / max(layers - 1, 1)  # 0 far, 1 near
            if ridged:
                height = c.h * (0.34 - 0.12 * depth) * float(rng.uniform(0.8, 1.15))
                shape = _fbm(rng, c.w, 5, 3, ridged=True) ** 1.6
                base = _lerp(pal["far"], pal["near"], 0.25 + 0.6 * depth)
            else:
                height = c.h * (0.1 - 0.04 * depth) * float(rng.uniform(0.7, 1.2))
                shape = _fbm(rng, c.w, 3, 2, ridged=False)
                base = _lerp(pal["far"], pal["near"], 0.5 + 0.5 * depth)
            top_y = self.horizon + 2 - height * (0.2 + 0.8 * shape)
            colour = _lerp(base, pal["sky_horizon"], (0.5 if ridged else 0.35) * (1 - depth) + 0.08)
            # faces turned toward the light are lighter; the slope is taken on a smoothed ridge
            window = max(3, c.w // 25) | 1
            smooth = np.convolve(np.pad(top_y, window // 2, mode="edge"), np.ones(window) / window, "valid")
            slope = np.gradient(smooth) * (c.w / max(height, 1.0)) * 0.12
            lightness = (np.tanh(slope) * (0.22 if ridged else 0.1)).astype(np.float32)
            bottom = self.horizon + c.h * 0.03
            start, end = band = c.band(top_y, bottom)
            ys = c.ys[start:end]
            t = np.clip((ys - start) / max(bottom - start, 1.0), 0, 1)
            mist = _lerp(colour, pal["sky_horizon"], 0.3)
            rows = _col(colour) + _col(mist - colour) * (t * t)
            # the ridge's slope shades the face just below it, fading further down
            reach = np.float32(max(height, 1.0) / 3)
            below = np.maximum(ys - top_y[None, :], 0.0)
            below += reach
            shade = np.divide(reach, below, out=below)
            shade *= lightness[None, :]
            shade += 1
            c.profile(top_y, band, bottom, rows * shade)
            if ridged and (snowy or layer == 0):
                snow_y = self.horizon + 2 - height * (0.78 if snowy else 0.86)
                snow_line = snow_y + height * 0.06 * _smooth_noise(rng, 24, c.w)
                start, end = c.rows(float(top_y.min()), float(snow_line.max()))
                if start < end and float(top_y.min()) < float(snow_line.max()):
                    ys = c.ys[start:end]
                    mask = _edge(ys - top_y[None, :]) * _edge(snow_line[None, :] - ys)
                    snow = _lerp(pal["snow"], colour, 0.12 if snowy else 0.3)
                    c.paint(start, 0, mask, _col(snow) * (1 + lightness)[None, None, :])

    def ground(self) -> None:
        c, pal = self.c, self.pal
        rng = self.rng(8)
        top_y = self.horizon + c.h * 0.012 * _smooth_noise(rng, 4, c.w)
        start, end = band = c.band(top_y, c.h)
        t = ((c.ys[start:end] - self.horizon) / max(c.h - self.horizon, 1)).clip(0, 1)
        near = pal["near"]
        upper = _lerp(_lerp(pal["far"], near, 0.6), pal["sky_horizon"], 0.22)
        texture = _field(rng, end - start, c.w, 7)
        texture *= 0.03
        texture += 1
        c.profile(top_y, band, c.h, (_col(upper) + _col(near * 0.88 - upper) * t) * texture)
        if "neon" in self.moods:
            self.neon_grid(math.ceil(float(top_y.max())))

    def neon_grid(self, start: int) -> None:
        """A glowing perspective grid on the ground, synthwave style."""
        c = self.c
        d = ((c.ys[start:] - self.horizon) / max(c.h - self.horizon, 1)).clip(0.01, 1)
        depth = 1.0 / (d + 0.08)
        across = (c.xs - c.w / 2) / (c.unit * (d + 0.08))
        line_h = np.abs(((depth * 1.2) % 1) - 0.5)
        line_v = np.abs(((across * 3) % 1) - 0.5)
        width_h = np.clip(0.5 - line_h / (0.03 + 0.02 / d), 0, 1)
        width_v = np.clip(0.5 - line_v / 0.06, 0, 1)
        mask = np.maximum(width_h, width_v) * np.clip(d * 3, 0, 1)
        c.paint(start, 0, (mask * 0.9).astype(np.float32), self.pal["accent"])

    def city(self) -> None:
        c, pal = self.c, self.pal
        rng = self.rng(9)
        back = _lerp(_lerp(pal["far"], pal["near"], 0.2), pal["sky_horizon"], 0.45)
        front = _lerp(pal["near"], pal["far"], 0.2)
        centre = float(rng.uniform(0.3, 0.7))
        for row, colour in ((0, back), (1, front)):
            top_y = np.full(c.w, np.inf, dtype=np.float32)
            left_of = np.zeros(c.w, dtype=np.float32)
            right_of = np.zeros(c.w, dtype=np.float32)
            x = -float(rng.uniform(0, 0.05))
            while x < 1.0:
                width = float(rng.uniform(0.035, 0.085) if row else rng.uniform(0.05, 0.1))
                hump = math.exp(-(((x + width / 2 - centre) / 0.3) ** 2))
                tall = float(rng.uniform(0.06, 0.18) + (0.26 if row else 0.2) * hump * rng.uniform(0.4, 1))
                x0, x1 = round(x * c.w), round((x + width) * c.w)
                x += width + float(rng.uniform(0, 0.015))
                y = self.horizon - tall * c.h
                lo, hi = max(x0, 0), min(x1, c.w)
                if lo >= hi:
                    continue
                top_y[lo:hi] = y
                left_of[lo:hi] = x0
                right_of[lo:hi] = x1
                if tall > 0.28 and rng.random() < 0.5:
                    mid, half = (x0 + x1) // 2, max(1, c.w // 500)
                    top_y[max(mid - half, 0) : mid + half] = y - c.h * 0.05
            standing = np.isfinite(top_y)
            edge_y = np.where(standing, top_y, self.horizon + 3).astype(np.float32)
            bottom = self.horizon + 3
            c.profile(edge_y, c.band(edge_y, bottom), bottom, colour)
            self.windows(rng, row, edge_y, left_of, right_of, colour, standing)

    def windows(
        self, rng: np.random.Generator, row: int, top_y: F32, left_of: F32, right_of: F32, wall: F32,
        standing: npt.NDArray[np.bool_],
    ) -> None:  # fmt: skip
        c, pal = self.c, self.pal
        cell_w = max(3.0, c.w * 0.011)
        cell_h = max(3.0, c.h * 0.016)
        table = rng.random((61, 67)) < (0.45 if self.night else 0.85)
        tone = rng.random((61, 67)) < 0.5
        top, bottom = c.rows(float(top_y.min()), self.horizon - cell_h)
        if top >= bottom:
            return
        xs = c.xs[0]
        local_x = xs - left_of
        col_ok = standing & ((local_x % cell_w) > 0.35 * cell_w) & ((right_of - xs) > 0.4 * cell_w)
        col_id = (local_x // cell_w + left_of).astype(np.int64) % 67
        local_y = self.horizon - c.ys[top:bottom, 0]
        row_ok = (local_y % cell_h) > 0.45 * cell_h
        row_id = (local_y // cell_h).astype(np.int64) % 61
        below_roof = c.ys[top:bottom] > top_y[None, :] + cell_h
        cells = (row_id[:, None], col_id[None, :])
        mask = (below_roof & row_ok[:, None] & col_ok[None, :] & table[cells]).astype(np.float32)
        if "neon" in self.moods:
            colour = np.where(tone[cells], _col(pal["detail"]), _col(pal["accent"])).astype(np.float32)
            c.paint(top, 0, mask * (0.9 if row else 0.5), colour)
        elif self.night:
            c.paint(top, 0, mask * (0.9 if row else 0.45), pal["detail"])
        else:
            c.paint(top, 0, mask * 0.8, _lerp(wall, pal["sky_horizon"], 0.45))

    def water(self, light: _Light | None) -> None:
        c, pal = self.c, self.pal
        top = max(1, round(self.horizon))
        h = c.h - top
        if h <= 0:
            return
        source_rows = np.clip(top - 1 - np.arange(h), 0, c.h - 1)
        reflection = c.img[:, source_rows]
        d = ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None]
        rng = self.rng(10)
        # long horizontal streaks, rows squeezed toward the horizon by perspective
        streaks = np.zeros((256, c.w), dtype=np.float32)
        for cells, weight in ((5, 0.7), (11, 0.45)):
            grid = rng.standard_normal((cells * 12, cells)).astype(np.float32)
            streaks += weight * _enlarge(grid, 256, c.w, Image.Resampling.BICUBIC)
        depth_rows = (0.55 * c.h / (d[:, 0] + 0.04)).astype(np.int64) % 256
        calm = np.clip(d / 0.12, 0, 1) ** 1.5
        wave = streaks[depth_rows] * calm
        fresnel = 0.25 + 0.45 * d
        reflection *= 0.8 * (1 - fresnel)
        reflection += _col(pal["water"]) * fresnel
        np.multiply(reflection, 1 + (0.06 + 0.1 * d) * wave, out=c.img[:, top:])
        if light is not None:
            width = light.r * (0.7 + 3.5 * d)
            glitter = (
                np.exp(np.maximum(-(((c.xs - light.x) / width) ** 2), -30.0))
                * np.clip(wave, 0, 1) ** 3
                * 0.85
            )
            c.paint(top, 0, glitter.astype(np.float32), light.colour)

    def shore(self) -> None:
        c, pal = self.c, self.pal
        rng = self.rng(11)
        line = c.h * float(rng.uniform(0.84, 0.9))
        top_y = line - c.h * 0.05 * _fbm(rng, c.w, 3, 2, ridged=False)
        self.shore_line = float(top_y.mean())
        top, bottom = band = c.band(top_y, c.h)
        t = (c.ys[top:bottom] - top) / max(bottom - top, 1)
        c.profile(top_y, band, c.h, _col(pal["near"]) * (1.0 - 0.3 * t))

    def trees_and_cabin(self) -> None:
        c, pal = self.c, self.pal
        rng = self.rng(12)
        foliage = pal["foliage"]
        cabin_x = c.w * float(rng.uniform(0.25, 0.75))
        cabin_w = c.unit * 0.16
        on_water = "water" in self.forms
        floor = self.shore_line if on_water and self.shore_line is not None else float(c.h)
        rows: list[tuple[float, float, float, int, float]] = []  # base, min h, max h, count, haze
        if "trees" in self.forms:
            rows.append((self.horizon + 1, 0.035, 0.07, round(40 * c.w / c.unit), 0.45))
            if not on_water:
                rows.append((self.horizon + c.h * 0.06, 0.07, 0.13, round(22 * c.w / c.unit), 0.22))
        for base, low, high, count, haze in rows:
            self.tree_row(rng, base, low, high, count, _lerp(foliage, pal["sky_horizon"], haze), None)
        # the cabin stands on the shore, or on the ground in front of the far trees
        on_shore = floor + (c.h - floor) * 0.5
        cabin_base = on_shore if on_water else self.horizon + (floor - self.horizon) * 0.45
        if "cabin" in self.forms:
            self.cabin(cabin_x, cabin_base, cabin_w)
        if "trees" in self.forms:
            self.tree_row(
                rng, c.h * 1.03, 0.24, 0.42, max(3, round(5 * c.w / c.unit)), foliage * 0.85,
                (cabin_x, cabin_w * 1.4) if "cabin" in self.forms else None,
            )  # fmt: skip

    def tree_row(
        self, rng: np.random.Generator, base: float, low: float, high: float, count: int, colour: F32,
        keep_clear: tuple[float, float] | None,
    ) -> None:  # fmt: skip
        c = self.c
        centres = rng.uniform(-0.03, 1.03, count) * c.w
        heights = rng.uniform(low, high, count) * c.h
        halves = heights * rng.uniform(0.2, 0.27, count)
        if keep_clear is not None:
            x, half = keep_clear
            clear = np.abs(centres - x) > half + halves
            centres, heights, halves = centres[clear], heights[clear], halves[clear]
        if centres.size == 0:
            return
        # a pine's outline: a triangle whose sides step out at each tier of branches
        q = np.abs(c.xs[0].astype(np.float64)[None, :] - centres[:, None]) / halves[:, None]
        height = heights[:, None] * ((1 - q) + 0.09 * ((q * 5) % 1))
        height = np.where(q < 1, height, 0.0).max(axis=0)
        top_y = np.where(height > 0, base - height, base + 2).astype(np.float32)
        top, bottom = band = c.band(top_y, base)
        t = (c.ys[top:bottom] - top) / max(bottom - top, 1)
        c.profile(top_y, band, base, _col(colour) * (1.1 - 0.3 * t))

    def cabin(self, x: float, base: float, width: float) -> None:
        c, pal = self.c, self.pal
        wall_h = width * 0.55
        wall = pal["cabin"]
        half = width / 2
        c.polygon(
            [(x - half, base - wall_h), (x + half, base - wall_h), (x + half, base), (x - half, base)], wall
        )
        # logs: darker seams across the wall
        top, bottom = c.rows(base - wall_h, base)
        left, right = c.cols(x - half, x + half)
        seams = (c.ys[top:bottom] - base) % max(width * 0.07, 2.0) < max(width * 0.012, 1.0)
        c.paint(top, left, np.broadcast_to(seams * np.float32(0.5), (bottom - top, right - left)), wall * 0.6)
        roof = _lerp(wall * 0.45, pal["snow"], 0.85) if "snow" in self.reading.lands else wall * 0.45
        eave, ridge = base - wall_h + 1, base - wall_h - width * 0.42
        overhang = width * 0.1
        c.polygon([(x - half - overhang, eave), (x, ridge), (x + half + overhang, eave)], roof)
        cx, low, high = x + width * 0.22, base - wall_h - width * 0.1, base - wall_h - width * 0.34
        c.polygon([(cx, high), (cx + width * 0.07, high), (cx + width * 0.07, low), (cx, low)], wall * 0.5)
        glowing = self.night or bool(self.moods & {"sunset", "storm"})
        lit = pal["detail"] if glowing else _lerp(wall * 0.3, pal["sky_horizon"], 0.4)
        dx, dw, dh = x - width * 0.3, width * 0.16, wall_h * 0.62
        c.polygon([(dx, base - dh), (dx + dw, base - dh), (dx + dw, base), (dx, base)], wall * 0.35)
        wx, wy, ws = x + width * 0.1, base - wall_h * 0.72, width * 0.2
        c.polygon([(wx, wy), (wx + ws, wy), (wx + ws, wy + ws * 0.8), (wx, wy + ws * 0.8)], lit)

    def shapes(self, light: _Light | None) -> None:
        c, pal = self.c, self.pal
        wanted = [s for s in _SHAPES if s in self.forms]
        if not wanted:
            return
        rng = self.rng(13)
        from_left = light is None or light.x < c.w / 2
        lit, dim = (0.85, 0.55) if from_left else (0.55, 0.85)
        for index, shape in enumerate(wanted):
            colour = pal.get(f"object:{shape}", pal["object"])
            r = c.unit * float(rng.uniform(0.13, 0.19)) / math.sqrt(len(wanted))
            x = c.w * ((index + 0.5) / len(wanted) + float(rng.uniform(-0.06, 0.06)) / len(wanted))
            floor = self.horizon + (c.h - self.horizon) * float(rng.uniform(0.3, 0.6))
            y = floor - r * (0.8 if shape in ("triangle", "pyramid") else 1.0)
            self.soft_shadow(x, floor, r)
            if shape == "circle":
                c.disc(x, y, r, colour)
            elif shape == "sphere":
                self.sphere(x, y, r, colour, from_left)
            elif shape == "square":
                c.polygon([(x - r, y - r), (x + r, y - r), (x + r, y + r), (x - r, y + r)], colour)
            elif shape == "triangle":
                c.polygon([(x, y - r * 1.1), (x + r * 1.1, y + r * 0.8), (x - r * 1.1, y + r * 0.8)], colour)
            elif shape == "cube":
                s, k = r * 0.85, r * 0.5
                back, front, side = y - s + k * 0.2, y - s + k, y + s - k * 0.8
                c.polygon(
                    [(x - s, back), (x, y - s - k * 0.6), (x + s, back), (x, front)],
                    _lerp(colour, _WHITE, 0.25),
                )
                c.polygon([(x - s, back), (x, front), (x, y + s), (x - s, side)], colour * lit)
                c.polygon([(x, front), (x + s, back), (x + s, side), (x, y + s)], colour * dim)
            else:
                apex, foot = (x + r * 0.1, y - r * 1.1), y + r * 0.8
                c.polygon([apex, (x + r * 0.25, foot), (x - r * 1.2, foot)], colour * (lit + 0.1))
                c.polygon([apex, (x + r * 1.2, foot - r * 0.15), (x + r * 0.25, foot)], colour * (dim + 0.1))

    def sphere(self, x: float, y: float, r: float, colour: F32, from_left: bool) -> None:
        c = self.c
        top, bottom = c.rows(y - r - 1, y + r + 1)
        left, right = c.cols(x - r - 1, x + r + 1)
        dx = (c.xs[:, left:right] - x) / r
        dy = (c.ys[top:bottom] - y) / r
        rr = dx * dx + dy * dy
        nz = np.sqrt(np.clip(1 - rr, 0, 1))
        lx, ly, lz = (-0.5 if from_left else 0.5), -0.55, 0.67
        lambert = np.clip(dx * lx + dy * ly + nz * lz, 0, 1)
        shade = _col(colour) * (0.22 + 0.85 * lambert)
        highlight = (np.maximum(lambert - 0.85, 0.0) * (1 / 0.15)) ** 2 * 0.7
        shaded = (shade + (1 - shade) * highlight).astype(np.float32)
        c.paint(top, left, _edge(r * (1 - np.sqrt(rr))), shaded)

    def soft_shadow(self, x: float, y: float, r: float) -> None:
        c = self.c
        top, bottom = c.rows(y - r * 0.3, y + r * 0.3)
        left, right = c.cols(x - r * 1.3, x + r * 1.3)
        d = ((c.xs[:, left:right] - x) / (r * 1.2)) ** 2 + ((c.ys[top:bottom] - y) / (r * 0.22)) ** 2
        c.paint(top, left, (np.clip(1 - d, 0, 1) * 0.45).astype(np.float32), np.zeros(3, np.float32))

    def vignette(self) -> None:
        c = self.c
        yn = ((c.ys / c.h - 0.5) * 2) ** 2
        xn = ((c.xs / c.w - 0.5) * 2) ** 2
        r2 = yn + xn
        falloff = np.sqrt(r2)
        falloff *= r2
        falloff *= -0.16
        falloff += 1
        c.img *= falloff


def _compose(spec: ImageSpec, reading: _Reading, pal: dict[str, F32]) -> F32:
    """The clean picture a prompt, seed and guidance describe: planar float32 RGB in [0, 1]."""
    return _Scene(spec, reading, pal).render()
