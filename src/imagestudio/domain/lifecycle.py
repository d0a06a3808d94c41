"""The task lifecycle: :class:`TaskState`, the state machine behind every :class:`Task` snapshot.

One lifecycle is shared by every engine and operation; ``domain/tasks.py`` drives it from its
queue and records each transition through the ``TaskRepository`` port.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from imagestudio.domain.errors import GenerationCancelled
from imagestudio.domain.model import InvalidTransition, Operation, StoredImage, Task, TaskStatus

__all__ = ["TaskState"]


class TaskState:
    """The mutable state machine behind a :class:`Task`.

    Rules: ``queued -> generating -> completed | failed | cancelled``; ``queued -> failed |
    cancelled``; nothing leaves a terminal state; progress is 0..100 and never decreases;
    ``completed`` means progress 100.
    """

    def __init__(self, task_id: str, operation: Operation, now: datetime) -> None:
        self._task = Task(
            id=task_id, operation=operation, status=TaskStatus.QUEUED, progress=0, created_at=now
        )

    @classmethod
    def resume(cls, task: Task) -> TaskState:
        """The state machine of a task recorded elsewhere (a shared queue's row), from its snapshot."""
        state = cls.__new__(cls)
        state._task = task
        return state

    @property
    def task(self) -> Task:
        return self._task

    @property
    def status(self) -> TaskStatus:
        return self._task.status

    def _require_active(self, action: str) -> None:
        if self._task.status.is_terminal:
            raise InvalidTransition(f"cannot {action} a {self._task.status.value} task")

    def queue_at(self, position: int | None) -> None:
        self._require_active("queue")
        self._task = replace(self._task, position=position)

    def start(self, now: datetime) -> None:
        if self._task.status is not TaskStatus.QUEUED:
            raise InvalidTransition(f"cannot start a {self._task.status.value} task")
        self._task = replace(self._task, status=TaskStatus.GENERATING, started_at=now, position=None)

    def advance(self, progress: int) -> bool:
        """Move progress forward (capped at 99 until completion); ``False`` if nothing changed."""
        if self._task.status is not TaskStatus.GENERATING:
            raise InvalidTransition(f"cannot advance a {self._task.status.value} task")
        progress = max(0, min(99, progress))
        if progress <= self._task.progress:
            return False
        self._task = replace(self._task, progress=progress)
        return True

    def stored(self, images: tuple[StoredImage, ...]) -> None:
        self._require_active("store an image for")
        self._task = replace(self._task, images=images)

    def complete(self, generation_ids: tuple[int, ...], now: datetime) -> None:
        if not generation_ids:
            raise InvalidTransition("a completed task has at least one generation")
        if self._task.status is not TaskStatus.GENERATING:
            raise InvalidTransition(f"cannot complete a {self._task.status.value} task")
        self._task = replace(
            self._task,
            status=TaskStatus.COMPLETED,
            progress=100,
            generation_id=generation_ids[0],
            generation_ids=generation_ids,
            finished_at=now,
            images=(),
        )

    def fail(self, code: str, message: str, now: datetime) -> None:
        self._require_active("fail")
        self._task = replace(
            self._task,
            status=TaskStatus.FAILED,
            error_code=code,
            error_message=message,
            finished_at=now,
            position=None,
            images=(),
        )

    def cancel(self, now: datetime) -> None:
        self._require_active("cancel")
        self._task = replace(
            self._task,
            status=TaskStatus.CANCELLED,
            error_code=GenerationCancelled.code,
            error_message="Task was cancelled",
            finished_at=now,
            position=None,
            images=(),
        )
