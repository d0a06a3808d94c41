"""``HEAD`` wherever ``GET`` is, over real HTTP to a real ``imagestudio serve``: the same status and
headers as the ``GET`` (``Content-Length`` of its body), and no body on the wire. A 404, a 405 and
a refused token are answered alike; an ``Allow`` that names ``GET`` names ``HEAD`` too."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import Server, start_server, stop_server

pytestmark = pytest.mark.e2e

TOKEN = "head-test-token-0123456789"  # noqa: S105 - made up
_PER_ANSWER = {"date"}
"""Headers that differ between any two answers."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("head") / "data")
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def made(server: Server) -> dict[str, Any]:
    """One generation (with its task), so that every GET route has something to show."""
    body = {"prompt": "a red cube", "width": 128, "height": 128, "steps": 1, "seed": 5, "taskId": "head-1"}
    answer = httpx.post(f"{server.url}/api/generate/text-to-image", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    made: dict[str, Any] = answer.json()["data"]
    return made


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("head-token") / "data",
        {"IMAGESTUDIO_API_TOKEN": TOKEN, "IMAGESTUDIO_LOG_FORMAT": "json"},
    )
    yield running
    stop_server(running)


def _headers(response: httpx.Response) -> dict[str, str]:
    shown = {name: value for name, value in response.headers.items() if name not in _PER_ANSWER}
    if "content-security-policy" in shown:  # /redoc's nonce is new in every answer
        shown["content-security-policy"] = re.sub(
            r"'nonce-[^']+'", "'nonce-N'", shown["content-security-policy"]
        )
    return shown


def _asset_urls(server: Server) -> list[str]:
    pages = httpx.get(f"{server.url}/docs").text + httpx.get(f"{server.url}/redoc").text
    return sorted(set(re.findall(r'(?:src|href)="(/docs/assets/[^"]+)"', pages)))


def _paths(server: Server, made: dict[str, Any]) -> list[str]:
    return [
        "/health",
        "/api/history",
        "/api/history?limit=1&sort=oldest",
        f"/api/history/{made['id']}",
        "/api/settings",
        "/api/tasks",
        "/api/tasks/head-1",
        "/api/models",
        made["filePath"],
        "/docs",
        "/redoc",
        "/openapi.json",
        "/asyncapi.json",
        "/",
        *_asset_urls(server),
    ]


def _raw(server: Server, method: str, target: str, headers: str = "") -> tuple[bytes, bytes]:
    """The answer as sent on the wire, to the end of the connection: (head, everything after it)."""
    request = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{headers}Connection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(request.encode())
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    return head, rest


def test_head_answers_every_get_route_as_the_get_does(server: Server, made: dict[str, Any]) -> None:
    paths = _paths(server, made)
    assert len([path for path in paths if path.startswith("/docs/assets/")]) == 7
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path in paths:
            got = client.get(path)
            head = client.head(path)
            assert got.status_code == 200, (path, got.text[:200])
            assert head.status_code == got.status_code, path
            assert _headers(head) == _headers(got), path
            assert head.headers["content-length"] == str(len(got.content)), path
            assert head.content == b"", path


def test_head_sends_no_body_on_the_wire(server: Server, made: dict[str, Any]) -> None:
    image = made["filePath"]
    for target in ("/health", image, _asset_urls(server)[0], "/api/history/999999"):
        head, rest = _raw(server, "HEAD", target)
        assert rest == b"", target
        got_head, got_body = _raw(server, "GET", target)
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        assert length is not None, head
        assert int(length.group(1)) == len(got_body) > 0, target
        assert head.split(b"\r\n", 1)[0] == got_head.split(b"\r\n", 1)[0], target


def test_head_of_a_missing_resource_is_the_gets_404(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path in ("/api/history/999999", "/api/tasks/no-such-task", "/generated/no/such.png", "/nowhere"):
            got, head = client.get(path), client.head(path)
            assert got.status_code == head.status_code == 404, path
            assert got.json()["code"] == "NOT_FOUND"
            assert _headers(head) == _headers(got), path
            assert head.content == b""


def test_head_where_only_post_is_is_the_gets_405(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        got = client.get("/api/generate/text-to-image")
        head = client.head("/api/generate/text-to-image")
    assert got.status_code == head.status_code == 405
    assert _headers(head) == _headers(got)
    assert "HEAD" not in head.headers["allow"]  # no GET there, so no HEAD either


def test_allow_names_head_wherever_it_names_get(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        refused = client.post("/health", json={})
        assert client.get("/api/history").status_code == 200  # a kept answer: not one for OPTIONS
        options = client.options("/api/history")
    assert refused.status_code == 405
    assert refused.json()["code"] == "METHOD_NOT_ALLOWED"
    assert {method.strip() for method in refused.headers["allow"].split(",")} == {"GET", "HEAD", "OPTIONS"}
    assert options.status_code == 204
    assert options.content == b""
    assert {method.strip() for method in options.headers["allow"].split(",")} == {"GET", "HEAD", "OPTIONS"}


def test_head_without_the_token_is_refused_as_the_get_is(token_server: Server) -> None:
    with httpx.Client(base_url=token_server.url, timeout=30) as client:
        for path in ("/api/history", "/api/settings", "/generated/x.png"):
            got, head = client.get(path), client.head(path)
            assert got.status_code == head.status_code == 401, path
            assert got.json()["code"] == "UNAUTHORIZED"
            assert _headers(head) == _headers(got), path
            assert head.headers["www-authenticate"].startswith("Bearer")
        authorized = client.head("/api/history", headers={"Authorization": f"Bearer {TOKEN}"})
        assert authorized.status_code == 200
        for path in (
            "/health",
            "/docs",
            "/redoc",
            "/openapi.json",
            "/asyncapi.json",
            *_asset_urls(token_server),
        ):
            assert client.head(path).status_code == 200, path


def test_head_of_a_foreign_host_is_refused_as_the_get_is(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30, headers={"Host": "evil.example"}) as client:
        got, head = client.get("/health"), client.head("/health")
    assert got.status_code == head.status_code == 400
    assert got.json()["code"] == "INVALID_HOST"
    assert _headers(head) == _headers(got)


def test_a_refused_head_is_one_console_line_saying_head(token_server: Server) -> None:
    path = "/api/tasks/logged-head"
    assert httpx.head(f"{token_server.url}{path}", timeout=30).status_code == 401
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(raw) for raw in token_server.log_text().splitlines() if raw.startswith("{")]
        mine = [line for line in lines if line.get("event") == "request refused" and line.get("path") == path]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(mine) == 1
    assert mine[0]["method"] == "HEAD"
    assert mine[0]["status"] == 401
    assert mine[0]["code"] == "UNAUTHORIZED"  # read from the GET's body, which the client never got
