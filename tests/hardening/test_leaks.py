"""No answer gives away a stack trace, a filesystem path outside storage, the Runware key or the
API token, whatever went wrong; and a real server's log never shows the token either."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client
from litestar.testing import TestClient
from PIL import Image

from imagestudio.config import Config, Secret
from imagestudio.domain.model import ImageSpec
from imagestudio.domain.ports import ProgressCallback
from imagestudio.http.app import create_app
from imagestudio.testing.fake_runware import FakeRunware, Fault
from tests.fakes import FakeImageGenerator, fake_services
from tests.hardening.conftest import BASE_URL, TOKEN
from tests.servers import start_server, stop_server

Client = TestClient  # type: ignore[type-arg]
KEY = "rw-leak-check-key-7d0e5b9a3c"


def _assert_clean(response: Any, forbidden: list[str]) -> None:
    text = response.text + json.dumps(dict(response.headers))
    for word in [KEY, TOKEN, "Traceback", 'File "', "site-packages", "/etc/passwd", *forbidden]:
        assert word not in text, (word, response.request.method, response.request.url, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert body["success"] is False
        assert set(body) <= {"success", "error", "code", "details"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeRunware]:
    with FakeRunware.running(api_key=KEY) as running:
        yield running


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_no_error_answer_shows_a_trace_a_path_the_key_or_the_token(fake: FakeRunware, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    storage = data_dir / "generated"
    storage.mkdir(parents=True)
    (storage / "fake.png").write_bytes(b"GIF89a but not really")
    (storage / "cut.png").write_bytes(_png()[:40])
    (data_dir / "blocker").write_bytes(b"x")
    config = Config(
        data_dir=data_dir,
        engine="runware",
        runware_api_key=Secret(KEY),
        runware_api_url=fake.url,
        runware_timeout=2.0,
        api_token=Secret(TOKEN),
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    forbidden = [str(tmp_path), "/proc/", "imagestudio.db"]
    answered: set[int] = set()
    with TestClient(create_app(config), base_url=BASE_URL) as client:

        def check(method: str, url: str, **kwargs: Any) -> None:
            kwargs["headers"] = auth | kwargs.get("headers", {})
            response = client.request(method, url, **kwargs)
            answered.add(response.status_code)
            _assert_clean(response, forbidden)

        t2i = "/api/generate/text-to-image"
        check("POST", t2i, content=b"{not json", headers={"Content-Type": "application/json"})
        check("POST", t2i, json={"prompt": 5})
        check("POST", t2i, json={"prompt": "a cat", "width": "wide", "colour": "red"})
        check("POST", t2i, data={"prompt": "a cat"})
        check(
            "POST", t2i, content=b"x" * (32 * 1024 * 1024 + 1), headers={"Content-Type": "application/json"}
        )
        check("GET", "/api/nothing-here")
        check("DELETE", "/api/settings")
        check("GET", "/api/history", params={"limit": "many", "from": "yesterday"})
        check("GET", "/api/history/abc")
        check("GET", "/api/history/999")
        check("DELETE", "/api/history/999")
        check("GET", "/generated/../../etc/passwd")
        check("GET", "/generated/%2e%2e/%2e%2e/etc/passwd")
        check("GET", "/generated/" + str(data_dir / "imagestudio.db"))
        check("GET", "/api/tasks/no-such-task")
        check("DELETE", "/api/tasks/no-such-task")
        for reference in (
            "/etc/passwd",
            str(data_dir / "imagestudio.db"),
            "../imagestudio.db",
            "../blocker",
            "missing.png",
            "fake.png",
            "cut.png",
            "file:///etc/passwd",
            "data:image/png;base64,%%%",
            "data:image/png;base64," + base64.b64encode(b"not an image").decode(),
        ):
            check("POST", "/api/generate/upscale", json={"imagePath": reference})
            check("POST", "/api/generate/image-to-image", json={"seedImage": reference, "prompt": "a cat"})
        check("PUT", "/api/settings", json={"storagePath": str(data_dir / "blocker" / "sub")})
        check("PUT", "/api/settings", json={"storagePath": "/proc/imagestudio-cannot-be-here"})
        check("PUT", "/api/settings", json={"storagePath": "~no-such-user-91ab/x"})
        for fault in (
            Fault.SERVER_ERROR,
            Fault.INSUFFICIENT_CREDITS,
            Fault.MALFORMED_JSON,
            Fault.IMAGE_NOT_AN_IMAGE,
        ):
            fake.reset()
            fake.inject(fault)
            check("POST", t2i, json={"prompt": "a cat", "width": 128, "height": 128})
        fake.reset()
        fake.inject(Fault.HANG)
        check("POST", t2i, json={"prompt": "a cat", "width": 128, "height": 128})
        fake.reset()
        check("GET", "/api/tasks")
        response = client.get("/api/history", headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
        answered.add(response.status_code)
        _assert_clean(response, forbidden)
    assert {400, 401, 404, 405, 413, 415, 500, 503} <= answered


class ExplodingGenerator(FakeImageGenerator):
    """An engine with a bug: its exception message carries a path and a secret."""

    async def text_to_image(self, spec: ImageSpec, progress: ProgressCallback) -> Any:
        raise RuntimeError(f"boom in /srv/imagestudio/secret/engine.py with key {KEY}")


def test_an_unexpected_failure_is_a_bare_500_internal_error(tmp_path: Path) -> None:
    services = fake_services(generator=ExplodingGenerator())
    with TestClient(create_app(Config(data_dir=tmp_path), services=services), base_url=BASE_URL) as client:
        response = client.post(
            "/api/generate/text-to-image", json={"prompt": "a cat", "width": 128, "height": 128}
        )
        assert response.status_code == 500
        assert response.json() == {
            "success": False,
            "error": "Internal server error",
            "code": "INTERNAL_ERROR",
        }
        _assert_clean(response, ["/srv/", "boom"])
        tasks = client.get("/api/tasks")
        _assert_clean(tasks, ["/srv/", "boom"])


@pytest.mark.e2e
def test_a_real_server_never_writes_the_token_to_its_log(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "data", env={"IMAGESTUDIO_API_TOKEN": TOKEN, "IMAGESTUDIO_LOG_LEVEL": "debug"}
    )
    try:
        assert httpx.get(f"{server.url}/api/history", timeout=10).status_code == 401
        ok = httpx.get(f"{server.url}/api/history", headers={"X-API-Key": TOKEN}, timeout=10)
        assert ok.status_code == 200
        assert TOKEN not in ok.text
        with websockets.sync.client.connect(
            f"ws://127.0.0.1:{server.port}/ws/generation?token={TOKEN}&taskId=t-1"
        ):
            pass
        with websockets.sync.client.connect(
            f"ws://127.0.0.1:{server.port}/ws/generation?token=wrong"
        ) as socket:
            assert json.loads(socket.recv(timeout=10))["code"] == "UNAUTHORIZED"
    finally:
        stop_server(server)
    log = server.log_path.read_text()
    assert "/ws/generation" in log  # the access log did record the socket, with its query
    assert "[redacted]" in log
    assert TOKEN not in log
