"""``imagestudio db``: bring the database to this version's schema (``upgrade``) and show where it
stands (``current``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from imagestudio.cli.interrupts import Interrupts
from imagestudio.cli.shared import check_data_dir, load_config
from imagestudio.config import Config

__all__ = ["db", "upgrade_database"]


def db(args: argparse.Namespace, interrupts: Interrupts) -> int:
    from imagestudio.adapters.sql import SqlDatabase
    from imagestudio.log import configure_logging

    config = load_config(args)
    configure_logging(fmt=config.log_format, level="warning", secrets=config.secrets)
    if config.database_url is None:  # the data dir holds the SQLite file
        check_data_dir(config, args, create=args.db_command == "upgrade")
    database = SqlDatabase(config.database)
    try:
        if args.db_command == "upgrade":
            before = database.schema_state() if _exists(config.database) else None
            revision = upgrade_database(config, interrupts)
            was = "" if before is None or before.up_to_date else f" (was: {before.describe()})"
            print(f"{database.safe_url}: at revision {revision}, up to date{was}")
            return 0
        if not _exists(config.database):
            print(f"{database.safe_url}: no database yet; `imagestudio db upgrade` or the server creates it")
            return 0
        print(f"{database.safe_url}: {database.schema_state().describe()}")
        return 0
    finally:
        database.dispose()


def upgrade_database(config: Config, interrupts: Interrupts) -> str:
    """Apply the migrations this version ships; a Ctrl-C meanwhile takes effect once they are done."""
    from imagestudio.adapters.sql import SqlDatabase

    config.data_dir.mkdir(parents=True, exist_ok=True)
    database = SqlDatabase(config.database)
    try:
        with interrupts.deferred():
            return database.upgrade_schema()
    finally:
        database.dispose()


def _exists(url: str) -> bool:
    """False only for a SQLite file that is not there yet (other databases are servers)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return True
    return Path(parsed.database).exists()
