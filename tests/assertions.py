"""Assertions shared by the HTTP-level tests."""

from __future__ import annotations

from typing import Any

__all__ = ["assert_error"]


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """``response`` is the spec's error shape with this status and code (and ``details.field``)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str)
    assert body["error"]
    if field is not None:
        assert body["details"]["field"] == field
    return body  # type: ignore[no-any-return]
