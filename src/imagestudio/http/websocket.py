"""The progress WebSocket ``/ws/generation`` (CONTRACT.md section 9) and its message shapes.

``?taskId=X`` receives only task X (starting with its latest event, so a late subscriber learns how
it ended); without it the socket receives every task's events. Every event carries ``seq``,
increasing for the life of the server (on PostgreSQL, of every server on the database, whose events
every socket receives): a client that reconnects with ``?after=<seq>`` first receives what it
missed from a bounded replay buffer. ``?previews=true`` adds the engine's ``preview`` image
to live ``generating`` messages (replayed ones have none). Messages are JSON text frames, each one
of the Structs below (their ``type`` tells them apart); the socket stays open after a task's
terminal message, until the client closes it. ``http/asyncapi.py`` documents them from these same
Structs.

An invalid query parameter is answered after the handshake with one :class:`SocketError` and close
code 1008, so a client can read why (rather than a bare refused handshake).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from msgspec import UNSET, UnsetType

from imagestudio.domain.errors import InvalidParameters
from imagestudio.domain.model import TaskEvent, TaskStatus, validate_task_id
from imagestudio.domain.ports import TaskEventStream

__all__ = [
    "ProgressMessage",
    "ReplayTruncated",
    "SocketError",
    "encode_message",
    "event_message",
    "generation_socket",
]

_POLICY_VIOLATION = 1008
_T = TypeVar("_T")
_SEQ = re.compile(r"[0-9]{1,18}")


_Preview = Annotated[
    str,
    msgspec.Meta(
        description="with ?previews=true, on some generating messages: a data:image/jpeg;base64"
        " URI of the work so far, at most 256 px on its long side (about three a second at most)"
    ),
]


class ProgressMessage(msgspec.Struct, rename="camel", tag_field="type", tag="progress"):
    """One task's state: sent when it is queued, moves in the queue, makes progress and ends.

    Every task's messages end with exactly one whose ``status`` is ``completed`` (with
    ``generationId`` and ``generationIds``), ``failed`` (with ``error`` and ``code``) or ``cancelled``.
    """

    task_id: str
    status: TaskStatus
    progress: Annotated[int, msgspec.Meta(ge=0, le=100, description="0-99 while generating, 100 at the end")]
    seq: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            description="increasing for the life of the server (of every server on one PostgreSQL"
            " database); ?after=",
        ),
    ]
    position: (
        Annotated[int, msgspec.Meta(ge=1, description="place in the queue (queued only)")] | UnsetType
    ) = UNSET
    generation_id: (
        Annotated[int, msgspec.Meta(description="the (first) Generation made (completed only)")] | UnsetType
    ) = UNSET
    generation_ids: (
        Annotated[
            list[int],
            msgspec.Meta(
                description="every Generation made, in seed order (completed only; a batch has several)"
            ),
        ]
        | UnsetType
    ) = UNSET
    error: Annotated[str, msgspec.Meta(description="readable reason (failed only)")] | UnsetType = UNSET
    code: (
        Annotated[str, msgspec.Meta(description="error code such as STORAGE_ERROR (failed only)")] | UnsetType
    ) = UNSET
    preview: _Preview | UnsetType = UNSET


class ReplayTruncated(msgspec.Struct, rename="camel", tag_field="type", tag="replay-truncated"):
    """Sent first on a socket opened with ``?after=`` when events after ``after`` were no longer
    kept: the ones before ``oldestSeq`` are lost (fetch the tasks over HTTP instead)."""

    after: int
    oldest_seq: int


class SocketError(msgspec.Struct, tag_field="type", tag="error"):
    """A refusal, followed by close code 1008: an invalid ``taskId`` or ``after``
    (``INVALID_PARAMETERS``), a missing or wrong token (``UNAUTHORIZED``), too many requests
    (``RATE_LIMITED``)."""

    code: str
    error: str


_encoder = msgspec.json.Encoder()


def encode_message(message: ProgressMessage | ReplayTruncated | SocketError) -> str:
    return _encoder.encode(message).decode()


def event_message(event: TaskEvent) -> ProgressMessage:
    return ProgressMessage(
        task_id=event.task_id,
        status=event.status,
        progress=event.progress,
        seq=event.seq,
        position=_given(event.position),
        generation_id=_given(event.generation_id),
        generation_ids=list(event.generation_ids) if event.generation_ids else UNSET,
        error=_given(event.error),
        code=_given(event.code) if event.error is not None else UNSET,
        preview=_data_uri(event.preview) if event.preview is not None else UNSET,
    )


def _data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def _given(value: _T | None) -> _T | UnsetType:
    return UNSET if value is None else value


@dataclass(frozen=True, slots=True)
class _Query:
    task_id: str | None
    after: int | None
    previews: bool


def _query(socket: WebSocket[Any, Any, Any]) -> _Query:
    """``taskId``, ``after`` and ``previews`` from the query string (``InvalidParameters`` naming
    the bad one)."""
    task_id = socket.query_params.get("taskId")
    if task_id is not None:
        validate_task_id(task_id)
    raw_after = socket.query_params.get("after")
    after = None
    if raw_after is not None:
        if _SEQ.fullmatch(raw_after) is None:
            raise InvalidParameters(
                "after must be the seq of a message you received (a whole number, 0 or more),"
                f" not {raw_after[:40]!r}",
                field="after",
            )
        after = int(raw_after)
    raw_previews = socket.query_params.get("previews", "false")
    if raw_previews not in ("true", "false"):
        raise InvalidParameters(
            f"previews must be true or false, not {raw_previews[:40]!r}", field="previews"
        )
    return _Query(task_id, after, raw_previews == "true")


@websocket("/ws/generation")
async def generation_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """Stream progress events of one task (``?taskId=``) or of all tasks; ``?after=`` replays."""
    await socket.accept()
    try:
        query = _query(socket)
    except InvalidParameters as error:
        await socket.send_text(encode_message(SocketError(code=error.code, error=error.message)))
        await socket.close(code=_POLICY_VIOLATION, reason=f"invalid {error.field or 'query'}")
        return
    events: TaskEventStream = socket.app.state.services.events
    subscription = events.subscribe(query.task_id, after=query.after, previews=query.previews)
    try:
        await subscription.ready()
        if subscription.truncated_before is not None and query.after is not None:
            truncated = ReplayTruncated(after=query.after, oldest_seq=subscription.truncated_before)
            await socket.send_text(encode_message(truncated))
        async with anyio.create_task_group() as group:

            async def drain_client() -> None:
                try:
                    while True:
                        await socket.receive_data(mode="text")
                except WebSocketDisconnect:
                    pass
                group.cancel_scope.cancel()

            group.start_soon(drain_client)
            async for event in subscription:
                await socket.send_text(encode_message(event_message(event)))
    except* (WebSocketDisconnect, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the client went away; nothing to clean up but the subscription
    finally:
        subscription.close()
