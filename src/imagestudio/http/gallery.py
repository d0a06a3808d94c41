"""What a person keeps about their generations: ``PATCH /api/history/{id}`` (favourite, tags,
notes) and ``GET /api/tags`` (the tags, most used first). The ``favorite`` and ``tag`` filters of
the history listing are declared with the others (``domain/history_query.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from litestar import Controller, Request, get, patch
from litestar.params import PathParameter, QueryParameter
from msgspec import UNSET, Meta, Struct, UnsetType

from imagestudio.domain.errors import NotFound
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
from imagestudio.http.openapi import described_by, documented, int_query, operation_id
from imagestudio.http.routing import BODY, DATABASE, PARAMETERS, ServicesDep, _base_url, _errors
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

    schema_extra: ClassVar[dict[str, Any]] = {"min_properties": 1}
    """Beside what msgspec says of the fields: ``{}`` is refused (``http/openapi.py`` adds it)."""

    favorite: bool | UnsetType = UNSET
    tags: Tags | UnsetType = UNSET
    notes: Notes | UnsetType | None = UNSET

    def to_patch(self) -> GenerationPatch:
        def value(given: Any) -> Any:
            return UNCHANGED if given is UNSET else given

        return GenerationPatch(favorite=value(self.favorite), tags=value(self.tags), notes=value(self.notes))


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
        operation_id=operation_id("updateGeneration"),
        description=described_by(UpdateGeneration),
        operation_class=documented(GenerationPatchBody),
        responses=_errors(*BODY, NotFound, *DATABASE),
    )
    async def update_generation(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        generation_id: Annotated[str, PathParameter(schema_extra=_ID_DOCS)],
    ) -> GenerationResponse:
        ident = _parse_id(generation_id)
        async with _holding_body(services) as held:
            changes = await _prepared(request, _patch_of, held)
        generation = await services.update_generation(ident, changes)
        return GenerationResponse(data=generation_out(generation, _base_url(request)))

    @get(
        "/tags",
        tags=["history"],
        summary="The tags of the history with how many generations carry each, most used first",
        operation_id=operation_id("listTags"),
        description=described_by(ListTags),
        operation_class=documented(),
        responses=_errors(*PARAMETERS, *DATABASE),
    )
    async def list_tags(
        self,
        services: ServicesDep,
        limit: Annotated[
            int,
            int_query(
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
