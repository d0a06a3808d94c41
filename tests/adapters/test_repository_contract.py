"""Contract tests: the in-memory fakes and the SQL adapters answer the same way.

Each runs against the fake, a real SQLite file and a real PostgreSQL schema (which skips, saying
so, where there is no PostgreSQL server; see ``tests/databases.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from imagestudio.adapters.sql import SqlDatabase, SqlGenerationRepository, SqlSettingsRepository
from imagestudio.domain.errors import DatabaseUnavailable, InvalidParameters
from imagestudio.domain.history_query import HISTORY_FILTERS, HistoryFilter
from imagestudio.domain.model import (
    Generation,
    GenerationPatch,
    HistoryCursor,
    HistoryQuery,
    HistorySort,
    Operation,
    Parameters,
    Settings,
    SettingsPatch,
    StoredImage,
    TagQuery,
)
from tests.databases import sql_database
from tests.fakes import InMemoryGenerationRepository, InMemorySettingsRepository

pytestmark = pytest.mark.anyio

T0 = dt.datetime(2026, 1, 2, 10, 0, tzinfo=dt.UTC)
KINDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def make_generation(
    index: int,
    *,
    kind: str = "image",
    when: dt.datetime | None = None,
    prompt: str | None = None,
    negative: str | None = "",
    operation: Operation = Operation.TEXT_TO_IMAGE,
    engine: str = "local",
    model: str | None = "runware:100@1",
    favorite: bool = False,
    tags: tuple[str, ...] = (),
    notes: str | None = None,
    source_id: int | None = None,
    rerun_of: int | None = None,
) -> Generation:
    return Generation(
        id=None,
        type=kind,  # type: ignore[arg-type]
        operation=operation,
        prompt=prompt or f"prompt number {index}",
        negative_prompt=("blurry" if index % 2 else None) if negative == "" else negative,
        parameters=Parameters(
            width=512,
            height=256,
            steps=25,
            cfg_scale=7.5,
            seed=2**53 - 1 - index,
            model=model,
            engine=engine,
            source_id=source_id,
        ),
        seed=2**53 - 1 - index,
        width=512,
        height=256,
        image=StoredImage(key=f"2026-01-02/{index:032x}.jpg", root="/data/generated"),
        remote_url=None,
        task_id=f"task-{index}",
        created_at=when or T0 + dt.timedelta(seconds=index),
        cost=0.0013 if index % 3 == 0 else None,
        favorite=favorite,
        tags=tags,
        notes=notes,
        rerun_of=rerun_of,
    )


@pytest.fixture
def database(tmp_path: Path) -> Iterator[SqlDatabase]:
    db = SqlDatabase(f"sqlite:///{tmp_path / 'test.db'}")
    db.upgrade_schema()
    yield db
    db.dispose()


@pytest.fixture(params=[*KINDS, "sqlite-walking"])
def repository(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """``sqlite-walking``: SQLite with the search plan of large histories from the first match on."""
    if request.param == "memory":
        yield InMemoryGenerationRepository()
        return
    kind, _, plan = request.param.partition("-")
    with sql_database(kind, request, tmp_path) as db:
        yield SqlGenerationRepository(db, sort_matches_up_to=0 if plan else None)


@pytest.fixture(params=KINDS)
def settings_repository(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemorySettingsRepository()
        return
    with sql_database(request.param, request, tmp_path) as db:
        yield SqlSettingsRepository(db)


async def ids(repository: Any, **query: Any) -> list[int]:
    return [g.id for g in (await repository.list(HistoryQuery(**query))).items]


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


async def test_an_id_wider_than_any_the_database_hands_out_finds_nothing(repository: Any) -> None:
    await repository.add(make_generation(1))
    for huge in (2**31, 2**62, 2**63 - 1):  # PostgreSQL's id column is 32-bit
        assert await repository.get(huge) is None
        assert await repository.update(huge, GenerationPatch(favorite=True)) is None
        assert await repository.delete(huge) is None
        assert (await repository.list(HistoryQuery(source_id=huge))).total == 0


async def test_the_id_of_a_deleted_newest_generation_is_never_handed_out_again(repository: Any) -> None:
    await repository.add(make_generation(1))
    newest = await repository.add(make_generation(2))
    await repository.delete(newest.id)
    again = await repository.add(make_generation(3))
    assert again.id > newest.id


async def test_list_is_newest_first_ties_broken_by_id_and_counts_the_filter(repository: Any) -> None:
    same_time = T0 + dt.timedelta(hours=1)
    added = [await repository.add(make_generation(i, when=same_time if i >= 3 else None)) for i in range(5)]
    page = await repository.list(HistoryQuery(limit=10))
    assert [g.id for g in page.items] == [added[4].id, added[3].id, added[2].id, added[1].id, added[0].id]
    assert page.total == 5
    assert page.next_cursor is None
    second_page = await repository.list(HistoryQuery(limit=2, offset=2))
    assert [g.id for g in second_page.items] == [added[2].id, added[1].id]
    assert second_page.total == 5
    assert second_page.next_cursor is not None
    assert (await repository.list(HistoryQuery(type="video"))).total == 0
    assert (await repository.list(HistoryQuery(type="image"))).total == 5


async def test_oldest_first_reverses_the_order_ties_included(repository: Any) -> None:
    same_time = T0 + dt.timedelta(hours=1)
    added = [await repository.add(make_generation(i, when=same_time if i >= 1 else None)) for i in range(3)]
    assert await ids(repository, sort=HistorySort.OLDEST) == [g.id for g in added]


async def test_delete_returns_the_generation_once(repository: Any) -> None:
    generation = await repository.add(make_generation(1))
    assert await repository.delete(generation.id) == generation
    assert await repository.delete(generation.id) is None
    assert await repository.get(generation.id) is None
    assert (await repository.list(HistoryQuery())).total == 0


async def test_totals_follow_adds_and_deletes_of_each_type(repository: Any) -> None:
    images = [await repository.add(make_generation(i)) for i in range(3)]
    await repository.add(make_generation(3, kind="video"))
    await repository.delete(images[0].id)
    assert (await repository.list(HistoryQuery())).total == 3
    assert (await repository.list(HistoryQuery(type="image"))).total == 2
    assert (await repository.list(HistoryQuery(type="video"))).total == 1


async def test_filters_match_exactly_and_combine(repository: Any) -> None:
    made = {
        "t2i-local": await repository.add(make_generation(1)),
        "i2i-local": await repository.add(make_generation(2, operation=Operation.IMAGE_TO_IMAGE)),
        "up-local": await repository.add(make_generation(3, operation=Operation.UPSCALE, model=None)),
        "t2i-runware": await repository.add(
            make_generation(4, engine="runware", model="civitai:4384@128713")
        ),
        "video": await repository.add(make_generation(5, kind="video")),
    }

    async def names(**query: Any) -> set[str]:
        page = await repository.list(HistoryQuery(**query))
        assert page.total == len(page.items)
        found = {g.id for g in page.items}
        return {name for name, g in made.items() if g.id in found}

    assert await names(operation=Operation.UPSCALE) == {"up-local"}
    assert await names(operation=Operation.TEXT_TO_IMAGE) == {"t2i-local", "t2i-runware", "video"}
    assert await names(engine="runware") == {"t2i-runware"}
    assert await names(engine="nope") == set()
    assert await names(model="civitai:4384@128713") == {"t2i-runware"}
    assert await names(model="runware:100@1") == {"t2i-local", "i2i-local", "video"}
    assert await names(type="image", operation=Operation.TEXT_TO_IMAGE, engine="local") == {"t2i-local"}


async def test_the_created_at_range_includes_from_and_excludes_to(repository: Any) -> None:
    added = [await repository.add(make_generation(i, when=T0 + dt.timedelta(minutes=i))) for i in range(5)]
    window = {"created_from": T0 + dt.timedelta(minutes=1), "created_to": T0 + dt.timedelta(minutes=3)}
    page = await repository.list(HistoryQuery(**window))
    assert [g.id for g in page.items] == [added[2].id, added[1].id]
    assert page.total == 2
    assert await ids(repository, created_from=T0 + dt.timedelta(minutes=4)) == [added[4].id]
    assert await ids(repository, created_to=T0 + dt.timedelta(minutes=1)) == [added[0].id]
    in_paris = dt.timezone(dt.timedelta(hours=1))
    assert await ids(repository, created_from=(T0 + dt.timedelta(minutes=4)).astimezone(in_paris)) == [
        added[4].id
    ]


async def test_search_finds_every_word_in_any_order_ignoring_case_as_whole_words(repository: Any) -> None:
    sunset = await repository.add(
        make_generation(1, prompt="Sunset over the MOUNTAINS, red sky", negative=None)
    )
    city = await repository.add(make_generation(2, prompt="a neon city at night", negative="blurry, red"))
    hyphen = await repository.add(make_generation(3, prompt="text-to-image test of f/1.8 lens"))
    await repository.add(make_generation(4, prompt="an ocean of stars"))

    assert await ids(repository, q="red") == [city.id, sunset.id]
    assert await ids(repository, q="SKY red") == [sunset.id]
    assert await ids(repository, q="mountains SUNSET") == [sunset.id]
    assert await ids(repository, q="Red blurry") == [city.id]
    assert await ids(repository, q="image") == [hyphen.id]
    assert await ids(repository, q="f 1 8") == [hyphen.id]
    assert await ids(repository, q="sun") == []
    assert await ids(repository, q="mountain") == []
    assert await ids(repository, q="red ocean") == []
    page = await repository.list(HistoryQuery(q="red", limit=1))
    assert page.total == 2
    assert [g.id for g in page.items] == [city.id]


async def test_search_combines_with_the_other_filters(repository: Any) -> None:
    await repository.add(make_generation(1, prompt="red fox", engine="local"))
    runware = await repository.add(make_generation(2, prompt="red fox", engine="runware"))
    await repository.add(make_generation(3, prompt="blue fox", engine="runware"))
    page = await repository.list(HistoryQuery(q="fox red", engine="runware"))
    assert [g.id for g in page.items] == [runware.id]
    assert page.total == 1


async def test_search_sees_deletes(repository: Any) -> None:
    generation = await repository.add(make_generation(1, prompt="a lighthouse at dusk"))
    await repository.delete(generation.id)
    assert (await repository.list(HistoryQuery(q="lighthouse"))).total == 0


@pytest.mark.parametrize("q", ["lighthouse", "lighthouse dusk", "Lighthouse café"])
async def test_a_search_counts_every_match_on_any_page_even_an_empty_one(repository: Any, q: str) -> None:
    """One word (PostgreSQL reads a kept count), several, and a word outside ASCII (counted)."""
    for i in range(7):
        await repository.add(make_generation(i, prompt=f"a lighthouse at dusk, café {i}"))
    await repository.add(make_generation(7, prompt="a castle at dusk"))
    everything = await ids(repository, q=q)
    assert len(everything) == 7
    for sort in HistorySort:
        cursor: HistoryCursor | None = None
        seen: list[int] = []
        while True:
            page = await repository.list(HistoryQuery(q=q, limit=3, sort=sort, cursor=cursor))
            assert page.total == 7
            seen += [g.id for g in page.items]
            if page.next_cursor is None:
                break
            cursor = HistoryCursor.decode(page.next_cursor)
        assert sorted(seen) == sorted(everything)
    beyond = await repository.list(HistoryQuery(q=q, limit=3, offset=20))
    assert (beyond.items, beyond.total) == ([], 7)
    last = await repository.get(min(everything))
    assert last is not None
    after_last = HistoryCursor.after(last, HistorySort.NEWEST)
    empty = await repository.list(HistoryQuery(q=q, cursor=after_last))
    assert (empty.items, empty.total) == ([], 7)
    await repository.delete(everything[0])
    assert (await repository.list(HistoryQuery(q=q, limit=1))).total == 6


@pytest.mark.parametrize("sort", list(HistorySort))
async def test_cursor_pages_walk_everything_once_in_order(repository: Any, sort: HistorySort) -> None:
    same_time = T0 + dt.timedelta(hours=1)
    for i in range(7):
        await repository.add(make_generation(i, when=same_time if i in (2, 3, 4) else None))
    expected = await ids(repository, sort=sort)
    seen: list[int] = []
    cursor: HistoryCursor | None = None
    while True:
        page = await repository.list(HistoryQuery(limit=3, sort=sort, cursor=cursor))
        assert page.total == 7
        seen += [g.id for g in page.items]
        if page.next_cursor is None:
            break
        cursor = HistoryCursor.decode(page.next_cursor)
    assert seen == expected


async def test_cursor_pages_stay_stable_while_generations_arrive(repository: Any) -> None:
    older = [await repository.add(make_generation(i)) for i in range(6)]
    first = await repository.list(HistoryQuery(limit=3))
    assert first.next_cursor is not None
    for i in range(6, 9):
        await repository.add(make_generation(i))
    second = await repository.list(HistoryQuery(limit=3, cursor=HistoryCursor.decode(first.next_cursor)))
    assert [g.id for g in second.items] == [older[2].id, older[1].id, older[0].id]
    assert second.total == 9
    assert second.next_cursor is None


async def test_cursor_pages_keep_their_filter(repository: Any) -> None:
    wanted = [await repository.add(make_generation(i, prompt=f"cat number {i}")) for i in range(0, 10, 2)]
    for i in range(1, 10, 2):
        await repository.add(make_generation(i, prompt=f"dog number {i}"))
    page = await repository.list(HistoryQuery(q="cat", limit=2))
    assert page.next_cursor is not None
    rest = await repository.list(
        HistoryQuery(q="cat", limit=10, cursor=HistoryCursor.decode(page.next_cursor))
    )
    assert [g.id for g in page.items + rest.items] == [g.id for g in reversed(wanted)]
    assert rest.total == 5


async def test_settings_start_at_defaults_and_patches_merge(settings_repository: Any) -> None:
    assert await settings_repository.get() == Settings()
    await settings_repository.update(SettingsPatch(default_width=768))
    merged = await settings_repository.update(SettingsPatch(default_steps=40, storage_path="./elsewhere"))
    assert merged == Settings(default_width=768, default_steps=40, storage_path="./elsewhere")
    assert await settings_repository.get() == merged


async def test_embed_metadata_is_kept_as_a_boolean_and_false_is_a_change(settings_repository: Any) -> None:
    assert (await settings_repository.get()).embed_metadata is True
    off = await settings_repository.update(SettingsPatch(embed_metadata=False, default_steps=30))
    assert (off.embed_metadata, off.default_steps) == (False, 30)
    assert await settings_repository.get() == Settings(embed_metadata=False, default_steps=30)
    assert (await settings_repository.update(SettingsPatch(default_width=768))).embed_metadata is False
    with pytest.raises(InvalidParameters):
        await settings_repository.update(SettingsPatch(embed_metadata=1, default_width=1024))  # type: ignore[arg-type]
    assert await settings_repository.get() == Settings(
        embed_metadata=False, default_steps=30, default_width=768
    )


async def test_an_invalid_patch_changes_nothing_anywhere(settings_repository: Any) -> None:
    await settings_repository.update(SettingsPatch(default_width=768))
    with pytest.raises(InvalidParameters):
        await settings_repository.update(SettingsPatch(default_height=100))
    assert await settings_repository.get() == Settings(default_width=768)


async def test_settings_survive_a_new_connection(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'persist.db'}"
    db = SqlDatabase(url)
    db.upgrade_schema()
    await SqlSettingsRepository(db).update(SettingsPatch(default_cfg_scale=12.5))
    db.dispose()
    reopened = SqlDatabase(url)
    reopened.upgrade_schema()
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


async def test_an_unreachable_postgresql_is_database_unavailable() -> None:
    db = SqlDatabase("postgresql://nobody@127.0.0.1:1/none")
    assert db.url.startswith("postgresql+psycopg://")
    with pytest.raises(DatabaseUnavailable):
        await SqlGenerationRepository(db).get(1)
    with pytest.raises(DatabaseUnavailable):
        db.upgrade_schema()
    db.dispose()


# A request value for each declared history filter (by its parameter): a filter added to
# HISTORY_FILTERS without a value here fails below, so no filter goes untested in any repository.
FILTER_SAMPLES: dict[str, str | list[str]] = {
    "type": "image",
    "q": "number",
    "operation": "upscale",
    "engine": "runware",
    "model": "runware:101@1",
    "from": "2026-01-02T10:00:03Z",
    "to": "2026-01-02T10:00:04Z",
    "favorite": "true",
    "tag": ["Sunset ", "BEACH"],
    "sourceId": "7",
}


@pytest.mark.parametrize("declared", HISTORY_FILTERS, ids=lambda f: f.name)
async def test_every_declared_filter_pages_and_counts_as_its_reference_match_says(
    repository: Any, declared: HistoryFilter
) -> None:
    stored = []
    for index in range(6):
        stored.append(
            await repository.add(
                make_generation(
                    index,
                    kind="video" if index == 5 else "image",
                    prompt=f"prompt number {index}" if index % 2 else f"another picture {index}",
                    operation=Operation.UPSCALE if index in (1, 4) else Operation.TEXT_TO_IMAGE,
                    engine="runware" if index < 3 else "local",
                    model="runware:101@1" if index == 2 else "runware:100@1",
                    favorite=index in (1, 2, 4),
                    tags=("sunset", "beach") if index % 2 else ("beach",) if index == 2 else (),
                    # made from generation 7 (kept by id alone: the rows need not exist)
                    source_id=7 if index in (1, 4) else 3 if index == 2 else None,
                    rerun_of=7 if index == 3 else 1 if index == 5 else None,
                )
            )
        )
    query = HistoryQuery.parse(limit=2, **{declared.param: FILTER_SAMPLES[declared.param]})
    assert set(query.active) == {declared.name}
    expected = sorted(
        (g for g in stored if query.matches(g)), key=lambda g: (g.created_at, g.id), reverse=True
    )
    assert 0 < len(expected) < len(stored), "the sample must split the stored generations"
    page = await repository.list(query)
    assert page.total == len(expected)
    assert [g.id for g in page.items] == [g.id for g in expected[:2]]


# --- favourites, tags and notes ---------------------------------------------------------------


async def tag_list(repository: Any, **query: Any) -> list[tuple[str, int]]:
    return [(t.tag, t.count) for t in await repository.count_tags(TagQuery(**query))]


async def test_favourites_tags_and_notes_are_stored_with_a_generation_and_read_back(repository: Any) -> None:
    plain = await repository.add(make_generation(1))
    kept = await repository.add(
        make_generation(2, favorite=True, tags=("sunset", "straße", "日本"), notes="line one\nline two")
    )
    assert (plain.favorite, plain.tags, plain.notes) == (False, (), None)
    assert await repository.get(plain.id) == plain
    assert await repository.get(kept.id) == kept
    assert (await repository.get(kept.id)).tags == ("sunset", "straße", "日本")
    assert await tag_list(repository) == [("straße", 1), ("sunset", 1), ("日本", 1)]


async def test_an_update_changes_only_what_it_names_and_answers_the_generation_as_it_now_is(
    repository: Any,
) -> None:
    generation = await repository.add(make_generation(1, tags=("old",), notes="first"))
    other = await repository.add(make_generation(2, tags=("old",)))

    starred = await repository.update(generation.id, GenerationPatch(favorite=True))
    assert starred == replace(generation, favorite=True)
    retagged = await repository.update(generation.id, GenerationPatch(tags=["Sunset", " beach ", "SUNSET"]))
    assert retagged == replace(generation, favorite=True, tags=("sunset", "beach"))
    cleared = await repository.update(generation.id, GenerationPatch(notes=None, favorite=False))
    assert cleared == replace(generation, tags=("sunset", "beach"), notes=None)
    everything = await repository.update(
        generation.id, GenerationPatch(favorite=True, tags=[], notes="kept for the portfolio")
    )
    assert everything == replace(generation, favorite=True, tags=(), notes="kept for the portfolio")

    assert await repository.get(generation.id) == everything
    assert await repository.get(other.id) == other
    assert await repository.update(999_999, GenerationPatch(favorite=True)) is None
    assert await tag_list(repository) == [("old", 1)]


async def test_tag_counts_follow_adds_updates_and_deletes_and_tags_no_one_carries_go(repository: Any) -> None:
    a = await repository.add(make_generation(1, tags=("sunset", "beach")))
    b = await repository.add(make_generation(2, tags=("sunset",)))
    c = await repository.add(make_generation(3, tags=("city", "sunset")))
    assert await tag_list(repository) == [("sunset", 3), ("beach", 1), ("city", 1)]

    await repository.update(b.id, GenerationPatch(tags=["beach", "night"]))
    assert await tag_list(repository) == [("beach", 2), ("sunset", 2), ("city", 1), ("night", 1)]
    await repository.update(b.id, GenerationPatch(tags=["night", "beach"]))  # the same set: no change
    assert await tag_list(repository) == [("beach", 2), ("sunset", 2), ("city", 1), ("night", 1)]
    await repository.delete(c.id)
    assert await tag_list(repository) == [("beach", 2), ("night", 1), ("sunset", 1)]
    await repository.update(a.id, GenerationPatch(tags=[]))
    assert await tag_list(repository) == [("beach", 1), ("night", 1)]
    assert await ids(repository, tags=("sunset",)) == []
    await repository.delete(b.id)
    assert await tag_list(repository) == []


async def test_the_tag_list_is_most_used_first_ties_by_name_with_a_prefix_and_a_limit(
    repository: Any,
) -> None:
    spread = {"sunset": 4, "sun": 2, "beach": 2, "Zebra": 2, "ábside": 2, "city": 1, "sunrise": 1}
    index = 0
    for tag, count in spread.items():
        for _ in range(count):
            index += 1
            await repository.add(make_generation(index, tags=(tag.casefold(),)))
    assert await tag_list(repository) == [
        ("sunset", 4),
        ("beach", 2),
        ("sun", 2),
        ("zebra", 2),
        ("ábside", 2),  # code point order: "á" after every ASCII letter
        ("city", 1),
        ("sunrise", 1),
    ]
    assert await tag_list(repository, limit=2) == [("sunset", 4), ("beach", 2)]
    assert await tag_list(repository, prefix="SUN") == [("sunset", 4), ("sun", 2), ("sunrise", 1)]
    assert await tag_list(repository, prefix="sunr") == [("sunrise", 1)]
    assert await tag_list(repository, prefix="Á") == [("ábside", 2)]
    assert await tag_list(repository, prefix="%") == []
    assert await tag_list(repository, prefix="_un") == []


async def _walk(repository: Any, **query: Any) -> tuple[list[int], set[int]]:
    """Every page of ``query`` by cursor (pages of 2): the ids in order, and every total seen."""
    seen: list[int] = []
    totals: set[int] = set()
    cursor: HistoryCursor | None = None
    while True:
        page = await repository.list(HistoryQuery(limit=2, cursor=cursor, **query))
        seen += [g.id for g in page.items]
        totals.add(page.total)
        if page.next_cursor is None:
            return seen, totals
        cursor = HistoryCursor.decode(page.next_cursor)


@pytest.mark.parametrize("sort", list(HistorySort))
async def test_tag_and_favourite_filters_page_by_cursor_combine_and_count_exactly(
    repository: Any, sort: HistorySort
) -> None:
    same_time = T0 + dt.timedelta(hours=1)
    made = []
    for i in range(12):
        made.append(
            await repository.add(
                make_generation(
                    i,
                    when=same_time if i in (4, 5, 6) else None,
                    prompt="a red fox" if i % 3 == 0 else "a quiet lake",
                    engine="runware" if i % 2 else "local",
                    favorite=i % 4 == 1,
                    tags=tuple(
                        t for t, every in (("sunset", 1), ("beach", 2), ("night", 3)) if i % every == 0
                    ),
                )
            )
        )
    await repository.add(make_generation(20, tags=("other",)))
    everything = [*made, await repository.get(made[-1].id + 1)]

    cases: list[dict[str, Any]] = [
        {"tags": ("sunset",)},
        {"tags": ("beach",)},
        {"tags": ("night", "beach")},
        {"tags": ("beach", "night", "sunset")},
        {"tags": ("beach",), "engine": "local"},
        {"tags": ("sunset",), "favorite": True},
        {"tags": ("night",), "q": "fox"},
        {"tags": ("sunset",), "created_from": T0 + dt.timedelta(seconds=3), "created_to": same_time},
        {"tags": ("beach",), "created_from": same_time},
        {"tags": ("nobody",)},
        {"tags": ("beach", "nobody")},
        {"favorite": True},
        {"favorite": False},
        {"favorite": False, "engine": "runware"},
        {"favorite": True, "q": "lake"},
    ]
    for case in cases:
        query = HistoryQuery(sort=sort, **case)
        expected = sorted(
            (g.id for g in everything if query.matches(g)),
            key=lambda i: next(query.sort_key(g) for g in everything if g.id == i),
            reverse=sort is HistorySort.NEWEST,
        )
        seen, totals = await _walk(repository, sort=sort, **case)
        assert seen == expected, case
        assert totals == {len(expected)}, case
        offset_page = await repository.list(HistoryQuery(sort=sort, offset=1, limit=3, **case))
        assert [g.id for g in offset_page.items] == expected[1:4], case
        assert offset_page.total == len(expected), case
    assert await ids(repository, tags=("SUNSET ",)) == await ids(repository, tags=("sunset",))


async def test_a_cursor_page_after_the_last_tagged_generation_is_empty_but_counts(repository: Any) -> None:
    tagged = [await repository.add(make_generation(i, tags=("sunset",))) for i in range(3)]
    after_last = HistoryCursor.after(tagged[0], HistorySort.NEWEST)
    page = await repository.list(HistoryQuery(tags=("sunset",), cursor=after_last))
    assert (page.items, page.total, page.next_cursor) == ([], 3, None)


async def test_add_many_writes_a_batch_in_order_and_returns_it_with_ids(repository: Any) -> None:
    before = await repository.add(make_generation(1))
    batch = await repository.add_many([make_generation(i) for i in (2, 3, 4)])
    assert [g.prompt for g in batch] == ["prompt number 2", "prompt number 3", "prompt number 4"]
    assert [g.id for g in batch] == sorted(g.id for g in batch)
    assert batch[0].id > before.id
    for generation in batch:
        assert await repository.get(generation.id) == generation
    assert (await repository.list(HistoryQuery())).total == 4


async def test_add_many_is_all_or_nothing(repository: Any) -> None:
    """A batch whose third row the database refuses leaves none of its rows (one transaction)."""
    kept = await repository.add(make_generation(1))
    if isinstance(repository, InMemoryGenerationRepository):
        repository.fail_adds = DatabaseUnavailable("gone")
        bad = make_generation(4)
    else:
        bad = dataclasses.replace(make_generation(4), width=None)  # NOT NULL: refused by the database
    with pytest.raises(Exception):  # noqa: B017, PT011 - the database's own error
        await repository.add_many([make_generation(2), make_generation(3), bad])
    page = await repository.list(HistoryQuery())
    assert [g.id for g in page.items] == [kept.id]
    assert page.total == 1
    assert await repository.get_by_key(make_generation(2).image.key) is None
