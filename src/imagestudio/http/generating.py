"""One generation request, whichever its operation: answered at once or, with
``Prefer: respond-async``, as a task (202); repeatable with ``Idempotency-Key``.

The three generation routes of ``http/controllers.py`` and the re-run of a generation differ only
in their use case and body type; everything else they do is here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter
from msgspec import Struct

from imagestudio.domain.errors import (
    Conflict,
    GenerationCancelled,
    Interrupted,
    InvalidParameters,
    InvalidPrompt,
    InvalidStoragePath,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    QueueFull,
    StorageError,
)
from imagestudio.domain.generate import (
    GenerateImageToImage,
    GenerateTextToImage,
    RerunGeneration,
    UpscaleImage,
)
from imagestudio.domain.tasks import IdempotencyKey
from imagestudio.http.bodies import decode_body
from imagestudio.http.intake import _holding_body, _prepared
from imagestudio.http.openapi import header
from imagestudio.http.routing import BODY, DATABASE, PARAMETERS, Cause, _base_url
from imagestudio.http.schemas import (
    BatchResponse,
    GenerationResponse,
    ImageToImageBody,
    RerunBody,
    TaskResponse,
    TextToImageBody,
    UpscaleBody,
    generation_out,
    task_out,
)
from imagestudio.services import Services

__all__ = [
    "GENERATED",
    "GENERATED_BATCH",
    "GENERATED_HEADERS",
    "GENERATION_ERRORS",
    "GenerateResult",
    "Generating",
    "IdempotencyHeader",
    "PreferHeader",
]


def _wants_async(prefer: str | None) -> bool:
    return prefer is not None and any(
        part.split(";")[0].strip().lower() == "respond-async" for part in prefer.split(",")
    )


_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def _idempotency(key: str | None, route: str, body: Struct) -> IdempotencyKey | None:
    """The key and a fingerprint of the request (route and canonical body, ``count`` included
    when it is more than 1) it came with."""
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidParameters(
            "Idempotency-Key must be 1 to 255 visible ASCII characters", field="Idempotency-Key"
        )
    fields = msgspec.to_builtins(body)
    if fields.get("count") == 1:  # one image: the fingerprint of a request from before batches
        del fields["count"]
    canonical = msgspec.json.encode(fields, order="sorted")
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
GenerateResult = Response[GenerationResponse | BatchResponse | TaskResponse]
Generating = GenerateTextToImage | GenerateImageToImage | UpscaleImage | RerunGeneration
Body = TextToImageBody | ImageToImageBody | UpscaleBody | RerunBody

GENERATED = {
    200: ResponseSpec(
        data_container=GenerationResponse,
        description="The generation, once it is made and stored (without `Prefer: respond-async`)",
        generate_examples=False,
    ),
    202: ResponseSpec(
        data_container=TaskResponse,
        description="Accepted (with `Prefer: respond-async`): the task, queued; follow it at `Location`"
        " or over the WebSocket",
        generate_examples=False,
    ),
}
"""A generation route's answers: 200 is always the generation, 202 always the task."""
GENERATED_BATCH = GENERATED | {
    200: ResponseSpec(
        data_container=GenerationResponse | BatchResponse,  # type: ignore[arg-type]
        description="Once made and stored (without `Prefer: respond-async`): with `count` 1 or absent,"
        " `data` is the Generation; with `count` > 1, `data` is the list of every Generation of the"
        " batch, in seed order",
        generate_examples=False,
    ),
}
"""The answers of a route that takes ``count`` (text-to-image, image-to-image)."""
GENERATED_HEADERS = {
    202: {
        "Location": header("The task: `/api/tasks/{taskId}`", pattern="^/api/tasks/.+$"),
        "Preference-Applied": header("`respond-async`", const="respond-async"),
    }
}
GENERATION_ERRORS: tuple[Cause, ...] = (
    *BODY,
    *PARAMETERS,  # Prefer, Idempotency-Key
    InvalidPrompt,
    InvalidStoragePath,
    Conflict,
    GenerationCancelled,
    QueueFull,
    Interrupted,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    StorageError,
    *DATABASE,
)
"""What a generation route can answer besides its result (image-to-image and upscale add
``NotFound``: a source image that does not exist)."""


def _command_of(body: Any) -> Any:
    return body.to_command()


async def _generate(
    request: Request[Any, Any, Any],
    services: Services,
    use_case: Generating,
    body_type: type[Body],
    prefer: str | None,
    idempotency_key: str | None,
    *,
    command_of: Callable[[Any], Any] = _command_of,
    optional_body: bool = False,
) -> GenerateResult:
    """``command_of`` turns the decoded body into the use case's command; ``optional_body``: no
    body (or only whitespace) reads as ``{}``."""
    route = request.url.path

    def prepare(raw: bytes | bytearray) -> tuple[Any, IdempotencyKey | None]:
        body = decode_body(b"{}" if optional_body and (not raw or raw.isspace()) else raw, body_type)
        return command_of(body), _idempotency(idempotency_key, route, body)

    async with _holding_body(services) as held:
        command, idempotency = await _prepared(request, prepare, held)
        if _wants_async(prefer):
            task = await use_case.submit(command, idempotency)
            return Response(
                TaskResponse(data=task_out(task)),
                status_code=202,
                headers={"Location": f"/api/tasks/{task.id}", "Preference-Applied": "respond-async"},
            )
        generations = await use_case.batch(command, idempotency)
    base = _base_url(request)
    if (getattr(command, "count", None) or 1) > 1:
        return Response(BatchResponse(data=[generation_out(g, base) for g in generations]), status_code=200)
    return Response(GenerationResponse(data=generation_out(generations[0], base)), status_code=200)
