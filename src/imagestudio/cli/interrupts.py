"""Ctrl-C on the command line: the first one stops what is going on cleanly, a second exits at once.

What "stop" means depends on the phase, so each phase says it:

- by default the first Ctrl-C raises ``KeyboardInterrupt`` where the main thread is, which
  :func:`imagestudio.cli.main` turns into exit status 130 and one line, never a traceback;
- inside :meth:`Interrupts.deferred` (a schema migration) it is held until the block has ended;
- inside :meth:`Interrupts.calling` it calls the phase's stop function instead: the generating
  commands cancel their task through it, so the engine stops and nothing is stored;
- the second Ctrl-C writes the farewell line and ends the process at once (``os._exit(130)``),
  waiting for nothing: not a local engine's step, a migration or a provider call. What was left
  half done is what a killed process leaves, which the next start (and ``imagestudio doctor``)
  clears up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import NoReturn

__all__ = ["EXIT_INTERRUPTED", "Interrupts"]

EXIT_INTERRUPTED = 130
"""128 + SIGINT, what shells report for a command Ctrl-C ended."""


class Interrupts:
    """The SIGINT handler of one run of the command (see the module's docstring)."""

    def __init__(self) -> None:
        self.count = 0
        """How many Ctrl-C the command has had."""
        self.farewell: str | None = "cancelled"
        """The line a second Ctrl-C leaves on stderr (``None``: none)."""
        self.line_open: Callable[[], bool] = lambda: False
        """Whether stderr's cursor is in the middle of a line (a progress bar's)."""
        self._reactions: list[Callable[[], object] | None] = []
        self._held = False
        self._over = False

    @classmethod
    @contextlib.contextmanager
    def installed(cls, *, restore: bool = True) -> Iterator[Interrupts]:
        """Handle SIGINT while inside (from the main thread only). Afterwards the previous handler
        is put back, or with ``restore=False`` (the program itself) a Ctrl-C ends the process at
        once, without a word: the command has ended and said what it had to."""
        interrupts = cls()
        if threading.current_thread() is not threading.main_thread():
            yield interrupts
            return
        previous = signal.signal(signal.SIGINT, interrupts._handle)
        try:
            yield interrupts
        finally:
            if restore:
                signal.signal(signal.SIGINT, previous)
            else:
                interrupts._over = True

    @contextlib.contextmanager
    def calling(self, stop: Callable[[], object]) -> Iterator[None]:
        """While inside, the first Ctrl-C calls ``stop`` (in the main thread, between two bytecodes
        of whatever runs there: ``stop`` should only schedule, e.g. ``loop.call_soon_threadsafe``)."""
        self._reactions.append(stop)
        try:
            yield
        finally:
            self._reactions.pop()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """While inside, the first Ctrl-C is held; it raises ``KeyboardInterrupt`` once the block
        has ended (unless the block raised something else)."""
        self._reactions.append(None)
        try:
            yield
        finally:
            self._reactions.pop()
        if self._held:
            self._held = False
            raise KeyboardInterrupt

    def say_cancelled(self) -> None:
        """Say ``cancelled`` on stderr, on a line of its own."""
        sys.stderr.write(("\n" if self.line_open() else "") + "cancelled\n")
        sys.stderr.flush()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._over:
            os._exit(EXIT_INTERRUPTED)  # the command has ended and said what it had to
        self.count += 1
        if self.count > 1:
            self._exit_now()
        if not self._reactions:
            raise KeyboardInterrupt
        reaction = self._reactions[-1]
        if reaction is None:
            self._held = True
        else:
            reaction()

    def _exit_now(self) -> NoReturn:
        if self.farewell:
            text = ("\n" if self.line_open() else "") + self.farewell + "\n"
            with contextlib.suppress(OSError):  # stderr closed: nothing to tell
                # os.write, not sys.stderr: the handler may have interrupted a write to it
                os.write(2, text.encode())
        os._exit(EXIT_INTERRUPTED)
