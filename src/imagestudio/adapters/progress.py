"""In-memory ``TaskEvents`` hub: numbers events and fans them out to subscribers.

Events may be published from worker threads; they are handed to the event loop the hub was
bound to, where each gets the next ``seq`` (increasing for the life of the server). A bounded
buffer of recent events lets a reconnecting client ask for what it missed (``after=<seq>``),
and the last event of each recent task lets a late subscriber learn how its task stands. Each
subscription delivers at most one terminal event per task, and nothing for a task after it.

Previews (an event's ``preview`` image) go live to the subscriptions that asked for them and to
no one else; the buffer and the last events keep every event without its preview, so the replay
buffer holds no image bytes.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from imagestudio.domain.model import TaskEvent

__all__ = ["InMemoryTaskEvents", "Subscription"]


class Subscription:
    """A stream of events for one subscriber; iterate it, then ``close()`` it."""

    def __init__(self, hub: InMemoryTaskEvents, task_id: str | None, previews: bool = False) -> None:
        self.task_id = task_id
        self.previews = previews
        self.truncated_before: int | None = None
        """Set when ``after`` asked for events older than the buffer holds: the oldest seq kept."""
        self._hub = hub
        self._queue: asyncio.Queue[TaskEvent] = asyncio.Queue()
        self._ended: set[str] = set()
        self._last_seq = 0

    def wants(self, event: TaskEvent) -> bool:
        return self.task_id is None or self.task_id == event.task_id

    def deliver(self, event: TaskEvent) -> None:
        if event.task_id in self._ended or (event.seq and event.seq <= self._last_seq):
            return
        if event.status.is_terminal:
            self._ended.add(event.task_id)
        self._last_seq = max(self._last_seq, event.seq)
        self._queue.put_nowait(event)

    async def ready(self) -> None:
        """Nothing to wait for: the buffer is in memory, so ``truncated_before`` is already final."""

    async def next(self) -> TaskEvent:
        return await self._queue.get()

    async def __aiter__(self) -> AsyncIterator[TaskEvent]:
        while True:
            yield await self._queue.get()

    def close(self) -> None:
        self._hub._subscribers.discard(self)
        if self.previews:
            self._hub._preview_watchers.discard(self)


class InMemoryTaskEvents:
    """A thread-safe publish/subscribe hub for task events."""

    def __init__(self, replay: int = 10_000, remember: int = 10_000) -> None:
        self._subscribers: set[Subscription] = set()
        self._preview_watchers: set[Subscription] = set()
        self._buffer: deque[TaskEvent] = deque(maxlen=replay)
        self._last: OrderedDict[str, TaskEvent] = OrderedDict()
        self._remember = remember
        self._seq = 0
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
        # Always through the loop's queue, even from the loop itself: events published from a
        # worker thread before a task ended are then dispatched before its terminal event.
        loop.call_soon_threadsafe(self._dispatch, event)

    def wants_previews(self, task_id: str) -> bool:
        return any(watcher.task_id in (None, task_id) for watcher in list(self._preview_watchers))

    # --- subscribers ------------------------------------------------------------------------

    def subscribe(
        self, task_id: str | None = None, after: int | None = None, *, previews: bool = False
    ) -> Subscription:
        """Start receiving events (of one task, or of all). Call on the hub's loop.

        With ``after``, the buffered events with a greater ``seq`` come first. Without it, a
        subscription to one task starts with that task's latest event, so a late subscriber
        still learns the result (once).
        """
        subscription = Subscription(self, task_id, previews)
        with self._lock:
            if after is not None:
                oldest = self._buffer[0].seq if self._buffer else self._seq + 1
                if after < oldest - 1:
                    subscription.truncated_before = oldest
                for event in self._buffer:
                    if event.seq > after and subscription.wants(event):
                        subscription.deliver(event)
            if task_id is not None:
                latest = self._last.get(task_id)
                if latest is not None and (after is None or latest.status.is_terminal):
                    subscription.deliver(latest)
        self._subscribers.add(subscription)
        if previews:
            self._preview_watchers.add(subscription)
        return subscription

    def _dispatch(self, event: TaskEvent) -> None:
        with self._lock:
            self._seq += 1
            live = replace(event, seq=self._seq)
            kept = live if live.preview is None else replace(live, preview=None)
            self._buffer.append(kept)
            previous = self._last.get(kept.task_id)
            if previous is None or not previous.status.is_terminal or kept.status.is_terminal:
                self._last[kept.task_id] = kept
                self._last.move_to_end(kept.task_id)
            while len(self._last) > self._remember:
                self._last.popitem(last=False)
        for subscription in list(self._subscribers):
            if subscription.wants(kept):
                subscription.deliver(live if subscription.previews else kept)
        for listener in list(self._listeners):
            listener(kept)
