"""The byte budget of queued work: input data held from before it is decoded until the task ends,
refused with ``QueueFull`` past the budget, and given back on every way a task can end."""

from __future__ import annotations

import asyncio
import base64

import pytest

from imagestudio.domain.errors import Conflict, InvalidParameters, ProviderError, QueueFull
from imagestudio.domain.model import GeneratedImage, ImageSpec, ImageToImage, SourceImage, Upscale
from imagestudio.domain.ports import ProgressCallback
from imagestudio.domain.tasks import ByteBudget, IdempotencyKey
from tests.domain.world import World
from tests.fakes import FakeImageGenerator, FakeImageInspector, tiny_png

SOURCE = tiny_png(256, 256)


def data_uri(data: bytes = SOURCE) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


class GatedImageGenerator(FakeImageGenerator):
    """Holds every image-to-image and upscale until released."""

    def __init__(self, *, fail_with: ProviderError | None = None) -> None:
        super().__init__(fail_with=fail_with)
        self.gate = asyncio.Event()

    async def image_to_image(
        self, spec: ImageSpec, source: SourceImage, strength: float, progress: ProgressCallback
    ) -> GeneratedImage:
        await self.gate.wait()
        return await super().image_to_image(spec, source, strength, progress)

    async def upscale(self, source: SourceImage, scale: int, progress: ProgressCallback) -> GeneratedImage:
        await self.gate.wait()
        return await super().upscale(source, scale, progress)


class CountingInspector(FakeImageInspector):
    def __init__(self) -> None:
        self.decoded = 0

    async def decode_data_uri(self, uri: str, field_name: str) -> bytes:
        self.decoded += 1
        return await super().decode_data_uri(uri, field_name)


def command(task_id: str, source: str | None = None) -> ImageToImage:
    return ImageToImage(source=source or data_uri(), prompt="a dog", task_id=task_id, width=256, height=256)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.anyio
async def test_work_past_the_byte_budget_is_queue_full_and_the_bytes_come_back_when_it_drains() -> None:
    generator = GatedImageGenerator()
    world = World(generator=generator, max_running=1, max_queued_bytes=len(SOURCE) * 5 // 2)
    use_case = world.image_to_image()
    await use_case.submit(command("a"))
    await use_case.submit(command("b"))
    assert world.tasks.bytes.held == 2 * len(SOURCE)

    with pytest.raises(QueueFull) as refused:
        await use_case.submit(command("c"))
    assert "IMAGESTUDIO_MAX_QUEUED_BYTES" in refused.value.message
    assert refused.value.details["heldBytes"] == 2 * len(SOURCE)
    assert refused.value.details["maxQueuedBytes"] == len(SOURCE) * 5 // 2
    assert world.tasks.bytes.held == 2 * len(SOURCE)  # the refused request kept nothing
    with pytest.raises(QueueFull):
        await world.upscale().submit(Upscale(source=data_uri(), task_id="u"))

    generator.gate.set()
    await world.tasks.wait("a")
    await world.tasks.wait("b")
    assert world.tasks.bytes.held == 0
    await use_case.submit(command("c"))
    await world.tasks.wait("c")
    assert world.tasks.bytes.held == 0


@pytest.mark.anyio
async def test_a_file_reference_holds_the_bytes_read_from_storage() -> None:
    generator = GatedImageGenerator()
    world = World(generator=generator, max_running=1)
    settings = await world.settings.get()
    key = world.storage.own_key()
    world.storage.files[(settings.storage_path, key)] = SOURCE
    await world.image_to_image().submit(command("f", source=key))
    assert world.tasks.bytes.held == len(SOURCE)
    generator.gate.set()
    await world.tasks.wait("f")
    assert world.tasks.bytes.held == 0


@pytest.mark.anyio
async def test_the_bytes_come_back_however_the_task_ends() -> None:
    generator = GatedImageGenerator(fail_with=ProviderError("engine down"))
    world = World(generator=generator, max_running=1, max_queued=1)
    use_case = world.image_to_image()
    await use_case.submit(command("fails"))
    await use_case.submit(command("queued-then-cancelled"))
    with pytest.raises(QueueFull):  # refused by count: its bytes are given back at once
        await use_case.submit(command("over-count"))
    with pytest.raises(Conflict):  # a task id in use
        await use_case.submit(command("fails"))
    assert world.tasks.bytes.held == 2 * len(SOURCE)

    await world.tasks.cancel("queued-then-cancelled")
    assert world.tasks.bytes.held == len(SOURCE)
    generator.gate.set()
    with pytest.raises(ProviderError):
        await world.tasks.wait("fails")
    assert world.tasks.bytes.held == 0

    generator.gate.clear()
    generator.fail_with = None
    await use_case.submit(command("running-then-cancelled"))
    await _settle()
    await world.tasks.cancel("running-then-cancelled")
    assert world.tasks.bytes.held == 0

    key = IdempotencyKey(key="k1", fingerprint="same")
    await use_case.submit(command("first"), key)
    await use_case.submit(command("replayed"), key)  # answered by the first task: holds nothing
    assert world.tasks.bytes.held == len(SOURCE)
    await world.tasks.shutdown(grace=0.1)
    assert world.tasks.bytes.held == 0


@pytest.mark.anyio
async def test_input_that_does_not_resolve_holds_nothing() -> None:
    world = World(max_queued_bytes=1024 * 1024)
    with pytest.raises(InvalidParameters):
        await world.image_to_image().submit(command("bad", source="data:image/png;base64,AAAA"))
    with pytest.raises(InvalidParameters):
        await world.upscale().submit(Upscale(source="data:image/png;base64,!!!", task_id="bad2"))
    assert world.tasks.bytes.held == 0


@pytest.mark.anyio
async def test_a_data_uri_larger_than_the_budget_is_refused_before_it_is_decoded() -> None:
    inspector = CountingInspector()
    world = World(inspector=inspector, max_queued_bytes=len(SOURCE) // 2)
    with pytest.raises(QueueFull):
        await world.image_to_image().submit(command("big"))
    assert inspector.decoded == 0
    assert world.tasks.bytes.held == 0


@pytest.mark.anyio
async def test_the_idle_hook_runs_once_the_last_active_task_has_ended() -> None:
    generator = GatedImageGenerator()
    world = World(generator=generator, max_running=1)
    await world.image_to_image().submit(command("one"))
    await world.image_to_image().submit(command("two"))
    await _settle()
    assert world.idle_calls == []
    generator.gate.set()
    await world.tasks.wait("one")
    await world.tasks.wait("two")
    await _settle()
    assert world.idle_calls == [1]


def test_a_hold_that_would_pass_the_budget_changes_nothing() -> None:
    budget = ByteBudget(100)
    first = budget.hold(60)
    with pytest.raises(QueueFull):
        budget.hold(41)
    second = budget.hold(40)
    with pytest.raises(QueueFull):
        second.resize(41)
    assert (budget.held, second.size) == (100, 40)
    second.resize(10)
    first.release()
    first.release()
    assert budget.held == 10
    with pytest.raises(QueueFull):
        budget.hold(101)  # larger than the whole budget: never admitted
    second.release()
    assert budget.held == 0
