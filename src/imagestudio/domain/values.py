"""Domain values and entities: the commands, what engines take and give, generations, settings,
progress events, task snapshots and idempotency records. The history query is in
``domain/history_query.py``; import both through ``imagestudio.domain.model``.

Every value validates itself on construction (the limits of CONTRACT.md section 4), so an
invalid request cannot exist past the edge of the domain. Nothing here does I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal, get_args

from imagestudio.domain.errors import InvalidParameters, InvalidPrompt

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_STRENGTH",
    "MAX_CFG",
    "MAX_INPUT_PIXELS",
    "MAX_MODEL_ID_LENGTH",
    "MAX_SEED",
    "MAX_SIDE",
    "MAX_STEPS",
    "MAX_STORAGE_PATH",
    "MAX_STRENGTH",
    "MAX_UPSCALE_SIDE",
    "MIN_CFG",
    "MIN_SEED",
    "MIN_SIDE",
    "MIN_STEPS",
    "MIN_STRENGTH",
    "MODEL_ID_PATTERN",
    "PROMPT_MAX",
    "PROMPT_MIN",
    "SIDE_STEP",
    "TASK_ID_PATTERN",
    "UPSCALE_FACTORS",
    "GeneratedImage",
    "Generation",
    "IdempotencyRecord",
    "ImageSpec",
    "ImageToImage",
    "InvalidTransition",
    "Operation",
    "Parameters",
    "Settings",
    "SettingsPatch",
    "SourceImage",
    "StoredFile",
    "StoredImage",
    "Task",
    "TaskEvent",
    "TaskStatus",
    "TextToImage",
    "Upscale",
    "UpscaleFactor",
    "check_model_id",
    "is_air_model_id",
    "nearest_valid_side",
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
DEFAULT_MODEL: Final = "runware:100@1"
DEFAULT_STRENGTH: Final = 0.7
UpscaleFactor = Literal[2, 3, 4]
UPSCALE_FACTORS: Final[tuple[int, ...]] = get_args(UpscaleFactor)
MAX_UPSCALE_SIDE: Final = 4096
MAX_INPUT_PIXELS: Final = 64_000_000
MAX_STORAGE_PATH: Final = 1024
MAX_MODEL_ID_LENGTH: Final = 200
"""The longest model id a request may carry (the history column's width)."""
TASK_ID_PATTERN: Final = r"[A-Za-z0-9_-]{1,64}"
"""A client-chosen task id, whole (``fullmatch``)."""
MODEL_ID_PATTERN: Final = r"[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_.-]{1,64}@[A-Za-z0-9_.-]{1,64}"
"""A model id (Runware's AIR, ``provider:model@version``), whole (``fullmatch``)."""

_TASK_ID = re.compile(TASK_ID_PATTERN)
_MODEL_ID = re.compile(MODEL_ID_PATTERN)


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
            _set(self, "cfg_scale", _check_number("cfgScale", self.cfg_scale, MIN_CFG, MAX_CFG))
        if self.seed is not None:
            _check_int("seed", self.seed, MIN_SEED, MAX_SEED)
        if self.model is not None:
            _check_model_text(self.model)
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
        _set(self, "strength", _check_number("strength", self.strength, MIN_STRENGTH, MAX_STRENGTH))


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
            _set(self, "cfg_scale", _check_number("cfgScale", self.cfg_scale, MIN_CFG, MAX_CFG))
        _check_int("seed", self.seed, MIN_SEED, MAX_SEED)
        _check_model_text(self.model)


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


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredFile:
    """A file that an :class:`ImageStorage` finds in one of its folders (see ``scan``)."""

    image: StoredImage
    """Where it is: the storage root and the key inside it."""
    temporary: bool
    """A temporary file of an unfinished write (``.tmp-*``), not a finished image."""
    size: int
    modified_at: datetime
    """When it was last written, timezone-aware UTC."""


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
            self,
            "default_cfg_scale",
            _check_number("defaultCfgScale", self.default_cfg_scale, MIN_CFG, MAX_CFG),
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
                _check_number("defaultCfgScale", self.default_cfg_scale, MIN_CFG, MAX_CFG),
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


# --- tasks and idempotency records --------------------------------------------------------


class InvalidTransition(Exception):
    """A task was asked to move in a way its lifecycle forbids (a programming error)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Task:
    """A snapshot of one task."""

    id: str
    operation: Operation
    status: TaskStatus
    progress: int
    created_at: datetime
    position: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    generation_id: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    image: StoredImage | None = None
    """An image written for this task but not yet recorded in the history (crash clean-up)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class IdempotencyRecord:
    key: str
    fingerprint: str
    task_id: str
    created_at: datetime
