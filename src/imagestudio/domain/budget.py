"""The byte budget: how many bytes of input data queued and running work may hold at once.

A job carries its :class:`Hold` against one :class:`ByteBudget` of ``max_queued_bytes``; work
that would take the budget past its limit is refused with ``QueueFull`` before it is queued, so
memory is bounded by bytes as well as by count (``domain/tasks.py`` gives each hold back when
its task ends).
"""

from __future__ import annotations

from imagestudio.domain.errors import QueueFull
from imagestudio.domain.model import InvalidTransition

__all__ = ["DEFAULT_MAX_QUEUED_BYTES", "ByteBudget", "Hold"]

DEFAULT_MAX_QUEUED_BYTES = 256 * 1024 * 1024
_MIB = 1024 * 1024


class ByteBudget:
    """Bytes of input data that work may hold at once; used from the event loop only.

    Rules:
    - a hold that would take the total past ``limit`` is refused with ``QueueFull`` and takes
      nothing (a single hold larger than the whole budget is refused too);
    - a hold may grow (refused the same way) or shrink; released, it gives everything back, once.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a byte budget needs at least one byte")
        self.limit = limit
        self.held = 0

    def hold(self, size: int) -> Hold:
        """Take ``size`` bytes, or raise ``QueueFull``."""
        hold = Hold(self)
        hold.resize(size)
        return hold

    def _take(self, size: int) -> None:
        if size > 0 and self.held + size > self.limit:
            raise QueueFull(
                f"Queued work already holds {self.held / _MIB:.1f} MiB of input images and this request"
                f" needs {size / _MIB:.1f} MiB more; the budget is {self.limit / _MIB:.0f} MiB"
                " (IMAGESTUDIO_MAX_QUEUED_BYTES): try again shortly",
                details={"heldBytes": self.held, "neededBytes": size, "maxQueuedBytes": self.limit},
            )
        self.held += size


class Hold:
    """Bytes held against a :class:`ByteBudget` by one piece of work."""

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.size = 0
        self.released = False

    def resize(self, size: int) -> None:
        """Hold ``size`` bytes instead (``QueueFull`` if growing does not fit; nothing changes then)."""
        if self.released:
            raise InvalidTransition("a released hold cannot be resized")
        self._budget._take(max(0, size) - self.size)
        self.size = max(0, size)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._budget.held -= self.size
            self.size = 0
