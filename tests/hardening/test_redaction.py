"""The log redactor: a secret never reaches a log line, in any encoding, through either logger.

Logging is configured as the server configures it and the rendered lines are read back from the
process's stderr.
"""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote

import pytest
import structlog

from imagestudio.log import Redactor, configure_logging

TOKEN = "log~token.5f1c2a9e-7b3d_4c6a"  # noqa: S105 - made up
RUNWARE_KEY = "rw-key-0123456789abcdefXYZ"


def _encodings(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        quote(secret, safe=""),
        secret.replace("~", "%7e"),
        "".join(f"%{byte:02X}" for byte in raw),
        "".join(f"%{byte:02x}" for byte in raw),
        quote(quote(secret, safe=""), safe=""),
        "".join(f"\\u{byte:04x}" for byte in raw),
        base64.b64encode(raw).decode(),
        base64.b64encode(b"user:" + raw).decode(),
        base64.b64encode(b"ab:" + raw + b"!").decode(),
        base64.urlsafe_b64encode(b"x" + raw).decode(),
    ]


def _leaks(line: str, secret: str) -> list[str]:
    core = base64.b64encode(secret.encode()).decode()[2:-4]
    return [shown for shown in [secret, quote(secret, safe=""), core] if shown.lower() in line.lower()]


@pytest.mark.parametrize("secret", [TOKEN, RUNWARE_KEY])
def test_no_encoding_of_a_secret_reaches_a_log_line(secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json", level="debug", secrets=[TOKEN, RUNWARE_KEY])
    log = structlog.get_logger("test")
    uvicorn = logging.getLogger("tests.as_uvicorn")  # a standard library logger, as uvicorn's are
    for encoded in _encodings(secret):
        log.info("request", url=f"/ws/generation?token={encoded}", nested={"header": [("x-auth", encoded)]})
        log.info(f"inline {encoded} text")
        uvicorn.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", f"/ws/generation?token={encoded}")
        log.info("an error", error=ValueError(f"Basic {encoded}"))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 * len(_encodings(secret))
    for line in lines:
        json.loads(line)
        assert "[redacted]" in line
        assert _leaks(line, secret) == [], line


def test_text_without_a_secret_is_left_as_it_was() -> None:
    redactor = Redactor([TOKEN])
    for text in [
        "GET /api/history?limit=50 HTTP/1.1",
        "a" * 100_000,
        "data:image/png;base64," + "QUJD" * 10_000,
    ]:
        assert redactor.redact(text) == text
    event = redactor(
        None, "info", {"event": "x", "count": 3, "items": [1, "two"], "authorization": "Bearer x"}
    )
    assert event == {"event": "x", "count": 3, "items": [1, "two"], "authorization": "[redacted]"}
