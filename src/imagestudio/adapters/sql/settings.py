"""The settings: ``SqlSettingsRepository``, a row per key with defaults for missing keys.

Settings are written as upserts of one row per key, so several processes can share them: the
last writer of a key wins, and patches of different keys both stay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Session

from imagestudio.adapters.sql.database import SqlDatabase
from imagestudio.adapters.sql.tables import SETTINGS
from imagestudio.domain.model import SETTING_NAMES, Settings, SettingsPatch
from imagestudio.domain.ports import ChangeWatch

__all__ = ["SqlSettingsRepository"]


class SqlSettingsRepository:
    """``SettingsRepository`` on SQLModel: a row per key, defaults for missing keys.

    Every generation reads the settings. With a ``watch`` (``watch.py``: on SQLite, a token
    that moves with any commit by anyone), the last settings read are returned again for as long
    as the token stays the one read before them, which saves a trip to a worker thread per
    generation; without one (PostgreSQL) every call reads.
    """

    def __init__(self, db: SqlDatabase, watch: ChangeWatch | None = None) -> None:
        self._db = db
        self._watch = watch
        self._kept: tuple[object, Settings] | None = None

    async def get(self) -> Settings:
        token = self._watch.token() if self._watch is not None else None
        if token is not None and self._kept is not None and self._kept[0] == token:
            return self._kept[1]
        settings = await self._db.run(lambda session: _load_settings(session.connection()))
        self._kept = None if token is None else (token, settings)
        return settings

    async def update(self, patch: SettingsPatch) -> Settings:
        upsert = _upsert_for(self._db.dialect)

        def work(session: Session) -> Settings:
            connection = session.connection()
            patch.apply(_load_settings(connection))  # validates the whole result before writing
            for name, value in sorted(patch.changes().items()):
                connection.execute(upsert(name, value))
            return _load_settings(connection)

        self._kept = None
        return await self._db.run(work)


def _load_settings(connection: Connection) -> Settings:
    stored = {row.key: row.value for row in connection.execute(select(SETTINGS.c.key, SETTINGS.c.value))}
    values = {name: stored[name] for name in SETTING_NAMES if name in stored}
    return Settings(**values)


def _upsert_for(dialect: str) -> Callable[[str, Any], Any]:
    """An ``INSERT ... ON CONFLICT (key) DO UPDATE``: one statement, so concurrent writers of one
    key cannot both insert, and the last one to commit wins."""
    build = sqlite.insert if dialect == "sqlite" else postgresql.insert

    def upsert(key: str, value: Any) -> Any:
        statement = build(SETTINGS).values(key=key, value=value)
        return statement.on_conflict_do_update(index_elements=[SETTINGS.c.key], set_={"value": value})

    return upsert
