"""The AsyncAPI document of /ws/generation, held to what the socket really sends."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from litestar.testing import TestClient

Client = TestClient  # type: ignore[type-arg]


def _document(client: Client) -> dict[str, Any]:
    response = client.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = response.json()
    return document


def _validator(document: dict[str, Any], message: str) -> Any:
    """A validator for one message's payload, its $refs resolved inside the document."""
    payload = document["components"]["messages"][message]["payload"]
    return jsonschema_rs.validator_for({**payload, "components": document["components"]})


def _kind(message: dict[str, Any]) -> str:
    return {"progress": "progress", "replay-truncated": "replayTruncated", "error": "error"}[message["type"]]


def test_the_document_names_the_channel_its_parameters_and_three_messages(client: Client) -> None:
    document = _document(client)
    assert document["asyncapi"].startswith("3.")
    assert document["servers"]["this"] == {
        "host": "127.0.0.1:8000",
        "protocol": "ws",
        "description": "this server",
    }
    channel = document["channels"]["generation"]
    assert channel["address"] == "/ws/generation"
    assert set(channel["bindings"]["ws"]["query"]["properties"]) == {"taskId", "after", "previews"}
    assert set(channel["messages"]) == {"progress", "replayTruncated", "error"}
    operation = document["operations"]["sendProgress"]
    assert operation["action"] == "send"
    for reference in operation["messages"]:  # every reference resolves
        name = reference["$ref"].rsplit("/", 1)[-1]
        assert channel["messages"][name]["$ref"] == f"#/components/messages/{name}"
    statuses = document["components"]["schemas"]["TaskStatus"]["enum"]
    assert set(statuses) == {"queued", "generating", "completed", "failed", "cancelled"}


def test_every_example_is_valid_against_its_own_schema_and_a_wrong_one_is_not(client: Client) -> None:
    document = _document(client)
    for name, message in document["components"]["messages"].items():
        validator = _validator(document, name)
        assert message["examples"], name
        for example in message["examples"]:
            assert validator.is_valid(example["payload"]), (name, example)
    progress = _validator(document, "progress")
    assert not progress.is_valid(
        {"type": "progress", "taskId": "t", "status": "done", "progress": 5, "seq": 1}
    )
    assert not progress.is_valid(
        {"type": "progress", "taskId": "t", "status": "queued", "progress": 101, "seq": 1}
    )
    assert not progress.is_valid({"type": "progress", "taskId": "t", "status": "queued", "progress": 1})


def test_the_token_parameter_is_documented_when_a_token_is_required(data_dir: Path) -> None:
    from imagestudio.config import Config, Secret
    from imagestudio.http.app import create_app

    app = create_app(Config(data_dir=data_dir, api_token=Secret("a-long-enough-token-123")))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        document = client.get("/asyncapi.json").json()  # open like the other docs
    assert "token" in document["channels"]["generation"]["bindings"]["ws"]["query"]["properties"]


def test_every_message_a_real_run_sends_matches_the_document(client: Client, data_dir: Path) -> None:
    """Queued, generating, completed, failed and cancelled progress, and error messages, as sent
    (the replay-truncated message is held to its schema by its example, made of the same Struct)."""
    document = _document(client)
    sent: list[dict[str, Any]] = []
    with client.websocket_connect("/ws/generation") as socket:
        # one task completes, a second is cancelled, a third fails where its folder became a file
        done: list[Any] = []
        first = threading.Thread(
            target=lambda: done.append(
                client.post(
                    "/api/generate/text-to-image",
                    json={"prompt": "a cat", "taskId": "doc-1", "steps": 6, "width": 256, "height": 256},
                )
            )
        )
        first.start()
        client.post(
            "/api/generate/text-to-image",
            json={"prompt": "a dog", "taskId": "doc-2", "steps": 2, "width": 128, "height": 128},
            headers={"Prefer": "respond-async"},
        )
        client.delete("/api/tasks/doc-2")
        first.join()
        assert client.put("/api/settings", json={"storagePath": "./spot"}).status_code == 200
        (data_dir / "spot").rmdir()
        (data_dir / "spot").write_bytes(b"a file where the folder was")
        client.post(
            "/api/generate/text-to-image",
            json={"prompt": "a cow", "taskId": "doc-3", "steps": 2, "width": 128, "height": 128},
        )
        while not any(m.get("taskId") == "doc-3" and m["status"] == "failed" for m in sent):
            sent.append(socket.receive_json(timeout=30))
    with client.websocket_connect("/ws/generation?taskId=bad%20id") as socket:
        sent.append(socket.receive_json(timeout=5))
    with client.websocket_connect("/ws/generation?after=abc") as socket:
        sent.append(socket.receive_json(timeout=5))
    statuses = {m.get("status") for m in sent if m["type"] == "progress"}
    assert {"queued", "generating", "completed", "cancelled", "failed"} <= statuses
    assert {m["type"] for m in sent} == {"progress", "error"}
    for message in sent:
        assert _validator(document, _kind(message)).is_valid(message), message


@pytest.mark.parametrize("after", ["abc", "-1", "1.5", "", "9" * 40])
def test_an_invalid_after_is_answered_like_an_invalid_task_id(client: Client, after: str) -> None:
    with client.websocket_connect(f"/ws/generation?after={after}") as socket:
        message = socket.receive_json(timeout=5)
    assert message == {
        "type": "error",
        "code": "INVALID_PARAMETERS",
        "error": message["error"],
    }
    assert "after" in message["error"]
