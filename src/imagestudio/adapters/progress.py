"""In-memory ``TaskEvents`` hub: fans progress events out to subscribers (WebSockets, CLI).

Events may be published from worker threads; they are handed to the event loop the hub was
bound to, so subscribers only ever run on that loop. The hub remembers the terminal event of
recent tasks, so a subscriber that arrives after a task ended still learns how it ended.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

from imagestudio.domain.model import TaskEvent

__all__ = ["InMemoryTaskEvents", "Subscription"]


class Subscription:
    """A stream of events for one subscriber; iterate it, then ``close()`` it."""

    def __init__(self, hub: InMemoryTaskEvents, task_id: str | None) -> None:
        self.task_id = task_id
        self._hub = hub
        self._queue: asyncio.Queue[TaskEvent] = asyncio.Queue()

    def wants(self, event: TaskEvent) -> bool:
        return self.task_id is None or self.task_id == event.task_id

    def deliver(self, event: TaskEvent) -> None:
        self._queue.put_nowait(event)

    async def next(self) -> TaskEvent:
        return await self._queue.get()

    async def __aiter__(self) -> AsyncIterator[TaskEvent]:
        while True:
            yield await self._queue.get()

    def close(self) -> None:
        self._hub._subscribers.discard(self)


class InMemoryTaskEvents:
    """A thread-safe publish/subscribe hub for task events."""

    def __init__(self, remember: int = 10_000) -> None:
        self._subscribers: set[Subscription] = set()
        self._terminal: OrderedDict[str, TaskEvent] = OrderedDict()
        self._remember = remember
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Callable[[TaskEvent], None]] = []
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Deliver events on ``loop`` (default: the running loop)."""
        self._loop = loop or asyncio.get_running_loop()

    def add_listener(self, listener: Callable[[TaskEvent], None]) -> Callable[[], None]:
        """Call ``listener`` (on the loop) for every event; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # --- TaskEvents port --------------------------------------------------------------------

    def publish(self, event: TaskEvent) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            self._dispatch(event)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._dispatch(event)
        else:
            loop.call_soon_threadsafe(self._dispatch, event)

    # --- subscribers ------------------------------------------------------------------------

    def subscribe(self, task_id: str | None = None) -> Subscription:
        """Start receiving events (of one task, or of all). Call on the hub's loop.

        A subscription to a task that has already ended starts with that task's terminal event.
        """
        subscription = Subscription(self, task_id)
        if task_id is not None:
            with self._lock:
                ended = self._terminal.get(task_id)
            if ended is not None:
                subscription.deliver(ended)
        self._subscribers.add(subscription)
        return subscription

    def terminal_event(self, task_id: str) -> TaskEvent | None:
        with self._lock:
            return self._terminal.get(task_id)

    def _dispatch(self, event: TaskEvent) -> None:
        if event.status.is_terminal:
            with self._lock:
                self._terminal[event.task_id] = event
                self._terminal.move_to_end(event.task_id)
                while len(self._terminal) > self._remember:
                    self._terminal.popitem(last=False)
        elif event.task_id in self._terminal:
            # A client reused a task id: the new task's events supersede the old ending.
            with self._lock:
                self._terminal.pop(event.task_id, None)
        for subscription in list(self._subscribers):
            if subscription.wants(event):
                subscription.deliver(event)
        for listener in list(self._listeners):
            listener(event)
