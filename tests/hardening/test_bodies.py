"""Hostile JSON bodies: deep nesting, huge arrays, numbers out of range, big bodies off the loop.

Every body is refused in the error shape with the field it is about; nothing nested is decoded,
so neither depth nor size can exhaust the process; big bodies are decoded in a worker thread.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from PIL import Image

from imagestudio.http.schemas import OFF_LOOP_BYTES, prepare_body, read_body
from tests.assertions import assert_error
from tests.hardening.conftest import Client

ROUTES = [
    ("POST", "/api/generate/text-to-image", {"prompt": "a cat"}),
    ("POST", "/api/generate/image-to-image", {"prompt": "a cat", "seedImage": "/generated/x.png"}),
    ("POST", "/api/generate/upscale", {"imagePath": "/generated/x.png"}),
    ("PUT", "/api/settings", {"defaultSteps": 5}),
]


def _send(client: Client, method: str, path: str, raw: bytes) -> Any:
    return client.request(method, path, content=raw, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("depth", [1000, 100_000])
def test_json_nested_deep_is_400_naming_the_field_not_a_500(
    client: Client, method: str, path: str, body: dict[str, Any], depth: int
) -> None:
    nested = b"[" * depth + b"]" * depth
    first = next(iter(body))
    raw = b'{"' + first.encode() + b'":' + nested + b"}"
    assert_error(_send(client, method, path, raw), 400, "INVALID_PARAMETERS", first)
    unknown = b'{"x":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}"
    assert_error(_send(client, method, path, unknown), 400, "INVALID_PARAMETERS", "x")
    body_itself = _send(client, method, path, nested)
    assert (
        assert_error(body_itself, 400, "INVALID_PARAMETERS")["error"] == "Request body must be a JSON object"
    )


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/generate/text-to-image", '{"prompt": "a cat", "width": 1e400}', "width"),
        ("/api/generate/text-to-image", '{"prompt": "a cat", "height": -1e400}', "height"),
        ("/api/generate/text-to-image", '{"prompt": "a cat", "seed": 18446744073709551616}', "seed"),
        ("/api/generate/text-to-image", '{"prompt": "a cat", "seed": 1e400}', "seed"),
        ("/api/generate/text-to-image", '{"prompt": "a cat", "steps": -1}', "steps"),
        ("/api/generate/text-to-image", '{"prompt": "a cat", "cfgScale": 1e400}', "cfgScale"),
        ("/api/generate/text-to-image", '{"prompt": "a cat", "cfgScale": -1e999}', "cfgScale"),
        (
            "/api/generate/image-to-image",
            '{"prompt": "a cat", "seedImage": "a.png", "strength": 1e400}',
            "strength",
        ),
        ("/api/generate/upscale", '{"imagePath": "a.png", "scale": 1e400}', "scale"),
        ("/api/settings", '{"defaultCfgScale": 1e400}', "defaultCfgScale"),
        ("/api/settings", '{"defaultWidth": 99999999999999999999999999999}', "defaultWidth"),
    ],
)
def test_numbers_out_of_range_name_their_field(client: Client, path: str, body: str, field: str) -> None:
    method = "PUT" if path == "/api/settings" else "POST"
    before = client.get("/api/settings").json()
    response = _send(client, method, path, body.encode())
    error = assert_error(response, 400, "INVALID_PARAMETERS", field)
    assert field in error["error"]
    assert client.get("/api/settings").json() == before


def test_a_huge_array_is_refused_where_it_starts_naming_its_field(client: Client) -> None:
    numbers = b"[" + b"1.5," * (4 * 1024 * 1024 // 4) + b"1.5]"
    raw = b'{"prompt": "a cat", "seedImage": ' + numbers + b"}"
    response = _send(client, "POST", "/api/generate/image-to-image", raw)
    body = assert_error(response, 400, "INVALID_PARAMETERS", "seedImage")
    assert "Expected `str`, got `array`" in body["error"]


def _png_data_uri(min_bytes: int) -> str:
    side = 16
    while True:
        image = Image.frombytes("RGB", (side, side), bytes(range(256)) * (side * side * 3 // 256 + 1))
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=0)
        if buffer.tell() >= min_bytes:
            return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        side *= 2


def test_a_big_body_is_decoded_and_validated_off_the_loop_with_the_same_answers(client: Client) -> None:
    uri = _png_data_uri(OFF_LOOP_BYTES)
    body = {"prompt": "a quiet lake", "seedImage": uri, "width": 128, "height": 128, "steps": 1}
    made = client.post("/api/generate/image-to-image", json=body)
    assert made.status_code == 200, made.text[:300]
    raw = json.dumps(body).replace('"steps": 1', '"steps": 1e400').encode()
    assert_error(
        _send(client, "POST", "/api/generate/image-to-image", raw), 400, "INVALID_PARAMETERS", "steps"
    )
    refused = client.post("/api/generate/image-to-image", json={**body, "prompt": " "})
    assert_error(refused, 400, "INVALID_PROMPT")
    refused = client.post("/api/generate/image-to-image", json={**body, "seedImage": uri[:-9] + "!!!!!!!!!"})
    assert_error(refused, 400, "INVALID_PARAMETERS", "seedImage")
    assert client.get("/api/history").json()["total"] == 1


@pytest.mark.anyio
async def test_a_big_body_is_prepared_in_a_worker_thread_while_the_loop_runs() -> None:
    """``prepare`` blocks until the event loop has run: were it called on the loop, it never would."""
    loop_thread = threading.get_ident()
    entered, released = threading.Event(), threading.Event()
    seen: list[int] = []

    def prepare(raw: bytes | bytearray) -> int:
        seen.append(threading.get_ident())
        entered.set()
        assert released.wait(10), "the event loop did not run while the body was being prepared"
        return len(raw)

    async def loop_side() -> None:
        assert await anyio.to_thread.run_sync(entered.wait, 10)
        released.set()  # only the loop can set it, and it runs while prepare is mid-way

    async with anyio.create_task_group() as group:
        group.start_soon(loop_side)
        assert await prepare_body(b"x" * OFF_LOOP_BYTES, prepare, anyio.CapacityLimiter(1)) == OFF_LOOP_BYTES
    assert len(seen) == 1
    assert seen[0] != loop_thread
    assert await prepare_body(b"{}", lambda raw: threading.get_ident()) == loop_thread  # small: inline


async def _chunks(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("chunks", "length"),
    [((b"ab", b"cd", b"e"), 5), ((b"ab", b"cd"), 6), ((b"ab", b"cdef"), 3), ((b"ab", b"cd"), None), ((), 0)],
)
async def test_a_body_is_read_whole_whatever_its_content_length_says(
    chunks: tuple[bytes, ...], length: int | None
) -> None:
    assert bytes(await read_body(_chunks(*chunks), length)) == b"".join(chunks)


@pytest.mark.parametrize(("method", "path", "field"), [(m, p, next(iter(b))) for m, p, b in ROUTES])
def test_big_bodies_count_against_the_byte_budget_before_they_are_read(
    app_client: Any, method: str, path: str, field: str
) -> None:
    """A body of OFF_LOOP_BYTES or more is held against IMAGESTUDIO_MAX_QUEUED_BYTES by its
    Content-Length, so a flood of big bodies is refused instead of buffered; the hold ends with
    the request, so the next one fits again."""
    budget = 3 * OFF_LOOP_BYTES
    uri = _png_data_uri(2 * OFF_LOOP_BYTES)
    body = {"prompt": "a quiet lake", "seedImage": uri, "width": 128, "height": 128, "steps": 1}
    with app_client(max_queued_bytes=budget) as client:
        tasks = client.app.state.services.tasks
        big = json.dumps({field: "x" * (budget + 1)}).encode()
        refused = _send(client, method, path, big)
        assert_error(refused, 503, "QUEUE_FULL")
        assert tasks.bytes.held == 0
        # under the budget: read and answered as usual (here: the value is not valid), nothing kept
        fits = json.dumps({field: "x" * (2 * OFF_LOOP_BYTES)}).encode()
        assert _send(client, method, path, fits).status_code == 400
        assert tasks.bytes.held == 0
        if path.endswith("image-to-image"):
            # the body (about 2.7 x 256 KiB) and the decoded image (2 x 256 KiB) do not fit 3 x 256 KiB
            assert_error(client.post(path, json=body), 503, "QUEUE_FULL")
            assert tasks.bytes.held == 0
    with app_client(max_queued_bytes=8 * OFF_LOOP_BYTES) as client:
        if path.endswith("image-to-image"):
            made = client.post(path, json=body)
            assert made.status_code == 200, made.text[:300]
            assert client.app.state.services.tasks.bytes.held == 0
