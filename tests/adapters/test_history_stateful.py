"""A Hypothesis state machine drives the history (add, list with filters and cursors, delete,
favourite, tag and untag, the tag list, what was made from an image) against a plain in-memory
model, on the fake, a SQLite file and a PostgreSQL schema.

The model is a dict of the generations that should exist; what a query should answer is worked
out from it with the rules ``HistoryQuery`` documents (``matches``, ``sort_key``,
``follows_cursor``, ``page``), so every repository must agree with those rules, row for row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from imagestudio.adapters.sql import SqlDatabase, SqlGenerationRepository
from imagestudio.domain.model import (
    Generation,
    GenerationPatch,
    HistoryCursor,
    HistoryPage,
    HistoryQuery,
    HistorySort,
    Operation,
    TagCount,
    TagQuery,
)
from tests.adapters.test_repository_contract import T0, make_generation
from tests.databases import PostgresServer
from tests.fakes import InMemoryGenerationRepository

WORDS = [
    "red",
    "Red",
    "sunset",
    "sun",
    "SUNNY",
    "city",
    "neon",
    "text-to-image",
    "4k",
    "f/1.8",
    "café",
    "Été",
]
SEARCHES = [
    "red",
    "sun",
    "SUNSET red",
    "city",
    "neon city",
    "image text",
    "4K",
    "f 1",
    "caf",
    "café",
    "ÉTÉ",
    "zzz",
]
MODELS = ["runware:100@1", "civitai:4384@128713", None]
TAGS = ["sunset", "beach", "night", "strasse", "日本"]
"""Tags in their stored form (``Straße`` is stored ``strasse``)."""
TAG_FILTERS = [("SUNSET ",), ("beach",), ("Straße", "night"), ("nobody",), ("beach", "sunset"), ("日本",)]
TAG_PREFIXES = [None, "s", "SU", "n", "zz", "日"]
SOURCES = [1, 2, 3]

prompts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)
minutes = st.integers(min_value=0, max_value=6)
specs = st.fixed_dictionaries(
    {
        "prompt": prompts,
        "negative": st.none() | prompts,
        "minute": minutes,
        "kind": st.sampled_from(["image", "image", "video"]),
        "operation": st.sampled_from(Operation),
        "engine": st.sampled_from(["local", "runware"]),
        "model": st.sampled_from(MODELS),
        "favorite": st.sampled_from([False, False, True]),
        "tags": st.lists(st.sampled_from(TAGS), max_size=3, unique=True).map(tuple),
        # ids of generations (there or not) this one was made from, or re-ran
        "source_id": st.sampled_from([None, None, *SOURCES]),
        "rerun_of": st.sampled_from([None, None, *SOURCES]),
    }
)


def rarely(values: list[Any]) -> st.SearchStrategy[Any]:
    """``None`` (no filter) most of the time, else one of ``values``: most lists then match something."""
    return st.sampled_from([None] * (2 * len(values)) + values)


@st.composite
def queries(draw: st.DrawFn, *, cursor: bool = True) -> HistoryQuery:
    sort = draw(st.sampled_from(HistorySort))
    start = draw(rarely(list(range(7))))
    span = draw(st.none() | st.integers(min_value=0, max_value=4))
    after = None
    if cursor and draw(st.booleans()):
        when = T0 + dt.timedelta(minutes=draw(minutes))
        after = HistoryCursor(sort=sort, created_at=when, id=draw(st.integers(0, 40)))
    return HistoryQuery(
        limit=draw(st.integers(min_value=1, max_value=6)),
        offset=0 if after else draw(st.integers(min_value=0, max_value=3)),
        type=draw(rarely(["image", "video"])),
        q=draw(rarely(SEARCHES)),
        operation=draw(rarely(list(Operation))),
        engine=draw(rarely(["local", "runware"])),
        model=draw(rarely([m for m in MODELS if m])),
        created_from=None if start is None else T0 + dt.timedelta(minutes=start),
        created_to=None if start is None or span is None else T0 + dt.timedelta(minutes=start + span),
        favorite=draw(rarely([True, False])),
        tags=draw(rarely(TAG_FILTERS)) or (),
        source_id=draw(rarely([*SOURCES, 4])),
        sort=sort,
        cursor=after,
    )


def expected_page(model: dict[int, Generation], query: HistoryQuery) -> HistoryPage:
    matching = sorted(
        (g for g in model.values() if query.matches(g)),
        key=query.sort_key,
        reverse=query.sort is HistorySort.NEWEST,
    )
    after = [g for g in matching if query.follows_cursor(g)]
    return query.page(after[query.offset : query.offset + query.limit + 1], total=len(matching))


class HistoryMachine(RuleBasedStateMachine):
    """Subclassed per database: ``open_repository`` yields a repository on a fresh, empty database."""

    open_repository: Callable[[], AbstractContextManager[Any]]

    def __init__(self) -> None:
        super().__init__()
        self.resources = ExitStack()
        self.portal: BlockingPortal = self.resources.enter_context(start_blocking_portal("asyncio"))
        self.repository = self.resources.enter_context(type(self).open_repository())
        self.model: dict[int, Generation] = {}
        self.highest_id = 0
        self.serial = 0

    def call(self, method: Callable[..., Any], *args: Any) -> Any:
        return self.portal.call(method, *args)

    def _add(self, spec: dict[str, Any]) -> None:
        self.serial += 1
        minute = spec.pop("minute")
        generation = make_generation(self.serial, when=T0 + dt.timedelta(minutes=minute), **spec)
        stored = self.call(self.repository.add, generation)
        assert stored.id > self.highest_id, "ids only grow, and are never handed out twice"
        self.highest_id = stored.id
        assert stored == generation.with_id(stored.id)
        self.model[stored.id] = stored

    @initialize(specs=st.lists(specs, max_size=14))
    def fill(self, specs: list[dict[str, Any]]) -> None:
        for spec in specs:
            self._add(spec)

    @rule(spec=specs)
    def add(self, spec: dict[str, Any]) -> None:
        self._add(spec)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def delete_one(self, data: st.DataObject) -> None:
        generation_id = data.draw(st.sampled_from(sorted(self.model)))
        assert self.call(self.repository.delete, generation_id) == self.model.pop(generation_id)
        assert self.call(self.repository.delete, generation_id) is None

    def _update(self, generation_id: int, patch: GenerationPatch) -> None:
        updated = self.call(self.repository.update, generation_id, patch)
        assert updated == patch.apply(self.model[generation_id])
        self.model[generation_id] = updated

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), favorite=st.booleans(), notes=st.none() | st.sampled_from(["mine", "a\nb"]))
    def favourite(self, data: st.DataObject, favorite: bool, notes: str | None) -> None:
        generation_id = data.draw(st.sampled_from(sorted(self.model)))
        self._update(generation_id, GenerationPatch(favorite=favorite, notes=notes))

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), tag=st.sampled_from([*TAGS, "Sunset", " NIGHT ", "Straße"]))
    def tag(self, data: st.DataObject, tag: str) -> None:
        generation_id = data.draw(st.sampled_from(sorted(self.model)))
        self._update(generation_id, GenerationPatch(tags=[*self.model[generation_id].tags, tag]))

    @precondition(lambda self: any(g.tags for g in self.model.values()))
    @rule(data=st.data())
    def untag(self, data: st.DataObject) -> None:
        generation_id = data.draw(st.sampled_from(sorted(i for i, g in self.model.items() if g.tags)))
        tags = list(self.model[generation_id].tags)
        tags.remove(data.draw(st.sampled_from(tags)))
        self._update(generation_id, GenerationPatch(tags=tags))

    @rule(generation_id=st.integers(min_value=1, max_value=60))
    def update_a_missing_one(self, generation_id: int) -> None:
        if generation_id not in self.model:
            assert self.call(self.repository.update, generation_id, GenerationPatch(favorite=True)) is None

    @rule(prefix=st.sampled_from(TAG_PREFIXES), limit=st.integers(min_value=1, max_value=6))
    def list_the_tags(self, prefix: str | None, limit: int) -> None:
        query = TagQuery(prefix=prefix, limit=limit)
        counts: dict[str, int] = {}
        for generation in self.model.values():
            for tag in generation.tags:
                counts[tag] = counts.get(tag, 0) + 1
        ordered = sorted((t for t in counts.items() if query.matches(t[0])), key=lambda t: (-t[1], t[0]))
        expected = [TagCount(tag=tag, count=count) for tag, count in ordered[:limit]]
        assert self.call(self.repository.count_tags, query) == expected

    @rule(generation_id=st.integers(min_value=1, max_value=60))
    def get(self, generation_id: int) -> None:
        assert self.call(self.repository.get, generation_id) == self.model.get(generation_id)

    @rule(query=queries(), data=st.data())
    def list_a_page(self, query: HistoryQuery, data: st.DataObject) -> None:
        if query.cursor is not None and self.model and data.draw(st.booleans()):
            # a cursor right on an existing generation, as nextCursor always is
            mark = self.model[data.draw(st.sampled_from(sorted(self.model)))]
            query = _with(query, HistoryCursor.after(mark, query.sort))
        page = self.call(self.repository.list, query)
        expected = expected_page(self.model, query)
        assert [g.id for g in page.items] == [g.id for g in expected.items]
        assert page.items == expected.items
        assert page.total == expected.total
        assert page.next_cursor == expected.next_cursor

    @rule(query=queries(cursor=False))
    def walk_every_page(self, query: HistoryQuery) -> None:
        seen: list[int] = []
        cursor: HistoryCursor | None = None
        for _ in range(len(self.model) + 2):
            page = self.call(self.repository.list, _with(query, cursor))
            seen += [g.id for g in page.items]
            if page.next_cursor is None:
                break
            cursor = HistoryCursor.decode(page.next_cursor)
        everything = expected_page(self.model, _with(query, None, limit=500))
        assert seen == [g.id for g in everything.items]

    @rule(
        tags=st.sampled_from(TAG_FILTERS),
        favorite=rarely([True, False]),
        sort=st.sampled_from(HistorySort),
        limit=st.integers(min_value=1, max_value=3),
    )
    def walk_a_tag(self, tags: tuple[str, ...], favorite: bool | None, sort: HistorySort, limit: int) -> None:
        """Tags (and favourites) alone, every page by cursor: the plans that walk ``generation_tags``."""
        query = HistoryQuery(tags=tags, favorite=favorite, sort=sort, limit=limit)
        everything = expected_page(self.model, _with(query, None, limit=500))
        seen: list[int] = []
        cursor: HistoryCursor | None = None
        for _ in range(len(self.model) + 2):
            page = self.call(self.repository.list, _with(query, cursor))
            assert page.total == everything.total
            seen += [g.id for g in page.items]
            if page.next_cursor is None:
                break
            cursor = HistoryCursor.decode(page.next_cursor)
        assert seen == [g.id for g in everything.items]

    @rule(
        source_id=st.sampled_from(SOURCES),
        tags=rarely(TAG_FILTERS),
        operation=rarely(list(Operation)),
        sort=st.sampled_from(HistorySort),
        limit=st.integers(min_value=1, max_value=3),
    )
    def walk_a_lineage(
        self,
        source_id: int,
        tags: tuple[str, ...] | None,
        operation: Operation | None,
        sort: HistorySort,
        limit: int,
    ) -> None:
        """What was made from one image (with a tag or an operation, now and then), every page by
        cursor, each page with the whole total."""
        query = HistoryQuery(
            source_id=source_id, tags=tags or (), operation=operation, sort=sort, limit=limit
        )
        everything = expected_page(self.model, _with(query, None, limit=500))
        seen: list[int] = []
        cursor: HistoryCursor | None = None
        for _ in range(len(self.model) + 2):
            page = self.call(self.repository.list, _with(query, cursor))
            assert page.total == everything.total
            seen += [g.id for g in page.items]
            if page.next_cursor is None:
                break
            cursor = HistoryCursor.decode(page.next_cursor)
        assert seen == [g.id for g in everything.items]

    @invariant()
    def totals_match(self) -> None:
        assert self.call(self.repository.list, HistoryQuery(limit=1)).total == len(self.model)

    @rule(kind=st.sampled_from(["image", "video"]))
    def count_a_type(self, kind: str) -> None:
        expected = sum(1 for g in self.model.values() if g.type == kind)
        assert self.call(self.repository.list, HistoryQuery(limit=1, type=kind)).total == expected

    def teardown(self) -> None:
        self.resources.close()


def _with(query: HistoryQuery, cursor: HistoryCursor | None, *, limit: int | None = None) -> HistoryQuery:
    return HistoryQuery(
        limit=limit or query.limit,
        type=query.type,
        q=query.q,
        operation=query.operation,
        engine=query.engine,
        model=query.model,
        created_from=query.created_from,
        created_to=query.created_to,
        favorite=query.favorite,
        tags=query.tags,
        source_id=query.source_id,
        sort=query.sort,
        cursor=cursor,
    )


def _run(open_repository: Callable[[], AbstractContextManager[Any]], examples: int) -> None:
    machine = type("Machine", (HistoryMachine,), {"open_repository": staticmethod(open_repository)})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_the_fake_follows_the_model() -> None:
    @contextmanager
    def fake() -> Iterator[InMemoryGenerationRepository]:
        yield InMemoryGenerationRepository()

    _run(fake, examples=30)


def test_sqlite_follows_the_model(tmp_path: Path) -> None:
    numbers = iter(range(10_000))

    @contextmanager
    def sqlite() -> Iterator[SqlGenerationRepository]:
        number = next(numbers)
        db = SqlDatabase(f"sqlite:///{tmp_path / f'machine-{number}.db'}")
        db.upgrade_schema()
        try:  # every other database takes the search plan of large histories from 3 matches on
            yield SqlGenerationRepository(db, sort_matches_up_to=3 if number % 2 else None)
        finally:
            db.dispose()

    _run(sqlite, examples=12)


@pytest.mark.postgres
def test_postgresql_follows_the_model(postgres: PostgresServer) -> None:
    @contextmanager
    def postgresql() -> Iterator[SqlGenerationRepository]:
        with postgres.schema() as url:
            db = SqlDatabase(url)
            db.upgrade_schema()
            try:
                yield SqlGenerationRepository(db)
            finally:
                db.dispose()

    _run(postgresql, examples=12)
