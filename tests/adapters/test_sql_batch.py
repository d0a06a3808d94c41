"""Group commit (``SqlDatabase.write``): concurrent writes share transactions, each caller gets its
own result or error, and a failed transaction leaves nothing of any write in it.

On a real SQLite file and a real PostgreSQL schema, through the real task and history repositories.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from imagestudio.adapters.sql import SqlDatabase, SqlGenerationRepository, SqlTaskRepository
from imagestudio.domain.errors import Conflict, DatabaseUnavailable
from imagestudio.domain.model import HistoryQuery, Operation, TaskStatus
from imagestudio.domain.tasks import TaskState
from tests.adapters.test_repository_contract import make_generation
from tests.databases import sql_database

pytestmark = pytest.mark.anyio
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabase]:
    with sql_database(request.param, request, tmp_path) as database:
        yield database


def _batches(db: SqlDatabase) -> tuple[int, int]:
    writes = db._writes
    assert writes is not None
    return writes.transactions, writes.writes


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # group commit runs on asyncio tasks, as the server does


async def test_concurrent_writes_share_transactions_and_each_gets_its_own_result(db: SqlDatabase) -> None:
    tasks = SqlTaskRepository(db, owner="host:1")
    history = SqlGenerationRepository(db)
    states = [TaskState(f"t-{index}", Operation.TEXT_TO_IMAGE, NOW) for index in range(40)]
    await asyncio.gather(*(tasks.create(state.task) for state in states))
    for state in states:
        state.start(NOW + dt.timedelta(seconds=1))
    added = await asyncio.gather(
        *(tasks.update(state.task) for state in states),
        *(history.add(make_generation(index)) for index in range(40)),
    )
    transactions, writes = _batches(db)
    assert writes == 120
    assert transactions < writes / 4, (transactions, writes)  # grouped, not one commit each
    ids = [generation.id for generation in added[40:]]
    assert len(set(ids)) == 40
    assert all(isinstance(i, int) for i in ids)
    for state in states:
        assert await tasks.get(state.task.id) == state.task
        assert (await tasks.get(state.task.id)).status is TaskStatus.GENERATING  # type: ignore[union-attr]
    page = await history.list(HistoryQuery(limit=100))
    assert page.total == 40
    assert sorted(g.id for g in page.items) == sorted(ids)  # type: ignore[type-var]


async def test_a_conflict_fails_only_its_own_write(db: SqlDatabase) -> None:
    tasks = SqlTaskRepository(db, owner="host:1")
    taken = TaskState("taken", Operation.UPSCALE, NOW)
    await tasks.create(taken.task)
    fresh = [TaskState(f"fresh-{index}", Operation.UPSCALE, NOW) for index in range(10)]
    outcomes = await asyncio.gather(
        *(tasks.create(state.task) for state in fresh[:5]),
        tasks.create(taken.task),
        *(tasks.create(state.task) for state in fresh[5:]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[5], Conflict)
    assert [outcome for index, outcome in enumerate(outcomes) if index != 5] == [None] * 10
    for state in fresh:
        assert await tasks.get(state.task.id) == state.task


async def test_a_cancelled_caller_does_not_cancel_the_writes(db: SqlDatabase) -> None:
    history = SqlGenerationRepository(db)
    pending = [asyncio.ensure_future(history.add(make_generation(index))) for index in range(8)]
    await asyncio.sleep(0)
    pending[3].cancel()
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    # the cancelled caller's row was already queued: it is written like the others
    assert (await history.list(HistoryQuery(limit=50))).total == 8


async def test_a_failed_transaction_fails_every_write_in_it_and_keeps_none(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    db = SqlDatabase(f"sqlite:///{path}?timeout=0.2")
    try:
        db.upgrade_schema()
        tasks = SqlTaskRepository(db, owner="host:1")
        history = SqlGenerationRepository(db)
        states = [TaskState(f"t-{index}", Operation.TEXT_TO_IMAGE, NOW) for index in range(6)]
        with closing(sqlite3.connect(path, isolation_level=None, timeout=0)) as other:
            other.execute("BEGIN EXCLUSIVE")
            outcomes = await asyncio.gather(
                *(tasks.create(state.task) for state in states),
                *(history.add(make_generation(index)) for index in range(6)),
                return_exceptions=True,
            )
            other.execute("ROLLBACK")
        assert all(isinstance(outcome, DatabaseUnavailable) for outcome in outcomes), outcomes
        assert (await history.list(HistoryQuery())).total == 0
        assert await tasks.recent(50) == []
        assert all([await tasks.get(state.task.id) is None for state in states])
        # and the next writes go through
        await tasks.create(states[0].task)
        assert await tasks.get("t-0") == states[0].task
    finally:
        db.dispose()


def test_a_loop_that_ended_with_a_flush_pending_does_not_stall_the_next_one(tmp_path: Path) -> None:
    """A library caller may run one event loop per call; a loop closed mid-flush must not leave
    the next loop's writes waiting for a flusher that will never run again."""
    db = SqlDatabase(f"sqlite:///{tmp_path / 'loops.db'}")
    try:
        db.upgrade_schema()
        history = SqlGenerationRepository(db)
        first_loop = asyncio.new_event_loop()
        left: list[asyncio.Task[object]] = []

        async def start_and_leave() -> None:
            left.append(first_loop.create_task(history.add(make_generation(1))))
            await asyncio.sleep(0)  # the write is queued and its flusher created, not run to its end

        first_loop.run_until_complete(start_and_leave())
        first_loop.close()  # closed without cancelling its tasks

        async def next_call() -> int:
            added = await asyncio.wait_for(history.add(make_generation(2)), timeout=10)
            assert added.id is not None
            return (await history.list(HistoryQuery())).total

        assert asyncio.run(next_call()) >= 1
    finally:
        db.dispose()
