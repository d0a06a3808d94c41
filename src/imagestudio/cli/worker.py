"""``imagestudio worker``: a team's worker, running the jobs of the shared queue (no HTTP).

It needs a PostgreSQL database (the queue lives there). It runs until SIGTERM or Ctrl-C, then
stops taking jobs, lets the ones it runs finish for ``IMAGESTUDIO_SHUTDOWN_GRACE`` seconds (the
rest are stopped, as a cancel would) and leaves what is queued to the other workers. A second
Ctrl-C exits at once; the others then mark its unfinished tasks ``INTERRUPTED`` within seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from imagestudio.cli.database import upgrade_database
from imagestudio.cli.interrupts import Interrupts
from imagestudio.cli.shared import check_data_dir, load_config

__all__ = ["worker"]


def worker(args: argparse.Namespace, interrupts: Interrupts) -> int:
    from imagestudio.log import configure_logging

    interrupts.farewell = None  # a worker stopped by Ctrl-C says so in its log
    config = load_config(args, role="worker", max_running=args.concurrency)
    check_data_dir(config, args, create=True)
    configure_logging(fmt=config.log_format, level=config.log_level, secrets=config.secrets)
    upgrade_database(config, interrupts)
    return asyncio.run(_work(config, interrupts))


async def _work(config: object, interrupts: Interrupts) -> int:
    from imagestudio.bootstrap import bootstrap
    from imagestudio.config import Config
    from imagestudio.log import get_logger

    assert isinstance(config, Config)
    log = get_logger("imagestudio.worker")
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    async with bootstrap(config):
        with interrupts.calling(lambda: loop.call_soon_threadsafe(stopping.set)):
            await stopping.wait()
        log.info("worker stopping", grace=config.shutdown_grace)
    log.info("worker stopped")
    return 0
