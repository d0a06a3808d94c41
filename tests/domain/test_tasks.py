"""Tasks: the state machine (a Hypothesis stateful test) and the bounded queue, against fakes."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from imagestudio.domain.errors import Conflict, GenerationCancelled, NotFound, QueueFull
from imagestudio.domain.model import (
    GeneratedImage,
    ImageSpec,
    Operation,
    SettingsPatch,
    StoredImage,
    TaskStatus,
    TextToImage,
)
from imagestudio.domain.ports import ProgressCallback
from imagestudio.domain.tasks import IdempotencyKey, InvalidTransition, Task, TaskState
from tests.domain.world import World
from tests.fakes import FakeImageGenerator, tiny_png

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class TaskLifecycle(RuleBasedStateMachine):
    """Any sequence of transitions: never out of a terminal state, progress never down."""

    def __init__(self) -> None:
        super().__init__()
        self.state = TaskState("t", Operation.TEXT_TO_IMAGE, T0)
        self.last_progress = 0
        self.terminal_transitions = 0

    def _try(self, action: object, *args: object) -> None:
        before = self.state.task
        try:
            action(*args)  # type: ignore[operator]
        except InvalidTransition:
            assert self.state.task == before, "a refused transition changed nothing"
            return
        if self.state.status.is_terminal and not before.status.is_terminal:
            self.terminal_transitions += 1

    @rule()
    def start(self) -> None:
        self._try(self.state.start, T0)

    @rule(progress=st.integers(min_value=-10, max_value=150))
    def advance(self, progress: int) -> None:
        self._try(self.state.advance, progress)

    @rule(generation_id=st.integers(min_value=1, max_value=10))
    def complete(self, generation_id: int) -> None:
        self._try(self.state.complete, (generation_id, generation_id + 1), T0)

    @rule()
    def fail(self) -> None:
        self._try(self.state.fail, "API_ERROR", "boom", T0)

    @rule()
    def cancel(self) -> None:
        self._try(self.state.cancel, T0)

    @precondition(lambda self: self.state.status is TaskStatus.QUEUED)
    @rule(position=st.integers(min_value=1, max_value=5))
    def queue(self, position: int) -> None:
        self._try(self.state.queue_at, position)

    @invariant()
    def progress_is_monotone_and_bounded(self) -> None:
        progress = self.state.task.progress
        assert 0 <= progress <= 100
        assert progress >= self.last_progress
        self.last_progress = progress
        if self.state.status is TaskStatus.COMPLETED:
            assert progress == 100
        elif self.state.status is not TaskStatus.COMPLETED:
            assert progress <= 99

    @invariant()
    def at_most_one_terminal_transition(self) -> None:
        assert self.terminal_transitions <= 1
        if self.state.status.is_terminal:
            assert self.state.task.finished_at is not None
            assert self.terminal_transitions == 1


TestTaskLifecycle = TaskLifecycle.TestCase


class GatedGenerator(FakeImageGenerator):
    """Blocks every generation until released; reports progress as a local engine would."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started: list[str] = []

    async def text_to_image(self, spec: ImageSpec, progress: ProgressCallback) -> GeneratedImage:
        self.started.append(spec.prompt)
        progress(1, 4)
        await self.gate.wait()
        progress(2, 4)
        return GeneratedImage(
            data=tiny_png(spec.width, spec.height), extension="png", width=spec.width, height=spec.height
        )


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.anyio
async def test_at_most_max_running_generate_and_the_rest_wait_in_order_with_positions() -> None:
    generator = GatedGenerator()
    world = World(generator=generator, max_running=2, max_queued=3)
    use_case = world.text_to_image()
    tasks = [await use_case.submit(TextToImage(prompt=f"picture {i}", task_id=f"t{i}")) for i in range(5)]
    await _settle()

    assert generator.started == ["picture 0", "picture 1"]
    assert [t.status for t in tasks] == [TaskStatus.QUEUED] * 5
    assert [(await world.tasks.get(f"t{i}")).position for i in range(5)] == [None, None, 1, 2, 3]
    assert [(await world.tasks.get(f"t{i}")).status for i in range(2)] == [TaskStatus.GENERATING] * 2
    with pytest.raises(QueueFull):
        await use_case.submit(TextToImage(prompt="one too many"))

    generator.gate.set()
    results = [await world.tasks.wait(f"t{i}") for i in range(5)]
    assert [g.prompt for g in results] == [f"picture {i}" for i in range(5)]
    assert generator.started == [f"picture {i}" for i in range(5)]
    for i in range(5):
        task = await world.tasks.get(f"t{i}")
        assert task.status is TaskStatus.COMPLETED
        assert task.generation_id == results[i].id
    queued_events = [e for e in world.events.for_task("t4") if e.status is TaskStatus.QUEUED]
    assert [e.position for e in queued_events] == [3, 2, 1]


@pytest.mark.anyio
async def test_every_task_has_exactly_one_terminal_event_and_monotone_progress() -> None:
    world = World(generator=FakeImageGenerator(steps_reported=7), max_running=1)
    use_case = world.text_to_image()
    await asyncio.gather(*(use_case(TextToImage(prompt=f"p{i}x", task_id=f"k{i}")) for i in range(6)))
    for i in range(6):
        events = world.events.for_task(f"k{i}")
        assert [e.status.is_terminal for e in events].count(True) == 1
        assert events[-1].status is TaskStatus.COMPLETED
        progress = [e.progress for e in events]
        assert progress == sorted(progress)


@pytest.mark.anyio
async def test_cancelling_a_queued_task_means_it_never_starts() -> None:
    generator = GatedGenerator()
    world = World(generator=generator, max_running=1)
    use_case = world.text_to_image()
    await use_case.submit(TextToImage(prompt="first", task_id="a"))
    await use_case.submit(TextToImage(prompt="second", task_id="b"))
    await _settle()

    cancelled = await world.tasks.cancel("b")
    assert cancelled.status is TaskStatus.CANCELLED
    generator.gate.set()
    await world.tasks.wait("a")
    assert generator.started == ["first"]
    with pytest.raises(GenerationCancelled):
        await world.tasks.wait("b")
    assert [e.status for e in world.events.for_task("b")][-1] is TaskStatus.CANCELLED
    with pytest.raises(Conflict):
        await world.tasks.cancel("b")
    with pytest.raises(Conflict):
        await world.tasks.cancel("a")
    with pytest.raises(NotFound):
        await world.tasks.cancel("nobody")


@pytest.mark.anyio
async def test_cancelling_a_running_call_abandons_it_and_leaves_nothing() -> None:
    generator = GatedGenerator()  # never released: like a provider call still waiting
    world = World(generator=generator)
    await world.text_to_image().submit(TextToImage(prompt="slow one", task_id="r"))
    await _settle()
    assert (await world.tasks.get("r")).status is TaskStatus.GENERATING

    task = await world.tasks.cancel("r")

    assert task.status is TaskStatus.CANCELLED
    assert task.error_code == "CANCELLED"
    assert world.storage.files == {}
    assert world.repository.rows == {}


@pytest.mark.anyio
async def test_a_running_step_engine_stops_at_its_next_step() -> None:
    world = World()
    steps_seen: list[int] = []

    async def stepping(spec: ImageSpec, progress: ProgressCallback) -> GeneratedImage:
        for step in range(1, 1000):
            steps_seen.append(step)
            progress(step, 1000)  # raises once the task is cancelled
            await asyncio.sleep(0.001)
        raise AssertionError("never reached")

    world.generator.text_to_image = stepping  # type: ignore[method-assign]
    await world.text_to_image().submit(TextToImage(prompt="long job", task_id="s"))
    await asyncio.sleep(0.02)
    task = await world.tasks.cancel("s")
    assert task.status is TaskStatus.CANCELLED
    assert len(steps_seen) < 1000
    assert world.repository.rows == {}


@pytest.mark.anyio
async def test_a_reused_task_id_is_a_conflict() -> None:
    world = World()
    await world.text_to_image()(TextToImage(prompt="first", task_id="same"))
    with pytest.raises(Conflict):
        await world.text_to_image()(TextToImage(prompt="second", task_id="same"))
    assert len(world.repository.rows) == 1


@pytest.mark.anyio
async def test_idempotency_keys_return_the_first_task_and_refuse_another_body() -> None:
    world = World()
    use_case = world.text_to_image()
    key = IdempotencyKey(key="k-1", fingerprint="body-a")
    first = await use_case(TextToImage(prompt="a cat"), key)
    again = await use_case(TextToImage(prompt="a cat"), key)
    assert again == first
    assert len(world.repository.rows) == 1
    with pytest.raises(Conflict):
        await use_case(TextToImage(prompt="a dog"), IdempotencyKey(key="k-1", fingerprint="body-b"))
    task = await use_case.submit(TextToImage(prompt="a cat"), key)
    assert task.generation_id == first.id


@pytest.mark.anyio
async def test_recovery_marks_unfinished_tasks_interrupted_and_removes_their_unrecorded_images() -> None:
    world = World()
    recorded = await world.text_to_image()(TextToImage(prompt="kept"))
    orphan = StoredImage(key="day/orphan.png", root="./generated")
    world.storage.files[(orphan.root, orphan.key)] = b"partial"
    world.task_repository.rows["dead"] = Task(
        id="dead",
        operation=Operation.TEXT_TO_IMAGE,
        status=TaskStatus.GENERATING,
        progress=40,
        created_at=T0,
        images=(orphan,),
    )
    world.task_repository.rows["dead-but-recorded"] = Task(
        id="dead-but-recorded",
        operation=Operation.TEXT_TO_IMAGE,
        status=TaskStatus.GENERATING,
        progress=99,
        created_at=T0,
        images=(recorded.image,),
    )

    interrupted = await world.tasks.recover()

    assert {t.id for t in interrupted} == {"dead", "dead-but-recorded"}
    assert (orphan.root, orphan.key) not in world.storage.files
    assert (recorded.image.root, recorded.image.key) in world.storage.files
    dead = await world.tasks.get("dead")
    assert dead.status is TaskStatus.FAILED
    assert dead.error_code == "INTERRUPTED"


@pytest.mark.anyio
async def test_shutdown_refuses_new_work_cancels_the_queue_and_lets_running_finish() -> None:
    generator = GatedGenerator()
    world = World(generator=generator, max_running=1)
    use_case = world.text_to_image()
    await use_case.submit(TextToImage(prompt="running", task_id="run"))
    await use_case.submit(TextToImage(prompt="waiting", task_id="wait"))
    await _settle()

    asyncio.get_running_loop().call_later(0.05, generator.gate.set)
    await world.tasks.shutdown(grace=5)

    assert (await world.tasks.get("run")).status is TaskStatus.COMPLETED
    assert (await world.tasks.get("wait")).status is TaskStatus.CANCELLED
    with pytest.raises(QueueFull):
        await use_case.submit(TextToImage(prompt="too late"))


@pytest.mark.anyio
async def test_a_queued_generation_keeps_the_storage_folder_its_request_saw() -> None:
    generator = GatedGenerator()
    world = World(generator=generator, max_running=1)
    use_case = world.text_to_image()
    first_folder = (await world.settings.get()).storage_path
    await use_case.submit(TextToImage(prompt="running", task_id="a"))
    await use_case.submit(TextToImage(prompt="queued", task_id="b"))
    await world.settings.update(SettingsPatch(storage_path="./moved"))
    await use_case.submit(TextToImage(prompt="after the move", task_id="c"))
    generator.gate.set()
    folders = [(await world.tasks.wait(task_id)).image.root for task_id in ("a", "b", "c")]
    assert folders == [first_folder, first_folder, "./moved"]
    assert {root for root, _ in world.storage.files} == {first_folder, "./moved"}
