"""The Host allowlist: which ``Host`` header values name this server (CONTRACT.md section 11).

A request whose ``Host`` is not a name of this server is refused first (DNS rebinding: a page
whose host name was rebound to 127.0.0.1 is "same-origin" to the browser, but its requests
carry its own host name); :class:`ShellGuard` (``http/security.py``) applies the verdict.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from litestar.types import Scope

from imagestudio.config import ConfigError

__all__ = ["HostAllowlist"]

_HOST = re.compile(r"(?:\[([0-9a-f:.]+)\]|([a-z0-9_-]+(?:\.[a-z0-9_-]+)*)\.?)(?::[0-9]{0,5})?")
_MAX_REMEMBERED_HOSTS = 256


def _host_name(value: str) -> str | None:
    """The name in a ``Host`` value, lower case, without port or trailing dot (IPv6 literals in
    brackets, in their compressed form); ``None`` if it is not a host name or address."""
    match = _HOST.fullmatch(value.strip().lower())
    if match is None:
        return None
    literal, name = match.groups()
    if literal is None:
        return str(name)
    try:
        return f"[{ipaddress.IPv6Address(literal).compressed}]"
    except ValueError:
        return None


def _is_loopback_name(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


class HostAllowlist:
    """The ``Host`` names this server answers to (CONTRACT.md section 11), with any port:

    - loopback names: ``localhost``, ``127.0.0.1`` and every other ``127.x.y.z``, ``[::1]``;
    - the address it was told to bind (``--host``), unless that is a wildcard (``0.0.0.0``,
      ``::``), which names no host;
    - the names in ``IMAGESTUDIO_ALLOWED_HOSTS``: exact names or addresses, case-insensitive;
      ``*.example.com`` allows every name under ``example.com`` (not ``example.com`` itself).

    A request without ``Host`` is refused too, except over HTTP/1.0, which has none. Verdicts on
    recent values are remembered (at most 256), so a request costs one dictionary lookup.
    """

    def __init__(self, bind_host: str = "127.0.0.1", allowed: Iterable[str] = ()) -> None:
        self._names: set[str] = set()
        self._suffixes: list[str] = []
        bind = _host_name(f"[{bind_host}]" if bind_host.count(":") > 1 else bind_host)
        if bind is not None and not _is_unspecified(bind):
            self._names.add(bind)
        for entry in allowed:
            text = entry.strip()
            if text.startswith("*."):
                suffix = _host_name(text[2:])
                if suffix is None or suffix.startswith("["):
                    raise ConfigError(f"IMAGESTUDIO_ALLOWED_HOSTS: {entry!r} is not a host name pattern")
                self._suffixes.append("." + suffix)
                continue
            name = _host_name(f"[{text}]" if text.count(":") > 1 and "[" not in text else text)
            if name is None:
                raise ConfigError(
                    f"IMAGESTUDIO_ALLOWED_HOSTS: {entry!r} is not a host name or address"
                    " (list names such as studio.lan or 192.168.1.20; '*.example.com' for a domain)"
                )
            self._names.add(name)
        self._verdicts: dict[bytes, bool] = {}

    def allows(self, value: bytes | None) -> bool:
        """Whether a request with this ``Host`` header value is served."""
        if value is None:
            return False
        verdict = self._verdicts.get(value)
        if verdict is None:
            verdict = self._decide(value.decode("latin-1"))
            if len(self._verdicts) < _MAX_REMEMBERED_HOSTS:
                self._verdicts[value] = verdict
        return verdict

    def _decide(self, value: str) -> bool:
        name = _host_name(value)
        if name is None:
            return False
        if name in self._names or _is_loopback_name(name):
            return True
        return any(name.endswith(suffix) for suffix in self._suffixes)


def _is_unspecified(name: str) -> bool:
    try:
        return ipaddress.ip_address(name.strip("[]")).is_unspecified
    except ValueError:
        return False


def _host_header(scope: Scope) -> tuple[bytes | None, int]:
    """The ``Host`` value of a request and how many ``Host`` headers it sent."""
    found: bytes | None = None
    count = 0
    for key, value in scope["headers"]:
        if key == b"host" or key.lower() == b"host":
            found = bytes(value)
            count += 1
    return found, count
