"""The Host allowlist, CORS preflights and kept answers across origins (CONTRACT.md section 11).

A page whose host name was rebound to 127.0.0.1 reads nothing: its requests carry its own name in
``Host``. A refused preflight is 403 in the error shape. A kept answer never carries another
origin's ``Access-Control-Allow-Origin``. Each test fails if its protection goes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from litestar.exceptions import WebSocketDisconnect

from imagestudio.config import Config, ConfigError, RateLimit, Secret
from imagestudio.http.app import create_app
from imagestudio.http.security import HostAllowlist
from tests.assertions import assert_error
from tests.hardening.conftest import TOKEN, Client

OpenClient = Callable[..., AbstractContextManager[Client]]
LOCAL_ORIGIN = "http://localhost:5173"
OTHER_LOCAL_ORIGIN = "http://127.0.0.1:3000"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - a wildcard bind, which names no host

REBOUND_HOSTS = [
    "evil.example:8000",
    "evil.example",
    "127.0.0.1.nip.io:8000",
    "localhost.evil.example",
    "[::2]:8000",
    "0.0.0.0:8000",
    "127.0.0.1:8000@evil.example",
    "127.0.0.1:8000:8000",
    "",
]


def _generate(client: Client, **headers: str) -> dict[str, Any]:
    response = client.post(
        "/api/generate/text-to-image",
        json={"prompt": "a secret garden", "width": 128, "height": 128, "steps": 1},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


# --- Host ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", REBOUND_HOSTS)
def test_a_foreign_host_reads_nothing_not_history_settings_tasks_or_images(client: Client, host: str) -> None:
    made = _generate(client)
    paths = ("/api/history", f"/api/history/{made['id']}", "/api/settings", "/api/tasks", made["filePath"])
    for path in paths:
        response = client.get(path, headers={"Host": host})
        assert_error(response, 400, "INVALID_HOST")
        assert "secret garden" not in response.text
        assert response.headers["content-type"] == "application/json"
    assert_error(client.get("/health", headers={"Host": host}), 400, "INVALID_HOST")
    posted = client.post("/api/generate/text-to-image", json={"prompt": "a cat"}, headers={"Host": host})
    assert_error(posted, 400, "INVALID_HOST")
    assert client.get("/api/history").json()["total"] == 1


@pytest.mark.parametrize("host", REBOUND_HOSTS)
def test_the_host_is_checked_before_routing_so_unknown_paths_and_methods_are_refused_too(
    client: Client, host: str
) -> None:
    assert_error(client.get("/no/such/route", headers={"Host": host}), 400, "INVALID_HOST")
    assert_error(client.delete("/health", headers={"Host": host}), 400, "INVALID_HOST")
    assert_error(client.get("/no/such/route"), 404, "NOT_FOUND")
    assert_error(client.delete("/health"), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:8000", "127.0.0.1", "127.8.9.10:1234", "localhost", "LOCALHOST:53", "localhost.", "[::1]:80"],
)
def test_loopback_names_are_served_with_any_port(client: Client, host: str) -> None:
    assert client.get("/api/history", headers={"Host": host}).status_code == 200


def test_the_host_check_comes_before_the_rate_limit_the_token_and_the_kept_answers(
    app_client: OpenClient,
) -> None:
    with app_client(api_token=Secret(TOKEN), rate_limit=RateLimit(2, 60.0)) as client:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/health").status_code == 200  # now kept
        for _ in range(5):  # refused before the rate limit: these spend nothing
            assert_error(client.get("/api/history", headers={"Host": "evil.example"}), 400, "INVALID_HOST")
            assert_error(client.get("/health", headers={"Host": "evil.example"}), 400, "INVALID_HOST")
        assert client.get("/api/history", headers=bearer).status_code == 200
        preflight = client.options(
            "/api/history",
            headers={"Host": "evil.example", "Origin": LOCAL_ORIGIN, "Access-Control-Request-Method": "GET"},
        )
        assert_error(preflight, 400, "INVALID_HOST")
        assert_error(client.get("/api/history", headers=bearer), 429, "RATE_LIMITED")


def test_the_bound_address_and_the_allowed_hosts_are_served_and_wildcards_match_below_a_domain(
    app_client: OpenClient,
) -> None:
    allowed = ("Studio.LAN", "192.168.1.20", "*.home.example", "fe80::1")
    with app_client(api_token=Secret(TOKEN), host="10.0.0.5", allowed_hosts=allowed) as client:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        for host in (
            "10.0.0.5:8000",
            "studio.lan",
            "STUDIO.lan:9000",
            "192.168.1.20:8000",
            "a.home.example",
            "x.y.home.example:1",
            "[fe80::1]:8000",
            "localhost:8000",
        ):
            assert client.get("/api/settings", headers={**bearer, "Host": host}).status_code == 200, host
        for host in ("home.example", "evilhome.example", "studio.lan.evil.example", "10.0.0.6", "10.1.1.1"):
            response = client.get("/api/settings", headers={**bearer, "Host": host})
            assert_error(response, 400, "INVALID_HOST")


def test_a_wildcard_bind_names_no_host(app_client: OpenClient) -> None:
    with app_client(api_token=Secret(TOKEN), host=ALL_INTERFACES) as client:
        assert_error(client.get("/health", headers={"Host": "0.0.0.0:8000"}), 400, "INVALID_HOST")
        assert_error(client.get("/health", headers={"Host": "192.168.1.20:8000"}), 400, "INVALID_HOST")
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize("entry", ["*", "http://studio.lan", "studio lan", "*.", "a/b", "*.[::1]"])
def test_a_malformed_allowed_host_is_a_configuration_error(entry: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="IMAGESTUDIO_ALLOWED_HOSTS"):
        create_app(Config(data_dir=tmp_path, allowed_hosts=(entry,)))


def test_the_allowlist_refuses_a_missing_host_and_a_list_of_hosts() -> None:
    hosts = HostAllowlist()
    assert not hosts.allows(None)
    assert hosts.allows(b"127.0.0.1:8000")
    assert not hosts.allows(b"127.0.0.1:8000, evil.example")


def test_a_websocket_with_a_foreign_host_is_refused_before_the_handshake(client: Client) -> None:
    for host in ("evil.example:8000", "127.0.0.1.nip.io"):
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/ws/generation", headers={"Host": host}) as socket,
        ):
            socket.receive_json(timeout=5)
        assert refused.value.code == 1008
    with client.websocket_connect("/ws/generation?taskId=bad id", headers={"Host": "localhost:80"}) as socket:
        assert socket.receive_json(timeout=5)["type"] == "error"  # accepted: the handler itself answers


# --- CORS preflights ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "method", "headers", "said"),
    [
        ("https://evil.example", "POST", "content-type", "origin"),
        ("null", "GET", "", "origin"),
        (LOCAL_ORIGIN, "TRACE", "", "method"),
        (LOCAL_ORIGIN, "POST", "content-type, X-Evil", "X-Evil"),
    ],
)
def test_a_refused_preflight_is_403_forbidden_in_the_error_shape(
    client: Client, origin: str, method: str, headers: str, said: str
) -> None:
    request = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request["Access-Control-Request-Headers"] = headers
    response = client.options("/api/generate/text-to-image", headers=request)
    body = assert_error(response, 403, "FORBIDDEN")
    assert said in body["error"]
    assert response.headers["content-type"] == "application/json"
    assert "access-control-allow-origin" not in response.headers


def test_an_allowed_preflight_needs_no_token_and_names_what_is_allowed(app_client: OpenClient) -> None:
    with app_client(api_token=Secret(TOKEN)) as client:
        response = client.options(
            "/api/generate/text-to-image",
            headers={
                "Origin": LOCAL_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, authorization, idempotency-key",
            },
        )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == LOCAL_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    assert "Origin" in response.headers["vary"]


def test_refusals_carry_cors_headers_for_an_allowed_origin(app_client: OpenClient) -> None:
    with app_client(api_token=Secret(TOKEN)) as client:
        response = client.get("/api/history", headers={"Origin": LOCAL_ORIGIN})
    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["access-control-allow-origin"] == LOCAL_ORIGIN


# --- kept answers across origins ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/history", "/health"])
def test_a_kept_answer_never_replays_another_origins_allow_origin(client: Client, path: str) -> None:
    _generate(client)
    first = client.get(path, headers={"Origin": LOCAL_ORIGIN})
    assert first.headers["access-control-allow-origin"] == LOCAL_ORIGIN
    assert first.headers["etag"]  # kept from here on
    second = client.get(path, headers={"Origin": OTHER_LOCAL_ORIGIN})
    assert second.headers["access-control-allow-origin"] == OTHER_LOCAL_ORIGIN
    assert second.headers["etag"] == first.headers["etag"]
    for headers in ({}, {"Origin": "https://evil.example"}):
        again = client.get(path, headers=headers)
        assert again.status_code == 200
        assert "access-control-allow-origin" not in again.headers, headers
        assert again.content == first.content
    for response in (first, second, again):
        assert [v.strip() for v in response.headers["vary"].split(",")].count("Origin") == 1
    revalidated = client.get(path, headers={"If-None-Match": first.headers["etag"]})
    assert revalidated.status_code == 304
    assert "access-control-allow-origin" not in revalidated.headers
    assert "Origin" in revalidated.headers["vary"]


def test_images_say_they_vary_by_origin(client: Client) -> None:
    made = _generate(client)
    assert "Origin" in client.get(made["filePath"]).headers["vary"]
