"""Runware's wire as the fake speaks it: ASGI types, paths, task ids, error bodies, body I/O.

Error bodies are ``{"errors": [{code, message, parameter?, taskType?, taskUUID?}]}``. Codes are
Runware's where a source names them (``invalidApiKey``, ``insufficientCredits``,
``conflictTaskUUID``, ``serviceUnavailable``, ``internalServerError``, ``rateLimitExceeded``,
``taskFailedOrNotFound``, ``unknownParameter``: RUNWARE.md and ``runware.errors``), otherwise the
``invalid<Parameter>`` / ``missing<Parameter>`` pattern ``runware.errors`` classifies as validation.
A request body is read up to a limit, and every answer is sent whole, with its length.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, Final

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_API_PATH: Final = "/v1"
_IMAGE_PATH: Final = re.compile(r"/image/([0-9a-f-]{36})\.(jpg|png|webp)")
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)

_AUTH_ERROR: Final = {
    "code": "invalidApiKey",
    "message": "Invalid API key. Get one at https://my.runware.ai/signup",
    "parameter": "apiKey",
    "taskType": "authentication",
}
_RUNNING_TASKS: Final = frozenset({"imageInference", "upscale", "imageUpload"})
_TASK_TYPES: Final = (*sorted(_RUNNING_TASKS), "getResponse", "modelSearch")


class _TaskError(Exception):
    """One task failed; ``body`` is its entry in Runware's ``errors`` list."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def _task_error(
    code: str, message: str, *, parameter: str | None = None, status: int = 400, **limits: Any
) -> _TaskError:
    body: dict[str, Any] = {"code": code, "message": message}
    if parameter is not None:
        body["parameter"] = parameter
    body.update(limits)
    return _TaskError(status, body)


def _capitalised(name: str) -> str:
    return name[:1].upper() + name[1:]


_NOT_JSON: Final[Any] = object()


def _decode_json(body: bytes | None) -> Any:
    if body is None:
        return _NOT_JSON
    try:
        return json.loads(body)
    except ValueError:
        return _NOT_JSON


def _tasks_of(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, list):
        return []
    return [task for task in document if isinstance(task, dict)]


def _task_ids(task: Any) -> dict[str, Any]:
    if not isinstance(task, dict):
        return {}
    return {key: task[key] for key in ("taskType", "taskUUID") if isinstance(task.get(key), str)}


def _request_error(code: str, message: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": message}]}


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}


def _request_base_url(scope: Scope, fallback: str) -> str:
    host = _headers(scope).get("host")
    return f"http://{host}" if host else fallback


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` once it grows past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(
    send: Send, status: int, body: bytes, content_type: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(
    send: Send, status: int, document: Any, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await _send(send, status, json.dumps(document).encode("utf-8"), "application/json", headers)
