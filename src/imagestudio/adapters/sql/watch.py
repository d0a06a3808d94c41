"""``ChangeWatch`` on SQLite: ``PRAGMA data_version`` of a connection that only watches.

SQLite gives every connection a counter that moves whenever *another* connection (in this
process or any other) commits to the database file. One read-only connection that never writes
therefore sees every commit: the server's own (its pool's connections are other connections),
and those of other servers or of ``imagestudio doctor`` sharing the file. Reading the counter is
a pragma on a WAL database (about 2 microseconds here, and readers never wait for writers), so it
can run on the event loop before every cached read.

PostgreSQL has no such counter short of a round trip per read; there the history is not cached
(:func:`change_watch` returns ``None``). Neither is a SQLite database in memory, which a second
connection could not see.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

from imagestudio.adapters.sql.database import SqlDatabase

__all__ = ["SqliteChangeWatch", "change_watch"]


class SqliteChangeWatch:
    """``token()`` is the watch connection's ``data_version``, or ``None`` if it cannot be read.

    The connection is opened on first use, read-only and with no busy wait (a database locked
    for recovery answers ``None`` at once rather than stalling the event loop), and opened again
    after an error. Call it from one thread at a time (the event loop).

    While ``faulted()`` says the database is in a sticky fault (``SqlDatabase.faulted``: a write
    failed read-only, say), the watch answers ``None`` and keeps no connection: SQLite shares one
    wal-index per file between a process's connections, and a watch opened while the file was
    read-only would keep it read-only for the pool's new connections once the file is writable.
    """

    def __init__(self, path: Path, faulted: Callable[[], bool] = lambda: False) -> None:
        self.path = path
        self._faulted = faulted
        self._connection: sqlite3.Connection | None = None
        self._opened = 0  # counters of different connections are not comparable: tell them apart

    def token(self) -> object | None:
        if self._faulted():
            self.close()
            return None
        try:
            if self._connection is None:
                self._connection = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    timeout=0,
                    isolation_level=None,
                    check_same_thread=False,  # used by one caller at a time, never concurrently
                )
                self._opened += 1
            row = self._connection.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            self.close()
            return None
        return None if row is None else (self._opened, row[0])

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()


def change_watch(db: SqlDatabase) -> SqliteChangeWatch | None:
    """The watch for ``db``: a file-backed SQLite database has one; PostgreSQL and memory do not."""
    if not db.is_sqlite:
        return None
    database = make_url(db.url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return SqliteChangeWatch(Path(database), faulted=lambda: db.faulted)
