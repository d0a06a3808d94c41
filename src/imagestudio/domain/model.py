"""Domain values and entities.

Every value validates itself on construction (the limits of CONTRACT.md section 4), so an
invalid request cannot exist past the edge of the domain. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal

from imagestudio.domain.errors import InvalidParameters, InvalidPrompt

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_STRENGTH",
    "MAX_INPUT_PIXELS",
    "MAX_SEED",
    "MAX_SIDE",
    "MAX_UPSCALE_SIDE",
    "MIN_SIDE",
    "GeneratedImage",
    "Generation",
    "HistoryCursor",
    "HistoryPage",
    "HistoryQuery",
    "HistorySort",
    "ImageSpec",
    "ImageToImage",
    "Operation",
    "Parameters",
    "Settings",
    "SettingsPatch",
    "SourceImage",
    "StoredImage",
    "TaskEvent",
    "TaskStatus",
    "TextToImage",
    "Upscale",
    "nearest_valid_side",
    "parse_timestamp",
    "search_terms",
    "validate_task_id",
]

MIN_SIDE: Final = 128
MAX_SIDE: Final = 2048
SIDE_STEP: Final = 64
MIN_STEPS: Final = 1
MAX_STEPS: Final = 100
MAX_CFG: Final = 50.0
MAX_SEED: Final = 2**53 - 1
PROMPT_MIN: Final = 2
PROMPT_MAX: Final = 3000
DEFAULT_MODEL: Final = "runware:100@1"
DEFAULT_STRENGTH: Final = 0.7
UPSCALE_FACTORS: Final = (2, 3, 4)
MAX_UPSCALE_SIDE: Final = 4096
MAX_INPUT_PIXELS: Final = 64_000_000
MAX_HISTORY_LIMIT: Final = 500
MAX_STORAGE_PATH: Final = 1024

_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MODEL_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_.-]{1,64}@[A-Za-z0-9_.-]{1,64}")


class Operation(StrEnum):
    TEXT_TO_IMAGE = "text-to-image"
    IMAGE_TO_IMAGE = "image-to-image"
    UPSCALE = "upscale"


class TaskStatus(StrEnum):
    QUEUED = "queued"
    GENERATING = "generating"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


# --- validation helpers -------------------------------------------------------------------


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


def _check_model(value: object) -> str:
    if not isinstance(value, str) or not _MODEL_ID.fullmatch(value):
        raise InvalidParameters("model must be a model id such as 'runware:100@1'", field="model")
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


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class _Common:
    """Fields shared by the diffusion commands; ``None`` means "use the setting or default"."""

    prompt: str
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    seed: int | None = None
    model: str | None = None
    task_id: str | None = None

    def _validate_common(self) -> None:
        _set(self, "prompt", _check_prompt(self.prompt))
        _set(self, "negative_prompt", _check_negative(self.negative_prompt))
        if self.width is not None:
            _check_side("width", self.width)
        if self.height is not None:
            _check_side("height", self.height)
        if self.steps is not None:
            _check_int("steps", self.steps, MIN_STEPS, MAX_STEPS)
        if self.cfg_scale is not None:
            _set(self, "cfg_scale", _check_number("cfgScale", self.cfg_scale, 0.0, MAX_CFG))
        if self.seed is not None:
            _check_int("seed", self.seed, 1, MAX_SEED)
        if self.model is not None:
            _check_model(self.model)
        if self.task_id is not None:
            validate_task_id(self.task_id)


@dataclass(frozen=True, kw_only=True, slots=True)
class TextToImage(_Common):
    """Ask for an image made from a prompt."""

    def __post_init__(self) -> None:
        self._validate_common()


@dataclass(frozen=True, kw_only=True, slots=True)
class ImageToImage(_Common):
    """Ask for an image made from an input image (``source``) steered by a prompt."""

    source: str
    strength: float = DEFAULT_STRENGTH

    def __post_init__(self) -> None:
        self._validate_common()
        _set(self, "source", _check_source("seedImage", self.source))
        _set(self, "strength", _check_number("strength", self.strength, 0.0, 1.0))


@dataclass(frozen=True, kw_only=True, slots=True)
class Upscale:
    """Ask for a larger copy of an input image."""

    source: str
    scale: int = 2
    task_id: str | None = None

    def __post_init__(self) -> None:
        _set(self, "source", _check_source("imagePath", self.source))
        if not _is_int(self.scale) or self.scale not in UPSCALE_FACTORS:
            raise InvalidParameters("scale must be 2, 3 or 4", field="scale")
        if self.task_id is not None:
            validate_task_id(self.task_id)


# --- what engines receive and return ------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ImageSpec:
    """A fully resolved diffusion request: every value is valid; ``None`` is not sent (the model
    does not take it, or uses its own default)."""

    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    steps: int | None
    cfg_scale: float | None
    seed: int
    model: str
    accepts: frozenset[str] | None = None
    """The parameters the model takes (``domain/models.py``); ``None``: not known, send them all."""

    def __post_init__(self) -> None:
        _set(self, "prompt", _check_prompt(self.prompt))
        _set(self, "negative_prompt", _check_negative(self.negative_prompt))
        _check_side("width", self.width)
        _check_side("height", self.height)
        if self.steps is not None:
            _check_int("steps", self.steps, MIN_STEPS, MAX_STEPS)
        if self.cfg_scale is not None:
            _set(self, "cfg_scale", _check_number("cfgScale", self.cfg_scale, 0.0, MAX_CFG))
        _check_int("seed", self.seed, 1, MAX_SEED)
        _check_model(self.model)


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceImage:
    """An input image, already read and checked to be a decodable image."""

    data: bytes = field(repr=False)
    width: int
    height: int
    format: str
    generation: Generation | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class GeneratedImage:
    """What an engine hands back: encoded bytes plus what the engine knows about them."""

    data: bytes = field(repr=False)
    extension: str
    width: int
    height: int
    seed: int | None = None
    remote_url: str | None = None
    cost: float | None = None
    model: str | None = None
    """The model that made it, when the engine chose it (an upscaler)."""
    provider_scale: int | None = None
    """For an upscale resampled to its scale afterwards: the factor the engine ran."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredImage:
    """Where an image lives: a storage ``root`` folder and a relative POSIX ``key`` inside it."""

    key: str
    root: str

    @property
    def file_path(self) -> str:
        """The URL path under which this server serves the image."""
        return f"/generated/{self.key}"


# --- entities -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Parameters:
    """The parameters a generation was made with (as recorded in history)."""

    width: int
    height: int
    steps: int | None
    cfg_scale: float | None
    seed: int | None
    model: str | None
    engine: str
    strength: float | None = None
    scale: int | None = None
    source_id: int | None = None
    provider_scale: int | None = None
    """The factor the upscaler ran when it differs from ``scale`` (4x, then resampled to 3x)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Generation:
    """One image in the history."""

    id: int | None
    operation: Operation
    prompt: str
    negative_prompt: str | None
    parameters: Parameters
    seed: int | None
    width: int
    height: int
    image: StoredImage
    remote_url: str | None
    task_id: str
    created_at: datetime
    type: Literal["image", "video"] = "image"
    cost: float | None = None

    @property
    def file_path(self) -> str:
        return self.image.file_path

    def with_id(self, new_id: int) -> Generation:
        return replace(self, id=new_id)


# --- history ------------------------------------------------------------------------------

MAX_SEARCH_LENGTH: Final = 200
MAX_SEARCH_TERMS: Final = 16
_SEARCH_WORD = re.compile(r"[^\W_]+")
_ENGINE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_CURSOR_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,120}")
_CURSOR_TEXT = re.compile(r"1:([no]):(-?[0-9]{1,20}):([0-9]{1,19})")
_SPACED_OFFSET = re.compile(r"(T[0-9:.]+) ([0-9]{2}:?[0-9]{2})$")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_ID: Final = 2**63 - 1


def search_terms(text: str) -> tuple[str, ...]:
    """The words of ``text`` as the history search sees them: runs of letters and digits, lower-cased.

    ``"Red-Sunset over the_sea, 4K!"`` has the words ``red``, ``sunset``, ``over``, ``the``, ``sea``, ``4k``.
    """
    return tuple(_SEARCH_WORD.findall(text.lower()))


class HistorySort(StrEnum):
    """The order of a history listing: by ``created_at`` and then ``id``."""

    NEWEST = "newest"
    OLDEST = "oldest"


def _enum_value(enum: type[Any], name: str, value: object) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidParameters(f"{name} must be one of {allowed}", field=name) from None


def _utc(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidParameters(f"{name} must be an ISO-8601 date-time", field=name)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_timestamp(name: str, raw: str) -> datetime:
    """An ISO-8601 date or date-time from a request parameter, in UTC (no offset means UTC).

    ``2026-01-02``, ``2026-01-02T10:00:00Z`` and ``2026-01-02T11:00:00+01:00`` are accepted; so is
    an offset whose ``+`` an unencoded query string turned into a space.
    """
    text = _SPACED_OFFSET.sub(r"\1+\2", raw.strip())
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidParameters(
            f"{name} must be an ISO-8601 date or date-time such as 2026-01-02T10:00:00Z", field=name
        ) from None
    return _utc(name, value)


@dataclass(frozen=True, kw_only=True, slots=True)
class HistoryCursor:
    """Where a page of history ended: the sort key ``(created_at, id)`` of its last item.

    Clients see it only as the opaque text of :meth:`encode` (url-safe base64, no padding).
    """

    sort: HistorySort
    created_at: datetime
    id: int

    def __post_init__(self) -> None:
        _set(self, "sort", _enum_value(HistorySort, "sort", self.sort))
        _set(self, "created_at", _utc("cursor", self.created_at))
        _check_int("cursor", self.id, 0, _MAX_ID)

    @classmethod
    def after(cls, generation: Generation, sort: HistorySort) -> HistoryCursor:
        """The cursor that continues after ``generation``."""
        assert generation.id is not None
        return cls(sort=sort, created_at=generation.created_at, id=generation.id)

    def encode(self) -> str:
        micros = (self.created_at - _EPOCH) // timedelta(microseconds=1)
        text = f"1:{self.sort.value[0]}:{micros}:{self.id}"
        return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, token: str) -> HistoryCursor:
        """Read a cursor handed out by :meth:`encode`; anything else is ``InvalidParameters``."""
        invalid = _invalid_cursor()
        match = _CURSOR_TEXT.fullmatch(cursor_text(token, _CURSOR_TOKEN))
        if match is None:
            raise invalid
        try:
            created = _EPOCH + timedelta(microseconds=int(match.group(2)))
        except OverflowError:
            raise invalid from None
        ident = int(match.group(3))
        if ident > _MAX_ID:
            raise invalid
        sort = HistorySort.NEWEST if match.group(1) == "n" else HistorySort.OLDEST
        return cls(sort=sort, created_at=created, id=ident)


def _invalid_cursor() -> InvalidParameters:
    return InvalidParameters(
        "cursor is not one this server handed out: pass nextCursor back unchanged", field="cursor"
    )


def cursor_text(token: object, shape: re.Pattern[str]) -> str:
    """The text inside an opaque cursor (unpadded URL-safe base64 of ASCII) whose token has
    ``shape``; anything else is ``InvalidParameters`` naming ``cursor``."""
    if not isinstance(token, str) or not shape.fullmatch(token):
        raise _invalid_cursor()
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except ValueError:
        raise _invalid_cursor() from None


@dataclass(frozen=True, kw_only=True, slots=True)
class HistoryQuery:
    """One page of the history and the filter it is drawn from.

    Rules, which every ``GenerationRepository`` follows (the in-memory fake is the reference):
    - order: ``created_at`` and then ``id``, descending for ``sort=newest`` (the default),
      ascending for ``oldest``;
    - filters combine with AND: ``type``, ``operation``, ``engine`` and ``model`` match exactly;
      ``created_from`` is inclusive, ``created_to`` exclusive;
    - ``q``: every word of it (see :func:`search_terms`) is a word of the prompt or of the
      negative prompt, in any order, ignoring case: ``"SKY red"`` finds "Sunset, red sky". Whole
      words: ``sun`` does not find "Sunset" (full-text search, without stemming);
    - ``cursor`` continues after the item it names (keyset pagination): pages stay stable while
      generations are added; it carries its sort order and cannot be combined with ``offset``;
    - ``total`` counts everything the filter matches, wherever the page is.
    """

    limit: int = 50
    offset: int = 0
    type: Literal["image", "video"] | None = None
    q: str | None = None
    operation: Operation | None = None
    engine: str | None = None
    model: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    sort: HistorySort = HistorySort.NEWEST
    cursor: HistoryCursor | None = None
    terms: tuple[str, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        _check_int("limit", self.limit, 1, MAX_HISTORY_LIMIT)
        _check_int("offset", self.offset, 0, 2**62)
        if self.type is not None and self.type not in ("image", "video"):
            raise InvalidParameters("type must be 'image' or 'video'", field="type")
        self._check_search()
        if self.operation is not None:
            _set(self, "operation", _enum_value(Operation, "operation", self.operation))
        if self.engine is not None and not (
            isinstance(self.engine, str) and _ENGINE_NAME.fullmatch(self.engine)
        ):
            raise InvalidParameters("engine must be 1 to 32 letters, digits, '.', '_' or '-'", field="engine")
        if self.model is not None:
            _check_model(self.model)
        if self.created_from is not None:
            _set(self, "created_from", _utc("from", self.created_from))
        if self.created_to is not None:
            _set(self, "created_to", _utc("to", self.created_to))
        if self.created_from and self.created_to and self.created_from > self.created_to:
            raise InvalidParameters("to must not be earlier than from", field="to")
        _set(self, "sort", _enum_value(HistorySort, "sort", self.sort))
        if self.cursor is not None:
            if not isinstance(self.cursor, HistoryCursor):
                raise InvalidParameters("cursor must be a history cursor", field="cursor")
            if self.cursor.sort is not self.sort:
                raise InvalidParameters(
                    f"cursor belongs to sort={self.cursor.sort.value}, not sort={self.sort.value}",
                    field="cursor",
                )
            if self.offset:
                raise InvalidParameters("cursor and offset cannot be combined", field="offset")

    def _check_search(self) -> None:
        if self.q is None:
            return
        if not isinstance(self.q, str):
            raise InvalidParameters("q must be a string", field="q")
        text = self.q.strip()
        if not text:
            _set(self, "q", None)
            return
        if len(text) > MAX_SEARCH_LENGTH:
            raise InvalidParameters(f"q must be at most {MAX_SEARCH_LENGTH} characters", field="q")
        terms = tuple(dict.fromkeys(search_terms(text)))
        if not terms:
            raise InvalidParameters("q must contain at least one letter or digit", field="q")
        if len(terms) > MAX_SEARCH_TERMS:
            raise InvalidParameters(f"q must have at most {MAX_SEARCH_TERMS} words", field="q")
        _set(self, "q", text)
        _set(self, "terms", terms)

    @classmethod
    def parse(
        cls,
        *,
        limit: int = 50,
        offset: int = 0,
        type: Literal["image", "video"] | None = None,
        q: str | None = None,
        operation: str | None = None,
        engine: str | None = None,
        model: str | None = None,
        created_from: str | None = None,
        created_to: str | None = None,
        sort: str | None = None,
        cursor: str | None = None,
    ) -> HistoryQuery:
        """A query from the text of request parameters; ``from``/``to`` are ISO-8601 texts.

        An empty ``q`` or ``cursor`` is the same as none (an empty search box, a first page).
        """
        return cls(
            limit=limit,
            offset=offset,
            type=type,
            q=q,
            operation=None if operation is None else _enum_value(Operation, "operation", operation),
            engine=engine,
            model=model,
            created_from=None if created_from is None else parse_timestamp("from", created_from),
            created_to=None if created_to is None else parse_timestamp("to", created_to),
            sort=HistorySort.NEWEST if sort is None else _enum_value(HistorySort, "sort", sort),
            cursor=HistoryCursor.decode(cursor) if cursor else None,
        )

    @property
    def filters_only_by_type(self) -> bool:
        """True when ``type`` is the only filter (so a kept count can answer ``total``)."""
        return not (
            self.terms or self.operation or self.engine or self.model or self.created_from or self.created_to
        )

    def matches(self, generation: Generation) -> bool:
        """Whether ``generation`` passes the filter (the cursor aside)."""
        g = generation
        if self.type is not None and g.type != self.type:
            return False
        if self.operation is not None and g.operation != self.operation:
            return False
        if self.engine is not None and g.parameters.engine != self.engine:
            return False
        if self.model is not None and g.parameters.model != self.model:
            return False
        if self.created_from is not None and g.created_at < self.created_from:
            return False
        if self.created_to is not None and g.created_at >= self.created_to:
            return False
        if self.terms:
            words = search_terms(g.prompt) + search_terms(g.negative_prompt or "")
            return set(self.terms) <= set(words)
        return True

    def sort_key(self, generation: Generation) -> tuple[datetime, int]:
        return generation.created_at, generation.id or 0

    def follows_cursor(self, generation: Generation) -> bool:
        """Whether ``generation`` comes after the cursor in this query's order (True without one)."""
        if self.cursor is None:
            return True
        mark = (self.cursor.created_at, self.cursor.id)
        key = self.sort_key(generation)
        return key < mark if self.sort is HistorySort.NEWEST else key > mark

    def page(self, fetched: Sequence[Generation], total: int) -> HistoryPage:
        """The page from up to ``limit + 1`` items in order: the extra one proves there is a next page."""
        items = list(fetched[: self.limit])
        more = len(fetched) > self.limit and bool(items)
        next_cursor = HistoryCursor.after(items[-1], self.sort).encode() if more else None
        return HistoryPage(items=items, total=total, next_cursor=next_cursor)


@dataclass(frozen=True, kw_only=True, slots=True)
class HistoryPage:
    """The items of one page, how many the filter matches, and the cursor of the next page (if any)."""

    items: list[Generation]
    total: int
    next_cursor: str | None = None


# --- settings -----------------------------------------------------------------------------


def _check_storage_path(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameters("storagePath must be a non-empty string", field="storagePath")
    if "\x00" in value or len(value) > MAX_STORAGE_PATH:
        raise InvalidParameters("storagePath is not a usable folder name", field="storagePath")
    return value.strip()


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """The user's settings. Every value is always present."""

    storage_path: str = "./generated"
    default_width: int = 512
    default_height: int = 512
    default_steps: int = 25
    default_cfg_scale: float = 7.5

    def __post_init__(self) -> None:
        _set(self, "storage_path", _check_storage_path(self.storage_path))
        _check_side("defaultWidth", self.default_width)
        _check_side("defaultHeight", self.default_height)
        _check_int("defaultSteps", self.default_steps, MIN_STEPS, MAX_STEPS)
        _set(
            self, "default_cfg_scale", _check_number("defaultCfgScale", self.default_cfg_scale, 0.0, MAX_CFG)
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class SettingsPatch:
    """A partial update of :class:`Settings`; ``None`` leaves a value as it is."""

    storage_path: str | None = None
    default_width: int | None = None
    default_height: int | None = None
    default_steps: int | None = None
    default_cfg_scale: float | None = None

    def __post_init__(self) -> None:
        if self.storage_path is not None:
            _set(self, "storage_path", _check_storage_path(self.storage_path))
        if self.default_width is not None:
            _check_side("defaultWidth", self.default_width)
        if self.default_height is not None:
            _check_side("defaultHeight", self.default_height)
        if self.default_steps is not None:
            _check_int("defaultSteps", self.default_steps, MIN_STEPS, MAX_STEPS)
        if self.default_cfg_scale is not None:
            _set(
                self,
                "default_cfg_scale",
                _check_number("defaultCfgScale", self.default_cfg_scale, 0.0, MAX_CFG),
            )

    def changes(self) -> dict[str, Any]:
        """The values this patch sets, by attribute name."""
        names = ("storage_path", "default_width", "default_height", "default_steps", "default_cfg_scale")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def apply(self, settings: Settings) -> Settings:
        return replace(settings, **self.changes())


# --- progress -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskEvent:
    """One progress message of one task."""

    task_id: str
    status: TaskStatus
    progress: int
    generation_id: int | None = None
    error: str | None = None
    code: str | None = None
    position: int | None = None
    seq: int = 0
