"""SQLModel adapters on SQLite (the default) or PostgreSQL: the database, its tables and repositories.

One module per concept, re-exported here so ``from imagestudio.adapters.sql import ...`` is the
one way in:

- ``database.py``: ``SqlDatabase``, the engine and its transaction modes (session, shared write,
  autocommit read, migration), and the mapping of database failures to domain errors;
- ``batch.py``: group commit, the shared transactions behind ``SqlDatabase.write``;
- ``tables.py``: the history and settings tables (the Alembic migrations in
  ``imagestudio.adapters.migrations`` own the schema; a test compares the two);
- ``history.py``: ``SqlGenerationRepository`` and its query plans;
- ``settings.py``: ``SqlSettingsRepository``;
- ``tasks.py``: ``SqlTaskRepository`` and ``SqlIdempotencyStore``, with their tables;
- ``watch.py``: ``SqliteChangeWatch``, the SQLite token that moves with any commit;
- ``events.py``: ``PostgresTaskEvents``, the task event stream every server on one PostgreSQL
  database shares (a table whose id is ``seq``, announced with ``LISTEN/NOTIFY``).

Several processes can share one database: each module says what holds when they do.
"""

from __future__ import annotations

from imagestudio.adapters.sql.batch import GroupCommit
from imagestudio.adapters.sql.database import MIGRATION_LOCK, SqlDatabase, database_url
from imagestudio.adapters.sql.events import TASK_EVENTS, PostgresTaskEvents
from imagestudio.adapters.sql.history import SqlGenerationRepository
from imagestudio.adapters.sql.settings import SqlSettingsRepository
from imagestudio.adapters.sql.tables import (
    COUNTS,
    GENERATIONS,
    SETTINGS,
    GenerationCountRow,
    GenerationRow,
    SettingRow,
)
from imagestudio.adapters.sql.tasks import (
    IdempotencyRow,
    SqlIdempotencyStore,
    SqlTaskRepository,
    TaskRow,
    process_owner,
)
from imagestudio.adapters.sql.watch import SqliteChangeWatch, change_watch

__all__ = [
    "COUNTS",
    "GENERATIONS",
    "MIGRATION_LOCK",
    "SETTINGS",
    "TASK_EVENTS",
    "GenerationCountRow",
    "GenerationRow",
    "GroupCommit",
    "IdempotencyRow",
    "PostgresTaskEvents",
    "SettingRow",
    "SqlDatabase",
    "SqlGenerationRepository",
    "SqlIdempotencyStore",
    "SqlSettingsRepository",
    "SqlTaskRepository",
    "SqliteChangeWatch",
    "TaskRow",
    "change_watch",
    "database_url",
    "process_owner",
]
