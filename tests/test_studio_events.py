"""``Studio`` reads progress through the task event stream port: a subscription and a listener
both see a generation's events, ending with its one terminal event."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagestudio import Studio, TaskEvent, TaskStatus


@pytest.mark.anyio
async def test_a_studio_subscription_and_listener_see_a_generation_to_its_end(tmp_path: Path) -> None:
    async with Studio.open(tmp_path / "data", engine="local") as studio:
        heard: list[TaskEvent] = []
        stop = studio.on_event(heard.append)
        subscription = studio.subscribe("ev-1")
        try:
            generation = await studio.text_to_image("a fox", width=128, height=128, steps=2, task_id="ev-1")
            seen = [await subscription.next()]
            while not seen[-1].status.is_terminal:
                seen.append(await subscription.next())
        finally:
            subscription.close()
            stop()
    assert seen[-1].status is TaskStatus.COMPLETED
    assert seen[-1].generation_id == generation.id
    assert [event.seq for event in seen] == sorted(event.seq for event in seen)
    assert any(event.task_id == "ev-1" and event.status is TaskStatus.COMPLETED for event in heard)
