"""What a person keeps about their generations: ``PATCH /api/history/{id}`` (favourite, tags,
notes) and ``GET /api/tags`` (the tags, most used first). The ``favorite`` and ``tag`` filters of
the history listing are declared with the others (``domain/history_query.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from inspect import getdoc
from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, patch
from litestar.openapi.spec import Operation, RequestBody, Schema
from litestar.params import PathParameter, QueryParameter
from msgspec import UNSET, Meta, Struct, UnsetType

from imagestudio.domain.history import ListTags, UpdateGeneration
from imagestudio.domain.model import GenerationPatch, TagQuery
from imagestudio.domain.rules import (
    DEFAULT_TAG_LIST_LIMIT,
    MAX_NOTES_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAG_LIST_LIMIT,
    MAX_TAGS,
    NOTES_PATTERN,
    TAG_PATTERN,
)
from imagestudio.domain.values import UNCHANGED
from imagestudio.http.bodies import decode_body
from imagestudio.http.controllers import _ID_DOCS, _parse_id
from imagestudio.http.intake import _holding_body, _prepared
from imagestudio.http.openapi import documented_body
from imagestudio.http.routing import ServicesDep, _base_url, _errors
from imagestudio.http.schemas import GenerationResponse, generation_out

__all__ = ["GalleryController", "GenerationPatchBody", "TagsResponse"]

# Limits the domain checks itself (``domain/rules.py``), with its own messages, documented here
# but not enforced by msgspec, so a client reads them in the OpenAPI and gets the domain's error.
Tag = Annotated[
    str,
    Meta(
        description=f"1 to {MAX_TAG_LENGTH} characters once trimmed; no control characters or line breaks",
        extra_json_schema={"pattern": TAG_PATTERN},
    ),
]
Tags = Annotated[
    list[Tag],
    Meta(
        description=f"Every tag of the generation (replacing the old ones), at most {MAX_TAGS}; stored"
        " trimmed and case-folded, duplicates dropped (the first kept), in the order given. `[]` removes all",
        extra_json_schema={"maxItems": MAX_TAGS},
    ),
]
Notes = Annotated[
    str,
    Meta(
        description=f"Free text, at most {MAX_NOTES_LENGTH} characters, no control characters but tabs and"
        " line breaks; `null` or blank clears the notes",
        extra_json_schema={"maxLength": MAX_NOTES_LENGTH, "pattern": NOTES_PATTERN},
    ),
]


class GenerationPatchBody(Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """At least one of ``favorite``, ``tags`` and ``notes``; what is left out stays as it is."""

    favorite: bool | UnsetType = UNSET
    tags: Tags | UnsetType = UNSET
    notes: Notes | UnsetType | None = UNSET

    def to_patch(self) -> GenerationPatch:
        def value(given: Any) -> Any:
            return UNCHANGED if given is UNSET else given

        return GenerationPatch(favorite=value(self.favorite), tags=value(self.tags), notes=value(self.notes))


def _not_empty(operation: type[Operation]) -> type[Operation]:
    """``operation`` with its body documented as naming at least one field (``{}`` is refused)."""

    @dataclass
    class _NotEmpty(operation):  # type: ignore[valid-type,misc]
        def __post_init__(self) -> None:
            super().__post_init__()
            body = self.request_body
            assert isinstance(body, RequestBody)
            schema = body.content["application/json"].schema
            assert isinstance(schema, Schema)
            schema.min_properties = 1

    _NotEmpty.__name__ = operation.__name__
    return _NotEmpty


def _patch_of(raw: bytes | bytearray) -> GenerationPatch:
    return decode_body(raw, GenerationPatchBody).to_patch()


class _Out(Struct, rename="camel", kw_only=True):
    pass


class TagOut(_Out):
    tag: str
    count: int


class TagListOut(_Out):
    tags: list[TagOut]


class TagsResponse(_Out, kw_only=True):
    success: Literal[True] = True
    data: TagListOut


class GalleryController(Controller):
    path = "/api"

    @patch(
        "/history/{generation_id:str}",
        tags=["history"],
        summary="Mark a generation as a favourite, tag it, write notes (any of them)",
        description=getdoc(UpdateGeneration),
        operation_class=_not_empty(documented_body(GenerationPatchBody)),
        responses=_errors(400, 403, 404, 413, 415, 500, 503),
    )
    async def update_generation(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        generation_id: Annotated[str, PathParameter(schema_extra=_ID_DOCS)],
    ) -> GenerationResponse:
        ident = _parse_id(generation_id)
        async with _holding_body(services) as held:
            changes = await _prepared(
                request, lambda raw: decode_body(raw, GenerationPatchBody).to_patch(), held
            )
        generation = await services.update_generation(ident, changes)
        return GenerationResponse(data=generation_out(generation, _base_url(request)))

    @get(
        "/tags",
        tags=["history"],
        summary="The tags of the history with how many generations carry each, most used first",
        description=getdoc(ListTags),
        responses=_errors(400, 500, 503),
    )
    async def list_tags(
        self,
        services: ServicesDep,
        limit: Annotated[
            int,
            QueryParameter(
                ge=1, le=MAX_TAG_LIST_LIMIT, description=f"At most this many, 1 to {MAX_TAG_LIST_LIMIT}"
            ),
        ] = DEFAULT_TAG_LIST_LIMIT,
        q: Annotated[
            str | None,
            QueryParameter(
                description="Only tags that start with this (trimmed and case-folded, as tags are"
                " stored); one no tag could start with finds none"
            ),
        ] = None,
    ) -> TagsResponse:
        counted = await services.list_tags(TagQuery(limit=limit, prefix=q))
        return TagsResponse(data=TagListOut(tags=[TagOut(tag=t.tag, count=t.count) for t in counted]))
