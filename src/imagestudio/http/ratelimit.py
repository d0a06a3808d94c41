"""The rate limit (``IMAGESTUDIO_RATE_LIMIT``): a token bucket per client address.

Off unless set. :class:`ShellGuard` (``http/security.py``) spends one request of a client's
bucket right after the Host check, so that failed token guesses count too.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from imagestudio.config import RateLimit

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets, one per client address: ``requests`` may come at once, then they refill
    evenly over ``period`` (``100/minute``: a burst of 100, then one every 0.6 s).

    At most ``max_clients`` buckets are kept; the least recently seen client is forgotten first,
    so memory stays bounded whatever addresses arrive. Runs on the event loop only (no awaits
    inside), so it needs no lock.
    """

    def __init__(
        self, limit: RateLimit, *, clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000
    ) -> None:
        self.limit = limit
        self._rate = limit.requests / limit.period
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float | None:
        """Spend one request of ``client``: ``None`` if allowed, else the seconds until one is."""
        now = self._clock()
        tokens, stamp = self._buckets.pop(client, (float(self.limit.requests), now))
        tokens = min(float(self.limit.requests), tokens + (now - stamp) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return None if allowed else (1.0 - tokens) / self._rate

    def __len__(self) -> int:
        return len(self._buckets)


def _period(limit: RateLimit) -> str:
    names = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}
    return names.get(limit.period, f"{limit.period:g} seconds")
