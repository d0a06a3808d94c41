"""The CLI's progress display of one task: a bar redrawn in place on a terminal, plain lines elsewhere."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from imagestudio.domain.model import TaskEvent, TaskStatus

__all__ = ["ProgressBar", "elapsed_text", "step_of"]


def step_of(progress: int, steps: int) -> int:
    """The sampler step a task's ``progress`` stands for. The task manager publishes ``done`` of
    ``total`` steps as ``int(done / total * 99)`` percent (100 once complete), so this is the step
    exactly for up to 98 steps; at 99 or 100 it may read one step less."""
    if progress >= 100:
        return steps
    return min(steps, -(-progress * steps // 99))


def elapsed_text(seconds: float) -> str:
    """``3.2s`` under a minute, ``2m05s`` beyond."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


class ProgressBar:
    """The progress of one task (events of other tasks are ignored when ``task_id`` is set).

    On a terminal, one line redrawn in place at each event and by :meth:`tick`:
    ``[#########---------------------]  33% generating  step 8/25  2.1s``; work waiting for a
    slot shows its place (``queued (position 2)``). Elsewhere (a pipe, a log file), a plain line
    without ``\\r`` at each change of status or queue position: ``generating  0.1s``.

    ``steps`` is how many steps the task's progress counts (the local sampler reports one per
    step); ``None`` shows no step. A cancelled task's line is only ended: whoever cancelled it
    says so.
    """

    def __init__(
        self,
        stream: TextIO,
        width: int = 30,
        *,
        task_id: str | None = None,
        steps: int | None = None,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.width = width
        self.task_id = task_id
        self.steps = steps
        self.terminal = _is_terminal(stream) if terminal is None else terminal
        self.line_open = False
        """Whether the cursor is at the end of a drawn bar (a terminal only)."""
        self._clock = clock
        self._started = clock()
        self._last: TaskEvent | None = None
        self._shown: tuple[TaskStatus, int | None] | None = None
        self._drawn = 0

    def __call__(self, event: TaskEvent) -> None:
        if self.task_id is not None and event.task_id != self.task_id:
            return
        self._last = event
        if self.terminal:
            if event.status is TaskStatus.CANCELLED:
                self.close()
            else:
                self._draw()
        elif (event.status, event.position) != self._shown and event.status is not TaskStatus.CANCELLED:
            self._shown = (event.status, event.position)
            self._write(self._details(event) + "\n")

    def start(self, task_id: str, steps: int | None = None) -> None:
        """Follow the task ``task_id`` from now on (the elapsed time counts from here)."""
        self.task_id = task_id
        self.steps = steps
        self._started = self._clock()

    def tick(self) -> None:
        """Redraw the elapsed time of a task still going (a terminal only)."""
        if self.terminal and self._last is not None and not self._last.status.is_terminal:
            self._draw()

    def close(self) -> None:
        """End the bar's line, if one is open."""
        if self.line_open:
            self._write("\n")
            self.line_open = False

    def _draw(self) -> None:
        event = self._last
        assert event is not None
        filled = int(self.width * event.progress / 100)
        bar = "#" * filled + "-" * (self.width - filled)
        text = f"[{bar}] {event.progress:3d}% {self._details(event)}"
        padding = " " * max(0, self._drawn - len(text))
        self._drawn = len(text)
        self.line_open = True
        self._write(f"\r{text}{padding}")
        if event.status.is_terminal:
            self.close()

    def _details(self, event: TaskEvent) -> str:
        parts = [event.status.value]
        if event.status is TaskStatus.QUEUED and event.position is not None:
            parts[0] += f" (position {event.position})"
        if not self.terminal and event.status is TaskStatus.COMPLETED:
            parts.append(f"{event.progress}%")
        if self.steps is not None and event.status in (TaskStatus.GENERATING, TaskStatus.COMPLETED):
            parts.append(f"step {step_of(event.progress, self.steps)}/{self.steps}")
        parts.append(elapsed_text(self._clock() - self._started))
        return "  ".join(parts)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False
