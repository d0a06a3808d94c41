"""The ``TaskEventStream`` port, held to one contract by the in-memory hub (SQLite, one process) and
by the PostgreSQL stream every server on one database shares.

Both: events in ``seq`` order whichever thread published them, replay ``after=<seq>``, a late
subscriber to a task learns its latest event, one terminal event per task per subscription,
``truncated_before`` when ``after`` is older than what is kept, listeners, and previews only for
the subscriptions that asked (never replayed). PostgreSQL only: a second stream on the same
database (another process's) sees the first one's events in the same order, previews stay with
the process that made them, a listener connection killed by the server is opened again without
losing an event, and so are all the connections at once (as a database restart would).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import psycopg
import pytest

from imagestudio.adapters.progress import InMemoryTaskEvents
from imagestudio.adapters.sql import PostgresTaskEvents, SqlDatabase
from imagestudio.domain.model import TaskEvent, TaskStatus
from imagestudio.domain.ports import TaskEventStream, TaskSubscription
from tests.databases import PostgresServer, sql_database

pytestmark = pytest.mark.anyio

KINDS = ("memory", pytest.param("postgresql", marks=pytest.mark.postgres))

Opener = Callable[..., AbstractAsyncContextManager[TaskEventStream]]


def queued(task: str, position: int = 1) -> TaskEvent:
    return TaskEvent(task_id=task, status=TaskStatus.QUEUED, progress=0, position=position)


def generating(task: str, progress: int, preview: bytes | None = None) -> TaskEvent:
    return TaskEvent(task_id=task, status=TaskStatus.GENERATING, progress=progress, preview=preview)


def completed(task: str, generation_id: int = 7) -> TaskEvent:
    return TaskEvent(task_id=task, status=TaskStatus.COMPLETED, progress=100, generation_id=generation_id)


def failed(task: str) -> TaskEvent:
    return TaskEvent(task_id=task, status=TaskStatus.FAILED, progress=100, error="the disk is full", code="X")


async def take(subscription: TaskSubscription, count: int) -> list[TaskEvent]:
    with anyio.fail_after(10):
        return [await subscription.next() for _ in range(count)]


async def nothing_more(subscription: TaskSubscription, wait: float = 0.3) -> bool:
    with anyio.move_on_after(wait):
        await subscription.next()
        return False
    return True


def shape(event: TaskEvent) -> tuple[Any, ...]:
    return (event.task_id, event.status, event.progress, event.position, event.generation_id, event.error)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabase | None]:
    if kind == "memory":
        yield None
        return
    with sql_database("postgresql", request, tmp_path) as db:
        yield db


@pytest.fixture
def open_stream(database: SqlDatabase | None) -> Opener:
    """``async with open_stream(keep=N) as stream``: a bound stream keeping about ``N`` events."""

    @asynccontextmanager
    async def opened(keep: int = 10_000) -> AsyncIterator[TaskEventStream]:
        if database is None:
            memory = InMemoryTaskEvents(replay=keep)
            memory.bind()
            yield memory
            return
        shared = PostgresTaskEvents(database, keep=keep, poll=0.05)
        shared.bind()
        try:
            yield shared
        finally:
            await shared.aclose()

    return opened


async def prune(stream: TaskEventStream) -> None:
    """Apply the retention now (the in-memory buffer is bounded as it goes)."""
    if isinstance(stream, PostgresTaskEvents):
        await stream.prune()


async def test_events_arrive_once_in_publish_order_with_increasing_seqs(open_stream: Opener) -> None:
    async with open_stream() as stream:
        everything = stream.subscribe()
        one = stream.subscribe("a")
        published = [queued("a"), generating("a", 10), queued("b"), generating("a", 50)]
        for event in published[:2]:
            stream.publish(event)
        # from another thread too (the engine's): still in the order of the calls
        worker = threading.Thread(target=lambda: [stream.publish(e) for e in published[2:]])
        worker.start()
        worker.join()
        stream.publish(completed("a"))
        seen = await take(everything, 5)
        mine = await take(one, 4)
        everything.close()
        one.close()
    assert [shape(e) for e in seen] == [shape(e) for e in [*published, completed("a")]]
    seqs = [e.seq for e in seen]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 5
    assert seqs[0] >= 1
    assert [e.seq for e in mine] == [e.seq for e in seen if e.task_id == "a"]


async def test_after_replays_what_came_later_then_goes_on_live(open_stream: Opener) -> None:
    async with open_stream() as stream:
        first = stream.subscribe()
        for event in (queued("r"), generating("r", 20), generating("r", 60), queued("s")):
            stream.publish(event)
        earlier = await take(first, 4)
        again = stream.subscribe(after=earlier[0].seq)
        await again.ready()
        assert again.truncated_before is None
        stream.publish(completed("r"))
        replayed = await take(again, 4)
        of_r = stream.subscribe("r", after=earlier[1].seq)
        replayed_r = await take(of_r, 2)
        first.close()
        again.close()
        of_r.close()
    assert [e.seq for e in replayed[:3]] == [e.seq for e in earlier[1:]]
    assert replayed[3].status is TaskStatus.COMPLETED
    assert replayed[3].seq > earlier[-1].seq
    assert [(e.progress, e.status) for e in replayed_r] == [
        (60, TaskStatus.GENERATING),
        (100, TaskStatus.COMPLETED),
    ]


async def test_a_late_subscriber_starts_with_the_latest_event_of_its_task(open_stream: Opener) -> None:
    async with open_stream() as stream:
        watch = stream.subscribe()
        for event in (
            queued("done"),
            generating("done", 50),
            completed("done", 42),
            generating("running", 30),
        ):
            stream.publish(event)
        await take(watch, 4)
        late = stream.subscribe("done")
        [latest] = await take(late, 1)
        assert await nothing_more(late)
        running = stream.subscribe("running")
        [now] = await take(running, 1)
        stream.publish(completed("running"))
        [end] = await take(running, 1)
        # with after= later than the task's end, the terminal event still comes (once)
        ended = stream.subscribe("done", after=now.seq)
        [terminal] = await take(ended, 1)
        assert await nothing_more(ended)
        for subscription in (watch, late, running, ended):
            subscription.close()
    assert (latest.status, latest.generation_id) == (TaskStatus.COMPLETED, 42)
    assert (now.status, now.progress) == (TaskStatus.GENERATING, 30)
    assert end.status is TaskStatus.COMPLETED
    assert end.seq > now.seq
    assert terminal.seq == latest.seq


async def test_a_subscriber_right_after_the_end_of_a_task_starts_with_its_end(open_stream: Opener) -> None:
    """As a synchronous request answers when its task has ended, a socket opened then for that
    task starts with the terminal event (on PostgreSQL: not with a progress event already in the
    table while the terminal one is still on its way there)."""
    async with open_stream() as stream:
        watch = stream.subscribe()
        stream.publish(generating("sync", 50))
        await take(watch, 1)
        stream.publish(completed("sync", 9))
        for _ in range(3):  # the in-memory hub delivers on the loop's next turn
            await anyio.lowlevel.checkpoint()
        late = stream.subscribe("sync")
        [first] = await take(late, 1)
        assert await nothing_more(late)
        watch.close()
        late.close()
    assert (first.status, first.generation_id) == (TaskStatus.COMPLETED, 9)


async def test_a_subscription_gets_one_terminal_event_per_task_and_nothing_after(open_stream: Opener) -> None:
    async with open_stream() as stream:
        everything = stream.subscribe()
        one = stream.subscribe("t")
        for event in (
            generating("t", 10),
            failed("t"),
            completed("t"),
            generating("t", 90),
            queued("marker"),
        ):
            stream.publish(event)
        seen = await take(everything, 3)
        mine = await take(one, 2)
        assert await nothing_more(one)
        assert await nothing_more(everything)
        replay = stream.subscribe(after=0)
        replayed = await take(replay, 3)
        assert await nothing_more(replay)
        for subscription in (everything, one, replay):
            subscription.close()
    assert [(e.task_id, e.status) for e in seen] == [
        ("t", TaskStatus.GENERATING),
        ("t", TaskStatus.FAILED),
        ("marker", TaskStatus.QUEUED),
    ]
    assert seen[1].error == "the disk is full"
    assert seen[1].code == "X"
    assert [e.status for e in mine] == [TaskStatus.GENERATING, TaskStatus.FAILED]
    assert [e.seq for e in replayed] == [e.seq for e in seen]


async def test_after_older_than_what_is_kept_says_where_the_kept_events_start(open_stream: Opener) -> None:
    async with open_stream(keep=3) as stream:
        watch = stream.subscribe()
        for progress in range(6):
            stream.publish(generating("long", progress))
        seen = await take(watch, 6)
        await prune(stream)
        behind = stream.subscribe(after=seen[0].seq)
        await behind.ready()
        kept = await take(behind, 3)
        assert await nothing_more(behind)
        recent = stream.subscribe(after=seen[2].seq)
        await recent.ready()
        for subscription in (watch, behind, recent):
            subscription.close()
    assert behind.truncated_before == seen[3].seq
    assert [e.seq for e in kept] == [e.seq for e in seen[3:]]
    assert recent.truncated_before is None


async def test_listeners_hear_every_event_until_removed(open_stream: Opener) -> None:
    heard: list[TaskEvent] = []
    async with open_stream() as stream:
        watch = stream.subscribe()
        remove = stream.add_listener(heard.append)
        stream.publish(queued("l"))
        stream.publish(completed("l"))
        await take(watch, 2)
        remove()
        stream.publish(queued("m"))
        await take(watch, 1)
        watch.close()
    assert [(e.task_id, e.status) for e in heard] == [("l", TaskStatus.QUEUED), ("l", TaskStatus.COMPLETED)]
    assert all(e.seq > 0 for e in heard)


async def test_previews_go_only_to_live_subscriptions_that_asked(open_stream: Opener) -> None:
    jpeg = b"\xff\xd8 a small preview \xff\xd9"
    async with open_stream() as stream:
        assert not stream.wants_previews("p")
        plain = stream.subscribe("p")
        watching = stream.subscribe("p", previews=True)
        other_task = stream.subscribe("other", previews=True)
        assert stream.wants_previews("p")
        assert stream.wants_previews("other")
        assert not stream.wants_previews("nobody")
        stream.publish(generating("p", 40, preview=jpeg))
        [without] = await take(plain, 1)
        [with_image] = await take(watching, 1)
        replay = stream.subscribe("p", after=0, previews=True)
        [replayed] = await take(replay, 1)
        for subscription in (plain, watching, other_task, replay):
            subscription.close()
        assert not stream.wants_previews("p")
    assert with_image.preview == jpeg
    assert with_image.progress == 40
    assert without.preview is None
    assert without.seq == with_image.seq
    assert replayed.preview is None
    assert replayed.seq == with_image.seq


# --- PostgreSQL: several processes on one database ----------------------------------------------


@pytest.fixture
def shared_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabase]:
    with sql_database("postgresql", request, tmp_path) as db:
        yield db


@asynccontextmanager
async def process(db: SqlDatabase, **options: Any) -> AsyncIterator[PostgresTaskEvents]:
    """A stream as another server process would have it: its own engine, its own listener."""
    own = SqlDatabase(db.url)
    stream = PostgresTaskEvents(own, **options)
    stream.bind()
    try:
        yield stream
    finally:
        await stream.aclose()
        own.dispose()


@pytest.mark.postgres
async def test_two_processes_see_each_others_events_in_one_order(shared_database: SqlDatabase) -> None:
    async with process(shared_database) as a, process(shared_database) as b:
        on_a, on_b = a.subscribe(), b.subscribe()
        await on_a.ready()
        await on_b.ready()
        for index in range(20):  # both publish at once, interleaved
            (a if index % 2 else b).publish(generating(f"task-{index % 2}", index))
        seen_a, seen_b = await take(on_a, 20), await take(on_b, 20)
        assert await nothing_more(on_b, 0.2)
        late_on_b = b.subscribe("task-1", after=0)
        replayed = await take(late_on_b, 10)
        for subscription in (on_a, on_b, late_on_b):
            subscription.close()
    assert [e.seq for e in seen_a] == [e.seq for e in seen_b]
    assert [e.seq for e in seen_a] == sorted(e.seq for e in seen_a)
    assert [shape(e) for e in seen_a] == [shape(e) for e in seen_b]
    assert sorted(e.progress for e in seen_a) == list(range(20))
    assert [e.seq for e in replayed] == [e.seq for e in seen_a if e.task_id == "task-1"]


@pytest.mark.postgres
async def test_a_preview_stays_with_the_process_that_made_it(shared_database: SqlDatabase) -> None:
    async with process(shared_database) as a, process(shared_database) as b:
        here, there = a.subscribe(previews=True), b.subscribe(previews=True)
        await here.ready()
        await there.ready()
        assert a.wants_previews("seen")
        a.publish(generating("seen", 30, preview=b"jpeg bytes"))
        [local] = await take(here, 1)
        [remote] = await take(there, 1)
        here.close()
        there.close()
    assert local.preview == b"jpeg bytes"
    assert remote.preview is None
    assert remote.seq == local.seq
    assert remote.progress == 30


def _terminate_listener(db: SqlDatabase, application_name: str) -> int:
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.postgres
async def test_a_killed_listener_connection_comes_back_and_loses_nothing(
    shared_database: SqlDatabase,
) -> None:
    # the reader's safety poll is long here, so only the listener (or its reconnect) delivers
    async with process(shared_database, safety_poll=60) as a, process(shared_database, safety_poll=60) as b:
        on_b = b.subscribe()
        await on_b.ready()
        a.publish(queued("before"))
        [before] = await take(on_b, 1)
        assert b.listener_connections == 1
        assert await anyio.to_thread.run_sync(_terminate_listener, shared_database, b.application_name) == 1
        for progress in range(5):  # published while b's listener is gone or coming back
            a.publish(generating("during", progress))
        a.publish(completed("during"))
        during = await take(on_b, 6)
        with anyio.fail_after(10):
            while b.listener_connections < 2:  # noqa: ASYNC110 - a counter, not an event to wait on
                await anyio.sleep(0.05)
        a.publish(queued("after"))  # heard through the new connection
        [after] = await take(on_b, 1)
        on_b.close()
    assert [(e.task_id, e.progress) for e in during] == [("during", p) for p in [*range(5), 100]]
    seqs = [before.seq, *(e.seq for e in during), after.seq]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


@pytest.mark.postgres
async def test_events_published_while_every_connection_is_cut_are_all_delivered(
    shared_database: SqlDatabase, postgres: PostgresServer
) -> None:
    async with process(shared_database) as a, process(shared_database) as b:
        on_b = b.subscribe()
        await on_b.ready()
        a.publish(queued("cut"))
        await take(on_b, 1)
        # as a PostgreSQL restart would: the pools' connections and both listeners go
        assert await anyio.to_thread.run_sync(postgres.terminate_connections) >= 2
        for progress in range(10):
            a.publish(generating("cut", progress))
        a.publish(completed("cut"))
        seen = await take(on_b, 11)
        on_b.close()
    assert [e.progress for e in seen] == [*range(10), 100]
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)
