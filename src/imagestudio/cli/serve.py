"""``imagestudio serve``: the REST + WebSocket server, started only once everything it needs is
known to be there (settings, the data dir, the address to listen on, the database schema)."""

from __future__ import annotations

import argparse

from imagestudio.cli.database import upgrade_database
from imagestudio.cli.interrupts import Interrupts
from imagestudio.cli.shared import EXIT_USAGE, check_data_dir, load_config, say

__all__ = ["serve"]


def serve(args: argparse.Namespace, interrupts: Interrupts) -> int:
    from imagestudio.http.app import create_app
    from imagestudio.http.server import CannotListen, check_listen, trusted_proxies
    from imagestudio.http.server import serve as run_server
    from imagestudio.log import configure_logging

    interrupts.farewell = None  # a server stopped by Ctrl-C says so in its log
    config = load_config(args, host=args.host, port=args.port, role=args.role)
    trusted_proxies(config.trusted_proxies)  # a bad entry is one line, before anything starts
    check_data_dir(config, args, create=True)
    try:
        check_listen(config.host, config.port)
    except CannotListen as error:
        say(f"imagestudio: {error}")
        return EXIT_USAGE
    configure_logging(fmt=config.log_format, level=config.log_level, secrets=config.secrets)
    upgrade_database(config, interrupts)  # before the server: a refused database is one clean line
    return run_server(create_app(config), config)
