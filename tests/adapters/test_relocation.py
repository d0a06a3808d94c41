"""Rows keep a storage-relative root; the rows older versions wrote (an absolute folder inside the
data dir) are rewritten when a server of this version starts, on SQLite and PostgreSQL.

A folder outside the data dir (another storage root) stays absolute; a second start rewrites
nothing; and once rewritten, the history survives its data dir being moved elsewhere.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from imagestudio import Studio
from imagestudio.adapters.sql import SqlDatabase, SqlGenerationRepository
from imagestudio.bootstrap import relocate_history
from imagestudio.config import Config
from imagestudio.domain.model import HistoryQuery, StoredImage
from imagestudio.domain.ports import read_stream
from tests.adapters.test_repository_contract import make_generation
from tests.databases import SQL_KINDS, sql_database

pytestmark = pytest.mark.anyio


@pytest.fixture(params=SQL_KINDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlDatabase]:
    with sql_database(request.param, request, tmp_path) as database:
        yield database


async def roots(repository: SqlGenerationRepository) -> dict[str, str]:
    page = await repository.list(HistoryQuery(limit=100))
    return {generation.task_id: generation.image.root for generation in page.items}


async def test_rows_of_older_versions_become_relative_to_the_data_dir_and_others_stay(
    db: SqlDatabase, tmp_path: Path
) -> None:
    data_dir = (tmp_path / "data").resolve()
    pictures = (tmp_path / "pictures").resolve()
    config = Config(data_dir=data_dir, storage_roots=(pictures,))
    repository = SqlGenerationRepository(db)
    old = {
        "in-generated": str(data_dir / "generated"),
        "in-a-subfolder": str(data_dir / "sub" / "deeper"),
        "the-data-dir": str(data_dir),
        "another-root": str(pictures / "studio"),
        "another-machine": "/home/someone-else/.imagestudio/generated",
        "already-relative": "generated",
        "a-sibling": str(data_dir) + "-old/generated",  # shares a prefix, not the folder
    }
    for index, (task, root) in enumerate(old.items()):
        generation = make_generation(index)
        await repository.add(
            replace(generation, task_id=task, image=StoredImage(key=generation.image.key, root=root))
        )

    await relocate_history(db, config)

    assert await roots(repository) == {
        "in-generated": "generated",
        "in-a-subfolder": "sub/deeper",
        "the-data-dir": ".",
        "another-root": str(pictures / "studio"),
        "another-machine": "/home/someone-else/.imagestudio/generated",
        "already-relative": "generated",
        "a-sibling": str(data_dir) + "-old/generated",
    }
    assert await repository.relocate_roots(lambda root: root) == 0
    assert (
        await repository.relocate_roots(lambda root: "generated" if root == "generated" else root) == 0
    )  # nothing to do: nothing written


async def test_the_history_follows_its_data_dir_to_another_place(tmp_path: Path) -> None:
    first = tmp_path / "first"
    async with Studio.open(first, engine="local") as studio:
        made = await studio.text_to_image("a lighthouse at dusk", width=128, height=128, steps=2)
        data = await read_stream(await studio.open_file(made))
    # what an older version wrote: the absolute folder of this machine
    db = SqlDatabase(f"sqlite:///{first / 'imagestudio.db'}")
    with db.engine.begin() as connection:
        connection.execute(
            text("UPDATE generations SET storage_root = :root"), {"root": str(first.resolve() / "generated")}
        )
    db.dispose()

    async with Studio.open(first, engine="local") as studio:  # this version, once, where it was
        assert (await studio.get(made.id)).image.root == "generated"  # type: ignore[arg-type]

    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(first, moved)
    async with Studio.open(moved, engine="local") as studio:
        generation = await studio.get(made.id)  # type: ignore[arg-type]
        assert await read_stream(await studio.open_file(generation)) == data
        assert await studio.file_of(generation) == str(moved.resolve() / "generated" / generation.image.key)
