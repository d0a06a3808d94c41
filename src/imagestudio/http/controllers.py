"""Litestar controllers: decode the request, call one use case, encode the answer. Nothing more."""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import FromPath, HeaderParameter, PathParameter, QueryParameter, SkipValidation
from litestar.response import File
from msgspec import Struct

from imagestudio.bootstrap import Services
from imagestudio.domain.errors import InvalidParameters, NotFound, QueueFull
from imagestudio.domain.generate import GenerateImageToImage, GenerateTextToImage, UpscaleImage
from imagestudio.domain.model import HistoryQuery
from imagestudio.domain.tasks import Hold, IdempotencyKey
from imagestudio.http.openapi import documented_body
from imagestudio.http.schemas import (
    OFF_LOOP_BYTES,
    DeletedResponse,
    ErrorResponse,
    GenerationResponse,
    HealthOut,
    HistoryResponse,
    ImageToImageBody,
    SettingsBody,
    SettingsResponse,
    TaskListResponse,
    TaskResponse,
    TextToImageBody,
    UpscaleBody,
    decode_body,
    generation_out,
    history_response,
    prepare_body,
    read_body,
    settings_out,
    task_out,
)

__all__ = [
    "GenerateController",
    "HealthController",
    "HistoryController",
    "ImagesController",
    "SettingsController",
    "TasksController",
]

ServicesDep = NamedDependency[SkipValidation[Services]]
T = TypeVar("T")


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services


def _errors(*statuses: int, needs_token: bool = True) -> dict[int, ResponseSpec]:
    """The error answers a route documents; 401 and 429 go with every route that can give them."""
    descriptions = {
        400: "Invalid request (INVALID_PROMPT, INVALID_PARAMETERS, STORAGE_ERROR for a bad storagePath;"
        " INVALID_HOST when the Host header is not a name of this server)",
        401: "No valid API token, when IMAGESTUDIO_API_TOKEN is set (UNAUTHORIZED)",
        403: "Sent from a web page whose origin is not allowed (FORBIDDEN)",
        404: "Not found (NOT_FOUND)",
        409: "Conflict (CONFLICT: a reused taskId or Idempotency-Key, a finished task; CANCELLED)",
        413: "Request body over 32 MiB (PAYLOAD_TOO_LARGE)",
        415: "The body is not `application/json` (UNSUPPORTED_MEDIA_TYPE)",
        429: "Over IMAGESTUDIO_RATE_LIMIT for this client; `Retry-After` says when to retry (RATE_LIMITED)",
        500: "Generation, storage or database failure"
        " (API_TIMEOUT, API_ERROR, STORAGE_ERROR, DATABASE_ERROR, INTERNAL_ERROR)",
        503: "Provider, database or queue unavailable (API_ERROR, DATABASE_ERROR, QUEUE_FULL)",
    }
    # INVALID_HOST can answer any route; 401 and 429 any route the token and the rate limit cover
    statuses = (*statuses, 400, 401, 429) if needs_token else (*statuses, 400, 429)
    return {
        status: ResponseSpec(
            data_container=ErrorResponse, description=descriptions[status], generate_examples=False
        )
        for status in statuses
    }


def _base_url(request: Request[Any, Any, Any]) -> str:
    return str(request.base_url).rstrip("/")


_ID = re.compile(r"-?[0-9]{1,40}")
_ID_DOCS = {"pattern": "^-?[0-9]+$"}


def _parse_id(raw: str) -> int:
    # ASCII digits only: int() alone would also take " 7", "1_0" and other scripts' digits
    if not _ID.fullmatch(raw):
        raise InvalidParameters("id must be an integer", field="id")
    return int(raw, 10)


class HealthController(Controller):
    path = "/health"
    tags = ("health",)

    @get("/", summary="Is the server up, and which engine does it use?", responses=_errors(needs_token=False))
    async def health(self, services: ServicesDep) -> HealthOut:
        return HealthOut(status="ok", version=services.version, engine=services.engine)


class _BodyHold:
    """The bytes of one large request body, held against the byte budget of queued work
    (``IMAGESTUDIO_MAX_QUEUED_BYTES``) while the request lives.

    A body of :data:`OFF_LOOP_BYTES` or more is held from before its first byte is read (by its
    ``Content-Length``; a chunked body once it has arrived), so a flood of big bodies is refused
    with 503 ``QUEUE_FULL`` instead of being buffered: the body, and then the command decoded
    from it (a data URI is a string as long as the body), stay in memory until the answer.
    """

    def __init__(self, services: Services) -> None:
        self._services = services
        self._hold: Hold | None = None

    def take(self, size: int | None) -> None:
        if self._hold is None and size is not None and size >= OFF_LOOP_BYTES:
            self._hold = self._services.tasks.hold(size)

    def release(self) -> None:
        if self._hold is not None:
            self._hold.release()


@asynccontextmanager
async def _holding_body(services: Services) -> AsyncIterator[_BodyHold]:
    held = _BodyHold(services)
    try:
        yield held
    finally:
        held.release()


async def _prepared(
    request: Request[Any, Any, Any], prepare: Callable[[bytes | bytearray], T], held: _BodyHold
) -> T:
    """The body decoded and validated by ``prepare``, off the event loop when it is big; its bytes
    are counted in ``held`` first."""
    try:
        held.take(request.content_length)
    except QueueFull:
        # read and drop the body (in chunks, keeping none) so that the client, still sending,
        # reads the 503 instead of a connection reset; the server's body deadline bounds this
        async for _chunk in request.stream():
            pass
        raise
    raw = await read_body(request.stream(), request.content_length)
    held.take(len(raw))
    return await prepare_body(raw, prepare, request.app.state.body_limiter)


def _wants_async(prefer: str | None) -> bool:
    return prefer is not None and any(
        part.split(";")[0].strip().lower() == "respond-async" for part in prefer.split(",")
    )


_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def _idempotency(key: str | None, route: str, body: Struct) -> IdempotencyKey | None:
    """The key and a fingerprint of the request (route and canonical body) it came with."""
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidParameters(
            "Idempotency-Key must be 1 to 255 visible ASCII characters", field="Idempotency-Key"
        )
    canonical = msgspec.json.encode(body, order="sorted")
    fingerprint = hashlib.sha256(route.encode() + b"\n" + canonical).hexdigest()
    return IdempotencyKey(key=key, fingerprint=fingerprint)


PreferHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Prefer", required=False, description="`respond-async`: answer 202 with the task at once"
    ),
]
IdempotencyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description="Repeat a request safely: the same key and body give the same task for 24 hours",
        schema_extra={"pattern": "^[\\x21-\\x7e]{1,255}$"},
    ),
]
GenerateResult = Response[GenerationResponse | TaskResponse]
Generating = GenerateTextToImage | GenerateImageToImage | UpscaleImage

_ACCEPTED = {
    202: ResponseSpec(
        data_container=TaskResponse,
        description="Accepted (with `Prefer: respond-async`): the task; `Location` is /api/tasks/{taskId}",
        generate_examples=False,
    )
}


async def _generate(
    request: Request[Any, Any, Any],
    services: Services,
    use_case: Generating,
    body_type: type[TextToImageBody | ImageToImageBody | UpscaleBody],
    prefer: str | None,
    idempotency_key: str | None,
) -> GenerateResult:
    route = request.url.path

    def prepare(raw: bytes | bytearray) -> tuple[Any, IdempotencyKey | None]:
        body = decode_body(raw, body_type)
        return body.to_command(), _idempotency(idempotency_key, route, body)

    async with _holding_body(services) as held:
        command, idempotency = await _prepared(request, prepare, held)
        if _wants_async(prefer):
            task = await use_case.submit(command, idempotency)
            return Response(
                TaskResponse(data=task_out(task)),
                status_code=202,
                headers={"Location": f"/api/tasks/{task.id}", "Preference-Applied": "respond-async"},
            )
        generation = await use_case(command, idempotency)
    return Response(GenerationResponse(data=generation_out(generation, _base_url(request))), status_code=200)


class GenerateController(Controller):
    path = "/api/generate"
    tags = ("generation",)

    @post(
        "/text-to-image",
        status_code=200,
        summary="Generate an image from a text prompt",
        operation_class=documented_body(TextToImageBody),
        responses=_errors(400, 403, 409, 413, 415, 500, 503) | _ACCEPTED,
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
        operation_class=documented_body(ImageToImageBody),
        responses=_errors(400, 403, 404, 409, 413, 415, 500, 503) | _ACCEPTED,
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
        operation_class=documented_body(UpscaleBody),
        responses=_errors(400, 403, 404, 409, 413, 415, 500, 503) | _ACCEPTED,
    )
    async def upscale(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        prefer: PreferHeader = None,
        idempotency_key: IdempotencyHeader = None,
    ) -> GenerateResult:
        return await _generate(request, services, services.upscale, UpscaleBody, prefer, idempotency_key)


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


class HistoryController(Controller):
    path = "/api/history"
    tags = ("history",)

    @get(
        "/",
        summary="List generations, newest first: filters, full-text search, cursor pages",
        description=_HISTORY_DESCRIPTION,
        responses=_errors(400, 500, 503),
    )
    async def list_history(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        limit: Annotated[int, QueryParameter(ge=1, le=500, description="Page size, 1 to 500")] = 50,
        offset: Annotated[
            int, QueryParameter(ge=0, le=2**62, description="Items to skip; not together with cursor")
        ] = 0,
        type: Annotated[
            Literal["image", "video"] | None, QueryParameter(description="Only this type")
        ] = None,
        cursor: Annotated[
            str | None,
            QueryParameter(
                description="The nextCursor of the previous page: the page after it, with the same"
                " filters and sort (stable while generations are added). Opaque; a bad one is 400"
            ),
        ] = None,
        q: Annotated[
            str | None,
            QueryParameter(
                description="Full-text search of prompt and negative prompt: every word must be a word"
                " of either, in any order, ignoring case (`SKY red` finds `Sunset, red sky`; whole words:"
                " `sun` does not find `Sunset`). At most 200 characters and 16 words",
                max_length=200,
                schema_extra={"pattern": _SEARCH_PATTERN},
            ),
        ] = None,
        operation: Annotated[
            Literal["text-to-image", "image-to-image", "upscale"] | None,
            QueryParameter(description="Only this operation"),
        ] = None,
        engine: Annotated[
            str | None,
            QueryParameter(
                description="Only images made by this engine (`local`, `runware`)",
                schema_extra={"pattern": "^[A-Za-z0-9_.-]{1,32}$"},
            ),
        ] = None,
        model: Annotated[
            str | None,
            QueryParameter(
                description="Only images made with this model id, e.g. `runware:100@1`",
                schema_extra={"pattern": _MODEL_PATTERN},
            ),
        ] = None,
        created_from: Annotated[
            str | None,
            QueryParameter(
                name="from",
                description="Created at or after this instant (inclusive): ISO-8601 date or date-time,"
                " e.g. `2026-01-02` or `2026-01-02T10:00:00Z`; without an offset it is UTC",
                schema_extra=_INSTANT,
            ),
        ] = None,
        created_to: Annotated[
            str | None,
            QueryParameter(
                name="to",
                description="Created before this instant (exclusive), not before `from`; as `from`",
                schema_extra=_INSTANT,
            ),
        ] = None,
        sort: Annotated[
            Literal["newest", "oldest"],
            QueryParameter(description="`newest` first (default) or `oldest` first; ties by id"),
        ] = "newest",
    ) -> HistoryResponse:
        query = HistoryQuery.parse(
            limit=limit,
            offset=offset,
            type=type,
            q=q,
            operation=operation,
            engine=engine,
            model=model,
            created_from=created_from,
            created_to=created_to,
            sort=sort,
            cursor=cursor,
        )
        page = await services.list_history(query)
        return history_response(page, _base_url(request), limit, offset)

    @get("/{generation_id:str}", summary="One generation", responses=_errors(400, 404, 500, 503))
    async def get_generation(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDep,
        generation_id: Annotated[str, PathParameter(schema_extra=_ID_DOCS)],
    ) -> GenerationResponse:
        generation = await services.get_generation(_parse_id(generation_id))
        return GenerationResponse(data=generation_out(generation, _base_url(request)))

    @delete(
        "/{generation_id:str}",
        status_code=200,
        summary="Delete a generation and its image file",
        responses=_errors(400, 403, 404, 415, 500, 503),
    )
    async def delete_generation(
        self, services: ServicesDep, generation_id: Annotated[str, PathParameter(schema_extra=_ID_DOCS)]
    ) -> DeletedResponse:
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
        responses=_errors(400, 403, 413, 415, 500, 503),
    )
    async def update_settings(
        self, request: Request[Any, Any, Any], services: ServicesDep
    ) -> SettingsResponse:
        async with _holding_body(services) as held:
            patch = await _prepared(request, lambda raw: decode_body(raw, SettingsBody).to_patch(), held)
        settings = await services.update_settings(patch)
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
                "Vary": "Origin",  # CORS headers differ by Origin: a browser must not reuse one for another
            },
        )


class TasksController(Controller):
    path = "/api/tasks"
    tags = ("tasks",)

    @get(
        "/",
        summary="Active tasks (running, then queued in order) and recent finished ones",
        responses=_errors(400, 500, 503),
    )
    async def list_tasks(
        self,
        services: ServicesDep,
        limit: Annotated[int, QueryParameter(ge=1, le=500, description="Finished tasks to include")] = 50,
    ) -> TaskListResponse:
        return TaskListResponse(data=[task_out(task) for task in await services.tasks.list_tasks(limit)])

    @get(
        "/{task_id:str}",
        summary="One task: status, progress, position, result or error",
        responses=_errors(404, 500, 503),
    )
    async def get_task(
        self, request: Request[Any, Any, Any], services: ServicesDep, task_id: FromPath[str]
    ) -> TaskResponse:
        task = await services.tasks.get(task_id)
        generation = None
        if task.generation_id is not None:
            try:
                found = await services.get_generation(task.generation_id)
                generation = generation_out(found, _base_url(request))
            except NotFound:
                generation = None  # deleted since
        return TaskResponse(data=task_out(task, generation))

    @delete(
        "/{task_id:str}",
        status_code=200,
        summary="Cancel a queued or running task",
        responses=_errors(403, 404, 409, 415, 500, 503),
    )
    async def cancel_task(self, services: ServicesDep, task_id: FromPath[str]) -> TaskResponse:
        return TaskResponse(data=task_out(await services.tasks.cancel(task_id)))
