"""Tasks on a queue that several servers and workers share (a team on one PostgreSQL database).

On the desktop one process takes a request and runs it (:class:`TaskManager`). In a team, a
request may land on any API server and its work on any worker, so nothing about a task may live
only in one process's memory:

- **Admission** (:meth:`SharedQueueTasks.submit`): the idempotency key, the queue limit (counted
  over the whole cluster) and the task's row are settled, and the job is put in the queue, in one
  transaction of the :class:`SharedQueue` port. The job goes as a value (``GenerationJob``); its
  input image travels with it, so the process that took the request keeps nothing.
- **Running** (:class:`WorkQueuedJob`): a worker takes the job and runs it with its own
  :class:`TaskManager` (``adopt``), which records every transition and, now and then, the progress
  in the task's row, and publishes its events on the stream every server reads.
- **Questions** (``get``, ``list_tasks``, ``wait_all``): answered from the rows, the queue (a
  queued task's position) and the shared event stream, so every server says the same.
- **Cancelling** from any server: a queued task is taken out of the queue before any worker starts
  it; a running one is aborted on its worker (the queue tells it at once), which stops it as a
  local cancel does: nothing is stored.
- **Crash safety** (:meth:`SharedQueueTasks.recover`, run every few seconds by every process):
  a job whose worker stopped sending heartbeats is marked ``failed`` (``INTERRUPTED``), never run
  again (a provider may already have been paid for it), and the images it wrote but never
  recorded are removed. A worker stopped with SIGTERM finishes what it runs within its grace
  period; what is queued stays queued for the other workers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from imagestudio.domain.budget import DEFAULT_MAX_QUEUED_BYTES, ByteBudget, Hold
from imagestudio.domain.errors import Conflict, NotFound, QueueFull, StudioError
from imagestudio.domain.lifecycle import TaskState
from imagestudio.domain.model import Generation, Task, TaskEvent, TaskStatus
from imagestudio.domain.pipeline import GenerationJob, GenerationPipeline, PipelineJob
from imagestudio.domain.ports import (
    Clock,
    GenerationRepository,
    IdempotencyRecord,
    ImageStorage,
    TaskEventStream,
    TaskRepository,
)
from imagestudio.domain.tasks import IdempotencyKey, Job, ShutdownReport, TaskManager, outcome_of

__all__ = ["SharedQueue", "SharedQueueTasks", "WorkQueuedJob"]

INTERRUPTED_MESSAGE = "The worker running this task stopped before it finished"
WAIT_POLL = 2.0
"""Seconds between two reads of a waited-for task's row, besides its events (a lost event, or a
stream that is down, delays an answer by this much at most)."""


class SharedQueue(Protocol):
    """The queue of generation jobs that every server and worker of a team shares."""

    async def enqueue(
        self,
        job: GenerationJob,
        task: Task,
        idempotency: IdempotencyKey | None,
        *,
        max_queued: int,
        now: datetime,
    ) -> IdempotencyRecord | None:
        """In one transaction: claim ``idempotency`` (if given), check the queue limit, record
        ``task`` (queued), queue ``job`` and publish the task's ``queued`` event on the shared
        stream (so it comes before anything a worker publishes about the task).

        Returns ``None`` when the job was queued, or the live record of an earlier request with the
        same key (then nothing was written). ``QueueFull`` when ``max_queued`` tasks (at least one)
        already wait in the whole cluster; ``Conflict`` when the task id is taken.
        """
        ...

    async def dequeue(self, task_id: str) -> bool:
        """Take a task's job out of the queue before a worker starts it; ``False`` if it is not
        waiting any more (running, finished, or unknown)."""
        ...

    async def abort(self, task_id: str) -> bool:
        """Ask the worker running the task's job to stop it; ``False`` if it is not running."""
        ...

    async def active(self) -> list[Task]:
        """The unfinished tasks of the cluster: generating first, then queued in queue order, each
        queued one with its position (1 = next)."""
        ...

    async def position(self, task_id: str) -> int | None:
        """A queued task's place in the cluster's queue (1 = next); ``None`` if it is not queued."""
        ...

    async def sweep(self, interrupt: Callable[[list[str]], Awaitable[list[Task]]]) -> list[Task]:
        """Find the tasks nobody will finish (their worker stopped sending heartbeats: their jobs
        are then marked failed in the queue; or their row has no job any more) and call
        ``interrupt`` with their ids, holding a lock of the whole cluster meanwhile, so that each
        is interrupted by one process, once; its answer is returned (``[]`` when another process
        is sweeping, or there was nothing to do)."""
        ...


@dataclass(kw_only=True)
class SharedQueueTasks:
    """``TaskScheduler`` over a :class:`SharedQueue`: what an API server of a team does with tasks."""

    queue: SharedQueue
    tasks: TaskRepository
    generations: GenerationRepository
    storage: ImageStorage
    events: TaskEventStream
    clock: Clock
    max_queued: int = 100
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES

    def __post_init__(self) -> None:
        self.bytes = ByteBudget(self.max_queued_bytes)
        self._accepting = True

    def hold(self, size: int) -> Hold:
        return self.bytes.hold(size)

    async def submit(self, job: Job, idempotency: IdempotencyKey | None = None) -> Task:
        """Queue ``job`` for the cluster's workers and return its task (rules as
        :meth:`TaskManager.submit`, with the queue limit counted over the cluster). The job's hold
        is released once it is queued: its input travels in the queue, not in this process."""
        try:
            if not self._accepting:
                raise QueueFull("The server is shutting down and accepts no new tasks")
            if not isinstance(job, PipelineJob):
                raise TypeError("a shared queue carries generation jobs only")
            now = self.clock.now()
            task = TaskState(job.task_id, job.operation, now).task
            existing = await self.queue.enqueue(
                job.generation, task, idempotency, max_queued=self.max_queued, now=now
            )
            if existing is not None:
                assert idempotency is not None
                if existing.fingerprint != idempotency.fingerprint:
                    raise Conflict(
                        "This Idempotency-Key was used with a different request",
                        details={"field": "Idempotency-Key"},
                    )
                return await self.get(existing.task_id)
            return await self.get(task.id)
        finally:
            if job.hold is not None:
                job.hold.release()

    async def run(self, job: Job, idempotency: IdempotencyKey | None = None) -> Generation:
        return (await self.run_all(job, idempotency))[0]

    async def run_all(self, job: Job, idempotency: IdempotencyKey | None = None) -> list[Generation]:
        task = await self.submit(job, idempotency)
        return await self.wait_all(task.id)

    async def wait(self, task_id: str) -> Generation:
        return (await self.wait_all(task_id))[0]

    async def wait_all(self, task_id: str) -> list[Generation]:
        """Every generation of the task once it has ended, wherever it runs; its error otherwise."""
        return await outcome_of(await self._until_finished(task_id, timeout=None), self.generations)

    async def _until_finished(self, task_id: str, timeout: float | None) -> Task:  # noqa: ASYNC109
        """The task once it is terminal (or as it is when ``timeout`` runs out): woken by its
        events, and reading its row every :data:`WAIT_POLL` seconds in case an event is lost."""
        subscription = self.events.subscribe(task_id)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while True:
                task = await self.get(task_id)
                if task.status.is_terminal:
                    return task
                wait = WAIT_POLL if deadline is None else min(WAIT_POLL, deadline - loop.time())
                if wait <= 0:
                    return task
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        while not (await subscription.next()).status.is_terminal:
                            pass
        finally:
            subscription.close()

    async def get(self, task_id: str) -> Task:
        task = await self.tasks.get(task_id)
        if task is None:
            raise NotFound("Task not found")
        if task.status is TaskStatus.QUEUED:
            position = await self.queue.position(task_id)
            if position is not None:
                state = TaskState.resume(task)
                state.queue_at(position)
                task = state.task
        return task

    async def list_tasks(self, limit: int = 50) -> list[Task]:
        active = await self.queue.active()
        finished = await self.tasks.recent(limit)
        seen = {task.id for task in active}
        return active + [task for task in finished if task.id not in seen]

    async def cancel(self, task_id: str, grace: float = 30.0) -> Task:
        """Cancel a task wherever it is: out of the queue if no worker has started it, else
        stopped on its worker (answered once it has stopped, or as it is after ``grace``)."""
        task = await self.get(task_id)
        if task.status.is_terminal:
            raise Conflict(f"Task {task_id} has already finished ({task.status.value})")
        if await self.queue.dequeue(task_id):
            state = TaskState.resume(task)
            state.cancel(self.clock.now())
            await self.tasks.update(state.task)
            self._publish(state.task)
            return state.task
        await self.queue.abort(task_id)
        task = await self._until_finished(task_id, timeout=grace)
        if not task.status.is_terminal:
            return task
        if task.status is not TaskStatus.CANCELLED:
            raise Conflict(f"Task {task_id} finished ({task.status.value}) before it could be cancelled")
        return task

    async def recover(self) -> list[Task]:
        """Tasks whose worker died become ``failed`` (``INTERRUPTED``), and the images they wrote
        but never recorded are removed (safe to call from every process, as often as wanted)."""
        return await self.queue.sweep(self._interrupt)

    async def _interrupt(self, task_ids: list[str]) -> list[Task]:
        interrupted: list[Task] = []
        for task_id in task_ids:
            task = await self.tasks.get(task_id)
            if task is None or task.status.is_terminal:
                continue
            state = TaskState.resume(task)
            state.fail("INTERRUPTED", INTERRUPTED_MESSAGE, self.clock.now())
            await self.tasks.update(state.task)
            for image in task.images:
                if await self.generations.get_by_key(image.key) is None:
                    await self.storage.delete(image)
            self._publish(state.task)
            interrupted.append(task)
        return interrupted

    async def shutdown(self, grace: float = 10.0) -> ShutdownReport:
        """Stop accepting; what is queued stays in the queue for the cluster's workers."""
        self._accepting = False
        return ShutdownReport(queued=0, running=0)

    def _publish(self, task: Task) -> None:
        _publish(self.events, task)


def _publish(events: TaskEventStream, task: Task) -> None:
    """Announce a task's state, as it now is, on the stream."""
    events.publish(
        TaskEvent(
            task_id=task.id,
            status=task.status,
            progress=task.progress,
            generation_id=task.generation_id,
            generation_ids=task.generation_ids,
            error=task.error_message,
            code=task.error_code,
            position=task.position,
        )
    )


@dataclass(kw_only=True)
class WorkQueuedJob:
    """A worker's part: run one job the shared queue handed it, on this process's pipeline."""

    pipeline: GenerationPipeline
    executor: TaskManager
    tasks: TaskRepository
    events: TaskEventStream
    clock: Clock

    async def __call__(self, job: GenerationJob) -> None:
        """Run ``job`` as its task; the task's outcome (a failure too) is recorded on the task,
        so only a job that could not be run at all raises. A task that is no longer queued
        (cancelled or interrupted meanwhile) is not run."""
        task = await self.tasks.get(job.task_id)
        if task is None or task.status is not TaskStatus.QUEUED:
            return
        with contextlib.suppress(StudioError):
            await self.executor.adopt(self.pipeline.job(job), task)

    async def stop(self, task_id: str) -> None:
        """Stop a task this worker runs (its job was aborted), as a local cancel does; one aborted
        before it even started here is marked cancelled (nobody else would)."""
        try:
            await self.executor.cancel(task_id)
            return
        except Conflict:
            pass  # not running here
        task = await self.tasks.get(task_id)
        if task is None or task.status is not TaskStatus.QUEUED:
            return
        state = TaskState.resume(task)
        state.cancel(self.clock.now())
        await self.tasks.update(state.task)
        _publish(self.events, state.task)
