"""The CLI's progress display, fed the events a task publishes: on a terminal one line redrawn in
place, elsewhere plain lines at each change of status."""

from __future__ import annotations

import io

import pytest

from imagestudio.cli.progress import ProgressBar, elapsed_text, step_of
from imagestudio.domain.model import TaskEvent, TaskStatus


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def event(
    status: TaskStatus, progress: int = 0, position: int | None = None, task_id: str = "t"
) -> TaskEvent:
    return TaskEvent(task_id=task_id, status=status, progress=progress, position=position)


def reported(done: int, total: int) -> int:
    """The progress the task manager publishes for ``done`` of ``total`` steps (TaskControl.step)."""
    return int(min(max(done / total, 0.0), 1.0) * 99)


def published(total: int) -> list[tuple[int, int]]:
    """The (step, progress) pairs a task of ``total`` steps publishes: progress only goes up."""
    pairs, last = [], 0
    for done in range(1, total + 1):
        progress = reported(done, total)
        if progress > last:
            pairs.append((done, progress))
            last = progress
    return pairs


def test_up_to_98_steps_the_step_read_back_from_the_progress_is_the_engines_step() -> None:
    for total in range(1, 99):
        pairs = published(total)
        assert [done for done, _ in pairs] == list(range(1, total + 1))  # every step is seen
        assert [step_of(progress, total) for _, progress in pairs] == list(range(1, total + 1)), total
        assert step_of(100, total) == total


@pytest.mark.parametrize("total", [99, 100])
def test_at_99_or_100_steps_the_step_read_back_is_at_most_one_short(total: int) -> None:
    for done, progress in published(total):
        assert done - 1 <= step_of(progress, total) <= done


def test_on_a_terminal_the_line_shows_position_steps_and_elapsed_time_and_is_redrawn() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = ProgressBar(stream, terminal=True, clock=clock)
    bar.start("t", steps=25)
    bar(event(TaskStatus.QUEUED, position=2))
    assert stream.getvalue().endswith("  0% queued (position 2)  0.0s")
    clock.now += 1.5
    bar(event(TaskStatus.GENERATING, progress=reported(12, 25)))
    assert (
        stream.getvalue().split("\r")[-1].rstrip()
        == "[##############----------------]  47% generating  step 12/25  1.5s"
    )
    clock.now += 2.0
    bar.tick()  # the clock moves on between events
    assert stream.getvalue().split("\r")[-1].rstrip().endswith("step 12/25  3.5s")
    assert bar.line_open
    assert "\n" not in stream.getvalue()
    bar(event(TaskStatus.COMPLETED, progress=100))
    last = stream.getvalue().split("\r")[-1]
    assert last.endswith("\n")  # the finished bar's line is ended
    assert last.rstrip() == "[##############################] 100% completed  step 25/25  3.5s"
    assert not bar.line_open


def test_a_shorter_line_wipes_what_the_longer_one_left() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, terminal=True, clock=Clock())
    bar.start("t")
    bar(event(TaskStatus.QUEUED, position=12))
    bar(event(TaskStatus.GENERATING, progress=5))
    first, second = stream.getvalue().split("\r")[1:]
    assert len(second) == len(first)
    assert second.rstrip().endswith("generating  0.0s")


def test_elsewhere_one_plain_line_per_change_of_status_or_position() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = ProgressBar(stream, terminal=False, clock=clock)
    bar.start("t", steps=10)
    for e in (
        event(TaskStatus.QUEUED, position=3),
        event(TaskStatus.QUEUED, position=2),
        event(TaskStatus.QUEUED, position=2),
        event(TaskStatus.GENERATING),
        *(event(TaskStatus.GENERATING, progress=reported(done, 10)) for done in range(1, 10)),
        event(TaskStatus.COMPLETED, progress=100),
    ):
        clock.now += 0.25
        bar(e)
    assert stream.getvalue().splitlines() == [
        "queued (position 3)  0.2s",
        "queued (position 2)  0.5s",
        "generating  step 0/10  1.0s",
        "completed  100%  step 10/10  3.5s",
    ]


def test_a_cancelled_task_only_ends_the_line_and_other_tasks_are_ignored() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, terminal=True, clock=Clock())
    bar.start("mine")
    bar(event(TaskStatus.GENERATING, progress=30, task_id="mine"))
    bar(event(TaskStatus.COMPLETED, progress=100, task_id="someone-else"))
    bar(event(TaskStatus.CANCELLED, progress=30, task_id="mine"))
    assert stream.getvalue().endswith(" 30% generating  0.0s\n")  # the canceller says "cancelled"
    assert "completed" not in stream.getvalue()

    plain = io.StringIO()
    quiet = ProgressBar(plain, terminal=False, clock=Clock())
    quiet(event(TaskStatus.CANCELLED))
    assert plain.getvalue() == ""


def test_elapsed_time_reads_in_seconds_then_minutes() -> None:
    assert [elapsed_text(s) for s in (0, 3.24, 59.9, 60, 125.5)] == [
        "0.0s",
        "3.2s",
        "59.9s",
        "1m00s",
        "2m05s",
    ]
