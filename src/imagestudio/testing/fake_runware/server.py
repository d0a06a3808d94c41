"""A fake Runware REST server that accepts exactly what Runware's schemas accept, and its launcher.

It is a small ASGI app served by uvicorn. Tests run it in-process::

    with FakeRunware.running(api_key="k") as fake:
        ...  # point the adapter at fake.url; read fake.billed; fake.inject(Fault.UNAVAILABLE, times=3)

and offline development runs it as a process (:mod:`.cli`). :class:`FakeRunware` is the top of
the package's layers (state, images, tasks, app); this module adds the thread that serves it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from imagestudio.testing.fake_runware.app import _App

__all__ = ["FakeRunware"]


class FakeRunware(_App):
    """A fake Runware: an ASGI app plus the uvicorn server thread that serves it.

    Everything a test reads or sets (``latency``, :meth:`inject`, ``billed``...) is guarded by
    a lock, so tests may change the fake's behaviour while requests are in flight.
    """

    def __repr__(self) -> str:
        return f"FakeRunware(url={self.url!r})"

    def start(self, *, timeout: float = 10.0) -> None:
        """Serve in a background thread; return once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("this fake is already running")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        config = uvicorn.Config(
            self,
            lifespan="off",
            log_config=None,
            log_level="critical",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._socket = listener
        self._stopping.clear()
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name="fake-runware", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake Runware server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving: held (``hang``) requests are released and the thread is joined."""
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    @classmethod
    @contextlib.contextmanager
    def running(cls, *, api_key: str, **options: Any) -> Iterator[FakeRunware]:
        """Start a fake on a free loopback port for the ``with`` block."""
        fake = cls(api_key=api_key, **options)
        fake.start()
        try:
            yield fake
        finally:
            fake.stop()

    def __enter__(self) -> FakeRunware:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
