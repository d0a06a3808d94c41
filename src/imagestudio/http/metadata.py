"""``POST /api/images/inspect``: the generation parameters an image file carries."""

from __future__ import annotations

from typing import Any, Literal

from litestar import Controller, Request, post
from msgspec import UNSET, Struct, UnsetType

from imagestudio.domain.errors import NotFound, QueueFull, StorageError
from imagestudio.domain.metadata import InspectImage
from imagestudio.domain.model import FoundMetadata, FoundParameters, MetadataSource
from imagestudio.http.bodies import decode_body
from imagestudio.http.intake import _holding_body, _prepared
from imagestudio.http.openapi import described_by, documented, operation_id
from imagestudio.http.routing import BODY, DATABASE, ServicesDep, _errors
from imagestudio.http.schemas import ImageRef

__all__ = ["InspectBody", "InspectController", "InspectResponse"]


class InspectBody(Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    image: ImageRef


class _Out(Struct, rename="camel", kw_only=True):
    pass


class FoundParametersOut(_Out):
    """What a record says, under the API's names; a name the record does not give is left out."""

    operation: str | UnsetType = UNSET
    prompt: str | UnsetType = UNSET
    negative_prompt: str | UnsetType = UNSET
    width: int | UnsetType = UNSET
    height: int | UnsetType = UNSET
    steps: int | UnsetType = UNSET
    cfg_scale: float | UnsetType = UNSET
    seed: int | UnsetType = UNSET
    model: str | UnsetType = UNSET
    sampler: str | UnsetType = UNSET
    scheduler: str | UnsetType = UNSET
    strength: float | UnsetType = UNSET
    scale: float | UnsetType = UNSET
    engine: str | UnsetType = UNSET
    source_id: int | UnsetType = UNSET
    task_id: str | UnsetType = UNSET
    version: str | UnsetType = UNSET


class FoundOut(_Out):
    source: MetadataSource
    parameters: FoundParametersOut
    raw: str
    """The record's text as the file holds it (JSON, or AUTOMATIC1111's infotext)."""


class InspectOut(_Out):
    found: list[FoundOut]


class InspectResponse(_Out, kw_only=True):
    success: Literal[True] = True
    data: InspectOut


def _parameters_out(parameters: FoundParameters) -> FoundParametersOut:
    given: dict[str, Any] = {
        name: value
        for name in FoundParametersOut.__struct_fields__
        if (value := getattr(parameters, name)) is not None
    }
    return FoundParametersOut(**given)


def found_out(found: FoundMetadata) -> FoundOut:
    return FoundOut(source=found.source, parameters=_parameters_out(found.parameters), raw=found.raw)


class InspectController(Controller):
    path = "/api/images"
    tags = ("images",)

    @post(
        "/inspect",
        status_code=200,
        summary="Read the generation parameters an image file carries",
        operation_id=operation_id("inspectImage"),
        description=described_by(InspectImage),
        operation_class=documented(InspectBody),
        responses=_errors(*BODY, NotFound, StorageError, QueueFull, *DATABASE),
    )
    async def inspect(self, request: Request[Any, Any, Any], services: ServicesDep) -> InspectResponse:
        async with _holding_body(services) as held:
            reference = await _prepared(request, lambda raw: decode_body(raw, InspectBody).image, held)
            found = await services.inspect_image(reference)
        return InspectResponse(data=InspectOut(found=[found_out(record) for record in found]))
