"""The Runware adapter over real HTTP on loopback, against the fake Runware server.

Every row of CONTRACT.md's provider error table is exercised here, with the fake counting
the calls so that retries (and their absence) are observed rather than assumed.
"""

from __future__ import annotations

import base64
import io
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from PIL import Image
from structlog.testing import capture_logs

from imagestudio.adapters.images import PillowImageInspector
from imagestudio.adapters.runware import RunwareImageGenerator, runware_client
from imagestudio.domain.errors import ProviderError, ProviderRejected, ProviderTimeout, ProviderUnavailable
from imagestudio.domain.model import ImageSpec, SourceImage
from imagestudio.testing.fake_runware import FakeRunware, Fault

pytestmark = pytest.mark.anyio

KEY = "rw-secret-key-3f9c2a7d"
WRONG_KEY = "rw-wrong-key-88e1b0c4"


@asynccontextmanager
async def runware(fake: FakeRunware, **overrides: Any) -> AsyncIterator[RunwareImageGenerator]:
    """The adapter on its own client, with quick backoff so retry tests stay fast."""
    options: dict[str, Any] = {
        "api_key": KEY,
        "api_url": fake.url,
        "timeout": 10.0,
        "inspector": PillowImageInspector(),
        "backoff_base": 0.01,
        "backoff_cap": 0.05,
        "jitter": 0.0,
        "poll_first": 0.01,
    }
    options.update(overrides)
    async with runware_client() as client:
        yield RunwareImageGenerator(client, **options)


def spec(**changes: Any) -> ImageSpec:
    values: dict[str, Any] = {
        "prompt": "a lighthouse at dusk",
        "negative_prompt": None,
        "width": 640,
        "height": 384,
        "steps": 4,
        "cfg_scale": 3.5,
        "seed": 1234,
        "model": "runware:100@1",
    }
    values.update(changes)
    return ImageSpec(**values)


async def source_image(width: int = 200, height: int = 150) -> SourceImage:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buffer, format="PNG")
    return await PillowImageInspector().inspect(buffer.getvalue())


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


def pixels_of(data: bytes) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        return image.format, image.size


def only_task(fake: FakeRunware, task_type: str = "imageInference") -> dict[str, Any]:
    """The one task of ``task_type`` the fake received (polls and uploads aside)."""
    [task] = [task for task in fake.tasks if task.get("taskType") == task_type]
    return task


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# --- what works ---------------------------------------------------------------------------------


async def test_text_to_image_returns_the_downloaded_image_with_runware_seed_url_and_cost(
    fake: FakeRunware,
) -> None:
    progress = Progress()
    async with runware(fake) as engine:
        image = await engine.text_to_image(spec(), progress)

    assert pixels_of(image.data) == ("JPEG", (640, 384))
    assert (image.extension, image.width, image.height) == ("jpg", 640, 384)
    assert image.seed == 1234
    assert image.remote_url is not None
    assert image.remote_url.startswith(f"{fake.base_url}/image/")
    assert image.cost is not None
    assert image.cost > 0
    assert (progress.calls[0], progress.calls[-1]) == ((0, 1), (1, 1))
    assert fake.submissions == 1
    assert fake.billed == 1
    assert fake.image_downloads == 1


async def test_text_to_image_maps_the_spec_to_runware_field_names(fake: FakeRunware) -> None:
    async with runware(fake) as engine:
        await engine.text_to_image(spec(negative_prompt="blurry, low quality"), Progress())

    task = only_task(fake)
    task_uuid = task.pop("taskUUID")
    assert uuid.UUID(task_uuid).version == 4
    assert task == {
        "taskType": "imageInference",
        "positivePrompt": "a lighthouse at dusk",
        "negativePrompt": "blurry, low quality",
        "model": "runware:100@1",
        "width": 640,
        "height": 384,
        "steps": 4,
        "CFGScale": 3.5,
        "seed": 1234,
        "numberResults": 1,
        "outputType": "URL",
        "outputFormat": "JPG",
        "includeCost": True,
        "deliveryMethod": "async",
    }


async def test_negative_prompt_is_left_out_when_there_is_none(fake: FakeRunware) -> None:
    async with runware(fake) as engine:
        await engine.text_to_image(spec(negative_prompt=None), Progress())

    assert "negativePrompt" not in only_task(fake)


async def test_every_call_carries_a_fresh_task_uuid(fake: FakeRunware) -> None:
    async with runware(fake) as engine:
        await engine.text_to_image(spec(), Progress())
        await engine.text_to_image(spec(), Progress())

    first, second = (task["taskUUID"] for task in fake.tasks if task["taskType"] == "imageInference")
    assert first != second


async def test_png_output_format_gives_a_png_file(fake: FakeRunware) -> None:
    async with runware(fake, output_format="PNG") as engine:
        image = await engine.text_to_image(spec(width=256, height=256), Progress())

    assert only_task(fake)["outputFormat"] == "PNG"
    assert image.extension == "png"
    assert pixels_of(image.data) == ("PNG", (256, 256))


async def test_image_to_image_uploads_the_source_bytes_once_and_sends_its_uuid(fake: FakeRunware) -> None:
    source = await source_image()
    async with runware(fake) as engine:
        image = await engine.image_to_image(spec(width=192, height=128), source, 0.35, Progress())

    upload = only_task(fake, "imageUpload")
    prefix = "data:image/png;base64,"
    assert upload["image"].startswith(prefix)
    sent = base64.b64decode(upload["image"][len(prefix) :])
    assert pixels_of(sent) == ("PNG", (192, 144))  # shrunk to what the task needs
    task = only_task(fake)
    assert uuid.UUID(task["inputs"]["seedImage"])
    assert "seedImage" not in task
    assert task["strength"] == 0.35
    assert pixels_of(image.data) == ("JPEG", (192, 128))
    assert (image.width, image.height) == (192, 128)


async def test_upscale_sends_model_and_inputs_image_and_returns_the_larger_image(fake: FakeRunware) -> None:
    source = await source_image(200, 150)
    progress = Progress()
    async with runware(fake) as engine:
        image = await engine.upscale(source, 3, progress)

    task = only_task(fake, "upscale")
    upload = only_task(fake, "imageUpload")
    assert upload["image"] == "data:image/png;base64," + base64.b64encode(source.data).decode()
    assert uuid.UUID(task.pop("inputs")["image"])
    task.pop("taskUUID")
    assert task == {
        "taskType": "upscale",
        "model": "runware:504@1",
        "upscaleFactor": 4,
        "outputType": "URL",
        "outputFormat": "JPG",
        "includeCost": True,
        "deliveryMethod": "async",
    }
    assert pixels_of(image.data) == ("JPEG", (600, 450))
    assert (image.width, image.height, image.seed, image.provider_scale) == (600, 450, None, 4)
    assert image.cost is not None
    assert (progress.calls[0], progress.calls[-1]) == ((0, 1), (1, 1))


async def test_logs_name_the_task_attempt_status_and_duration(fake: FakeRunware) -> None:
    with capture_logs() as logs:
        async with runware(fake) as engine:
            await engine.text_to_image(spec(), Progress())

    answered = [
        entry
        for entry in logs
        if entry["event"] == "runware.answered" and entry["task_type"] == "imageInference"
    ]
    assert len(answered) == 1
    assert answered[0]["task_uuid"] == only_task(fake)["taskUUID"]
    assert answered[0]["task_type"] == "imageInference"
    assert (answered[0]["status"], answered[0]["attempt"]) == (200, 1)
    assert isinstance(answered[0]["duration_ms"], int)


async def test_the_image_download_carries_no_credentials(fake: FakeRunware) -> None:
    async with runware(fake) as engine:
        await engine.text_to_image(spec(), Progress())

    assert fake.image_downloads == 1
    assert fake.downloads_with_credentials == 0


# --- the error table ----------------------------------------------------------------------------


async def test_a_call_that_times_out_is_not_retried(fake: FakeRunware) -> None:
    fake.inject(Fault.HANG)
    started = time.monotonic()
    async with runware(fake, timeout=0.5) as engine:
        with pytest.raises(ProviderTimeout) as caught:
            await engine.text_to_image(spec(), Progress())

    assert time.monotonic() - started < 3
    assert caught.value.code == "API_TIMEOUT"
    assert caught.value.message == "Generation failed: Runware did not answer in time"
    assert fake.submissions == 1


async def test_latency_beyond_the_timeout_is_a_timeout(fake: FakeRunware) -> None:
    fake.latency = 2.0
    async with runware(fake, timeout=0.5) as engine:
        with pytest.raises(ProviderTimeout):
            await engine.text_to_image(spec(), Progress())

    assert fake.submissions == 1


@pytest.mark.parametrize("fault", [Fault.RATE_LIMITED, Fault.SERVER_ERROR, Fault.UNAVAILABLE])
async def test_overload_and_server_errors_are_tried_four_times_then_unavailable(
    fake: FakeRunware, fault: Fault
) -> None:
    fake.inject(fault)
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    async with runware(fake, backoff_base=0.01, backoff_cap=0.015, sleep=sleep) as engine:
        with pytest.raises(ProviderUnavailable) as caught:
            await engine.text_to_image(spec(), Progress())

    assert fake.submissions == 4
    assert caught.value.code == "API_ERROR"
    assert caught.value.message.startswith("Generation failed:")
    assert caught.value.details["providerCode"]
    assert delays == [0.01, 0.015, 0.015]


async def test_a_transient_failure_is_retried_until_runware_answers(fake: FakeRunware) -> None:
    fake.inject(Fault.UNAVAILABLE, times=2)
    async with runware(fake) as engine:
        image = await engine.text_to_image(spec(), Progress())

    assert fake.submissions == 3
    assert fake.billed == 1
    assert image.width == 640


async def test_flaky_runware_succeeds_after_one_retry(fake: FakeRunware) -> None:
    fake.inject(Fault.FLAKY)
    async with runware(fake) as engine:
        image = await engine.text_to_image(spec(), Progress())

    assert fake.submissions == 2
    assert pixels_of(image.data)[1] == (640, 384)


async def test_retries_never_overrun_the_time_budget(fake: FakeRunware) -> None:
    fake.inject(Fault.UNAVAILABLE)
    started = time.monotonic()
    async with runware(fake, timeout=1.0, backoff_base=5.0, backoff_cap=5.0) as engine:
        with pytest.raises(ProviderUnavailable):
            await engine.text_to_image(spec(), Progress())

    assert time.monotonic() - started < 1.5


async def test_unreachable_runware_is_retried_then_unavailable(fake: FakeRunware) -> None:
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    async with runware(fake, api_url=closed_port_url(), sleep=sleep) as engine:
        with pytest.raises(ProviderUnavailable) as caught:
            await engine.text_to_image(spec(), Progress())

    assert caught.value.code == "API_ERROR"
    assert caught.value.message == "Generation failed: Runware could not be reached"
    assert len(delays) == 3


async def test_a_bad_api_key_is_rejected_with_runware_code_and_not_retried(fake: FakeRunware) -> None:
    async with runware(fake, api_key=WRONG_KEY) as engine:
        with pytest.raises(ProviderRejected) as caught:
            await engine.text_to_image(spec(), Progress())

    assert fake.submissions == 1
    assert caught.value.code == "API_ERROR"
    assert caught.value.message.startswith("Generation failed:")
    assert caught.value.details["providerCode"] == "invalidApiKey"
    assert caught.value.details["providerMessage"]


async def test_insufficient_credits_is_rejected_and_not_retried(fake: FakeRunware) -> None:
    fake.inject(Fault.INSUFFICIENT_CREDITS)
    async with runware(fake) as engine:
        with pytest.raises(ProviderRejected) as caught:
            await engine.text_to_image(spec(), Progress())

    assert fake.submissions == 1
    assert caught.value.details["providerCode"] == "insufficientCredits"


async def test_a_parameter_runware_refuses_is_rejected_with_its_code(fake: FakeRunware) -> None:
    async with runware(fake) as engine:
        with pytest.raises(ProviderRejected) as caught:
            await engine.text_to_image(spec(model="runware:flux@dev"), Progress())

    assert fake.submissions == 1
    assert caught.value.code == "API_ERROR"
    assert caught.value.details["providerCode"] == "invalidModel"


@pytest.mark.parametrize("fault", [Fault.MALFORMED_JSON, Fault.NOT_AN_ARRAY, Fault.MISSING_DATA])
async def test_an_answer_outside_the_protocol_is_unavailable(fake: FakeRunware, fault: Fault) -> None:
    fake.inject(fault)
    async with runware(fake) as engine:
        with pytest.raises(ProviderUnavailable) as caught:
            await engine.text_to_image(spec(), Progress())

    assert caught.value.code == "API_ERROR"
    assert caught.value.message.startswith("Generation failed:")
    assert fake.submissions == 1  # a 200 may have been billed: it is not sent again


@pytest.mark.parametrize("fault", [Fault.IMAGE_404, Fault.IMAGE_NOT_AN_IMAGE])
async def test_an_image_url_without_a_usable_image_is_unavailable(fake: FakeRunware, fault: Fault) -> None:
    fake.inject(fault)
    progress = Progress()
    async with runware(fake) as engine:
        with pytest.raises(ProviderUnavailable) as caught:
            await engine.text_to_image(spec(), progress)

    assert caught.value.code == "API_ERROR"
    assert fake.image_downloads == 1
    assert progress.calls == [(0, 1)]


async def test_an_image_larger_than_the_download_limit_is_refused(fake: FakeRunware) -> None:
    async with runware(fake, download_limit=1000) as engine:
        with pytest.raises(ProviderUnavailable, match="larger than 1000 bytes"):
            await engine.text_to_image(spec(), Progress())


# --- the key stays secret -----------------------------------------------------------------------

Scenario = Callable[[FakeRunware], dict[str, Any]]


def _inject(fault: Fault) -> Scenario:
    def arrange(fake: FakeRunware) -> dict[str, Any]:
        fake.inject(fault)
        return {}

    return arrange


SUCCEED_IN_THE_END = {
    Fault.FLAKY, Fault.PARTIAL, Fault.TASK_TRANSIENT,
    Fault.DROP_AFTER_BODY, Fault.ACCEPTED_502, Fault.ACCEPTED_504,
    Fault.STAGGERED, Fault.STAGGERED_ONCE,
}  # fmt: skip
SCENARIOS: dict[str, Scenario] = {
    **{fault.value: _inject(fault) for fault in Fault if fault not in SUCCEED_IN_THE_END},
    "bad-key": lambda fake: {"api_key": WRONG_KEY},
    "unreachable": lambda fake: {"api_url": closed_port_url()},
    "bad-parameter": lambda fake: {},
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_the_api_key_never_appears_in_logs_or_errors(fake: FakeRunware, scenario: str) -> None:
    overrides = {"timeout": 0.5, **SCENARIOS[scenario](fake)}
    model = "runware:flux@dev" if scenario == "bad-parameter" else "runware:100@1"
    with capture_logs() as logs:
        async with runware(fake, **overrides) as engine:
            with pytest.raises(ProviderError) as caught:
                await engine.text_to_image(spec(model=model), Progress())
            assert KEY not in repr(engine)

    error = caught.value
    secrets = {KEY, overrides.get("api_key", KEY)}
    texts = [str(error), repr(error), repr(error.details), repr(logs)]
    cause = error.__cause__
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__
    assert logs, "the failure was logged"
    for secret in secrets:
        assert not any(secret in text for text in texts)


# --- concurrency --------------------------------------------------------------------------------


async def test_sixteen_generations_against_a_slow_runware_run_concurrently(fake: FakeRunware) -> None:
    fake.latency = 1.0
    results: list[int] = []

    async with runware(fake) as engine:

        async def generate(index: int) -> None:
            image = await engine.text_to_image(spec(seed=index + 1, width=256, height=256), Progress())
            results.append(image.seed or 0)

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            for index in range(16):
                group.start_soon(generate, index)
        elapsed = time.monotonic() - started

    assert sorted(results) == list(range(1, 17))
    assert fake.submissions == 16
    assert fake.billed == 16
    assert elapsed < 6, f"16 one-second generations took {elapsed:.1f} s"
