"""Issue 13 against the fake Runware over loopback: each audit point has its test here.

1 upscale shape and factors, 2 no double billing, 3 async delivery and polling, 4 only the
parameters a model takes, 5 inputs converted and sent by imageUUID, 6 errors in every form and
backoff, 7 the fake's processing and partial answers.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from PIL import Image

from imagestudio.adapters.images import PillowImageInspector
from imagestudio.adapters.runware import RunwareImageGenerator, runware_client
from imagestudio.domain.errors import ProviderRejected, ProviderUnavailable
from imagestudio.domain.model import ImageSpec, SourceImage
from imagestudio.testing.fake_runware import FakeRunware, Fault

pytestmark = pytest.mark.anyio

KEY = "rw-protocol-key-77aa01"


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        import anyio

        await anyio.sleep(min(seconds, 0.02))


@asynccontextmanager
async def runware(fake: FakeRunware, **overrides: Any) -> AsyncIterator[RunwareImageGenerator]:
    options: dict[str, Any] = {
        "api_key": KEY, "api_url": fake.url, "timeout": 10.0, "inspector": PillowImageInspector(),
        "backoff_base": 0.01, "backoff_cap": 0.05, "jitter": 0.0, "poll_first": 0.02,
    }  # fmt: skip
    options.update(overrides)
    async with runware_client() as client:
        yield RunwareImageGenerator(client, **options)


def spec(**changes: Any) -> ImageSpec:
    values: dict[str, Any] = {
        "prompt": "a lighthouse at dusk", "negative_prompt": None, "width": 512, "height": 384,
        "steps": 4, "cfg_scale": None, "seed": 1234, "model": "runware:100@1",
    }  # fmt: skip
    values.update(changes)
    return ImageSpec(**values)


async def source(width: int = 120, height: int = 80, fmt: str = "PNG", mode: str = "RGB") -> SourceImage:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 90).save(buffer, format=fmt)
    return await PillowImageInspector().inspect(buffer.getvalue())


def nothing(done: int, total: int, preview: object = None) -> None:
    pass


def sent(fake: FakeRunware, task_type: str) -> list[dict[str, Any]]:
    return [task for task in fake.tasks if task.get("taskType") == task_type]


# --- 1: upscale --------------------------------------------------------------------------------


async def test_upscale_sends_a_model_and_inputs_image_never_the_legacy_shape(fake: FakeRunware) -> None:
    async with runware(fake) as engine:
        image = await engine.upscale(await source(), 2, nothing)

    [task] = sent(fake, "upscale")
    assert task["model"] == "runware:504@1"
    assert task["upscaleFactor"] == 2
    assert set(task["inputs"]) == {"image"}
    assert "inputImage" not in task
    assert (image.width, image.height, image.model, image.provider_scale) == (240, 160, "runware:504@1", None)


async def test_scale_three_runs_four_and_is_resampled_to_exactly_three_and_recorded(
    fake: FakeRunware,
) -> None:
    async with runware(fake) as engine:
        image = await engine.upscale(await source(121, 79), 3, nothing)

    [task] = sent(fake, "upscale")
    assert task["upscaleFactor"] == 4
    assert (image.width, image.height) == (363, 237)
    with Image.open(io.BytesIO(image.data)) as decoded:
        assert decoded.size == (363, 237)
    assert (image.model, image.provider_scale, image.remote_url) == ("runware:504@1", 4, None)


async def test_a_two_only_upscaler_hands_four_to_an_upscaler_that_has_it(fake: FakeRunware) -> None:
    async with runware(fake, upscale_model="runware:501@1") as engine:
        two = await engine.upscale(await source(), 2, nothing)
        four = await engine.upscale(await source(), 4, nothing)

    assert [(t["model"], t["upscaleFactor"]) for t in sent(fake, "upscale")] == [
        ("runware:501@1", 2),
        ("runware:504@1", 4),
    ]
    assert (two.model, four.model, four.width) == ("runware:501@1", "runware:504@1", 480)


# --- 2: no double billing ----------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.DROP_AFTER_BODY, Fault.ACCEPTED_502, Fault.ACCEPTED_504])
async def test_a_task_accepted_before_the_answer_was_lost_is_billed_once(
    fake: FakeRunware, fault: Fault
) -> None:
    fake.inject(fault, times=1)
    async with runware(fake) as engine:
        image = await engine.text_to_image(spec(), nothing)

    submitted = sent(fake, "imageInference")
    assert len(submitted) == 2
    assert submitted[0]["taskUUID"] == submitted[1]["taskUUID"]  # the retry resent the same task
    assert fake.billed == 1
    assert image.width == 512


async def test_a_timed_out_task_is_never_resubmitted(fake: FakeRunware) -> None:
    fake.inject(Fault.HANG)
    async with runware(fake, timeout=0.5) as engine:
        with pytest.raises(Exception, match="did not answer in time"):
            await engine.text_to_image(spec(), nothing)

    assert fake.submissions == 1


# --- 3: async delivery ----------------------------------------------------------------------------


async def test_a_slow_task_is_delivered_by_polling_after_longer_than_one_http_wait(fake: FakeRunware) -> None:
    fake.latency = 1.5
    progress: list[tuple[int, int]] = []
    async with runware(fake, request_timeout=0.5, poll_first=0.2) as engine:
        image = await engine.text_to_image(spec(), lambda done, total, _=None: progress.append((done, total)))

    [task] = sent(fake, "imageInference")
    assert task["deliveryMethod"] == "async"
    assert fake.polls >= 2
    assert fake.billed == 1
    assert image.width == 512
    assert (progress[0], progress[-1]) == ((0, 1), (1, 1))
    assert any(total == 100 for _, total in progress)  # processing answers reported progress


async def test_polling_backs_off_like_runwares_clients(fake: FakeRunware) -> None:
    fake.latency = 0.3
    sleeps = Sleeps()
    async with runware(fake, poll_first=1.0, sleep=sleeps, timeout=120) as engine:
        await engine.text_to_image(spec(), nothing)

    assert sleeps.delays[:3] == [1.0, 1.5, 2.25]


async def test_a_partial_answer_is_not_taken_for_the_result(fake: FakeRunware) -> None:
    fake.inject(Fault.PARTIAL, times=1)
    async with runware(fake) as engine:
        image = await engine.text_to_image(spec(), nothing)

    assert fake.polls >= 2
    assert image.remote_url is not None


async def test_a_poll_that_fails_transiently_is_simply_polled_again(fake: FakeRunware) -> None:
    fake.inject(Fault.UNAVAILABLE, times=2, polls=True)
    async with runware(fake) as engine:
        image = await engine.text_to_image(spec(), nothing)

    assert fake.polls >= 3
    assert fake.billed == 1
    assert image.width == 512


# --- 4: parameters per model -------------------------------------------------------------------


async def test_a_partner_model_gets_none_of_the_parameters_its_schema_lacks(fake: FakeRunware) -> None:
    partner = spec(model="bfl:2@1", steps=None, cfg_scale=None, accepts=frozenset({"seed"}))
    async with runware(fake) as engine:
        await engine.text_to_image(partner, nothing)

    [task] = sent(fake, "imageInference")
    assert not {"steps", "CFGScale", "negativePrompt"} & set(task)
    assert task["seed"] == 1234


async def test_an_open_weights_model_gets_its_steps_and_guidance(fake: FakeRunware) -> None:
    async with runware(fake) as engine:
        await engine.text_to_image(
            spec(model="runware:101@1", steps=28, cfg_scale=3.5, negative_prompt="blurry"), nothing
        )

    [task] = sent(fake, "imageInference")
    assert (task["steps"], task["CFGScale"], task["negativePrompt"]) == (28, 3.5, "blurry")


# --- 5: inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "mode"), [("GIF", "P"), ("BMP", "RGB"), ("TIFF", "CMYK"), ("PNG", "I;16")])
async def test_inputs_runware_cannot_read_are_sent_as_png(fake: FakeRunware, fmt: str, mode: str) -> None:
    async with runware(fake) as engine:
        image = await engine.upscale(await source(fmt=fmt, mode=mode), 2, nothing)

    [upload] = sent(fake, "imageUpload")
    assert upload["image"].startswith("data:image/png;base64,")
    assert image.width == 240


async def test_an_image_runware_made_is_sent_again_by_its_uuid(fake: FakeRunware) -> None:
    async with runware(fake) as engine:
        made = await engine.text_to_image(spec(), nothing)
        again = await PillowImageInspector().inspect(made.data)
        await engine.upscale(again, 2, nothing)
        await engine.image_to_image(spec(), again, 0.4, nothing)

    assert sent(fake, "imageUpload") == []
    [upscale] = sent(fake, "upscale")
    assert len(upscale["inputs"]["image"]) == 36  # an imageUUID, not megabytes of base64
    second = sent(fake, "imageInference")[1]
    assert second["inputs"] == {"seedImage": upscale["inputs"]["image"]}


async def test_an_input_is_uploaded_once_then_referenced(fake: FakeRunware) -> None:
    picture = await source()
    async with runware(fake) as engine:
        await engine.upscale(picture, 2, nothing)
        await engine.upscale(picture, 4, nothing)

    assert len(sent(fake, "imageUpload")) == 1
    first, second = sent(fake, "upscale")
    assert first["inputs"]["image"] == second["inputs"]["image"]


async def test_a_uuid_runware_no_longer_knows_falls_back_to_the_bytes(fake: FakeRunware) -> None:
    picture = await source()
    async with runware(fake) as engine:
        await engine.upscale(picture, 2, nothing)
        fake.forget_images()
        image = await engine.upscale(picture, 2, nothing)

    last = sent(fake, "upscale")[-1]
    assert last["inputs"]["image"].startswith("data:image/png;base64,")
    assert image.width == 240


# --- 6: errors and backoff ---------------------------------------------------------------------


async def test_the_single_error_form_is_read_as_the_refusal_it_is(fake: FakeRunware) -> None:
    fake.inject(Fault.ERROR_OBJECT, times=1)
    async with runware(fake) as engine:
        with pytest.raises(ProviderRejected) as caught:
            await engine.text_to_image(spec(), nothing)

    assert caught.value.details["providerCode"] == "insufficientCredits"
    assert fake.submissions == 1


async def test_a_401_with_an_empty_body_is_a_bad_key(fake: FakeRunware) -> None:
    fake.inject(Fault.EMPTY_401, times=1)
    async with runware(fake) as engine:
        with pytest.raises(ProviderRejected) as caught:
            await engine.text_to_image(spec(), nothing)

    assert (caught.value.code, caught.value.details["providerCode"]) == ("API_ERROR", "invalidApiKey")
    assert fake.submissions == 1


async def test_an_error_item_is_the_refusal_it_reports(fake: FakeRunware) -> None:
    fake.inject(Fault.TASK_ERROR, times=1)
    async with runware(fake) as engine:
        with pytest.raises(ProviderRejected) as caught:
            await engine.text_to_image(spec(), nothing)

    assert caught.value.details["providerCode"] == "contentPolicyViolation"
    assert fake.submissions == 1


async def test_a_task_that_failed_transiently_is_run_again_under_a_new_uuid(fake: FakeRunware) -> None:
    fake.inject(Fault.TASK_TRANSIENT, times=1)
    async with runware(fake) as engine:
        image = await engine.text_to_image(spec(), nothing)

    first, second = sent(fake, "imageInference")
    assert first["taskUUID"] != second["taskUUID"]
    assert image.width == 512


async def test_a_transient_code_is_retried_whatever_its_status(fake: FakeRunware) -> None:
    fake.inject(Fault.NO_AVAILABLE_SERVER, times=1)
    async with runware(fake) as engine:
        await engine.text_to_image(spec(), nothing)

    assert fake.submissions == 2


async def test_backoff_starts_near_one_second_and_doubles_with_jitter(fake: FakeRunware) -> None:
    fake.inject(Fault.UNAVAILABLE)
    sleeps = Sleeps()
    async with runware(
        fake, backoff_base=1.0, backoff_cap=30.0, jitter=1.0, sleep=sleeps, timeout=60
    ) as engine:
        with pytest.raises(ProviderUnavailable):
            await engine.text_to_image(spec(), nothing)

    assert fake.submissions == 4
    assert len(sleeps.delays) == 3
    for delay, floor in zip(sleeps.delays, (1.0, 2.0, 4.0), strict=True):
        assert floor <= delay <= floor + 1.0


async def test_retry_after_is_honoured(fake: FakeRunware) -> None:
    fake.inject(Fault.RATE_LIMITED_RETRY_AFTER, times=1)
    sleeps = Sleeps()
    async with runware(fake, sleep=sleeps) as engine:
        await engine.text_to_image(spec(), nothing)

    assert sleeps.delays[0] == 2.0
    assert fake.submissions == 2
