"""Contract tests: the in-memory fakes and the SQL adapters answer the same way.

Run against a real SQLite file (PostgreSQL joins with the PostgreSQL issue).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from imagestudio.adapters.sql import SqlDatabase, SqlGenerationRepository, SqlSettingsRepository
from imagestudio.domain.errors import DatabaseUnavailable, InvalidParameters
from imagestudio.domain.model import (
    Generation,
    HistoryQuery,
    Operation,
    Parameters,
    Settings,
    SettingsPatch,
    StoredImage,
)
from tests.fakes import InMemoryGenerationRepository, InMemorySettingsRepository

pytestmark = pytest.mark.anyio

T0 = dt.datetime(2026, 1, 2, 10, 0, tzinfo=dt.UTC)


def make_generation(index: int, *, kind: str = "image", when: dt.datetime | None = None) -> Generation:
    return Generation(
        id=None,
        type=kind,  # type: ignore[arg-type]
        operation=Operation.TEXT_TO_IMAGE,
        prompt=f"prompt number {index}",
        negative_prompt="blurry" if index % 2 else None,
        parameters=Parameters(
            width=512,
            height=256,
            steps=25,
            cfg_scale=7.5,
            seed=2**53 - 1 - index,
            model="runware:100@1",
            engine="local",
        ),
        seed=2**53 - 1 - index,
        width=512,
        height=256,
        image=StoredImage(key=f"2026-01-02/{index:032x}.jpg", root="/data/generated"),
        remote_url=None,
        task_id=f"task-{index}",
        created_at=when or T0 + dt.timedelta(seconds=index),
        cost=0.0013 if index % 3 == 0 else None,
    )


@pytest.fixture
def database(tmp_path: Path) -> Iterator[SqlDatabase]:
    db = SqlDatabase(f"sqlite:///{tmp_path / 'test.db'}")
    db.create_schema()
    yield db
    db.dispose()


@pytest.fixture(params=["memory", "sqlite"])
async def repository(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield InMemoryGenerationRepository()
        return
    db = SqlDatabase(f"sqlite:///{tmp_path / 'contract.db'}")
    db.create_schema()
    yield SqlGenerationRepository(db)
    db.dispose()


@pytest.fixture(params=["memory", "sqlite"])
async def settings_repository(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield InMemorySettingsRepository()
        return
    db = SqlDatabase(f"sqlite:///{tmp_path / 'settings.db'}")
    db.create_schema()
    yield SqlSettingsRepository(db)
    db.dispose()


async def test_add_assigns_increasing_ids_and_get_round_trips_every_field(repository: Any) -> None:
    first = await repository.add(make_generation(1))
    second = await repository.add(make_generation(2))
    assert first.id is not None
    assert second.id is not None
    assert second.id > first.id
    assert await repository.get(first.id) == first
    assert await repository.get(second.id) == second
    assert await repository.get_by_key(second.image.key) == second
    assert await repository.get_by_key("nope") is None
    assert await repository.get(999_999) is None


async def test_list_is_newest_first_ties_broken_by_id_and_counts_the_filter(repository: Any) -> None:
    same_time = T0 + dt.timedelta(hours=1)
    added = [await repository.add(make_generation(i, when=same_time if i >= 3 else None)) for i in range(5)]
    page = await repository.list(HistoryQuery(limit=10))
    assert [g.id for g in page.items] == [added[4].id, added[3].id, added[2].id, added[1].id, added[0].id]
    assert page.total == 5
    second_page = await repository.list(HistoryQuery(limit=2, offset=2))
    assert [g.id for g in second_page.items] == [added[2].id, added[1].id]
    assert second_page.total == 5
    assert (await repository.list(HistoryQuery(type="video"))).total == 0
    assert (await repository.list(HistoryQuery(type="image"))).total == 5


async def test_delete_returns_the_generation_once(repository: Any) -> None:
    generation = await repository.add(make_generation(1))
    assert await repository.delete(generation.id) == generation
    assert await repository.delete(generation.id) is None
    assert await repository.get(generation.id) is None
    assert (await repository.list(HistoryQuery())).total == 0


async def test_settings_start_at_defaults_and_patches_merge(settings_repository: Any) -> None:
    assert await settings_repository.get() == Settings()
    await settings_repository.update(SettingsPatch(default_width=768))
    merged = await settings_repository.update(SettingsPatch(default_steps=40, storage_path="./elsewhere"))
    assert merged == Settings(default_width=768, default_steps=40, storage_path="./elsewhere")
    assert await settings_repository.get() == merged


async def test_settings_survive_a_new_connection(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'persist.db'}"
    db = SqlDatabase(url)
    db.create_schema()
    await SqlSettingsRepository(db).update(SettingsPatch(default_cfg_scale=12.5))
    db.dispose()
    reopened = SqlDatabase(url)
    reopened.create_schema()
    assert (await SqlSettingsRepository(reopened).get()).default_cfg_scale == 12.5
    reopened.dispose()


async def test_an_invalid_patch_changes_nothing(database: SqlDatabase) -> None:
    repo = SqlSettingsRepository(database)
    with pytest.raises(InvalidParameters):
        await repo.update(SettingsPatch(default_width=100))
    assert await repo.get() == Settings()


async def test_an_unreachable_database_is_database_unavailable(tmp_path: Path) -> None:
    db = SqlDatabase(f"sqlite:///{tmp_path / 'missing-folder' / 'x.db'}")
    with pytest.raises(DatabaseUnavailable) as caught:
        await SqlGenerationRepository(db).get(1)
    assert caught.value.code == "DATABASE_ERROR"
    db.dispose()
