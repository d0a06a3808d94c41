"""The query parameters of ``GET /api/history``, with the documentation ``/docs`` shows of them.

The domain parses and checks them (``HistoryQuery.parse``, with its own messages); the limits
the OpenAPI document states are built here from the domain's constants (``domain/history_query.py``).

The filters are the domain's :data:`HISTORY_FILTERS`: the handler reads each one's parameter from
the query string (:func:`filter_texts`), and :data:`FILTER_PARAMETERS` documents them, in their
order, with the descriptions the domain gives and the schema of :data:`_FILTER_SCHEMAS` (checked
at import to cover every declared filter, so a new filter cannot go undocumented).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final

from litestar.datastructures import MultiDict
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Parameter, Reference, Schema
from litestar.params import QueryParameter

from imagestudio.domain.history_query import (
    ENGINE_NAME_PATTERN,
    HISTORY_FILTERS,
    MAX_HISTORY_LIMIT,
    MAX_HISTORY_OFFSET,
    MAX_SEARCH_LENGTH,
    MAX_SEARCH_TERMS,
    SEARCH_WORD_PATTERN,
    HistorySort,
)
from imagestudio.domain.rules import MAX_GENERATION_ID, MAX_TAGS, TAG_FILTER_PATTERN
from imagestudio.domain.values import MODEL_ID_PATTERN
from imagestudio.http.openapi import int_query

__all__ = [
    "FILTER_PARAMETERS",
    "CursorParam",
    "LimitParam",
    "OffsetParam",
    "SortParam",
    "filter_texts",
]

_HISTORY_DESCRIPTION = """Filters combine (AND); `total` counts every generation the filter matches.

Two ways to page: `limit` + `offset`, or keyset cursors: every answer carries `nextCursor`
(`null` on the last page); pass it back as `cursor` for the next page. Cursor pages stay
stable while new generations arrive and stay fast deep into a long history.
"""


# What the domain checks, documented from its constants (its own messages stay): blank, or 1 to
# MAX_SEARCH_TERMS words (runs of letters and digits) with anything else around and between them
_WORD = SEARCH_WORD_PATTERN
_SEARCH_PATTERN = rf"^(\s*|[\W_]*{_WORD}([\W_]+{_WORD}){{0,{MAX_SEARCH_TERMS - 1}}}[\W_]*)$"
_INSTANT = Schema(
    any_of=[
        Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE),
        Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
    ]
)
_FILTER_SCHEMAS: Final[Mapping[str, Schema | Reference]] = {
    "type": Reference(ref="#/components/schemas/GenerationType"),
    "q": Schema(type=OpenAPIType.STRING, max_length=MAX_SEARCH_LENGTH, pattern=_SEARCH_PATTERN),
    "operation": Reference(ref="#/components/schemas/Operation"),
    "engine": Schema(type=OpenAPIType.STRING, pattern=f"^{ENGINE_NAME_PATTERN}$"),
    "model": Schema(type=OpenAPIType.STRING, pattern=f"^{MODEL_ID_PATTERN}$"),
    "from": _INSTANT,
    "to": _INSTANT,
    "favorite": Schema(type=OpenAPIType.STRING, enum=["true", "false"]),
    "tag": Schema(type=OpenAPIType.STRING, pattern=TAG_FILTER_PATTERN),
    # a text of ASCII digits (what the domain reads), documented as the integer it names
    "sourceId": Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=MAX_GENERATION_ID),
}
"""The schema of each filter's parameter (one text; a repeatable filter's is an array of them)."""
_MOST_GIVEN: Final[Mapping[str, int]] = {"tag": MAX_TAGS}
"""How many times a repeatable filter may be given, where the domain bounds it."""
if set(_FILTER_SCHEMAS) != {declared.param for declared in HISTORY_FILTERS}:  # pragma: no cover
    raise ImportError("every history filter needs its parameter's schema in http/history_params.py")


def _parameter(param: str, description: str, repeatable: bool) -> Parameter:
    schema = _FILTER_SCHEMAS[param]
    return Parameter(
        name=param,
        param_in="query",
        required=False,
        description=description,
        schema=Schema(type=OpenAPIType.ARRAY, items=schema, max_items=_MOST_GIVEN.get(param))
        if repeatable
        else schema,
        explode=True if repeatable else None,
    )


FILTER_PARAMETERS: Final = tuple(
    _parameter(declared.param, declared.description, declared.repeatable) for declared in HISTORY_FILTERS
)
"""The OpenAPI parameters of the history filters, in the order of :data:`HISTORY_FILTERS`."""


def filter_texts(query: MultiDict[str]) -> dict[str, list[str]]:
    """The texts each filter's parameter was given in ``query`` (absent filters are left out)."""
    texts = {}
    for declared in HISTORY_FILTERS:
        values = query.getall(declared.param, [])
        if values:
            texts[declared.param] = values
    return texts


LimitParam = Annotated[
    int, int_query(ge=1, le=MAX_HISTORY_LIMIT, description=f"Page size, 1 to {MAX_HISTORY_LIMIT}")
]
OffsetParam = Annotated[
    int, int_query(ge=0, le=MAX_HISTORY_OFFSET, description="Items to skip; not together with cursor")
]
CursorParam = Annotated[
    str | None,
    QueryParameter(
        description="The nextCursor of the previous page: the page after it, with the same"
        " filters and sort (stable while generations are added). Opaque; a bad one is 400"
    ),
]
SortParam = Annotated[
    HistorySort,
    QueryParameter(
        description="`newest` first (default) or `oldest` first; ties by id",
    ),
]
