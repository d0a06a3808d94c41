"""What the commands share: the configuration they run on, the data dir checked before use, one-line
messages on stderr and the command-line error that ends a command with status 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagestudio.config import Config, ConfigError

__all__ = ["EXIT_USAGE", "UsageError", "check_data_dir", "load_config", "say", "soon"]

EXIT_USAGE = 2
"""A bad command line, setting or start-up condition (argparse's status for a bad command line)."""


class UsageError(Exception):
    """A command-line argument the command cannot use (a missing IMAGE file...): one line, exit 2."""


def say(line: str) -> None:
    """One line on stderr."""
    print(line, file=sys.stderr, flush=True)


def soon(action: Callable[[], object]) -> Callable[[], object]:
    """``action``, run by the running event loop as soon as it can: what a signal handler may call
    (``Interrupts.calling(soon(scope.cancel))``)."""
    import asyncio

    loop = asyncio.get_running_loop()
    return lambda: loop.call_soon_threadsafe(action)


def load_config(args: argparse.Namespace, **flags: Any) -> Config:
    """The configuration: the environment, then ``--data-dir``, ``--storage-root`` and ``flags``."""
    roots = getattr(args, "storage_roots", None)
    return Config.from_env(
        data_dir=getattr(args, "data_dir", None),
        storage_roots=tuple(Path(root) for root in roots) if roots else None,
        **flags,
    )


def check_data_dir(config: Config, args: argparse.Namespace, *, create: bool) -> None:
    """Refuse a data dir that is not a folder, and create it when ``create`` (``ConfigError`` naming
    the setting that chose it, e.g. ``--data-dir /tmp/x: is a file, not a folder``)."""
    path = config.data_dir
    setting = _data_dir_setting(args)
    try:
        if path.exists() and not path.is_dir():
            kind = " (it is a file)" if path.is_file() else ""
            raise ConfigError(f"{setting} {path}: is not a folder{kind}")
        if create:
            path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        doing = "cannot create the folder" if create else "cannot look at it"
        raise ConfigError(f"{setting} {path}: {doing}: {error.strerror or error}") from error


def _data_dir_setting(args: argparse.Namespace) -> str:
    if getattr(args, "data_dir", None):
        return "--data-dir"
    if os.environ.get("IMAGESTUDIO_DATA_DIR"):
        return "IMAGESTUDIO_DATA_DIR"
    return "the data dir (the current folder; --data-dir or IMAGESTUDIO_DATA_DIR)"
