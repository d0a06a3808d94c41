"""The history query: which generations a page of history shows, in which order, from where.

:class:`HistoryQuery` (filters, sort, limit, offset or cursor), :class:`HistoryCursor` (the
opaque keyset token), :class:`HistoryPage`, and the readers of search words and timestamps.
Every ``GenerationRepository`` follows the rules of :class:`HistoryQuery`; like every value of
the domain, a query validates itself on construction. Nothing here does I/O.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal

from imagestudio.domain.errors import InvalidParameters
from imagestudio.domain.rules import (
    DEFAULT_TAG_LIST_LIMIT,
    MAX_GENERATION_ID,
    MAX_STORED_TAG_LENGTH,
    MAX_TAG_LIST_LIMIT,
    MAX_TAGS,
    _check_int,
    _check_model,
    check_tags,
    could_begin_a_tag,
)
from imagestudio.domain.values import Generation, Operation, _set

__all__ = [
    "ENGINE_NAME_PATTERN",
    "HISTORY_FILTERS",
    "MAX_HISTORY_LIMIT",
    "MAX_HISTORY_OFFSET",
    "MAX_SEARCH_LENGTH",
    "MAX_SEARCH_TERMS",
    "SEARCH_WORD_PATTERN",
    "HistoryCursor",
    "HistoryFilter",
    "HistoryPage",
    "HistoryQuery",
    "HistorySort",
    "TagCount",
    "TagQuery",
    "cursor_text",
    "parse_timestamp",
    "search_terms",
]

# The limits of a history query, defined here only: the HTTP query parameters are built from them.
MAX_HISTORY_LIMIT: Final = 500
MAX_HISTORY_OFFSET: Final = 2**62
MAX_SEARCH_LENGTH: Final = 200
MAX_SEARCH_TERMS: Final = 16
SEARCH_WORD_PATTERN: Final = r"[^\W_]+"
"""A word of the history search: a run of letters and digits."""
ENGINE_NAME_PATTERN: Final = r"[A-Za-z0-9_.-]{1,32}"
"""An engine's name as the ``engine`` filter takes it, whole (``fullmatch``)."""
_SEARCH_WORD = re.compile(SEARCH_WORD_PATTERN)
_ENGINE_NAME = re.compile(ENGINE_NAME_PATTERN)
_CURSOR_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,120}")
_CURSOR_TEXT = re.compile(r"1:([no]):(-?[0-9]{1,20}):([0-9]{1,19})")
_SPACED_OFFSET = re.compile(r"(T[0-9:.]+) ([0-9]{2}:?[0-9]{2})$")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def search_terms(text: str) -> tuple[str, ...]:
    """The words of ``text`` as the history search sees them: runs of letters and digits, lower-cased.

    ``"Red-Sunset over the_sea, 4K!"`` has the words ``red``, ``sunset``, ``over``, ``the``, ``sea``, ``4k``.
    """
    return tuple(_SEARCH_WORD.findall(text.lower()))


class HistorySort(StrEnum):
    """The order of a history listing: by ``created_at`` and then ``id``."""

    NEWEST = "newest"
    OLDEST = "oldest"


def _enum_value(enum: type[Any], name: str, value: object) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidParameters(f"{name} must be one of {allowed}", field=name) from None


def _utc(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidParameters(f"{name} must be an ISO-8601 date-time", field=name)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_timestamp(name: str, raw: str) -> datetime:
    """An ISO-8601 date or date-time from a request parameter, in UTC (no offset means UTC).

    ``2026-01-02``, ``2026-01-02T10:00:00Z`` and ``2026-01-02T11:00:00+01:00`` are accepted; so is
    an offset whose ``+`` an unencoded query string turned into a space.
    """
    text = _SPACED_OFFSET.sub(r"\1+\2", raw.strip())
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidParameters(
            f"{name} must be an ISO-8601 date or date-time such as 2026-01-02T10:00:00Z", field=name
        ) from None
    return _utc(name, value)


@dataclass(frozen=True, kw_only=True, slots=True)
class HistoryCursor:
    """Where a page of history ended: the sort key ``(created_at, id)`` of its last item.

    Clients see it only as the opaque text of :meth:`encode` (url-safe base64, no padding).
    """

    sort: HistorySort
    created_at: datetime
    id: int

    def __post_init__(self) -> None:
        _set(self, "sort", _enum_value(HistorySort, "sort", self.sort))
        _set(self, "created_at", _utc("cursor", self.created_at))
        _check_int("cursor", self.id, 0, MAX_GENERATION_ID)

    @classmethod
    def after(cls, generation: Generation, sort: HistorySort) -> HistoryCursor:
        """The cursor that continues after ``generation``."""
        assert generation.id is not None
        return cls(sort=sort, created_at=generation.created_at, id=generation.id)

    def encode(self) -> str:
        micros = (self.created_at - _EPOCH) // timedelta(microseconds=1)
        text = f"1:{self.sort.value[0]}:{micros}:{self.id}"
        return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, token: str) -> HistoryCursor:
        """Read a cursor handed out by :meth:`encode`; anything else is ``InvalidParameters``."""
        invalid = _invalid_cursor()
        match = _CURSOR_TEXT.fullmatch(cursor_text(token, _CURSOR_TOKEN))
        if match is None:
            raise invalid
        try:
            created = _EPOCH + timedelta(microseconds=int(match.group(2)))
        except OverflowError:
            raise invalid from None
        ident = int(match.group(3))
        if ident > MAX_GENERATION_ID:
            raise invalid
        sort = HistorySort.NEWEST if match.group(1) == "n" else HistorySort.OLDEST
        return cls(sort=sort, created_at=created, id=ident)


def _invalid_cursor() -> InvalidParameters:
    return InvalidParameters(
        "cursor is not one this server handed out: pass nextCursor back unchanged", field="cursor"
    )


def cursor_text(token: object, shape: re.Pattern[str]) -> str:
    """The text inside an opaque cursor (unpadded URL-safe base64 of ASCII) whose token has
    ``shape``; anything else is ``InvalidParameters`` naming ``cursor``."""
    if not isinstance(token, str) or not shape.fullmatch(token):
        raise _invalid_cursor()
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except ValueError:
        raise _invalid_cursor() from None


@dataclass(frozen=True, kw_only=True, slots=True)
class HistoryQuery:
    """One page of the history and the filter it is drawn from.

    Rules, which every ``GenerationRepository`` follows (the in-memory fake is the reference):
    - order: ``created_at`` and then ``id``, descending for ``sort=newest`` (the default),
      ascending for ``oldest``;
    - filters combine with AND: ``type``, ``operation``, ``engine``, ``model`` and ``favorite``
      match exactly; ``created_from`` is inclusive, ``created_to`` exclusive;
    - ``tags``: the generation carries every one of them (given in any form, matched in the
      stored one: trimmed and case-folded, see ``normalize_tag``);
    - ``source_id``: what was made from that generation: its image-to-images and upscales (their
      ``parameters.source_id``) and its re-runs (their ``rerun_of``);
    - ``q``: every word of it (see :func:`search_terms`) is a word of the prompt or of the
      negative prompt, in any order, ignoring case: ``"SKY red"`` finds "Sunset, red sky". Whole
      words: ``sun`` does not find "Sunset" (full-text search, without stemming);
    - ``cursor`` continues after the item it names (keyset pagination): pages stay stable while
      generations are added; it carries its sort order and cannot be combined with ``offset``;
    - ``total`` counts everything the filter matches, wherever the page is.
    """

    limit: int = 50
    offset: int = 0
    type: Literal["image", "video"] | None = None
    q: str | None = None
    operation: Operation | None = None
    engine: str | None = None
    model: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    favorite: bool | None = None
    tags: tuple[str, ...] = ()
    source_id: int | None = None
    sort: HistorySort = HistorySort.NEWEST
    cursor: HistoryCursor | None = None
    terms: tuple[str, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        _check_int("limit", self.limit, 1, MAX_HISTORY_LIMIT)
        _check_int("offset", self.offset, 0, MAX_HISTORY_OFFSET)
        if self.type is not None and self.type not in ("image", "video"):
            raise InvalidParameters("type must be 'image' or 'video'", field="type")
        self._check_search()
        if self.operation is not None:
            _set(self, "operation", _enum_value(Operation, "operation", self.operation))
        if self.engine is not None and not (
            isinstance(self.engine, str) and _ENGINE_NAME.fullmatch(self.engine)
        ):
            raise InvalidParameters("engine must be 1 to 32 letters, digits, '.', '_' or '-'", field="engine")
        if self.model is not None:
            _check_model(self.model)
        if self.created_from is not None:
            _set(self, "created_from", _utc("from", self.created_from))
        if self.created_to is not None:
            _set(self, "created_to", _utc("to", self.created_to))
        if self.created_from and self.created_to and self.created_from > self.created_to:
            raise InvalidParameters("to must not be earlier than from", field="to")
        if self.favorite is not None and not isinstance(self.favorite, bool):
            raise InvalidParameters("favorite must be true or false", field="favorite")
        _set(self, "tags", check_tags(self.tags, "tag", longest=MAX_STORED_TAG_LENGTH))
        if self.source_id is not None:
            _check_int("sourceId", self.source_id, 1, MAX_GENERATION_ID)
        _set(self, "sort", _enum_value(HistorySort, "sort", self.sort))
        if self.cursor is not None:
            if not isinstance(self.cursor, HistoryCursor):
                raise InvalidParameters("cursor must be a history cursor", field="cursor")
            if self.cursor.sort is not self.sort:
                raise InvalidParameters(
                    f"cursor belongs to sort={self.cursor.sort.value}, not sort={self.sort.value}",
                    field="cursor",
                )
            if self.offset:
                raise InvalidParameters("cursor and offset cannot be combined", field="offset")

    def _check_search(self) -> None:
        if self.q is None:
            return
        if not isinstance(self.q, str):
            raise InvalidParameters("q must be a string", field="q")
        text = self.q.strip()
        if not text:
            _set(self, "q", None)
            return
        if len(text) > MAX_SEARCH_LENGTH:
            raise InvalidParameters(f"q must be at most {MAX_SEARCH_LENGTH} characters", field="q")
        terms = tuple(dict.fromkeys(search_terms(text)))
        if not terms:
            raise InvalidParameters("q must contain at least one letter or digit", field="q")
        # the limit counts the words as written (what the documented pattern counts): lower-casing
        # can split one ("İx" becomes "i", "x"), and the limit must not refuse what the pattern allows
        if len({word.lower() for word in _SEARCH_WORD.findall(text)}) > MAX_SEARCH_TERMS:
            raise InvalidParameters(f"q must have at most {MAX_SEARCH_TERMS} words", field="q")
        _set(self, "q", text)
        _set(self, "terms", terms)

    @classmethod
    def parse(
        cls,
        *,
        limit: int = 50,
        offset: int = 0,
        sort: str | None = None,
        cursor: str | None = None,
        **filters: str | Sequence[str] | None,
    ) -> HistoryQuery:
        """A query from the text of request parameters: ``filters`` by their request names (the
        ``param`` of each of :data:`HISTORY_FILTERS`, so ``from`` and ``to`` for the dates), each
        one text, or a list of the texts it was given (one at most, unless it is repeatable).

        An empty ``q`` or ``cursor`` is the same as none (an empty search box, a first page).
        """
        values: dict[str, Any] = {}
        for name, raw in filters.items():
            declared = _BY_PARAM.get(name)
            if declared is None:
                raise TypeError(f"HistoryQuery.parse() got an unknown filter {name!r}")
            if raw is None or (not isinstance(raw, str) and not raw):
                continue
            if declared.repeatable:
                values[declared.field] = declared.parse([raw] if isinstance(raw, str) else list(raw))
                continue
            if not isinstance(raw, str):
                if len(raw) > 1:
                    raise InvalidParameters(f"{name} may be given only once", field=name)
                raw = raw[0]
            values[declared.field] = declared.parse(raw)
        return cls(
            limit=limit,
            offset=offset,
            sort=HistorySort.NEWEST if sort is None else _enum_value(HistorySort, "sort", sort),
            cursor=HistoryCursor.decode(cursor) if cursor else None,
            **values,
        )

    @property
    def active(self) -> dict[str, Any]:
        """The filters this query sets, by name (:data:`HISTORY_FILTERS`), with their values."""
        found = {}
        for declared in HISTORY_FILTERS:
            value = declared.value_in(self)
            if value is not None:
                found[declared.name] = value
        return found

    @property
    def filters_only_kept(self) -> bool:
        """True when every filter set is one with kept counts (``type``, ``favorite``), so the
        kept counts can answer ``total``."""
        return all(_BY_NAME[name].kept_count for name in self.active)

    def matches(self, generation: Generation) -> bool:
        """Whether ``generation`` passes the filter (the cursor aside)."""
        return all(_BY_NAME[name].matches(generation, value) for name, value in self.active.items())

    def sort_key(self, generation: Generation) -> tuple[datetime, int]:
        return generation.created_at, generation.id or 0

    def follows_cursor(self, generation: Generation) -> bool:
        """Whether ``generation`` comes after the cursor in this query's order (True without one)."""
        if self.cursor is None:
            return True
        mark = (self.cursor.created_at, self.cursor.id)
        key = self.sort_key(generation)
        return key < mark if self.sort is HistorySort.NEWEST else key > mark

    def page(self, fetched: Sequence[Generation], total: int) -> HistoryPage:
        """The page from up to ``limit + 1`` items in order: the extra one proves there is a next page."""
        items = list(fetched[: self.limit])
        more = len(fetched) > self.limit and bool(items)
        next_cursor = HistoryCursor.after(items[-1], self.sort).encode() if more else None
        return HistoryPage(items=items, total=total, next_cursor=next_cursor)


@dataclass(frozen=True, kw_only=True, slots=True)
class HistoryPage:
    """The items of one page, how many the filter matches, and the cursor of the next page (if any)."""

    items: list[Generation]
    total: int
    next_cursor: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class HistoryFilter:
    """One filter of the history, declared once: every place that knows filters iterates
    :data:`HISTORY_FILTERS` (parsing and matching here; the SQL adapter's clauses and the HTTP
    parameters are keyed by ``name``/``param`` and checked to cover every filter).

    - ``name``: what adapters call it; ``param``: the request parameter; ``field``: the
      :class:`HistoryQuery` field the parameter sets;
    - ``parse``: the parameter's text to the field's value (the query then validates it);
    - ``read``: the value a set filter matches with (``None``: not set), by default the field;
    - ``matches``: whether a generation passes, given that value (the reference semantics, which
      the in-memory repository uses and the SQL adapter must agree with);
    - ``kept_count``: whether kept counts can answer ``total`` (``type`` and ``favorite``, alone
      or together);
    - ``repeatable``: the parameter may be given several times, and ``parse`` gets the list of
      its texts (otherwise one text; twice is ``InvalidParameters``).
    """

    name: str
    param: str
    field: str
    description: str
    parse: Callable[[Any], object]
    matches: Callable[[Generation, Any], bool]
    read: Callable[[HistoryQuery], Any] | None = None
    kept_count: bool = False
    repeatable: bool = False

    def value_in(self, query: HistoryQuery) -> Any:
        """This filter's value in ``query`` (``None`` when it is not set)."""
        return self.read(query) if self.read is not None else getattr(query, self.field)


def _words_of(generation: Generation) -> set[str]:
    return set(search_terms(generation.prompt) + search_terms(generation.negative_prompt or ""))


def _text(raw: str) -> str:
    return raw


_ID_TEXT: Final = re.compile(r"[0-9]{1,19}")


def _generation_id(name: str) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        text = raw.strip()
        # ASCII digits only: int() alone would also take "1_0" and other scripts' digits
        if not _ID_TEXT.fullmatch(text) or not 1 <= int(text) <= MAX_GENERATION_ID:
            raise InvalidParameters(f"{name} must be a generation id: an integer from 1", field=name)
        return int(text)

    return parse


def _made_from(generation: Generation, source_id: int) -> bool:
    return generation.parameters.source_id == source_id or generation.rerun_of == source_id


def _boolean(name: str) -> Callable[[str], bool]:
    def parse(raw: str) -> bool:
        text = raw.strip().lower()
        if text not in ("true", "false"):
            raise InvalidParameters(f"{name} must be true or false", field=name)
        return text == "true"

    return parse


HISTORY_FILTERS: Final[tuple[HistoryFilter, ...]] = (
    HistoryFilter(
        name="type",
        param="type",
        field="type",
        description="Only this type",
        parse=_text,
        matches=lambda g, value: g.type == value,
        kept_count=True,
    ),
    HistoryFilter(
        name="search",
        param="q",
        field="q",
        description="Full-text search of prompt and negative prompt: every word must be a word"
        " of either, in any order, ignoring case (`SKY red` finds `Sunset, red sky`; whole words:"
        " `sun` does not find `Sunset`)."
        f" At most {MAX_SEARCH_LENGTH} characters and {MAX_SEARCH_TERMS} words",
        parse=_text,
        read=lambda query: query.terms or None,
        matches=lambda g, terms: set(terms) <= _words_of(g),
    ),
    HistoryFilter(
        name="operation",
        param="operation",
        field="operation",
        description="Only this operation",
        parse=lambda raw: _enum_value(Operation, "operation", raw),
        matches=lambda g, value: g.operation == value,
    ),
    HistoryFilter(
        name="engine",
        param="engine",
        field="engine",
        description="Only images made by this engine (`local`, `runware`)",
        parse=_text,
        matches=lambda g, value: g.parameters.engine == value,
    ),
    HistoryFilter(
        name="model",
        param="model",
        field="model",
        description="Only images made with this model id, e.g. `runware:100@1`",
        parse=_text,
        matches=lambda g, value: g.parameters.model == value,
    ),
    HistoryFilter(
        name="created_from",
        param="from",
        field="created_from",
        description="Created at or after this instant (inclusive): ISO-8601 date or date-time,"
        " e.g. `2026-01-02` or `2026-01-02T10:00:00Z`; without an offset it is UTC",
        parse=lambda raw: parse_timestamp("from", raw),
        matches=lambda g, value: g.created_at >= value,
    ),
    HistoryFilter(
        name="created_to",
        param="to",
        field="created_to",
        description="Created before this instant (exclusive), not before `from`; as `from`",
        parse=lambda raw: parse_timestamp("to", raw),
        matches=lambda g, value: g.created_at < value,
    ),
    HistoryFilter(
        name="favorite",
        param="favorite",
        field="favorite",
        description="`true`: only favourites; `false`: only the others",
        parse=_boolean("favorite"),
        matches=lambda g, value: g.favorite is value,
        kept_count=True,
    ),
    HistoryFilter(
        name="tag",
        param="tag",
        field="tags",
        description="Only generations with this tag, matched as tags are stored (trimmed and"
        " case-folded: `Sunset ` finds `sunset`). Repeat it for several: every one must match"
        f" (at most {MAX_TAGS})",
        parse=lambda raws: raws,
        read=lambda query: query.tags or None,
        matches=lambda g, tags: set(tags) <= set(g.tags),
        repeatable=True,
    ),
    HistoryFilter(
        name="source",
        param="sourceId",
        field="source_id",
        description="Only what was made from this generation: its image-to-images and upscales"
        " (`parameters.sourceId`) and its re-runs (`rerunOf`)",
        parse=_generation_id("sourceId"),
        matches=_made_from,
    ),
)
"""Every filter of the history, in the order the API documents them."""

_BY_NAME: Final = {declared.name: declared for declared in HISTORY_FILTERS}
_BY_PARAM: Final = {declared.param: declared for declared in HISTORY_FILTERS}


@dataclass(frozen=True, kw_only=True, slots=True)
class TagCount:
    """A tag and how many generations carry it."""

    tag: str
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class TagQuery:
    """Which tags the tag list shows.

    Rules, which every ``GenerationRepository`` follows:
    - only tags that some generation carries, each with how many do;
    - the most used first, ties by the tag (in code point order);
    - ``prefix``: only tags that start with it, taken in the stored form of tags (trimmed and
      case-folded); blank is none, and one no tag could start with finds nothing (never an error:
      it is what a person has typed so far);
    - at most ``limit`` tags.
    """

    limit: int = DEFAULT_TAG_LIST_LIMIT
    prefix: str | None = None

    def __post_init__(self) -> None:
        _check_int("limit", self.limit, 1, MAX_TAG_LIST_LIMIT)
        if self.prefix is not None:
            if not isinstance(self.prefix, str):
                raise InvalidParameters("q must be a string", field="q")
            text = self.prefix.strip().casefold()
            _set(self, "prefix", text or None)

    @property
    def hopeless(self) -> bool:
        """True when no tag can match (the prefix holds what no tag holds): nothing to look up."""
        return self.prefix is not None and not could_begin_a_tag(self.prefix)

    def matches(self, tag: str) -> bool:
        return self.prefix is None or tag.startswith(self.prefix)
