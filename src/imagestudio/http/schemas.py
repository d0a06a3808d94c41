"""msgspec Structs at the HTTP edge: strict request bodies, response envelopes, mappers.

Request Structs forbid unknown fields and carry the limits of CONTRACT.md section 4, built from
the domain's constants (``domain/values.py``); the domain validates again. The two diffusion
bodies share their fields by inheritance (``_DiffusionBody``). ``http/bodies.py`` decodes them
strictly (:func:`decode_body`, re-exported here with the rest of its names); it relies on every
request body being a flat object of scalars.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from imagestudio.domain.model import (
    Generation,
    HistoryPage,
    ImageToImage,
    Rerun,
    Settings,
    SettingsPatch,
    TextToImage,
    Upscale,
)
from imagestudio.domain.tasks import Task
from imagestudio.domain.values import (
    MAX_BATCH,
    MAX_CFG,
    MAX_MODEL_ID_LENGTH,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    MAX_STORAGE_PATH,
    MAX_STRENGTH,
    MIN_BATCH,
    MIN_CFG,
    MIN_SEED,
    MIN_SIDE,
    MIN_STEPS,
    MIN_STRENGTH,
    MODEL_ID_PATTERN,
    PROMPT_MAX,
    PROMPT_MIN,
    SIDE_STEP,
    TASK_ID_PATTERN,
    UNCHANGED,
    UPSCALE_FACTORS,
    Operation,
    SameSeed,
    TaskStatus,
    UpscaleFactor,
)
from imagestudio.http.bodies import OFF_LOOP_BYTES, decode_body, prepare_body, read_body

__all__ = [
    "OFF_LOOP_BYTES",
    "BatchResponse",
    "DeletedResponse",
    "ErrorResponse",
    "GenerationOut",
    "GenerationResponse",
    "GenerationType",
    "HealthOut",
    "HistoryResponse",
    "ImageToImageBody",
    "RerunBody",
    "SettingsBody",
    "SettingsOut",
    "SettingsResponse",
    "TextToImageBody",
    "UpscaleBody",
    "decode_body",
    "generation_out",
    "prepare_body",
    "read_body",
    "settings_out",
    "task_out",
]


# Built from the domain's limits (``domain/values.py``), never restating them.
Side = Annotated[
    int,
    Meta(
        ge=MIN_SIDE,
        le=MAX_SIDE,
        multiple_of=SIDE_STEP,
        description=f"Pixels; {MIN_SIDE} to {MAX_SIDE}, a multiple of {SIDE_STEP}",
    ),
]
Steps = Annotated[
    int, Meta(ge=MIN_STEPS, le=MAX_STEPS, description=f"Inference steps, {MIN_STEPS} to {MAX_STEPS}")
]
CfgScale = Annotated[
    float, Meta(ge=MIN_CFG, le=MAX_CFG, description=f"Guidance scale, {MIN_CFG} to {MAX_CFG}")
]
Seed = Annotated[int, Meta(ge=MIN_SEED, le=MAX_SEED, description="1 to 2^53-1; random when absent")]
Count = Annotated[
    int,
    Meta(
        ge=MIN_BATCH,
        le=MAX_BATCH,
        description=f"How many images ({MIN_BATCH} to {MAX_BATCH}): seeds `seed`, `seed+1`, ...;"
        " more than one makes the synchronous answer's `data` a list",
    ),
]
Strength = Annotated[
    float,
    Meta(
        ge=MIN_STRENGTH,
        le=MAX_STRENGTH,
        description=f"{MIN_STRENGTH} keeps the source, {MAX_STRENGTH} replaces it",
    ),
]
# Limits the domain checks itself, with its own messages, are documented here but not enforced by
# msgspec (``extra_json_schema``), so a client reads them in the OpenAPI and gets the domain's error.
ModelId = Annotated[
    str,
    Meta(
        max_length=MAX_MODEL_ID_LENGTH,
        description="Runware model id (AIR), e.g. runware:100@1",
        extra_json_schema={"pattern": f"^{MODEL_ID_PATTERN}$"},
    ),
]
TaskId = Annotated[
    str,
    Meta(pattern=f"^{TASK_ID_PATTERN}$", description="Client-chosen task id for progress over the WebSocket"),
]
# A prompt, once trimmed: PROMPT_MIN to PROMPT_MAX characters, the first and the last not blank
_TRIMMED_PROMPT = rf"\s*\S[\s\S]{{{PROMPT_MIN - 2},{PROMPT_MAX - 2}}}\S\s*"
Prompt = Annotated[
    str,
    Meta(
        description=f"{PROMPT_MIN} to {PROMPT_MAX} characters after trimming",
        extra_json_schema={"pattern": f"^{_TRIMMED_PROMPT}$"},
    ),
]
NegativePrompt = Annotated[
    str,
    Meta(
        description="Empty or whitespace means none;"
        f" else {PROMPT_MIN} to {PROMPT_MAX} characters after trimming",
        extra_json_schema={"pattern": rf"^(\s*|{_TRIMMED_PROMPT})$"},
    ),
]
_NOT_BLANK = r"^[^\u0000]*\S[^\u0000]*$"
ImageRef = Annotated[
    str,
    Meta(
        description="A /generated/... filePath, a path inside the storage folder,"
        " or a data:image/...;base64, URI",
        extra_json_schema={"pattern": _NOT_BLANK},
    ),
]
StoragePath = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_STORAGE_PATH,
        description="A folder; relative paths resolve against the data dir",
        extra_json_schema={"pattern": _NOT_BLANK},
    ),
]


EmbedMetadata = Annotated[
    bool,
    Meta(
        description="Write each new image's parameters (prompt included) into its file:"
        " PNG text chunks, JPEG and WebP EXIF and XMP"
    ),
]


class _Body(Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    pass


class _DiffusionBody(_Body, kw_only=True):
    """The fields both diffusion bodies take, declared once; a subclass adds its own."""

    prompt: Prompt
    negative_prompt: NegativePrompt | None = None
    width: Side | None = None
    height: Side | None = None
    steps: Steps | None = None
    cfg_scale: CfgScale | None = None
    seed: Seed | None = None
    model: ModelId | None = None
    task_id: TaskId | None = None
    count: Count = 1

    def _common(self) -> dict[str, Any]:
        """The shared fields, by name, as the domain's diffusion commands take them."""
        return {name: getattr(self, name) for name in _DiffusionBody.__struct_fields__}


class TextToImageBody(_DiffusionBody, kw_only=True):
    def to_command(self) -> TextToImage:
        return TextToImage(**self._common())


# Not kw_only: msgspec puts a subclass's positional fields before the keyword-only ones it
# inherits, so ``seedImage`` stays the first field (of the schema, and of the decoder's checks).
class ImageToImageBody(_DiffusionBody):
    seed_image: ImageRef
    strength: Strength | None = None

    def to_command(self) -> ImageToImage:
        extra: dict[str, Any] = {} if self.strength is None else {"strength": self.strength}
        return ImageToImage(source=self.seed_image, **self._common(), **extra)


class UpscaleBody(_Body):
    image_path: ImageRef
    scale: UpscaleFactor = 2
    task_id: TaskId | None = None

    def to_command(self) -> Upscale:
        return Upscale(source=self.image_path, scale=self.scale, task_id=self.task_id)


# The overrides of a re-run: absent means "as recorded", so a field is UNSET unless given, and only
# negativePrompt takes null (none), as PATCH /api/history/{id}'s notes do.
# The upscale factors as the range they are: as an enumeration they would be a second inline
# copy of UpscaleRequest's (an enumeration is written once in the document)
if tuple(range(UPSCALE_FACTORS[0], UPSCALE_FACTORS[-1] + 1)) != UPSCALE_FACTORS:  # pragma: no cover
    raise ImportError("the upscale factors are no longer a range: give RerunBody.scale their enumeration")
RerunScale = Annotated[
    int,
    Meta(
        ge=UPSCALE_FACTORS[0],
        le=UPSCALE_FACTORS[-1],
        description=", ".join(map(str, UPSCALE_FACTORS[:-1])) + f" or {UPSCALE_FACTORS[-1]}",
    ),
]
ReusedSeed = Annotated[
    SameSeed, Meta(description="`same`: the generation's own seed (without `seed`, a new one is drawn)")
]


class RerunBody(_Body):
    """What a re-run changes: any field of the generation's own route (text-to-image,
    image-to-image or upscale), and ``count``; left out, a value is as recorded. ``{}`` (or no
    body) makes it again as it was, with a new seed."""

    prompt: Prompt | UnsetType = UNSET
    negative_prompt: NegativePrompt | UnsetType | None = UNSET
    width: Side | UnsetType = UNSET
    height: Side | UnsetType = UNSET
    steps: Steps | UnsetType = UNSET
    cfg_scale: CfgScale | UnsetType = UNSET
    seed: Seed | ReusedSeed | UnsetType = UNSET
    model: ModelId | UnsetType = UNSET
    task_id: TaskId | UnsetType = UNSET
    count: Count | UnsetType = UNSET
    seed_image: ImageRef | UnsetType = UNSET
    strength: Strength | UnsetType = UNSET
    image_path: ImageRef | UnsetType = UNSET
    scale: RerunScale | UnsetType = UNSET

    def to_command(self, generation_id: int) -> Rerun:
        given = {
            name: getattr(self, name)
            for name in self.__struct_fields__
            if getattr(self, name) is not UNSET and name != "negative_prompt"
        }
        negative = UNCHANGED if self.negative_prompt is UNSET else self.negative_prompt
        return Rerun(generation_id=generation_id, negative_prompt=negative, **given)


class SettingsBody(_Body):
    storage_path: StoragePath | UnsetType = UNSET
    default_width: Side | UnsetType = UNSET
    default_height: Side | UnsetType = UNSET
    default_steps: Steps | UnsetType = UNSET
    default_cfg_scale: CfgScale | UnsetType = UNSET
    embed_metadata: EmbedMetadata | UnsetType = UNSET

    def to_patch(self) -> SettingsPatch:
        def value(v: Any) -> Any:
            return None if v is UNSET else v

        return SettingsPatch(
            storage_path=value(self.storage_path),
            default_width=value(self.default_width),
            default_height=value(self.default_height),
            default_steps=value(self.default_steps),
            default_cfg_scale=value(self.default_cfg_scale),
            embed_metadata=value(self.embed_metadata),
        )


# --- responses ------------------------------------------------------------------------------
# An enumeration is an Enum class, not a Literal, so that the OpenAPI document holds it once, as a
# component (``Operation``, ``TaskStatus``, ``GenerationType``) that every use of it refers to.


class GenerationType(StrEnum):
    """What a generation made."""

    IMAGE = "image"
    VIDEO = "video"


class _Out(Struct, rename="camel", kw_only=True):
    pass


class ParametersOut(_Out):
    width: int
    height: int
    steps: int | None
    cfg_scale: float | None
    seed: int | None
    model: str | None
    engine: str
    strength: float | UnsetType = UNSET
    scale: int | UnsetType = UNSET
    source_id: int | UnsetType = UNSET
    provider_scale: int | UnsetType = UNSET


class GenerationOut(_Out):
    id: int
    type: GenerationType
    operation: Operation
    prompt: str
    negative_prompt: str | None
    parameters: ParametersOut
    seed: int | None
    width: int
    height: int
    file_path: str
    url: str
    thumbnail_path: str
    thumbnail_url: str
    task_id: str
    cost: float | None
    created_at_snake: str = msgspec.field(name="created_at")
    created_at: str
    favorite: bool
    tags: list[str]
    """Trimmed and case-folded, in the order given (``PATCH /api/history/{id}``)."""
    notes: str | None
    rerun_of: int | None
    """The generation this one re-ran (``POST /api/history/{id}/rerun``), else ``null``."""


class GenerationResponse(_Out, kw_only=True):
    success: Literal[True] = True
    data: GenerationOut


class BatchResponse(_Out, kw_only=True):
    """The generations of a request with ``count`` > 1, in seed order."""

    success: Literal[True] = True
    data: list[GenerationOut]


class HistoryResponse(_Out, kw_only=True):
    """A page of history; ``nextCursor`` continues after its last item (``null`` on the last page)."""

    success: Literal[True] = True
    data: list[GenerationOut]
    total: int
    limit: int
    offset: int
    next_cursor: str | None


class DeletedResponse(_Out, kw_only=True):
    success: Literal[True] = True
    message: str = "Generation deleted"


class SettingsOut(_Out):
    storage_path: str
    default_width: int
    default_height: int
    default_steps: int
    default_cfg_scale: float
    embed_metadata: bool


class SettingsResponse(_Out, kw_only=True):
    success: Literal[True] = True
    data: SettingsOut
    message: str | UnsetType = UNSET


class TaskErrorOut(_Out):
    code: str
    message: str


class TaskOut(_Out):
    task_id: str
    operation: Operation
    status: TaskStatus
    progress: int
    position: int | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    generation_id: int | None
    generation_ids: list[int]
    error: TaskErrorOut | None
    generation: GenerationOut | UnsetType = UNSET


class TaskResponse(_Out, kw_only=True):
    success: Literal[True] = True
    data: TaskOut


class TaskListResponse(_Out, kw_only=True):
    success: Literal[True] = True
    data: list[TaskOut]


class HealthOut(_Out):
    status: Literal["ok"]
    version: str
    engine: str


class ErrorResponse(_Out, kw_only=True):
    success: Literal[False] = False
    error: str
    code: str
    details: dict[str, Any] | UnsetType = UNSET


# --- mappers --------------------------------------------------------------------------------


def _iso_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _iso(generation: Generation) -> str:
    return _iso_time(generation.created_at)


def task_out(task: Task, generation: GenerationOut | None = None) -> TaskOut:
    return TaskOut(
        task_id=task.id,
        operation=task.operation,
        status=task.status,
        progress=task.progress,
        position=task.position,
        created_at=_iso_time(task.created_at),
        started_at=_iso_time(task.started_at) if task.started_at else None,
        finished_at=_iso_time(task.finished_at) if task.finished_at else None,
        generation_id=task.generation_id,
        generation_ids=list(task.generation_ids),
        error=TaskErrorOut(code=task.error_code, message=task.error_message or "")
        if task.error_code
        else None,
        generation=generation if generation is not None else UNSET,
    )


def generation_out(generation: Generation, base_url: str) -> GenerationOut:
    """The one Generation shape (CONTRACT.md section 3); ``base_url`` makes ``url`` and
    ``thumbnailUrl`` absolute (a thumbnail is always this server's, also for a Runware image)."""
    assert generation.id is not None
    p = generation.parameters
    created = _iso(generation)
    return GenerationOut(
        id=generation.id,
        type=GenerationType(generation.type),
        operation=generation.operation,
        prompt=generation.prompt,
        negative_prompt=generation.negative_prompt,
        parameters=ParametersOut(
            width=p.width,
            height=p.height,
            steps=p.steps,
            cfg_scale=p.cfg_scale,
            seed=p.seed,
            model=p.model,
            engine=p.engine,
            strength=UNSET if p.strength is None else p.strength,
            scale=UNSET if p.scale is None else p.scale,
            source_id=UNSET if p.source_id is None else p.source_id,
            provider_scale=UNSET if p.provider_scale is None else p.provider_scale,
        ),
        seed=generation.seed,
        width=generation.width,
        height=generation.height,
        file_path=generation.file_path,
        url=generation.remote_url or base_url.rstrip("/") + generation.file_path,
        thumbnail_path=generation.thumbnail_path,
        thumbnail_url=base_url.rstrip("/") + generation.thumbnail_path,
        task_id=generation.task_id,
        cost=generation.cost,
        created_at_snake=created,
        created_at=created,
        favorite=generation.favorite,
        tags=list(generation.tags),
        notes=generation.notes,
        rerun_of=generation.rerun_of,
    )


def history_response(page: HistoryPage, base_url: str, limit: int, offset: int) -> HistoryResponse:
    return HistoryResponse(
        data=[generation_out(g, base_url) for g in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
        next_cursor=page.next_cursor,
    )


def settings_out(settings: Settings) -> SettingsOut:
    return SettingsOut(
        storage_path=settings.storage_path,
        default_width=settings.default_width,
        default_height=settings.default_height,
        default_steps=settings.default_steps,
        default_cfg_scale=settings.default_cfg_scale,
        embed_metadata=settings.embed_metadata,
    )
