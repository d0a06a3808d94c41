"""Use cases that make new images: text-to-image, image-to-image, upscale, and a re-run of any of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from imagestudio.domain.errors import InvalidParameters, NotFound
from imagestudio.domain.history import GENERATION_NOT_FOUND
from imagestudio.domain.model import (
    DEFAULT_MODEL,
    DEFAULT_STRENGTH,
    MAX_UPSCALE_SIDE,
    SAME_SEED,
    Generation,
    ImageSpec,
    ImageToImage,
    Operation,
    Rerun,
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
from imagestudio.domain.rules import MAX_GENERATION_ID
from imagestudio.domain.tasks import IdempotencyKey, Job, Task
from imagestudio.domain.values import UNCHANGED, check_model_id

__all__ = ["GenerateImageToImage", "GenerateTextToImage", "RerunGeneration", "UpscaleImage"]

C = TypeVar("C", TextToImage, ImageToImage, Upscale, Rerun)


class _Generating(Generic[C]):
    """Calling a generating use case waits for its image; ``submit`` returns the task at once."""

    pipeline: GenerationPipeline

    async def job(self, command: C) -> GenerationJob:
        """The generation to make, validated and resolved up front, so bad input fails before a
        task exists."""
        raise NotImplementedError

    async def prepare(self, command: C) -> Job:
        """The task's job: :meth:`job`, run on this use case's pipeline."""
        return self.pipeline.job(await self.job(command))

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

    async def job(self, command: TextToImage) -> GenerationJob:
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
        return GenerationJob.text_to_image(
            task_id=task_id, spec=spec, storage_path=settings.storage_path, count=command.count
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

    async def job(self, command: ImageToImage) -> GenerationJob:
        """The input's bytes are held against the task manager's byte budget from before a data URI
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
        return replace(job, hold=hold)

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

    async def job(self, command: Upscale) -> GenerationJob:
        """The input's bytes are held against the byte budget as for image-to-image."""
        hold = self.pipeline.tasks.hold(_data_uri_bytes(command.source))
        try:
            source = await self.resolve(command.source, "imagePath")
            hold.resize(len(source.data))
            job = self._job(command, source)
        except BaseException:
            hold.release()
            raise
        return replace(job, hold=hold)

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


@dataclass(frozen=True, kw_only=True)
class RerunGeneration(_Generating[Rerun]):
    """Make a generation again: its operation, with the parameters it recorded, any of them
    overridden by the body (the fields of that operation's own route, plus ``count``).

    Rules:
    - an unknown id is ``NotFound``; an override the operation does not take (``strength`` or
      ``seedImage`` for a text-to-image, ``imagePath`` for an image-to-image, anything but
      ``imagePath``, ``scale`` and ``taskId`` for an upscale) is 400 naming it;
    - what is not overridden is as recorded: prompt, negative prompt, size, steps, guidance,
      strength, scale; the model too when the engine that made it runs now (else the engine's
      default model, since the recorded one is another engine's);
    - without ``seed`` a new seed is drawn (a variation); ``"seed": "same"`` reuses the recorded
      one; ``count`` (1 to 8, text-to-image and image-to-image) makes a batch from that seed on,
      and without it a re-run makes one image;
    - image-to-image and upscale run on the same input again: the generation they were made from
      (``parameters.sourceId``). When the input was not a generation (a data URI, a file copied
      in) a re-run needs ``seedImage`` or ``imagePath`` (400 without); when that generation has
      been deleted, 404 unless one is given. With another ``seedImage`` the size follows it, as
      for image-to-image, unless ``width``/``height`` are given;
    - every new generation records ``rerunOf`` (the id re-run) and, as always,
      ``parameters.sourceId``; otherwise it is made, answered and billed as by the operation's
      own route (the same tasks, batches, idempotency and errors).
    """

    pipeline: GenerationPipeline
    text_to_image: GenerateTextToImage
    image_to_image: GenerateImageToImage
    upscale: UpscaleImage

    async def job(self, command: Rerun) -> GenerationJob:
        original = await self._original(command.generation_id)
        command.check_applies_to(original.operation)
        if original.operation is Operation.UPSCALE:
            job = await self.upscale.job(await self._upscale(original, command))
        elif original.operation is Operation.IMAGE_TO_IMAGE:
            job = await self.image_to_image.job(await self._image_to_image(original, command))
        else:
            job = await self.text_to_image.job(TextToImage(**self._diffusion(original, command)))
        return replace(job, rerun_of=original.id)

    async def _original(self, generation_id: int) -> Generation:
        if not 1 <= generation_id <= MAX_GENERATION_ID:
            raise NotFound(GENERATION_NOT_FOUND)
        original = await self.pipeline.repository.get(generation_id)
        if original is None:
            raise NotFound(GENERATION_NOT_FOUND)
        return original

    def _diffusion(self, original: Generation, command: Rerun, *, sized: bool = True) -> dict[str, Any]:
        """The fields of a diffusion command: the override, else the recorded value; ``sized``:
        the recorded size when none is given (else the command's own default)."""
        recorded = original.parameters
        same_engine = recorded.engine == self.pipeline.generator.name
        seed = original.seed if command.seed == SAME_SEED else command.seed
        return {
            "prompt": command.prompt if command.prompt is not None else original.prompt,
            "negative_prompt": original.negative_prompt
            if command.negative_prompt is UNCHANGED
            else command.negative_prompt,
            "width": command.width or (recorded.width if sized else None),
            "height": command.height or (recorded.height if sized else None),
            "steps": command.steps if command.steps is not None else recorded.steps,
            "cfg_scale": command.cfg_scale if command.cfg_scale is not None else recorded.cfg_scale,
            "seed": seed,
            "model": command.model or (recorded.model if same_engine else None),
            "task_id": command.task_id,
            "count": command.count or 1,
        }

    async def _image_to_image(self, original: Generation, command: Rerun) -> ImageToImage:
        source = command.seed_image or await self._source(original, "seedImage")
        strength = command.strength if command.strength is not None else original.parameters.strength
        return ImageToImage(
            source=source,
            strength=DEFAULT_STRENGTH if strength is None else strength,
            **self._diffusion(original, command, sized=command.seed_image is None),
        )

    async def _upscale(self, original: Generation, command: Rerun) -> Upscale:
        source = command.image_path or await self._source(original, "imagePath")
        scale = command.scale or original.parameters.scale or 2
        return Upscale(source=source, scale=scale, task_id=command.task_id)

    async def _source(self, original: Generation, field_name: str) -> str:
        """The ``filePath`` of the generation ``original`` was made from."""
        source_id = original.parameters.source_id
        if source_id is None:
            raise InvalidParameters(
                f"Generation {original.id} was made from an image that is not in the history (a data"
                f" URI or a file copied in), so a re-run needs one: give {field_name}",
                field=field_name,
            )
        source = await self.pipeline.repository.get(source_id)
        if source is None:
            raise NotFound(
                f"Generation {original.id} was made from generation {source_id}, which has been"
                f" deleted: give {field_name} to re-run it from another image",
                details={"field": field_name},
            )
        return source.file_path
