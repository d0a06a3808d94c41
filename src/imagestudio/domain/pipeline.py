"""What every generating use case shares: input images and the generation job.

A job is a value (:class:`GenerationJob`: operation, inputs, parameters, storage folder) that one
function, :func:`run_generation`, executes: engine, then the record of how the image was made
written into its file, then storage (the image and its thumbnail), then the history row. A job may
make a batch (``count``), seeds consecutive, then all rows in one transaction: in one engine call
when the engine makes batches (``BatchImageGenerator``, e.g. Runware's ``numberResults``), else
one engine call per image in turn.

Rules:
- the input image of image-to-image and upscale is resolved here (CONTRACT.md section 5);
- with the setting ``embedMetadata`` on (the default), the file carries its parameters (prompt,
  negative prompt, size, steps, guidance, seed, model, ...; ``ImageAnnotator``); off, the engine's
  bytes are stored as they came and no prompt is written. The setting of the moment the image is
  stored counts, so turning it off also covers images still queued;
- the image is stored before its row is written; if the row cannot be written the file is
  removed again, so a failure leaves neither a file nor a row;
- every image gets its thumbnail (``ThumbnailMaker``) when it is stored, before its row: an image
  whose thumbnail cannot be made or written is removed again and the task fails;
- a storage folder outside the storage roots (recorded by an older version) gets no image: the
  task fails with ``InvalidStoragePath`` before the engine runs, so no credit is spent;
- the task lifecycle (queued, generating, one terminal event) is the ``TaskManager``'s.
"""

from __future__ import annotations

import functools
import posixpath
import secrets
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from imagestudio.domain.errors import InvalidParameters, InvalidStoragePath, ProviderUnavailable
from imagestudio.domain.model import (
    MAX_SEED,
    GeneratedImage,
    Generation,
    ImageSpec,
    Operation,
    Parameters,
    Provenance,
    SourceImage,
    StoredImage,
)
from imagestudio.domain.models import SEED, STRENGTH
from imagestudio.domain.ports import (
    BatchImageGenerator,
    Clock,
    GenerationRepository,
    ImageAnnotator,
    ImageGenerator,
    ImageInspector,
    ImageStorage,
    ModelCatalogue,
    PreviewSource,
    ProgressCallback,
    SettingsRepository,
    ThumbnailMaker,
)
from imagestudio.domain.rules import batch_seed
from imagestudio.domain.tasks import Hold, Job, TaskControl, TaskScheduler

__all__ = [
    "GenerationJob",
    "GenerationPipeline",
    "GenerationPorts",
    "PipelineJob",
    "SourceResolver",
    "new_task_id",
    "random_seed",
    "run_generation",
]

GENERATED_PREFIX = "/generated/"
MAX_REFERENCE = 4096
STALE_STORAGE_FOLDER = (
    "The storage folder in the settings lies outside the storage roots, so no image can be written"
    " there: set storagePath (PUT /api/settings) to a folder inside the data dir or a storage root"
    " (with IMAGESTUDIO_STORAGE_URL: a relative folder, a prefix inside the bucket)"
)


def new_task_id() -> str:
    return str(uuid.uuid4())


def random_seed() -> int:
    return secrets.randbelow(MAX_SEED) + 1


@dataclass(frozen=True, kw_only=True)
class SourceResolver:
    """Reads an input image named by a client (CONTRACT.md section 5).

    Rules:
    - ``data:image/...;base64,`` URIs are decoded;
    - a path names an image the server itself made, and nothing else: the ``filePath`` of a
      generation (``/generated/<key>``), its key (``2026-01-02/<32 hex>.png``, also with ``./``
      or inside the current storage folder's absolute path), or a file of that naming scheme in
      the current storage folder (one no row names, e.g. copied back in);
    - every other string (URLs of any scheme, ``..``, absolute paths elsewhere, names of another
      form, links) gets one and the same 400 ``INVALID_PARAMETERS``, decided without touching the
      disk, so an answer never tells whether some file exists; a missing image of our own naming
      scheme is 404;
    - the file's size is checked before it is read (at most the body limit), and the bytes must
      decode as an image of at most 64,000,000 pixels.
    """

    storage: ImageStorage
    repository: GenerationRepository
    settings: SettingsRepository
    inspector: ImageInspector

    async def __call__(self, reference: str, field_name: str) -> SourceImage:
        if reference.startswith("data:"):
            data = await self.inspector.decode_data_uri(reference, field_name)
            return await self.inspector.inspect(data, field_name)
        key, generation = await self._find(reference)
        try:
            if generation is not None:
                data = await self.storage.read(generation.image)
            elif key is not None and self.storage.owns(key):
                settings = await self.settings.get()
                data = await self.storage.read_reference(key, settings.storage_path)
            else:
                raise InvalidParameters(_unusable(field_name), field=field_name)
        except InvalidParameters as error:
            raise InvalidParameters(error.message, field=field_name) from error
        source = await self.inspector.inspect(data, field_name)
        return replace(source, generation=generation)

    async def _find(self, reference: str) -> tuple[str | None, Generation | None]:
        """The key ``reference`` names and the generation recorded under it (if any); no key when it
        cannot name one of our images. Only the text and the database are consulted."""
        if not reference or len(reference) > MAX_REFERENCE or "\x00" in reference:
            return None, None
        text = reference.replace("\\", "/")
        if text.startswith(GENERATED_PREFIX):
            key = _relative_key(text[len(GENERATED_PREFIX) :])
        elif text.startswith("/"):
            return await self._find_absolute(text)
        else:
            key = _relative_key(text)
        if key is None:
            return None, None
        return key, await self.repository.get_by_key(key)

    async def _find_absolute(self, text: str) -> tuple[str | None, Generation | None]:
        """An absolute path: inside the current storage folder, or the file of a recorded generation."""
        parts = text.split("/")
        if ".." in parts:
            return None, None
        path = posixpath.normpath(text)
        settings = await self.settings.get()
        root = self._where(await self.storage.root_of(settings.storage_path))
        if path.startswith(root.rstrip("/") + "/"):
            key = _relative_key(path[len(root.rstrip("/")) + 1 :])
            return (None, None) if key is None else (key, await self.repository.get_by_key(key))
        key = "/".join(path.split("/")[-2:])
        generation = await self.repository.get_by_key(key)
        if generation is not None and posixpath.join(self._where(generation.image.root), key) == path:
            return key, generation
        return None, None

    def _where(self, root: str) -> str:
        """The absolute path of the folder ``root`` with ``/`` separators (an object store's URL,
        which no absolute path starts with, for a root that is no folder on this machine)."""
        return posixpath.normpath(self.storage.location(root).replace("\\", "/"))


def _relative_key(text: str) -> str | None:
    """``a/./b//c`` as ``a/b/c``; ``None`` for an empty path or one that climbs (``..``)."""
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _unusable(field_name: str) -> str:
    return (
        f"{field_name} must be the filePath of a generation (/generated/...), an image this server"
        " stored in the storage folder (YYYY-MM-DD/<name>.png), or a data:image/... URI"
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class GenerationJob:
    """One generation to make, as data: the operation, its resolved inputs and where the image goes.

    Built by a use case's ``prepare`` once every input is validated and resolved, and executed by
    :func:`run_generation`; it holds no callables and no reference to the request, so the same
    value can later be queued for another process. For now an input image travels as its bytes
    (``source``); a queue between processes will carry a reference to it instead.

    - ``spec``: the diffusion request (text-to-image, image-to-image), only what the model takes;
    - ``source``: the input image (image-to-image, upscale), without its generation;
    - ``strength`` (image-to-image) and ``scale`` (upscale) as the engine receives them;
    - ``prompt``, ``negative_prompt``, ``seed``, ``model``, ``source_id``: what the row records
      besides the engine's answer (for an upscale, inherited from the source generation);
    - ``rerun_of``: the generation a re-run makes again, recorded on every row it makes;
    - ``storage_path``: the storage folder of the settings the request was prepared with, or
      ``None`` for the folder of the settings when the image is ready;
    - ``hold``: this process's byte budget for the input (``domain/budget.py``), released by the
      task manager when the task ends; it is accounting, not part of what would be queued.
    """

    operation: Operation
    task_id: str
    prompt: str
    negative_prompt: str | None = None
    spec: ImageSpec | None = None
    source: SourceImage | None = field(default=None, repr=False)
    strength: float | None = None
    scale: int | None = None
    seed: int | None = None
    """The seed sent, recorded when the engine reports none; for an upscale, the source's."""
    model: str | None = None
    """The model sent; for an upscale, the source's, recorded when the engine reports none."""
    source_id: int | None = None
    storage_path: str | None = None
    hold: Hold | None = None
    count: int = 1
    """How many images (a batch, text-to-image and image-to-image): image ``i`` has seed
    ``seed + i`` (:func:`batch_seed`), so each can be made again alone with its own seed."""
    rerun_of: int | None = None

    def member(self, index: int) -> GenerationJob:
        """The job of image ``index`` of the batch alone: its own seed, a count of 1."""
        if self.count == 1 or self.spec is None:
            return self
        seed = batch_seed(self.spec.seed, index) if self.spec.seed is not None else None
        return replace(
            self,
            spec=replace(self.spec, seed=seed) if seed is not None else self.spec,
            seed=seed if self.seed is not None else None,
            count=1,
        )

    @classmethod
    def text_to_image(
        cls, *, task_id: str, spec: ImageSpec, storage_path: str, count: int = 1
    ) -> GenerationJob:
        return cls(
            operation=Operation.TEXT_TO_IMAGE,
            task_id=task_id,
            prompt=spec.prompt,
            negative_prompt=spec.negative_prompt,
            spec=spec,
            seed=spec.seed if _sent(spec, SEED) else None,
            model=spec.model,
            storage_path=storage_path,
            count=count,
        )

    @classmethod
    def image_to_image(
        cls,
        *,
        task_id: str,
        spec: ImageSpec,
        source: SourceImage,
        strength: float,
        storage_path: str,
        count: int = 1,
    ) -> GenerationJob:
        return cls(
            operation=Operation.IMAGE_TO_IMAGE,
            task_id=task_id,
            prompt=spec.prompt,
            negative_prompt=spec.negative_prompt,
            spec=spec,
            source=replace(source, generation=None),
            strength=strength,
            seed=spec.seed if _sent(spec, SEED) else None,
            model=spec.model,
            source_id=source.generation.id if source.generation else None,
            storage_path=storage_path,
            count=count,
        )

    @classmethod
    def upscale(cls, *, task_id: str, source: SourceImage, scale: int) -> GenerationJob:
        """An upscale carries its source generation's prompt, seed and model, if it has one."""
        origin = source.generation
        return cls(
            operation=Operation.UPSCALE,
            task_id=task_id,
            prompt=origin.prompt if origin else "",
            negative_prompt=origin.negative_prompt if origin else None,
            source=replace(source, generation=None),
            scale=scale,
            seed=origin.seed if origin else None,
            model=origin.parameters.model if origin else None,
            source_id=origin.id if origin else None,
        )


class GenerationPorts(Protocol):
    """What :func:`run_generation` needs: the engine, the annotator, storage, the history, the
    settings and the thumbnail maker."""

    @property
    def generator(self) -> ImageGenerator: ...
    @property
    def annotator(self) -> ImageAnnotator: ...
    @property
    def storage(self) -> ImageStorage: ...
    @property
    def repository(self) -> GenerationRepository: ...
    @property
    def settings(self) -> SettingsRepository: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def thumbnails(self) -> ThumbnailMaker: ...


async def run_generation(
    job: GenerationJob, ports: GenerationPorts, control: TaskControl
) -> list[Generation]:
    """Make the job's generations (one, or a batch of ``job.count`` with seeds ``seed``,
    ``seed+1``, ...): check the folder, then for each image the engine made (:func:`_made`) write
    how it was made into its file (unless the settings say not to), store it and its thumbnail;
    then add every row in one transaction.

    All or nothing: a folder outside the storage roots fails before the engine runs; if any image
    of the batch fails, the task is cancelled midway, or the rows cannot be written, every image
    stored for it (and its thumbnail) is removed again and no row is written. The stored images are
    recorded on the task as they are written, so a restart after a crash removes them."""
    folder = await _folder(job, ports)
    if not await ports.storage.confined(await ports.storage.root_of(folder)):
        raise InvalidStoragePath(STALE_STORAGE_FOLDER, details={"field": "storagePath"})
    stored: list[StoredImage] = []
    made: list[Generation] = []
    try:
        async with aclosing(_made(job, ports.generator, control)) as images:
            async for one, image in images:
                provenance = _provenance(one, image, engine=ports.generator.name)
                settings = await ports.settings.get()
                data = (
                    await ports.annotator.annotate(image.data, provenance)
                    if settings.embed_metadata
                    else image.data
                )
                thumbnail = await ports.thumbnails.thumbnail(data)
                control.raise_if_cancelled()
                saved = await ports.storage.save(data, image.extension, await _folder(job, ports))
                stored.append(saved)
                await control.stored(tuple(stored))
                await ports.storage.save_thumbnail(saved, thumbnail)
                made.append(
                    _generation(provenance, image, saved, now=ports.clock.now(), rerun_of=job.rerun_of)
                )
                if job.count > 1:  # the batch's progress moves on per image, whatever the engine reports
                    control.step(len(made), job.count)
        return await ports.repository.add_many(made)
    except BaseException:
        for saved in stored:
            await ports.storage.delete(saved)
        raise


async def _made(
    job: GenerationJob, generator: ImageGenerator, control: TaskControl
) -> AsyncGenerator[tuple[GenerationJob, GeneratedImage], None]:
    """The job's images in seed order, each with the job of that image alone (``job.member``).

    A batch on an engine that makes batches (``BatchImageGenerator``) is one engine call for all of
    its images, whose progress is the task's; any other job runs the engine once per image, each
    when the one before is stored, and the progress of image ``i`` of ``n`` covers its share."""
    if job.count > 1 and isinstance(generator, BatchImageGenerator):
        images = await control.produce(functools.partial(_batch_engine, job, generator, control.step))
        if len(images) != job.count:
            raise ProviderUnavailable(
                f"Generation failed: the engine made {len(images)} of the batch's {job.count} images"
            )
        for index, image in enumerate(images):
            yield job.member(index), image
        return
    for index in range(job.count):
        one = job.member(index)
        progress = _BatchProgress(control, index, job.count)
        yield one, await control.produce(functools.partial(_engine, one, generator, progress))


class _BatchProgress:
    """The engine's progress callback for image ``index`` of ``count``: the task's progress covers
    the whole batch (image 2 of 4 runs from 25 to 50)."""

    def __init__(self, control: TaskControl, index: int, count: int) -> None:
        self._control, self._index, self._count = control, index, count

    def __call__(self, done: int, total: int, preview: PreviewSource | None = None) -> None:
        if total <= 0:
            self._control.step(done, total, preview)
            return
        self._control.step(self._index * total + done, self._count * total, preview)


async def _folder(job: GenerationJob, ports: GenerationPorts) -> str:
    """The job's storage folder, else the one of the settings now."""
    return job.storage_path if job.storage_path is not None else (await ports.settings.get()).storage_path


async def _engine(
    job: GenerationJob, generator: ImageGenerator, progress: ProgressCallback
) -> GeneratedImage:
    """The engine call of the job's operation."""
    if job.operation is Operation.TEXT_TO_IMAGE and job.spec is not None:
        return await generator.text_to_image(job.spec, progress)
    if job.operation is Operation.IMAGE_TO_IMAGE and job.spec and job.source and job.strength is not None:
        return await generator.image_to_image(job.spec, job.source, job.strength, progress)
    if job.operation is Operation.UPSCALE and job.source is not None and job.scale is not None:
        return await generator.upscale(job.source, job.scale, progress)
    raise ValueError(f"a {job.operation.value} job lacks its inputs")  # the constructors rule it out


async def _batch_engine(
    job: GenerationJob, generator: BatchImageGenerator, progress: ProgressCallback
) -> Sequence[GeneratedImage]:
    """The one engine call of a whole batch."""
    if job.operation is Operation.TEXT_TO_IMAGE and job.spec is not None:
        return await generator.text_to_image_batch(job.spec, job.count, progress)
    if job.operation is Operation.IMAGE_TO_IMAGE and job.spec and job.source and job.strength is not None:
        return await generator.image_to_image_batch(job.spec, job.source, job.strength, job.count, progress)
    raise ValueError(f"a {job.operation.value} job lacks its inputs")  # the constructors rule it out


def _provenance(job: GenerationJob, image: GeneratedImage, *, engine: str) -> Provenance:
    """How the image of a finished job was made: what its file and its row record.

    - the seed is the one the engine reports, else the one sent (none for a model that takes none);
      an upscale keeps its source's seed;
    - the model is the one sent; an upscale records the upscaler the engine reports, else its
      source's model, and, when the engine ran another factor and resampled, that factor;
    - steps and guidance only as sent; strength only when the model takes it.
    """
    spec = job.spec
    if job.operation is Operation.UPSCALE:
        seed, model, provider_scale = job.seed, image.model or job.model, image.provider_scale
    else:
        seed, model, provider_scale = (image.seed if image.seed is not None else job.seed), job.model, None
    strength = job.strength if spec is not None and _sent(spec, STRENGTH) else None
    return Provenance(
        operation=job.operation,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        parameters=Parameters(
            width=image.width,
            height=image.height,
            steps=spec.steps if spec is not None else None,
            cfg_scale=spec.cfg_scale if spec is not None else None,
            seed=seed,
            model=model,
            engine=engine,
            strength=strength,
            scale=job.scale,
            source_id=job.source_id,
            provider_scale=provider_scale,
        ),
        seed=seed,
        width=image.width,
        height=image.height,
        task_id=job.task_id,
    )


def _generation(
    made: Provenance, image: GeneratedImage, stored: StoredImage, *, now: datetime, rerun_of: int | None
) -> Generation:
    """The row of a finished job: how it was made, where it is stored, what the engine says, and
    the generation it re-ran (if it is a re-run)."""
    return Generation(
        id=None,
        operation=made.operation,
        prompt=made.prompt,
        negative_prompt=made.negative_prompt,
        parameters=made.parameters,
        seed=made.seed,
        width=made.width,
        height=made.height,
        image=stored,
        remote_url=image.remote_url,
        task_id=made.task_id,
        created_at=now,
        cost=image.cost,
        rerun_of=rerun_of,
    )


def _sent(spec: ImageSpec, parameter: str) -> bool:
    return spec.accepts is None or parameter in spec.accepts


@dataclass(frozen=True, slots=True)
class PipelineJob:
    """A :class:`GenerationJob` bound to the ports that run it: what the ``TaskManager`` executes."""

    generation: GenerationJob
    ports: GenerationPorts

    @property
    def task_id(self) -> str:
        return self.generation.task_id

    @property
    def operation(self) -> Operation:
        return self.generation.operation

    @property
    def hold(self) -> Hold | None:
        return self.generation.hold

    @property
    def model(self) -> str | None:
        return self.generation.model

    async def execute(self, control: TaskControl) -> list[Generation]:
        return await run_generation(self.generation, self.ports, control)


@dataclass(frozen=True, kw_only=True)
class GenerationPipeline:
    """The ports a generation runs on, and the task manager that runs it (:func:`run_generation`)."""

    generator: ImageGenerator
    annotator: ImageAnnotator
    storage: ImageStorage
    repository: GenerationRepository
    settings: SettingsRepository
    tasks: TaskScheduler
    clock: Clock
    new_task_id: Callable[[], str] = field(default=new_task_id)
    catalogue: ModelCatalogue | None = None
    """What the engine's models take (``domain/models.py``); ``None``: send every parameter."""
    thumbnails: ThumbnailMaker

    def job(self, generation: GenerationJob) -> Job:
        """The task of one generation, run on this pipeline's ports."""
        return PipelineJob(generation, self)
