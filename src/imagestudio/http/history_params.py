"""The query parameters of ``GET /api/history``, with the documentation ``/docs`` shows of them.

The domain parses and checks them (``HistoryQuery.parse``, with its own messages); the limits
the OpenAPI document states are built here from the domain's constants (``domain/history_query.py``).
"""

from __future__ import annotations

from typing import Annotated

from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import QueryParameter

from imagestudio.domain.history_query import (
    ENGINE_NAME_PATTERN,
    MAX_HISTORY_LIMIT,
    MAX_HISTORY_OFFSET,
    MAX_SEARCH_LENGTH,
    MAX_SEARCH_TERMS,
    SEARCH_WORD_PATTERN,
    HistorySort,
)
from imagestudio.domain.values import MODEL_ID_PATTERN, Operation
from imagestudio.http.openapi import int_query
from imagestudio.http.schemas import GenerationType

__all__ = [
    "CursorParam",
    "EngineParam",
    "FromParam",
    "LimitParam",
    "ModelParam",
    "OffsetParam",
    "OperationParam",
    "SearchParam",
    "SortParam",
    "ToParam",
    "TypeParam",
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
# A date or a date-time, in one form: Litestar's ``oneOf: [string, null]`` for the ``str | None``
# is dropped (a query parameter is a string or absent, never null)
_INSTANT = {
    "one_of": None,
    "any_of": [
        Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE),
        Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
    ],
}


LimitParam = Annotated[
    int, int_query(ge=1, le=MAX_HISTORY_LIMIT, description=f"Page size, 1 to {MAX_HISTORY_LIMIT}")
]
OffsetParam = Annotated[
    int, int_query(ge=0, le=MAX_HISTORY_OFFSET, description="Items to skip; not together with cursor")
]
TypeParam = Annotated[GenerationType | None, QueryParameter(description="Only this type")]
CursorParam = Annotated[
    str | None,
    QueryParameter(
        description="The nextCursor of the previous page: the page after it, with the same"
        " filters and sort (stable while generations are added). Opaque; a bad one is 400"
    ),
]
SearchParam = Annotated[
    str | None,
    QueryParameter(
        description="Full-text search of prompt and negative prompt: every word must be a word"
        " of either, in any order, ignoring case (`SKY red` finds `Sunset, red sky`; whole words:"
        " `sun` does not find `Sunset`)."
        f" At most {MAX_SEARCH_LENGTH} characters and {MAX_SEARCH_TERMS} words",
        max_length=MAX_SEARCH_LENGTH,
        schema_extra={"pattern": _SEARCH_PATTERN},
    ),
]
OperationParam = Annotated[Operation | None, QueryParameter(description="Only this operation")]
EngineParam = Annotated[
    str | None,
    QueryParameter(
        description="Only images made by this engine (`local`, `runware`)",
        schema_extra={"pattern": f"^{ENGINE_NAME_PATTERN}$"},
    ),
]
ModelParam = Annotated[
    str | None,
    QueryParameter(
        description="Only images made with this model id, e.g. `runware:100@1`",
        schema_extra={"pattern": f"^{MODEL_ID_PATTERN}$"},
    ),
]
FromParam = Annotated[
    str | None,
    QueryParameter(
        name="from",
        description="Created at or after this instant (inclusive): ISO-8601 date or date-time,"
        " e.g. `2026-01-02` or `2026-01-02T10:00:00Z`; without an offset it is UTC",
        schema_extra=_INSTANT,
    ),
]
ToParam = Annotated[
    str | None,
    QueryParameter(
        name="to",
        description="Created before this instant (exclusive), not before `from`; as `from`",
        schema_extra=_INSTANT,
    ),
]
SortParam = Annotated[
    HistorySort,
    QueryParameter(
        description="`newest` first (default) or `oldest` first; ties by id",
    ),
]
