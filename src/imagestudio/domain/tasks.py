"""Tasks: one lifecycle shared by every engine and operation, and the bounded queue that runs them.

A task goes ``queued`` -> ``generating`` -> exactly one of ``completed``, ``failed`` or
``cancelled``; nothing leaves a terminal state and progress never goes down. At most
``max_running`` tasks generate at once; up to ``max_queued`` more wait in order, and a full queue is
refused with ``QueueFull`` rather than piling up. Transitions are recorded through the
``TaskRepository`` port so a restart can tell which tasks it interrupted.

Memory is bounded by bytes as well as by count: the input data of work being prepared, queued or
running (a source image, a decoded data URI) is held against one :class:`ByteBudget` of
``max_queued_bytes`` (``domain/budget.py``, re-exported here). A job carries its :class:`Hold`,
which is given back when the task ends, whichever way it ends, or when the job is never admitted.
When the last active task ends, ``on_idle`` runs (the composition root passes one that hands
freed memory back to the system). A job makes one generation or a batch of them (``count``); a
task's result lists them all, in seed order. When any task ends, ``on_finished`` receives its final
snapshot, its job and its first generation (``None`` unless completed): the composition root logs one line per
generation with it, since the domain itself does not log. The :class:`Task` snapshot and
:class:`InvalidTransition` are values (``domain/values.py``) and :class:`TaskState` is
``domain/lifecycle.py``, all re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from imagestudio.domain.budget import DEFAULT_MAX_QUEUED_BYTES, ByteBudget, Hold
from imagestudio.domain.errors import (
    Conflict,
    GenerationCancelled,
    NotFound,
    QueueFull,
    StudioError,
    error_from_code,
)
from imagestudio.domain.lifecycle import TaskState
from imagestudio.domain.model import (
    Generation,
    InvalidTransition,
    Operation,
    StoredImage,
    Task,
    TaskEvent,
    TaskStatus,
)
from imagestudio.domain.ports import (
    Clock,
    GenerationRepository,
    IdempotencyStore,
    ImageStorage,
    PreviewSource,
    TaskEvents,
    TaskRepository,
)

__all__ = [
    "DEFAULT_MAX_QUEUED_BYTES",
    "IDEMPOTENCY_TTL",
    "ByteBudget",
    "Hold",
    "IdempotencyKey",
    "InvalidTransition",
    "Job",
    "ShutdownReport",
    "Task",
    "TaskControl",
    "TaskManager",
    "TaskScheduler",
    "TaskState",
]

Made = TypeVar("Made")
"""What an engine call makes: one image, or the images of a batch."""

IDEMPOTENCY_TTL = timedelta(hours=24)
PREVIEW_INTERVAL = 0.3
"""Seconds between two previews of one task: at most about three a second."""


@dataclass(frozen=True, kw_only=True, slots=True)
class IdempotencyKey:
    """A client's ``Idempotency-Key`` and the fingerprint of the request it came with."""

    key: str
    fingerprint: str


class Job(Protocol):
    """Work to run as a task: ``execute`` makes the generation, reporting through its control.

    ``hold`` is the input data the job keeps alive (see :class:`ByteBudget`); the manager releases
    it. A generation's job is ``domain/pipeline.py``'s ``PipelineJob``: a value bound to the
    function that runs it.
    """

    @property
    def task_id(self) -> str: ...
    @property
    def operation(self) -> Operation: ...
    @property
    def hold(self) -> Hold | None: ...
    @property
    def model(self) -> str | None:
        """The model the job asks for, if it names one (for what is reported of a failed task)."""
        ...

    async def execute(self, control: TaskControl) -> list[Generation]:
        """The generations made, in seed order (one unless the job makes a batch)."""
        ...


async def outcome_of(task: Task, generations: GenerationRepository) -> list[Generation]:
    """What a finished task answers a waiting request: its generations in seed order (``NotFound``
    once any of them has been deleted), or its error."""
    ids = task.generation_ids or ((task.generation_id,) if task.generation_id is not None else ())
    if task.status is TaskStatus.COMPLETED and ids:
        made = []
        for generation_id in ids:
            generation = await generations.get(generation_id)
            if generation is None:
                raise NotFound("A generation of this task has been deleted")
            made.append(generation)
        return made
    raise error_from_code(task.error_code or "INTERRUPTED", task.error_message or "Task did not complete")


class TaskControl:
    """What a running job uses to report progress, learn of cancellation and record its file."""

    def __init__(self, manager: TaskManager, entry: _Entry) -> None:
        self._manager = manager
        self._entry = entry

    @property
    def task_id(self) -> str:
        return self._entry.state.task.id

    @property
    def cancelled(self) -> bool:
        return self._entry.cancelled.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise GenerationCancelled("Task was cancelled")

    def step(self, done: int, total: int, preview: PreviewSource | None = None) -> None:
        """The engine's progress callback; safe from any thread. Raises once the task is cancelled,
        which stops a local engine at its next step. ``preview`` is called (in the caller's
        thread) when someone watches with previews and the last preview is at least
        :data:`PREVIEW_INTERVAL` seconds old."""
        self.raise_if_cancelled()
        if total <= 0:
            return
        shown = None
        if preview is not None and self._manager._preview_due(self._entry):
            shown = preview()
        self._manager._advance(self._entry, int(min(max(done / total, 0.0), 1.0) * 99), shown)

    async def produce(self, work: Callable[[], Awaitable[Made]]) -> Made:
        """Run the engine's part of the job (an image, or a batch's images) so that a cancel can
        abandon it; its result is discarded if the task was cancelled meanwhile."""
        self.raise_if_cancelled()
        running = asyncio.ensure_future(work())
        self._entry.producing = running
        try:
            image = await running
        except asyncio.CancelledError:
            if self.cancelled and not _current_task_cancelling():
                raise GenerationCancelled("Task was cancelled") from None
            raise
        finally:
            self._entry.producing = None
        self.raise_if_cancelled()
        return image

    async def stored(self, images: tuple[StoredImage, ...]) -> None:
        """Record (or clear, with ``()``) the images written for this task before their history rows
        exist, so a restart after a crash removes them (:meth:`TaskManager.recover`)."""
        await self._manager._record_images(self._entry, images)


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@dataclass(kw_only=True, slots=True)
class ShutdownReport:
    """What a shutdown did: tasks cancelled in the queue, tasks running when it began, and of
    those the ones stopped because the grace period ran out."""

    queued: int
    running: int
    stopped: int = 0


class TaskScheduler(Protocol):
    """What the use cases ask of the tasks that run jobs, wherever those run.

    Two implement it: :class:`TaskManager` (this process runs its tasks: the desktop, SQLite) and
    ``SharedQueueTasks`` (``domain/shared_queue.py``: a queue in a PostgreSQL database that every
    server and worker of a team shares).
    """

    def hold(self, size: int) -> Hold: ...
    async def submit(self, job: Job, idempotency: IdempotencyKey | None = None) -> Task: ...
    async def run(self, job: Job, idempotency: IdempotencyKey | None = None) -> Generation: ...
    async def run_all(self, job: Job, idempotency: IdempotencyKey | None = None) -> list[Generation]: ...
    async def wait(self, task_id: str) -> Generation: ...
    async def wait_all(self, task_id: str) -> list[Generation]: ...
    async def get(self, task_id: str) -> Task: ...
    async def list_tasks(self, limit: int = 50) -> list[Task]: ...
    async def cancel(self, task_id: str, grace: float = 30.0) -> Task: ...
    async def recover(self) -> list[Task]: ...
    async def shutdown(self, grace: float = 10.0) -> ShutdownReport: ...


@dataclass(eq=False)
class _Entry:
    state: TaskState
    job: Job
    done: asyncio.Future[list[Generation]]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    runner: asyncio.Task[None] | None = None
    producing: asyncio.Future[Any] | None = None
    previewed_at: float = -PREVIEW_INTERVAL
    loop: asyncio.AbstractEventLoop | None = None
    recorded_at: float = 0.0


class TaskManager:
    """Runs jobs as tasks through a bounded worker pool and answers questions about them."""

    def __init__(
        self,
        *,
        tasks: TaskRepository,
        keys: IdempotencyStore,
        generations: GenerationRepository,
        storage: ImageStorage,
        events: TaskEvents,
        clock: Clock,
        max_running: int = 2,
        max_queued: int = 100,
        max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
        on_idle: Callable[[], None] | None = None,
        on_finished: Callable[[Task, Job, Generation | None], None] | None = None,
        remember: int = 500,
        record_progress_every: float | None = None,
    ) -> None:
        if max_running < 1 or max_queued < 0:
            raise ValueError("max_running must be at least 1 and max_queued at least 0")
        self.max_running = max_running
        self.max_queued = max_queued
        self.bytes = ByteBudget(max_queued_bytes)
        self._on_idle = on_idle
        self._on_finished = on_finished
        self._tasks = tasks
        self._keys = keys
        self._generations = generations
        self._storage = storage
        self._events = events
        self._clock = clock
        self._active: dict[str, _Entry] = {}
        self._waiting: deque[str] = deque()
        self._running: set[str] = set()
        self._recent: OrderedDict[str, Task] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()
        self._accepting = True
        self._record_every = record_progress_every
        """Seconds between two writes of a running task's progress to its row (``None``: only
        transitions are written). A worker of a shared queue sets it, so that every server's
        ``GET /api/tasks/{id}`` shows progress."""
        self._recording: set[asyncio.Task[None]] = set()

    def hold(self, size: int) -> Hold:
        """Hold ``size`` bytes of input data for work being prepared (``QueueFull`` over the budget);
        the hold then travels in its :class:`Job`."""
        return self.bytes.hold(size)

    # --- submitting and waiting --------------------------------------------------------------

    async def submit(self, job: Job, idempotency: IdempotencyKey | None = None) -> Task:
        """Queue ``job`` and return its task at once.

        Rules:
        - a repeated ``Idempotency-Key`` with the same fingerprint returns the first task;
          with another fingerprint it is ``Conflict``;
        - a task id already in use is ``Conflict``;
        - a full queue, input data past the byte budget, or a server shutting down is ``QueueFull``;
        - the job's hold is released unless the job is admitted (then when its task ends).
        """
        admitted = False
        try:
            task, admitted = await self._submit(job, idempotency)
            return task
        finally:
            if not admitted and job.hold is not None:
                job.hold.release()

    async def _submit(self, job: Job, idempotency: IdempotencyKey | None) -> tuple[Task, bool]:
        """The task and whether ``job`` became it (``False``: an earlier task of the same key)."""
        if not self._accepting:
            raise QueueFull("The server is shutting down and accepts no new tasks")
        if idempotency is not None:
            existing = await self._keys.claim(
                idempotency.key, idempotency.fingerprint, job.task_id, self._clock.now(), IDEMPOTENCY_TTL
            )
            if existing is not None:
                if existing.fingerprint != idempotency.fingerprint:
                    raise Conflict(
                        "This Idempotency-Key was used with a different request",
                        details={"field": "Idempotency-Key"},
                    )
                return await self.get(existing.task_id), False
        try:
            return await self._admit(job), True
        except BaseException:
            if idempotency is not None:
                await self._keys.release(idempotency.key)
            raise

    async def _admit(self, job: Job) -> Task:
        if job.task_id in self._active:
            raise Conflict(f"Task {job.task_id} already exists", details={"field": "taskId"})
        if len(self._running) >= self.max_running and len(self._waiting) >= self.max_queued:
            raise QueueFull(
                f"Too many generations are waiting ({len(self._waiting)} queued); try again shortly"
            )
        if job.hold is not None and job.hold.released:
            raise InvalidTransition("a job's hold was released before the job was submitted")
        loop = asyncio.get_running_loop()
        entry = _Entry(
            state=TaskState(job.task_id, job.operation, self._clock.now()),
            job=job,
            done=loop.create_future(),
            loop=loop,
        )
        self._active[job.task_id] = entry
        starts_now = len(self._running) < self.max_running and not self._waiting
        if starts_now:
            self._running.add(job.task_id)
        else:
            self._waiting.append(job.task_id)
            entry.state.queue_at(len(self._waiting))
        try:
            await self._tasks.create(entry.state.task)
        except BaseException:
            self._forget_admission(job.task_id)
            raise
        self._publish(entry)
        entry.runner = loop.create_task(self._run(entry, starts_now), name=f"task {job.task_id}")
        return entry.state.task

    async def adopt(self, job: Job, task: Task) -> list[Generation]:
        """Run a task that a shared queue handed to this worker and return its generations (or
        raise its error). ``task`` is its recorded snapshot, still ``queued``: the queue admitted
        it, so it starts at once (the queue's worker decides how many run here), and from then on
        it is recorded, published, cancelled and reported like a task submitted here."""
        if job.task_id in self._active:
            raise Conflict(f"Task {job.task_id} already exists", details={"field": "taskId"})
        if task.status is not TaskStatus.QUEUED:
            raise InvalidTransition(f"cannot run a {task.status.value} task")
        loop = asyncio.get_running_loop()
        entry = _Entry(state=TaskState.resume(task), job=job, done=loop.create_future(), loop=loop)
        with self._lock:
            entry.state.queue_at(None)
        self._active[job.task_id] = entry
        self._running.add(job.task_id)
        entry.runner = loop.create_task(self._run(entry, True), name=f"task {job.task_id}")
        return list(await asyncio.shield(entry.done))

    def _forget_admission(self, task_id: str) -> None:
        entry = self._active.pop(task_id, None)
        if entry is not None and entry.job.hold is not None:
            entry.job.hold.release()
        self._running.discard(task_id)
        if task_id in self._waiting:
            self._waiting.remove(task_id)
            self._publish_positions()

    async def run(self, job: Job, idempotency: IdempotencyKey | None = None) -> Generation:
        """Submit ``job`` and wait for its (first) generation."""
        return (await self.run_all(job, idempotency))[0]

    async def run_all(self, job: Job, idempotency: IdempotencyKey | None = None) -> list[Generation]:
        """Submit ``job`` and wait for all its generations, in seed order (the synchronous endpoints)."""
        task = await self.submit(job, idempotency)
        return await self.wait_all(task.id)

    async def wait(self, task_id: str) -> Generation:
        """The (first) generation of a task, waiting for it if it is still active; its error otherwise."""
        return (await self.wait_all(task_id))[0]

    async def wait_all(self, task_id: str) -> list[Generation]:
        """Every generation of a task in seed order, waiting for them if it is still active; its
        error otherwise (``NotFound`` once any of them has been deleted)."""
        entry = self._active.get(task_id)
        if entry is not None:
            return list(await asyncio.shield(entry.done))
        return await outcome_of(await self.get(task_id), self._generations)

    # --- questions ---------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        entry = self._active.get(task_id)
        if entry is not None:
            return entry.state.task
        if task_id in self._recent:
            return self._recent[task_id]
        task = await self._tasks.get(task_id)
        if task is None:
            raise NotFound("Task not found")
        return task

    async def list_tasks(self, limit: int = 50) -> list[Task]:
        """Active tasks (running first, then queued in order), then the most recent finished ones."""
        running = [self._active[i].state.task for i in self._active if i in self._running]
        waiting = [self._active[i].state.task for i in self._waiting if i in self._active]
        finished = await self._tasks.recent(limit)
        return running + waiting + [t for t in finished if t.id not in self._active]

    # --- cancelling --------------------------------------------------------------------------

    async def cancel(self, task_id: str, grace: float = 30.0) -> Task:
        """Cancel a queued or running task and return it once it has stopped.

        A queued task never starts; a running local generation stops at its next step; a
        provider call is abandoned and its result discarded. An image already being recorded is
        not undone: such a task completes, and the cancel answers ``Conflict``.
        """
        entry = self._active.get(task_id)
        if entry is None:
            task = await self.get(task_id)
            raise Conflict(f"Task {task_id} has already finished ({task.status.value})")
        entry.cancelled.set()
        if task_id in self._waiting:
            self._waiting.remove(task_id)
            entry.wake.set()
            self._publish_positions()
        elif entry.producing is not None and not entry.producing.done():
            entry.producing.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(entry.done), timeout=grace)
        except StudioError:
            pass
        except TimeoutError:
            return entry.state.task
        task = await self.get(task_id)
        if task.status is not TaskStatus.CANCELLED:
            raise Conflict(f"Task {task_id} finished ({task.status.value}) before it could be cancelled")
        return task

    # --- lifecycle ---------------------------------------------------------------------------

    async def recover(self) -> list[Task]:
        """At startup: tasks a dead process left queued or running become ``failed``
        (``INTERRUPTED``), and images they wrote but never recorded are removed (every image of
        a batch: its rows are written together or not at all)."""
        interrupted = await self._tasks.interrupt_orphans(self._clock.now())
        for task in interrupted:
            for image in task.images:
                if await self._generations.get_by_key(image.key) is None:
                    await self._storage.delete(image)
        return interrupted

    async def shutdown(self, grace: float = 10.0) -> ShutdownReport:
        """Stop accepting, cancel what is queued, give running tasks ``grace`` seconds, cancel the rest."""
        self._accepting = False
        report = ShutdownReport(queued=len(self._waiting), running=len(self._running))
        for task_id in list(self._waiting):
            entry = self._active.get(task_id)
            if entry is not None:
                entry.cancelled.set()
                entry.wake.set()
        self._waiting.clear()
        runners = [e.runner for e in self._active.values() if e.runner is not None]
        if runners:
            _, pending = await asyncio.wait(runners, timeout=grace)
            for entry in list(self._active.values()):
                entry.cancelled.set()
                if entry.producing is not None:
                    entry.producing.cancel()
            if pending:
                report.stopped = len(pending)
                await asyncio.wait(pending, timeout=grace)
        return report

    @property
    def counts(self) -> dict[str, int]:
        return {"running": len(self._running), "queued": len(self._waiting)}

    # --- the worker --------------------------------------------------------------------------

    async def _run(self, entry: _Entry, started: bool) -> None:
        task_id = entry.state.task.id
        try:
            if not started:
                await entry.wake.wait()
            if entry.cancelled.is_set():
                raise GenerationCancelled("Task was cancelled")
            with self._lock:
                entry.state.start(self._clock.now())
            await self._persist(entry)
            self._publish(entry)
            generations = await entry.job.execute(TaskControl(self, entry))
        except (GenerationCancelled, asyncio.CancelledError):
            with self._lock:
                entry.state.cancel(self._clock.now())
            await self._finish(entry, GenerationCancelled("Task was cancelled"))
        except StudioError as error:
            with self._lock:
                entry.state.fail(error.code, error.message, self._clock.now())
            await self._finish(entry, error)
        except Exception as error:
            with self._lock:
                entry.state.fail(
                    "INTERNAL_ERROR", f"Generation failed: {type(error).__name__}", self._clock.now()
                )
            await self._finish(entry, error)
        else:
            ids = tuple(generation.id for generation in generations if generation.id is not None)
            assert generations
            assert len(ids) == len(generations)
            with self._lock:
                entry.state.complete(ids, self._clock.now())
            await self._finish(entry, generations)
        finally:
            self._release(task_id)

    async def _finish(self, entry: _Entry, outcome: list[Generation] | BaseException) -> None:
        try:
            await self._persist(entry)
        except StudioError:
            pass  # the outcome stands; an unrecorded end is marked INTERRUPTED at the next start
        finally:
            self._publish(entry)
            self._remember_finished(entry.state.task)
            self._active.pop(entry.state.task.id, None)
            if entry.job.hold is not None:
                entry.job.hold.release()
            if not entry.done.done():
                if isinstance(outcome, BaseException):
                    entry.done.set_exception(outcome)
                    entry.done.exception()  # a failure nobody waits for is not an "unretrieved" error
                else:
                    entry.done.set_result(outcome)
            if self._on_finished is not None:
                generation = outcome[0] if isinstance(outcome, list) else None
                self._on_finished(entry.state.task, entry.job, generation)

    def _release(self, task_id: str) -> None:
        self._running.discard(task_id)
        if not self._active and self._on_idle is not None:
            self._on_idle()  # the last task has ended: nothing holds its buffers any more
        moved = False
        while self._waiting and len(self._running) < self.max_running:
            next_id = self._waiting.popleft()
            entry = self._active.get(next_id)
            if entry is None:
                continue
            self._running.add(next_id)
            entry.wake.set()
            moved = True
        if moved:
            self._publish_positions()

    def _remember_finished(self, task: Task) -> None:
        self._recent[task.id] = task
        self._recent.move_to_end(task.id)
        while len(self._recent) > self._remember:
            self._recent.popitem(last=False)

    async def _persist(self, entry: _Entry) -> None:
        await self._tasks.update(entry.state.task)

    async def _record_images(self, entry: _Entry, images: tuple[StoredImage, ...]) -> None:
        with self._lock:
            entry.state.stored(images)
        await self._persist(entry)

    def _preview_due(self, entry: _Entry) -> bool:
        now = time.monotonic()
        if now - entry.previewed_at < PREVIEW_INTERVAL or not self._events.wants_previews(
            entry.state.task.id
        ):
            return False
        entry.previewed_at = now
        return True

    def _advance(self, entry: _Entry, progress: int, preview: bytes | None = None) -> None:
        with self._lock:
            if entry.state.status is not TaskStatus.GENERATING:
                return
            moved = entry.state.advance(progress)
            if not moved and preview is None:
                return
        self._publish(entry, preview)
        if moved and self._record_every is not None and entry.loop is not None:
            now = time.monotonic()
            if now - entry.recorded_at >= self._record_every:
                entry.recorded_at = now
                entry.loop.call_soon_threadsafe(self._record_progress, entry)

    def _record_progress(self, entry: _Entry) -> None:
        """Write a running task's progress to its row (on the loop; a failed write waits for the next)."""

        async def record() -> None:
            with contextlib.suppress(StudioError):
                await self._persist(entry)

        writing = asyncio.ensure_future(record())
        self._recording.add(writing)
        writing.add_done_callback(self._recording.discard)

    def _publish_positions(self) -> None:
        for index, task_id in enumerate(self._waiting, start=1):
            entry = self._active.get(task_id)
            if entry is not None and entry.state.task.position != index:
                with self._lock:
                    entry.state.queue_at(index)
                self._publish(entry)

    def _publish(self, entry: _Entry, preview: bytes | None = None) -> None:
        task = entry.state.task
        self._events.publish(
            TaskEvent(
                task_id=task.id,
                status=task.status,
                progress=task.progress,
                generation_id=task.generation_id,
                generation_ids=task.generation_ids,
                error=task.error_message,
                code=task.error_code,
                position=task.position,
                preview=preview,
            )
        )
