"""Failed logins back off per client address (never an account lock), with bounded memory."""

from __future__ import annotations

import pytest

from pantheon_api.domain.login import LoginBackoff, address_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def backoff(clock: Clock, **kw: float) -> LoginBackoff:
    return LoginBackoff(3, clock=clock, **kw)  # type: ignore[arg-type]


def test_an_address_is_free_until_max_failures_then_waits_doubling_delays() -> None:
    clock = Clock()
    b = backoff(clock, max_delay_s=10)
    for _ in range(2):
        b.failed("203.0.113.7")
        assert b.retry_after("203.0.113.7") == 0
    waits = []
    for _ in range(6):
        b.failed("203.0.113.7")
        waits.append(b.retry_after("203.0.113.7"))
        clock.now += waits[-1]
        assert b.retry_after("203.0.113.7") == 0  # the wait is over
    assert waits == [1, 2, 4, 8, 10, 10]  # capped at max_delay_s


def test_failures_from_one_address_never_slow_down_another() -> None:
    clock = Clock()
    b = backoff(clock)
    for _ in range(20):
        b.failed("203.0.113.7")
    assert b.retry_after("203.0.113.7") > 0
    assert b.retry_after("198.51.100.2") == 0
    assert b.retry_after("203.0.113.8") == 0


def test_a_correct_login_or_a_quiet_spell_forgets_the_address() -> None:
    clock = Clock()
    b = backoff(clock, forget_after_s=60)
    for _ in range(3):
        b.failed("a")
    b.succeeded("a")
    assert b.retry_after("a") == 0
    b.failed("a")
    assert b.retry_after("a") == 0  # counting from zero again
    for _ in range(2):
        b.failed("b")
    clock.now += 61
    b.failed("b")  # the two old failures were forgotten
    assert b.retry_after("b") == 0


def test_memory_is_bounded_under_a_spray_of_addresses() -> None:
    clock = Clock()
    b = backoff(clock, max_addresses=100, forget_after_s=60)
    for i in range(1000):
        b.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(b) == 100
    clock.now += 61
    b.failed("192.0.2.1")
    assert len(b) == 1  # the expired ones are dropped first


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),  # the same /64: one client
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("testclient", "testclient"),
    ],
)
def test_addresses_are_tracked_by_ipv4_or_ipv6_64(host: str, key: str) -> None:
    assert address_key(host) == key
