"""Use cases over tasks, as a client sees them: one task, the list, a cancel.

The queue itself (admission, running, the lifecycle) is :class:`TaskManager` in ``tasks.py``;
these are the calls the HTTP routes and ``Studio`` make on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from imagestudio.domain.model import Generation, Task
from imagestudio.domain.ports import GenerationRepository
from imagestudio.domain.tasks import TaskScheduler

__all__ = ["MAX_FINISHED_TASKS", "CancelTask", "GetTask", "ListTasks", "TaskDetail"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskDetail:
    """A task and the generation it made (``None`` while it has none, or once that was deleted)."""

    task: Task
    generation: Generation | None


@dataclass(frozen=True, kw_only=True)
class GetTask:
    """One task: status, progress, position, result or error.

    Rules:
    - active and recently finished tasks are answered from memory, older ones from the record;
      an unknown id is ``NotFound`` ("Task not found");
    - a completed task comes with its generation, unless that has been deleted since (then the
      task alone: the task still completed).
    """

    tasks: TaskScheduler
    repository: GenerationRepository

    async def __call__(self, task_id: str) -> TaskDetail:
        task = await self.tasks.get(task_id)
        generation = None
        if task.generation_id is not None:
            generation = await self.repository.get(task.generation_id)
        return TaskDetail(task=task, generation=generation)


MAX_FINISHED_TASKS = 500
"""The most recent finished tasks one listing may include."""


@dataclass(frozen=True, kw_only=True)
class ListTasks:
    """Active tasks (running first, then queued in order), then up to ``limit`` recent finished ones
    (1 to :data:`MAX_FINISHED_TASKS`)."""

    tasks: TaskScheduler

    async def __call__(self, limit: int = 50) -> list[Task]:
        return await self.tasks.list_tasks(limit)


@dataclass(frozen=True, kw_only=True)
class CancelTask:
    """Cancel a queued or running task and return it once it has stopped.

    Rules:
    - a queued task never starts; a running local generation stops at its next step; a provider
      call is abandoned and its result discarded;
    - a task that has already finished, or that finished (its image being recorded) before it
      could be stopped, is ``Conflict``; an unknown id is ``NotFound``.
    """

    tasks: TaskScheduler

    async def __call__(self, task_id: str) -> Task:
        return await self.tasks.cancel(task_id)
