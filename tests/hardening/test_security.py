"""The protections of a server that may face more than its own machine.

Loopback only unless a token is set; the token on every route but health and docs; a per-client
rate limit; JSON-only state changes; WebSocket origins. Each test fails if its protection goes.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from litestar.exceptions import WebSocketDisconnect
from PIL import Image

from imagestudio.cli import main
from imagestudio.config import Config, ConfigError, RateLimit, Secret, is_loopback, parse_rate_limit
from imagestudio.http.security import RateLimiter
from tests.assertions import assert_error
from tests.hardening.conftest import TOKEN, Client

OpenClient = Callable[..., AbstractContextManager[Client]]
BEARER = {"Authorization": f"Bearer {TOKEN}"}
LOCAL_ORIGIN = "http://localhost:5173"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - the address these tests expect to be refused


def _generate(client: Client, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.post(
        "/api/generate/text-to-image",
        json={"prompt": "a red sunset", "width": 128, "height": 128, "steps": 1},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


# --- binding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_hosts_need_no_token(host: str, tmp_path: Path) -> None:
    assert is_loopback(host)
    assert Config(data_dir=tmp_path, host=host).host == host


@pytest.mark.parametrize(
    "host", [ALL_INTERFACES, "::", "192.168.1.20", "10.0.0.5", "example.com", "", "localhost.evil"]
)
def test_a_reachable_host_is_refused_without_a_token_and_allowed_with_one(host: str, tmp_path: Path) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="IMAGESTUDIO_API_TOKEN"):
        Config(data_dir=tmp_path, host=host)
    assert Config(data_dir=tmp_path, host=host, api_token=Secret(TOKEN)).host == host


def test_serve_on_all_interfaces_without_a_token_exits_2_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("IMAGESTUDIO_API_TOKEN", raising=False)
    assert main(["serve", "--host", ALL_INTERFACES, "--data-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert ALL_INTERFACES in error
    assert "IMAGESTUDIO_API_TOKEN" in error
    assert not (tmp_path / "imagestudio.db").exists()  # refused before anything was opened


def test_the_installed_command_refuses_a_lan_address_without_a_token(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "imagestudio", "serve", "--host", "192.168.1.20", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert b"IMAGESTUDIO_API_TOKEN" in done.stderr
    assert b"Traceback" not in done.stderr


@pytest.mark.parametrize(
    "token", ["short", "x" * 15, "has spaces in it!!", "tok\u00e9n-with-accents-123", "a+b/c=" * 4]
)
def test_weak_or_unsafe_tokens_are_a_configuration_error(token: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="IMAGESTUDIO_API_TOKEN"):
        Config.from_env({"IMAGESTUDIO_API_TOKEN": token, "IMAGESTUDIO_DATA_DIR": str(tmp_path)})


def test_the_token_is_a_secret_in_the_config_and_its_secrets(tmp_path: Path) -> None:
    config = Config.from_env({"IMAGESTUDIO_API_TOKEN": TOKEN, "IMAGESTUDIO_DATA_DIR": str(tmp_path)})
    assert config.api_token == Secret(TOKEN)
    assert TOKEN not in repr(config)
    assert TOKEN in config.secrets


# --- the token -------------------------------------------------------------------------------


def _routes(client: Client) -> list[tuple[str, str]]:
    """Every documented operation, with sample path parameters filled in."""
    samples = {"generation_id": "1", "task_id": "some-task", "key": "2026-01-01/a.jpg"}
    found = []
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        for method in operations:
            if method in ("get", "post", "put", "delete"):
                found.append((method.upper(), path.format(**samples)))
    return found


def test_with_a_token_every_api_route_and_image_answers_401_without_it(app_client: OpenClient) -> None:
    with app_client(api_token=Secret(TOKEN)) as client:
        routes = [(m, p) for m, p in _routes(client) if p != "/health"]
        assert len(routes) >= 10
        assert ("GET", "/generated/2026-01-01/a.jpg") in routes
        for method, path in routes:
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token-0000000000"},
                {"X-API-Key": TOKEN[:-1]},
            ):
                response = client.request(
                    method, path, json={} if method in ("POST", "PUT") else None, headers=headers
                )
                body = assert_error(response, 401, "UNAUTHORIZED")
                assert response.headers["www-authenticate"].startswith("Bearer")
                assert TOKEN not in response.text, (method, path)
                assert body["error"]


def test_with_a_token_health_and_docs_stay_open(app_client: OpenClient) -> None:
    with app_client(api_token=Secret(TOKEN)) as client:
        for path in ("/health", "/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 200, path


def test_the_token_opens_every_route_as_bearer_or_as_api_key(app_client: OpenClient) -> None:
    with app_client(api_token=Secret(TOKEN)) as client:
        made = _generate(client, BEARER)
        image = client.get(made["filePath"], headers={"X-API-Key": TOKEN})
        assert image.status_code == 200
        assert client.get("/api/history", headers={"authorization": f"bearer {TOKEN}"}).json()["total"] == 1
        assert client.get(f"/api/history/{made['id']}", headers={"X-API-Key": TOKEN}).status_code == 200
        assert client.get("/api/settings", headers=BEARER).status_code == 200
        assert client.get("/api/tasks", headers=BEARER).status_code == 200
        assert client.delete(f"/api/history/{made['id']}", headers=BEARER).status_code == 200


def test_the_openapi_document_declares_the_token_when_one_is_required(app_client: OpenClient) -> None:
    with app_client(api_token=Secret(TOKEN)) as client:
        document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["BearerToken"]["scheme"] == "bearer"
    assert schemes["ApiKey"]["name"] == "X-API-Key"
    assert document["paths"]["/api/history"]["get"]["security"] == [{"BearerToken": []}, {"ApiKey": []}]
    assert "security" not in document["paths"]["/health"]["get"]
    assert "401" in document["paths"]["/api/history"]["get"]["responses"]


def test_without_a_token_nothing_asks_for_one(client: Client) -> None:
    assert client.get("/api/history").status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def _socket_refusal(client: Client, url: str, **kwargs: Any) -> tuple[dict[str, Any], int]:
    with client.websocket_connect(url, **kwargs) as socket:
        message = socket.receive_json(timeout=5)
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json(timeout=5)
    return message, closed.value.code


def test_with_a_token_the_websocket_without_it_gets_an_error_and_closes_1008(app_client: OpenClient) -> None:
    with app_client(api_token=Secret(TOKEN)) as client:
        for url in ("/ws/generation", "/ws/generation?token=wrong-token-00000000", "/ws/generation?taskId=a"):
            message, code = _socket_refusal(client, url)
            assert message["type"] == "error"
            assert message["code"] == "UNAUTHORIZED"
            assert TOKEN not in str(message)
            assert code == 1008


@pytest.mark.parametrize(
    ("query", "headers"),
    [(f"?taskId=t-1&token={TOKEN}", {}), ("?taskId=t-1", BEARER), ("?taskId=t-1", {"X-API-Key": TOKEN})],
)
def test_the_websocket_accepts_the_token_in_the_query_or_a_header(
    app_client: OpenClient, query: str, headers: dict[str, str]
) -> None:
    with app_client(api_token=Secret(TOKEN)) as client:
        with client.websocket_connect("/ws/generation" + query, headers=headers) as socket:
            response = client.post(
                "/api/generate/text-to-image",
                json={"prompt": "a quiet lake", "width": 128, "height": 128, "steps": 1, "taskId": "t-1"},
                headers=BEARER,
            )
            assert response.status_code == 200, response.text
            statuses = []
            while not statuses or statuses[-1] not in ("completed", "failed"):
                statuses.append(socket.receive_json(timeout=30)["status"])
        assert statuses[-1] == "completed"


# --- the rate limit --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("100/minute", RateLimit(100, 60.0)),
        ("10/second", RateLimit(10, 1.0)),
        ("10/s", RateLimit(10, 1.0)),
        (" 5 / 10s ", RateLimit(5, 10.0)),
        ("1000/hour", RateLimit(1000, 3600.0)),
        ("20000/day", RateLimit(20000, 86400.0)),
        ("3/minutes", RateLimit(3, 60.0)),
    ],
)
def test_rate_limits_are_read_as_a_count_per_period(text: str, limit: RateLimit) -> None:
    assert parse_rate_limit(text) == limit


@pytest.mark.parametrize(
    "text", ["100", "fast", "0/minute", "-1/minute", "10/fortnight", "10/0s", "1.5/second", "/m"]
)
def test_bad_rate_limits_are_a_configuration_error(text: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="IMAGESTUDIO_RATE_LIMIT"):
        Config.from_env({"IMAGESTUDIO_RATE_LIMIT": text, "IMAGESTUDIO_DATA_DIR": str(tmp_path)})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limiter_allows_a_burst_then_refills_evenly_per_client() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(3, 60.0), clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [None, None, None]
    wait = limiter.take("a")
    assert wait == pytest.approx(20.0)
    assert limiter.take("b") is None  # another client has its own budget
    clock.now += 19.0
    assert limiter.take("a") is not None
    clock.now += 1.5
    assert limiter.take("a") is None
    assert limiter.take("a") is not None


def test_the_limiter_forgets_the_least_recent_clients_first_so_memory_stays_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(1, 60.0), clock=clock, max_clients=100)
    for n in range(1000):
        limiter.take(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) == 100
    assert limiter.take("10.0.3.231") is not None  # among the most recent: still limited


def test_over_the_limit_is_429_in_the_error_shape_with_retry_after_and_cors(app_client: OpenClient) -> None:
    with app_client(rate_limit=RateLimit(3, 60.0)) as client:
        headers = {"Origin": LOCAL_ORIGIN}
        assert [client.get("/api/history", headers=headers).status_code for _ in range(3)] == [200] * 3
        response = client.get("/api/settings", headers=headers)
        body = assert_error(response, 429, "RATE_LIMITED")
        assert "3 per minute" in body["error"]
        assert 1 <= int(response.headers["retry-after"]) <= 20
        assert response.headers["access-control-allow-origin"] == LOCAL_ORIGIN
        assert "Retry-After" in response.headers["access-control-expose-headers"]
        posted = client.post("/api/generate/text-to-image", json={"prompt": "a cat"}, headers=headers)
        assert_error(posted, 429, "RATE_LIMITED")
        message, code = _socket_refusal(client, "/ws/generation")
        assert (message["code"], code) == ("RATE_LIMITED", 1008)


def test_failed_token_guesses_count_against_the_rate_limit(app_client: OpenClient) -> None:
    with app_client(api_token=Secret(TOKEN), rate_limit=RateLimit(5, 60.0)) as client:
        for n in range(5):
            assert_error(
                client.get("/api/history", headers={"X-API-Key": f"guess-{n:020d}"}), 401, "UNAUTHORIZED"
            )
        assert_error(client.get("/api/history", headers={"X-API-Key": TOKEN}), 429, "RATE_LIMITED")


def test_without_a_rate_limit_many_requests_pass(client: Client) -> None:
    assert {client.get("/health").status_code for _ in range(200)} == {200}


# --- JSON only for state changes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"data": {"prompt": "a cat"}}, "application/x-www-form-urlencoded"),
        ({"files": {"prompt": ("p.txt", b"a cat")}}, "multipart/form-data"),
        ({"content": b'{"prompt": "a cat"}', "headers": {"Content-Type": "text/plain"}}, "text/plain"),
        ({"content": b'{"prompt": "a cat"}'}, "no Content-Type"),
        (
            {"content": b'{"prompt": "a cat"}', "headers": {"Content-Type": "application/jsonx"}},
            "application/jsonx",
        ),
    ],
)
def test_a_cross_site_form_post_cannot_start_a_generation(
    client: Client, kwargs: dict[str, Any], shown: str, data_dir: Path
) -> None:
    response = client.post("/api/generate/text-to-image", **kwargs)
    body = assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert shown in body["error"]
    assert client.get("/api/history").json()["total"] == 0
    assert client.get("/api/tasks").json()["data"] == []


def test_a_form_cannot_change_settings_and_json_with_a_charset_can(client: Client) -> None:
    before = client.get("/api/settings").json()
    assert_error(client.put("/api/settings", data={"defaultWidth": "768"}), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert client.get("/api/settings").json() == before
    response = client.put(
        "/api/settings",
        content=b'{"defaultWidth": 768}',
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert response.status_code == 200, response.text


def test_a_delete_needs_no_body_but_a_body_must_be_json(client: Client) -> None:
    made = _generate(client)
    refused = client.request(
        "DELETE", f"/api/history/{made['id']}", content=b"id=1", headers={"Content-Type": "text/plain"}
    )
    assert_error(refused, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert client.delete(f"/api/history/{made['id']}").status_code == 200


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "http://evil.example:8000", "http://localhost.evil.example:5173", "null"],
)
def test_a_state_change_from_a_foreign_origin_is_403_even_as_json(client: Client, origin: str) -> None:
    """A page whose host name was rebound to 127.0.0.1 sends JSON "same-origin": its Origin gives it away."""
    body = {"prompt": "a cat", "width": 128, "height": 128, "steps": 1}
    posted = client.post("/api/generate/text-to-image", json=body, headers={"Origin": origin})
    assert_error(posted, 403, "FORBIDDEN")
    before = client.get("/api/settings").json()
    changed = client.put("/api/settings", json={"defaultSteps": 5}, headers={"Origin": origin})
    assert_error(changed, 403, "FORBIDDEN")
    assert client.get("/api/settings").json() == before
    assert client.get("/api/history").json()["total"] == 0
    assert client.get("/api/history", headers={"Origin": origin}).status_code == 200  # reading is CORS's job


@pytest.mark.parametrize("headers", [{}, {"Origin": LOCAL_ORIGIN}, {"Origin": "http://[::1]:5173"}])
def test_a_state_change_from_an_allowed_origin_or_a_program_goes_through(
    client: Client, headers: dict[str, str]
) -> None:
    _generate(client, headers)


# --- WebSocket origins ------------------------------------------------------------------------


def test_a_websocket_from_a_foreign_origin_is_refused(client: Client) -> None:
    for origin in ("https://evil.example", "http://localhost.evil.example:5173", "http://127.0.0.1.nip.io"):
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/ws/generation", headers={"Origin": origin}) as socket,
        ):
            socket.receive_json(timeout=5)
        assert refused.value.code == 1008


@pytest.mark.parametrize("headers", [{}, {"Origin": LOCAL_ORIGIN}, {"Origin": "http://127.0.0.1:3000"}])
def test_a_websocket_from_an_allowed_origin_or_a_program_is_accepted(
    client: Client, headers: dict[str, str]
) -> None:
    with client.websocket_connect("/ws/generation?taskId=bad id", headers=headers) as socket:
        assert socket.receive_json(timeout=5)["type"] == "error"  # accepted: the handler itself answers


# --- what responses carry ---------------------------------------------------------------------


def test_served_images_carry_nosniff_and_the_content_type_of_their_bytes(client: Client) -> None:
    made = _generate(client)
    response = client.get(made["filePath"])
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).format == "JPEG"
