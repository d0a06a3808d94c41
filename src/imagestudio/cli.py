"""The ``imagestudio`` command: ``serve`` the API, ``generate`` an image in-process, or ``db`` to
upgrade the database schema (``db upgrade``) and show where it stands (``db current``)."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import anyio

from imagestudio._version import __version__
from imagestudio.config import Config, ConfigError
from imagestudio.domain.errors import StudioError
from imagestudio.domain.model import TaskEvent, TaskStatus
from imagestudio.log import configure_logging

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagestudio", description="Local-first image studio backend.")
    parser.add_argument("--version", action="version", version=f"imagestudio {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the REST + WebSocket server")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument(
        "--data-dir", default=None, help="folder for the database and images (IMAGESTUDIO_DATA_DIR)"
    )

    generate = commands.add_parser("generate", help="make one image in-process, with a progress bar")
    generate.add_argument("prompt")
    generate.add_argument("--negative", dest="negative_prompt", default=None, help="negative prompt")
    generate.add_argument("--seed", type=int, default=None)
    generate.add_argument("--width", type=int, default=None)
    generate.add_argument("--height", type=int, default=None)
    generate.add_argument("--steps", type=int, default=None)
    generate.add_argument("--cfg-scale", type=float, default=None)
    generate.add_argument("--model", default=None)
    generate.add_argument("--out", default=None, help="also copy the image to this file")
    generate.add_argument("--data-dir", default=None, help="folder for the database and images")

    db = commands.add_parser("db", help="the database schema (IMAGESTUDIO_DATABASE_URL)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    for name, text in (
        ("upgrade", "apply the migrations this version ships (the server also does, at startup)"),
        ("current", "show the database's schema revision and the newest this version knows"),
    ):
        command = db_commands.add_parser(name, help=text)
        command.add_argument("--data-dir", default=None, help="folder of the default SQLite database")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "db":
            return _db(args)
        return anyio.run(_generate, args)
    except ConfigError as error:
        print(f"imagestudio: configuration error: {error}", file=sys.stderr)
        return 2
    except StudioError as error:  # e.g. a database that is unreachable or newer than this code
        print(f"imagestudio: {error.code}: {error.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from imagestudio.http.app import create_app

    config = Config.from_env(host=args.host, port=args.port, data_dir=args.data_dir)
    secrets = [config.runware_api_key.reveal()] if config.runware_api_key else []
    configure_logging(fmt=config.log_format, level=config.log_level, secrets=secrets)
    _upgrade_database(config)  # before the server: a refused database is one clean line, not a traceback
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_config=None,
        log_level=config.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0


def _upgrade_database(config: Config) -> str:
    from imagestudio.adapters.sql import SqlDatabase

    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = SqlDatabase(config.database)
    try:
        return db.upgrade_schema()
    finally:
        db.dispose()


def _db(args: argparse.Namespace) -> int:
    from imagestudio.adapters.sql import SqlDatabase

    config = Config.from_env(data_dir=args.data_dir)
    configure_logging(fmt=config.log_format, level="warning", secrets=[])
    db = SqlDatabase(config.database)
    try:
        if args.db_command == "upgrade":
            before = db.schema_state() if _exists(config.database) else None
            revision = _upgrade_database(config)
            was = "" if before is None or before.up_to_date else f" (was: {before.describe()})"
            print(f"{db.safe_url}: at revision {revision}, up to date{was}")
            return 0
        if not _exists(config.database):
            print(f"{db.safe_url}: no database yet; `imagestudio db upgrade` or the server creates it")
            return 0
        print(f"{db.safe_url}: {db.schema_state().describe()}")
        return 0
    finally:
        db.dispose()


def _exists(url: str) -> bool:
    """False only for a SQLite file that is not there yet (other databases are servers)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return True
    return Path(parsed.database).exists()


class ProgressBar:
    """A one-line progress bar on a terminal stream."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width

    def __call__(self, event: TaskEvent) -> None:
        filled = int(self.width * event.progress / 100)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {event.progress:3d}% {event.status.value:<10}")
        if event.status in (TaskStatus.COMPLETED, TaskStatus.FAILED):
            self.stream.write("\n")
        self.stream.flush()


async def _generate(args: argparse.Namespace) -> int:
    from imagestudio import Studio

    config = Config.from_env(data_dir=args.data_dir)
    secrets = [config.runware_api_key.reveal()] if config.runware_api_key else []
    configure_logging(fmt=config.log_format, level="warning", secrets=secrets)
    async with Studio.open(config=config) as studio:
        stop = studio.on_event(ProgressBar(sys.stderr))
        try:
            generation = await studio.text_to_image(
                args.prompt,
                negative_prompt=args.negative_prompt,
                width=args.width,
                height=args.height,
                steps=args.steps,
                cfg_scale=args.cfg_scale,
                seed=args.seed,
                model=args.model,
            )
        except StudioError as error:
            print(f"imagestudio: {error.code}: {error.message}", file=sys.stderr)
            return 1
        finally:
            stop()
        path = await studio.file_of(generation)
        if args.out:
            path = await anyio.to_thread.run_sync(_copy, path, args.out)
        print(
            f"generation {generation.id}: {generation.width}x{generation.height}, seed {generation.seed},"
            f" engine {studio.engine}\n{path}"
        )
    return 0


def _copy(source: str, target: str) -> str:
    shutil.copyfile(source, target)
    return str(Path(target).resolve())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
