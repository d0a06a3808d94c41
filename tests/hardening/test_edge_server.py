"""The edge of a real ``imagestudio serve`` process, spoken to over raw loopback sockets.

What only a real server shows: a request with no ``Host`` at all, HTTP/1.0, a WebSocket handshake
refused for its ``Host``, and the server's own log, which must never hold the API token in any
encoding, even when a browser percent-encoded it into ``?token=``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.servers import Server, start_server, stop_server

TOKEN = "edge~token.5f1c2a9e-7b3d_4c6a"  # noqa: S105 - made up; '~' is what URLSearchParams encodes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("edge") / "data"
    data_dir.mkdir()
    env = {"IMAGESTUDIO_API_TOKEN": TOKEN, "IMAGESTUDIO_LOG_LEVEL": "debug", "IMAGESTUDIO_LOG_FORMAT": "json"}
    running = start_server(data_dir, env)
    yield running
    stop_server(running)


def _exchange(server: Server, request: bytes) -> tuple[int, bytes, bytes]:
    """Send raw bytes, read the answer until the server closes or stops; status, headers, body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received or not _complete(received):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head, body


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return head.startswith(b"HTTP/1.1 101")


def _upgrade(path: str, host: str | None) -> bytes:
    lines = [f"GET {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_rebound_host_reads_nothing_from_a_real_server(server: Server) -> None:
    bearer = f"Authorization: Bearer {TOKEN}\r\n"
    request = f"GET /api/history HTTP/1.1\r\nHost: evil.example:{server.port}\r\n{bearer}\r\n".encode()
    status, _head, body = _exchange(server, request)
    assert status == 400
    assert json.loads(body)["code"] == "INVALID_HOST"
    request = f"GET /api/history HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{bearer}\r\n".encode()
    assert _exchange(server, request)[0] == 200


def test_http_1_1_without_host_is_refused_and_http_1_0_without_host_is_served(server: Server) -> None:
    status, _head, body = _exchange(server, b"GET /health HTTP/1.1\r\n\r\n")
    assert status == 400
    assert json.loads(body)["code"] == "INVALID_HOST"
    status, _head, body = _exchange(server, b"GET /health HTTP/1.0\r\n\r\n")
    assert status == 200
    assert json.loads(body)["status"] == "ok"


def test_a_websocket_handshake_with_a_foreign_host_is_refused(server: Server) -> None:
    query = f"/ws/generation?token={TOKEN}"
    assert _exchange(server, _upgrade(query, f"evil.example:{server.port}"))[0] == 403
    assert _exchange(server, _upgrade(query, None))[0] == 403
    assert _exchange(server, _upgrade(query, f"localhost:{server.port}"))[0] == 101


def test_a_percent_encoded_token_is_accepted_and_never_logged_in_any_encoding(server: Server) -> None:
    encodings = [
        quote(TOKEN, safe=""),  # %7E, as URLSearchParams writes it
        TOKEN.replace("~", "%7e"),
        "".join(f"%{ord(char):02X}" for char in TOKEN),
        "".join(f"%{ord(char):02x}" for char in TOKEN),
    ]
    host = f"127.0.0.1:{server.port}"
    for encoded in encodings:
        assert _exchange(server, _upgrade(f"/ws/generation?taskId=t-1&token={encoded}", host))[0] == 101
    basic = base64.b64encode(f"user:{TOKEN}".encode()).decode()
    request = f"GET /api/history?token={encodings[0]} HTTP/1.1\r\nHost: {host}\r\n"
    request += f"Authorization: Basic {basic}\r\n\r\n"
    assert _exchange(server, request.encode())[0] == 401
    stop_server(server)  # everything it logged is in the file now
    log = server.log_path.read_text()
    assert "WebSocket /ws/generation" in log  # the access log was on: there was something to redact
    assert "[redacted]" in log
    for encoded in [TOKEN, *encodings, basic, base64.b64encode(TOKEN.encode()).decode().rstrip("=")]:
        assert encoded not in log
        assert encoded.lower() not in log.lower()
