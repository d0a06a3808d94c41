"""Use cases that make new images: text-to-image, image-to-image and upscale."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from imagestudio.domain.errors import InvalidParameters
from imagestudio.domain.model import (
    DEFAULT_MODEL,
    MAX_UPSCALE_SIDE,
    Generation,
    ImageSpec,
    ImageToImage,
    Settings,
    SourceImage,
    TextToImage,
    Upscale,
    nearest_valid_side,
)
from imagestudio.domain.models import (
    INPUT_IMAGE,
    NEGATIVE_PROMPT,
    ModelInfo,
    resolve_guidance,
)
from imagestudio.domain.pipeline import GenerationJob, GenerationPipeline, SourceResolver, random_seed
from imagestudio.domain.tasks import IdempotencyKey, Job, Task
from imagestudio.domain.values import check_model_id

__all__ = ["GenerateImageToImage", "GenerateTextToImage", "UpscaleImage"]

C = TypeVar("C", TextToImage, ImageToImage, Upscale)


class _Generating(Generic[C]):
    """Calling a generating use case waits for its image; ``submit`` returns the task at once."""

    pipeline: GenerationPipeline

    async def prepare(self, command: C) -> Job:
        raise NotImplementedError

    async def __call__(self, command: C, idempotency: IdempotencyKey | None = None) -> Generation:
        """The (first) generation."""
        return await self.pipeline.tasks.run(await self.prepare(command), idempotency)

    async def batch(self, command: C, idempotency: IdempotencyKey | None = None) -> list[Generation]:
        """Every generation of the request (``count`` of them), in seed order."""
        return await self.pipeline.tasks.run_all(await self.prepare(command), idempotency)

    async def submit(self, command: C, idempotency: IdempotencyKey | None = None) -> Task:
        return await self.pipeline.tasks.submit(await self.prepare(command), idempotency)


async def _model(pipeline: GenerationPipeline, requested: str | None) -> tuple[str, ModelInfo | None]:
    """The model that will run (the catalogue's default when none is asked for) and its facts."""
    if requested is not None:  # the syntax of a model id is the engine's rule
        check_model_id(requested, pipeline.generator.accepts_model_id)
    catalogue = pipeline.catalogue
    if catalogue is None:
        return requested or DEFAULT_MODEL, None
    wanted = requested or catalogue.default_model
    info = await catalogue.get(wanted)
    return (info.id if info is not None else wanted), info


def _data_uri_bytes(reference: str) -> int:
    """How many bytes the base64 payload of a data URI decodes to (0 for any other reference)."""
    if not reference.startswith("data:"):
        return 0
    payload = len(reference) - reference.find(",") - 1
    return payload * 3 // 4


def _spec(
    command: TextToImage | ImageToImage,
    settings: Settings,
    seed: int,
    width: int,
    height: int,
    model: tuple[str, ModelInfo | None],
) -> ImageSpec:
    """The request as the model takes it (``domain/models.py``): what it does not take is left
    out, unset guidance follows its recommendations, and a size it cannot take is refused."""
    model_id, info = model
    if info is not None and info.sizes is not None:
        info.sizes.check(model_id, width, height)
    steps, cfg_scale = resolve_guidance(
        info,
        steps=command.steps,
        cfg_scale=command.cfg_scale,
        default_steps=settings.default_steps,
        default_cfg_scale=settings.default_cfg_scale,
    )
    takes_negative = info is None or info.accepts(NEGATIVE_PROMPT)
    return ImageSpec(
        prompt=command.prompt,
        negative_prompt=command.negative_prompt if takes_negative else None,
        width=width,
        height=height,
        steps=steps,
        cfg_scale=cfg_scale,
        seed=seed,
        model=model_id,
        accepts=info.parameters if info is not None else None,
    )


@dataclass(frozen=True, kw_only=True)
class GenerateTextToImage(_Generating[TextToImage]):
    """Make an image from a prompt.

    Rules:
    - unset size comes from the settings; the model is the engine's default unless named;
    - only the parameters the model takes are sent; unset steps and guidance follow the
      model's recommendations, else the settings' defaults (``domain/models.py``);
    - a size the model cannot take is refused (400 naming its rule) before any engine call;
    - an unset seed is drawn at random, passed to the engine (if the model takes one), and recorded;
    - the recorded seed is the one the engine reports, when it reports one;
    - ``count`` images (a batch) have seeds ``seed``, ``seed+1``, ... and are stored all or none.
    """

    pipeline: GenerationPipeline
    seeds: Callable[[], int] = field(default=random_seed)

    async def prepare(self, command: TextToImage) -> Job:
        """Validate and resolve everything up front, so bad input fails before a task exists."""
        settings = await self.pipeline.settings.get()
        spec = _spec(
            command,
            settings,
            seed=command.seed if command.seed is not None else self.seeds(),
            width=command.width or settings.default_width,
            height=command.height or settings.default_height,
            model=await _model(self.pipeline, command.model),
        )
        task_id = command.task_id or self.pipeline.new_task_id()
        return self.pipeline.job(
            GenerationJob.text_to_image(
                task_id=task_id, spec=spec, storage_path=settings.storage_path, count=command.count
            )
        )


@dataclass(frozen=True, kw_only=True)
class GenerateImageToImage(_Generating[ImageToImage]):
    """Transform an input image according to a prompt.

    Rules:
    - the input is resolved by :class:`SourceResolver` (storage-only paths, data URIs);
    - the output has the source's size snapped to the nearest valid generation size,
      unless ``width``/``height`` are given;
    - ``strength`` 0 keeps the source, 1 replaces it;
    - a model that takes no input image is refused (400); model rules as for text-to-image;
    - the input's bytes count against the byte budget of queued work until the task ends
      (``IMAGESTUDIO_MAX_QUEUED_BYTES``); past it the request is refused with ``QUEUE_FULL``.
    """

    pipeline: GenerationPipeline
    resolve: SourceResolver
    seeds: Callable[[], int] = field(default=random_seed)

    async def prepare(self, command: ImageToImage) -> Job:
        """Validate and resolve everything up front, so bad input fails before a task exists.

        The input's bytes are held against the task manager's byte budget from before a data URI
        is decoded until the task ends; past the budget the request is ``QueueFull``."""
        settings = await self.pipeline.settings.get()
        model = await _model(self.pipeline, command.model)
        if model[1] is not None and not model[1].accepts(INPUT_IMAGE):
            raise InvalidParameters(
                f"The model {model[0]} does not take an input image; choose another for image-to-image",
                field="model",
            )
        hold = self.pipeline.tasks.hold(_data_uri_bytes(command.source))
        try:
            source = await self.resolve(command.source, "seedImage")
            hold.resize(len(source.data))
            job = self._job(command, settings, source, model)
        except BaseException:
            hold.release()
            raise
        return self.pipeline.job(replace(job, hold=hold))

    def _job(
        self,
        command: ImageToImage,
        settings: Settings,
        source: SourceImage,
        model: tuple[str, ModelInfo | None],
    ) -> GenerationJob:
        spec = _spec(
            command,
            settings,
            seed=command.seed if command.seed is not None else self.seeds(),
            width=command.width or nearest_valid_side(source.width),
            height=command.height or nearest_valid_side(source.height),
            model=model,
        )
        return GenerationJob.image_to_image(
            task_id=command.task_id or self.pipeline.new_task_id(),
            spec=spec,
            source=source,
            strength=command.strength,
            storage_path=settings.storage_path,
            count=command.count,
        )


@dataclass(frozen=True, kw_only=True)
class UpscaleImage(_Generating[Upscale]):
    """Make a larger copy of an input image.

    Rules:
    - the output is ``scale`` times the input on each side, at most 4096 px a side (else 400);
    - the result is a new generation carrying the source generation's prompt, if any;
    - it records the upscaler that ran and, when the engine ran another factor and resampled
      to ``scale`` (Runware has no 3x upscaler: 4x, then a Lanczos reduction), that factor;
    - the input's bytes count against the byte budget of queued work until the task ends.
    """

    pipeline: GenerationPipeline
    resolve: SourceResolver

    async def prepare(self, command: Upscale) -> Job:
        """Validate and resolve everything up front, so bad input fails before a task exists.

        The input's bytes are held against the byte budget as for image-to-image."""
        hold = self.pipeline.tasks.hold(_data_uri_bytes(command.source))
        try:
            source = await self.resolve(command.source, "imagePath")
            hold.resize(len(source.data))
            job = self._job(command, source)
        except BaseException:
            hold.release()
            raise
        return self.pipeline.job(replace(job, hold=hold))

    def _job(self, command: Upscale, source: SourceImage) -> GenerationJob:
        if max(source.width, source.height) * command.scale > MAX_UPSCALE_SIDE:
            raise InvalidParameters(
                f"Upscaled image would be {source.width * command.scale}x{source.height * command.scale};"
                f" at most {MAX_UPSCALE_SIDE} px a side is allowed",
                field="scale",
            )
        return GenerationJob.upscale(
            task_id=command.task_id or self.pipeline.new_task_id(), source=source, scale=command.scale
        )
