"""Per-key exponential backoff with jitter (pure: the caller passes the time in).

A key is an image (its scan) or an image and environment (its digest lookup, edit, delivery).
Its n-th consecutive failure defers it by a uniformly jittered delay in [d/2, d], d = min(cap,
base·2^(n-1)); a success forgets it. Nothing sleeps: the runner skips a key until it is due.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Retry:
    failures: int  # consecutive
    at: float  # clock time from which the key is tried again
    error: str  # the last failure


@dataclass
class Backoff:
    base: float = 10.0
    cap: float = 900.0
    rnd: random.Random = field(default_factory=random.Random)
    _keys: dict[tuple[str, str], Retry] = field(default_factory=dict)

    def failed(self, key: tuple[str, str], now: float, error: str) -> Retry:
        n = self._keys[key].failures + 1 if key in self._keys else 1
        delay = min(self.cap, self.base * 2 ** min(n - 1, 30))
        retry = Retry(n, now + self.rnd.uniform(delay / 2, delay), error)
        self._keys[key] = retry
        return retry

    def succeeded(self, key: tuple[str, str]) -> None:
        self._keys.pop(key, None)

    def get(self, key: tuple[str, str]) -> Retry | None:
        return self._keys.get(key)

    def waiting(self, key: tuple[str, str], now: float) -> Retry | None:
        """The pending retry when ``key`` is not due yet, else None."""
        retry = self._keys.get(key)
        return retry if retry is not None and now < retry.at else None
