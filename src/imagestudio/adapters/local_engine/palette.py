"""Palette: the named colours (sky, land, water, light, objects) a reading and a guidance give.

``cfgScale`` is the strength of the prompt's palette: 0 is washed out, 7.5 is normal, high
values are vivid to the point of burning.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from imagestudio.adapters.local_engine.reading import _LANDS, _MOODS, RGB, _Land, _Mood, _Reading

F32 = npt.NDArray[np.floating[Any]]  # float32 at run time; the stubs widen float32 arithmetic

NORMAL_CFG: Final = 7.5

_LUMA: Final = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _f32(values: Any) -> F32:
    return np.asarray(values, dtype=np.float32)


def _f(colour: RGB) -> F32:
    """An 8-bit colour as float32 in [0, 1]."""
    return np.array(colour, dtype=np.float32) / np.float32(255)


def _luma(colour: F32) -> float:
    return float(colour @ _LUMA)


def _tint(colour: F32, towards: F32, weight: float, keep: float) -> F32:
    """Move ``colour`` toward the hue of ``towards``; ``keep`` is how much of its lightness stays."""
    ratio = (max(_luma(colour), 1e-3) / max(_luma(towards), 0.03)) ** keep
    target = np.clip(towards * ratio, 0.0, 1.0)
    return _f32(colour + (target - colour) * weight)


def _mean(colours: Sequence[F32]) -> F32:
    return _f32(np.mean(np.stack(colours), axis=0))


def _guidance(cfg: float) -> tuple[float, float]:
    """(saturation, contrast) multipliers for a guidance scale; 7.5 is neutral."""
    if cfg <= NORMAL_CFG:
        share = cfg / NORMAL_CFG
        return 0.12 + 0.88 * share, 0.6 + 0.4 * share
    excess = 1 - math.exp(-(cfg - NORMAL_CFG) / 12)
    return 1 + 1.1 * excess, 1 + 0.35 * excess


# Which palette roles a colour bound to a group moves: (role, weight, lightness kept).
_GROUP_ROLES: Final[dict[str, tuple[tuple[str, float, float], ...]]] = {
    "sky": (("sky_top", 0.75, 1.0), ("sky_horizon", 0.7, 1.0), ("cloud", 0.3, 1.0)),
    "light": (("accent", 0.85, 0.3),),
    "land": (("far", 0.7, 0.5), ("near", 0.75, 0.5), ("foliage", 0.8, 0.5)),
    "water": (("water", 0.8, 0.5),),
    "object": (("object", 1.0, 0.0),),
    "cabin": (("cabin", 0.9, 0.0),),
}
_LOOSE_ROLES: Final = (
    ("sky_top", 0.55, 1.0), ("sky_horizon", 0.55, 1.0), ("accent", 0.35, 0.5), ("far", 0.5, 0.5),
    ("near", 0.5, 0.5), ("water", 0.5, 0.5), ("foliage", 0.45, 0.5), ("cloud", 0.3, 1.0),
    ("detail", 0.3, 0.5),
)  # fmt: skip
# With several loose colours, each takes a part of the picture, in this order.
_LOOSE_SPLIT: Final = (("sky", "light"), ("land", "water"), ("object", "cabin"), ("light",))
_LIT_ROLES: Final = ("far", "near", "water", "foliage", "cabin", "snow")


def _palette(reading: _Reading, cfg: float, prompt_hue: RGB) -> dict[str, F32]:
    moods = [_MOODS[m] for m in reading.moods] or [_MOODS["day"]]
    land_names = reading.lands or (["rock"] if "mountains" in reading.forms else ["meadow"])
    lands = [_LANDS[name] for name in land_names]

    def mood(pick: Callable[[_Mood], RGB]) -> F32:
        return _mean([_f(pick(m)) for m in moods])

    def land(pick: Callable[[_Land], RGB]) -> F32:
        return _mean([_f(pick(g)) for g in lands])

    pal: dict[str, F32] = {
        "sky_top": mood(lambda m: m.sky_top),
        "sky_horizon": mood(lambda m: m.sky_horizon),
        "accent": mood(lambda m: m.accent),
        "detail": mood(lambda m: m.detail),
        "cloud": mood(lambda m: m.cloud),
        "far": land(lambda g: g.far),
        "near": land(lambda g: g.near),
        "water": land(lambda g: g.water),
        "foliage": land(lambda g: g.foliage),
        "cabin": _f((128, 78, 46)),
        "snow": _f((244, 247, 252)),
        "object": _f(reading.hues[0] if reading.hues else prompt_hue),
    }
    # the abstract fallback's orbs: the words' own hues, then harmonies of the first
    orbs = [colorsys.rgb_to_hsv(*_f(hue)) for hue in reading.hues] or [colorsys.rgb_to_hsv(*_f(prompt_hue))]
    h0, s0, v0 = orbs[0]
    orbs += [((h0 + turn) % 1.0, s0, v0) for turn in (0.5, 0.12, 0.58)]
    for index, (h, sat, v) in enumerate(orbs[:4]):
        pal[f"orb{index}"] = np.array(colorsys.hsv_to_rgb(h, min(1.0, sat * 1.1), max(v, 0.8)), np.float32)
    light = _mean([_f32(m.light) for m in moods])

    # unknown words colour the picture: like colour words when the prompt names no colour or
    # mood (the first word's hue takes the sky, the next the land), else only faintly
    if reading.loose or reading.targeted or reading.moods:
        for hue in reading.hues[:3]:
            for role, weight, keep in _LOOSE_ROLES:
                pal[role] = _tint(pal[role], _f(hue), weight * 0.2, keep)
    elif len(reading.hues) == 1:
        for role, weight, keep in _LOOSE_ROLES:
            pal[role] = _tint(pal[role], _f(reading.hues[0]), weight * 0.8, keep)
    else:
        for rank, hue in enumerate(reading.hues[:3]):
            for group in _LOOSE_SPLIT[rank]:
                for role, weight, keep in _GROUP_ROLES[group]:
                    pal[role] = _tint(pal[role], _f(hue), weight * 0.8, keep)
    if len(reading.loose) == 1:
        colour = _f(reading.loose[0])
        for role, weight, keep in _LOOSE_ROLES:
            pal[role] = _tint(pal[role], colour, weight, keep)
        pal["object"] = colour
    else:
        for rank, loose in enumerate(reading.loose):
            for group in _LOOSE_SPLIT[rank % len(_LOOSE_SPLIT)]:
                for role, weight, keep in _GROUP_ROLES[group]:
                    pal[role] = _tint(pal[role], _f(loose), weight, keep)
    for group, targeted in reading.targeted:
        if group.startswith("object:"):
            pal[group] = _f(targeted)
            continue
        for role, weight, keep in _GROUP_ROLES[group]:
            pal[role] = _tint(pal[role], _f(targeted), weight, keep)

    for role in _LIT_ROLES:
        pal[role] = pal[role] * light
    for role in pal:
        if role.startswith("object"):
            pal[role] = pal[role] * (0.5 + 0.5 * light)

    saturation, contrast = _guidance(cfg)
    modifiers = reading.modifiers
    saturation *= 1.35 if "vivid" in modifiers else 1.0
    saturation *= 0.5 if "pastel" in modifiers or "muted" in modifiers else 1.0
    saturation *= 0.0 if "mono" in modifiers else 1.0
    avoid = [_f(c) - _luma(_f(c)) for c in reading.avoid]
    for role, colour in pal.items():
        for direction in avoid:
            norm = float(np.linalg.norm(direction))
            if norm > 1e-3:
                unit = direction / norm
                chroma = colour - _luma(colour)
                along = float(chroma @ unit)
                if along > 0:
                    colour = colour - unit * (along * 1.3)
        if "pastel" in modifiers:
            colour = colour + (1 - colour) * 0.35
        if "dark" in modifiers:
            colour = colour * 0.6
        if "bright" in modifiers:
            colour = colour + (1 - colour) * 0.25
        lum = _luma(colour)
        colour = lum + (colour - lum) * saturation
        colour = colour + ((0.45 + (lum - 0.45) * contrast) - lum)
        pal[role] = np.clip(colour, 0.0, 1.0).astype(np.float32)
    return pal
