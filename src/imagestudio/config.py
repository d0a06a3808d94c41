"""Configuration: environment variables and command-line flags (CONTRACT.md section 1).

A flag wins over its variable. Nothing reads the environment at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

__all__ = ["DEFAULT_CORS_ORIGINS", "Config", "ConfigError", "Secret"]

DEFAULT_CORS_ORIGINS = ("http://localhost:*", "http://127.0.0.1:*", "null")
DEFAULT_RUNWARE_URL = "https://api.runware.ai/v1"
Engine = Literal["local", "runware"]


class ConfigError(ValueError):
    """A setting has a value the server cannot run with."""


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything the composition root needs to build the server."""

    data_dir: Path = field(default_factory=Path.cwd)
    database_url: str | None = None
    engine: Engine = "local"
    runware_api_key: Secret | None = None
    runware_api_url: str = DEFAULT_RUNWARE_URL
    runware_timeout: float = 120.0
    cors_origins: tuple[str, ...] = DEFAULT_CORS_ORIGINS
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_size: int = 32 * 1024 * 1024
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "info"
    max_running: int | None = None
    """Generations running at once (default: CPU count for the local engine, 64 for Runware)."""
    max_queued: int = 100
    """Generations that may wait for a free slot before new ones are refused (503 QUEUE_FULL)."""
    shutdown_grace: float = 10.0
    """Seconds running generations get to finish when the server stops."""

    def __post_init__(self) -> None:
        if self.engine not in ("local", "runware"):
            raise ConfigError(f"IMAGESTUDIO_ENGINE must be 'local' or 'runware', not {self.engine!r}")
        if self.engine == "runware" and self.runware_api_key is None:
            raise ConfigError("IMAGESTUDIO_ENGINE=runware needs RUNWARE_API_KEY")
        if not self.runware_timeout > 0:
            raise ConfigError("RUNWARE_TIMEOUT must be a positive number of seconds")
        if not 0 <= self.port <= 65535:
            raise ConfigError("port must be between 0 and 65535")
        if self.max_running is not None and self.max_running < 1:
            raise ConfigError("IMAGESTUDIO_MAX_RUNNING must be at least 1")
        if self.max_queued < 0:
            raise ConfigError("IMAGESTUDIO_MAX_QUEUED must be 0 or more")

    @property
    def database(self) -> str:
        """The SQLAlchemy URL in force (default: SQLite file ``imagestudio.db`` in the data dir)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'imagestudio.db'}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Read the environment; keyword ``overrides`` (the CLI's flags) win when not ``None``."""
        env = os.environ if env is None else env
        key = env.get("RUNWARE_API_KEY", "").strip()
        values: dict[str, Any] = {
            "data_dir": Path(env.get("IMAGESTUDIO_DATA_DIR") or Path.cwd()),
            "database_url": env.get("IMAGESTUDIO_DATABASE_URL") or None,
            "runware_api_key": Secret(key) if key else None,
            "runware_api_url": env.get("RUNWARE_API_URL") or DEFAULT_RUNWARE_URL,
            "runware_timeout": _number(env, "RUNWARE_TIMEOUT", 120.0),
            "cors_origins": _origins(env.get("IMAGESTUDIO_CORS_ORIGINS")),
            "log_format": env.get("IMAGESTUDIO_LOG_FORMAT", "auto"),
            "log_level": env.get("IMAGESTUDIO_LOG_LEVEL", "info"),
            "max_running": _integer(env, "IMAGESTUDIO_MAX_RUNNING"),
            "max_queued": _integer(env, "IMAGESTUDIO_MAX_QUEUED", 100),
            "shutdown_grace": _number(env, "IMAGESTUDIO_SHUTDOWN_GRACE", 10.0),
        }
        engine = (env.get("IMAGESTUDIO_ENGINE") or "").strip().lower()
        values["engine"] = engine or ("runware" if key else "local")
        values.update({name: value for name, value in overrides.items() if value is not None})
        values["data_dir"] = Path(values["data_dir"]).expanduser().resolve()
        if values["log_format"] not in ("auto", "json", "console"):
            raise ConfigError("IMAGESTUDIO_LOG_FORMAT must be auto, json or console")
        return cls(**values)

    def with_(self, **changes: Any) -> Config:
        return replace(self, **changes)


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError as error:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from error


def _integer(env: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from error


def _origins(raw: str | None) -> tuple[str, ...]:
    if raw is None or not raw.strip():
        return DEFAULT_CORS_ORIGINS
    return tuple(origin.strip() for origin in raw.split(",") if origin.strip())
