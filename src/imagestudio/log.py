"""structlog, configured once: a console renderer on a terminal, JSON lines otherwise.

A redaction processor removes secrets (the Runware key, tokens) from every event, whatever
key they were logged under and however they were encoded, and drops authorization headers
outright.
"""

from __future__ import annotations

import base64
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

__all__ = ["Redactor", "configure_logging"]

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
