"""The local engine: a deterministic procedural renderer behind the ``ImageGenerator`` port.

No model weights are involved. The prompt is read for mood, colour and form words; a scene is
painted at full resolution with vectorised numpy; then a small latent (1/8 of each side) starts
as seeded noise and is denoised toward that scene over ``steps`` steps, the way a latent
diffusion sampler would. Whatever noise is left is added back, so few steps look blotchy and
many steps look clean. ``cfgScale`` is the strength of the prompt's palette: 0 is washed out,
7.5 is normal, high values are vivid to the point of burning.

The same prompt, seed and parameters give the same pixels. The engine exists so the studio
works offline and tests have a real engine; Runware gives real diffusion.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageCms, ImageOps

from imagestudio.adapters.images import ACCEPTED_FORMATS, DECODE_BUDGET, decoded_bytes, upright_size
from imagestudio.domain.errors import InvalidParameters
from imagestudio.domain.model import GeneratedImage, ImageSpec, SourceImage
from imagestudio.domain.ports import ProgressCallback

__all__ = ["LocalImageGenerator"]

F32 = npt.NDArray[np.floating[Any]]  # float32 at run time; the stubs widen float32 arithmetic
RGB = tuple[int, int, int]

JPEG_QUALITY: Final = 95
LATENT_FACTOR: Final = 8
LATENT_NOISE: Final = 0.32  # standard deviation of the starting latent, in 0..1 colour units
NORMAL_CFG: Final = 7.5

# --- vocabulary -----------------------------------------------------------------------------

_COLOURS: Final[dict[str, RGB]] = {
    "red": (214, 40, 40), "crimson": (180, 20, 55), "scarlet": (232, 44, 30), "ruby": (190, 18, 64),
    "maroon": (120, 22, 34), "burgundy": (128, 24, 48), "cherry": (200, 30, 60),
    "orange": (246, 140, 36), "amber": (250, 176, 40), "tangerine": (250, 130, 30),
    "yellow": (246, 222, 58), "lemon": (250, 240, 90), "gold": (232, 186, 64), "golden": (236, 184, 70),
    "green": (52, 168, 78), "emerald": (20, 160, 100), "lime": (150, 222, 58), "olive": (122, 132, 50),
    "mint": (150, 230, 190), "jade": (60, 168, 120),
    "teal": (20, 150, 150), "cyan": (36, 212, 232), "turquoise": (60, 210, 200), "aqua": (70, 222, 222),
    "blue": (36, 92, 224), "azure": (60, 140, 240), "navy": (18, 30, 110), "cobalt": (30, 72, 192),
    "sapphire": (20, 60, 170), "indigo": (72, 40, 160),
    "purple": (140, 58, 192), "violet": (150, 82, 222), "lavender": (186, 160, 232),
    "lilac": (200, 162, 220), "magenta": (222, 40, 182), "fuchsia": (236, 50, 170), "plum": (132, 60, 110),
    "pink": (246, 140, 190), "rose": (232, 100, 140), "salmon": (250, 140, 120), "peach": (250, 190, 150),
    "coral": (250, 120, 90),
    "brown": (130, 84, 48), "chocolate": (96, 58, 34), "bronze": (180, 120, 60), "copper": (190, 110, 60),
    "rust": (172, 80, 40), "tan": (210, 180, 140), "beige": (222, 204, 164), "sepia": (150, 105, 60),
    "silver": (192, 196, 206), "grey": (128, 130, 134), "gray": (128, 130, 134),
    "white": (246, 246, 246), "black": (14, 14, 18), "cream": (246, 236, 206), "ivory": (250, 246, 230),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Mood:
    """Sky and light of a time of day or atmosphere."""

    sky_top: RGB
    sky_horizon: RGB
    accent: RGB  # the sun, the moon, glows
    light: tuple[float, float, float]  # multiplies every lit surface
    detail: RGB  # lit windows, signs
    cloud: RGB


_MOODS: Final[dict[str, _Mood]] = {
    "day": _Mood((70, 130, 215), (190, 218, 242), (255, 246, 220), (1.0, 1.0, 1.0), (205, 220, 235),
                 (246, 248, 252)),
    "sunset": _Mood((52, 38, 100), (252, 150, 78), (255, 214, 130), (0.88, 0.58, 0.52), (255, 205, 120),
                    (250, 170, 140)),
    "night": _Mood((5, 7, 24), (28, 40, 84), (238, 236, 214), (0.24, 0.28, 0.44), (255, 208, 120),
                   (60, 66, 92)),
    "neon": _Mood((16, 4, 38), (150, 24, 150), (255, 70, 205), (0.42, 0.26, 0.6), (40, 235, 255),
                  (120, 60, 150)),
    "fire": _Mood((36, 6, 6), (236, 90, 28), (255, 222, 125), (0.9, 0.46, 0.3), (255, 190, 80),
                  (120, 60, 50)),
    "storm": _Mood((66, 72, 84), (150, 156, 164), (228, 228, 222), (0.6, 0.63, 0.68), (230, 220, 170),
                   (120, 124, 134)),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Land:
    """Ground colours of a kind of land, in daylight."""

    far: RGB
    near: RGB
    water: RGB
    foliage: RGB


_LANDS: Final[dict[str, _Land]] = {
    "meadow": _Land((110, 145, 125), (78, 130, 62), (55, 115, 170), (38, 92, 48)),
    "ocean": _Land((85, 125, 150), (220, 198, 150), (22, 96, 168), (40, 110, 60)),
    "forest": _Land((60, 108, 84), (34, 82, 40), (38, 92, 92), (24, 68, 36)),
    "snow": _Land((188, 204, 226), (236, 242, 250), (140, 178, 212), (34, 66, 58)),
    "desert": _Land((204, 144, 94), (232, 188, 124), (60, 140, 165), (80, 110, 55)),
    "city": _Land((100, 106, 122), (58, 62, 72), (48, 80, 112), (40, 80, 50)),
    "lava": _Land((74, 34, 28), (34, 18, 14), (245, 96, 24), (30, 24, 20)),
    "rock": _Land((118, 124, 140), (86, 98, 76), (55, 110, 160), (36, 84, 48)),
}


def _words(*groups: tuple[str, str]) -> dict[str, str]:
    """``("key", "word word ...")`` pairs to a word -> key table."""
    return {word: key for key, words in groups for word in words.split()}


_MOOD_WORDS: Final = _words(
    ("day", "day daylight daytime morning noon midday afternoon sunny"),
    ("sunset", "sunset sunrise sundown dusk dawn evening twilight"),
    ("night", "night nighttime midnight starry star moon moonlight moonlit galaxy space cosmos nebula"),
    ("night", "darkness nocturnal constellation"),
    ("neon", "neon cyberpunk synthwave vaporwave retrowave futuristic"),
    ("fire", "fire flame lava volcano volcanic inferno hell burning ember blaze"),
    ("storm", "storm stormy rain rainy thunder lightning fog foggy mist misty overcast gloomy"),
)
_LAND_WORDS: Final = _words(
    ("ocean", "ocean sea beach coast coastal shore island bay wave tropical harbor harbour seaside lagoon"),
    ("forest", "forest jungle wood woods woodland tree pine grove rainforest fir oak"),
    ("snow", "snow snowy winter ice icy frozen arctic glacier frost antarctic"),
    ("desert", "desert sand sandy dune canyon savanna sahara arid"),
    ("city", "city town skyline building street downtown metropolis urban skyscraper tower"),
    ("lava", "lava volcano volcanic"),
    ("rock", "mountain peak alps cliff ridge rock rocky summit"),
    ("meadow", "meadow field grass grassland countryside farm garden park prairie hill valley spring"),
)
_FORM_WORDS: Final = _words(
    ("mountains", "mountain peak alps cliff ridge volcano summit"),
    ("hills", "hill valley meadow field countryside farm prairie landscape grassland dune"),
    ("sun", "sun sunny sunset sunrise sundown dawn dusk sunlight"),
    ("moon", "moon moonlight moonlit lunar"),
    ("water", "ocean sea lake water river pond beach coast coastal shore wave bay island harbor harbour"),
    ("water", "reflection seaside lagoon tropical"),
    ("city", "city building skyline skyscraper town tower downtown metropolis street urban"),
    ("trees", "tree forest wood woods pine jungle woodland grove rainforest fir oak"),
    ("stars", "star starry night galaxy space cosmos nebula constellation midnight nighttime"),
    ("clouds", "cloud cloudy storm stormy overcast rain rainy thunder"),
    ("cabin", "cabin house hut cottage home barn chalet lodge village shack"),
    ("circle", "circle disc disk ring"),
    ("sphere", "sphere ball orb planet bubble globe"),
    ("square", "square rectangle block"),
    ("cube", "cube box"),
    ("triangle", "triangle"),
    ("pyramid", "pyramid"),
)
_TARGET_WORDS: Final = _words(
    ("sky", "sky sunset sunrise dusk dawn night evening twilight cloud storm star galaxy space nebula"),
    ("sky", "horizon aurora"),
    ("light", "sun moon light glow sunlight moonlight lamp lantern"),
    ("land", "mountain hill forest tree field meadow grass city building skyline desert sand rock ground"),
    ("land", "land valley jungle wood woods pine leaf leaves dune cliff peak tower skyscraper"),
    ("land", "town street"),
    ("water", "ocean sea lake river water wave pond bay lagoon"),
    ("object", "circle sphere ball orb planet bubble globe square cube box block triangle pyramid"),
    ("object", "rectangle shape disc disk ring"),
    ("cabin", "cabin house hut cottage home barn chalet lodge shack roof door"),
)
_MODIFIER_WORDS: Final = _words(
    ("pastel", "pastel soft pale"),
    ("vivid", "vivid vibrant colorful colourful saturated bold psychedelic"),
    ("muted", "muted faded desaturated dull washed vintage"),
    ("mono", "monochrome grayscale greyscale noir bw"),
    ("dark", "dark dim moody shadowy"),
    ("bright", "bright luminous radiant"),
)


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NEGATIONS: Final = _wordset("no without not never minus")
_STOPWORDS: Final = _wordset(
    """a an the of and or with at in on over under above below by for to from into near beside behind
    between through across very small big large little huge tiny tall beautiful pretty nice photo
    photograph image picture painting drawing art artwork illustration render style highly detailed
    detail realistic hd uhd masterpiece quality best high ultra cinematic epic scene view is are it its
    this that some many few one two three lots full wide shot closeup close up background foreground
    trending artstation octane unreal engine lighting made like as just only her his their there where
    while which who my your our has have be"""
)
_SHAPES: Final = ("circle", "sphere", "square", "cube", "triangle", "pyramid")
_MAX_HUES: Final = 6


def _lemma(word: str, table: dict[str, str]) -> str | None:
    """The table's key for ``word`` or its singular."""
    if word in table:
        return table[word]
    for suffix, replacement in (("ies", "y"), ("es", ""), ("s", "")):
        if word.endswith(suffix) and word[: -len(suffix)] + replacement in table:
            return table[word[: -len(suffix)] + replacement]
    return None


def _colour_word(word: str) -> RGB | None:
    return _COLOURS.get(word)


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def _hue_colour(word: str) -> RGB:
    """A colour for a word the engine does not know: its hue comes from a stable hash."""
    digest = _stable_hash(word)
    hue = (digest & 0xFFFF) / 0x10000
    saturation = 0.5 + 0.25 * ((digest >> 16) & 0xFF) / 255
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, 0.85)
    return round(r * 255), round(g * 255), round(b * 255)


@dataclass(slots=True)
class _Reading:
    """What the prompt and the negative prompt ask for."""

    moods: list[str] = field(default_factory=list)
    lands: list[str] = field(default_factory=list)
    forms: set[str] = field(default_factory=set)
    targeted: list[tuple[str, RGB]] = field(default_factory=list)  # a colour bound to a noun's group
    loose: list[RGB] = field(default_factory=list)  # colours bound to nothing in particular
    hues: list[RGB] = field(default_factory=list)  # from words the engine does not know
    modifiers: set[str] = field(default_factory=set)
    avoid: list[RGB] = field(default_factory=list)
    banned: set[str] = field(default_factory=set)  # forms the prompt asks to leave out


def _target(following: list[str]) -> str | None:
    """The part of the picture a colour word describes: the group of the noun after it.

    Shapes are told apart (``object:cube``) so that "a blue sphere and a red cube" colours each.
    """
    for word in following:
        if _colour_word(word) is not None:
            return None
        group = _lemma(word, _TARGET_WORDS)
        if group == "object" and (shape := _lemma(word, _FORM_WORDS)) in _SHAPES:
            return f"object:{shape}"
        if group is not None:
            return group
    return None


def _read(prompt: str, negative: str | None) -> _Reading:
    """Read a prompt's words; "no X" and "without X" count as negative prompt words."""
    reading = _Reading()
    words = re.findall(r"[a-z]+", prompt.lower())
    unwanted = re.findall(r"[a-z]+", (negative or "").lower())
    kept: list[str] = []
    negate = False
    for word in words:
        if word in _NEGATIONS:
            negate = True
        elif negate and word in ("a", "an", "the", "any"):
            continue
        elif negate:
            unwanted.append(word)
            negate = False
        else:
            kept.append(word)

    banned_forms = {f for w in unwanted if (f := _lemma(w, _FORM_WORDS))}
    banned_moods = {m for w in unwanted if (m := _lemma(w, _MOOD_WORDS))}
    banned_lands = {land for w in unwanted if (land := _lemma(w, _LAND_WORDS))}
    reading.avoid = [c for w in unwanted if (c := _colour_word(w))]
    reading.banned = banned_forms

    for index, word in enumerate(kept):
        colour = _colour_word(word)
        if colour is not None:
            if colour in reading.avoid:
                continue
            target = _target(kept[index + 1 : index + 4])
            if target is None:
                reading.loose.append(colour)
            else:
                reading.targeted.append((target, colour))
            continue
        known = False
        if (mood := _lemma(word, _MOOD_WORDS)) is not None:
            known = True
            if mood not in banned_moods and mood not in reading.moods:
                reading.moods.append(mood)
        if (land := _lemma(word, _LAND_WORDS)) is not None:
            known = True
            if land not in banned_lands and land not in reading.lands:
                reading.lands.append(land)
        if (form := _lemma(word, _FORM_WORDS)) is not None:
            known = True
            if form not in banned_forms:
                reading.forms.add(form)
        if (modifier := _MODIFIER_WORDS.get(word)) is not None:
            known = True
            reading.modifiers.add(modifier)
        known = known or _lemma(word, _TARGET_WORDS) is not None
        if not known and word not in _STOPWORDS and len(word) >= 3 and len(reading.hues) < _MAX_HUES:
            reading.hues.append(_hue_colour(word))
    return reading


# --- palette --------------------------------------------------------------------------------

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


# --- painting -------------------------------------------------------------------------------
# Pictures are planar float32 arrays of shape (3, height, width) with values in [0, 1]: with the
# channel first, a (height, width) mask broadcasts over long rows instead of 3-element pixels,
# which makes every blend several times faster than with interleaved RGB.


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


# --- latent refinement ----------------------------------------------------------------------


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
        progress(index + 1, steps)
    return (latent - target).astype(np.float32)


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


# --- input images ---------------------------------------------------------------------------


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert through the embedded ICC profile, if there is a usable one."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "CMYK", "L"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image
    return converted if converted is not None else image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded image as upright 8-bit RGB; transparency is laid on white."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        values: F32 = np.asarray(image, dtype=np.float32)
        peak = float(values.max()) if values.size else 0.0
        if mode.startswith("I;16") or (mode == "I" and peak > 255):
            values = values / 257
        elif mode == "F" and peak <= 1.0:
            values = values * 255
        grey = Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8))
        return grey.convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa") or (mode == "L" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    image = _to_srgb(image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _shrink(image: Image.Image, side: int) -> Image.Image:
    """Reduce a decoded image by a whole factor while both its sides stay at least ``side``.

    Done before any conversion, so a 64-million-pixel palette or 1-bit input is never expanded to
    full-size RGB just to be scaled down afterwards.
    """
    factor = min(image.size) // side
    if factor < 2:
        return image
    try:
        return image.reduce(factor)
    except ValueError:  # modes reduce() does not take ("1", "P"): nearest neighbour keeps them exact
        return image.resize((image.width // factor, image.height // factor), Image.Resampling.NEAREST)


def _crop_to_aspect(image: Image.Image, fit: tuple[int, int]) -> Image.Image:
    """The centred part of ``image`` with the aspect of ``fit`` (as displayed), which is all that
    ``ImageOps.fit`` keeps: cutting it out first lets a very tall or wide input be dropped at once
    rather than converted whole. ``image`` itself when little would be cut."""
    width, height = image.size
    target_w, target_h = fit
    if upright_size(image) != (width, height):  # the picture is turned a quarter when displayed
        target_w, target_h = target_h, target_w
    if width * target_h > height * target_w:  # wider than the target: keep the middle columns
        keep = max(1, math.ceil(height * target_w / target_h))
        box = ((width - keep) // 2, 0, (width - keep) // 2 + keep, height)
    else:
        keep = max(1, math.ceil(width * target_h / target_w))
        box = (0, (height - keep) // 2, width, (height - keep) // 2 + keep)
    if (box[2] - box[0]) * (box[3] - box[1]) * 2 > width * height:
        return image
    return image.crop(box)


def _load_rgb(data: bytes, field_name: str, fit: tuple[int, int] | None = None) -> Image.Image:
    """Decode an input image (its first frame) to RGB; ``fit`` lets a large one shrink first.

    The decode takes its size from the process's :data:`DECODE_BUDGET` first (waiting while other
    decodes hold it), and everything at full size is done and freed before that is given back.
    """
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as opened:
            # either side may end up as the width once the EXIF orientation is applied
            side = max(fit) if fit is not None else 0
            if side and opened.format in ("JPEG", "MPO"):
                opened.draft(None, (side, side))  # decode at a reduced scale when much larger
            with DECODE_BUDGET.take(decoded_bytes(opened, copy=4)):
                try:
                    opened.load()
                    image: Image.Image = _crop_to_aspect(opened, fit) if fit is not None else opened
                    image = _shrink(image, side) if side else image
                    return _to_rgb(image)  # always a new image, so closing the file is safe
                finally:
                    opened.close()  # the full-size pixels go before the budget is given back
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        raise InvalidParameters(f"{field_name} could not be decoded as an image", field=field_name) from error


# --- the three operations -------------------------------------------------------------------


def _latent_rng(spec: ImageSpec) -> np.random.Generator:
    return np.random.default_rng([spec.seed, _stable_hash(spec.prompt), 1000])


def _understand(spec: ImageSpec) -> tuple[_Reading, dict[str, F32]]:
    reading = _read(spec.prompt, spec.negative_prompt)
    return reading, _palette(reading, _or(spec.cfg_scale, 7.5), _hue_colour(spec.prompt))


def _text_to_image(spec: ImageSpec, progress: ProgressCallback) -> GeneratedImage:
    picture = _compose(spec, *_understand(spec))
    residual = _denoise(_downsample(picture), 1.0, _or(spec.steps, 25), _latent_rng(spec), progress)
    data = _encode(_finish(picture, residual))
    return GeneratedImage(data=data, extension="jpg", width=spec.width, height=spec.height, seed=spec.seed)


def _gradient_map(planes: npt.NDArray[np.uint8], pal: dict[str, F32]) -> F32:
    """Recolour a picture through the palette by its lightness, dark to light."""
    stops = np.array([0.0, 0.35, 0.7, 1.0], dtype=np.float32)
    colours = np.stack([pal["near"] * 0.5, pal["far"], pal["sky_horizon"], _lerp(pal["accent"], _WHITE, 0.3)])
    levels = np.linspace(0, 1, 256, dtype=np.float32)
    table = np.stack([np.interp(levels, stops, colours[:, k]) for k in range(3)]).astype(np.float32)
    luma = np.tensordot(_LUMA, planes, axes=1)
    index = np.clip(luma + 0.5, 0, 255).astype(np.uint8)
    return table[:, index]


def _image_to_image(
    spec: ImageSpec, source: SourceImage, strength: float, progress: ProgressCallback
) -> GeneratedImage:
    size = (spec.width, spec.height)
    loaded = _load_rgb(source.data, "seedImage", fit=size)
    fitted = loaded if loaded.size == size else ImageOps.fit(loaded, size, Image.Resampling.LANCZOS)
    planes = np.stack([np.asarray(band) for band in fitted.split()])
    base = planes.astype(np.float32)
    base *= np.float32(1 / 255)
    reading, pal = _understand(spec)
    # first the prompt's palette recolours the source, then the new composition replaces it
    grade = 0.7 * min(1.0, 1.6 * strength)
    if grade > 0:
        base += (_gradient_map(planes, pal) - base) * np.float32(grade)
    if strength > 0:
        base += (_compose(spec, reading, pal) - base) * np.float32(strength**2)
    residual = _denoise(_downsample(base), strength, _or(spec.steps, 25), _latent_rng(spec), progress)
    data = _encode(_finish(base, residual))
    return GeneratedImage(data=data, extension="jpg", width=spec.width, height=spec.height, seed=spec.seed)


def _upscale(source: SourceImage, scale: int, progress: ProgressCallback) -> GeneratedImage:
    image = _load_rgb(source.data, "imagePath")
    progress(1, 3)
    width, height = image.width * scale, image.height * scale
    larger = image.resize((width, height), Image.Resampling.LANCZOS)
    progress(2, 3)
    data = _encode(larger)
    progress(3, 3)
    return GeneratedImage(data=data, extension="jpg", width=width, height=height, seed=None)


_N = TypeVar("_N", int, float)


def _or(value: _N | None, default: _N) -> _N:
    """A spec value the local model always takes; unset only when a caller built the spec by hand."""
    return default if value is None else value


class LocalImageGenerator:
    """``ImageGenerator`` that paints procedurally on this machine; no network, no weights.

    Work runs in worker threads, at most ``max_workers`` at once (default: one per CPU). The
    limiter is made on first use, inside the event loop that uses the instance.
    """

    def __init__(self, *, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._workers = max_workers or os.cpu_count() or 1
        self._limiter: anyio.CapacityLimiter | None = None

    @property
    def name(self) -> str:
        return "local"

    def _capacity(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._workers)
        return self._limiter

    async def text_to_image(self, spec: ImageSpec, progress: ProgressCallback) -> GeneratedImage:
        return await anyio.to_thread.run_sync(_text_to_image, spec, progress, limiter=self._capacity())

    async def image_to_image(
        self, spec: ImageSpec, source: SourceImage, strength: float, progress: ProgressCallback
    ) -> GeneratedImage:
        return await anyio.to_thread.run_sync(
            _image_to_image, spec, source, strength, progress, limiter=self._capacity()
        )

    async def upscale(self, source: SourceImage, scale: int, progress: ProgressCallback) -> GeneratedImage:
        return await anyio.to_thread.run_sync(_upscale, source, scale, progress, limiter=self._capacity())
