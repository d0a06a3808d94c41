"""The AsyncAPI 3.0 document of the progress WebSocket, served at ``/asyncapi.json``.

OpenAPI cannot describe a WebSocket's messages, so they get their own machine-readable document
beside ``/openapi.json``: the channel ``/ws/generation`` with its query parameters and the three
messages the server sends. The payload schemas are generated from the very Structs the socket
encodes (``http/websocket.py``), so the document cannot drift from the wire.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get
from litestar.response import Response

from imagestudio._version import __version__
from imagestudio.domain.model import TaskStatus
from imagestudio.domain.rules import TASK_ID_PATTERN
from imagestudio.http.websocket import ProgressMessage, ReplayTruncated, SocketError

__all__ = ["ASYNCAPI_PATH", "asyncapi_document", "asyncapi_route"]

ASYNCAPI_PATH = "/asyncapi.json"

_DESCRIPTION = """Live progress of every generation.

Open `/ws/generation` (all tasks) or `/ws/generation?taskId=ID` (one task; it starts with the
task's latest state, so a late subscriber still learns how it ended). Every message is a JSON text
frame whose `type` is `progress`, `replay-truncated` or `error`. A task's `progress` messages go
`queued` (with `position`) -> `generating` (progress 0-99) -> exactly one terminal message:
`completed` (with `generationId`), `failed` (with `error` and `code`) or `cancelled`. The socket
stays open after a terminal message (an all-tasks socket keeps receiving other tasks); close it
when you are done. Every `progress` message carries `seq`: reconnect with `?after=<last seq>` to
receive what you missed. Send nothing; anything sent is ignored.
"""


def _example(name: str, message: ProgressMessage | ReplayTruncated | SocketError) -> dict[str, Any]:
    """An example made of the Struct itself, so it is exactly what the socket would send."""
    return {"name": name, "payload": msgspec.to_builtins(message)}


_GENERATING = TaskStatus.GENERATING
_EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "progress": [
        _example("queued", ProgressMessage("t1", TaskStatus.QUEUED, 0, seq=41, position=2)),
        _example("generating", ProgressMessage("t1", _GENERATING, 40, seq=45)),
        _example(
            "completed",
            ProgressMessage("t1", TaskStatus.COMPLETED, 100, seq=52, generation_id=7, generation_ids=[7]),
        ),
        _example(
            "failed",
            ProgressMessage(
                "t1",
                TaskStatus.FAILED,
                30,
                seq=50,
                error="The storage folder cannot be written",
                code="STORAGE_ERROR",
            ),
        ),
        _example("cancelled", ProgressMessage("t1", TaskStatus.CANCELLED, 12, seq=47)),
    ],
    "replayTruncated": [_example("truncated", ReplayTruncated(after=3, oldest_seq=120))],
    "error": [
        _example(
            "invalid taskId",
            SocketError(
                code="INVALID_PARAMETERS", error="taskId must be 1 to 64 letters, digits, '_' or '-'"
            ),
        )
    ],
}

_MESSAGES = {"progress": ProgressMessage, "replayTruncated": ReplayTruncated, "error": SocketError}


def asyncapi_document(host: str = "127.0.0.1:8000", *, token: bool = False) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for a server reached at ``host``."""
    (_, components) = msgspec.json.schema_components(
        list(_MESSAGES.values()), ref_template="#/components/schemas/{name}"
    )
    messages = {
        name: {
            "name": name,
            "title": struct.__name__,
            "summary": (struct.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "),
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{struct.__name__}"},
            "examples": _EXAMPLES[name],
        }
        for name, struct in _MESSAGES.items()
    }
    query: dict[str, Any] = {
        "type": "object",
        "properties": {
            "taskId": {
                "type": "string",
                "pattern": f"^{TASK_ID_PATTERN}$",
                "description": "receive only this task's messages",
            },
            "after": {
                "type": "integer",
                "minimum": 0,
                "description": "first replay the kept messages with a greater seq",
            },
            "previews": {
                "type": "boolean",
                "default": False,
                "description": "add `preview` images to live generating messages, from engines that"
                " can show their work (the local engine can; Runware cannot)",
            },
        },
    }
    if token:
        query["properties"]["token"] = {
            "type": "string",
            "description": "IMAGESTUDIO_API_TOKEN, for clients that cannot send Authorization",
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "imagestudio progress", "version": __version__, "description": _DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {"this": {"host": host, "protocol": "ws", "description": "this server"}},
        "channels": {
            "generation": {
                "address": "/ws/generation",
                "description": "Progress of one task (?taskId=) or of every task.",
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
                "bindings": {"ws": {"method": "GET", "query": query}},
            }
        },
        "operations": {
            "sendProgress": {
                "action": "send",
                "channel": {"$ref": "#/channels/generation"},
                "summary": "The server sends progress, replay notices and refusals.",
                "messages": [{"$ref": f"#/channels/generation/messages/{name}"} for name in messages],
            }
        },
        "components": {"schemas": components, "messages": messages},
    }


def asyncapi_route(*, token: bool) -> Any:
    """The route serving the document (``token``: whether the server requires one)."""

    @get(ASYNCAPI_PATH, include_in_schema=False, sync_to_thread=False)
    def asyncapi_json(request: Request[Any, Any, Any]) -> Response[bytes]:
        """The AsyncAPI document of ``/ws/generation``."""
        host = request.headers.get("host") or "127.0.0.1:8000"
        return Response(
            msgspec.json.encode(asyncapi_document(host, token=token)), media_type="application/json"
        )

    return asyncapi_json
