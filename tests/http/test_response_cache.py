"""Kept answers of ``GET /api/history`` and ``/health``: ETags, 304s, and never a stale page.

The real app on a SQLite file (where pages are kept) and on PostgreSQL (where they are not).
A change by this server, by another connection and by another process must each show at once.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from imagestudio.config import Config, RateLimit, Secret
from imagestudio.http.app import create_app
from imagestudio.http.cache import ResponseCache
from imagestudio.http.security import ShellGuard
from tests.assertions import assert_error
from tests.hardening.conftest import TOKEN

Client = TestClient  # type: ignore[type-arg]


def _client(data_dir: Path, database_url: str | None = None, **settings: Any) -> Client:
    app = create_app(Config(data_dir=data_dir, database_url=database_url, **settings))
    return TestClient(app, base_url="http://127.0.0.1:8000")


@pytest.fixture
def client(sql_url: str, tmp_path: Path) -> Iterator[Client]:
    with _client(tmp_path / "data", sql_url) as test_client:
        yield test_client


def _generate(client: Client, prompt: str = "a red sunset", **headers: str) -> dict[str, Any]:
    body = {"prompt": prompt, "width": 128, "height": 128, "steps": 1}
    response = client.post("/api/generate/text-to-image", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def _ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


def test_a_page_is_revalidated_with_its_etag_until_the_history_changes(client: Client, sql_url: str) -> None:
    first = _generate(client, "a lighthouse")
    page = client.get("/api/history", params={"limit": 10})
    assert _ids(page) == [first["id"]]
    etag = page.headers.get("etag")
    if sql_url.startswith("postgresql"):
        # no cheap version to validate against: no tag, and a tag sent back changes nothing
        assert etag is None
        again = client.get("/api/history", params={"limit": 10}, headers={"If-None-Match": '"x"'})
        assert _ids(again) == [first["id"]]
        return
    assert etag is not None
    assert page.headers["cache-control"] == "no-cache"
    unchanged = client.get("/api/history", params={"limit": 10}, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    # the same bytes again without the tag, and with it among others or weak
    assert client.get("/api/history", params={"limit": 10}).content == page.content
    listed = client.get("/api/history", params={"limit": 10}, headers={"If-None-Match": f'"other", W/{etag}'})
    assert listed.status_code == 304

    second = _generate(client, "a castle")
    changed = client.get("/api/history", params={"limit": 10}, headers={"If-None-Match": etag})
    assert _ids(changed) == [second["id"], first["id"]]
    assert changed.headers["etag"] != etag

    assert client.delete(f"/api/history/{second['id']}").status_code == 200
    after_delete = client.get("/api/history", params={"limit": 10}, headers={"If-None-Match": etag})
    # the same items as the first page: the same bytes, so the first tag matches again
    assert after_delete.status_code == 304


def test_each_query_and_host_keeps_its_own_page(client: Client) -> None:
    made = [_generate(client, prompt)["id"] for prompt in ("a red fox", "a blue whale", "a red barn")]
    assert _ids(client.get("/api/history")) == made[::-1]
    assert _ids(client.get("/api/history", params={"q": "red"})) == [made[2], made[0]]
    assert _ids(client.get("/api/history", params={"limit": 1})) == [made[2]]
    assert _ids(client.get("/api/history", params={"sort": "oldest"})) == made
    for host in ("127.0.0.1:8000", "localhost:9999"):
        urls = [item["url"] for item in client.get("/api/history", headers={"Host": host}).json()["data"]]
        assert all(url.startswith(f"http://{host}/generated/") for url in urls), urls
    # an error is never kept: a bad query after a good one with the same path is still 400
    assert_error(client.get("/api/history", params={"limit": 0}), 400, "INVALID_PARAMETERS")
    assert_error(client.get("/api/history", params={"limit": 0}), 400, "INVALID_PARAMETERS")


def test_a_change_by_another_process_shows_at_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with _client(data_dir) as client:
        kept = [_generate(client, prompt)["id"] for prompt in ("one", "two", "three")]
        page = client.get("/api/history")
        assert _ids(page) == kept[::-1]
        assert client.get("/api/history", headers={"If-None-Match": page.headers["etag"]}).status_code == 304
        # another process deletes a row (its own connection, its own commit)
        script = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
            " c.execute('DELETE FROM generations WHERE id = ?', (int(sys.argv[2]),)); c.commit()"
        )
        database = data_dir / "imagestudio.db"
        assert database.exists()
        subprocess.run([sys.executable, "-c", script, str(database), str(kept[1])], check=True)
        after = client.get("/api/history", headers={"If-None-Match": page.headers["etag"]})
        assert _ids(after) == [kept[2], kept[0]]
        assert after.json()["total"] == 2


def test_kept_answers_still_need_the_token_and_count_against_the_rate_limit(tmp_path: Path) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with _client(tmp_path / "data", api_token=Secret(TOKEN)) as client:
        _generate(client, **bearer)
        page = client.get("/api/history", headers=bearer)
        assert page.status_code == 200
        # the page is kept now; without the token it is still refused, with or without the tag
        assert_error(client.get("/api/history"), 401, "UNAUTHORIZED")
        tagged = {"If-None-Match": page.headers["etag"]}
        assert_error(client.get("/api/history", headers=tagged), 401, "UNAUTHORIZED")
        assert client.get("/api/history", headers={**bearer, **tagged}).status_code == 304
    with _client(tmp_path / "limited", rate_limit=RateLimit(3, 60.0)) as client:
        for _ in range(3):
            assert client.get("/health").status_code == 200
        assert_error(client.get("/health"), 429, "RATE_LIMITED")


def test_health_is_kept_and_revalidates(tmp_path: Path) -> None:
    with _client(tmp_path / "data") as client:
        first = client.get("/health")
        assert first.json() == {"status": "ok", "version": first.json()["version"], "engine": "local"}
        again = client.get("/health")
        assert again.content == first.content
        assert client.get("/health", headers={"If-None-Match": first.headers["etag"]}).status_code == 304
        # a browser page on an allowed origin still gets its CORS headers on a kept answer
        cors = client.get("/health", headers={"Origin": "http://localhost:5173"})
        assert cors.headers["access-control-allow-origin"] == "http://localhost:5173"


def test_kept_answers_stay_within_their_byte_budget(tmp_path: Path) -> None:
    app = create_app(Config(data_dir=tmp_path / "data"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        for index in range(3):
            _generate(client, f"picture {index}")
        guard = app.asgi_handler
        assert isinstance(guard, ShellGuard)
        cache = guard.response_cache
        assert isinstance(cache, ResponseCache)
        one_page = len(client.get("/api/history", params={"limit": 1}).content)
        cache.max_bytes = 3 * one_page + one_page // 2  # room for three one-item pages, not four
        for offset in range(3):
            client.get("/api/history", params={"limit": 1, "offset": offset})
        client.get("/health")
        assert 0 < cache.kept_bytes <= cache.max_bytes
        assert len(cache) <= 4
        # every answer is still right, kept or made again
        for offset in range(3):
            page = client.get("/api/history", params={"limit": 1, "offset": offset}).json()
            assert page["data"][0]["prompt"] == f"picture {2 - offset}"
