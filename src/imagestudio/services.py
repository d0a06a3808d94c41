"""``Services``: every use case, ready to call, as the HTTP shell, the CLI and ``Studio`` see them.

Rules:
- typed by domain use cases and ports only, never by an adapter class: the shell and the library
  depend on what the studio does, not on what it is built from (``bootstrap.py`` builds one);
- importing this module loads no database, imaging or web library.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagestudio._version import __version__
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
from imagestudio.domain.models import ListModels
from imagestudio.domain.ports import TaskEventStream
from imagestudio.domain.settings import GetSettings, UpdateSettings
from imagestudio.domain.shared_queue import WorkQueuedJob
from imagestudio.domain.task_queries import CancelTask, GetTask, ListTasks
from imagestudio.domain.tasks import TaskScheduler

__all__ = ["Services"]


@dataclass(frozen=True, kw_only=True)
class Services:
    """Every use case, ready to call, plus what the shell needs to report on them."""

    text_to_image: GenerateTextToImage
    image_to_image: GenerateImageToImage
    upscale: UpscaleImage
    list_history: ListHistory
    get_generation: GetGeneration
    delete_generation: DeleteGeneration
    open_image: OpenImage
    get_settings: GetSettings
    update_settings: UpdateSettings
    get_task: GetTask
    list_tasks: ListTasks
    cancel_task: CancelTask
    events: TaskEventStream
    tasks: TaskScheduler
    engine: str
    list_models: ListModels
    update_generation: UpdateGeneration
    list_tags: ListTags
    inspect_image: InspectImage
    rerun: RerunGeneration
    worker: WorkQueuedJob | None = None
    """A team's worker part: runs the jobs the shared queue hands this process (``None`` on the
    desktop, where ``tasks`` runs them itself)."""
    version: str = __version__
