"""The ``imagestudio`` command: ``serve`` the API; ``generate``, ``image-to-image`` and ``upscale``
in-process, with a progress bar; ``db`` to upgrade the database schema (``db upgrade``) and show
where it stands (``db current``); ``doctor`` to check (and ``--repair``) that the history and the
image files agree.

Exit status: 0 done; 1 the studio refused or failed (its code and message, one line); 2 a bad
command line, setting or start-up condition (one line naming what was wrong); 130 Ctrl-C
(``cli/interrupts.py``: the first cancels cleanly, a second exits at once).

Importing this package loads only the Ctrl-C handling: :func:`main` installs the handler first
and imports everything else after it, so a Ctrl-C while the command loads is handled too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from imagestudio.cli.interrupts import EXIT_INTERRUPTED, Interrupts

if TYPE_CHECKING:
    import argparse

    from imagestudio.cli.doctor import doctor_report
    from imagestudio.cli.progress import ProgressBar

__all__ = ["ProgressBar", "doctor_report", "main"]

Command = Callable[["argparse.Namespace", Interrupts], int]


def __getattr__(name: str) -> object:
    """``ProgressBar`` and ``doctor_report``, imported when first asked for."""
    if name == "ProgressBar":
        from imagestudio.cli.progress import ProgressBar

        return ProgressBar
    if name == "doctor_report":
        from imagestudio.cli.doctor import doctor_report

        return doctor_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _parser() -> argparse.ArgumentParser:
    import argparse

    from imagestudio._version import __version__

    parser = argparse.ArgumentParser(prog="imagestudio", description="Local-first image studio backend.")
    parser.add_argument("--version", action="version", version=f"imagestudio {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="start the REST + WebSocket server")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument(
        "--data-dir", default=None, help="folder for the database and images (IMAGESTUDIO_DATA_DIR)"
    )
    serve.add_argument(
        "--role",
        choices=("all", "api"),
        default=None,
        help="with PostgreSQL: 'api' only takes requests, leaving the jobs to workers (default all)",
    )
    _storage_root_flag(serve)

    work = commands.add_parser(
        "worker", help="run the shared queue's jobs (a team on PostgreSQL; no HTTP), until SIGTERM"
    )
    work.add_argument("--concurrency", type=int, default=None, help="jobs at once (IMAGESTUDIO_MAX_RUNNING)")
    work.add_argument(
        "--data-dir", default=None, help="folder for the database and images (IMAGESTUDIO_DATA_DIR)"
    )
    _storage_root_flag(work)

    generate = commands.add_parser(
        "generate",
        help="make an image (or --count of them) from a prompt, in-process, with a progress bar"
        " (Ctrl-C cancels)",
    )
    generate.add_argument("prompt")
    _diffusion_flags(generate)
    _output_flags(generate)

    transform = commands.add_parser(
        "image-to-image",
        help="transform an image file by a prompt, in-process (the flags of generate, and --strength)",
    )
    transform.add_argument("image", metavar="IMAGE", help="the image file to start from")
    transform.add_argument("prompt")
    transform.add_argument(
        "--strength", type=float, default=None, help="0 keeps the source, 1 replaces it (default 0.7)"
    )
    _diffusion_flags(transform)
    _output_flags(transform)

    enlarge = commands.add_parser("upscale", help="make a larger copy of an image file, in-process")
    enlarge.add_argument("image", metavar="IMAGE", help="the image file to enlarge")
    enlarge.add_argument(
        "--scale", type=int, choices=(2, 3, 4), default=2, help="times each side (default 2)"
    )
    _output_flags(enlarge)

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


def _diffusion_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--negative", dest="negative_prompt", default=None, help="negative prompt")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--cfg-scale", type=float, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument(
        "--count",
        type=int,
        default=1,
        help="how many images, 1 to 8 (default 1): a batch with seeds seed, seed+1, ...;"
        " --out NAME.EXT then writes NAME-1.EXT, NAME-2.EXT, ...",
    )


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None, help="also copy the image to this file")
    parser.add_argument(
        "--data-dir", default=None, help="folder for the database and images (IMAGESTUDIO_DATA_DIR)"
    )
    _storage_root_flag(parser)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv`` (default: the process's arguments) and return its exit status.

    Called without ``argv``, as the program, the Ctrl-C handler stays in place to the end, and a
    command that a Ctrl-C ended ends the process at once, not waiting for work it abandoned (a
    local engine finishing its current step in a thread). Called with ``argv``, in-process, the
    previous handler is put back and the status returned.
    """
    program = argv is None
    with Interrupts.installed(restore=not program) as interrupts:
        status = _run(argv, interrupts)
    if program and interrupts.count:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _run(argv: Sequence[str] | None, interrupts: Interrupts) -> int:
    command: str | None = None
    try:
        from imagestudio.cli.shared import EXIT_USAGE, UsageError, say
        from imagestudio.config import ConfigError
        from imagestudio.domain.errors import StudioError

        try:
            args = _parser().parse_args(argv)
            command = args.command
            return _command(args)(args, interrupts)
        except ConfigError as error:
            say(f"imagestudio: configuration error: {error}")
            return EXIT_USAGE
        except UsageError as error:
            say(f"imagestudio {command}: {error}")
            return EXIT_USAGE
        except StudioError as error:  # e.g. a database that is unreachable or newer than this code
            say(f"imagestudio: {error.code}: {error.message}")
            return 1
    except KeyboardInterrupt:  # a Ctrl-C in a phase that stops by unwinding
        if command not in ("serve", "worker"):  # a server stopped by Ctrl-C says so in its log
            interrupts.say_cancelled()
        return EXIT_INTERRUPTED


def _command(args: argparse.Namespace) -> Command:
    if args.command == "serve":
        from imagestudio.cli.serve import serve

        return serve
    if args.command == "worker":
        from imagestudio.cli.worker import worker

        return worker
    if args.command == "db":
        from imagestudio.cli.database import db

        return db
    if args.command == "doctor":
        from imagestudio.cli.doctor import doctor

        return doctor
    from imagestudio.cli import generating

    commands: dict[str, Command] = {
        "generate": generating.generate,
        "image-to-image": generating.image_to_image,
        "upscale": generating.upscale,
    }
    return commands[args.command]
