"""The history: ``SqlGenerationRepository``, its query plans, and the mappers of its rows.

How the history listing (``HistoryQuery``) is answered:

- order and keyset pagination ride on ``(created_at, id)`` indexes: a plain one, and one behind
  each equality filter (``type``, ``operation``, ``engine``, ``model``); a cursor is a row-value
  comparison ``(created_at, id) < (:at, :id)``, which both databases read as an index range;
- ``q`` is full-text, whole words ANDed: an FTS5 table on SQLite, a generated
  ``tsvector`` column with a GIN index on PostgreSQL (see migration ``0002``);
- ``sourceId`` (the filter ``source``) is ``source_id = :id OR rerun_of = :id``, each column with a
  partial index (migration ``0008``): a union of two short ranges, sorted; on SQLite the other
  equality filters are then tested on those rows rather than driving the page by their indexes;
- ``tag`` drives the page from ``generation_tags``, whose key ``(tag, created_at, generation_id)``
  is the listing order of one tag: the rarest of the filter's tags (``tag_counts`` tells) is the
  range walked, every other tag a lookup of that key, the other filters tested on the row;
- ``total`` reads ``generation_counts`` (kept by triggers) when ``type`` is the only filter; for a
  search alone, SQLite counts in its FTS5 index and PostgreSQL reads the count of a one-word
  search from ``generation_words`` (kept by triggers, migration ``0004``); one tag alone reads
  ``tag_counts`` (migration ``0005``), and ``favorite`` (alone or with ``type``) reads
  ``favorite_counts`` (and ``favorite=false`` is every row less the favourites); otherwise it
  counts the matching rows.

Ids come from the database (SQLite ``AUTOINCREMENT`` under its write lock, a PostgreSQL
sequence), so several processes can add to one history; a delete reports the generation only to
the one caller whose statement removed the row. The mappers at the bottom turn rows into domain
values and back.
"""

from __future__ import annotations

import builtins
import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from types import MappingProxyType
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Integer,
    Select,
    bindparam,
    case,
    column,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection
from sqlmodel import Session

from imagestudio.adapters.sql.database import SqlDatabase
from imagestudio.adapters.sql.tables import COUNTS, FAVORITE_COUNTS, GENERATION_TAGS, GENERATIONS, TAG_COUNTS
from imagestudio.domain.history_query import HISTORY_FILTERS
from imagestudio.domain.model import (
    Generation,
    GenerationPatch,
    HistoryPage,
    HistoryQuery,
    HistorySort,
    Operation,
    Parameters,
    StoredImage,
    TagCount,
    TagQuery,
)

__all__ = ["SqlGenerationRepository"]


class SqlGenerationRepository:
    """``GenerationRepository`` on SQLite or PostgreSQL.

    ``sort_matches_up_to``: the SQLite search plan switch (see ``_SORT_MATCHES_UP_TO``); tests
    lower it to run both plans on small histories.
    """

    def __init__(self, db: SqlDatabase, *, sort_matches_up_to: int | None = None) -> None:
        self._db = db
        self._sort_matches_up_to = _SORT_MATCHES_UP_TO if sort_matches_up_to is None else sort_matches_up_to

    async def add(self, generation: Generation) -> Generation:
        values = _to_values(generation)

        def work(connection: Connection) -> int:
            return int(connection.execute(_INSERT_GENERATION, values).scalar_one())

        new_id = await self._db.write(work)
        return generation.with_id(new_id)

    async def add_many(self, generations: Sequence[Generation]) -> list[Generation]:
        """Every row of a batch in one transaction: all of them, or (on any error) none."""
        rows = [_to_values(generation) for generation in generations]

        def work(connection: Connection) -> list[int]:
            return [int(connection.execute(_INSERT_GENERATION, values).scalar_one()) for values in rows]

        new_ids = await self._db.write(work)
        return [generation.with_id(new_id) for generation, new_id in zip(generations, new_ids, strict=True)]

    async def get(self, generation_id: int) -> Generation | None:
        def work(connection: Connection) -> Generation | None:
            row = connection.execute(_BY_ID, {"id": generation_id}).first()
            return _from_record(row._mapping) if row else None

        return await self._db.read(work)

    async def get_by_key(self, key: str) -> Generation | None:
        def work(connection: Connection) -> Generation | None:
            row = connection.execute(_BY_KEY, {"key": key}).first()
            return _from_record(row._mapping) if row else None

        return await self._db.read(work)

    async def list(self, query: HistoryQuery) -> HistoryPage:
        if query.tags:
            return await self._list_tagged(query)
        sqlite = self._db.is_sqlite
        filters = _parameters(query)
        only_search = set(query.active) == {"search"}
        counted_word = (
            query.terms[0]
            if not sqlite and only_search and len(query.terms) == 1 and _PLAIN_WORD.fullmatch(query.terms[0])
            else None
        )

        def work(connection: Connection) -> HistoryPage:
            matches: int | None = None
            if counted_word is not None:
                # PostgreSQL would visit every matching row to count them; the kept count is exact.
                matches = int(connection.execute(_WORD_COUNT, {"word": counted_word}).scalar_one())
                if matches == 0:
                    return query.page([], 0)
            if sqlite and query.terms:
                # The full-text index alone counts its matches fast; how many there are decides the
                # plan: sort the few, or walk the date index past the many.
                matches = int(
                    connection.execute(_FTS_COUNT, {"fts_query": filters["fts_query"]}).scalar_one()
                )
                if matches == 0:
                    return query.page([], 0)
            walk = sqlite and matches is not None and matches > self._sort_matches_up_to
            # PostgreSQL counts a search by visiting every match: the page comes from that same pass.
            together = not sqlite and bool(query.terms) and matches is None
            page_statement, total_statement = _statements(
                _shape(query, sqlite=sqlite, walk=walk, together=together)
            )
            rows = connection.execute(
                page_statement, {**filters, "limit": query.limit + 1, "offset": query.offset}
            ).all()
            if matches is not None and only_search:
                total = matches
            elif together and rows:
                total = int(rows[0].matches_total)
            else:
                total = int(connection.execute(total_statement, filters).scalar_one())
            return query.page([_from_record(row._mapping) for row in rows], total)

        return await self._db.read(work)

    async def _list_tagged(self, query: HistoryQuery) -> HistoryPage:
        """A page of generations with every tag of ``query``, walked from its rarest tag."""
        sqlite = self._db.is_sqlite
        filters = _parameters(query)
        alone = set(query.active) == {"tag"} and len(query.tags) == 1

        def work(connection: Connection) -> HistoryPage:
            counts = dict(connection.execute(_TAG_TOTALS, {"tags": list(query.tags)}).all())
            if any(counts.get(tag, 0) <= 0 for tag in query.tags):
                return query.page([], 0)
            rarest_first = sorted(query.tags, key=lambda tag: (counts[tag], tag))
            values = {**filters, **{f"tag_{i}": tag for i, tag in enumerate(rarest_first)}}
            page_statement, total_statement = _tagged_statements(
                (sqlite, frozenset(query.active), query.sort, query.cursor is not None, len(query.tags))
            )
            rows = connection.execute(
                page_statement, {**values, "limit": query.limit + 1, "offset": query.offset}
            ).all()
            total = (
                counts[query.tags[0]]
                if alone
                else int(connection.execute(total_statement, values).scalar_one())
            )
            return query.page([_from_record(row._mapping) for row in rows], total)

        return await self._db.read(work)

    async def update(self, generation_id: int, patch: GenerationPatch) -> Generation | None:
        values = {name: list(value) if name == "tags" else value for name, value in patch.changes().items()}
        statement = (
            update(GENERATIONS)
            .where(GENERATIONS.c.id == _id(generation_id))
            .values(**values)
            .returning(GENERATIONS)
        )

        def work(session: Session) -> Generation | None:
            # one statement: the row and, by the triggers, its tag rows and the counts, or nothing
            row = session.connection().execute(statement).first()
            return _from_record(row._mapping) if row else None

        return await self._db.run(work)

    async def count_tags(self, query: TagQuery) -> builtins.list[TagCount]:
        statement = _tag_list(self._db.is_sqlite, query.prefix is not None)
        values: dict[str, Any] = {"limit": query.limit, "prefix": query.prefix}

        def work(connection: Connection) -> builtins.list[TagCount]:
            rows = connection.execute(statement, values).all()
            return [TagCount(tag=tag, count=int(total)) for tag, total in rows]

        return await self._db.read(work)

    async def delete(self, generation_id: int) -> Generation | None:
        def work(session: Session) -> Generation | None:
            connection = session.connection()
            row = connection.execute(
                select(GENERATIONS).where(GENERATIONS.c.id == _id(generation_id))
            ).first()
            if row is None:
                return None
            removed = connection.execute(delete(GENERATIONS).where(GENERATIONS.c.id == _id(generation_id)))
            if removed.rowcount != 1:  # another process deleted it in between: its delete, not ours
                return None
            return _from_record(row._mapping)

        return await self._db.run(work)

    async def relocate_roots(self, canonical: Callable[[str], str]) -> int:
        """Rewrite every row's storage root into the form ``canonical`` gives it (the storage's
        own name for that folder) and return how many rows changed.

        The distinct roots are read first (a handful: one per storage folder ever used) and only
        the roots that change are written, each in one statement, all in one transaction; a
        history already in that form is read and left alone.
        """

        def distinct(connection: Connection) -> builtins.list[str]:
            return [str(root) for root in connection.execute(_ROOTS).scalars()]

        moves = {old: new for old in await self._db.read(distinct) if (new := canonical(old)) != old}
        if not moves:
            return 0

        def work(session: Session) -> int:
            connection = session.connection()
            return sum(
                connection.execute(_RELOCATE, {"old": old, "new": new}).rowcount for old, new in moves.items()
            )

        return await self._db.run(work)


# The statements of a listing depend only on which filters are set (its "shape"): they are built
# once per shape, with bound parameters for the values, since building SQLAlchemy expressions
# costs more than running these queries.
_Shape = tuple[bool, frozenset[str], HistorySort, bool, bool, bool, bool]

_SORT_MATCHES_UP_TO = 2000
"""SQLite search: up to this many matches, the page sorts them (a row lookup each); beyond, it
walks the ``(created_at, id)`` index from the top and keeps the rows whose id is among them,
which stops after ``limit`` hits (about ``limit * rows / matches`` steps)."""

# Ids are compared as 64-bit integers: the id column is narrower on PostgreSQL, which would refuse
# a bigger id ("integer out of range") where it simply names no generation.
_BY_ID = select(GENERATIONS).where(GENERATIONS.c.id == bindparam("id", type_=BigInteger))


def _id(generation_id: int) -> ColumnElement[int]:
    return literal(generation_id, BigInteger)


_BY_KEY = select(GENERATIONS).where(GENERATIONS.c.file_key == bindparam("key"))
_ROOTS = select(GENERATIONS.c.storage_root).distinct()
_RELOCATE = (
    update(GENERATIONS)
    .where(GENERATIONS.c.storage_root == bindparam("old"))
    .values(storage_root=bindparam("new"))
)
# built once: a statement built per call costs its cache key on every generation
_INSERT_GENERATION = insert(GENERATIONS).returning(GENERATIONS.c.id)
_FTS_COUNT = text("SELECT count(*) FROM generations_fts WHERE generations_fts MATCH :fts_query")
_WORD_COUNT = text("SELECT coalesce((SELECT total FROM generation_words WHERE word = :word), 0)")
_PLAIN_WORD = re.compile(r"[a-z0-9]+")
"""Search terms that PostgreSQL's parser takes as one token of the same text, so one word of
``generation_words``: lower-case ASCII letters and digits (other terms are counted row by row)."""


def _shape(query: HistoryQuery, *, sqlite: bool, walk: bool = False, together: bool = False) -> _Shape:
    names = frozenset(query.active)
    return sqlite, names, query.sort, query.cursor is not None, query.filters_only_kept, walk, together


def _parameters(query: HistoryQuery) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in query.active.items():
        if name == "search":
            values["fts_query"] = " AND ".join(f'"{term}"' for term in value)
            values["ts_query"] = " & ".join(value)
        elif name == "tag":
            continue  # bound by the rarest first: see _list_tagged
        else:
            values[name] = value.value if isinstance(value, Enum) else value
    if query.cursor is not None:
        values["cursor_at"] = query.cursor.created_at
        values["cursor_id"] = query.cursor.id
    return values


@functools.lru_cache(maxsize=512)
def _statements(shape: _Shape) -> tuple[Select[Any], Select[Any]]:
    """The page query and the total query of one shape of listing.

    ``together`` (PostgreSQL searches): the page query also counts, in a ``matches_total`` column.
    The matching rows' ``(id, created_at)`` are gathered once (GIN bitmap, then a visit of each
    row, which counting needs anyway), counted, and the page is the top of them; counting apart
    would evaluate the search twice. The total query stays for an empty page (no row to carry it).
    """
    sqlite, names, sort, has_cursor, kept_count, walk, together = shape
    g = GENERATIONS.c
    searching = sqlite and "search" in names
    # SQLite without statistics would drive a search through the index of an equality filter
    # (half the rows for engine=runware) and test each row against the matches; with the few
    # matches already counted, driving from them is far cheaper. A unary + keeps an index out.
    # What was made from one image is a few rows: SQLite without statistics would rather walk the
    # index of another equality filter (every favorite=false row), so the lineage indexes drive.
    driver = "source" if sqlite and "source" in names else None
    where = _plain_filters(names, unindexed=searching and not walk, driver=driver)
    counted = _plain_filters(names, unindexed=searching, driver=driver)
    if "search" in names:
        where.append(_search(sqlite=sqlite, walk=walk))
        counted.append(_search(sqlite=sqlite, walk=False))

    key = tuple_(g.created_at, g.id)
    mark = tuple_(bindparam("cursor_at", type_=g.created_at.type), bindparam("cursor_id", type_=Integer))
    after = [key < mark if sort is HistorySort.NEWEST else key > mark] if has_cursor else []
    order = (g.created_at.desc(), g.id.desc()) if sort is HistorySort.NEWEST else (g.created_at, g.id)
    page = (
        select(GENERATIONS)
        .where(*where, *after)
        .order_by(*order)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    if together:
        matches = select(g.id, g.created_at).where(*counted).cte("matches").prefix_with("MATERIALIZED")
        m = matches.c
        mark_m = tuple_(m.created_at, m.id)
        after_m = [mark_m < mark if sort is HistorySort.NEWEST else mark_m > mark] if has_cursor else []
        order_m = (m.created_at.desc(), m.id.desc()) if sort is HistorySort.NEWEST else (m.created_at, m.id)
        chosen = (
            select(m.id)
            .where(*after_m)
            .order_by(*order_m)
            .limit(bindparam("limit", type_=Integer))
            .offset(bindparam("offset", type_=Integer))
        )
        counting = select(func.count()).select_from(matches).scalar_subquery().label("matches_total")
        page = select(GENERATIONS, counting).where(g.id.in_(chosen)).order_by(*order)
    if kept_count and "favorite" in names:
        total = _kept_favourites_total(by_type="type" in names)
    elif kept_count:
        total = select(func.coalesce(func.sum(COUNTS.c.total), 0))
        if "type" in names:
            total = total.where(COUNTS.c.type == bindparam("type"))
    else:
        total = select(func.count()).select_from(GENERATIONS).where(*counted)
    return page, total


_COMPARISONS: Final[Mapping[str, tuple[tuple[Column[Any], ...], str]]] = MappingProxyType(
    {
        "type": ((GENERATIONS.c.type,), "="),
        "operation": ((GENERATIONS.c.operation,), "="),
        "engine": ((GENERATIONS.c.engine,), "="),
        "model": ((GENERATIONS.c.model,), "="),
        "created_from": ((GENERATIONS.c.created_at,), ">="),
        "created_to": ((GENERATIONS.c.created_at,), "<"),
        "favorite": ((GENERATIONS.c.favorite,), "="),
        # each column has its partial index (migration 0008): the OR is a union of two index ranges
        "source": ((GENERATIONS.c.source_id, GENERATIONS.c.rerun_of), "="),
    }
)
"""The clause of every history filter but ``search`` (:func:`_search`) and ``tag``
(:func:`_tagged_statements`), by the filter's name: the columns compared with the filter's value
(any one of them matching), and how."""
_SQL_FILTERS: Final = frozenset({*_COMPARISONS, "search", "tag"})
if {declared.name for declared in HISTORY_FILTERS} != _SQL_FILTERS:  # pragma: no cover - a build error
    raise ImportError(f"the SQL history covers {sorted(_SQL_FILTERS)}, not every declared history filter")


def _kept_favourites_total(*, by_type: bool) -> Select[Any]:
    """The total of ``favorite=`` (and ``type=``) from the kept counts: the favourites, or every
    generation less them."""

    def kept(table: Any) -> Any:
        summed = select(func.coalesce(func.sum(table.c.total), 0))
        return (summed.where(table.c.type == bindparam("type")) if by_type else summed).scalar_subquery()

    favourites = kept(FAVORITE_COUNTS)
    wanted = bindparam("favorite", type_=GENERATIONS.c.favorite.type)
    return select(case((wanted, favourites), else_=kept(COUNTS) - favourites))


# --- tags -----------------------------------------------------------------------------------

_TAG_TOTALS = select(TAG_COUNTS.c.tag, TAG_COUNTS.c.total).where(
    TAG_COUNTS.c.tag.in_(bindparam("tags", expanding=True))
)
_DATES: Final = {"created_from", "created_to"}

_TaggedShape = tuple[bool, frozenset[str], HistorySort, bool, int]


@functools.lru_cache(maxsize=256)
def _tagged_statements(shape: _TaggedShape) -> tuple[Select[Any], Select[Any]]:
    """The page query and the total query of a listing with ``tags`` tags (bound as ``tag_0``,
    ``tag_1``, ..., the rarest first).

    The page walks the key of ``generation_tags`` from ``(tag_0, cursor)`` in listing order: the
    dates and the cursor are ranges of that key, every other tag a lookup of the same key, and
    the other filters are tested on the generation the walk reaches. On SQLite every other filter
    reads the row (a unary ``+`` or the search's ``+id IN``), so that the walk always drives; a
    search's matches are a set each row is looked up in. The total counts the same rows, without
    reading ``generations`` when only tags and dates are set.
    """
    sqlite, names, sort, has_cursor, tags = shape
    t0 = GENERATION_TAGS.alias("t0")
    where: list[ColumnElement[bool]] = [t0.c.tag == bindparam("tag_0")]
    probes: list[ColumnElement[bool]] = []
    for index in range(1, tags):
        other = GENERATION_TAGS.alias(f"t{index}")
        where.append(
            exists().where(
                other.c.tag == bindparam(f"tag_{index}"),
                other.c.created_at == t0.c.created_at,
                other.c.generation_id == t0.c.generation_id,
            )
        )
        # PostgreSQL turns an EXISTS into a join it cannot estimate (two tags of one generation are
        # not independent), then sorts every match for one page; an OFFSET keeps it a lookup per
        # row of the walk, which stops at the page's end
        probes.append(
            select(literal(1))
            .where(
                other.c.tag == bindparam(f"tag_{index}"),
                other.c.created_at == t0.c.created_at,
                other.c.generation_id == t0.c.generation_id,
            )
            .offset(0)
            .exists()
        )
    if "created_from" in names:
        where.append(t0.c.created_at >= bindparam("created_from", type_=t0.c.created_at.type))
    if "created_to" in names:
        where.append(t0.c.created_at < bindparam("created_to", type_=t0.c.created_at.type))
    on_rows = _plain_filters(names - _DATES, unindexed=sqlite)
    if "search" in names:
        on_rows.append(_search(sqlite=sqlite, walk=True))

    key = tuple_(t0.c.created_at, t0.c.generation_id)
    mark = tuple_(bindparam("cursor_at", type_=t0.c.created_at.type), bindparam("cursor_id", type_=Integer))
    after = [key < mark if sort is HistorySort.NEWEST else key > mark] if has_cursor else []
    newest = sort is HistorySort.NEWEST
    order = (
        (t0.c.created_at.desc(), t0.c.generation_id.desc())
        if newest
        else (t0.c.created_at, t0.c.generation_id)
    )
    joined = t0.join(GENERATIONS, GENERATIONS.c.id == t0.c.generation_id)
    walked = where if sqlite else [where[0], *probes, *where[tags:]]
    page = (
        select(GENERATIONS)
        .select_from(joined)
        .where(*walked, *on_rows, *after)
        .order_by(*order)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    total = select(func.count()).select_from(joined if on_rows else t0).where(*where, *on_rows)
    return page, total


@functools.lru_cache(maxsize=8)
def _tag_list(sqlite: bool, prefixed: bool) -> Select[Any]:
    """The tag list: most used first, ties by the tag in code point order (PostgreSQL's ``"C"``
    collation; SQLite compares text that way), only tags that start with ``prefix`` if
    ``prefixed``. A few thousand tags are sorted in well under a millisecond: no index serves it."""
    c = TAG_COUNTS.c
    statement = select(c.tag, c.total).where(c.total > 0)
    if prefixed:
        prefix = bindparam("prefix", type_=c.tag.type)
        statement = statement.where(func.substr(c.tag, 1, func.length(prefix)) == prefix)
    name = c.tag if sqlite else c.tag.collate("C")
    return statement.order_by(c.total.desc(), name).limit(bindparam("limit", type_=Integer))


def _plain_filters(
    names: frozenset[str], *, unindexed: bool, driver: str | None = None
) -> list[ColumnElement[bool]]:
    """The clauses of the filters ``names`` of :data:`_COMPARISONS`; ``unindexed``: each with a
    unary ``+`` (SQLite then uses no index for it); ``driver``: the one filter whose index drives
    the query, whatever ``unindexed`` says, every other one unindexed."""
    where: list[ColumnElement[bool]] = []
    for name, (columns, operator) in _COMPARISONS.items():
        if name not in names:
            continue
        value = bindparam(name, type_=columns[0].type)
        if name != driver and (unindexed or driver is not None):
            tests = " OR ".join(f"+generations.{column_.name} {operator} :{name}" for column_ in columns)
            clause = text(f"({tests})" if len(columns) > 1 else tests).bindparams(value)
            where.append(clause)  # type: ignore[arg-type]
            continue
        compared = [
            column_ == value
            if operator == "="
            else (column_ >= value if operator == ">=" else column_ < value)
            for column_ in columns
        ]
        where.append(compared[0] if len(compared) == 1 else or_(*compared))
    return where


def _search(*, sqlite: bool, walk: bool) -> ColumnElement[bool]:
    """Every term is a word of the prompt or negative prompt (terms are letters and digits):
    ``"red" AND "sun"`` for FTS5, ``red & sun`` for ``to_tsquery``.

    ``walk`` (SQLite): the unary ``+`` keeps SQLite from driving the query by the matching ids,
    so that it walks the index of the ORDER BY and tests each row against them instead."""
    if sqlite:
        matching = "SELECT rowid FROM generations_fts WHERE generations_fts MATCH :fts_query"
        if walk:
            return text(f"+generations.id IN ({matching})")  # type: ignore[return-value]
        return GENERATIONS.c.id.in_(text(matching).columns(column("rowid", Integer)))
    return text("generations.search @@ to_tsquery('simple', :ts_query)")  # type: ignore[return-value]


# --- mappers --------------------------------------------------------------------------------


def _parameters_to_json(parameters: Parameters) -> dict[str, Any]:
    return {
        "width": parameters.width,
        "height": parameters.height,
        "steps": parameters.steps,
        "cfgScale": parameters.cfg_scale,
        "seed": parameters.seed,
        "model": parameters.model,
        "engine": parameters.engine,
        "strength": parameters.strength,
        "scale": parameters.scale,
        "sourceId": parameters.source_id,
        **({"providerScale": parameters.provider_scale} if parameters.provider_scale is not None else {}),
    }


def _parameters_from_json(data: dict[str, Any]) -> Parameters:
    return Parameters(
        width=data["width"],
        height=data["height"],
        steps=data.get("steps"),
        cfg_scale=data.get("cfgScale"),
        seed=data.get("seed"),
        model=data.get("model"),
        engine=data.get("engine", "local"),
        strength=data.get("strength"),
        scale=data.get("scale"),
        source_id=data.get("sourceId"),
        provider_scale=data.get("providerScale"),
    )


def _to_values(generation: Generation) -> dict[str, Any]:
    values: dict[str, Any] = {
        "type": generation.type,
        "operation": generation.operation.value,
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "parameters": _parameters_to_json(generation.parameters),
        "seed": generation.seed,
        "width": generation.width,
        "height": generation.height,
        "file_key": generation.image.key,
        "storage_root": generation.image.root,
        "remote_url": generation.remote_url,
        "task_id": generation.task_id,
        "engine": generation.parameters.engine,
        "model": generation.parameters.model,
        "cost": generation.cost,
        "created_at": generation.created_at.astimezone(dt.UTC),
        "favorite": generation.favorite,
        "tags": list(generation.tags),
        "notes": generation.notes,
        "source_id": generation.parameters.source_id,
        "rerun_of": generation.rerun_of,
    }
    if generation.id is not None:
        values["id"] = generation.id
    return values


def _from_record(record: Mapping[Any, Any]) -> Generation:
    created: dt.datetime = record["created_at"]
    created = created if created.tzinfo else created.replace(tzinfo=dt.UTC)
    return Generation(
        id=record["id"],
        type="video" if record["type"] == "video" else "image",
        operation=Operation(record["operation"]),
        prompt=record["prompt"],
        negative_prompt=record["negative_prompt"],
        parameters=_parameters_from_json(record["parameters"]),
        seed=record["seed"],
        width=record["width"],
        height=record["height"],
        image=StoredImage(key=record["file_key"], root=record["storage_root"]),
        remote_url=record["remote_url"],
        task_id=record["task_id"],
        created_at=created.astimezone(dt.UTC),
        cost=record["cost"],
        favorite=bool(record["favorite"]),
        tags=tuple(record["tags"]),
        notes=record["notes"],
        rerun_of=record["rerun_of"],
    )
