"""The ASGI app of a fake Runware: the task endpoint, image downloads and the out-of-process control.

``POST /v1`` takes tasks, answering an injected fault (:mod:`.faults`) instead where one applies;
``GET /image/<uuid>.<ext>`` serves images; ``GET /_fake/stats``, ``GET /_fake/timings`` and
``POST /_fake/control`` do out of process what :class:`~.server.FakeRunware`'s methods do in it.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from imagestudio.testing.fake_runware.faults import _STATUS_FAULTS, Fault
from imagestudio.testing.fake_runware.protocol import (
    _API_PATH,
    _IMAGE_PATH,
    _NOT_JSON,
    Receive,
    Scope,
    Send,
    _decode_json,
    _read_body,
    _send,
    _send_json,
    _task_ids,
    _tasks_of,
)
from imagestudio.testing.fake_runware.tasks import _TaskRunner


class _App(_TaskRunner):
    """A fake Runware as an ASGI application."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == _API_PATH:
            if method != "POST":
                await _send_json(
                    send, 405, {"errors": [{"code": "methodNotAllowed", "message": "Use POST."}]}
                )
                return
            started = time.perf_counter()
            await self._api(scope, receive, send)
            self._timed("task", started)
        elif (match := _IMAGE_PATH.fullmatch(path)) and method in ("GET", "HEAD"):
            started = time.perf_counter()
            await self._serve_image(scope, send, match[1], match[2])
            self._timed("image", started)
        elif path == "/_fake/stats" and method == "GET":
            await _send_json(send, 200, self.stats())
        elif path == "/_fake/timings" and method == "GET":
            await _send_json(send, 200, self.service_times)
        elif path == "/_fake/control" and method == "POST":
            await self._control(receive, send)
        else:
            await _send_json(send, 404, {"errors": [{"code": "notFound", "message": "Not found."}]})

    async def _api(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, self.max_body_bytes)
        document = await asyncio.to_thread(_decode_json, body)
        fault = self._record_call(body, document)
        if fault is Fault.HANG:
            if not await self._hold(receive):
                await _send_json(
                    send, 503, {"errors": [{"code": "serviceUnavailable", "message": "Stopping."}]}
                )
            return
        if fault is Fault.EMPTY_401:
            await _send(send, 401, b"", "text/plain")
            return
        if fault in _STATUS_FAULTS:
            status, code, message = _STATUS_FAULTS[fault]
            errors = [{"code": code, "message": message, **_task_ids(task)} for task in _tasks_of(document)]
            extra = [(b"retry-after", b"2")] if fault is Fault.RATE_LIMITED_RETRY_AFTER else []
            await _send_json(
                send, status, {"errors": errors or [{"code": code, "message": message}]}, headers=extra
            )
            return
        if fault is Fault.ERROR_OBJECT:
            first = next(iter(_tasks_of(document)), {})
            error = {"code": "insufficientCredits", "message": "Insufficient credits to run this task."}
            await _send_json(send, 402, {"error": error, **_task_ids(first)})
            return
        if fault is Fault.MALFORMED_JSON:
            await _send(
                send, 200, b'{"data": [{"taskType": "imageInference", "taskUUID": ', "application/json"
            )
            return
        if fault is Fault.NOT_AN_ARRAY:
            await _send_json(send, 200, {"data": {"taskUUID": str(uuid.uuid4()), "imageURL": "nowhere"}})
            return
        if fault is Fault.MISSING_DATA:
            await _send_json(send, 200, {"result": "ok"})
            return
        if body is None:
            error = {"code": "requestTooLarge", "message": f"The body exceeds {self.max_body_bytes} bytes."}
            await _send_json(send, 413, {"errors": [error]})
            return
        status, answer = await self._answer(scope, document, fault=fault)
        if fault is Fault.DROP_AFTER_BODY:
            # The tasks ran; the answer breaks off: headers promise more than the body carries.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"data": [', "more_body": False})
            return
        if fault in (Fault.ACCEPTED_502, Fault.ACCEPTED_504):
            gateway = 502 if fault is Fault.ACCEPTED_502 else 504
            await _send(send, gateway, b"<html><body>Bad gateway</body></html>", "text/html")
            return
        await _send_json(send, status, answer)

    async def _hold(self, receive: Receive) -> bool:
        """Wait until the client hangs up (True) or the fake stops (False)."""
        while not self._stopping.is_set():
            try:
                message = await asyncio.wait_for(receive(), timeout=0.1)
            except TimeoutError:
                continue
            if message["type"] == "http.disconnect":
                return True
        return False

    async def _control(self, receive: Receive, send: Send) -> None:
        """Out-of-process control.

        Body: ``{"reset"?: bool, "clearFaults"?: bool, "latency"?: seconds,
        "faults"?: [{"fault": name, "times"?: n, "polls"?: bool}]}``; answers with :meth:`stats`.
        """
        body = await _read_body(receive, 1024 * 1024)
        command = _decode_json(body) if body is not None else _NOT_JSON
        try:
            if not isinstance(command, dict):
                raise ValueError("the body must be a JSON object")
            if command.get("reset"):
                self.reset()
            if command.get("clearFaults"):
                self.clear_faults()
            if "latency" in command:
                self.latency = float(command["latency"])
            for entry in command.get("faults", []):
                self.inject(Fault(entry["fault"]), entry.get("times"), polls=bool(entry.get("polls")))
        except (ValueError, TypeError, KeyError) as error:
            await _send_json(send, 400, {"errors": [{"code": "invalidControl", "message": str(error)}]})
            return
        await _send_json(send, 200, self.stats())
