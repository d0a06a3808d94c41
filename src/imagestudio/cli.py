"""The ``imagestudio`` command: ``serve`` the API, ``generate`` an image in-process, ``db`` to
upgrade the database schema (``db upgrade``) and show where it stands (``db current``), or
``doctor`` to check (and ``--repair``) that the history and the image files agree."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import anyio

from imagestudio._version import __version__
from imagestudio.config import Config, ConfigError
from imagestudio.domain.errors import StudioError
from imagestudio.domain.model import TaskEvent, TaskStatus
from imagestudio.log import configure_logging

if TYPE_CHECKING:
    from imagestudio.domain.doctor import ConsistencyReport

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
    _storage_root_flag(serve)

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
    _storage_root_flag(generate)

    db = commands.add_parser("db", help="the database schema (IMAGESTUDIO_DATABASE_URL)")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    for name, text in (
        ("upgrade", "apply the migrations this version ships (the server also does, at startup)"),
        ("current", "show the database's schema revision and the newest this version knows"),
    ):
        command = db_commands.add_parser(name, help=text)
        command.add_argument("--data-dir", default=None, help="folder of the default SQLite database")

    doctor = commands.add_parser(
        "doctor",
        help="check that every history row has its image file and no leftover files remain",
        description="Compare the history with the image files of every storage folder in use. Exit"
        " status: 0 consistent, 1 problems remain, 2 the check could not run.",
    )
    doctor.add_argument(
        "--data-dir", default=None, help="folder for the database and images (IMAGESTUDIO_DATA_DIR)"
    )
    _storage_root_flag(doctor)
    doctor.add_argument(
        "--repair",
        action="store_true",
        help="remove stale temporary files and image files no row names (only inside the storage roots)",
    )
    doctor.add_argument(
        "--prune-missing",
        action="store_true",
        help="with --repair: also delete the history rows whose image file is gone",
    )
    doctor.add_argument(
        "--min-age",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="judge only files older than this (default 120): a running server may still be recording"
        " younger ones; 0 when no server uses the data",
    )
    return parser


def _storage_root_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-root",
        dest="storage_roots",
        action="append",
        default=None,
        metavar="DIR",
        help="a folder the storage folder may lie in, besides the data dir (repeatable; replaces"
        " IMAGESTUDIO_STORAGE_ROOTS)",
    )


def _roots(args: argparse.Namespace) -> tuple[Path, ...] | None:
    return tuple(Path(root) for root in args.storage_roots) if args.storage_roots else None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "doctor":
            return _doctor(args)
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
    from imagestudio.http.app import create_app
    from imagestudio.http.server import serve, trusted_proxies

    config = Config.from_env(
        host=args.host, port=args.port, data_dir=args.data_dir, storage_roots=_roots(args)
    )
    trusted_proxies(config.trusted_proxies)  # a bad entry is one line, before anything starts
    configure_logging(fmt=config.log_format, level=config.log_level, secrets=config.secrets)
    _upgrade_database(config)  # before the server: a refused database is one clean line, not a traceback
    return serve(create_app(config), config)


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


def _doctor(args: argparse.Namespace) -> int:
    if args.prune_missing and not args.repair:
        print(
            "imagestudio doctor: --prune-missing deletes history rows, so it needs --repair", file=sys.stderr
        )
        return 2
    if not 0 <= args.min_age < 10**9:
        print("imagestudio doctor: --min-age must be 0 or more seconds", file=sys.stderr)
        return 2
    config = Config.from_env(data_dir=args.data_dir, storage_roots=_roots(args))
    configure_logging(fmt=config.log_format, level="warning", secrets=[])
    if config.database_url is None and not (config.data_dir / "imagestudio.db").is_file():
        print(f"imagestudio doctor: no database in {config.data_dir} (is --data-dir right?)", file=sys.stderr)
        return 2
    try:
        report = anyio.run(_check_consistency, config, args.repair, args.prune_missing, args.min_age)
    except StudioError as error:
        print(f"imagestudio doctor: {error.code}: {error.message}", file=sys.stderr)
        return 2
    sys.stdout.write(doctor_report(report, min_age=args.min_age))
    return 0 if report.consistent else 1


async def _check_consistency(
    config: Config, repair: bool, prune_missing: bool, min_age: float
) -> ConsistencyReport:
    from imagestudio.bootstrap import consistency_check

    async with consistency_check(config) as check:
        return await check(repair=repair, prune_missing=prune_missing, min_age=dt.timedelta(seconds=min_age))


def doctor_report(report: ConsistencyReport, *, min_age: float) -> str:
    """The readable text of a consistency report."""
    from imagestudio.domain.doctor import Problem

    labels = {
        Problem.MISSING_FILE: "row without its file",
        Problem.UNREFERENCED_FILE: "image no row names",
        Problem.STALE_TEMPORARY: "stale temporary file",
        Problem.UNREADABLE_FILE: "row with unreadable file",
        Problem.MISSING_THUMBNAIL: "row without its thumbnail",
    }
    folders = "folder" if len(report.roots) == 1 else "folders"
    lines = [
        f"Checked {report.rows} history rows and {report.files} image files in {len(report.roots)} {folders}:"
    ]
    lines += [
        f"  {root}{'  (current storage folder)' if root == report.current else ''}" for root in report.roots
    ]
    if report.outside:
        lines.append(
            "Not scanned, outside the storage roots (nothing there is removed; add the folder with"
            " --storage-root or IMAGESTUDIO_STORAGE_ROOTS to check it):"
        )
        refused = "  (current storage folder: new images are refused)"
        lines += [f"  {root}{refused if root == report.current else ''}" for root in report.outside]
    if report.findings:
        lines.append("Found:")
    for finding in report.findings:
        path = Path(finding.image.root) / finding.image.key
        if finding.generation_id is not None:
            what = f"row {finding.generation_id}: {path}"
            made = "made" if finding.problem is Problem.MISSING_THUMBNAIL else "row deleted"
            done = made if finding.repaired else ""
        else:
            what = f"{path} ({finding.size} bytes)"
            done = "removed" if finding.repaired else ""
        extra = "; ".join(text for text in (done, finding.note) if text)
        lines.append(f"  {labels[finding.problem]:<24} {what}{f'  [{extra}]' if extra else ''}")
    if report.recent:
        lines.append(
            f"{len(report.recent)} file(s) without a row are younger than {min_age:g} s and were not judged:"
            " a running server may still be recording them (--min-age 0 judges them)."
        )
    remaining = report.remaining
    if not remaining:
        fixed = len(report.repaired)
        lines.append(
            f"OK: repaired {fixed} problem(s); the history and the files agree."
            if fixed
            else "OK: the history and the files agree."
        )
        return "\n".join(lines) + "\n"
    lines.append(f"{len(remaining)} problem(s) remain.")
    kinds = {f.problem for f in remaining}
    if kinds & {Problem.STALE_TEMPORARY, Problem.UNREFERENCED_FILE}:
        lines.append("  --repair removes stale temporary files and image files no row names.")
    if Problem.MISSING_FILE in kinds:
        lines.append(
            "  --repair --prune-missing deletes the rows whose file is gone (put a moved file back instead"
            " to keep its row)."
        )
    if Problem.MISSING_THUMBNAIL in kinds:
        lines.append("  --repair makes the missing thumbnails from their images.")
    if Problem.UNREADABLE_FILE in kinds:
        lines.append("  an unreadable file is never repaired: check its permissions and the disk.")
    return "\n".join(lines) + "\n"


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

    config = Config.from_env(data_dir=args.data_dir, storage_roots=_roots(args))
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
        if args.out and path is not None:
            path = await anyio.to_thread.run_sync(_copy, path, args.out)
        elif args.out:  # a storage without local files: stream the image into --out
            stream = await studio.open_file(generation)
            try:
                path = await _write_stream(stream.chunks, args.out)
            finally:
                await stream.chunks.aclose()
        print(
            f"generation {generation.id}: {generation.width}x{generation.height}, seed {generation.seed},"
            f" engine {studio.engine}\n{path if path is not None else generation.file_path}"
        )
    return 0


def _copy(source: str, target: str) -> str:
    shutil.copyfile(source, target)
    return str(Path(target).resolve())


async def _write_stream(chunks: AsyncIterator[bytes], target: str) -> str:
    async with await anyio.open_file(target, "wb") as out:
        async for chunk in chunks:
            await out.write(chunk)
    return str(await anyio.Path(target).resolve())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
