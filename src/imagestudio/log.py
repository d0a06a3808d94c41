"""structlog, configured once: a console renderer on a terminal, JSON lines otherwise.

A redaction processor removes secrets (the Runware key, tokens) from every event, whatever
key they were logged under and however they were encoded, and drops authorization headers
outright.

Every module logs through :func:`get_logger`. Until an application configures structlog (the
CLI does, with :func:`configure_logging`), those loggers write through the standard library's
logger of the same name instead of structlog's default (which prints to stdout): a script that
imports ``imagestudio`` hears nothing it did not ask for, and ``logging.basicConfig`` or its own
handlers bring the lines back. Secrets a studio was opened with (:func:`protect`) are redacted on
that path too.
"""

from __future__ import annotations

import base64
import logging
import re
import sys
from collections.abc import Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from imagestudio.domain.model import Generation, Task
    from imagestudio.domain.tasks import Job

__all__ = ["Redactor", "configure_logging", "get_logger", "protect", "task_outcome_logger"]

_SENSITIVE_KEYS = frozenset(
    {"authorization", "api_key", "apikey", "x-api-key", "token", "password", "secret"}
)


_REDACTED = "[redacted]"
_PLAIN = (str, int, float, bool, type(None))
_MIN_BASE64_CORE = 8
_BASE64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_")


def _character(char: str) -> str:
    """A pattern for one character of a secret: itself, or percent-encoded (any hex case, also
    encoded again as ``%25``), or a JSON ``\\u`` escape."""
    code = f"{ord(char):02x}" if ord(char) < 256 else None
    forms = [re.escape(char)]
    if code is not None:
        hex_digits = "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in code)
        forms += [f"%(?:25)*{hex_digits}", f"\\\\+u00{hex_digits}"]  # escaped once or more
    return "(?:" + "|".join(forms) + ")"


def _base64_cores(secret: str) -> list[str]:
    """The text every base64 encoding of ``secret`` contains, wherever it sits in the encoded
    bytes (``Authorization: Basic`` is base64 of ``user:secret``): one core per alignment, without
    the characters its neighbours change; standard and URL-safe alphabets."""
    data = secret.encode()
    cores = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode().rstrip("=")
        lead = (offset * 4 + 2) // 3  # characters that mix in the bytes before the secret
        tail = 1 + (len(encoded) % 4 != 0)  # characters that may mix in the bytes after it
        core = encoded[lead:-tail]
        if len(core) >= _MIN_BASE64_CORE:
            cores += [core, core.replace("+", "-").replace("/", "_")]
    return cores


def _either(patterns: Iterable[str]) -> re.Pattern[str] | None:
    alternatives = list(patterns)
    return re.compile("|".join(alternatives)) if alternatives else None


class Redactor:
    """A structlog processor that masks known secret values and sensitive keys.

    A secret is found however it was written: as itself, percent-encoded in part or whole (``%7E``
    or ``%7e`` for ``~``, as a browser's ``URLSearchParams`` writes a WebSocket's ``?token=``; also
    encoded twice, ``%257E``), as JSON ``\\u`` escapes, or inside base64 (a ``Basic`` credential).
    Values that are not strings are searched as they would be rendered (their ``repr``), in lists,
    tuples and dictionaries too.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(s for s in secrets if s)
        self._pattern = _either("".join(_character(char) for char in secret) for secret in self._secrets)
        self._cores = _either(re.escape(core) for secret in self._secrets for core in _base64_cores(secret))

    def redact(self, text: str) -> str:
        """``text`` with every encoding of every secret replaced by ``[redacted]``."""
        if self._pattern is None:
            return text
        text = self._pattern.sub(_REDACTED, text)
        if self._cores is None or self._cores.search(text) is None:
            return text
        # the whole base64 word around a core goes, so no edge character of the secret is left
        pieces, last = [], 0
        for found in self._cores.finditer(text):
            start, end = found.span()
            if start < last:
                continue
            while start > last and text[start - 1] in _BASE64:
                start -= 1
            while end < len(text) and (text[end] in _BASE64 or text[end] == "="):
                end += 1
            pieces += [text[last:start], _REDACTED]
            last = end
        return "".join([*pieces, text[last:]])

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, dict):
            return {key: self._value(item) for key, item in value.items()}
        if type(value) in (list, tuple):
            return type(value)(self._value(item) for item in value)
        shown = repr(value)
        redacted = self.redact(shown)
        return value if redacted == shown else redacted

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event):
            if key.lower() in _SENSITIVE_KEYS:
                event[key] = _REDACTED
            elif self._pattern is not None:
                event[key] = self._value(event[key])
        return event


def configure_logging(*, fmt: str = "auto", level: str = "info", secrets: Iterable[str] = ()) -> None:
    """Configure structlog and the standard library's root logger (uvicorn logs through it)."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    redactor = Redactor(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redactor, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # The standard library's loggers (uvicorn, httpx) render through the same processors.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                structlog.processors.format_exc_info,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redactor, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("httpx").setLevel(max(numeric, logging.WARNING))
    # procrastinate's job lines carry a job's arguments (a prompt, an input image as base64): our
    # own "generation completed" line says what a user needs; its warnings and errors stay
    logging.getLogger("procrastinate").setLevel(max(numeric, logging.WARNING))
    logging.getLogger("alembic.runtime.plugins").setLevel(max(numeric, logging.WARNING))
    migrations = logging.getLogger("alembic.runtime.migration")
    migrations.filters[:] = [_alembic_preamble]


def _alembic_preamble(record: logging.LogRecord) -> bool:
    """Alembic's "Context impl ..." and "Will assume ... DDL" lines say nothing to a user and come
    once per check (the CLI and the server both check); "Running upgrade" lines stay."""
    return not str(record.msg).startswith(("Context impl", "Will assume"))


_library_secrets: set[str] = set()
_library_redactor = Redactor()


def protect(secrets: Iterable[str]) -> None:
    """Redact ``secrets`` from the lines written while structlog is not configured (a library user's
    process); :func:`configure_logging` takes its own list."""
    global _library_redactor
    fresh = {secret for secret in secrets if secret} - _library_secrets
    if fresh:
        _library_secrets.update(fresh)
        _library_redactor = Redactor(sorted(_library_secrets))


def _redact_library(logger: Any, name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return _library_redactor(logger, name, event)


class _Logger:
    """structlog's logger once structlog is configured; the standard library's before that."""

    __slots__ = ("_context", "_name")

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = context or {}

    def bind(self, **values: Any) -> _Logger:
        return _Logger(self._name, {**self._context, **values})

    def _emit(self, level: str, event: str, values: dict[str, Any]) -> None:
        if structlog.is_configured():
            target: Any = structlog.get_logger(self._name)
        else:
            target = _fallback(self._name)
        getattr(target, level)(event, **self._context, **values)

    def debug(self, event: str, **values: Any) -> None:
        self._emit("debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        self._emit("info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        self._emit("warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        self._emit("error", event, values)


_fallbacks: dict[str, Any] = {}


def _fallback(name: str) -> Any:
    """A structlog logger over the standard library's ``logging.getLogger(name)``."""
    logger = _fallbacks.get(name)
    if logger is None:
        logger = _fallbacks[name] = structlog.wrap_logger(
            logging.getLogger(name),
            processors=[
                _redact_library,
                structlog.processors.format_exc_info,
                structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True),
            ],
            wrapper_class=structlog.stdlib.BoundLogger,
        )
    return logger


def get_logger(name: str) -> _Logger:
    """The logger of module ``name`` (see the module's docstring for where its lines go)."""
    return _Logger(name)


def task_outcome_logger(engine: str) -> Callable[[Task, Job, Generation | None], None]:
    """The task manager's ``on_finished``: one line per generation, whichever way it ended.

    ``generation completed`` (info) with the model and size the engine made; ``generation failed``
    (warning) with the error's code and message; ``generation cancelled`` (info). A batch is one
    line, its first image as ``generation`` and all of them as ``generations``. Each names the
    task, operation and engine, and gives ``seconds`` (from start to end; 0 for a task cancelled
    in the queue) and ``waited`` (seconds queued).
    """
    log = get_logger("imagestudio.generation")

    from imagestudio.domain.model import TaskStatus

    def finished(task: Task, job: Job, generation: Generation | None) -> None:
        ended = task.finished_at or task.created_at
        started = task.started_at or ended
        values: dict[str, Any] = {
            "task": task.id,
            "operation": task.operation.value,
            "engine": engine,
            "model": generation.parameters.model if generation is not None else job.model,
            "seconds": round((ended - started).total_seconds(), 3),
            "waited": round((started - task.created_at).total_seconds(), 3),
        }
        if generation is not None:
            values["size"] = f"{generation.width}x{generation.height}"
            if len(task.generation_ids) > 1:  # a batch: one line, naming every image
                values["generations"] = list(task.generation_ids)
            log.info("generation completed", generation=generation.id, **values)
        elif task.status is TaskStatus.CANCELLED:
            log.info("generation cancelled", **values)
        else:
            log.warning("generation failed", code=task.error_code, error=task.error_message, **values)

    return finished
