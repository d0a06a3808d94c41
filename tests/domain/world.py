"""A domain world: fakes of every port, wired by the production wiring (:func:`tests.fakes.fake_services`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

from imagestudio.bootstrap import Services
from imagestudio.domain.generate import (
    GenerateImageToImage,
    GenerateTextToImage,
    RerunGeneration,
    UpscaleImage,
)
from imagestudio.domain.history import DeleteGeneration, GetGeneration, ListHistory, OpenImage
from imagestudio.domain.metadata import InspectImage
from imagestudio.domain.pipeline import SourceResolver
from imagestudio.domain.settings import GetSettings, UpdateSettings
from imagestudio.domain.task_queries import CancelTask, GetTask, ListTasks
from imagestudio.domain.tasks import TaskManager
from tests.fakes import (
    FakeImageAnnotator,
    FakeImageGenerator,
    FakeImageInspector,
    FakeThumbnailMaker,
    InMemoryGenerationRepository,
    InMemoryIdempotencyStore,
    InMemoryImageStorage,
    InMemorySettingsRepository,
    InMemoryTaskRepository,
    RecordingEvents,
    SteppingClock,
    fake_services,
)


@dataclass
class World:
    """The fakes a test asserts on and the use cases built over them, once, on first use."""

    generator: FakeImageGenerator = field(default_factory=FakeImageGenerator)
    storage: InMemoryImageStorage = field(default_factory=InMemoryImageStorage)
    repository: InMemoryGenerationRepository = field(default_factory=InMemoryGenerationRepository)
    settings: InMemorySettingsRepository = field(default_factory=InMemorySettingsRepository)
    events: RecordingEvents = field(default_factory=RecordingEvents)
    inspector: FakeImageInspector = field(default_factory=FakeImageInspector)
    thumbnails: FakeThumbnailMaker = field(default_factory=FakeThumbnailMaker)
    annotator: FakeImageAnnotator = field(default_factory=FakeImageAnnotator)
    clock: SteppingClock = field(default_factory=SteppingClock)
    task_repository: InMemoryTaskRepository = field(default_factory=InMemoryTaskRepository)
    keys: InMemoryIdempotencyStore = field(default_factory=InMemoryIdempotencyStore)
    max_running: int = 2
    max_queued: int = 100
    max_queued_bytes: int = 256 * 1024 * 1024
    idle_calls: list[int] = field(default_factory=list)

    @cached_property
    def services(self) -> Services:
        return fake_services(
            generator=self.generator,
            storage=self.storage,
            repository=self.repository,
            settings=self.settings,
            inspector=self.inspector,
            thumbnails=self.thumbnails,
            annotator=self.annotator,
            task_repository=self.task_repository,
            idempotency=self.keys,
            events=self.events,
            clock=self.clock,
            max_running=self.max_running,
            max_queued=self.max_queued,
            max_queued_bytes=self.max_queued_bytes,
            on_idle=lambda: self.idle_calls.append(len(self.idle_calls) + 1),
        )

    @property
    def tasks(self) -> TaskManager:
        return self.services.tasks

    @property
    def resolver(self) -> SourceResolver:
        return self.services.image_to_image.resolve

    def text_to_image(self, seed: int = 4242) -> GenerateTextToImage:
        # build_services takes no seed source: the wired use case with a fixed one
        return replace(self.services.text_to_image, seeds=lambda: seed)

    def image_to_image(self) -> GenerateImageToImage:
        return replace(self.services.image_to_image, seeds=lambda: 777)

    def upscale(self) -> UpscaleImage:
        return self.services.upscale

    def rerun(self, seed: int = 5151) -> RerunGeneration:
        # the wired use case, drawing ``seed`` where it draws one
        return replace(
            self.services.rerun,
            text_to_image=self.text_to_image(seed),
            image_to_image=replace(self.services.image_to_image, seeds=lambda: seed),
        )

    def list_history(self) -> ListHistory:
        return self.services.list_history

    def get_generation(self) -> GetGeneration:
        return self.services.get_generation

    def delete_generation(self) -> DeleteGeneration:
        return self.services.delete_generation

    def open_image(self) -> OpenImage:
        return self.services.open_image

    def get_settings(self) -> GetSettings:
        return self.services.get_settings

    def update_settings(self) -> UpdateSettings:
        return self.services.update_settings

    def get_task(self) -> GetTask:
        return self.services.get_task

    def list_tasks(self) -> ListTasks:
        return self.services.list_tasks

    def cancel_task(self) -> CancelTask:
        return self.services.cancel_task

    def inspect_image(self) -> InspectImage:
        return self.services.inspect_image
