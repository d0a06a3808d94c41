"""The server process's limits as values: the connection cap, the trusted proxies, the descriptor
limit, the body deadline.

The behaviour over real sockets is in ``tests/e2e/test_connections.py`` and ``test_proxies.py``.
"""

from __future__ import annotations

import pytest

from imagestudio.config import DEFAULT_MIN_BODY_RATE, Config, ConfigError
from imagestudio.http.server import (
    DEFAULT_MAX_CONNECTIONS,
    ConnectionGuard,
    body_deadline,
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
    with pytest.raises(ValueError, match="body rate"):
        ConnectionGuard(cap=10, header_timeout=1, min_body_rate=0)


def _deadline_after(chunks: list[tuple[float, int]], *, rate: float = 1000, grace: float = 10) -> float:
    """The body deadline after ``(time, bytes)`` chunks, the headers having arrived at 0."""
    deadline = grace
    for now, size in chunks:
        deadline = body_deadline(deadline, now, size, rate=rate, grace=grace)
    return deadline


def test_a_body_must_average_the_minimum_rate_once_the_grace_has_passed() -> None:
    # a byte every 0.2 s: the deadline stays near the grace, so the body is cut soon after it
    trickle = [(0.2 * tick, 1) for tick in range(1, 100)]
    assert _deadline_after(trickle) < 10.1
    # exactly the minimum rate (1000 B/s) keeps the deadline a full grace ahead, however long
    steady = [(float(second), 1000) for second in range(1, 600)]
    assert _deadline_after(steady) == 599 + 10
    # half the rate falls behind: the deadline is 10 + t/2, passed after 20 s
    half = [(float(second), 500) for second in range(1, 21)]
    assert _deadline_after(half) == 20.0


def test_a_prompt_body_may_pause_for_the_grace_but_no_longer() -> None:
    # 100 kB in the first second buys 100 s at 1000 B/s, yet a pause over the grace still ends it
    deadline = _deadline_after([(0.5, 50_000), (1.0, 50_000)])
    assert deadline == 1.0 + 10


def test_the_minimum_body_rate_is_a_setting_of_at_least_one_byte_a_second() -> None:
    assert Config.from_env({}).min_body_rate == DEFAULT_MIN_BODY_RATE == 64 * 1024
    assert Config.from_env({"IMAGESTUDIO_MIN_BODY_RATE": "1024"}).min_body_rate == 1024
    for value in ("0", "-5"):
        with pytest.raises(ConfigError, match="IMAGESTUDIO_MIN_BODY_RATE must be at least 1"):
            Config.from_env({"IMAGESTUDIO_MIN_BODY_RATE": value})
    with pytest.raises(ConfigError, match="IMAGESTUDIO_MIN_BODY_RATE must be a whole number"):
        Config.from_env({"IMAGESTUDIO_MIN_BODY_RATE": "fast"})
