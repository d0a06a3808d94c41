"""The server process: uvicorn, with the limits CONTRACT.md section 11 asks of it.

Rules:

- ``X-Forwarded-For`` (and ``X-Forwarded-Proto``) are believed only from a peer listed in
  ``IMAGESTUDIO_TRUSTED_PROXIES`` (addresses or networks). Without the setting uvicorn's proxy
  headers are off, so ``scope["client"]``, which the rate limiter keys on, is the socket's peer.
  (uvicorn alone trusts them from 127.0.0.1, where any local page or process connects from.)
- At start the soft ``RLIMIT_NOFILE`` is raised to the hard limit. Open connections are capped
  below it (:func:`connection_cap`), leaving a reserve for the database, image files and the
  Runware pool, so no client can exhaust the process's descriptors.
- A connection has ``IMAGESTUDIO_HEADER_TIMEOUT`` seconds, from when it opens or from its previous
  response, to complete a request's headers; then it is closed. Sending a byte now and then does
  not extend it. (uvicorn's own keep-alive timeout, 5 s of silence after a response, still holds.)
- A request body then has ``IMAGESTUDIO_HEADER_TIMEOUT`` seconds of grace, after which it must
  average at least ``IMAGESTUDIO_MIN_BODY_RATE`` bytes a second (64 KiB/s) since its headers, and
  no pause in it may last longer than the header timeout (:func:`body_deadline`). A body that falls
  behind is answered 408 ``REQUEST_TIMEOUT`` in the error shape (or, if its response has begun,
  cut off) and its connection closed. The clock stops while the server itself is not reading (the
  application has not asked for the body yet, ``Expect: 100-continue`` not yet answered), so a
  slow handler never counts against the client. A 32 MiB upload may take over eight minutes.
- A connection arriving at the cap closes the connection that has waited longest for its
  headers (idle keep-alive or slow), so a client that sends its request promptly always gets
  through. When none waits, it closes the request whose body is furthest behind, among those more
  than a second behind the minimum rate or paused for more than a second (answered 408 as above).
  When there is none either (every slot is a request being processed, a body arriving promptly or
  a WebSocket), the newcomer is answered at once, 503 ``QUEUE_FULL`` in the error shape with
  ``Retry-After``, and closed. A request whose body has fully arrived is never closed for room.
- WebSockets take at most half the cap; an upgrade over that share gets the same 503, so
  sockets held open cannot leave plain requests without room.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import math
import socket
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from imagestudio.config import DEFAULT_MIN_BODY_RATE, Config, ConfigError
from imagestudio.domain.errors import QueueFull
from imagestudio.log import get_logger

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "CannotListen",
    "ConnectionGuard",
    "DescriptorLimit",
    "body_deadline",
    "check_listen",
    "connection_cap",
    "raise_descriptor_limit",
    "serve",
    "trusted_proxies",
]

log = get_logger(__name__)

DEFAULT_MAX_CONNECTIONS = 4096
"""The cap when ``IMAGESTUDIO_MAX_CONNECTIONS`` is not set and descriptors allow it: far more than
one studio's pages and scripts open, few enough that idle connections cost little memory."""
DESCRIPTOR_RESERVE = 512
"""Descriptors kept out of the cap (at most half the limit): the database pool, image files being
read and written, the Runware pool (up to 256), logs, the event loop's own, and connections
accepted in one burst before the cap is looked at."""
_LINGER = 1.0
"""Seconds a refused connection may still deliver its request before it is closed: closing a
socket with unread input resets it, and the client may lose the 503 it was sent."""
_MAX_LINGERING = 64
_SWEEP_EVERY = 0.25
_BEHIND = 1.0
"""Seconds a body must be behind its minimum rate (or paused) before it may be closed for room."""
_RAISE_CEILING = 1 << 20


# --- descriptors and the cap --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DescriptorLimit:
    """``RLIMIT_NOFILE`` as found at start (``before``) and as left (``soft``, ``hard``)."""

    before: int
    soft: int
    hard: int | None
    """``None``: unlimited."""


def raise_descriptor_limit() -> DescriptorLimit | None:
    """Raise the soft descriptor limit toward the hard one; ``None`` where there is no such limit
    (not POSIX). A refused raise (macOS caps unlimited hard limits lower) tries smaller steps and
    otherwise leaves the limit as it was."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    unlimited = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = _RAISE_CEILING if soft == unlimited else soft
    target = _RAISE_CEILING if hard == unlimited else min(hard, _RAISE_CEILING)
    for candidate in (target, 65536, 10240, 4096):
        if before >= candidate or candidate > target:
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (candidate, hard))
        except (ValueError, OSError):
            continue
        break
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return DescriptorLimit(
        before=before,
        soft=_RAISE_CEILING if soft == unlimited else soft,
        hard=None if hard == unlimited else hard,
    )


def connection_cap(configured: int | None, descriptors: int | None) -> int:
    """Open connections allowed: ``configured`` (default :data:`DEFAULT_MAX_CONNECTIONS`), but never
    more than the descriptor limit minus its reserve (at most half of it)."""
    wanted = DEFAULT_MAX_CONNECTIONS if configured is None else configured
    if descriptors is None:
        return wanted
    reserve = min(DESCRIPTOR_RESERVE, descriptors // 2)
    return max(1, min(wanted, descriptors - reserve))


def trusted_proxies(entries: tuple[str, ...]) -> list[str]:
    """The ``IMAGESTUDIO_TRUSTED_PROXIES`` entries as uvicorn takes them (addresses or networks,
    normalised), or ``ConfigError`` naming the first that is neither."""
    found = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError as error:
            raise ConfigError(
                "IMAGESTUDIO_TRUSTED_PROXIES must list IP addresses or networks (127.0.0.1, 10.0.0.0/8,"
                f" ::1), separated by commas, not {entry!r}"
            ) from error
        single = network.num_addresses == 1
        found.append(str(network.network_address) if single else str(network))
    return found


# --- connections ---------------------------------------------------------------------------------


def body_deadline(deadline: float, now: float, received: int, *, rate: float, grace: float) -> float:
    """A request body's deadline once ``received`` more bytes arrive at ``now``.

    It starts ``grace`` seconds after the headers; each byte moves it ``1 / rate`` seconds later,
    but never more than ``grace`` seconds past ``now``. So a body is cut when it has averaged less
    than ``rate`` since the grace ran out, or when it pauses for longer than ``grace``.
    """
    return min(deadline + received / rate, now + grace)


class ConnectionGuard:
    """What the connections of one server share: the cap, the header and body deadlines, which
    connections wait for headers, oldest first (the first to close when the cap is reached), and
    which receive a request body.

    One sweep a fraction of a second apart closes the connections past their deadline. The header
    deadline is the same for all, so the oldest are the only ones it looks at, and a connection
    costs two dictionary operations per request rather than a timer. Body deadlines move with
    each chunk received, so the sweep looks at every body still arriving (a few microseconds each).
    """

    def __init__(
        self, *, cap: int, header_timeout: float, min_body_rate: float = DEFAULT_MIN_BODY_RATE
    ) -> None:
        if cap < 1 or not (math.isfinite(header_timeout) and header_timeout > 0):
            raise ValueError("the cap must be at least 1 and the header timeout positive")
        if not (math.isfinite(min_body_rate) and min_body_rate > 0):
            raise ValueError("the minimum body rate must be positive")
        self.cap = cap
        self.socket_cap = max(1, cap // 2)
        self.header_timeout = header_timeout
        self.min_body_rate = min_body_rate
        self.waiting: dict[GuardedHttpProtocol, float] = {}
        """Connections waiting for a request's headers and their deadlines, in the order they
        began to wait (so in the order of their deadlines)."""
        self.receiving: dict[GuardedHttpProtocol, float] = {}
        """Connections whose request's headers are in and whose body is not, and the body's
        deadline (:func:`body_deadline`)."""
        self.closing: set[Any] = set()
        """Connections closed or refused by the guard whose descriptor is not released yet."""
        self.refusal = _refusal(cap)
        self.too_slow = _too_slow(min_body_rate, header_timeout)
        self._sweep_every = min(_SWEEP_EVERY, header_timeout / 4)
        self._sweeping = False

    def open(self, connections: set[Any]) -> int:
        return len(connections) - len(self.closing)

    def wait(self, connection: GuardedHttpProtocol, loop: asyncio.AbstractEventLoop) -> None:
        """``connection`` now waits for a request's headers; it has :attr:`header_timeout` seconds."""
        self.waiting.pop(connection, None)
        self.waiting[connection] = loop.time() + self.header_timeout
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(self._sweep_every, self._sweep, loop)

    def evict_oldest_waiting(self) -> bool:
        """Close the connection that has waited longest for its headers; ``False`` if none waits."""
        for connection in self.waiting:
            connection.close_waiting()
            return True
        return False

    def receive(self, connection: GuardedHttpProtocol, now: float) -> None:
        """``connection`` has a request's headers and now waits for its body (if any)."""
        self.receiving[connection] = now + self.header_timeout

    def received(self, connection: GuardedHttpProtocol, size: int, now: float) -> None:
        """``size`` bytes of ``connection``'s request body arrived."""
        deadline = self.receiving.get(connection)
        if deadline is not None:
            self.receiving[connection] = body_deadline(
                deadline, now, size, rate=self.min_body_rate, grace=self.header_timeout
            )

    def evict_slowest_receiving(self, now: float) -> bool:
        """Close the connection whose body is furthest behind, if one is more than :data:`_BEHIND`
        seconds behind; ``False`` if none is."""
        slowest = None
        furthest = now + self.header_timeout - _BEHIND
        for connection, deadline in self.receiving.items():
            if deadline < furthest and not connection.body_paused():
                slowest, furthest = connection, deadline
        if slowest is None:
            return False
        slowest.cut_slow_body()
        return True

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        expired = []
        for connection, deadline in self.waiting.items():
            if deadline > now:
                break
            expired.append(connection)
        for connection in expired:
            connection.close_waiting()
        self._sweep_bodies(now)
        loop.call_later(self._sweep_every, self._sweep, loop)

    def _sweep_bodies(self, now: float) -> None:
        expired = []
        fresh = now + self.header_timeout
        for connection, deadline in self.receiving.items():
            if connection.body_paused():
                # the server is not reading: the client cannot be behind, and gets a full grace
                if deadline < fresh:
                    self.receiving[connection] = fresh
            elif deadline <= now:
                expired.append(connection)
        for connection in expired:
            connection.cut_slow_body()

    def protocol(self) -> type[GuardedHttpProtocol]:
        """uvicorn's ``http=`` class, bound to this guard."""

        class BoundGuardedHttpProtocol(GuardedHttpProtocol):
            pass

        BoundGuardedHttpProtocol.guard = self
        return BoundGuardedHttpProtocol


def _refusal(cap: int) -> bytes:
    body = msgspec.json.encode(
        {
            "success": False,
            "error": f"The server has too many open connections (at most {cap}); retry shortly",
            "code": QueueFull.code,
            "details": {"maxConnections": cap},
        }
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "retry-after: 1\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _too_slow(rate: float, grace: float) -> bytes:
    body = msgspec.json.encode(
        {
            "success": False,
            "error": (
                f"The request body arrived too slowly: after {grace:g} s it must average at least"
                f" {rate:g} bytes a second, with no pause over {grace:g} s"
            ),
            "code": "REQUEST_TIMEOUT",
            "details": {"minBytesPerSecond": rate, "maxPauseSeconds": grace},
        }
    )
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header and body deadlines and the connection cap.

    Cooperates with uvicorn's keep-alive timer rather than replacing it: uvicorn cancels that
    timer on any byte received, the header deadline is cancelled only when headers complete.
    """

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.guard
        while guard.open(self.connections) > guard.cap:
            if guard.evict_oldest_waiting():
                continue
            if not guard.evict_slowest_receiving(self.loop.time()):
                self._refuse(guard.refusal)
                return
        self._wait_for_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self._stop_receiving()
        self.guard.closing.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # read and dropped, so that closing does not reset the connection
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._stop_waiting()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self.guard.receive(self, self.loop.time())

    def on_body(self, body: bytes) -> None:
        self.guard.received(self, len(body), self.loop.time())
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._stop_receiving()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        idle = not self.pipeline
        if self.cycle is None or self.cycle.response_complete:
            # what is left of the body is read and dropped, within the next headers' deadline
            self._stop_receiving()
        super().on_response_complete()
        if idle and not self.transport.is_closing():
            self._wait_for_headers()

    def handle_websocket_upgrade(self) -> None:
        guard = self.guard
        sockets = sum(1 for c in self.connections if not isinstance(c, HttpToolsProtocol))
        if sockets >= guard.socket_cap:
            self._refuse(guard.refusal)
            return
        super().handle_websocket_upgrade()

    def close_waiting(self) -> None:
        """Close this connection, which has not sent a request's headers in time or is evicted."""
        self._stop_waiting()
        if not self.transport.is_closing():
            self.guard.closing.add(self)
            self.transport.close()

    def body_paused(self) -> bool:
        """Whether the server, not the client, holds the body up: reading is paused (the
        application has not asked for more) or ``100 Continue`` has not been sent yet."""
        cycle = self.cycle
        waiting_to_continue = cycle is not None and cycle.waiting_for_100_continue
        return waiting_to_continue or not self.transport.is_reading()

    def cut_slow_body(self) -> None:
        """408 ``REQUEST_TIMEOUT`` for a request whose body arrives too slowly, or only closing
        the connection if a response has begun; the application sees the client disconnect."""
        self._stop_receiving()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        answer = cycle is not None and not cycle.response_started and not self.pipeline
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # receive() says http.disconnect, send() drops the answer
            cycle.message_event.set()
        if answer:
            self.flow.resume_reading()  # the rest is read and dropped while the 408 leaves
            self._refuse(self.guard.too_slow)
        else:
            self.close_waiting()

    def _wait_for_headers(self) -> None:
        self.guard.wait(self, self.loop)

    def _stop_waiting(self) -> None:
        self.guard.waiting.pop(self, None)

    def _stop_receiving(self) -> None:
        self.guard.receiving.pop(self, None)

    def _refuse(self, answer: bytes) -> None:
        """``answer`` (503 ``QUEUE_FULL``, 408) at once; the rest of the request is read and
        dropped for a moment, then the connection closed."""
        self._stop_waiting()
        self._stop_receiving()
        self._refused = True
        guard = self.guard
        guard.closing.add(self)
        self.transport.write(answer)
        if len(guard.closing) > _MAX_LINGERING or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.loop.call_later(_LINGER, self.transport.close)


# --- the server ------------------------------------------------------------------------------------


class CannotListen(Exception):
    """The server cannot listen where it is told to (the message is one line for the user)."""


_LISTEN_HINTS = {
    errno.EADDRINUSE: "address already in use (is another imagestudio running? --port chooses another)",
    errno.EACCES: "permission denied (ports below 1024 need privileges; --port chooses another)",
    errno.EADDRNOTAVAIL: "this machine has no such address (--host names one of its own)",
}


def check_listen(host: str, port: int) -> None:
    """Bind every address ``host`` resolves to, on ``port``, as uvicorn will (address reuse on,
    IPv6 sockets IPv6-only), and let go: ``CannotListen`` now, before the application starts,
    rather than uvicorn's ``[Errno 98]`` after its startup is complete."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise CannotListen(f"cannot listen on {where}: {error.strerror} (--host)") from error
    for family, kind, proto, _, address in dict.fromkeys(found):
        try:
            probe = socket.socket(family, kind, proto)
        except OSError:
            continue  # a family this system lacks: asyncio skips it too
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as error:
                reason = _LISTEN_HINTS.get(error.errno or 0, error.strerror or str(error))
                raise CannotListen(f"cannot listen on {where}: {reason}") from error


def serve(app: Any, config: Config) -> int:
    """Run ``app`` under uvicorn with the limits above until the process is told to stop; the exit
    status: 0, or uvicorn's 3 when the server could not start (e.g. the port is taken)."""
    proxies = trusted_proxies(config.trusted_proxies)
    descriptors = raise_descriptor_limit()
    cap = connection_cap(config.max_connections, descriptors.soft if descriptors else None)
    if config.max_connections is not None and cap < config.max_connections:
        log.warning(
            "connection cap lowered to fit the descriptor limit",
            configured=config.max_connections,
            cap=cap,
            descriptor_limit=descriptors.soft if descriptors else None,
        )
    guard = ConnectionGuard(cap=cap, header_timeout=config.header_timeout, min_body_rate=config.min_body_rate)
    log.info(
        "connection limits",
        max_connections=cap,
        max_websockets=guard.socket_cap,
        header_timeout=config.header_timeout,
        min_body_rate=config.min_body_rate,
        descriptor_limit=descriptors.soft if descriptors else None,
        descriptor_limit_at_start=descriptors.before if descriptors else None,
        trusted_proxies=proxies or None,
    )
    server_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        http=guard.protocol(),
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        log_config=None,
        log_level=config.log_level,
        # One line per request costs about a third of a small request's time (BENCHMARKS.md, P4);
        # generations log their own events, so the access log is kept for debugging.
        access_log=config.log_level == "debug",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(server_config)
    server.run()
    return 0 if server.started else STARTUP_FAILURE
