"""End to end: a real ``imagestudio serve`` hands out thumbnails over real HTTP."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from tests.servers import Server

pytestmark = pytest.mark.e2e


def test_the_thumbnail_url_of_a_generation_is_fetched_over_real_http(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        made = client.post(
            "/api/generate/text-to-image",
            json={
                "prompt": "a harbour with boats at dawn",
                "width": 768,
                "height": 512,
                "steps": 4,
                "seed": 5,
            },
        )
        assert made.status_code == 200, made.text
        generation = made.json()["data"]
        assert generation["thumbnailUrl"] == f"{server.url}{generation['thumbnailPath']}"

        [listed] = client.get("/api/history").json()["data"]
        thumbnail = httpx.get(listed["thumbnailUrl"], timeout=30)  # the absolute URL, as a browser would
        assert thumbnail.status_code == 200
        assert thumbnail.headers["content-type"] == "image/webp"
        assert thumbnail.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert thumbnail.headers["x-content-type-options"] == "nosniff"
        assert "etag" in thumbnail.headers
        with Image.open(io.BytesIO(thumbnail.content)) as picture:
            assert (picture.format, picture.size) == ("WEBP", (256, 171))
        full = client.get(generation["filePath"])
        assert len(thumbnail.content) * 4 < len(full.content)

        assert client.delete(f"/api/history/{generation['id']}").status_code == 200
        assert httpx.get(generation["thumbnailUrl"], timeout=30).status_code == 404
    files = [p for p in (server.data_dir / "generated").rglob("*") if p.is_file()]
    assert files == []
