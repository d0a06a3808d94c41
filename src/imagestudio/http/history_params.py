"""The query parameters of ``GET /api/history``, with the documentation ``/docs`` shows of them.

The domain parses and checks them (``HistoryQuery.parse``, with its own messages); the limits
given here are the ones the OpenAPI document states.
"""

from __future__ import annotations

from typing import Annotated, Literal

from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import QueryParameter

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


# What the domain checks, documented (its own messages stay): words are runs of letters and digits
_SEARCH_PATTERN = r"^(\s*|[\W_]*[^\W_]+([\W_]+[^\W_]+){0,15}[\W_]*)$"
_MODEL_PATTERN = r"^[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_.-]{1,64}@[A-Za-z0-9_.-]{1,64}$"
_INSTANT = {
    "any_of": [
        Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE),
        Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
    ]
}


LimitParam = Annotated[int, QueryParameter(ge=1, le=500, description="Page size, 1 to 500")]
OffsetParam = Annotated[
    int, QueryParameter(ge=0, le=2**62, description="Items to skip; not together with cursor")
]
TypeParam = Annotated[Literal["image", "video"] | None, QueryParameter(description="Only this type")]
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
        " `sun` does not find `Sunset`). At most 200 characters and 16 words",
        max_length=200,
        schema_extra={"pattern": _SEARCH_PATTERN},
    ),
]
OperationParam = Annotated[
    Literal["text-to-image", "image-to-image", "upscale"] | None,
    QueryParameter(description="Only this operation"),
]
EngineParam = Annotated[
    str | None,
    QueryParameter(
        description="Only images made by this engine (`local`, `runware`)",
        schema_extra={"pattern": "^[A-Za-z0-9_.-]{1,32}$"},
    ),
]
ModelParam = Annotated[
    str | None,
    QueryParameter(
        description="Only images made with this model id, e.g. `runware:100@1`",
        schema_extra={"pattern": _MODEL_PATTERN},
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
    Literal["newest", "oldest"],
    QueryParameter(description="`newest` first (default) or `oldest` first; ties by id"),
]
