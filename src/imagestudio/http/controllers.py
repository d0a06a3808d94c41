"""Litestar controllers: decode the request, call one use case, encode the answer. Nothing more."""

from __future__ import annotations

import mimetypes
from typing import Annotated, Any, Literal

from litestar import Controller, Request, delete, get, post, put
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter, SkipValidation
from litestar.response import File

from imagestudio.bootstrap import Services
from imagestudio.domain.errors import InvalidParameters
from imagestudio.domain.model import HistoryQuery
from imagestudio.http.openapi import documented_body
from imagestudio.http.schemas import (
    DeletedResponse,
    ErrorResponse,
    GenerationResponse,
    HealthOut,
    HistoryResponse,
    ImageToImageBody,
    SettingsBody,
    SettingsResponse,
    TextToImageBody,
    UpscaleBody,
    decode_body,
    generation_out,
    history_response,
    settings_out,
)

__all__ = [
    "GenerateController",
    "HealthController",
    "HistoryController",
    "ImagesController",
    "SettingsController",
]

ServicesDep = NamedDependency[SkipValidation[Services]]


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    descriptions = {
        400: "Invalid request (INVALID_PROMPT, INVALID_PARAMETERS, STORAGE_ERROR for a bad storagePath)",
        404: "Not found (NOT_FOUND)",
        413: "Request body over 32 MiB (PAYLOAD_TOO_LARGE)",
        500: "Generation, storage or database failure"
        " (API_TIMEOUT, API_ERROR, STORAGE_ERROR, DATABASE_ERROR, INTERNAL_ERROR)",
        503: "Provider or database unavailable (API_ERROR, DATABASE_ERROR)",
    }
    return {
        status: ResponseSpec(
            data_container=ErrorResponse, description=descriptions[status], generate_examples=False
        )
        for status in statuses
    }


def _base_url(request: Request[Any, Any, Any]) -> str:
    return str(request.base_url).rstrip("/")


def _parse_id(raw: str) -> int:
    try:
        return int(raw, 10)
    except ValueError:
        raise InvalidParameters("id must be an integer", field="id") from None


class HealthController(Controller):
    path = "/health"
    tags = ("health",)

    @get("/", summary="Is the server up, and which engine does it use?")
    async def health(self, services: ServicesDep) -> HealthOut:
        return HealthOut(status="ok", version=services.version, engine=services.engine)


class GenerateController(Controller):
    path = "/api/generate"
    tags = ("generation",)

    @post(
        "/text-to-image",
        status_code=200,
        summary="Generate an image from a text prompt",
        operation_class=documented_body(TextToImageBody),
        responses=_errors(400, 413, 500, 503),
    )
    async def text_to_image(
        self, request: Request[Any, Any, Any], services: ServicesDep
    ) -> GenerationResponse:
        body = decode_body(await request.body(), TextToImageBody)
        generation = await services.text_to_image(body.to_command())
        return GenerationResponse(data=generation_out(generation, _base_url(request)))

    @post(
        "/image-to-image",
        status_code=200,
        summary="Transform an image according to a text prompt",
        operation_class=documented_body(ImageToImageBody),
        responses=_errors(400, 404, 413, 500, 503),
    )
    async def image_to_image(
        self, request: Request[Any, Any, Any], services: ServicesDep
    ) -> GenerationResponse:
        body = decode_body(await request.body(), ImageToImageBody)
        generation = await services.image_to_image(body.to_command())
        return GenerationResponse(data=generation_out(generation, _base_url(request)))

    @post(
        "/upscale",
        status_code=200,
        summary="Upscale an image by 2, 3 or 4",
        operation_class=documented_body(UpscaleBody),
        responses=_errors(400, 404, 413, 500, 503),
    )
    async def upscale(self, request: Request[Any, Any, Any], services: ServicesDep) -> GenerationResponse:
        body = decode_body(await request.body(), UpscaleBody)
        generation = await services.upscale(body.to_command())
        return GenerationResponse(data=generation_out(generation, _base_url(request)))


class HistoryController(Controller):
    path = "/api/history"
    tags = ("history",)

    @get("/", summary="List generations, newest first", responses=_errors(400, 500, 503))
    async def list_history(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        limit: Annotated[int, QueryParameter(ge=1, le=500, description="Page size, 1 to 500")] = 50,
        offset: Annotated[int, QueryParameter(ge=0, description="Items to skip")] = 0,
        type: Annotated[Literal["image", "video"] | None, QueryParameter(description="Only this type")] = None,
    ) -> HistoryResponse:
        page = await services.list_history(HistoryQuery(limit=limit, offset=offset, type=type))
        return history_response(page, _base_url(request), limit, offset)

    @get("/{generation_id:str}", summary="One generation", responses=_errors(400, 404, 500, 503))
    async def get_generation(
        self, request: Request[Any, Any, Any], services: ServicesDep, generation_id: FromPath[str]
    ) -> GenerationResponse:
        generation = await services.get_generation(_parse_id(generation_id))
        return GenerationResponse(data=generation_out(generation, _base_url(request)))

    @delete(
        "/{generation_id:str}",
        status_code=200,
        summary="Delete a generation and its image file",
        responses=_errors(400, 404, 500, 503),
    )
    async def delete_generation(self, services: ServicesDep, generation_id: FromPath[str]) -> DeletedResponse:
        await services.delete_generation(_parse_id(generation_id))
        return DeletedResponse()


class SettingsController(Controller):
    path = "/api/settings"
    tags = ("settings",)

    @get("/", summary="All settings", responses=_errors(500, 503))
    async def get_settings(self, services: ServicesDep) -> SettingsResponse:
        return SettingsResponse(data=settings_out(await services.get_settings()))

    @put(
        "/",
        summary="Change some settings (all-or-nothing)",
        operation_class=documented_body(SettingsBody),
        responses=_errors(400, 413, 500, 503),
    )
    async def update_settings(
        self, request: Request[Any, Any, Any], services: ServicesDep
    ) -> SettingsResponse:
        body = decode_body(await request.body(), SettingsBody)
        settings = await services.update_settings(body.to_patch())
        return SettingsResponse(data=settings_out(settings), message="Settings updated")


class ImagesController(Controller):
    path = "/generated"
    tags = ("images",)

    @get(
        "/{key:path}",
        summary="The bytes of a generated image (its filePath)",
        media_type="image/*",
        responses=_errors(404, 500),
    )
    async def image(self, services: ServicesDep, key: FromPath[str]) -> File:
        _generation, path = await services.open_image(key.lstrip("/"))
        media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return File(
            path=path,
            media_type=media_type,
            content_disposition_type="inline",
            filename=path.rsplit("/", 1)[-1],
            headers={
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "public, max-age=31536000, immutable",
            },
        )
