"""Back-off of failed logins per client address: wrong passwords slow down where they come from.

Not an account lock: failures from one address never stop a login from another, so nobody can
lock the real admin out by guessing from elsewhere. An address may fail ``max_failures`` times
freely; from then on each failure blocks it for a delay that doubles (1 s, 2 s, 4 s ... up to
``max_delay_s``). An address is forgotten after a correct login, or once ``forget_after_s`` passed
since its last failure. At most ``max_addresses`` are tracked (expired ones are dropped first,
then the least recently failing): the memory stays bounded under a spray of addresses.
IPv6 clients are tracked by their /64 network (one host usually holds a whole /64).
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LoginBackoff", "address_key"]


def address_key(host: str) -> str:
    """The key an address is tracked by: an IPv4 address, an IPv6 /64, else the text as is."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class _Address:
    failures: int
    last_failure: float
    blocked_until: float


class LoginBackoff:
    """Failed logins per client address, with a doubling back-off (thread-safe)."""

    def __init__(
        self,
        max_failures: int,
        *,
        first_delay_s: float = 1.0,
        max_delay_s: float = 300.0,
        forget_after_s: float = 900.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or max_addresses < 1:
            raise ValueError("max_failures and max_addresses must be at least 1")
        self.max_failures = max_failures
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.forget_after_s = forget_after_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._addresses: OrderedDict[str, _Address] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._addresses)

    def retry_after(self, host: str) -> int:
        """Whole seconds ``host`` must wait before its next login attempt (0: now)."""
        now = self._clock()
        with self._lock:
            entry = self._addresses.get(address_key(host))
            if entry is None or entry.blocked_until <= now:
                return 0
            return max(1, math.ceil(entry.blocked_until - now))

    def failed(self, host: str) -> None:
        """Count a failed login from ``host``; past ``max_failures`` it is blocked a while."""
        now = self._clock()
        key = address_key(host)
        with self._lock:
            entry = self._addresses.pop(key, None)
            if entry is None or self._expired(entry, now):
                entry = _Address(failures=0, last_failure=now, blocked_until=now)
            entry.failures += 1
            entry.last_failure = now
            excess = entry.failures - self.max_failures
            if excess >= 0:
                delay = min(self.max_delay_s, self.first_delay_s * 2 ** min(excess, 62))
                entry.blocked_until = now + delay
            self._addresses[key] = entry  # most recent last
            self._bound(now)

    def succeeded(self, host: str) -> None:
        """A correct login from ``host``: it starts afresh."""
        with self._lock:
            self._addresses.pop(address_key(host), None)

    def _expired(self, entry: _Address, now: float) -> bool:
        return entry.blocked_until <= now and now - entry.last_failure >= self.forget_after_s

    def _bound(self, now: float) -> None:
        # Oldest failure first: the expired entries are at the front.
        while self._addresses and self._expired(next(iter(self._addresses.values())), now):
            self._addresses.popitem(last=False)
        while len(self._addresses) > self.max_addresses:
            self._addresses.popitem(last=False)
