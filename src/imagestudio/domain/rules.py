"""The rules of single request fields: the limits of CONTRACT.md section 4 and the id patterns,
defined here only (the HTTP schemas and query parameters are built from them), and the checks the
values of ``values.py`` run on construction.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from typing import Final, Literal, get_args

from imagestudio.domain.errors import InvalidParameters, InvalidPrompt

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_STRENGTH",
    "DEFAULT_TAG_LIST_LIMIT",
    "MAX_BATCH",
    "MAX_CFG",
    "MAX_GENERATION_ID",
    "MAX_INPUT_PIXELS",
    "MAX_MODEL_ID_LENGTH",
    "MAX_NOTES_LENGTH",
    "MAX_SEED",
    "MAX_SIDE",
    "MAX_STEPS",
    "MAX_STORAGE_PATH",
    "MAX_STORED_TAG_LENGTH",
    "MAX_STRENGTH",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "MAX_TAG_LIST_LIMIT",
    "MAX_UPSCALE_SIDE",
    "MIN_BATCH",
    "MIN_CFG",
    "MIN_SEED",
    "MIN_SIDE",
    "MIN_STEPS",
    "MIN_STRENGTH",
    "MODEL_ID_PATTERN",
    "NOTES_PATTERN",
    "PROMPT_MAX",
    "PROMPT_MIN",
    "SAME_SEED",
    "SIDE_STEP",
    "TAG_FILTER_PATTERN",
    "TAG_PATTERN",
    "TASK_ID_PATTERN",
    "UPSCALE_FACTORS",
    "SameSeed",
    "UpscaleFactor",
    "batch_seed",
    "check_model_id",
    "check_notes",
    "check_tags",
    "could_begin_a_tag",
    "is_air_model_id",
    "nearest_valid_side",
    "normalize_tag",
    "validate_task_id",
]

# The limits of CONTRACT.md section 4, defined here only: the HTTP schemas are built from them.
MIN_SIDE: Final = 128
MAX_SIDE: Final = 2048
SIDE_STEP: Final = 64
MIN_STEPS: Final = 1
MAX_STEPS: Final = 100
MIN_CFG: Final = 0
MAX_CFG: Final = 50
MIN_SEED: Final = 1
MAX_SEED: Final = 2**53 - 1
PROMPT_MIN: Final = 2
PROMPT_MAX: Final = 3000
"""Prompt lengths after trimming; a negative prompt is empty or as long as a prompt."""
MIN_STRENGTH: Final = 0
MAX_STRENGTH: Final = 1
MIN_BATCH: Final = 1
MAX_BATCH: Final = 8
"""How many images one text-to-image or image-to-image request may make (``count``)."""
DEFAULT_MODEL: Final = "runware:100@1"
DEFAULT_STRENGTH: Final = 0.7
UpscaleFactor = Literal[2, 3, 4]
UPSCALE_FACTORS: Final[tuple[int, ...]] = get_args(UpscaleFactor)
MAX_UPSCALE_SIDE: Final = 4096
MAX_GENERATION_ID: Final = 2**63 - 1
"""Generation ids are positive 64-bit integers: anything else names no generation."""
SameSeed = Literal["same"]
SAME_SEED: Final[str] = get_args(SameSeed)[0]
"""The ``seed`` of a re-run that reuses the generation's own seed (without one, a new one is drawn)."""
MAX_INPUT_PIXELS: Final = 64_000_000
MAX_STORAGE_PATH: Final = 1024
MAX_MODEL_ID_LENGTH: Final = 200
"""The longest model id a request may carry (the history column's width)."""
TASK_ID_PATTERN: Final = r"[A-Za-z0-9_-]{1,64}"
"""A client-chosen task id, whole (``fullmatch``)."""
MODEL_ID_PATTERN: Final = r"[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_.-]{1,64}@[A-Za-z0-9_.-]{1,64}"
"""A model id (Runware's AIR, ``provider:model@version``), whole (``fullmatch``)."""
MAX_TAG_LENGTH: Final = 64
"""The longest tag, in characters, once trimmed (case-folding may lengthen the stored form,
``ß`` to ``ss``: at most three times)."""
MAX_TAGS: Final = 32
"""The most tags one generation (or one history filter) carries."""
MAX_NOTES_LENGTH: Final = 10_000
"""The longest note on a generation, in characters."""
MAX_TAG_LIST_LIMIT: Final = 1000
"""The most tags one answer of the tag list holds."""
DEFAULT_TAG_LIST_LIMIT: Final = 100

# What no tag may contain (control characters, line and paragraph separators) and the spaces
# trimming removes besides them (``str.strip``), as regular expression classes. Lone surrogates
# are refused too, but no JSON decoder hands one out, and a pattern naming them is one that
# schema tools cannot read: the patterns leave them out.
_NOT_IN_TAGS = r"\u0000-\u001f\u007f-\u009f\u2028\u2029"
_SPACES = r" \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
MAX_STORED_TAG_LENGTH: Final = 3 * MAX_TAG_LENGTH
"""The longest stored form of a tag (``str.casefold`` makes at most three characters of one)."""


def _tag_pattern(longest: int) -> str:
    return (
        rf"^[{_SPACES}]*[^{_NOT_IN_TAGS}{_SPACES}]"
        rf"(?:[^{_NOT_IN_TAGS}]{{0,{longest - 2}}}[^{_NOT_IN_TAGS}{_SPACES}])?[{_SPACES}]*$"
    )


TAG_PATTERN: Final = _tag_pattern(MAX_TAG_LENGTH)
"""What :func:`normalize_tag` accepts as a new tag, as a regular expression (the OpenAPI
document's)."""
TAG_FILTER_PATTERN: Final = _tag_pattern(MAX_STORED_TAG_LENGTH)
"""What it accepts as a tag to look for (``longest=MAX_STORED_TAG_LENGTH``: the stored form of
any tag, as the tag list shows it, finds it)."""
NOTES_PATTERN: Final = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
"""The characters :func:`check_notes` accepts (its length is :data:`MAX_NOTES_LENGTH`)."""

_TASK_ID = re.compile(TASK_ID_PATTERN)
_MODEL_ID = re.compile(MODEL_ID_PATTERN)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: object, low: int, high: int, *, multiple_of: int | None = None) -> int:
    if not _is_int(value):
        raise InvalidParameters(f"{name} must be an integer", field=name)
    assert isinstance(value, int)
    if not low <= value <= high:
        raise InvalidParameters(f"{name} must be between {low} and {high}", field=name)
    if multiple_of is not None and value % multiple_of:
        raise InvalidParameters(f"{name} must be a multiple of {multiple_of}", field=name)
    return value


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidParameters(f"{name} must be true or false", field=name)
    return value


def _check_number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameters(f"{name} must be a number", field=name)
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidParameters(f"{name} must be between {low:g} and {high:g}", field=name)
    return number


def _check_side(name: str, value: object) -> int:
    return _check_int(name, value, MIN_SIDE, MAX_SIDE, multiple_of=SIDE_STEP)


def _check_prompt(value: object) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidPrompt("Prompt is required", details={"field": "prompt"})
    if not isinstance(value, str):
        raise InvalidParameters("prompt must be a string", field="prompt")
    text = value.strip()
    if not PROMPT_MIN <= len(text) <= PROMPT_MAX:
        raise InvalidPrompt(
            f"Prompt must be {PROMPT_MIN} to {PROMPT_MAX} characters long", details={"field": "prompt"}
        )
    return text


def _check_negative(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParameters("negativePrompt must be a string", field="negativePrompt")
    text = value.strip()
    if not text:
        return None
    if not PROMPT_MIN <= len(text) <= PROMPT_MAX:
        raise InvalidParameters(
            f"negativePrompt must be {PROMPT_MIN} to {PROMPT_MAX} characters long", field="negativePrompt"
        )
    return text


_MODEL_MESSAGE: Final = "model must be a model id such as 'runware:100@1'"


def is_air_model_id(value: str) -> bool:
    """Whether ``value`` is an AIR id (``provider:model@version``, :data:`MODEL_ID_PATTERN`): the
    syntax today's engines accept, each through its own ``ImageGenerator.accepts_model_id``."""
    return _MODEL_ID.fullmatch(value) is not None


def _check_model(value: object) -> str:
    """An AIR model id (the history filter, which spans the engines)."""
    if not isinstance(value, str) or not is_air_model_id(value):
        raise InvalidParameters(_MODEL_MESSAGE, field="model")
    return value


def _check_model_text(value: object) -> str:
    """What any engine's model id is: a string of 1 to :data:`MAX_MODEL_ID_LENGTH` characters.
    The syntax is the engine's rule (:func:`check_model_id`), checked once the engine is known."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_MODEL_ID_LENGTH:
        raise InvalidParameters(_MODEL_MESSAGE, field="model")
    return value


def check_model_id(value: str, accepts: Callable[[str], bool]) -> str:
    """Return ``value`` if the engine ``accepts`` it as a model id, else ``InvalidParameters``
    (field ``model``) with the message every engine's refusal carries."""
    if not accepts(value):
        raise InvalidParameters(_MODEL_MESSAGE, field="model")
    return value


def validate_task_id(value: object) -> str:
    """Return ``value`` if it is a valid client-chosen task id, else raise."""
    if not isinstance(value, str) or not _TASK_ID.fullmatch(value):
        raise InvalidParameters("taskId must be 1 to 64 letters, digits, '_' or '-'", field="taskId")
    return value


def _check_source(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameters(f"{name} is required", field=name)
    if "\x00" in value:
        raise InvalidParameters(f"{name} must not contain NUL characters", field=name)
    return value.strip()


def nearest_valid_side(pixels: int) -> int:
    """The generation size (multiple of 64, 128..2048) nearest to ``pixels``."""
    snapped = round(pixels / SIDE_STEP) * SIDE_STEP
    return max(MIN_SIDE, min(MAX_SIDE, snapped))


def _is_control(character: str) -> bool:
    """Control characters (C0, DEL, C1) and lone surrogates (which no database stores)."""
    return unicodedata.category(character) in ("Cc", "Cs")


def _breaks_a_line(character: str) -> bool:
    return _is_control(character) or unicodedata.category(character) in ("Zl", "Zp")


def normalize_tag(value: object, field: str = "tags", *, longest: int = MAX_TAG_LENGTH) -> str:
    """A tag as it is stored and matched: trimmed and case-folded (``str.casefold``, so
    `` Straße`` is ``strasse``). Before that it is checked: no control characters or line breaks,
    and 1 to ``longest`` characters once trimmed (:data:`TAG_PATTERN` says the same to clients),
    else ``InvalidParameters`` naming ``field``."""
    if not isinstance(value, str):
        raise InvalidParameters(f"{field} must be strings", field=field)
    if any(_breaks_a_line(character) for character in value):
        raise InvalidParameters("A tag must not contain control characters or line breaks", field=field)
    text = value.strip()
    if not 0 < len(text) <= longest:
        raise InvalidParameters(f"A tag must be 1 to {longest} characters once trimmed", field=field)
    return text.casefold()


def check_tags(values: object, field: str = "tags", *, longest: int = MAX_TAG_LENGTH) -> tuple[str, ...]:
    """A list of at most :data:`MAX_TAGS` tags, each made the stored form (:func:`normalize_tag`),
    duplicates dropped (the first kept, in the order given)."""
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise InvalidParameters(f"{field} must be a list of strings", field=field)
    if len(values) > MAX_TAGS:
        raise InvalidParameters(f"{field} must hold at most {MAX_TAGS} tags", field=field)
    return tuple(dict.fromkeys(normalize_tag(value, field, longest=longest) for value in values))


_NOTE_WHITESPACE: Final = frozenset("\t\n\r")


def check_notes(value: object) -> str | None:
    """A note: any text of at most :data:`MAX_NOTES_LENGTH` characters, without control
    characters but tabs and line breaks; blank means none (``None``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParameters("notes must be a string or null", field="notes")
    if any(_is_control(character) and character not in _NOTE_WHITESPACE for character in value):
        raise InvalidParameters(
            "notes must not contain control characters (tabs and line breaks are fine)", field="notes"
        )
    if len(value) > MAX_NOTES_LENGTH:
        raise InvalidParameters(f"notes must be at most {MAX_NOTES_LENGTH} characters", field="notes")
    return value if value.strip() else None


def could_begin_a_tag(prefix: str) -> bool:
    """Whether some stored tag could start with ``prefix`` (a stored form): it holds no character
    a tag cannot hold and is no longer than the longest stored tag."""
    return len(prefix) <= MAX_STORED_TAG_LENGTH and not any(_breaks_a_line(c) for c in prefix)


def batch_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` (0 first) of a batch that starts at ``seed``: ``seed + index``,
    wrapping from :data:`MAX_SEED` back to :data:`MIN_SEED`, so each image can be made again alone."""
    return (seed - MIN_SEED + index) % (MAX_SEED - MIN_SEED + 1) + MIN_SEED
