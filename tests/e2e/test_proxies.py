"""End to end: ``X-Forwarded-For`` is believed only from ``IMAGESTUDIO_TRUSTED_PROXIES``.

uvicorn on its own believes the header from 127.0.0.1, which is where every local page and
process connects from: rotating it would give each request a fresh rate-limit bucket.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.assertions import assert_error
from tests.servers import start_server, stop_server

pytestmark = pytest.mark.e2e

_LIMIT = 5


def _statuses_with_rotating_forwarded_for(url: str, count: int) -> list[int]:
    with httpx.Client(base_url=url, timeout=10) as client:
        return [
            client.get("/health", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
            for i in range(count)
        ]


def test_a_rotating_forwarded_for_does_not_escape_the_rate_limit(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={"IMAGESTUDIO_RATE_LIMIT": f"{_LIMIT}/minute"})
    try:
        # start_server's health probe spent one request of the loopback address's bucket
        statuses = _statuses_with_rotating_forwarded_for(server.url, 2 * _LIMIT)
        assert statuses.count(200) <= _LIMIT
        assert statuses[-_LIMIT:] == [429] * _LIMIT
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert_error(
                client.get("/health", headers={"X-Forwarded-For": "198.51.100.7"}), 429, "RATE_LIMITED"
            )
    finally:
        stop_server(server)


def test_forwarded_for_from_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    env = {"IMAGESTUDIO_RATE_LIMIT": f"{_LIMIT}/minute", "IMAGESTUDIO_TRUSTED_PROXIES": "127.0.0.1, ::1"}
    server = start_server(tmp_path / "data", env=env)
    try:
        # each forwarded address is its own client, with its own bucket
        assert _statuses_with_rotating_forwarded_for(server.url, 2 * _LIMIT) == [200] * (2 * _LIMIT)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            one_client = [
                client.get("/health", headers={"X-Forwarded-For": "198.51.100.7"}).status_code
                for _ in range(_LIMIT + 1)
            ]
        assert one_client == [200] * _LIMIT + [429]
    finally:
        stop_server(server)


def test_a_trusted_proxy_that_is_not_an_address_is_one_line_at_startup(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "imagestudio", "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
        env={**_clean_env(), "IMAGESTUDIO_TRUSTED_PROXIES": "127.0.0.1,proxy.example"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "imagestudio: configuration error: IMAGESTUDIO_TRUSTED_PROXIES must list IP addresses or networks"
        " (127.0.0.1, 10.0.0.0/8, ::1), separated by commas, not 'proxy.example'"
    ]
    assert not (tmp_path / "data").exists()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("RUNWARE_", "IMAGESTUDIO_"))}
