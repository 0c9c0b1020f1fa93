"""Failed token checks per client, with an exponential lock-out: the token is a password guessed online (login form,
``Authorization: Bearer``), so a client that keeps guessing wrong is made to wait before it may guess again.

A client is its address (an IPv6 one by its /64: one host holds the whole prefix). Its LOCK_AFTER-th wrong token
in a row locks it out for 1 s, and each one after for twice as long as the last (2 s, 4 s … up to
MAX_LOCK_SECONDS). While locked, a token it sends is not checked at all: refused with the seconds left, and not
counted. A right token resets the client; its failures are forgotten FORGET_SECONDS after the last one. Pure apart
from the lock: the clock is injected.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

LOCK_AFTER = 5
MAX_LOCK_SECONDS = 900.0
FORGET_SECONDS = 3600.0
MAX_CLIENTS = 10_000  # clients remembered; beyond it the longest quiet ones are forgotten first


class Throttled(Exception):
    """This client guessed wrong too often: it may try again in ``retry_after`` seconds (a whole number, ≥ 1)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many wrong tokens from this address: try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class _Record:
    failures: int
    last: float  # when the last failure was
    until: float  # locked until then (0: not locked)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(peer: str, forwarded_for: str, trusted: tuple[Network, ...]) -> str:
    """Who a request comes from. The TCP peer, unless it is a proxy the operator trusts (``--trusted-proxy``): then
    the right-most address of ``X-Forwarded-For`` that is not itself a trusted proxy — what the last trusted hop saw.
    Addresses left of it are the client's own say and never taken (a guesser would send a new one each time); an
    entry that is not an address stops the walk there."""
    if not trusted or not _within(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _parses(hop):
            return peer
        if not _within(hop, trusted):
            return hop
    return peer


def _parses(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == n.version and ip in n for n in networks)


def client_key(address: str) -> str:
    """The key a client's failures are counted under: its IPv4 address, or its IPv6 address's /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Throttle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        """Raise Throttled when ``client`` is locked out; call before checking the token it sent."""
        key, now = client_key(client), self._clock()
        with self._lock:
            r = self._records.get(key)
        if r is not None and r.until > now:
            raise Throttled(max(1, math.ceil(r.until - now)))

    def failed(self, client: str) -> None:
        key, now = client_key(client), self._clock()
        with self._lock:
            r = self._records.pop(key, None)  # popped and put back: the dict stays ordered by the last failure
            failures = 1 if r is None or now - r.last > FORGET_SECONDS else r.failures + 1
            over = failures - LOCK_AFTER
            until = now + min(2.0 ** min(over, 30), MAX_LOCK_SECONDS) if over >= 0 else 0.0  # 2**30 s: past the cap
            self._records[key] = _Record(failures, now, until)
            if len(self._records) > MAX_CLIENTS:
                for k in list(self._records)[: len(self._records) - MAX_CLIENTS]:
                    del self._records[k]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._records.pop(client_key(client), None)
