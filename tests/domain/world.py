"""A domain world wired from fakes only."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from imagestudio.domain.generate import GenerateImageToImage, GenerateTextToImage, UpscaleImage
from imagestudio.domain.history import DeleteGeneration, GetGeneration, ListHistory, OpenImage
from imagestudio.domain.pipeline import GenerationPipeline, SourceResolver
from imagestudio.domain.settings import GetSettings, UpdateSettings
from imagestudio.domain.task_queries import CancelTask, GetTask, ListTasks
from imagestudio.domain.tasks import TaskManager
from tests.fakes import (
    FakeImageGenerator,
    FakeImageInspector,
    InMemoryGenerationRepository,
    InMemoryIdempotencyStore,
    InMemoryImageStorage,
    InMemorySettingsRepository,
    InMemoryTaskRepository,
    RecordingEvents,
    SteppingClock,
)


@dataclass
class World:
    generator: FakeImageGenerator = field(default_factory=FakeImageGenerator)
    storage: InMemoryImageStorage = field(default_factory=InMemoryImageStorage)
    repository: InMemoryGenerationRepository = field(default_factory=InMemoryGenerationRepository)
    settings: InMemorySettingsRepository = field(default_factory=InMemorySettingsRepository)
    events: RecordingEvents = field(default_factory=RecordingEvents)
    inspector: FakeImageInspector = field(default_factory=FakeImageInspector)
    clock: SteppingClock = field(default_factory=SteppingClock)
    task_repository: InMemoryTaskRepository = field(default_factory=InMemoryTaskRepository)
    keys: InMemoryIdempotencyStore = field(default_factory=InMemoryIdempotencyStore)
    max_running: int = 2
    max_queued: int = 100
    max_queued_bytes: int = 256 * 1024 * 1024
    idle_calls: list[int] = field(default_factory=list)

    @cached_property
    def tasks(self) -> TaskManager:
        return TaskManager(
            tasks=self.task_repository,
            keys=self.keys,
            generations=self.repository,
            storage=self.storage,
            events=self.events,
            clock=self.clock,
            max_running=self.max_running,
            max_queued=self.max_queued,
            max_queued_bytes=self.max_queued_bytes,
            on_idle=lambda: self.idle_calls.append(len(self.idle_calls) + 1),
        )

    @property
    def pipeline(self) -> GenerationPipeline:
        return GenerationPipeline(
            generator=self.generator,
            storage=self.storage,
            repository=self.repository,
            settings=self.settings,
            tasks=self.tasks,
            clock=self.clock,
        )

    @property
    def resolver(self) -> SourceResolver:
        return SourceResolver(
            storage=self.storage, repository=self.repository, settings=self.settings, inspector=self.inspector
        )

    def text_to_image(self, seed: int = 4242) -> GenerateTextToImage:
        return GenerateTextToImage(pipeline=self.pipeline, seeds=lambda: seed)

    def image_to_image(self) -> GenerateImageToImage:
        return GenerateImageToImage(pipeline=self.pipeline, resolve=self.resolver, seeds=lambda: 777)

    def upscale(self) -> UpscaleImage:
        return UpscaleImage(pipeline=self.pipeline, resolve=self.resolver)

    def list_history(self) -> ListHistory:
        return ListHistory(repository=self.repository)

    def get_generation(self) -> GetGeneration:
        return GetGeneration(repository=self.repository)

    def delete_generation(self) -> DeleteGeneration:
        return DeleteGeneration(repository=self.repository, storage=self.storage)

    def open_image(self) -> OpenImage:
        return OpenImage(repository=self.repository, storage=self.storage)

    def get_settings(self) -> GetSettings:
        return GetSettings(repository=self.settings)

    def update_settings(self) -> UpdateSettings:
        return UpdateSettings(repository=self.settings, storage=self.storage)

    def get_task(self) -> GetTask:
        return GetTask(tasks=self.tasks, repository=self.repository)

    def list_tasks(self) -> ListTasks:
        return ListTasks(tasks=self.tasks)

    def cancel_task(self) -> CancelTask:
        return CancelTask(tasks=self.tasks)
