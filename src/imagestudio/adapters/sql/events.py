"""``PostgresTaskEvents``: one task event stream for every server sharing a PostgreSQL database.

Every event is a row of ``task_events``; its ``id`` (an identity column) is the ``seq`` that every
server's WebSocket sends, replays ``?after=`` from and reports in ``replay-truncated``. The pieces,
all on the event loop the stream was bound to:

- **writer**: :meth:`~PostgresTaskEvents.publish` only appends to an in-memory queue (any thread,
  never blocking); one writer task inserts what has queued up in one transaction per batch, which
  also sends ``NOTIFY imagestudio_task_events, '<highest id>'``. The transaction first takes a
  cluster-wide advisory lock, so ids commit in increasing order: a reader that has seen id ``n``
  can never later find a row below ``n``. While the database is unavailable the writer retries
  (events wait in memory, at most ``max_pending``; past that the oldest progress events go first);
- **listener**: one connection per process that ``LISTEN``\\ s (psycopg's async connection, pinged
  every ``ping`` seconds); a notification only wakes the reader. A lost connection is opened again
  (with backoff), and meanwhile, and after every reconnect, the reader polls the table;
- **reader**: reads the rows after the last one it delivered, in id order, and fans them out to
  this process's subscriptions and listeners. Every event a subscriber sees went through the table
  and this one reader, so all of them arrive in ``seq`` order, whichever server published them;
- **pruner**: keeps the newest ``keep`` events and none older than ``max_age`` (the newest row is
  always kept, so ``seq`` can tell what was pruned), every ``prune_every`` seconds.

A subscription replays ``after=<seq>`` from the table, in pages as it is read (so a client asking
for everything does not make the server hold everything), then goes on with live events; one to a
task without ``after`` starts with that task's latest event (its terminal one if it has one), so a
late subscriber learns how it ended. At most one terminal event per task per subscription.

**Previews are local.** An event's ``preview`` (a JPEG of the work so far) is never written to the
table: the row holds the event without it, and the publishing process hands the image only to its
own subscriptions that asked for previews. A socket on another server sees the same ``generating``
events without images.

With SQLite the stream stays the in-memory hub (``adapters/progress.py``); the table exists there
but nothing writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from itertools import count, islice
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    case,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection, make_url
from sqlmodel import Session, SQLModel

from imagestudio.adapters.sql.database import SqlDatabase
from imagestudio.domain.errors import DatabaseUnavailable, StudioError
from imagestudio.domain.model import TaskEvent, TaskStatus
from imagestudio.log import get_logger

if TYPE_CHECKING:
    import psycopg

__all__ = ["CHANNEL", "TASK_EVENTS", "WRITE_LOCK", "PostgresSubscription", "PostgresTaskEvents"]
STOP_TIMEOUT = 5.0
"""Seconds :meth:`PostgresTaskEvents.aclose` waits for its tasks once cancelled."""

log = get_logger(__name__)

CHANNEL: Final = "imagestudio_task_events"
"""The ``NOTIFY`` channel; a notification's payload is the highest id its transaction wrote."""
WRITE_LOCK: Final = 0x1A6E_57D1
"""The advisory lock every event write holds until it commits: ids commit in increasing order."""
PRUNE_LOCK: Final = 0x1A6E_57D2
"""The advisory lock of one prune at a time (the others skip theirs)."""
APPLICATION_NAME: Final = "imagestudio-events"
"""The ``application_name`` of each stream's listener connection (``-<pid>-<n>`` follows)."""
_STREAMS = count(1)

_METADATA: MetaData = SQLModel.metadata
TASK_EVENTS: Final = Table(
    "task_events",
    _METADATA,
    Column(
        "id",
        BigInteger().with_variant(Integer(), "sqlite"),
        Identity(always=False),
        primary_key=True,
    ),
    Column("task_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Integer(), nullable=False),
    Column("position", Integer(), nullable=True),
    Column("generation_id", BigInteger(), nullable=True),
    Column("generation_ids", String(), nullable=True),
    Column("error", String(), nullable=True),
    Column("code", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_task_events_task_id", "task_id", "id"),
    Index("ix_task_events_created_at", "created_at"),
)
"""One row per task event (migration ``0006``); ``id`` is the cluster's ``seq``."""

_TERMINAL = tuple(status.value for status in TaskStatus if status.is_terminal)
_COLUMNS = (
    TASK_EVENTS.c.id,
    TASK_EVENTS.c.task_id,
    TASK_EVENTS.c.status,
    TASK_EVENTS.c.progress,
    TASK_EVENTS.c.position,
    TASK_EVENTS.c.generation_id,
    TASK_EVENTS.c.generation_ids,
    TASK_EVENTS.c.error,
    TASK_EVENTS.c.code,
)


def _event(row: Sequence[Any]) -> TaskEvent:
    seq, task_id, status, progress, position, generation_id, generation_ids, error, code = row
    return TaskEvent(
        task_id=task_id,
        status=TaskStatus(status),
        progress=progress,
        position=position,
        generation_id=generation_id,
        generation_ids=tuple(int(i) for i in generation_ids.split(",")) if generation_ids else (),
        error=error,
        code=code,
        seq=seq,
    )


@dataclass(frozen=True, slots=True)
class _Pending:
    number: int
    event: TaskEvent
    at: dt.datetime


class PostgresSubscription:
    """One subscriber's events: the replay from the table first, then live ones; ``close()`` it."""

    def __init__(
        self, stream: PostgresTaskEvents, task_id: str | None, after: int | None, previews: bool
    ) -> None:
        self.task_id = task_id
        self.previews = previews
        self.truncated_before: int | None = None
        """Set (once :meth:`ready` returned) when ``after`` is older than the oldest event kept."""
        self._stream = stream
        self._after = after
        self.written_before: int | asyncio.Future[int] = 0
        """The highest id of the events this process published before the subscription began (or
        the writer's promise of it, while some of them are still on their way to the table)."""
        self.mark: int | None = None
        """Events up to this id come from the table, later ones live (set by the stream)."""
        self._cursor: int | None = None  # where the replay reads on; None: nothing left to replay
        self._tail: TaskEvent | None = None  # the task's latest event, handed out after the replay
        self._replaying = True  # live events wait in _held until the replay is out
        self._held: list[TaskEvent] = []
        self._out: deque[TaskEvent] = deque()
        self._arrived = asyncio.Event()
        self._primed = False
        self._priming = asyncio.Lock()
        self._ended: set[str] = set()
        self._last_seq = 0

    def wants(self, event: TaskEvent) -> bool:
        return self.task_id is None or self.task_id == event.task_id

    def deliver(self, event: TaskEvent) -> None:
        """A live event (the stream calls this on the loop, in ``seq`` order)."""
        if self.mark is not None and event.seq <= self.mark:
            return  # read from the table (the mark moved past it: see ``written_before``)
        if self._replaying:
            self._held.append(event)
        else:
            self._accept(event)

    def _accept(self, event: TaskEvent) -> None:
        if event.task_id in self._ended or event.seq <= self._last_seq:
            return
        if event.status.is_terminal:
            self._ended.add(event.task_id)
        self._last_seq = max(self._last_seq, event.seq)
        self._out.append(event)
        self._arrived.set()

    async def ready(self) -> None:
        """Read where the replay starts (and the task's latest event) from the table, once."""
        if self._primed:
            return
        async with self._priming:
            if self._primed:
                return
            await self._stream._started()
            if self._after is None and self.task_id is None:
                self._finish_replay()
            else:
                # what this process published before is read from the table too (a late
                # subscriber on the server that ran the task learns how it ended, as it answered)
                written = self.written_before
                self.mark = max(self._marked(), written if isinstance(written, int) else await written)
                oldest, tail = await self._stream._retrying(self._prime_query)
                if self._after is not None:
                    if self._after < oldest - 1:
                        self.truncated_before = oldest
                    self._cursor = self._after
                if tail is not None and (self._after is None or tail.status.is_terminal):
                    self._tail = tail
                if self._cursor is None or self._cursor >= self._marked():
                    self._finish_replay()
            self._primed = True

    def _marked(self) -> int:
        assert self.mark is not None, "the stream sets the mark before it starts"
        return self.mark

    def _prime_query(self, session: Session) -> tuple[int, TaskEvent | None]:
        # one snapshot for the oldest row and the latest of the task (a prune may run meanwhile)
        session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        mark = self._marked()
        oldest = mark + 1
        if self._after is not None:
            found = session.execute(select(func.min(TASK_EVENTS.c.id))).scalar()
            oldest = mark + 1 if found is None else min(int(found), mark + 1)
        tail = None
        if self.task_id is not None:
            terminal_first = case((TASK_EVENTS.c.status.in_(_TERMINAL), 1), else_=0).desc()
            row = session.execute(
                select(*_COLUMNS)
                .where(TASK_EVENTS.c.task_id == self.task_id, TASK_EVENTS.c.id <= mark)
                .order_by(terminal_first, TASK_EVENTS.c.id.desc())
                .limit(1)
            ).first()
            tail = None if row is None else _event(row)
        return oldest, tail

    def _finish_replay(self) -> None:
        self._replaying = False
        self._cursor = None
        if self._tail is not None:
            self._accept(self._tail)
            self._tail = None
        held, self._held, mark = self._held, [], self._marked()
        for event in held:
            if event.seq > mark:  # the ones up to the mark came from the table
                self._accept(event)

    async def _replay_page(self) -> None:
        assert self._cursor is not None
        cursor, mark, limit = self._cursor, self._marked(), self._stream.page_size
        page = await self._stream._retrying(
            functools.partial(self._stream._page, after=cursor, upto=mark, task_id=self.task_id, limit=limit)
        )
        for event in page:
            self._accept(event)
            self._cursor = event.seq
        if len(page) < limit or self._cursor >= mark:
            self._finish_replay()

    async def next(self) -> TaskEvent:
        """Wait for the next event."""
        await self.ready()
        while True:
            if self._out:
                return self._out.popleft()
            if self._replaying:
                await self._replay_page()
                continue
            self._arrived.clear()
            await self._arrived.wait()

    async def __aiter__(self) -> AsyncIterator[TaskEvent]:
        while True:
            yield await self.next()

    def close(self) -> None:
        self._stream._subscribers.discard(self)
        self._stream._preview_watchers.discard(self)


class PostgresTaskEvents:
    """The ``TaskEventStream`` of a PostgreSQL database, shared by every process on it.

    Call :meth:`bind` on the event loop that serves subscribers, and ``await`` :meth:`aclose`
    when done: it writes what is still queued (for up to ``flush_timeout`` seconds) and stops.
    """

    def __init__(
        self,
        db: SqlDatabase,
        *,
        keep: int = 100_000,
        max_age: timedelta = timedelta(days=1),
        prune_every: float = 60.0,
        batch_size: int = 500,
        page_size: int = 500,
        max_pending: int = 10_000,
        poll: float = 0.5,
        safety_poll: float = 5.0,
        ping: float = 10.0,
        flush_timeout: float = 5.0,
    ) -> None:
        if db.is_sqlite:
            raise ValueError("PostgresTaskEvents needs a PostgreSQL database")
        if keep < 1:
            raise ValueError("keep must be at least 1 (the newest event is always kept)")
        self._db = db
        self.keep = keep
        self.max_age = max_age
        self.prune_every = prune_every
        self.batch_size = batch_size
        self.page_size = page_size
        self.max_pending = max_pending
        self.poll = poll
        self.safety_poll = safety_poll
        self.ping = ping
        self.flush_timeout = flush_timeout
        self.application_name = f"{APPLICATION_NAME}-{os.getpid()}-{next(_STREAMS)}"
        self.listener_connections = 0
        """How many times the listener connection was opened (1 plus its reconnects)."""
        self._subscribers: set[PostgresSubscription] = set()
        self._preview_watchers: set[PostgresSubscription] = set()
        self._listeners: list[Callable[[TaskEvent], None]] = []
        self._lock = threading.Lock()
        self._pending: deque[_Pending] = deque()
        self._numbers = count(1)
        self._published = 0  # the number of the last event published
        self._written_number = 0  # ... and of the last one written (or given up on)
        self._written_seq = 0  # the highest id this process wrote
        self._dropped = 0
        self._previews: dict[int, bytes] = {}  # written by the writer's thread before its commit
        self._delivered = 0
        self._listening = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._initialized: asyncio.Event | None = None
        self._dirty: asyncio.Event | None = None
        self._wake_writer: asyncio.Event | None = None
        self._writing: asyncio.Lock | None = None
        self._waiters: list[tuple[int, asyncio.Future[int]]] = []  # (number, its highest id)

    # --- lifecycle --------------------------------------------------------------------------

    def bind(self) -> None:
        """Start the writer, listener, reader and pruner on the running loop (again on a new one)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._tasks:
            return
        self._loop = loop
        self._initialized = asyncio.Event()
        self._dirty = asyncio.Event()
        self._wake_writer = asyncio.Event()
        self._writing = asyncio.Lock()
        self._tasks = [
            loop.create_task(self._write_loop(), name="task events: writer"),
            loop.create_task(self._read_loop(), name="task events: reader"),
            loop.create_task(self._listen_loop(), name="task events: listener"),
            loop.create_task(self._prune_loop(), name="task events: pruner"),
        ]
        self._wake_writer.set()  # anything published before the loop was known

    async def aclose(self) -> None:
        """Write what is still queued (bounded by ``flush_timeout``), then stop every task."""
        if self._tasks:
            try:
                await asyncio.wait_for(self.flush(), self.flush_timeout)
            except (TimeoutError, StudioError):
                with self._lock:
                    left = len(self._pending)
                if left:
                    log.warning("task events not written at shutdown", count=left)
        tasks, self._tasks = self._tasks, []
        waiting, self._waiters = self._waiters, []
        for _, waiter in waiting:
            if not waiter.done():
                waiter.set_result(self._written_seq)
        for task in tasks:
            task.cancel()
        if tasks:
            # bounded: a task stuck in a driver call that ignores cancellation (a connection the
            # server cut) must not hold up a shutdown
            _, stuck = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            if stuck:
                log.warning("task event tasks did not stop", tasks=sorted(t.get_name() for t in stuck))

    async def _started(self) -> None:
        if self._initialized is None:
            raise RuntimeError("PostgresTaskEvents.bind() must be called on the loop first")
        await self._initialized.wait()

    # --- TaskEvents port --------------------------------------------------------------------

    def publish(self, event: TaskEvent) -> None:
        """Queue ``event`` for the writer (any thread; never blocks)."""
        with self._lock:
            self._published = next(self._numbers)
            self._pending.append(_Pending(self._published, event, dt.datetime.now(dt.UTC)))
            if len(self._pending) > self.max_pending:
                self._drop_one()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._kick)

    def _drop_one(self) -> None:
        """Forget the oldest progress event (a terminal one only if nothing else is queued)."""
        victim = next((p for p in self._pending if not p.event.status.is_terminal), self._pending[0])
        self._pending.remove(victim)
        self._dropped += 1
        if self._dropped == 1:
            log.warning("task events dropped: the database is unavailable", max_pending=self.max_pending)

    def _kick(self) -> None:
        if self._wake_writer is not None:
            self._wake_writer.set()

    def wants_previews(self, task_id: str) -> bool:
        return any(watcher.task_id in (None, task_id) for watcher in list(self._preview_watchers))

    # --- TaskEventStream port ---------------------------------------------------------------

    def subscribe(
        self, task_id: str | None = None, after: int | None = None, *, previews: bool = False
    ) -> PostgresSubscription:
        """Start receiving events of ``task_id`` (or of every task); call on the bound loop."""
        subscription = PostgresSubscription(self, task_id, after, previews)
        with self._lock:
            published = self._published
        if self._written_number >= published:
            subscription.written_before = self._written_seq
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append((published, waiter))
            subscription.written_before = waiter
        if self._initialized is not None and self._initialized.is_set():
            subscription.mark = self._delivered
        self._subscribers.add(subscription)
        if previews:
            self._preview_watchers.add(subscription)
        return subscription

    def add_listener(self, listener: Callable[[TaskEvent], None]) -> Callable[[], None]:
        """Call ``listener`` (on the loop) for every event of the cluster; returns its remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # --- writer -----------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        assert self._wake_writer is not None
        assert self._initialized is not None
        # not before the reader knows where the table ends: this process's first events come after
        await self._initialized.wait()
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every queued event (retrying while the database is unavailable)."""
        assert self._writing is not None
        assert self._dirty is not None
        delay = 0.05
        async with self._writing:
            while True:
                with self._lock:
                    batch = list(islice(self._pending, self.batch_size))
                if not batch:
                    return
                try:
                    ids = await self._db.run(functools.partial(self._insert, batch=batch))
                except DatabaseUnavailable as error:
                    log.warning("task events wait for the database", error=error.message, queued=len(batch))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                except StudioError as error:  # a batch the database refuses is dropped, not retried
                    log.error("task events could not be written", error=error.message, count=len(batch))
                    ids = []
                delay = 0.05
                last = batch[-1].number
                with self._lock:
                    while self._pending and self._pending[0].number <= last:
                        self._pending.popleft()
                    if self._dropped and not self._pending:
                        log.warning("task events written again", dropped=self._dropped)
                        self._dropped = 0
                self._wrote(batch, ids)
                self._dirty.set()  # the reader delivers them without waiting for the notification

    def _wrote(self, batch: list[_Pending], ids: list[int]) -> None:
        """Note ``batch`` as written (with ``ids``; none if it was given up on) and tell the
        subscriptions waiting for it the highest id of what was published before them."""
        before = self._written_seq
        waiting, self._waiters = self._waiters, []
        for number, waiter in waiting:
            if number > batch[-1].number:
                self._waiters.append((number, waiter))
            elif not waiter.done():
                upto = [seq for item, seq in zip(batch, ids, strict=False) if item.number <= number]
                waiter.set_result(max([before, *upto]))
        self._written_number = batch[-1].number
        self._written_seq = max([before, *ids])

    def _insert(self, session: Session, *, batch: list[_Pending]) -> list[int]:
        connection = session.connection()
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK})
        rows = [
            {
                "task_id": item.event.task_id,
                "status": item.event.status.value,
                "progress": item.event.progress,
                "position": item.event.position,
                "generation_id": item.event.generation_id,
                "generation_ids": ",".join(map(str, item.event.generation_ids)) or None,
                "error": item.event.error,
                "code": item.event.code,
                "created_at": item.at,
            }
            for item in batch
        ]
        statement = insert(TASK_EVENTS).returning(TASK_EVENTS.c.id, sort_by_parameter_order=True)
        ids = [int(seq) for seq in connection.execute(statement, rows).scalars()]
        for item, seq in zip(batch, ids, strict=True):
            if item.event.preview is not None:  # before the commit: no reader can see the row yet
                self._previews[seq] = item.event.preview
        connection.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": str(ids[-1])}
        )
        return ids

    # --- reader -----------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._initialized is not None
        assert self._dirty is not None
        newest = await self._retrying(
            lambda session: session.execute(select(func.max(TASK_EVENTS.c.id))).scalar()
        )
        self._delivered = int(newest or 0)
        for subscription in self._subscribers:
            if subscription.mark is None:
                subscription.mark = self._delivered
        self._initialized.set()
        while True:
            wait = self.safety_poll if self._listening else self.poll
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), wait)
            self._dirty.clear()
            after, limit = self._delivered, self.page_size
            try:
                page = await self._db.read(
                    functools.partial(self._page, after=after, upto=None, task_id=None, limit=limit)
                )
            except StudioError as error:
                log.warning("task events cannot be read", error=error.message)
                await asyncio.sleep(self.poll)
                self._dirty.set()
                continue
            for event in page:
                self._dispatch(event)
            if len(page) == limit:
                self._dirty.set()
            if self._previews:
                for seq in [seq for seq in list(self._previews) if seq <= self._delivered]:
                    self._previews.pop(seq, None)

    @staticmethod
    def _page(
        connection: Connection | Session, *, after: int, upto: int | None, task_id: str | None, limit: int
    ) -> list[TaskEvent]:
        query = select(*_COLUMNS).where(TASK_EVENTS.c.id > after)
        if upto is not None:
            query = query.where(TASK_EVENTS.c.id <= upto)
        if task_id is not None:
            query = query.where(TASK_EVENTS.c.task_id == task_id)
        rows = connection.execute(query.order_by(TASK_EVENTS.c.id).limit(limit))
        return [_event(row) for row in rows]

    def _dispatch(self, event: TaskEvent) -> None:
        self._delivered = event.seq
        preview = self._previews.pop(event.seq, None)
        live = event if preview is None else replace(event, preview=preview)
        for subscription in list(self._subscribers):
            if subscription.wants(event):
                subscription.deliver(live if subscription.previews else event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception as error:  # one listener's bug must not stop the stream for everyone
                log.error("task event listener failed", error=repr(error)[:200])

    async def _retrying(self, work: Callable[[Session], Any]) -> Any:
        """``work`` in a transaction, again and again while the database is unavailable."""
        delay = 0.05
        while True:
            try:
                return await self._db.run(work)
            except DatabaseUnavailable as error:
                log.warning("task events wait for the database", error=error.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # --- listener ---------------------------------------------------------------------------

    def _conninfo(self) -> str:
        url = make_url(self._db.url).set(drivername="postgresql")
        if "connect_timeout" not in url.query:
            url = url.update_query_dict({"connect_timeout": "10"})
        return url.render_as_string(hide_password=False)

    async def _listen_loop(self) -> None:
        import psycopg

        assert self._dirty is not None
        delay = 0.1
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(
                    self._conninfo(), autocommit=True, application_name=self.application_name
                )
                async with connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self.listener_connections += 1
                    self._listening = True
                    self._dirty.set()  # what was committed while nobody listened
                    if self.listener_connections > 1:
                        log.info("task event listener connected again")
                    delay = 0.1
                    await self._listen(connection)
            except (psycopg.Error, OSError, TimeoutError) as error:
                reason = (
                    str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
                )
                log.warning("task event listener lost its connection", error=reason)
            finally:
                if self._listening:
                    self._listening = False
                    self._dirty.set()  # the reader polls until the listener is back
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _listen(self, connection: psycopg.AsyncConnection[Any]) -> None:
        assert self._dirty is not None
        while True:
            async for notification in connection.notifies(timeout=self.ping):
                try:
                    newer = int(notification.payload) > self._delivered
                except ValueError:
                    newer = True
                if newer:
                    self._dirty.set()
            await asyncio.wait_for(connection.execute("SELECT 1"), self.ping)

    # --- pruner -----------------------------------------------------------------------------

    async def _prune_loop(self) -> None:
        while True:
            try:
                await self.prune()
            except StudioError as error:
                log.warning("task events could not be pruned", error=error.message)
            await asyncio.sleep(self.prune_every)

    async def prune(self) -> int:
        """Delete the events past ``keep`` and those older than ``max_age`` (never the newest);
        how many went. Skipped (0) while another process prunes."""
        cutoff = dt.datetime.now(dt.UTC) - self.max_age

        def work(session: Session) -> int:
            if not session.execute(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": PRUNE_LOCK}
            ).scalar():
                return 0
            newest = session.execute(select(func.max(TASK_EVENTS.c.id))).scalar()
            if newest is None:
                return 0
            by_count = session.execute(delete(TASK_EVENTS).where(TASK_EVENTS.c.id <= int(newest) - self.keep))
            by_age = session.execute(
                delete(TASK_EVENTS).where(TASK_EVENTS.c.created_at < cutoff, TASK_EVENTS.c.id < int(newest))
            )
            return int(by_count.rowcount or 0) + int(by_age.rowcount or 0)  # type: ignore[attr-defined]

        pruned: int = await self._db.run(work)
        return pruned
