"""Group commit: small writes that arrive while another is being written share one transaction.

Every generation writes its task row four times and its history row once, and each write was a
trip to a worker thread and a commit of its own. At 64 concurrent generations those trips were
the largest part of the server's CPU (BENCHMARKS.md, P1): the event loop waking a thread, the
thread and the loop taking the GIL in turn, one commit each. Here the first write starts a
flush; writes arriving while it runs wait for the next one, which runs all of them, in order, in
one transaction on one worker thread. A lone write (one generation at a time) costs what it did.

Each caller still returns only once its write is committed, with its own result, so nothing is
weaker than one transaction per call:

- a write that raises a :class:`StudioError` fails alone: it must raise before writing anything
  (check with ``INSERT ... ON CONFLICT DO NOTHING`` and its row count, say, never by catching a
  failed statement, which would leave the transaction unusable on PostgreSQL);
- any other failure (the database locked or gone, a commit that fails) fails every write of
  that transaction with the same error, as it would have failed each of them alone.

The flush runs as its own asyncio task: a caller cancelled while waiting leaves the others'
writes, and its own already queued, to finish.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import Connection
from sqlmodel import Session

from imagestudio.domain.errors import StudioError

if TYPE_CHECKING:
    from imagestudio.adapters.sql.database import SqlDatabase

__all__ = ["GroupCommit"]

T = TypeVar("T")


@dataclass(eq=False)
class _Write(Generic[T]):
    work: Callable[[Connection], T]
    done: asyncio.Future[T]
    outcome: tuple[bool, Any] = field(default=(False, None))


class GroupCommit:
    """Runs ``work(connection)`` functions in shared transactions on ``db``'s worker threads.

    ``SqlDatabase.write`` is the way in: one ``GroupCommit`` per database, shared by the
    repositories, so a task's update and another generation's history row can share a commit.
    """

    def __init__(self, db: SqlDatabase) -> None:
        self._db = db
        self._queue: list[_Write[Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._flusher_id: object = None
        self.transactions = 0
        self.writes = 0

    async def run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in the next shared transaction; its result once that has committed."""
        loop = asyncio.get_running_loop()
        if self._flusher is not None and self._flusher.get_loop() is not loop:
            # an event loop that ended with a flush pending (a library caller running one loop per
            # call): its writes never reached the database and nobody can wait for them any more
            self._flusher = None
            self._queue = [write for write in self._queue if write.done.get_loop() is loop]
        write: _Write[T] = _Write(work, loop.create_future())
        self._queue.append(write)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(flusher := object()))
            self._flusher_id = flusher
        return await asyncio.shield(write.done)

    async def _flush(self, flusher: object) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._db.run(functools.partial(_run_batch, batch=batch))
                except Exception as error:  # the transaction failed: so did every write in it
                    for write in batch:
                        _settle(write.done, error)
                    continue
                except asyncio.CancelledError:  # shutting down: nobody is left to write these
                    for write in (*batch, *self._queue):
                        write.done.cancel()
                    self._queue = []
                    raise
                self.transactions += 1
                self.writes += len(batch)
                for write in batch:
                    ok, value = write.outcome
                    if not ok:
                        _settle(write.done, value)
                    elif not write.done.done():
                        write.done.set_result(value)
        finally:
            if self._flusher_id is flusher:  # not a flusher of an earlier, abandoned loop
                self._flusher = None


def _run_batch(session: Session, *, batch: list[_Write[Any]]) -> None:
    connection = session.connection()
    for write in batch:
        try:
            write.outcome = (True, write.work(connection))
        except StudioError as error:  # this write's own refusal: it wrote nothing (see above)
            write.outcome = (False, error)


def _settle(done: asyncio.Future[Any], error: BaseException) -> None:
    if not done.done():
        done.set_exception(error)
        done.exception()  # a caller that was cancelled need not retrieve it
