"""End to end: slow clients cannot take the server down (CONTRACT.md section 11).

A real ``imagestudio serve`` process and raw loopback sockets: connections that trickle their
headers are closed after ``IMAGESTUDIO_HEADER_TIMEOUT``, bodies that trickle are answered 408 and
closed, connections over the cap make room by closing the ones still waiting for headers or
trickling a body, so a client that sends its request promptly gets through, and the descriptor
limit is raised at start and never reached.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from PIL import Image

from tests.assertions import assert_error
from tests.servers import Server, start_server, stop_server

pytestmark = pytest.mark.e2e

_PATIENCE = 20.0
"""How long a test waits for the server to close a connection before calling it kept open."""


@contextlib.contextmanager
def _server(tmp_path: Path, **env: str) -> Iterator[Server]:
    running = start_server(tmp_path / "data", env=env)
    try:
        yield running
    finally:
        stop_server(running)


def _connect(port: int, first: bytes = b"GET /health HTTP/1.1\r\n") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if first:
        sock.sendall(first)
    return sock


def _closed_by_server(sock: socket.socket, wait: float = 0.0) -> bool:
    """Whether the server has closed ``sock`` (waiting up to ``wait`` seconds for it)."""
    readable, _, _ = select.select([sock], [], [], wait)
    if not readable:
        return False
    try:
        while chunk := sock.recv(65536, socket.MSG_DONTWAIT):
            del chunk  # a response the server sent before closing (a 503 refusal, say)
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    return True


def _trickle_until_closed(sock: socket.socket, byte: bytes = b"X") -> bool:
    """Send one byte every 0.2 s until the server closes the connection; ``False`` if it never
    does within :data:`_PATIENCE`."""
    deadline = time.monotonic() + _PATIENCE
    while time.monotonic() < deadline:
        try:
            sock.sendall(byte)
        except ConnectionError:
            return True
        if _closed_by_server(sock, wait=0.2):
            return True
    return False


def _read_response(sock: socket.socket, data: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 response with a ``Content-Length`` (its first bytes ``data`` if already read):
    its status and body."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-response: {head!r}"
        body += chunk
    return int(lines[0].split()[1]), body


def _body_request(length: int, path: str = "/api/generate/text-to-image") -> bytes:
    """A request's headers announcing a JSON body of ``length`` bytes, and the body's first bytes."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode("ascii") + b'{"prompt": "a slow upload'


def _drain(sock: socket.socket) -> tuple[bytes, bool]:
    """What the server has sent on ``sock`` so far, without waiting, and whether it has closed."""
    data = b""
    while select.select([sock], [], [], 0)[0]:
        try:
            chunk = sock.recv(65536)
        except ConnectionError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def _trickle_body_until_closed(sock: socket.socket) -> bytes | None:
    """Send one byte of body every 0.2 s until the server closes the connection: what it sent
    before closing, or ``None`` if it never closes within :data:`_PATIENCE`."""
    received = b""
    deadline = time.monotonic() + _PATIENCE
    while time.monotonic() < deadline:
        try:
            sock.sendall(b" ")
        except ConnectionError:
            return received + _drain(sock)[0]
        select.select([sock], [], [], 0.2)
        data, closed = _drain(sock)
        received += data
        if closed:
            return received
    return None


def _assert_408(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
    error = json.loads(body)
    assert error["success"] is False
    assert error["code"] == "REQUEST_TIMEOUT"
    assert "too slowly" in error["error"]
    assert error["details"]["minBytesPerSecond"] == 64 * 1024


class _Trickler:
    """A thread sending each socket's body: ``size`` bytes every ``every`` seconds, keeping what the
    server answers on each, until the server closes it or the thread is stopped."""

    def __init__(self, sockets: list[socket.socket], size: int, every: float) -> None:
        self.sockets = sockets
        self.answers = [b""] * len(sockets)
        self.closed = [False] * len(sockets)
        self._chunk = b" " * size
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Trickler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            for index, sock in enumerate(self.sockets):
                if self.closed[index]:
                    continue
                try:
                    sock.sendall(self._chunk)
                except OSError:
                    self.closed[index] = True
                data, closed = _drain(sock)
                self.answers[index] += data
                self.closed[index] = self.closed[index] or closed


def test_a_connection_that_trickles_its_headers_is_closed_after_the_header_timeout(tmp_path: Path) -> None:
    with _server(tmp_path, IMAGESTUDIO_HEADER_TIMEOUT="1") as server:
        trickling = _connect(server.port)
        silent = _connect(server.port, first=b"")
        try:
            assert _trickle_until_closed(trickling), "a byte now and then kept the connection open"
            assert _closed_by_server(silent, wait=_PATIENCE), "a connection that sent nothing stayed open"
        finally:
            trickling.close()
            silent.close()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/health").status_code == 200


def test_a_kept_alive_connection_must_send_its_next_headers_in_time(tmp_path: Path) -> None:
    # uvicorn's keep-alive timer is cancelled by any byte: only the header deadline closes this one
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with _server(tmp_path, IMAGESTUDIO_HEADER_TIMEOUT="1") as server, _connect(server.port, request) as sock:
        status, body = _read_response(sock)
        assert status == 200, body
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        assert _trickle_until_closed(sock), "the second request's headers were never cut off"


def test_slow_clients_over_the_cap_make_room_for_a_prompt_client(tmp_path: Path) -> None:
    # the header timeout is long here: only the cap protects the prompt client
    with _server(tmp_path, IMAGESTUDIO_MAX_CONNECTIONS="50", IMAGESTUDIO_HEADER_TIMEOUT="600") as server:
        slow = [_connect(server.port) for _ in range(200)]
        try:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for _ in range(5):
                    slow.extend(_connect(server.port) for _ in range(20))
                    assert client.get("/health").status_code == 200
            time.sleep(0.5)  # let the server's closes arrive
            still_open = [sock for sock in slow if not _closed_by_server(sock)]
            assert len(still_open) <= 50
        finally:
            for sock in slow:
                sock.close()


def test_the_descriptor_limit_is_raised_and_slow_clients_never_reach_it(tmp_path: Path) -> None:
    limits_file = Path("/proc/self/limits")
    if not limits_file.exists():
        pytest.skip("reads the server's limits from /proc")
    # soft 100, hard 300: the server raises the soft limit to 300 and caps connections at 150
    wrap = ["sh", "-c", 'ulimit -Sn 100 && ulimit -Hn 300 && exec "$@"', "sh"]
    server = start_server(tmp_path / "data", env={"IMAGESTUDIO_HEADER_TIMEOUT": "600"}, wrap=wrap)
    slow: list[socket.socket] = []
    try:
        limits = Path(f"/proc/{server.process.pid}/limits").read_text().splitlines()
        open_files = next(line for line in limits if line.startswith("Max open files")).split()
        assert open_files[3:5] == ["300", "300"]  # soft, hard
        # twice the process's descriptors: without a cap it runs out and refuses everyone
        slow = [_connect(server.port) for _ in range(600)]
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(5):
                assert client.get("/health").status_code == 200
        assert server.process.poll() is None
    finally:
        for sock in slow:
            sock.close()
        stop_server(server)


def test_a_request_body_that_trickles_is_answered_408_in_the_error_shape_and_closed(tmp_path: Path) -> None:
    with _server(tmp_path, IMAGESTUDIO_HEADER_TIMEOUT="1") as server, _connect(server.port, b"") as sock:
        sock.sendall(_body_request(1000))
        answer = _trickle_body_until_closed(sock)
        assert answer is not None, "a body trickling a byte every 0.2 s kept its connection open"
        _assert_408(answer)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/health").status_code == 200


def test_at_the_cap_trickling_bodies_make_room_for_a_prompt_client(tmp_path: Path) -> None:
    # the header timeout is long here: only the cap's eviction of slow bodies lets the newcomers in
    with _server(tmp_path, IMAGESTUDIO_MAX_CONNECTIONS="10", IMAGESTUDIO_HEADER_TIMEOUT="600") as server:
        slow = [_connect(server.port, first=_body_request(1000)) for _ in range(10)]
        try:
            with _Trickler(slow, size=1, every=0.2) as trickler:
                time.sleep(2)  # every body is now more than a second behind 64 KiB/s
                for _ in range(5):
                    # a new connection each time, so it is a trickler that makes room
                    response = httpx.get(f"{server.url}/health", timeout=10, headers={"Connection": "close"})
                    assert response.status_code == 200, response.text
                time.sleep(0.5)  # let the 408s arrive
            # each newcomer closes after its answer, so one eviction may make room for several
            evicted = [answer for answer in trickler.answers if answer]
            assert 1 <= len(evicted) <= 5
            for answer in evicted:
                _assert_408(answer)
        finally:
            for sock in slow:
                sock.close()


def test_a_large_body_sent_promptly_in_chunks_is_never_cut(tmp_path: Path) -> None:
    # 8 MiB in 128 KiB chunks 25 ms apart: longer than the header timeout, far above 64 KiB/s
    pixels = bytes(range(256)) * (1400 * 1400 * 3 // 256 + 1)
    image = Image.frombytes("RGB", (1400, 1400), pixels)
    png = io.BytesIO()
    image.save(png, "PNG", compress_level=0)
    seed = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    body = json.dumps({"prompt": "a quiet lake", "seedImage": seed, "width": 128, "height": 128, "steps": 1})
    payload = body.encode()
    assert len(payload) > 7 * 1024 * 1024
    head = (
        "POST /api/generate/image-to-image HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode("ascii")
    with _server(tmp_path, IMAGESTUDIO_HEADER_TIMEOUT="1") as server, _connect(server.port, head) as sock:
        sock.settimeout(_PATIENCE)
        chunk = 128 * 1024
        for start in range(0, len(payload), chunk):
            sock.sendall(payload[start : start + chunk])
            time.sleep(0.025)
        status, answer = _read_response(sock)
        assert status == 200, answer[:300]
        assert json.loads(answer)["success"] is True


def test_at_the_cap_without_a_slow_connection_a_newcomer_gets_503_in_the_error_shape(tmp_path: Path) -> None:
    # requests whose body arrives promptly (320 KiB/s each) are in progress: they are not evicted
    with _server(tmp_path, IMAGESTUDIO_MAX_CONNECTIONS="10", IMAGESTUDIO_HEADER_TIMEOUT="600") as server:
        busy = [_connect(server.port, first=_body_request(8 * 1024 * 1024)) for _ in range(10)]
        try:
            with (
                _Trickler(busy, size=16 * 1024, every=0.05),
                httpx.Client(base_url=server.url, timeout=10) as client,
            ):
                time.sleep(1.5)  # past the second a slow body may lag before it can be evicted
                response = client.get("/health")
                body = assert_error(response, 503, "QUEUE_FULL")
                assert body["details"] == {"maxConnections": 10}
                assert response.headers["retry-after"] == "1"
                busy[0].shutdown(socket.SHUT_RDWR)  # one upload gives up
                time.sleep(0.5)
                assert client.get("/health").status_code == 200
        finally:
            for sock in busy:
                sock.close()


def test_websockets_take_at_most_half_the_cap_and_are_not_cut_off_as_slow(tmp_path: Path) -> None:
    async def scenario(server: Server) -> tuple[int, bytes]:
        uri = f"ws://127.0.0.1:{server.port}/ws/generation?taskId=held"
        async with contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(websockets.connect(uri)) for _ in range(5)]
            with pytest.raises(websockets.InvalidStatus) as refused:
                await stack.enter_async_context(websockets.connect(uri))
            await asyncio.sleep(2.5)  # over the header timeout: open sockets are not waiting for headers
            for sock in sockets:
                await asyncio.wait_for(await sock.ping(), timeout=10)
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                assert (await client.get("/health")).status_code == 200
            return refused.value.response.status_code, refused.value.response.body or b""

    with _server(tmp_path, IMAGESTUDIO_MAX_CONNECTIONS="10", IMAGESTUDIO_HEADER_TIMEOUT="1") as server:
        status, body = asyncio.run(scenario(server))
    assert status == 503
    assert json.loads(body)["code"] == "QUEUE_FULL"


JSON_CLOSE = {"Content-Type": "application/json", "Connection": "close"}


def _post_in_chunks(port: int, path: str, payload: bytes) -> str:
    """POST ``payload`` in 1 MiB writes with ``Connection: close``; the status, or the error."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            )
            sock.sendall(head.encode("latin-1"))
            view = memoryview(payload)
            for start in range(0, len(payload), 1 << 20):
                sock.sendall(view[start : start + (1 << 20)])
            status, _body = _read_response(sock)
            return str(status)
    except OSError as error:
        return type(error).__name__


def test_big_bodies_over_the_byte_budget_are_answered_503_not_reset(tmp_path: Path) -> None:
    """Refused by their Content-Length before they are read, the bodies are still read and
    dropped, so clients still sending get the 503 in the error shape, not a connection reset
    (which a server that closes with unread bytes causes)."""
    budget = 1024 * 1024
    with _server(tmp_path, IMAGESTUDIO_MAX_QUEUED_BYTES=str(budget)) as server:
        body = json.dumps({"prompt": "a cat", "seedImage": "data:image/png;base64," + "A" * (30 * budget)})
        payload = body.encode()
        results: list[str] = []

        def post() -> None:
            results.append(_post_in_chunks(server.port, "/api/generate/image-to-image", payload))

        threads = [threading.Thread(target=post) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert results == ["503"] * 12
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answer = client.post("/api/generate/image-to-image", content=payload, headers=JSON_CLOSE)
            assert_error(answer, 503, "QUEUE_FULL")
            assert answer.json()["details"]["maxQueuedBytes"] == budget
            assert client.get("/health").status_code == 200
