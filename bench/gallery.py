"""P9: what one gallery page costs, with thumbnails and with the full images (issue 16).

A history of :data:`IMAGES` generations (local engine, 1024x1024 JPEG, distinct seeds) is made
through the API; then each round, in alternating order, a client like a browser's (one host, six
keep-alive HTTP/1.1 connections) fetches ``GET /api/history?limit=50`` and then every item's
``thumbnailUrl``, or every item's ``url`` (the full image). The figure is the wall time from the
page request to the last byte of the last image, and the bytes received (bodies: the page's JSON
and the 50 images); the page alone is measured too. A further figure per round is the first view
of a history from before thumbnails: the 50 thumbnail files are removed and the thumbnail page is
fetched again, so every thumbnail is made from its image on request (and kept, so the next round
is an ordinary one). Last, what making one thumbnail costs: :func:`make_thumbnail` in the runner's
process on one of the stored images (what every generation now spends besides its image).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import harness
import httpx
from harness import median

__all__ = ["p9_gallery"]

IMAGES = 50
SIDE = 1024
CONNECTIONS = 6  # what a browser opens to one host over HTTP/1.1
PROMPT = "a red sunset over mountains and a lake"


async def _page(client: httpx.AsyncClient, field: str | None) -> tuple[float, int]:
    """Seconds and bytes of the history page and every item's ``field`` (fetched concurrently);
    the page alone for ``None``."""
    started = time.perf_counter()
    page = await client.get("/api/history", params={"limit": IMAGES})
    page.raise_for_status()
    items = page.json()["data"]
    if len(items) != IMAGES:
        raise RuntimeError(f"P9: the page has {len(items)} items, not {IMAGES}")
    images = await asyncio.gather(*(client.get(item[field]) for item in items)) if field else []
    elapsed = time.perf_counter() - started
    for image in images:
        image.raise_for_status()
    return elapsed, len(page.content) + sum(len(image.content) for image in images)


def _remove_thumbnails(data_dir: Path) -> int:
    removed = 0
    for thumbnail in data_dir.rglob("*.thumb.webp"):
        thumbnail.unlink()
        removed += 1
    return removed


def p9_gallery(mode: Any) -> dict[str, Any]:
    """P9: a history page of 50 with its 50 thumbnails, against the same page with the full images."""
    rounds: list[dict[str, float]] = []
    with harness.running_server(engine="local") as server:
        with httpx.Client(base_url=server.url, timeout=120) as seeding:
            for seed in range(1, IMAGES + 1):
                body = {"prompt": PROMPT, "width": SIDE, "height": SIDE, "steps": 10, "seed": seed}
                seeding.post("/api/generate/text-to-image", json=body).raise_for_status()

        async def scenario() -> None:
            limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
            async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
                await _page(client, "thumbnailUrl")  # warm-up: connections, caches
                await _page(client, "url")
                for index in range(mode.rounds):
                    order = ("thumbnailUrl", "url") if index % 2 == 0 else ("url", "thumbnailUrl")
                    figures: dict[str, float] = {}
                    for field in order:
                        seconds, size = await _page(client, field)
                        name = "thumbnails" if field == "thumbnailUrl" else "full"
                        figures[f"{name}_s"], figures[f"{name}_bytes"] = seconds, size
                    figures["page_s"], figures["page_bytes"] = await _page(client, None)
                    if _remove_thumbnails(server.data_dir) != IMAGES:
                        raise RuntimeError("P9: not every generation had its thumbnail on disk")
                    figures["on_demand_s"], figures["on_demand_bytes"] = await _page(client, "thumbnailUrl")
                    rounds.append(figures)

        asyncio.run(scenario())
        making = _making_ms(server.data_dir, mode.rounds)
    return {
        "images": IMAGES,
        "size": f"{SIDE}x{SIDE}",
        "connections": CONNECTIONS,
        "rounds": rounds,
        "make_ms": making,
    }


def _making_ms(data_dir: Path, rounds: int) -> list[float]:
    """Milliseconds of one :func:`make_thumbnail` of a stored image, the median of 10 per round."""
    from imagestudio.adapters.images import make_thumbnail

    data = next(p for p in sorted(data_dir.rglob("*.jpg"))).read_bytes()
    make_thumbnail(data)  # warm-up
    figures = []
    for _ in range(rounds):
        times = []
        for _ in range(10):
            started = time.perf_counter()
            make_thumbnail(data)
            times.append((time.perf_counter() - started) * 1000)
        figures.append(median(times))
    return figures
