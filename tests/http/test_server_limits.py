"""The server process's limits as values: the connection cap, the trusted proxies, the descriptor limit.

The behaviour over real sockets is in ``tests/e2e/test_connections.py`` and ``test_proxies.py``.
"""

from __future__ import annotations

import pytest

from imagestudio.config import ConfigError
from imagestudio.http.server import (
    DEFAULT_MAX_CONNECTIONS,
    ConnectionGuard,
    connection_cap,
    raise_descriptor_limit,
    trusted_proxies,
)


@pytest.mark.parametrize(
    ("configured", "descriptors", "cap"),
    [
        (None, None, DEFAULT_MAX_CONNECTIONS),  # no descriptor limit to respect (not POSIX)
        (None, 1_048_576, DEFAULT_MAX_CONNECTIONS),
        (None, 1024, 512),  # the reserve is 512 descriptors...
        (None, 300, 150),  # ...or half the limit when that is less
        (50, 1024, 50),
        (100_000, 20_000, 19_488),  # a configured cap never goes past the descriptors
        (None, 1, 1),
    ],
)
def test_the_connection_cap_stays_below_the_descriptor_limit(
    configured: int | None, descriptors: int | None, cap: int
) -> None:
    assert connection_cap(configured, descriptors) == cap


def test_trusted_proxies_are_addresses_or_networks_normalised() -> None:
    assert trusted_proxies(("127.0.0.1", "10.0.0.0/8", "::1", "192.168.1.7/32", "10.1.2.3/8")) == [
        "127.0.0.1",
        "10.0.0.0/8",
        "::1",
        "192.168.1.7",
        "10.0.0.0/8",
    ]
    assert trusted_proxies(()) == []


@pytest.mark.parametrize("entry", ["*", "localhost", "proxy.example", "10.0.0.0/33", "unix:/run/proxy"])
def test_a_trusted_proxy_that_is_not_an_address_is_a_config_error(entry: str) -> None:
    with pytest.raises(ConfigError, match="IMAGESTUDIO_TRUSTED_PROXIES") as error:
        trusted_proxies(("127.0.0.1", entry))
    assert repr(entry) in str(error.value)


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        found = raise_descriptor_limit()
        assert found is not None
        assert found.before == lowered
        assert found.soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert found.soft > lowered or hard == lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_websockets_get_half_the_cap() -> None:
    assert ConnectionGuard(cap=50, header_timeout=1).socket_cap == 25
    assert ConnectionGuard(cap=1, header_timeout=1).socket_cap == 1
    with pytest.raises(ValueError, match="header timeout"):
        ConnectionGuard(cap=10, header_timeout=0)
