"""Step previews over the WebSocket: only for a socket that asks, at most a few a second, never
kept in the replay buffer."""

from __future__ import annotations

import base64
import io
import threading
import time
from typing import Any

from litestar.testing import TestClient
from PIL import Image

from imagestudio.domain.tasks import PREVIEW_INTERVAL

Client = TestClient  # type: ignore[type-arg]

SLOW = {"prompt": "a red sunset over the sea", "width": 2048, "height": 1024, "steps": 100}


def _run(client: Client, task_id: str) -> threading.Thread:
    thread = threading.Thread(
        target=lambda: client.post("/api/generate/text-to-image", json={**SLOW, "taskId": task_id})
    )
    thread.start()
    return thread


def _until_terminal(socket: Any) -> list[tuple[float, dict[str, Any]]]:
    messages = []
    while True:
        message = socket.receive_json(timeout=60)
        messages.append((time.monotonic(), message))
        if message["status"] in ("completed", "failed", "cancelled"):
            return messages


def _decoded(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    image.load()
    return image


def test_a_socket_that_asks_gets_small_previews_at_most_a_few_a_second(client: Client) -> None:
    with (
        client.websocket_connect("/ws/generation?taskId=pv-1&previews=true") as watching,
        client.websocket_connect("/ws/generation?taskId=pv-1") as plain,
    ):
        thread = _run(client, "pv-1")
        seen = _until_terminal(watching)
        plain_messages = [m for _, m in _until_terminal(plain)]
        thread.join()
    previews = [(at, m) for at, m in seen if "preview" in m]
    assert previews, "a 100-step local generation shows at least one preview"
    assert all(m["status"] == "generating" for _, m in previews)
    for _, message in previews:
        image = _decoded(message["preview"])
        assert image.format == "JPEG"
        assert max(image.size) <= 256
        assert image.size[0] == 2 * image.size[1]  # the picture's aspect
    span = seen[-1][0] - seen[0][0]
    assert len(previews) <= 2 + span / PREVIEW_INTERVAL
    assert not any("preview" in m for m in plain_messages)  # the other socket is unchanged


def test_no_preview_is_made_without_a_watcher_or_kept_for_a_replay(client: Client) -> None:
    with client.websocket_connect("/ws/generation?taskId=pv-2") as plain:
        thread = _run(client, "pv-2")
        messages = [m for _, m in _until_terminal(plain)]
        thread.join()
    assert not any("preview" in m for m in messages)
    with client.websocket_connect("/ws/generation?taskId=pv-3&previews=true") as watching:
        thread = _run(client, "pv-3")
        live = [m for _, m in _until_terminal(watching)]
        thread.join()
    assert any("preview" in m for m in live)
    first_seq = live[0]["seq"]
    with client.websocket_connect(f"/ws/generation?taskId=pv-3&previews=true&after={first_seq - 1}") as again:
        replayed = [m for _, m in _until_terminal(again)]
    assert [m["seq"] for m in replayed] == [m["seq"] for m in live]
    assert not any("preview" in m for m in replayed)


def test_a_bad_previews_value_is_answered_like_a_bad_task_id(client: Client) -> None:
    with client.websocket_connect("/ws/generation?previews=yes") as socket:
        message = socket.receive_json(timeout=5)
    assert message["type"] == "error"
    assert message["code"] == "INVALID_PARAMETERS"
    assert "previews" in message["error"]
