"""The progress WebSocket ``/ws/generation`` (CONTRACT.md section 9).

``?taskId=X`` receives only task X (starting with its latest event, so a late subscriber learns
how it ended); without it the socket receives every task's events. Every event carries ``seq``,
increasing for the life of the server: a client that reconnects with ``?after=<seq>`` first
receives what it missed from a bounded replay buffer. Messages are JSON text frames.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import QueryParameter

from imagestudio.domain.errors import InvalidParameters
from imagestudio.domain.model import TaskEvent, validate_task_id
from imagestudio.domain.ports import TaskEventStream

__all__ = ["event_message", "generation_socket"]

_POLICY_VIOLATION = 1008


def event_message(event: TaskEvent) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "progress",
        "taskId": event.task_id,
        "progress": event.progress,
        "status": event.status.value,
        "seq": event.seq,
    }
    if event.position is not None:
        message["position"] = event.position
    if event.generation_id is not None:
        message["generationId"] = event.generation_id
    if event.error is not None:
        message["error"] = event.error
        message["code"] = event.code
    return message


@websocket("/ws/generation")
async def generation_socket(
    socket: WebSocket[Any, Any, Any],
    task_id: Annotated[str | None, QueryParameter(name="taskId", required=False)] = None,
    after: Annotated[int | None, QueryParameter(name="after", required=False, ge=0)] = None,
) -> None:
    """Stream progress events of one task (``?taskId=``) or of all tasks; ``?after=`` replays."""
    await socket.accept()
    if task_id is not None:
        try:
            validate_task_id(task_id)
        except InvalidParameters as error:
            await socket.send_text(
                msgspec.json.encode({"type": "error", "code": error.code, "error": error.message}).decode()
            )
            await socket.close(code=_POLICY_VIOLATION, reason="invalid taskId")
            return
    events: TaskEventStream = socket.app.state.services.events
    subscription = events.subscribe(task_id, after=after)
    try:
        if subscription.truncated_before is not None:
            await socket.send_text(
                msgspec.json.encode(
                    {"type": "replay-truncated", "after": after, "oldestSeq": subscription.truncated_before}
                ).decode()
            )
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
                await socket.send_text(msgspec.json.encode(event_message(event)).decode())
    except* (WebSocketDisconnect, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the client went away; nothing to clean up but the subscription
    finally:
        subscription.close()
