"""Configuration: environment variables and command-line flags (CONTRACT.md section 1).

A flag wins over its variable. Nothing reads the environment at import time.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_CORS_ORIGINS",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_QUEUED_BYTES",
    "DEFAULT_MIN_BODY_RATE",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MIN_TOKEN_LENGTH",
    "STORAGE_SECRET_VARIABLES",
    "Config",
    "ConfigError",
    "RateLimit",
    "Secret",
    "is_loopback",
    "parse_rate_limit",
]

DEFAULT_CORS_ORIGINS = ("http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*")
"""Loopback pages only. ``null`` (sandboxed frames on any site, ``file://`` pages) is never a
default: it is accepted only together with ``IMAGESTUDIO_API_TOKEN`` (CONTRACT.md section 11)."""
DEFAULT_MAX_QUEUED_BYTES = 256 * 1024 * 1024
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MIN_BODY_RATE = 64 * 1024
"""Bytes per second a request body must average: a 32 MiB upload may take over eight minutes, a
fraction of what any loopback or LAN client needs, thousands of times what a trickle sends."""
DEFAULT_RUNWARE_URL = "https://api.runware.ai/v1"
DEFAULT_UPSCALE_MODEL = "runware:504@1"
UPSCALE_MODELS = ("runware:500@1", "runware:501@1", "runware:502@1", "runware:503@1", "runware:504@1")
Engine = Literal["local", "runware"]
Role = Literal["all", "api", "worker"]
"""What a process of a team does: ``api`` takes requests, ``worker`` runs queued jobs, ``all`` both
(the default, and the only role a SQLite database allows: one process does everything)."""
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("auto", "json", "console")
MIN_TOKEN_LENGTH = 16
# URL-safe characters only: the token can ride in a WebSocket query string without percent-encoding,
# so the log redactor, which looks for its literal text, always recognises it.
_TOKEN = re.compile(r"[A-Za-z0-9._~-]+")
_RATE = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]*)\s*([a-z]+)\s*", re.IGNORECASE)
_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_PERIODS |= {"d": 86400, "day": 86400}
# An origin as browsers send it: scheme://host[:port], no path; '*' stands for a port or a name part.
_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s]+")
# S3 bucket names: 3 to 63 lower-case letters, digits, dots and hyphens, a letter or digit at each end.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
STORAGE_SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
"""The object store's secrets among the ``AWS_*`` variables obstore reads (kept out of the logs)."""


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


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``requests`` requests per ``period`` seconds from one client address."""

    requests: int
    period: float

    def __str__(self) -> str:
        return f"{self.requests}/{self.period:g}s"


def parse_rate_limit(text: str) -> RateLimit:
    """``100/minute``, ``10/second``, ``1000/hour``, ``5/10s``: a count per period; else ``ConfigError``."""
    match = _RATE.fullmatch(text)
    unit = match.group(3).lower() if match else ""
    unit = unit[:-1] if unit.endswith("s") and unit[:-1] in _PERIODS else unit
    if match is None or unit not in _PERIODS:
        raise ConfigError(
            f"IMAGESTUDIO_RATE_LIMIT must look like 100/minute (second, minute, hour or day), not {text!r}"
        )
    requests = int(match.group(1))
    multiple = int(match.group(2)) if match.group(2) else 1
    if requests < 1 or multiple < 1 or requests > 10**9 or multiple > 10**6:
        raise ConfigError(f"IMAGESTUDIO_RATE_LIMIT must allow at least one request per period, not {text!r}")
    return RateLimit(requests=requests, period=float(multiple * _PERIODS[unit]))


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only.

    ``localhost`` and literal loopback addresses (``127.0.0.0/8``, ``::1``) are; anything else,
    including ``0.0.0.0``, a LAN address or another host name, is not.
    """
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything the composition root needs to build the server."""

    data_dir: Path = field(default_factory=Path.cwd)
    database_url: str | None = None
    engine: Engine = "local"
    runware_api_key: Secret | None = None
    runware_api_url: str = DEFAULT_RUNWARE_URL
    runware_timeout: float = 300.0
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
    api_token: Secret | None = None
    """When set, every ``/api`` route, ``/generated/`` image and the WebSocket require it."""
    rate_limit: RateLimit | None = None
    """Requests one client address may make (``None``: unlimited)."""
    allowed_hosts: tuple[str, ...] = ()
    """``Host`` names answered beyond loopback names and ``host`` (``IMAGESTUDIO_ALLOWED_HOSTS``)."""
    storage_roots: tuple[Path, ...] = ()
    """Folders besides the data dir inside which ``storagePath`` may point
    (``IMAGESTUDIO_STORAGE_ROOTS``, ``--storage-root``); see :attr:`roots`."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses whose ``X-Forwarded-For`` is believed (``IMAGESTUDIO_TRUSTED_PROXIES``); none:
    the socket's peer is the client."""
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    """Bytes of input images that queued and running work may hold (``IMAGESTUDIO_MAX_QUEUED_BYTES``)."""
    max_connections: int | None = None
    """Open connections at once (``IMAGESTUDIO_MAX_CONNECTIONS``; default: from the descriptor limit)."""
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    """Seconds a client has to send a request's headers (``IMAGESTUDIO_HEADER_TIMEOUT``)."""
    upscale_model: str = DEFAULT_UPSCALE_MODEL
    """The Runware upscaler (``IMAGESTUDIO_UPSCALE_MODEL``): one of ``runware:500@1`` to ``504@1``."""
    role: Role = "all"
    """``--role`` of ``serve`` (``api`` or ``all``); ``imagestudio worker`` is ``worker``."""
    min_body_rate: int = DEFAULT_MIN_BODY_RATE
    """Bytes per second a request body must average once ``header_timeout`` has passed, and no
    pause in it may last longer than ``header_timeout`` (``IMAGESTUDIO_MIN_BODY_RATE``)."""
    storage_url: str | None = None
    """``s3://bucket/prefix``: images in an S3-compatible object store (``IMAGESTUDIO_STORAGE_URL``;
    endpoint, region and credentials from the ``AWS_*`` variables); ``None``: folders on this disk."""
    storage_redirect: bool = False
    """Answer an image request with a redirect to a short-lived presigned URL of the object store
    instead of streaming it through the server (``IMAGESTUDIO_STORAGE_REDIRECT``)."""
    storage_secrets: tuple[Secret, ...] = ()
    """The object store's credentials as the environment holds them (for the log redactor only;
    obstore reads them itself)."""

    def __post_init__(self) -> None:
        """Refuse every value the server cannot run with, naming its setting (one line each)."""
        if self.engine not in ("local", "runware"):
            raise ConfigError(f"IMAGESTUDIO_ENGINE must be 'local' or 'runware', not {self.engine!r}")
        if self.engine == "runware" and self.runware_api_key is None:
            raise ConfigError("IMAGESTUDIO_ENGINE=runware needs RUNWARE_API_KEY")
        if not (math.isfinite(self.runware_timeout) and self.runware_timeout > 0):
            raise ConfigError(
                f"RUNWARE_TIMEOUT must be a positive number of seconds, not {self.runware_timeout:g}"
            )
        _check_url("RUNWARE_API_URL", self.runware_api_url)
        if self.database_url is not None:
            _check_database_url(self.database_url)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, not {self.port}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"IMAGESTUDIO_LOG_LEVEL must be {_one_of(LOG_LEVELS)}, not {self.log_level!r}")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(
                f"IMAGESTUDIO_LOG_FORMAT must be {_one_of(LOG_FORMATS)}, not {self.log_format!r}"
            )
        if not (math.isfinite(self.shutdown_grace) and self.shutdown_grace >= 0):
            raise ConfigError(
                f"IMAGESTUDIO_SHUTDOWN_GRACE must be 0 or more seconds, not {self.shutdown_grace:g}"
            )
        for origin in self.cors_origins:
            if origin.strip().lower() != "null" and not _ORIGIN.fullmatch(origin):
                raise ConfigError(
                    f"IMAGESTUDIO_CORS_ORIGINS: {origin!r} is not an origin: scheme://host[:port] without"
                    " a path, e.g. http://localhost:5173 ('*' for any port: http://localhost:*)"
                )
        if self.max_running is not None and self.max_running < 1:
            raise ConfigError(f"IMAGESTUDIO_MAX_RUNNING must be at least 1, not {self.max_running}")
        if self.max_queued < 0:
            raise ConfigError(f"IMAGESTUDIO_MAX_QUEUED must be 0 or more, not {self.max_queued}")
        if self.api_token is not None:
            token = self.api_token.reveal()
            if len(token) < MIN_TOKEN_LENGTH or not _TOKEN.fullmatch(token):
                raise ConfigError(
                    f"IMAGESTUDIO_API_TOKEN must be at least {MIN_TOKEN_LENGTH} characters of letters,"
                    " digits, '-', '_', '.' or '~' (e.g. python -c 'import secrets;"
                    " print(secrets.token_urlsafe(32))')"
                )
        elif not is_loopback(self.host):
            raise ConfigError(
                f"refusing to listen on {self.host!r}, which other machines can reach, without"
                " IMAGESTUDIO_API_TOKEN: set a token, or bind 127.0.0.1 (the default)"
            )
        if "null" in (origin.strip().lower() for origin in self.cors_origins) and self.api_token is None:
            raise ConfigError(
                "IMAGESTUDIO_CORS_ORIGINS lists 'null', the origin of sandboxed frames on any web site:"
                " that needs IMAGESTUDIO_API_TOKEN too (a desktop shell with file:// pages sends the token)"
            )
        if self.max_queued_bytes < 1:
            raise ConfigError(f"IMAGESTUDIO_MAX_QUEUED_BYTES must be at least 1, not {self.max_queued_bytes}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigError(f"IMAGESTUDIO_MAX_CONNECTIONS must be at least 1, not {self.max_connections}")
        if not (math.isfinite(self.header_timeout) and self.header_timeout > 0):
            raise ConfigError("IMAGESTUDIO_HEADER_TIMEOUT must be a positive number of seconds")
        if self.upscale_model not in UPSCALE_MODELS:
            allowed = ", ".join(UPSCALE_MODELS)
            raise ConfigError(
                f"IMAGESTUDIO_UPSCALE_MODEL must be one of {allowed}, not {self.upscale_model!r}"
            )
        if self.rate_limit is not None and not (
            self.rate_limit.requests >= 1
            and math.isfinite(self.rate_limit.period)
            and self.rate_limit.period > 0
        ):
            raise ConfigError("IMAGESTUDIO_RATE_LIMIT must allow at least one request per positive period")
        if self.min_body_rate < 1:
            raise ConfigError("IMAGESTUDIO_MIN_BODY_RATE must be at least 1 (bytes per second)")
        if self.role not in ("all", "api", "worker"):
            raise ConfigError(f"--role must be 'all' or 'api', not {self.role!r}")
        if self.role != "all" and not self.shared:
            what = "imagestudio worker" if self.role == "worker" else f"--role {self.role}"
            raise ConfigError(
                f"{what} needs a PostgreSQL database (IMAGESTUDIO_DATABASE_URL=postgresql://...):"
                " with SQLite one process takes the requests and runs them"
            )
        if self.storage_url is not None:
            _check_storage_url(self.storage_url)
        elif self.storage_redirect:
            raise ConfigError(
                "IMAGESTUDIO_STORAGE_REDIRECT=true needs IMAGESTUDIO_STORAGE_URL: images in a folder"
                " have no URL to redirect to"
            )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value in force (for the log redactor): the Runware key, the API token and
        the object store's credentials."""
        return tuple(
            secret.reveal()
            for secret in (self.runware_api_key, self.api_token, *self.storage_secrets)
            if secret is not None
        )

    @property
    def roots(self) -> tuple[Path, ...]:
        """The storage roots in force: the data dir first, then the configured ones, each resolved
        (symbolic links followed), without repeats."""
        found: list[Path] = []
        for root in (self.data_dir, *self.storage_roots):
            resolved = Path(root).expanduser().resolve()
            if resolved not in found:
                found.append(resolved)
        return tuple(found)

    @property
    def shared(self) -> bool:
        """Whether the database is one several processes share as a team (PostgreSQL): then work
        goes through the shared queue, and any server or worker may run it."""
        return not self.database.startswith("sqlite")

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
        token = env.get("IMAGESTUDIO_API_TOKEN", "").strip()
        rate = env.get("IMAGESTUDIO_RATE_LIMIT", "").strip()
        values: dict[str, Any] = {
            "data_dir": Path(env.get("IMAGESTUDIO_DATA_DIR") or Path.cwd()),
            "database_url": env.get("IMAGESTUDIO_DATABASE_URL") or None,
            "runware_api_key": Secret(key) if key else None,
            "runware_api_url": (env.get("RUNWARE_API_URL") or "").strip() or DEFAULT_RUNWARE_URL,
            "runware_timeout": _number(env, "RUNWARE_TIMEOUT", 300.0),
            "cors_origins": _list(env, "IMAGESTUDIO_CORS_ORIGINS", ",") or DEFAULT_CORS_ORIGINS,
            "log_format": _word(env, "IMAGESTUDIO_LOG_FORMAT", "auto"),
            "log_level": _word(env, "IMAGESTUDIO_LOG_LEVEL", "info"),
            "max_running": _integer(env, "IMAGESTUDIO_MAX_RUNNING"),
            "max_queued": _integer(env, "IMAGESTUDIO_MAX_QUEUED", 100),
            "shutdown_grace": _number(env, "IMAGESTUDIO_SHUTDOWN_GRACE", 10.0),
            "api_token": Secret(token) if token else None,
            "rate_limit": parse_rate_limit(rate) if rate else None,
            "allowed_hosts": _list(env, "IMAGESTUDIO_ALLOWED_HOSTS", ","),
            "storage_roots": tuple(Path(p) for p in _list(env, "IMAGESTUDIO_STORAGE_ROOTS", os.pathsep)),
            "trusted_proxies": _list(env, "IMAGESTUDIO_TRUSTED_PROXIES", ","),
            "max_queued_bytes": _integer(env, "IMAGESTUDIO_MAX_QUEUED_BYTES", DEFAULT_MAX_QUEUED_BYTES),
            "max_connections": _integer(env, "IMAGESTUDIO_MAX_CONNECTIONS"),
            "header_timeout": _number(env, "IMAGESTUDIO_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT),
            "upscale_model": (env.get("IMAGESTUDIO_UPSCALE_MODEL") or "").strip() or DEFAULT_UPSCALE_MODEL,
            "min_body_rate": _integer(env, "IMAGESTUDIO_MIN_BODY_RATE", DEFAULT_MIN_BODY_RATE),
            "storage_url": (env.get("IMAGESTUDIO_STORAGE_URL") or "").strip() or None,
            "storage_redirect": _boolean(env, "IMAGESTUDIO_STORAGE_REDIRECT", default=False),
        }
        if values["storage_url"] is not None:
            values["storage_secrets"] = tuple(
                Secret(env[name].strip())
                for name in STORAGE_SECRET_VARIABLES
                if (env.get(name) or "").strip()
            )
        engine = (env.get("IMAGESTUDIO_ENGINE") or "").strip().lower()
        values["engine"] = engine or ("runware" if key else "local")
        values.update({name: value for name, value in overrides.items() if value is not None})
        values["data_dir"] = Path(values["data_dir"]).expanduser().resolve()
        return cls(**values)


def _one_of(words: tuple[str, ...]) -> str:
    return ", ".join(words[:-1]) + " or " + words[-1]


def _check_url(name: str, url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks the port
    except ValueError as error:
        raise ConfigError(f"{name} must be an http:// or https:// URL, not {url!r}") from error
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http:// or https:// URL, not {url!r}")


def _check_storage_url(url: str) -> None:
    """The form of ``IMAGESTUDIO_STORAGE_URL``, ``s3://bucket[/prefix]``, and that obstore is
    installed. Only the scheme and the bucket's name are ever echoed (the text is the user's)."""
    shape = "IMAGESTUDIO_STORAGE_URL must look like s3://bucket/prefix"
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise ConfigError(shape) from error
    if parts.scheme.lower() != "s3":
        scheme = f"{parts.scheme}://" if parts.scheme else "a path"
        raise ConfigError(f"{shape} (an S3-compatible object store), not {scheme}")
    if "@" in parts.netloc or ":" in parts.netloc:
        raise ConfigError(
            f"{shape}, without credentials or a port: they go in AWS_ACCESS_KEY_ID,"
            " AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL"
        )
    if not _BUCKET.fullmatch(parts.netloc) or ".." in parts.netloc:
        raise ConfigError(
            f"{shape}: {parts.netloc!r} is not a bucket name (3 to 63 lower-case letters, digits, '.' or '-')"
        )
    if parts.query or parts.fragment or "\\" in parts.path:
        raise ConfigError(f"{shape}, without a query, a fragment or backslashes")
    segments = [segment for segment in parts.path.split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        raise ConfigError(f"{shape}: the prefix may not hold '.' or '..' parts")
    if importlib.util.find_spec("obstore") is None:
        raise ConfigError(
            "IMAGESTUDIO_STORAGE_URL needs the object store client: pip install 'imagestudio[team]'"
        )


_DATABASE_URL = re.compile(r"([A-Za-z][A-Za-z0-9]*)(?:\+[A-Za-z0-9_]+)?://")


def _check_database_url(url: str) -> None:
    """The form of ``IMAGESTUDIO_DATABASE_URL`` (the value itself is never echoed: it may hold a
    password); the SQL adapter checks it again, for a library caller that builds one itself."""
    match = _DATABASE_URL.match(url)
    if match is None:
        raise ConfigError(
            "IMAGESTUDIO_DATABASE_URL is not a database URL: sqlite:///PATH or postgresql://USER@HOST/NAME"
        )
    if match.group(1).lower() not in ("sqlite", "postgresql", "postgres"):
        raise ConfigError(
            f"IMAGESTUDIO_DATABASE_URL: imagestudio runs on SQLite or PostgreSQL, not {match.group(1)}"
        )


def _word(env: Mapping[str, str], name: str, default: str) -> str:
    """A keyword setting, any case, spaces around it ignored; unset or blank: ``default``."""
    return (env.get(name) or "").strip().lower() or default


def _boolean(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    """A yes/no setting: true/false, yes/no, on/off or 1/0 in any case; unset or blank: ``default``."""
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, not {env.get(name)!r}")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError as error:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from error
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, not {raw!r}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError as error:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from error


def _list(env: Mapping[str, str], name: str, separator: str) -> tuple[str, ...]:
    """The entries of a list setting (unset or blank: none); text with no entry in it, such as a
    lone separator, is refused rather than read as an empty list."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return ()
    items = tuple(item.strip() for item in raw.split(separator) if item.strip())
    if not items:
        raise ConfigError(f"{name} lists nothing: {raw!r} (leave it unset for the default)")
    return items
