"""The composition root: turns a :class:`Config` into ready use cases.

``bootstrap(config)`` is an async context manager that opens what needs opening (the database
engine, the engine :data:`ENGINES` names for ``config.engine`` with its resources) and closes it
again. ``build_services``
wires use cases from any set of port implementations, which is how tests hand in fakes.
:class:`Services` itself lives in ``imagestudio/services.py`` (re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from types import MappingProxyType
from typing import Final

import anyio.to_thread

from imagestudio.adapters.filesystem import FilesystemImageStorage
from imagestudio.adapters.images import PillowImageInspector, PillowThumbnailMaker, release_freed_memory
from imagestudio.adapters.metadata import PillowImageAnnotator
from imagestudio.adapters.progress import InMemoryTaskEvents
from imagestudio.adapters.sql import (
    PostgresTaskEvents,
    SqlDatabase,
    SqlGenerationRepository,
    SqlIdempotencyStore,
    SqlSettingsRepository,
    SqlTaskRepository,
    change_watch,
)
from imagestudio.config import Config, ConfigError
from imagestudio.domain.doctor import CheckConsistency
from imagestudio.domain.errors import StudioError
from imagestudio.domain.generate import (
    GenerateImageToImage,
    GenerateTextToImage,
    RerunGeneration,
    UpscaleImage,
)
from imagestudio.domain.history import (
    DeleteGeneration,
    GetGeneration,
    ListHistory,
    ListTags,
    OpenImage,
    UpdateGeneration,
)
from imagestudio.domain.metadata import InspectImage
from imagestudio.domain.model import DEFAULT_MODEL, Task
from imagestudio.domain.models import ListModels, ModelPage, ModelQuery
from imagestudio.domain.pipeline import GenerationPipeline, SourceResolver
from imagestudio.domain.ports import (
    ChangeWatch,
    Clock,
    GenerationRepository,
    IdempotencyStore,
    ImageAnnotator,
    ImageGenerator,
    ImageInspector,
    ImageStorage,
    ModelCatalogue,
    SettingsRepository,
    TaskEventStream,
    TaskRepository,
    ThumbnailMaker,
)
from imagestudio.domain.settings import GetSettings, UpdateSettings
from imagestudio.domain.shared_queue import SharedQueue, SharedQueueTasks, WorkQueuedJob
from imagestudio.domain.task_queries import CancelTask, GetTask, ListTasks
from imagestudio.domain.tasks import DEFAULT_MAX_QUEUED_BYTES, TaskManager, TaskScheduler
from imagestudio.log import get_logger, protect, task_outcome_logger
from imagestudio.services import Services

__all__ = [
    "ENGINES",
    "EngineFactory",
    "Services",
    "SystemClock",
    "bootstrap",
    "build_services",
    "consistency_check",
    "folders_for",
    "relocate_history",
    "storage_for",
]

log = get_logger(__name__)

PROGRESS_RECORD_EVERY: Final = 1.0
"""Seconds between two writes of a running task's progress to its row, in a team (where other
servers read it from there)."""


class SystemClock:
    """``Clock`` on the system's wall clock, in UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


def folders_for(config: Config) -> FilesystemImageStorage:
    """The folder storage of ``config``: relative paths against the data dir, confined to its
    storage roots (the data dir first), inputs read up to the body limit."""
    return FilesystemImageStorage(config.data_dir, roots=config.roots, max_read_bytes=config.max_body_size)


def storage_for(config: Config) -> ImageStorage:
    """The image storage ``config`` names: the object store of ``IMAGESTUDIO_STORAGE_URL`` (obstore
    imported only then), else the folders (:func:`folders_for`)."""
    if config.storage_url is None:
        return folders_for(config)
    from obstore.exceptions import BaseError

    from imagestudio.adapters.object_storage import ObjectImageStorage

    try:
        return ObjectImageStorage.from_url(
            config.storage_url, redirect=config.storage_redirect, max_read_bytes=config.max_body_size
        )
    except (BaseError, ValueError) as error:  # an AWS_* variable obstore cannot use
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"IMAGESTUDIO_STORAGE_URL: the object store cannot be set up: {reason}") from error


async def relocate_history(db: SqlDatabase, config: Config) -> None:
    """Rows of older versions name their image folder by its absolute path on the machine that
    wrote them; rewrite the ones inside this data dir relative to it (``generated``), the form
    every row now has, so the history survives a moved data dir and another machine (or the
    object store, where it is a prefix in the bucket) finds them. Each server rewrites the rows
    of its own data dir, once: afterwards there is nothing left to rewrite."""
    moved = await SqlGenerationRepository(db).relocate_roots(folders_for(config).canonical_root)
    if moved:
        log.info("history rows now name their storage folder relative to the data dir", rows=moved)


def build_services(
    *,
    generator: ImageGenerator,
    storage: ImageStorage,
    repository: GenerationRepository,
    settings: SettingsRepository,
    inspector: ImageInspector,
    task_repository: TaskRepository,
    idempotency: IdempotencyStore,
    events: TaskEventStream | None = None,
    clock: Clock | None = None,
    history_watch: ChangeWatch | None = None,
    max_running: int | None = None,
    max_queued: int = 100,
    catalogue: ModelCatalogue | None = None,
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
    on_idle: Callable[[], None] | None = None,
    annotator: ImageAnnotator | None = None,
    thumbnails: ThumbnailMaker | None = None,
    shared_queue: SharedQueue | None = None,
) -> Services:
    """Wire the use cases from port implementations (real adapters or test fakes).

    ``max_running`` defaults to the engine's own ``default_concurrency``. ``catalogue`` says what
    the engine's models take (without one, every parameter is sent as asked). ``annotator``
    defaults to the real one (``PillowImageAnnotator``: no I/O, nothing to open or close), and
    so does ``thumbnails`` (``PillowThumbnailMaker``).

    With a ``shared_queue`` (a team on PostgreSQL: ``events`` must then be the stream every process
    shares), requests become queued jobs (``SharedQueueTasks``) and this process's task manager
    runs only what the queue hands it (``Services.worker``), writing progress to the task rows.
    """
    events = events or InMemoryTaskEvents()
    annotator = annotator or PillowImageAnnotator()
    thumbnails = thumbnails or PillowThumbnailMaker()
    clock = clock or SystemClock()
    if max_running is None:
        max_running = generator.default_concurrency
    executor = TaskManager(
        tasks=task_repository,
        keys=idempotency,
        generations=repository,
        storage=storage,
        events=events,
        clock=clock,
        max_running=max_running,
        max_queued=max_queued,
        max_queued_bytes=max_queued_bytes,
        on_idle=on_idle,
        on_finished=task_outcome_logger(generator.name),
        record_progress_every=None if shared_queue is None else PROGRESS_RECORD_EVERY,
    )
    tasks: TaskScheduler = executor
    if shared_queue is not None:
        tasks = SharedQueueTasks(
            queue=shared_queue,
            tasks=task_repository,
            generations=repository,
            storage=storage,
            events=events,
            clock=clock,
            max_queued=max_queued,
            max_queued_bytes=max_queued_bytes,
        )
    pipeline = GenerationPipeline(
        generator=generator,
        annotator=annotator,
        storage=storage,
        repository=repository,
        settings=settings,
        tasks=tasks,
        clock=clock,
        catalogue=catalogue,
        thumbnails=thumbnails,
    )
    resolve = SourceResolver(storage=storage, repository=repository, settings=settings, inspector=inspector)
    text_to_image = GenerateTextToImage(pipeline=pipeline)
    image_to_image = GenerateImageToImage(pipeline=pipeline, resolve=resolve)
    upscale = UpscaleImage(pipeline=pipeline, resolve=resolve)
    return Services(
        text_to_image=text_to_image,
        image_to_image=image_to_image,
        upscale=upscale,
        list_history=ListHistory(repository=repository, watch=history_watch),
        get_generation=GetGeneration(repository=repository),
        delete_generation=DeleteGeneration(repository=repository, storage=storage),
        open_image=OpenImage(repository=repository, storage=storage, thumbnails=thumbnails),
        get_settings=GetSettings(repository=settings),
        update_settings=UpdateSettings(repository=settings, storage=storage),
        get_task=GetTask(tasks=tasks, repository=repository),
        list_tasks=ListTasks(tasks=tasks),
        cancel_task=CancelTask(tasks=tasks),
        events=events,
        tasks=tasks,
        engine=generator.name,
        list_models=ListModels(catalogue=catalogue or _NoModels()),
        update_generation=UpdateGeneration(repository=repository),
        list_tags=ListTags(repository=repository),
        inspect_image=InspectImage(resolve=resolve, annotator=annotator, tasks=tasks),
        rerun=RerunGeneration(
            pipeline=pipeline, text_to_image=text_to_image, image_to_image=image_to_image, upscale=upscale
        ),
        worker=None
        if shared_queue is None
        else WorkQueuedJob(
            pipeline=pipeline, executor=executor, tasks=task_repository, events=events, clock=clock
        ),
    )


EngineFactory = Callable[
    [Config, AsyncExitStack, ImageInspector], Awaitable[tuple[ImageGenerator, ModelCatalogue]]
]
"""Opens an engine's resources in the exit stack (closed with it) and returns the engine and
its model catalogue."""


async def _local_engine(
    config: Config, stack: AsyncExitStack, inspector: ImageInspector
) -> tuple[ImageGenerator, ModelCatalogue]:
    from imagestudio.adapters.local_engine import LocalImageGenerator, LocalModelCatalogue

    return LocalImageGenerator(), LocalModelCatalogue()


async def _runware_engine(
    config: Config, stack: AsyncExitStack, inspector: ImageInspector
) -> tuple[ImageGenerator, ModelCatalogue]:
    from imagestudio.adapters.runware import RunwareImageGenerator, RunwareModelCatalogue, runware_client

    assert config.runware_api_key is not None  # Config refuses runware without a key
    client = await stack.enter_async_context(runware_client())
    generator = RunwareImageGenerator(
        client,
        api_key=config.runware_api_key.reveal(),
        api_url=config.runware_api_url,
        timeout=config.runware_timeout,
        inspector=inspector,
        upscale_model=config.upscale_model,
    )
    return generator, RunwareModelCatalogue(generator.transport)


ENGINES: Final[Mapping[str, EngineFactory]] = MappingProxyType(
    {"local": _local_engine, "runware": _runware_engine}
)
"""Every engine by its ``IMAGESTUDIO_ENGINE`` name (imported only when chosen)."""


@asynccontextmanager
async def bootstrap(config: Config) -> AsyncIterator[Services]:
    """Open the adapters ``config`` names, yield the wired services, close everything on exit."""
    protect(config.secrets)  # redacted from the lines of a library user's process too
    await anyio.to_thread.run_sync(lambda: config.data_dir.mkdir(parents=True, exist_ok=True))
    async with AsyncExitStack() as stack:
        db = SqlDatabase(config.database)
        stack.callback(db.dispose)
        await anyio.to_thread.run_sync(db.upgrade_schema)
        await relocate_history(db, config)
        storage = storage_for(config)
        watch = change_watch(db)
        if watch is not None:
            stack.callback(watch.close)
        inspector = PillowImageInspector()
        generator, catalogue = await ENGINES[config.engine](config, stack, inspector)
        events = _event_stream(db, stack)
        queue = await _shared_queue(config, db, stack)
        services = build_services(
            generator=generator,
            annotator=PillowImageAnnotator(),
            storage=storage,
            repository=SqlGenerationRepository(db),
            settings=SqlSettingsRepository(db, watch=watch),
            inspector=inspector,
            thumbnails=PillowThumbnailMaker(),
            task_repository=SqlTaskRepository(db),
            idempotency=SqlIdempotencyStore(db),
            events=events,
            history_watch=watch,
            max_running=config.max_running,
            max_queued=config.max_queued,
            catalogue=catalogue,
            max_queued_bytes=config.max_queued_bytes,
            on_idle=release_freed_memory,
            shared_queue=queue,
        )
        _report_interrupted(await services.tasks.recover())
        if queue is not None:
            _start_team_work(config, services, queue, generator, stack)
        stack.push_async_callback(_shut_down, services, config.shutdown_grace)
        log.info(
            "services ready",
            engine=generator.name,
            data_dir=str(config.data_dir),
            database=db.safe_url,
            role=config.role if queue is not None else None,
            storage=storage.location(".") if config.storage_url else "folders",
        )
        yield services


def _report_interrupted(interrupted: list[Task]) -> None:
    if interrupted:
        log.warning(
            "interrupted tasks marked failed", count=len(interrupted), tasks=[t.id for t in interrupted]
        )


async def _shared_queue(config: Config, db: SqlDatabase, stack: AsyncExitStack) -> SharedQueue | None:
    """A team's queue (PostgreSQL), closed after the work on it has stopped; ``None`` on SQLite."""
    if not config.shared:
        return None
    from imagestudio.adapters.queue import open_queue

    return await stack.enter_async_context(open_queue(db))


def _start_team_work(
    config: Config,
    services: Services,
    queue: SharedQueue,
    generator: ImageGenerator,
    stack: AsyncExitStack,
) -> None:
    """A team process's background work: the sweep for tasks of dead workers (every process, so
    one left alive still marks them) and, unless it only takes requests, a worker on the queue.
    Both stop before the queue closes: the worker lets running jobs finish for the grace period
    and leaves queued ones to the other workers."""
    from imagestudio.adapters.queue import SWEEP_EVERY, ProcrastinateQueue, run_worker

    assert isinstance(queue, ProcrastinateQueue)
    tasks = services.tasks

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            try:
                _report_interrupted(await tasks.recover())
            except StudioError as error:
                log.warning("stalled task sweep failed", error=error.message)

    background = [asyncio.create_task(sweep(), name="imagestudio stalled sweep")]
    worker = services.worker
    if worker is not None and config.role in ("all", "worker"):
        concurrency = config.max_running or generator.default_concurrency
        background.append(
            asyncio.create_task(
                run_worker(
                    queue, run=worker, stop=worker.stop, concurrency=concurrency, grace=config.shutdown_grace
                ),
                name="imagestudio worker",
            )
        )
        log.info("worker started", concurrency=concurrency)

    async def stop() -> None:
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if worker is not None:
            await worker.executor.shutdown(config.shutdown_grace)

    stack.push_async_callback(stop)


def _event_stream(db: SqlDatabase, stack: AsyncExitStack) -> TaskEventStream:
    """The task event stream, bound to the running loop: in memory on SQLite (one process); on
    PostgreSQL the table every server shares, stopped (after writing what is queued) once the task
    queue has stopped, which is why its callback is pushed before the queue's."""
    if db.is_sqlite:
        memory = InMemoryTaskEvents()
        memory.bind()
        return memory
    shared = PostgresTaskEvents(db)
    shared.bind()
    stack.push_async_callback(shared.aclose)
    return shared


async def _shut_down(services: Services, grace: float) -> None:
    """Stop the task manager and say what became of the work it had."""
    report = await services.tasks.shutdown(grace)
    if report.queued or report.running:
        log.info(
            "task queue stopped",
            cancelled_queued=report.queued,
            running=report.running,
            stopped_after_grace=report.stopped,
            grace=grace,
        )


@asynccontextmanager
async def consistency_check(config: Config) -> AsyncIterator[CheckConsistency]:
    """The consistency check of ``imagestudio doctor`` over the database and storage ``config`` names.

    It opens only the database and the storage (no engine, no task queue, no restart recovery), so
    it can run beside a live server.
    """
    db = SqlDatabase(config.database)
    try:
        await anyio.to_thread.run_sync(db.upgrade_schema)
        await relocate_history(db, config)
        yield CheckConsistency(
            repository=SqlGenerationRepository(db),
            storage=storage_for(config),
            settings=SqlSettingsRepository(db),
            clock=SystemClock(),
            thumbnails=PillowThumbnailMaker(),
        )
    finally:
        db.dispose()


class _NoModels:
    """The catalogue of an engine that names none: no default of its own, nothing to list."""

    default_model = DEFAULT_MODEL

    async def get(self, model_id: str) -> None:
        return None

    async def search(self, query: ModelQuery) -> ModelPage:
        return ModelPage(items=[])
