"""Alembic migrations of the imagestudio schema, shipped in the package and run from code.

:func:`upgrade` brings a database to the newest revision; the composition root calls it at
startup and ``imagestudio db upgrade`` on demand. It runs inside a transaction the caller has
locked (``SqlDatabase`` takes an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so
servers that start together migrate once and the others find the work done.

- A database made by the foundation release (its ``generations`` table, no ``alembic_version``)
  is adopted: stamped at ``0001``, the foundation schema, and upgraded from there; rows stay.
- A database at a revision this code does not know was upgraded by a newer imagestudio: it is
  refused with :class:`IncompatibleDatabase` before anything is changed.

How to add a revision: see ``env.py`` beside this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from imagestudio.domain.errors import DatabaseError, IncompatibleDatabase

__all__ = [
    "FOUNDATION_REVISION",
    "SchemaState",
    "downgrade",
    "head_revision",
    "inspect_schema",
    "script_directory",
    "upgrade",
]

FOUNDATION_REVISION = "0001"
_FOUNDATION_COLUMNS = frozenset({"id", "type", "operation", "prompt", "created_at", "file_key"})
_HERE = Path(__file__).resolve().parent


def script_directory() -> ScriptDirectory:
    """The revisions shipped with this package."""
    return ScriptDirectory(str(_HERE))


def head_revision() -> str:
    """The newest revision this code knows (the chain has exactly one head)."""
    head = script_directory().get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


@dataclass(frozen=True, kw_only=True)
class SchemaState:
    """Where a database stands against the revisions this code knows."""

    current: tuple[str, ...]
    """The revisions recorded in ``alembic_version`` (none for an empty or foundation database)."""
    head: str
    known: frozenset[str]
    foundation: bool
    """True for a foundation database: its tables exist but were never migrated."""

    @property
    def unknown(self) -> tuple[str, ...]:
        """Recorded revisions this code does not know: the database is newer than the code."""
        return tuple(revision for revision in self.current if revision not in self.known)

    @property
    def up_to_date(self) -> bool:
        return self.current == (self.head,)

    def describe(self) -> str:
        if self.unknown:
            return (
                f"at revision {', '.join(self.unknown)}, newer than this imagestudio knows (its newest is"
                f" {self.head})"
            )
        if self.up_to_date:
            return f"at revision {self.head} (up to date)"
        if self.foundation:
            return (
                f"foundation schema made before migrations; `imagestudio db upgrade` adopts it ({self.head})"
            )
        if not self.current:
            return f"empty; `imagestudio db upgrade` creates the schema ({self.head})"
        return f"at revision {', '.join(self.current)}; `imagestudio db upgrade` brings it to {self.head}"


def inspect_schema(connection: Connection) -> SchemaState:
    """Read where the database behind ``connection`` stands (nothing is changed)."""
    script = script_directory()
    current = tuple(MigrationContext.configure(connection).get_current_heads())
    foundation = False
    if not current:
        inspector = inspect(connection)
        if inspector.has_table("generations"):
            columns = {column["name"] for column in inspector.get_columns("generations")}
            if not columns >= _FOUNDATION_COLUMNS:
                raise IncompatibleDatabase(
                    "The database has a 'generations' table that imagestudio did not make;"
                    " point IMAGESTUDIO_DATABASE_URL at another database"
                )
            foundation = True
    return SchemaState(
        current=current,
        head=head_revision(),
        known=frozenset(revision.revision for revision in script.walk_revisions()),
        foundation=foundation,
    )


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.attributes["connection"] = connection
    return config


def downgrade(connection: Connection, revision: str) -> None:
    """Take the database back to ``revision`` (``base``: nothing left), inside the caller's locked
    transaction. For tests and for going back to an older release by hand."""
    try:
        command.downgrade(_config(connection), revision)
    except CommandError as error:
        raise DatabaseError(f"The database schema could not be downgraded: {error}") from error


def upgrade(connection: Connection, *, database: str) -> str:
    """Bring the database to the newest revision and return it.

    ``connection`` must be inside a transaction that the caller holds a migration lock on;
    ``database`` names it in messages (a URL without its password).
    """
    state = inspect_schema(connection)
    if state.unknown:
        raise IncompatibleDatabase(
            f"The database {database} is at schema revision {', '.join(state.unknown)}, which this"
            f" imagestudio does not know (its newest is {state.head}): a newer imagestudio upgraded it."
            " Upgrade imagestudio, or point IMAGESTUDIO_DATABASE_URL at another database."
        )
    if state.up_to_date:
        return state.head
    config = _config(connection)
    try:
        if state.foundation:
            command.stamp(config, FOUNDATION_REVISION)
        command.upgrade(config, "head")
    except CommandError as error:
        raise DatabaseError(f"The database schema could not be upgraded: {error}") from error
    return state.head
