"""The fake Runware server accepts what Runware's schemas accept (its oracle is runware-sdk's
``task_map``), follows RUNWARE.md where they are silent, and misbehaves on request."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import anyio
import httpx
import pytest
from PIL import Image, UnidentifiedImageError

from imagestudio.testing.fake_runware import FakeRunware, Fault

KEY = "fake-key-1d2e3f"


def post(fake: FakeRunware, tasks: Any, *, key: str | None = KEY, timeout: float = 10.0) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(fake.url, json=tasks, headers=headers, timeout=timeout)


def inference(**changes: Any) -> dict[str, Any]:
    """A valid imageInference task; a change to ``None`` removes that field."""
    task: dict[str, Any] = {
        "taskType": "imageInference",
        "taskUUID": str(uuid.uuid4()),
        "positivePrompt": "a lighthouse at dusk",
        "model": "runware:100@1",
        "width": 256,
        "height": 192,
    }
    task.update(changes)
    return {name: value for name, value in task.items() if value is not None}


def upscale(image: str, **changes: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "taskType": "upscale",
        "taskUUID": str(uuid.uuid4()),
        "model": "runware:504@1",
        "inputs": {"image": image},
        "upscaleFactor": 2,
    }
    task.update(changes)
    return {name: value for name, value in task.items() if value is not None}


def png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def picture(data: bytes) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        return image.format, image.size


def first_error(response: httpx.Response) -> dict[str, Any]:
    errors = response.json()["errors"]
    assert isinstance(errors, list)
    assert errors
    error = errors[0]
    assert isinstance(error, dict)
    return error


# --- answers ------------------------------------------------------------------------------------


def test_an_inference_is_answered_with_an_image_served_at_its_url(fake: FakeRunware) -> None:
    task = inference(seed=42, includeCost=True)
    response = post(fake, [task])

    assert response.status_code == 200
    [item] = response.json()["data"]
    assert set(item) == {"taskType", "taskUUID", "imageUUID", "imageURL", "seed", "cost"}
    assert (item["taskType"], item["taskUUID"], item["seed"]) == ("imageInference", task["taskUUID"], 42)
    assert item["imageURL"] == f"{fake.base_url}/image/{item['imageUUID']}.jpg"
    image = httpx.get(item["imageURL"])
    assert image.headers["content-type"] == "image/jpeg"
    assert picture(image.content) == ("JPEG", (256, 192))


def test_a_seed_is_drawn_when_absent_and_cost_only_reported_when_asked(fake: FakeRunware) -> None:
    [item] = post(fake, [inference()]).json()["data"]

    assert 1 <= item["seed"] <= 9_223_372_036_854_775_807
    assert "cost" not in item


def test_the_same_prompt_and_seed_give_the_same_picture(fake: FakeRunware) -> None:
    def render(seed: int) -> bytes:
        [item] = post(fake, [inference(seed=seed, outputFormat="PNG")]).json()["data"]
        return httpx.get(item["imageURL"]).content

    assert render(7) == render(7)
    assert render(7) != render(8)


def test_number_results_gives_one_item_per_image_under_one_task_uuid(fake: FakeRunware) -> None:
    task = inference(numberResults=3, seed=10, outputFormat="PNG")
    items = post(fake, [task]).json()["data"]

    assert [item["taskUUID"] for item in items] == [task["taskUUID"]] * 3
    assert len({item["imageUUID"] for item in items}) == 3
    # Runware: "if seed is set, it will be incremented by 1 (+1) for each image generated"
    assert [item["seed"] for item in items] == [10, 11, 12]
    pictures = [httpx.get(item["imageURL"]).content for item in items]
    assert len(set(pictures)) == 3
    [alone] = post(fake, [inference(seed=11, outputFormat="PNG")]).json()["data"]
    assert httpx.get(alone["imageURL"]).content == pictures[1]  # image 2 is the one of seed 11


def test_number_results_without_a_seed_draws_one_and_counts_up_from_it(fake: FakeRunware) -> None:
    items = post(fake, [inference(numberResults=4)]).json()["data"]

    first = items[0]["seed"]
    assert [item["seed"] for item in items] == [first, first + 1, first + 2, first + 3]


def get_response(fake: FakeRunware, task_uuid: str) -> list[dict[str, Any]]:
    """A ``getResponse`` once the task has run (the fake makes its results in the background)."""
    deadline = time.monotonic() + 10
    while True:
        items: list[dict[str, Any]] = post(fake, [{"taskType": "getResponse", "taskUUID": task_uuid}]).json()[
            "data"
        ]
        if any(item["status"] == "success" for item in items) or time.monotonic() > deadline:
            return items
        time.sleep(0.02)


def delivered(items: list[dict[str, Any]]) -> list[tuple[str, int | None]]:
    return [(item["status"], item.get("seed")) for item in items]


def test_staggered_hands_out_one_more_result_per_poll_the_last_first_repeating_the_earlier(
    fake: FakeRunware,
) -> None:
    fake.inject(Fault.STAGGERED, times=1)
    task = inference(numberResults=3, seed=20, deliveryMethod="async")
    post(fake, [task])

    answers = [delivered(get_response(fake, task["taskUUID"])) for _ in range(4)]

    assert answers == [
        [("success", 22), ("processing", None)],
        [("success", 22), ("success", 21), ("processing", None)],
        [("success", 22), ("success", 21), ("success", 20)],
        [("success", 22), ("success", 21), ("success", 20)],
    ]
    assert fake.billed == 1


def test_staggered_once_hands_out_each_result_in_one_answer_only(fake: FakeRunware) -> None:
    fake.inject(Fault.STAGGERED_ONCE, times=1)
    task = inference(numberResults=2, seed=30, deliveryMethod="async")
    post(fake, [task])

    answers = [delivered(get_response(fake, task["taskUUID"])) for _ in range(2)]
    after = post(fake, [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]).json()["data"]

    assert answers == [[("success", 30), ("processing", None)], [("success", 31)]]
    assert after == []


def test_a_short_batch_never_hands_out_its_last_result(fake: FakeRunware) -> None:
    fake.inject(Fault.SHORT_BATCH, times=1)
    task = inference(numberResults=3, seed=40, deliveryMethod="async")
    post(fake, [task])

    answers = [delivered(get_response(fake, task["taskUUID"])) for _ in range(3)]

    assert answers == [[("success", 40), ("success", 41), ("processing", None)]] * 3


@pytest.mark.parametrize(
    ("output_type", "field"), [("base64Data", "imageBase64Data"), ("dataURI", "imageDataURI")]
)
def test_other_output_types_carry_the_image_inline(fake: FakeRunware, output_type: str, field: str) -> None:
    [item] = post(fake, [inference(outputType=output_type, outputFormat="WEBP")]).json()["data"]

    encoded = item[field].split(",", 1)[-1]
    assert picture(base64.b64decode(encoded)) == ("WEBP", (256, 192))
    assert "imageURL" not in item


def test_upscale_resizes_by_the_factor(fake: FakeRunware) -> None:
    [item] = post(fake, [upscale(data_uri(png(64, 48)), upscaleFactor=4, includeCost=True)]).json()["data"]

    assert {"taskType", "taskUUID", "imageUUID", "inputImageUUID", "imageURL", "cost"} <= set(item)
    assert picture(httpx.get(item["imageURL"]).content) == ("JPEG", (256, 192))


def test_upscale_output_is_capped_at_4096_pixels_a_side(fake: FakeRunware) -> None:
    [item] = post(fake, [upscale(data_uri(png(1500, 1000)), upscaleFactor=4)]).json()["data"]

    assert picture(httpx.get(item["imageURL"]).content)[1] == (4096, 2731)


def test_the_2024_upscale_shape_is_refused(fake: FakeRunware) -> None:
    legacy = {
        "taskType": "upscale",
        "taskUUID": str(uuid.uuid4()),
        "inputImage": data_uri(png()),
        "upscaleFactor": 2,
    }
    response = post(fake, [legacy])

    assert response.status_code == 400
    assert first_error(response)["code"] in ("unknownParameter", "missingModel")


@pytest.mark.parametrize(
    ("model", "factor"), [("runware:501@1", 4), ("runware:500@1", 4), ("runware:504@1", 3)]
)
def test_each_upscaler_takes_only_its_own_factors(fake: FakeRunware, model: str, factor: int) -> None:
    response = post(fake, [upscale(data_uri(png()), model=model, upscaleFactor=factor)])

    assert response.status_code == 400
    assert first_error(response)["code"] == "invalidUpscaleFactor"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_inputs_other_than_png_jpg_webp_are_refused(fake: FakeRunware, fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, format=fmt)
    response = post(fake, [upscale("data:image/x;base64," + base64.b64encode(buffer.getvalue()).decode())])

    assert response.status_code == 400
    assert first_error(response)["parameter"] == "inputs.image"


def test_a_slow_async_task_is_processing_until_ready_and_a_reused_uuid_keeps_the_first(
    fake: FakeRunware,
) -> None:
    fake.latency = 0.5
    task = inference(deliveryMethod="async")
    assert post(fake, [task]).status_code == 200
    again = post(fake, [task])
    [processing] = post(fake, [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]).json()["data"]
    time.sleep(0.8)
    [done] = post(fake, [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]).json()["data"]

    assert (again.status_code, first_error(again)["code"]) == (409, "conflictTaskUUID")
    assert processing["status"] == "processing"
    assert "imageURL" not in processing
    assert done["status"] == "success"
    assert fake.billed == 1


def test_model_search_answers_with_the_sdks_result_shape(fake: FakeRunware) -> None:
    answer = post(fake, [{"taskType": "modelSearch", "taskUUID": str(uuid.uuid4()), "search": "flux"}])

    [item] = answer.json()["data"]
    assert {"taskType", "taskUUID", "totalResults", "results"} == set(item)
    assert all("air" in model for model in item["results"])


def test_an_uploaded_image_can_be_used_by_its_uuid_and_its_url(fake: FakeRunware) -> None:
    upload = {"taskType": "imageUpload", "taskUUID": str(uuid.uuid4()), "image": data_uri(png(64, 64))}
    [uploaded] = post(fake, [upload]).json()["data"]

    by_uuid = post(fake, [inference(inputs={"seedImage": uploaded["imageUUID"]}, strength=0.5)])
    by_url = post(fake, [upscale(uploaded["imageURL"])])

    assert (by_uuid.status_code, by_url.status_code) == (200, 200)
    assert picture(httpx.get(by_url.json()["data"][0]["imageURL"]).content)[1] == (128, 128)


@pytest.mark.parametrize(
    "seed_image",
    [data_uri(png()), base64.b64encode(png()).decode()],
    ids=["data-uri", "bare-base64"],
)
def test_seed_image_accepts_a_data_uri_or_bare_base64(fake: FakeRunware, seed_image: str) -> None:
    assert post(fake, [inference(inputs={"seedImage": seed_image})]).status_code == 200


@pytest.mark.parametrize(
    "seed_image",
    [
        "/home/user/picture.png",
        "https://example.com/picture.png",
        "file:///etc/passwd",
        base64.b64encode(b"definitely not an image").decode(),
        "data:image/png;base64,%%%",
        str(uuid.uuid4()),
        "",
    ],
    ids=["local-path", "foreign-url", "file-url", "not-an-image", "bad-base64", "unknown-uuid", "empty"],
)
def test_seed_image_refuses_anything_runware_could_not_read(fake: FakeRunware, seed_image: str) -> None:
    response = post(fake, [inference(inputs={"seedImage": seed_image})])

    assert response.status_code == 400
    assert first_error(response)["code"] == "invalidSeedImage"
    assert first_error(response)["parameter"] == "inputs.seedImage"


def test_async_delivery_is_acknowledged_then_collected_with_get_response(fake: FakeRunware) -> None:
    task = inference(deliveryMethod="async")
    ack = post(fake, [task])
    poll = post(fake, [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}])

    assert ack.json() == {"data": [{"taskType": "imageInference", "taskUUID": task["taskUUID"]}]}
    [item] = poll.json()["data"]
    assert item["status"] == "success"
    assert httpx.get(item["imageURL"]).status_code == 200


def test_errors_are_reported_per_task(fake: FakeRunware) -> None:
    good, bad = inference(), inference(width=100)
    response = post(fake, [good, bad])

    assert response.status_code == 400
    body = response.json()
    assert [item["taskUUID"] for item in body["data"]] == [good["taskUUID"]]
    assert [(error["taskUUID"], error["code"]) for error in body["errors"]] == [
        (bad["taskUUID"], "invalidWidth")
    ]


# --- strictness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-the-key", f"Basic {KEY}", KEY, "Bearer"],
    ids=["missing", "wrong-key", "wrong-scheme", "no-scheme", "no-key"],
)
def test_without_the_right_bearer_key_the_answer_is_401_invalid_api_key(
    fake: FakeRunware, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = httpx.post(fake.url, json=[inference()], headers=headers)

    assert response.status_code == 401
    error = first_error(response)
    assert (error["code"], error["parameter"], error["taskType"]) == (
        "invalidApiKey",
        "apiKey",
        "authentication",
    )
    assert "not-the-key" not in response.text
    assert KEY not in response.text


@pytest.mark.parametrize(
    "body",
    [b"{}", b'{"taskType": "imageInference"}', b"[]", b"not json", b'"text"', b""],
    ids=["object", "bare-task", "empty-array", "not-json", "string", "empty"],
)
def test_the_body_must_be_a_non_empty_json_array(fake: FakeRunware, body: bytes) -> None:
    response = httpx.post(
        fake.url, content=body, headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert first_error(response)["code"] in {"invalidJSON", "invalidRequestFormat"}


def test_the_body_must_be_sent_as_json(fake: FakeRunware) -> None:
    response = httpx.post(
        fake.url, content=b"[]", headers={"Authorization": f"Bearer {KEY}", "Content-Type": "text/plain"}
    )

    assert response.status_code == 400


def test_an_unknown_task_type_is_refused(fake: FakeRunware) -> None:
    response = post(fake, [inference(taskType="videoMagic")])

    assert response.status_code == 400
    assert first_error(response)["code"] == "invalidTaskType"


@pytest.mark.parametrize(
    ("task_uuid", "code"),
    [
        ("not-a-uuid", "invalidTaskUUID"),
        (12345, "invalidTaskUUID"),
        (None, "missingTaskUUID"),
    ],
    ids=["text", "number", "missing"],
)
def test_the_task_uuid_must_be_a_uuid(fake: FakeRunware, task_uuid: Any, code: str) -> None:
    response = post(fake, [inference(taskUUID=task_uuid)])

    assert response.status_code == 400
    assert (first_error(response)["code"], first_error(response)["parameter"]) == (code, "taskUUID")


def test_a_reused_task_uuid_is_a_409_conflict(fake: FakeRunware) -> None:
    task = inference()
    assert post(fake, [task]).status_code == 200

    again = post(fake, [task])

    assert again.status_code == 409
    assert first_error(again)["code"] == "conflictTaskUUID"


@pytest.mark.parametrize(
    ("parameter", "value", "code"),
    [
        ("positivePrompt", "a", "invalidPositivePrompt"),
        ("positivePrompt", "x" * 3001, "invalidPositivePrompt"),
        ("positivePrompt", 42, "invalidPositivePrompt"),
        ("negativePrompt", "a", "invalidNegativePrompt"),
        ("width", 64, "invalidWidth"),
        ("width", 2112, "invalidWidth"),
        ("width", 500, "invalidWidth"),
        ("width", 512.0, "invalidWidth"),
        ("height", 2049, "invalidHeight"),
        ("steps", 0, "invalidSteps"),
        ("steps", 101, "invalidSteps"),
        ("CFGScale", -0.5, "invalidCFGScale"),
        ("CFGScale", 50.5, "invalidCFGScale"),
        ("seed", 0, "invalidSeed"),
        ("seed", 9_223_372_036_854_775_808, "invalidSeed"),
        ("strength", 1.5, "invalidStrength"),
        ("model", "flux-schnell", "invalidModel"),
        ("model", "runware:flux@dev", "invalidModel"),
        ("outputFormat", "jpg", "invalidOutputFormat"),
        ("outputFormat", "GIF", "invalidOutputFormat"),
        ("outputType", "file", "invalidOutputType"),
        ("outputQuality", 100, "invalidOutputQuality"),
        ("numberResults", 0, "invalidNumberResults"),
        ("numberResults", 21, "invalidNumberResults"),
        ("includeCost", "yes", "invalidIncludeCost"),
        ("deliveryMethod", "later", "invalidDeliveryMethod"),
    ],
)
def test_inference_parameters_outside_runware_limits_are_refused(
    fake: FakeRunware, parameter: str, value: Any, code: str
) -> None:
    response = post(fake, [inference(**{parameter: value})])

    assert response.status_code == 400
    error = first_error(response)
    assert (error["code"], error["parameter"]) == (code, parameter)
    assert error["message"]


def test_size_errors_carry_runware_validation_limits(fake: FakeRunware) -> None:
    error = first_error(post(fake, [inference(width=500)]))

    assert (error["min"], error["max"], error["multiplier"]) == (128, 2048, 16)  # FLUX: multiples of 16


@pytest.mark.parametrize(
    "changes",
    [
        {"width": 128, "height": 2048},
        {"steps": 1, "CFGScale": 0, "seed": 1},
        {"steps": 100, "CFGScale": 50, "seed": 9_223_372_036_854_775_807},
        {"numberResults": 1, "outputQuality": 20, "includeCost": False},
        {"model": "civitai:4384@128713", "negativePrompt": "no"},
    ],
)
def test_inference_parameters_at_runware_limits_are_accepted(
    fake: FakeRunware, changes: dict[str, Any]
) -> None:
    assert post(fake, [inference(**changes)]).status_code == 200


@pytest.mark.parametrize(
    ("parameter", "code"),
    [("positivePrompt", "missingPositivePrompt"), ("model", "missingModel"), ("width", "missingWidth")],
)
def test_required_inference_parameters_must_be_present(fake: FakeRunware, parameter: str, code: str) -> None:
    response = post(fake, [inference(**{parameter: None})])

    assert response.status_code == 400
    assert (first_error(response)["code"], first_error(response)["parameter"]) == (code, parameter)


@pytest.mark.parametrize(
    "task",
    [
        inference(cfgScale=7),
        inference(prompt="hello"),
        upscale(data_uri(png()), strength=0.5),
        {"taskType": "imageUpload", "taskUUID": str(uuid.uuid4()), "image": data_uri(png()), "x": 1},
    ],
    ids=["cfgScale-casing", "prompt", "upscale-strength", "upload-extra"],
)
def test_unknown_parameters_are_refused(fake: FakeRunware, task: dict[str, Any]) -> None:
    task = {**task, "taskUUID": str(uuid.uuid4())}
    response = post(fake, [task])

    assert response.status_code == 400
    assert first_error(response)["code"] == "unknownParameter"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"upscaleFactor": 5}, "invalidUpscaleFactor"),
        ({"upscaleFactor": "2"}, "invalidUpscaleFactor"),
        ({"model": None, "upscaleFactor": None}, "missingModel"),
        ({"inputs": None}, "missingInputs"),
        ({"inputs": {"image": "./picture.png"}}, "invalidImage"),
    ],
)
def test_upscale_parameters_are_checked(fake: FakeRunware, changes: dict[str, Any], code: str) -> None:
    task = upscale(data_uri(png()))
    task.update(changes)
    response = post(fake, [{name: value for name, value in task.items() if value is not None}])

    assert response.status_code == 400
    assert first_error(response)["code"] == code


# --- faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (Fault.RATE_LIMITED, 429, "rateLimitExceeded"),
        (Fault.SERVER_ERROR, 500, "internalServerError"),
        (Fault.UNAVAILABLE, 503, "serviceUnavailable"),
        (Fault.INSUFFICIENT_CREDITS, 402, "insufficientCredits"),
    ],
)
def test_status_faults_apply_to_the_next_n_calls_only(
    fake: FakeRunware, fault: Fault, status: int, code: str
) -> None:
    fake.inject(fault, times=2)
    tasks = [inference() for _ in range(3)]

    responses = [post(fake, [task]) for task in tasks]

    assert [response.status_code for response in responses] == [status, status, 200]
    assert first_error(responses[0])["code"] == code
    assert fake.calls == 3


def test_status_fault_errors_name_the_task(fake: FakeRunware) -> None:
    fake.inject(Fault.INSUFFICIENT_CREDITS, times=1)
    task = inference()

    error = first_error(post(fake, [task]))

    assert (error["code"], error["taskUUID"]) == ("insufficientCredits", task["taskUUID"])


def test_flaky_fails_every_other_call_starting_with_the_first(fake: FakeRunware) -> None:
    fake.inject(Fault.FLAKY)

    statuses = [post(fake, [inference()]).status_code for _ in range(4)]

    assert statuses == [503, 200, 503, 200]


def test_malformed_json_is_a_200_that_does_not_parse(fake: FakeRunware) -> None:
    fake.inject(Fault.MALFORMED_JSON, times=1)
    response = post(fake, [inference()])

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.parametrize("fault", [Fault.NOT_AN_ARRAY, Fault.MISSING_DATA])
def test_protocol_faults_answer_200_without_a_data_array(fake: FakeRunware, fault: Fault) -> None:
    fake.inject(fault, times=1)
    response = post(fake, [inference()])

    assert response.status_code == 200
    assert not isinstance(response.json().get("data"), list)


def test_image_404_gives_a_url_that_is_not_found(fake: FakeRunware) -> None:
    fake.inject(Fault.IMAGE_404, times=1)
    [item] = post(fake, [inference()]).json()["data"]

    assert httpx.get(item["imageURL"]).status_code == 404


def test_image_not_an_image_serves_other_bytes(fake: FakeRunware) -> None:
    fake.inject(Fault.IMAGE_NOT_AN_IMAGE, times=1)
    [item] = post(fake, [inference()]).json()["data"]

    served = httpx.get(item["imageURL"])
    assert served.status_code == 200
    with pytest.raises(UnidentifiedImageError):
        picture(served.content)


def test_hang_holds_the_call_until_the_client_gives_up(fake: FakeRunware) -> None:
    fake.inject(Fault.HANG, times=1)
    started = time.monotonic()

    with pytest.raises(httpx.ReadTimeout):
        post(fake, [inference()], timeout=0.3)

    assert time.monotonic() - started < 2
    assert post(fake, [inference()]).status_code == 200


def test_latency_delays_every_answer(fake: FakeRunware) -> None:
    fake.latency = 0.3
    started = time.monotonic()

    post(fake, [inference()])

    assert time.monotonic() - started >= 0.3


def test_service_times_record_each_task_call_and_image_download(fake: FakeRunware) -> None:
    fake.latency = 0.2
    answer = post(fake, [inference(seed=5)])
    httpx.get(answer.json()["data"][0]["imageURL"], timeout=10).raise_for_status()

    times = fake.service_times
    assert len(times["task"]) == 1
    assert times["task"][0] >= 0.2
    assert len(times["image"]) == 1
    assert times["image"][0] >= 0
    assert httpx.get(f"{fake.base_url}/_fake/timings", timeout=10).json() == times
    fake.reset()
    assert fake.service_times == {"task": [], "image": []}


def test_a_repeated_picture_has_the_same_bytes(fake: FakeRunware) -> None:
    first, second = (post(fake, [inference(seed=9)]).json()["data"][0]["imageURL"] for _ in range(2))

    assert first != second
    assert httpx.get(first, timeout=10).content == httpx.get(second, timeout=10).content


@pytest.mark.anyio
async def test_slow_requests_are_served_concurrently(fake: FakeRunware) -> None:
    fake.latency = 0.5
    statuses: list[int] = []

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as client:

        async def call() -> None:
            statuses.append((await client.post(fake.url, json=[inference()])).status_code)

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            for _ in range(12):
                group.start_soon(call)
        elapsed = time.monotonic() - started

    assert statuses == [200] * 12
    assert elapsed < 3


# --- observation and control --------------------------------------------------------------------


def test_calls_are_counted_by_task_type_and_bodies_recorded_without_credentials(fake: FakeRunware) -> None:
    task = inference()
    post(fake, [task])
    post(fake, [upscale(data_uri(png()))])
    post(fake, [inference()], key="wrong")

    assert fake.calls == 3
    assert fake.calls_by_task_type == {"imageInference": 2, "upscale": 1}
    assert fake.requests[0] == [task]
    assert KEY not in repr(fake.requests)
    assert "wrong" not in repr(fake.requests)


def test_the_control_endpoints_set_faults_and_report_stats(fake: FakeRunware) -> None:
    control = httpx.post(f"{fake.base_url}/_fake/control", json={"faults": [{"fault": "503", "times": 1}]})
    assert control.status_code == 200
    assert control.json()["faults"] == [{"fault": "503", "times": 1, "polls": False}]

    assert post(fake, [inference()]).status_code == 503
    stats = httpx.get(f"{fake.base_url}/_fake/stats").json()

    assert stats["calls"] == 1
    assert stats["faults"] == []
    refused = httpx.post(f"{fake.base_url}/_fake/control", json={"faults": [{"fault": "nope"}]})
    assert refused.status_code == 400


def test_the_command_line_runs_a_fake_with_faults() -> None:
    command = [sys.executable, "-m", "imagestudio.testing.fake_runware", "--port", "0", "--api-key", KEY]
    process = subprocess.Popen(
        [*command, "--fault", "503=1"], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("Fake Runware listening on http://127.0.0.1:")
        url = line.split()[-1]
        headers = {"Authorization": f"Bearer {KEY}"}
        first = httpx.post(url, json=[inference()], headers=headers, timeout=10)
        second = httpx.post(url, json=[inference()], headers=headers, timeout=10)
        assert (first.status_code, second.status_code) == (503, 200)
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
