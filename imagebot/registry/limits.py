"""Retry with exponential backoff and jitter, Retry-After, and a per-registry rate limit."""

from __future__ import annotations

import email.utils
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_DELTA_SECONDS = re.compile(r"[0-9]+", re.ASCII)  # not str.isdigit: '²' is a digit to it, and float('²') raises


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4  # total tries for one request
    base: float = 0.2  # seconds before the first retry
    cap: float = 10.0  # longest single wait
    max_retry_after: float = 60.0  # a Retry-After longer than this is not waited for

    def backoff(self, attempt: int, rnd: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (attempt counts from 0)."""
        r = rnd or random
        return r.uniform(0, min(self.cap, self.base * (2**attempt)))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RateLimiter:
    """A token bucket: at most ``rate`` requests per second (burst ``burst``); thread-safe."""

    def __init__(
        self,
        rate: float | None,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Reserve one request; sleeps (outside the lock) until its slot comes."""
        if not self.rate:
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
