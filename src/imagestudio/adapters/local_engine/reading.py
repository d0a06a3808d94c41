"""Prompt reading: the engine's vocabulary and what a prompt and a negative prompt ask for.

:func:`_read` turns words into moods, lands, forms, colours bound to a part of the picture,
modifiers and things to avoid; words the engine does not know still give a stable hue, so
every prompt changes the picture.
"""

from __future__ import annotations

import colorsys
import hashlib
import re
from dataclasses import dataclass, field
from typing import Final

RGB = tuple[int, int, int]

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
