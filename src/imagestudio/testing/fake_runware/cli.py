"""``python -m imagestudio.testing.fake_runware``: a fake Runware as a process, for offline work.

    python -m imagestudio.testing.fake_runware --port 9999 --api-key KEY [--latency 1] [--fault 503=2]

(``--port 0`` picks a free port; the first line printed names the endpoint; the key may come
from ``RUNWARE_API_KEY`` instead of the command line.)
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Sequence

from imagestudio.testing.fake_runware.faults import Fault
from imagestudio.testing.fake_runware.server import FakeRunware

__all__ = ["main"]


def _fault_option(text: str) -> tuple[Fault, int | None]:
    name, _, times = text.partition("=")
    try:
        fault = Fault(name)
        count = int(times) if times else None
    except ValueError as error:
        choices = ", ".join(fault.value for fault in Fault)
        raise argparse.ArgumentTypeError(f"expected NAME[=TIMES] with NAME one of: {choices}") from error
    if count is not None and count < 1:
        raise argparse.ArgumentTypeError("TIMES must be at least 1")
    return fault, count


def main(argv: Sequence[str] | None = None) -> None:
    """Run a fake Runware until interrupted; prints its endpoint URL on the first line."""
    parser = argparse.ArgumentParser(
        prog="python -m imagestudio.testing.fake_runware",
        description="A fake Runware REST server for offline use.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=9999, help="port to bind; 0 picks a free one (default 9999)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("RUNWARE_API_KEY") or None,
        help="the only API key the fake accepts (default: $RUNWARE_API_KEY)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before every answer")
    parser.add_argument(
        "--fault",
        type=_fault_option,
        action="append",
        default=[],
        metavar="NAME[=TIMES]",
        help=f"misbehave (repeatable); NAME is one of: {', '.join(fault.value for fault in Fault)}",
    )
    options = parser.parse_args(argv)
    if not options.api_key:
        parser.error("an API key is required: pass --api-key or set RUNWARE_API_KEY")
    fake = FakeRunware(api_key=options.api_key, host=options.host, port=options.port, latency=options.latency)
    for fault, times in options.fault:
        fake.inject(fault, times)
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    try:
        fake.start()
    except OSError as error:
        parser.exit(1, f"cannot listen on {options.host}:{options.port}: {error.strerror}\n")
    print(f"Fake Runware listening on {fake.url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        fake.stop()
