"""The task endpoint's work: check a request like Runware, then run, bill and answer its tasks.

A request needs ``Authorization: Bearer <key>`` (401 ``invalidApiKey``), a JSON array of tasks,
and a UUID ``taskUUID`` that is never reused: a second task with a taken one is 409
``conflictTaskUUID`` and the first keeps running, its result fetched with ``getResponse``
(RUNWARE.md point 2).

What it does: ``imageInference`` renders a deterministic picture from prompt and seed
(blended with ``inputs.seedImage`` by ``strength``); ``upscale`` resizes ``inputs.image`` with
Lanczos by ``upscaleFactor`` (at most 4096 px a side); ``imageUpload`` stores an image;
``modelSearch`` answers from :mod:`.catalogue`. ``deliveryMethod: "async"`` is acknowledged at
once; the result is ready ``latency`` seconds later and ``getResponse`` answers ``processing``
(with ``progress``) until then, and then every result of the task at once (a staggered
delivery fault hands them out one by one, or never hands out the last).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import Callable
from typing import Any, Final

from imagestudio.testing.fake_runware.catalogue import _search
from imagestudio.testing.fake_runware.checks import (
    _INPUT_KEYS,
    MAX_SEED,
    _check_model,
    _check_ranges,
    _check_schema,
    _check_size,
    _upscale_factor,
)
from imagestudio.testing.fake_runware.faults import _DELIVERY_FAULTS, _TASK_FAILURES, Fault
from imagestudio.testing.fake_runware.images import _ImageStore
from imagestudio.testing.fake_runware.pictures import _FORMATS, _render, _rendered, _upscaled
from imagestudio.testing.fake_runware.protocol import (
    _AUTH_ERROR,
    _NOT_JSON,
    _TASK_TYPES,
    _UUID,
    Scope,
    _headers,
    _request_base_url,
    _request_error,
    _task_error,
    _task_ids,
    _TaskError,
)
from imagestudio.testing.fake_runware.state import _Job

__all__ = ["INFERENCE_COST", "UPSCALE_COST"]

INFERENCE_COST: Final = 0.0013
UPSCALE_COST: Final = 0.002


class _TaskRunner(_ImageStore):
    """Checks and runs the tasks of one request, as Runware would."""

    async def _answer(
        self, scope: Scope, document: Any, *, fault: Fault | None
    ) -> tuple[int, dict[str, Any]]:
        """Check the request like Runware and run its tasks: (status, body)."""
        headers = _headers(scope)
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"errors": [dict(_AUTH_ERROR)]}
        if not headers.get("content-type", "").lower().startswith("application/json"):
            return 400, _request_error("invalidContentType", "The Content-Type must be application/json.")
        if document is _NOT_JSON:
            return 400, _request_error("invalidJSON", "The request body is not valid JSON.")
        if not isinstance(document, list) or not document:
            return 400, _request_error(
                "invalidRequestFormat", "The request body must be a non-empty array of tasks."
            )
        base_url = _request_base_url(scope, self.base_url)
        statuses: list[int] = []
        errors: list[dict[str, Any]] = []
        data: list[dict[str, Any]] = []
        for task in document:
            try:
                data.extend(await self._run_task(task, base_url, fault))
            except _TaskError as failure:
                statuses.append(failure.status)
                errors.append({**failure.body, **_task_ids(task)})
        if errors:
            answer: dict[str, Any] = {"errors": errors}
            if data:
                answer["data"] = data
            return statuses[0], answer
        return 200, {"data": data}

    async def _run_task(self, task: Any, base_url: str, fault: Fault | None) -> list[dict[str, Any]]:
        if not isinstance(task, dict):
            raise _task_error("invalidTaskFormat", "Every task must be a JSON object.")
        task_type = task.get("taskType")
        if task_type is None:
            raise _task_error(
                "missingTaskType", "Missing required parameter 'taskType'.", parameter="taskType"
            )
        if task_type not in _TASK_TYPES:
            raise _task_error(
                "invalidTaskType",
                f"Unsupported taskType. Use one of {', '.join(_TASK_TYPES)}.",
                parameter="taskType",
            )
        task_uuid = task.get("taskUUID")
        if task_uuid is None:
            raise _task_error(
                "missingTaskUUID", "Missing required parameter 'taskUUID'.", parameter="taskUUID"
            )
        if not isinstance(task_uuid, str) or not _UUID.fullmatch(task_uuid):
            raise _task_error("invalidTaskUUID", "The taskUUID must be a UUID string.", parameter="taskUUID")
        task_uuid = task_uuid.lower()
        if task_type == "getResponse":
            _check_schema(task)
            return self._poll(task_uuid, fault)
        if task_type == "modelSearch":
            _check_schema(task)
            return [_search(task)]
        with self._lock:
            reused = task_uuid in self._seen_uuids
            self._seen_uuids.add(task_uuid)
        if reused:
            raise _task_error(
                "conflictTaskUUID",
                "A task with this taskUUID already exists; fetch its result with getResponse.",
                parameter="taskUUID",
                status=409,
            )
        _check_schema(task)
        if task_type == "imageUpload":
            return [await self._upload(task, base_url)]
        _check_model(task)
        _check_ranges(task)
        run = await self._prepare(task, base_url)
        delivery = task.get("deliveryMethod", "sync")
        job = _Job(
            task_type=task_type,
            partial=fault is Fault.PARTIAL,
            delivery=fault if fault in _DELIVERY_FAULTS else None,
        )
        with self._lock:
            self._jobs[task_uuid] = job
            self._billed[task_type] += 1
            latency = self._latency
        if delivery == "async":
            background = asyncio.create_task(self._complete(job, task, run, base_url, fault, latency))
            self._background.add(background)
            background.add_done_callback(self._background.discard)
            return [{"taskType": task_type, "taskUUID": task["taskUUID"]}]
        await self._complete(job, task, run, base_url, fault, latency)
        if job.error is not None:
            raise _TaskError(400, dict(job.error))
        assert job.items is not None
        return job.items

    async def _complete(
        self,
        job: _Job,
        task: dict[str, Any],
        run: Callable[[], list[tuple[bytes, dict[str, Any]]]],
        base_url: str,
        fault: Fault | None,
        latency: float,
    ) -> None:
        if latency:
            await asyncio.sleep(latency)
        if fault in _TASK_FAILURES:
            code, message = _TASK_FAILURES[fault]
            job.error = {"code": code, "message": message}
            return
        produced = await asyncio.to_thread(run)
        output_type, output_format = task.get("outputType", "URL"), task.get("outputFormat", "JPG")
        items = []
        for data, extra in produced:
            item = self._result(task, data, output_type, output_format, base_url, fault)
            item.update(extra)
            if task.get("includeCost"):
                item["cost"] = UPSCALE_COST if task["taskType"] == "upscale" else INFERENCE_COST
            items.append(item)
        job.items = items

    def _poll(self, task_uuid: str, fault: Fault | None) -> list[dict[str, Any]]:
        with self._lock:
            job = self._jobs.get(task_uuid)
        if job is None:
            raise _task_error(
                "taskFailedOrNotFound", "No task has this taskUUID.", parameter="taskUUID", status=400
            )
        job.polls += 1
        ids = {"taskType": job.task_type, "taskUUID": task_uuid}
        if job.error is not None:
            return [{**ids, "status": "error", "error": dict(job.error)}]
        if job.items is None:
            return [{**ids, "status": "processing", "progress": min(90, 10 * job.polls)}]
        if job.partial and job.polls == 1:
            # Runware's clients treat an item with an imageUUID but no image as not yet finished.
            return [{**ids, "status": "processing", "progress": 95, "imageUUID": job.items[0]["imageUUID"]}]
        shown = _delivered(job)
        answer = [{**item, "status": "success"} for item in shown]
        if job.delivery is not None and job.delivered < len(job.items):
            answer.append({**ids, "status": "processing", "progress": 50})
        return answer

    async def _prepare(
        self, task: dict[str, Any], base_url: str
    ) -> Callable[[], list[tuple[bytes, dict[str, Any]]]]:
        """Check what needs the task's images and return the work that makes its results."""
        inputs = task.get("inputs") or {}
        allowed = _INPUT_KEYS[task["taskType"]]
        for key in inputs:
            if key not in allowed:
                raise _task_error(
                    "unknownParameter",
                    f"'inputs.{key}' is not an input of this task.",
                    parameter=f"inputs.{key}",
                )
        output_format = task.get("outputFormat", "JPG")
        quality = task.get("outputQuality", 95)
        if task["taskType"] == "upscale":
            source = await self._image_parameter(inputs, "image", base_url, required=True)
            assert source is not None
            factor = _upscale_factor(task)
            source_uuid = self._store(source.data, source.extension)

            def upscale() -> list[tuple[bytes, dict[str, Any]]]:
                data = _upscaled(source.data, factor, output_format, quality)
                return [(data, {"inputImageUUID": source_uuid})]

            return upscale
        prompt = task["positivePrompt"]
        width, height = _check_size(task)
        seed = task.get("seed", secrets.randbelow(MAX_SEED) + 1)
        count = task.get("numberResults", 1)
        seed_image = await self._image_parameter(inputs, "seedImage", base_url, required=False)
        references = inputs.get("referenceImages", [])
        for reference in references if isinstance(references, list) else [references]:
            await self._image_value(reference, "inputs.referenceImages", base_url)
        strength = float(task.get("strength", 0.8))

        def infer() -> list[tuple[bytes, dict[str, Any]]]:
            results = []
            for index in range(count):
                item_seed = min(seed + index, MAX_SEED)
                if seed_image is None:
                    data = _rendered(prompt, item_seed, width, height, output_format, quality)
                else:
                    data = _render(
                        prompt, item_seed, width, height, seed_image.data, strength, output_format, quality
                    )
                results.append((data, {"seed": item_seed}))
            return results

        return infer

    async def _upload(self, task: dict[str, Any], base_url: str) -> dict[str, Any]:
        image = await self._image_value(task["image"], "image", base_url)
        image_uuid = self._store(image.data, image.extension)
        with self._lock:
            self._billed["imageUpload"] += 1
        return {
            "taskType": task["taskType"],
            "taskUUID": task["taskUUID"],
            "imageUUID": image_uuid,
            "imageURL": f"{base_url}/image/{image_uuid}.{image.extension}",
        }

    def _result(
        self,
        task: dict[str, Any],
        data: bytes,
        output_type: str,
        output_format: str,
        base_url: str,
        fault: Fault | None,
    ) -> dict[str, Any]:
        extension, _, media_type = _FORMATS[output_format]
        if fault is Fault.IMAGE_404:
            image_uuid = str(uuid.uuid4())
        elif fault is Fault.IMAGE_NOT_AN_IMAGE:
            image_uuid = self._store(b"<html><body>This is not an image.</body></html>", extension)
        else:
            image_uuid = self._store(data, extension)
        item: dict[str, Any] = {
            "taskType": task["taskType"],
            "taskUUID": task["taskUUID"],
            "imageUUID": image_uuid,
        }
        if output_type == "URL":
            item["imageURL"] = f"{base_url}/image/{image_uuid}.{extension}"
        elif output_type == "base64Data":
            item["imageBase64Data"] = base64.b64encode(data).decode("ascii")
        else:
            item["imageDataURI"] = f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
        return item


def _delivered(job: _Job) -> list[dict[str, Any]]:
    """The results one ``getResponse`` hands out, by the job's delivery (all of them by default);
    ``job.delivered`` counts those handed out so far."""
    items = job.items or []
    if job.delivery is Fault.SHORT_BATCH:
        job.delivered = len(items) - 1
        return items[:-1]
    if job.delivery is Fault.STAGGERED:
        job.delivered = min(job.delivered + 1, len(items))
        return list(reversed(items))[: job.delivered]
    if job.delivery is Fault.STAGGERED_ONCE:
        if job.delivered >= len(items):
            return []
        job.delivered += 1
        return [items[job.delivered - 1]]
    job.delivered = len(items)
    return items
