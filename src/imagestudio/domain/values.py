"""Domain values and entities: the commands, what engines take and give, generations, settings,
progress events, task snapshots and idempotency records. The history query is in
``domain/history_query.py``; import both through ``imagestudio.domain.model``.

Every value validates itself on construction (the limits and field checks of ``rules.py``,
re-exported here), so an invalid request cannot exist past the edge of the domain. Nothing here
does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Final, Literal

from imagestudio.domain.errors import InvalidParameters
from imagestudio.domain.rules import (
    DEFAULT_MODEL,
    DEFAULT_STRENGTH,
    MAX_BATCH,
    MAX_CFG,
    MAX_INPUT_PIXELS,
    MAX_MODEL_ID_LENGTH,
    MAX_NOTES_LENGTH,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    MAX_STORAGE_PATH,
    MAX_STRENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_UPSCALE_SIDE,
    MIN_BATCH,
    MIN_CFG,
    MIN_SEED,
    MIN_SIDE,
    MIN_STEPS,
    MIN_STRENGTH,
    MODEL_ID_PATTERN,
    PROMPT_MAX,
    PROMPT_MIN,
    SAME_SEED,
    SIDE_STEP,
    TASK_ID_PATTERN,
    UPSCALE_FACTORS,
    SameSeed,
    UpscaleFactor,
    _check_bool,
    _check_int,
    _check_model_text,
    _check_negative,
    _check_number,
    _check_prompt,
    _check_side,
    _check_source,
    _is_int,
    check_model_id,
    check_notes,
    check_tags,
    is_air_model_id,
    nearest_valid_side,
    normalize_tag,
    validate_task_id,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_STRENGTH",
    "MAX_BATCH",
    "MAX_CFG",
    "MAX_INPUT_PIXELS",
    "MAX_MODEL_ID_LENGTH",
    "MAX_NOTES_LENGTH",
    "MAX_SEED",
    "MAX_SIDE",
    "MAX_STEPS",
    "MAX_STORAGE_PATH",
    "MAX_STRENGTH",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "MAX_UPSCALE_SIDE",
    "MIN_BATCH",
    "MIN_CFG",
    "MIN_SEED",
    "MIN_SIDE",
    "MIN_STEPS",
    "MIN_STRENGTH",
    "MODEL_ID_PATTERN",
    "PROMPT_MAX",
    "PROMPT_MIN",
    "SAME_SEED",
    "SETTING_NAMES",
    "SIDE_STEP",
    "TASK_ID_PATTERN",
    "THUMBNAIL_SIDE",
    "THUMBNAIL_SUFFIX",
    "UNCHANGED",
    "UPSCALE_FACTORS",
    "FoundMetadata",
    "FoundParameters",
    "GeneratedImage",
    "Generation",
    "GenerationPatch",
    "IdempotencyRecord",
    "ImageSpec",
    "ImageToImage",
    "InvalidTransition",
    "MetadataSource",
    "Operation",
    "Parameters",
    "Provenance",
    "Rerun",
    "SameSeed",
    "Settings",
    "SettingsPatch",
    "SourceImage",
    "StoredFile",
    "StoredImage",
    "Task",
    "TaskEvent",
    "TaskStatus",
    "TextToImage",
    "Unchanged",
    "Upscale",
    "UpscaleFactor",
    "check_model_id",
    "check_notes",
    "check_tags",
    "is_air_model_id",
    "nearest_valid_side",
    "normalize_tag",
    "thumbnail_owner",
    "validate_task_id",
]


class Operation(StrEnum):
    """What a generation does."""

    TEXT_TO_IMAGE = "text-to-image"
    IMAGE_TO_IMAGE = "image-to-image"
    UPSCALE = "upscale"


class TaskStatus(StrEnum):
    """Where a task is in its life: queued, generating, then completed, failed or cancelled."""

    QUEUED = "queued"
    GENERATING = "generating"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


# --- validation helpers -------------------------------------------------------------------


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
    count: int = 1
    """How many images to make (a batch): seeds ``seed``, ``seed+1``, ..."""

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
        _check_int("count", self.count, MIN_BATCH, MAX_BATCH)


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

    @property
    def thumbnail(self) -> StoredImage:
        """Where this image's thumbnail lives: beside it, named after it (:data:`THUMBNAIL_SUFFIX`)."""
        return StoredImage(key=self.key + THUMBNAIL_SUFFIX, root=self.root)


THUMBNAIL_SIDE: Final = 256
"""The longest side of a thumbnail in pixels (a smaller image keeps its own size)."""
THUMBNAIL_SUFFIX: Final = ".thumb.webp"
"""What a thumbnail's key adds to its image's: ``2026-01-02/<32 hex>.png.thumb.webp``. The image's
whole name stays in it, so the image (and its row) is found from the thumbnail's name alone."""


def thumbnail_owner(key: str) -> str | None:
    """The key of the image whose thumbnail ``key`` names, or ``None`` if it names no thumbnail."""
    if not key.endswith(THUMBNAIL_SUFFIX):
        return None
    owner = key[: -len(THUMBNAIL_SUFFIX)]
    return owner if owner and not owner.endswith("/") and thumbnail_owner(owner) is None else None


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
    favorite: bool = False
    tags: tuple[str, ...] = ()
    """In the stored form (``normalize_tag``), in the order they were given."""
    notes: str | None = None
    rerun_of: int | None = None
    """The generation this one re-ran (``POST /api/history/{id}/rerun``), else ``None``."""

    @property
    def file_path(self) -> str:
        return self.image.file_path

    @property
    def thumbnail_path(self) -> str:
        """The URL path of its thumbnail (``/generated/<key>.thumb.webp``)."""
        return self.image.thumbnail.file_path

    def with_id(self, new_id: int) -> Generation:
        return replace(self, id=new_id)


class Unchanged(Enum):
    """What a :class:`GenerationPatch` field holds when the patch leaves it as it is."""

    UNCHANGED = "unchanged"


UNCHANGED: Final = Unchanged.UNCHANGED


@dataclass(frozen=True, kw_only=True, slots=True)
class GenerationPatch:
    """What a person keeps about a generation, changed: any of ``favorite``, ``tags`` (all of
    them, replacing the old ones) and ``notes`` (``None`` clears them); the others stay.

    At least one is set. Tags take their stored form (``normalize_tag``: trimmed, case-folded),
    duplicates dropped, the first kept; notes that are blank are none.
    """

    favorite: bool | Unchanged = UNCHANGED
    tags: tuple[str, ...] | Unchanged = UNCHANGED
    notes: str | Unchanged | None = UNCHANGED

    def __post_init__(self) -> None:
        if self.favorite is UNCHANGED and self.tags is UNCHANGED and self.notes is UNCHANGED:
            raise InvalidParameters("Nothing to change: give favorite, tags or notes", field="body")
        if self.favorite is not UNCHANGED and not isinstance(self.favorite, bool):
            raise InvalidParameters("favorite must be true or false", field="favorite")
        if self.tags is not UNCHANGED:
            _set(self, "tags", check_tags(self.tags))
        if self.notes is not UNCHANGED:
            _set(self, "notes", check_notes(self.notes))

    def changes(self) -> dict[str, Any]:
        """The fields this patch sets, by attribute name."""
        names = ("favorite", "tags", "notes")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not UNCHANGED}

    def apply(self, generation: Generation) -> Generation:
        return replace(generation, **self.changes())


# --- re-runs ------------------------------------------------------------------------------

_RERUN_NAMES: Final = {
    "prompt": "prompt",
    "negative_prompt": "negativePrompt",
    "width": "width",
    "height": "height",
    "steps": "steps",
    "cfg_scale": "cfgScale",
    "seed": "seed",
    "model": "model",
    "task_id": "taskId",
    "count": "count",
    "seed_image": "seedImage",
    "strength": "strength",
    "image_path": "imagePath",
    "scale": "scale",
}
"""Every override of a :class:`Rerun`, by attribute name, with its name in the API."""
_DIFFUSION_OVERRIDES: Final = frozenset(
    {
        "prompt",
        "negative_prompt",
        "width",
        "height",
        "steps",
        "cfg_scale",
        "seed",
        "model",
        "task_id",
        "count",
    }
)
_RERUN_OVERRIDES: Final[dict[Operation, frozenset[str]]] = {
    Operation.TEXT_TO_IMAGE: _DIFFUSION_OVERRIDES,
    Operation.IMAGE_TO_IMAGE: _DIFFUSION_OVERRIDES | {"seed_image", "strength"},
    Operation.UPSCALE: frozenset(("image_path", "scale", "task_id")),
}
"""What a re-run of each operation may override: the fields of that operation's own route."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Rerun:
    """Ask for a generation to be made again: its operation, with the parameters it recorded, any
    of them given here instead (``None``, and ``UNCHANGED`` for ``negative_prompt``: as recorded;
    a ``negative_prompt`` of ``None`` or blank: none).

    - ``seed``: ``None`` draws a new one (a variation); :data:`SAME_SEED` reuses the recorded one;
    - ``seed_image`` (image-to-image) and ``image_path`` (upscale): another input image;
    - ``count``: how many images (text-to-image and image-to-image); one unless given.

    Each value is checked as its operation's command checks it; which fields apply depends on the
    generation's operation (:meth:`check_applies_to`), known once it is read.
    """

    generation_id: int
    prompt: str | None = None
    negative_prompt: str | Unchanged | None = UNCHANGED
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    seed: int | SameSeed | None = None
    model: str | None = None
    task_id: str | None = None
    count: int | None = None
    seed_image: str | None = None
    strength: float | None = None
    image_path: str | None = None
    scale: int | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.generation_id):
            raise InvalidParameters("id must be an integer", field="id")
        if self.prompt is not None:
            _set(self, "prompt", _check_prompt(self.prompt))
        if self.negative_prompt is not UNCHANGED:
            _set(self, "negative_prompt", _check_negative(self.negative_prompt))
        if self.width is not None:
            _check_side("width", self.width)
        if self.height is not None:
            _check_side("height", self.height)
        if self.steps is not None:
            _check_int("steps", self.steps, MIN_STEPS, MAX_STEPS)
        if self.cfg_scale is not None:
            _set(self, "cfg_scale", _check_number("cfgScale", self.cfg_scale, MIN_CFG, MAX_CFG))
        if self.seed is not None and self.seed != SAME_SEED:
            if not _is_int(self.seed):
                raise InvalidParameters(f'seed must be an integer or "{SAME_SEED}"', field="seed")
            _check_int("seed", self.seed, MIN_SEED, MAX_SEED)
        if self.model is not None:
            _check_model_text(self.model)
        if self.task_id is not None:
            validate_task_id(self.task_id)
        if self.count is not None:
            _check_int("count", self.count, MIN_BATCH, MAX_BATCH)
        if self.seed_image is not None:
            _set(self, "seed_image", _check_source("seedImage", self.seed_image))
        if self.strength is not None:
            _set(self, "strength", _check_number("strength", self.strength, MIN_STRENGTH, MAX_STRENGTH))
        if self.image_path is not None:
            _set(self, "image_path", _check_source("imagePath", self.image_path))
        if self.scale is not None and (not _is_int(self.scale) or self.scale not in UPSCALE_FACTORS):
            raise InvalidParameters("scale must be 2, 3 or 4", field="scale")

    def overrides(self) -> tuple[str, ...]:
        """The attributes this re-run sets, in their order."""
        return tuple(
            name
            for name in _RERUN_NAMES
            if getattr(self, name) is not (UNCHANGED if name == "negative_prompt" else None)
        )

    def check_applies_to(self, operation: Operation) -> None:
        """``InvalidParameters`` naming the first override a re-run of ``operation`` does not take
        (those of its own route only: no ``strength`` for a text-to-image, no ``seed`` or
        ``count`` for an upscale)."""
        allowed = _RERUN_OVERRIDES[operation]
        for name in self.overrides():
            if name not in allowed:
                takes = ", ".join(_RERUN_NAMES[n] for n in _RERUN_NAMES if n in allowed)
                article = "a" if operation is Operation.TEXT_TO_IMAGE else "an"
                raise InvalidParameters(
                    f"{_RERUN_NAMES[name]} does not apply to a re-run of {article} {operation.value};"
                    f" it takes {takes}",
                    field=_RERUN_NAMES[name],
                )


# --- what an image file tells about how it was made ---------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Provenance:
    """How an image was made, as its file records it: a :class:`Generation` without what is known
    only once it is stored (its id, file, creation time and cost)."""

    operation: Operation
    prompt: str
    negative_prompt: str | None
    parameters: Parameters
    seed: int | None
    width: int
    height: int
    task_id: str


class MetadataSource(StrEnum):
    """Who wrote a record of generation parameters found in an image file."""

    IMAGESTUDIO = "imagestudio"
    AUTOMATIC1111 = "automatic1111"
    COMFYUI = "comfyui"
    INVOKEAI = "invokeai"


@dataclass(frozen=True, kw_only=True, slots=True)
class FoundParameters:
    """Generation parameters read from an image file, under the API's names; ``None`` where the
    record does not say (or says it in a way that does not map)."""

    operation: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    seed: int | None = None
    model: str | None = None
    sampler: str | None = None
    scheduler: str | None = None
    strength: float | None = None
    scale: float | None = None
    engine: str | None = None
    source_id: int | None = None
    task_id: str | None = None
    version: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FoundMetadata:
    """One record of generation parameters in an image file: who wrote it, what it says in the
    API's names, and its text as stored."""

    source: MetadataSource
    parameters: FoundParameters
    raw: str


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
    embed_metadata: bool = True
    """Write how each new image was made into its file (``domain/metadata.py``)."""

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
        _check_bool("embedMetadata", self.embed_metadata)


SETTING_NAMES: tuple[str, ...] = (
    "storage_path",
    "default_width",
    "default_height",
    "default_steps",
    "default_cfg_scale",
    "embed_metadata",
)
"""Every setting, by attribute name, in the order the API lists them."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SettingsPatch:
    """A partial update of :class:`Settings`; ``None`` leaves a value as it is."""

    storage_path: str | None = None
    default_width: int | None = None
    default_height: int | None = None
    default_steps: int | None = None
    default_cfg_scale: float | None = None
    embed_metadata: bool | None = None

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
        if self.embed_metadata is not None:
            _check_bool("embedMetadata", self.embed_metadata)

    def changes(self) -> dict[str, Any]:
        """The values this patch sets, by attribute name."""
        return {name: getattr(self, name) for name in SETTING_NAMES if getattr(self, name) is not None}

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
    generation_ids: tuple[int, ...] = ()
    """Every generation of a completed task, in seed order (``generation_id`` is the first)."""
    error: str | None = None
    code: str | None = None
    position: int | None = None
    seq: int = 0
    preview: bytes | None = field(default=None, repr=False)
    """A small JPEG of the work so far, on some live ``generating`` events (see ``ProgressCallback``)."""


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
    """The first generation of a completed task (the only one unless it made a batch)."""
    generation_ids: tuple[int, ...] = ()
    """Every generation of a completed task, in seed order."""
    error_code: str | None = None
    error_message: str | None = None
    images: tuple[StoredImage, ...] = ()
    """Images written for this task but not yet recorded in the history (crash clean-up)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class IdempotencyRecord:
    key: str
    fingerprint: str
    task_id: str
    created_at: datetime
