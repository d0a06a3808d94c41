"""The SQLModel tables of the history and the settings, and their SQLAlchemy ``Table`` objects.

The schema belongs to the Alembic migrations in ``imagestudio.adapters.migrations``, applied by
:meth:`SqlDatabase.upgrade_schema`; the table models here must match what they build (a test
compares them). The task and idempotency tables live beside their repositories (``tasks.py``).

A generation's ``source_id`` copies ``parameters.sourceId`` (the JSON stays what is read) so that
the ``sourceId`` filter has an index, as does ``rerun_of``; both are written with the row.

A generation's ``tags`` column (JSON, in the order given) is where its tags are written;
``generation_tags`` and ``tag_counts`` are made from it by triggers (migration ``0005``) and
only read here, as are the kept counts (``generation_counts``, ``favorite_counts``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Table, false, text
from sqlmodel import Field, SQLModel

__all__ = [
    "COUNTS",
    "FAVORITE_COUNTS",
    "GENERATIONS",
    "GENERATION_TAGS",
    "SETTINGS",
    "TAG_COUNTS",
    "FavoriteCountRow",
    "GenerationCountRow",
    "GenerationRow",
    "GenerationTagRow",
    "SettingRow",
    "TagCountRow",
]


class GenerationRow(SQLModel, table=True):
    """One generation as stored. Never leaves this module."""

    __tablename__ = "generations"
    __table_args__ = (
        Index("ix_generations_created_id", "created_at", "id"),
        Index("ix_generations_type_created", "type", "created_at", "id"),
        Index("ix_generations_operation_created", "operation", "created_at", "id"),
        Index("ix_generations_engine_created", "engine", "created_at", "id"),
        Index("ix_generations_model_created", "model", "created_at", "id"),
        Index("ix_generations_favorite_created", "favorite", "created_at", "id"),
        Index(
            "ix_generations_source_created",
            "source_id",
            "created_at",
            "id",
            sqlite_where=text("source_id IS NOT NULL"),
            postgresql_where=text("source_id IS NOT NULL"),
        ),
        Index(
            "ix_generations_rerun_created",
            "rerun_of",
            "created_at",
            "id",
            sqlite_where=text("rerun_of IS NOT NULL"),
            postgresql_where=text("rerun_of IS NOT NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(default="image", max_length=16)
    operation: str = Field(max_length=32)
    prompt: str
    negative_prompt: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    seed: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    width: int
    height: int
    file_key: str = Field(max_length=255, unique=True)
    storage_root: str
    remote_url: str | None = None
    task_id: str = Field(max_length=64, index=True)
    engine: str = Field(max_length=32)
    model: str | None = Field(default=None, max_length=200)
    cost: float | None = None
    created_at: dt.datetime
    favorite: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    tags: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default=text("'[]'"))
    )
    notes: str | None = None
    source_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """``parameters.sourceId``, copied where it can be indexed (migration ``0008``)."""
    rerun_of: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


class GenerationTagRow(SQLModel, table=True):
    """One tag of one generation, in the order a one-tag history page reads them: by tag, then
    ``created_at`` (the generation's, which never changes) and id. Made by triggers from
    ``generations.tags``, never written here."""

    __tablename__ = "generation_tags"
    __table_args__ = (
        Index("ix_generation_tags_generation", "generation_id", "tag"),
        {"sqlite_with_rowid": False},
    )

    tag: str = Field(primary_key=True)
    created_at: dt.datetime = Field(primary_key=True)
    generation_id: int = Field(primary_key=True)


class TagCountRow(SQLModel, table=True):
    """How many generations carry one tag (rows of tags no generation carries go); maintained
    by triggers, never written here."""

    __tablename__ = "tag_counts"

    tag: str = Field(primary_key=True)
    total: int = Field(sa_column=Column(BigInteger, nullable=False))


class FavoriteCountRow(SQLModel, table=True):
    """How many favourites there are of one ``type``; maintained by triggers, never written here."""

    __tablename__ = "favorite_counts"

    type: str = Field(primary_key=True, max_length=16)
    total: int = Field(sa_column=Column(BigInteger, nullable=False))


class GenerationCountRow(SQLModel, table=True):
    """How many generations there are of one ``type``; maintained by triggers, never written here."""

    __tablename__ = "generation_counts"

    type: str = Field(primary_key=True, max_length=16)
    total: int = Field(sa_column=Column(BigInteger, nullable=False))


class SettingRow(SQLModel, table=True):
    """One setting: a key and its JSON value (a row per key, so concurrent patches of
    different keys never overwrite each other)."""

    __tablename__ = "settings"

    key: str = Field(primary_key=True, max_length=64)
    value: Any = Field(sa_column=Column(JSON, nullable=False))


GENERATIONS: Table = GenerationRow.__table__  # type: ignore[attr-defined]
COUNTS: Table = GenerationCountRow.__table__  # type: ignore[attr-defined]
GENERATION_TAGS: Table = GenerationTagRow.__table__  # type: ignore[attr-defined]
FAVORITE_COUNTS: Table = FavoriteCountRow.__table__  # type: ignore[attr-defined]
TAG_COUNTS: Table = TagCountRow.__table__  # type: ignore[attr-defined]
SETTINGS: Table = SettingRow.__table__  # type: ignore[attr-defined]
