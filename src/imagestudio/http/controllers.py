"""Litestar controllers: decode the request, call one use case, encode the answer. Nothing more."""

from __future__ import annotations

import re
from email.utils import format_datetime
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post, put
from litestar.background_tasks import BackgroundTask
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, PathParameter
from litestar.response import File
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse

from imagestudio.domain.errors import (
    Conflict,
    InvalidParameters,
    InvalidStoragePath,
    NotFound,
    StorageError,
)
from imagestudio.domain.generate import (
    GenerateImageToImage,
    GenerateTextToImage,
    RerunGeneration,
    UpscaleImage,
)
from imagestudio.domain.history import DeleteGeneration, GetGeneration, ListHistory, OpenImage
from imagestudio.domain.history_query import HistorySort
from imagestudio.domain.model import HistoryQuery
from imagestudio.domain.ports import StoredStream
from imagestudio.domain.settings import GetSettings, UpdateSettings
from imagestudio.domain.task_queries import MAX_FINISHED_TASKS, CancelTask, GetTask, ListTasks
from imagestudio.http.bodies import decode_body
from imagestudio.http.generating import (
    GENERATED,
    GENERATED_BATCH,
    GENERATED_HEADERS,
    GENERATION_ERRORS,
    GenerateResult,
    IdempotencyHeader,
    PreferHeader,
    _generate,
)
from imagestudio.http.history_params import (
    _HISTORY_DESCRIPTION,
    FILTER_PARAMETERS,
    CursorParam,
    LimitParam,
    OffsetParam,
    SortParam,
    filter_texts,
)
from imagestudio.http.intake import _holding_body, _prepared
from imagestudio.http.openapi import described_by, documented, int_query, operation_id
from imagestudio.http.routing import (
    BODY,
    CHANGES,
    DATABASE,
    PARAMETERS,
    ServicesDep,
    _base_url,
    _errors,
    provide_services,
)
from imagestudio.http.schemas import (
    DeletedResponse,
    GenerationResponse,
    HealthOut,
    HistoryResponse,
    ImageToImageBody,
    RerunBody,
    SettingsBody,
    SettingsResponse,
    TaskListResponse,
    TaskResponse,
    TextToImageBody,
    UpscaleBody,
    generation_out,
    history_response,
    settings_out,
    task_out,
)

__all__ = [
    "GenerateController",
    "HealthController",
    "HistoryController",
    "ImagesController",
    "ServicesDep",
    "SettingsController",
    "TasksController",
    "provide_services",
]

_ID = re.compile(r"-?[0-9]{1,40}")
_ID_DOCS = {"pattern": "^-?[0-9]{1,40}$"}  # what _ID takes; out of range is then 404


def _parse_id(raw: str) -> int:
    # ASCII digits only: int() alone would also take " 7", "1_0" and other scripts' digits
    if not _ID.fullmatch(raw):
        raise InvalidParameters("id must be an integer", field="id")
    return int(raw, 10)


class HealthController(Controller):
    path = "/health"
    tags = ("health",)

    @get(
        "/",
        summary="Is the server up, and which engine does it use?",
        operation_id=operation_id("health"),
        operation_class=documented(),
        responses=_errors(needs_token=False),
    )
    async def health(self, services: ServicesDep) -> HealthOut:
        return HealthOut(status="ok", version=services.version, engine=services.engine)


class GenerateController(Controller):
    path = "/api/generate"
    tags = ("generation",)

    @post(
        "/text-to-image",
        status_code=200,
        summary="Generate an image from a text prompt",
        operation_id=operation_id("textToImage"),
        description=described_by(GenerateTextToImage),
        operation_class=documented(TextToImageBody, headers=GENERATED_HEADERS),
        responses=_errors(*GENERATION_ERRORS) | GENERATED_BATCH,
    )
    async def text_to_image(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        prefer: PreferHeader = None,
        idempotency_key: IdempotencyHeader = None,
    ) -> GenerateResult:
        return await _generate(
            request, services, services.text_to_image, TextToImageBody, prefer, idempotency_key
        )

    @post(
        "/image-to-image",
        status_code=200,
        summary="Transform an image according to a text prompt",
        operation_id=operation_id("imageToImage"),
        description=described_by(GenerateImageToImage),
        operation_class=documented(ImageToImageBody, headers=GENERATED_HEADERS),
        responses=_errors(*GENERATION_ERRORS, NotFound) | GENERATED_BATCH,
    )
    async def image_to_image(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        prefer: PreferHeader = None,
        idempotency_key: IdempotencyHeader = None,
    ) -> GenerateResult:
        return await _generate(
            request, services, services.image_to_image, ImageToImageBody, prefer, idempotency_key
        )

    @post(
        "/upscale",
        status_code=200,
        summary="Upscale an image by 2, 3 or 4",
        operation_id=operation_id("upscale"),
        description=described_by(UpscaleImage),
        operation_class=documented(UpscaleBody, headers=GENERATED_HEADERS),
        responses=_errors(*GENERATION_ERRORS, NotFound) | GENERATED,
    )
    async def upscale(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        prefer: PreferHeader = None,
        idempotency_key: IdempotencyHeader = None,
    ) -> GenerateResult:
        return await _generate(request, services, services.upscale, UpscaleBody, prefer, idempotency_key)


class HistoryController(Controller):
    path = "/api/history"
    tags = ("history",)

    @get(
        "/",
        summary="List generations, newest first: filters, full-text search, cursor pages",
        description=described_by(ListHistory).split("\n\n")[0] + "\n\n" + _HISTORY_DESCRIPTION,
        operation_id=operation_id("listHistory"),
        operation_class=documented(parameters=FILTER_PARAMETERS),
        responses=_errors(*PARAMETERS, *DATABASE),
    )
    async def list_history(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        limit: LimitParam = 50,
        offset: OffsetParam = 0,
        cursor: CursorParam = None,
        sort: SortParam = HistorySort.NEWEST,
    ) -> HistoryResponse:
        # the filters are the domain's table: read from the query string, documented by
        # FILTER_PARAMETERS, parsed and checked by the domain
        query = HistoryQuery.parse(
            limit=limit, offset=offset, sort=sort, cursor=cursor, **filter_texts(request.query_params)
        )
        page = await services.list_history(query)
        return history_response(page, _base_url(request), limit, offset)

    @get(
        "/{generation_id:str}",
        summary="One generation",
        operation_id=operation_id("getGeneration"),
        description=described_by(GetGeneration),
        operation_class=documented(),
        responses=_errors(*PARAMETERS, NotFound, *DATABASE),
    )
    async def get_generation(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        generation_id: Annotated[str, PathParameter(schema_extra=_ID_DOCS)],
    ) -> GenerationResponse:
        generation = await services.get_generation(_parse_id(generation_id))
        return GenerationResponse(data=generation_out(generation, _base_url(request)))

    @post(
        "/{generation_id:str}/rerun",
        status_code=200,
        summary="Make a generation again: a new seed (or the same), any parameter changed",
        operation_id=operation_id("rerunGeneration"),
        description=described_by(RerunGeneration),
        operation_class=documented(
            RerunBody,
            headers=GENERATED_HEADERS,
            description="The overrides: `{}` makes it again as it was, with a new seed (so does an"
            " empty body sent as `application/json`, the type every state change needs)",
        ),
        responses=_errors(*GENERATION_ERRORS, NotFound) | GENERATED_BATCH,
    )
    async def rerun(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        generation_id: Annotated[str, PathParameter(schema_extra=_ID_DOCS)],
        prefer: PreferHeader = None,
        idempotency_key: IdempotencyHeader = None,
    ) -> GenerateResult:
        ident = _parse_id(generation_id)
        return await _generate(
            request,
            services,
            services.rerun,
            RerunBody,
            prefer,
            idempotency_key,
            command_of=lambda body: body.to_command(ident),
            optional_body=True,
        )

    @delete(
        "/{generation_id:str}",
        status_code=200,
        summary="Delete a generation and its image file",
        operation_id=operation_id("deleteGeneration"),
        description=described_by(DeleteGeneration),
        operation_class=documented(),
        responses=_errors(*PARAMETERS, *CHANGES, NotFound, StorageError, *DATABASE),
    )
    async def delete_generation(
        self, services: ServicesDep, generation_id: Annotated[str, PathParameter(schema_extra=_ID_DOCS)]
    ) -> DeletedResponse:
        await services.delete_generation(_parse_id(generation_id))
        return DeletedResponse()


class SettingsController(Controller):
    path = "/api/settings"
    tags = ("settings",)

    @get(
        "/",
        summary="All settings",
        operation_id=operation_id("getSettings"),
        description=described_by(GetSettings),
        operation_class=documented(),
        responses=_errors(*DATABASE),
    )
    async def get_settings(self, services: ServicesDep) -> SettingsResponse:
        return SettingsResponse(data=settings_out(await services.get_settings()))

    @put(
        "/",
        summary="Change some settings (all-or-nothing)",
        operation_id=operation_id("updateSettings"),
        description=described_by(UpdateSettings),
        operation_class=documented(SettingsBody),
        responses=_errors(*BODY, InvalidStoragePath, StorageError, *DATABASE),
    )
    async def update_settings(
        self, request: Request[Any, Any, Any], services: ServicesDep
    ) -> SettingsResponse:
        async with _holding_body(services) as held:
            patch = await _prepared(request, lambda raw: decode_body(raw, SettingsBody).to_patch(), held)
        settings = await services.update_settings(patch)
        return SettingsResponse(data=settings_out(settings), message="Settings updated")


REDIRECT_STATUS = 307
"""The answer that sends a client to an image's presigned URL: 307 Temporary Redirect, because
the URL expires (temporary) and is signed for the method asked (a 307 keeps it; a 302 may change
it, and a 303 means "see another resource", which the image is not)."""
REDIRECT_CACHE_SECONDS = 300
"""How long a client may keep a redirect: well inside the URL's lifetime (ten minutes), so a
kept redirect never leads to an expired URL, and the browser reuses the image it fetched there."""


class _StreamedFile(File):
    """A stored image sent as a stream of the storage's chunks, documented as Litestar documents a
    ``File`` download (content length, last modified, entity tag), so ``/openapi.json`` holds;
    or, given ``location``, the redirect to the storage's own URL of it."""

    def __init__(
        self,
        stored: StoredStream | None,
        *,
        filename: str,
        headers: dict[str, str],
        location: str | None = None,
    ) -> None:
        super().__init__(
            path=filename, media_type="image/*" if stored is None else stored.media_type, headers=headers
        )
        self.stored = stored
        self.location = location

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:  # type: ignore[override]
        # no HEAD case here: ShellGuard answers HEAD as this GET without its body (http/head.py)
        headers = {**kwargs.get("headers", {}), **self.headers}
        if self.stored is None:
            assert self.location is not None
            return ASGIResponse(
                status_code=REDIRECT_STATUS,
                headers={**headers, "Location": self.location},
                media_type="text/plain",
                encoded_headers=kwargs.get("encoded_headers"),
            )
        return ASGIStreamingResponse(
            iterator=self.stored.chunks,
            headers=headers,
            media_type=self.stored.media_type,  # the image's, not the route's documented ``image/*``
            background=BackgroundTask(self.stored.chunks.aclose),  # also when the client went away
            cookies=self.cookies,
            encoded_headers=kwargs.get("encoded_headers"),
        )


class ImagesController(Controller):
    path = "/generated"
    tags = ("images",)

    @get(
        "/{key:path}",
        summary="The bytes of a generated image (its filePath) or of its thumbnail (its thumbnailPath)",
        media_type="image/*",
        operation_id=operation_id("getImage"),
        description=described_by(OpenImage),
        operation_class=documented(),
        responses={
            REDIRECT_STATUS: ResponseSpec(
                None,
                description=(
                    "With IMAGESTUDIO_STORAGE_REDIRECT=true: the image is fetched from the object"
                    " store's short-lived presigned URL in Location"
                ),
                media_type="text/plain",
            ),
            **_errors(NotFound, StorageError, *DATABASE),
        },
        response_description="File Download",
    )
    async def image(self, services: ServicesDep, key: FromPath[str]) -> _StreamedFile:
        _, stored = await services.open_image.serve(key.lstrip("/"))
        filename = key.rsplit("/", 1)[-1]  # the image's or its thumbnail's name: only those open
        if isinstance(stored, str):
            cache = {"Cache-Control": f"private, max-age={REDIRECT_CACHE_SECONDS}", "Vary": "Origin"}
            return _StreamedFile(None, filename=filename, headers=cache, location=stored)
        headers = {
            "Content-Length": str(stored.size),
            "Content-Disposition": f'inline; filename="{filename}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "public, max-age=31536000, immutable",
            "Vary": "Origin",  # CORS headers differ by Origin: a browser must not reuse one for another
        }
        if stored.modified_at is not None:
            headers["Last-Modified"] = format_datetime(stored.modified_at, usegmt=True)
        if stored.etag is not None:
            headers["ETag"] = stored.etag
        return _StreamedFile(stored, filename=filename, headers=headers)


class TasksController(Controller):
    path = "/api/tasks"
    tags = ("tasks",)

    @get(
        "/",
        summary="Active tasks (running, then queued in order) and recent finished ones",
        operation_id=operation_id("listTasks"),
        description=described_by(ListTasks),
        operation_class=documented(),
        responses=_errors(*PARAMETERS, *DATABASE),
    )
    async def list_tasks(
        self,
        services: ServicesDep,
        limit: Annotated[
            int, int_query(ge=1, le=MAX_FINISHED_TASKS, description="Finished tasks to include")
        ] = 50,
    ) -> TaskListResponse:
        return TaskListResponse(data=[task_out(task) for task in await services.list_tasks(limit)])

    @get(
        "/{task_id:str}",
        summary="One task: status, progress, position, result or error",
        operation_id=operation_id("getTask"),
        description=described_by(GetTask),
        operation_class=documented(),
        responses=_errors(NotFound, *DATABASE),
    )
    async def get_task(
        self, request: Request[Any, Any, Any], services: ServicesDep, task_id: FromPath[str]
    ) -> TaskResponse:
        detail = await services.get_task(task_id)
        made = detail.generation
        generation = None if made is None else generation_out(made, _base_url(request))
        return TaskResponse(data=task_out(detail.task, generation))

    @delete(
        "/{task_id:str}",
        status_code=200,
        summary="Cancel a queued or running task",
        operation_id=operation_id("cancelTask"),
        description=described_by(CancelTask),
        operation_class=documented(),
        responses=_errors(*CHANGES, NotFound, Conflict, *DATABASE),
    )
    async def cancel_task(self, services: ServicesDep, task_id: FromPath[str]) -> TaskResponse:
        return TaskResponse(data=task_out(await services.cancel_task(task_id)))
