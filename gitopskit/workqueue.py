"""A keyed work queue and the worker loop over it, after client-go's workqueue and controller-runtime.

One key names one object. The queue guarantees what a controller needs so that one bad object never delays
or aborts the rest:
- a key is never processed by two workers at once; a key added while it is being processed is queued again
  when its worker calls ``done`` (so the newest state is always looked at once more);
- adds of a key already queued collapse into one; delayed adds (``add_after``) keep the earliest time;
- a failure requeues that key alone with per-key exponential backoff and jitter (``forget`` resets it),
  under an overall token bucket so a burst of failures cannot spin the workers;
- time comes from an injectable ``Clock``: ``FakeClock`` lets tests move time without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class Clock(Protocol):
    def now(self) -> float: ...

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        """Wait on ``cond`` (held) for at most ``timeout`` seconds of this clock's time."""


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        cond.wait(timeout)


class FakeClock:
    """A clock that moves only when told to; waiters wake on ``advance``, never on wall time."""

    def __init__(self, start: float = 0.0) -> None:
        self._t = start
        self._lock = threading.Lock()
        self._conds: weakref.WeakSet[threading.Condition] = weakref.WeakSet()

    def now(self) -> float:
        with self._lock:
            return self._t

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        with self._lock:
            self._conds.add(cond)
        cond.wait(0.05)  # a short real wait: woken by advance() or by the queue's own notify

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds
            conds = list(self._conds)
        for c in conds:
            with c:
                c.notify_all()


@dataclass(frozen=True, slots=True)
class Backoff:
    """Per-key exponential backoff with jitter (base·2^(n-1), capped), plus an overall token bucket."""

    base: float = 1.0
    cap: float = 300.0
    jitter: float = 0.1  # up to +10 %, so keys that failed together do not retry together
    rate: float = 10.0  # overall retries per second…
    burst: int = 100  # …after a burst of this many

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap) or self.jitter < 0 or self.rate <= 0 or self.burst < 1:
            raise ValueError(f"invalid backoff {self}")

    def delay(self, failures: int, rng: random.Random) -> float:
        exp = min(self.cap, self.base * 2.0 ** min(max(failures - 1, 0), 62))
        return exp * (1 + self.jitter * rng.random())


class ShutDown(Exception):
    """The queue was shut down: no more keys will be handed out."""


class WorkQueue(Generic[K]):
    def __init__(self, clock: Clock | None = None, backoff: Backoff | None = None, seed: int | None = None) -> None:
        self.clock: Clock = clock or RealClock()
        self.backoff = backoff or Backoff()
        self._rng = random.Random(seed)
        self._cond = threading.Condition()
        self._queue: list[K] = []  # FIFO of ready keys (each at most once)
        self._dirty: set[K] = set()  # ready or to be re-queued when processing ends
        self._processing: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []  # heap of (ready at, seq, key)
        self._ready_at: dict[K, float] = {}  # earliest pending delayed add per key
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        self._tokens = float(self.backoff.burst)
        self._tokens_at = self.clock.now()
        self._shutdown = False

    # ------------------------------------------------------------------ adding
    def add(self, key: K) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: K) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        self._ready_at.pop(key, None)
        if key not in self._processing:
            self._queue.append(key)
            self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutdown:
                return
            at = self.clock.now() + delay
            if key in self._ready_at and self._ready_at[key] <= at:
                return  # an earlier delayed add already stands
            self._ready_at[key] = at
            heapq.heappush(self._delayed, (at, next(self._seq), key))
            self._cond.notify()

    def add_rate_limited(self, key: K) -> float:
        """Requeue ``key`` after its next backoff step; returns the delay chosen."""
        with self._cond:
            n = self._failures.get(key, 0) + 1
            self._failures[key] = n
            delay = max(self.backoff.delay(n, self._rng), self._bucket_delay_locked())
        self.add_after(key, delay)
        return delay

    def _bucket_delay_locked(self) -> float:
        now = self.clock.now()
        self._tokens = min(float(self.backoff.burst), self._tokens + (now - self._tokens_at) * self.backoff.rate)
        self._tokens_at = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.backoff.rate

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts the backoff afresh."""
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    # ------------------------------------------------------------------ taking
    def get(self, timeout: float | None = None) -> K | None:
        """The next ready key, marked as processing (call ``done`` after); None on timeout.
        Raises ShutDown once the queue is shut down: queued keys are not handed out any more."""
        with self._cond:
            deadline = None if timeout is None else self.clock.now() + timeout
            while True:
                if self._shutdown:
                    raise ShutDown
                self._promote_delayed_locked()
                if self._queue:
                    key = self._queue.pop(0)
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                now = self.clock.now()
                wait = None if not self._delayed else max(self._delayed[0][0] - now, 0.0)
                if deadline is not None:
                    if now >= deadline:
                        return None
                    wait = deadline - now if wait is None else min(wait, deadline - now)
                self.clock.wait(self._cond, wait)

    def _promote_delayed_locked(self) -> None:
        now = self.clock.now()
        while self._delayed and self._delayed[0][0] <= now:
            at, _, key = heapq.heappop(self._delayed)
            if self._ready_at.get(key) == at:  # else superseded by an earlier add or an immediate add
                del self._ready_at[key]
                self._add_locked(key)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def pending(self) -> int:
        """Keys ready, processing or waiting for a delayed add."""
        with self._cond:
            return len(self._dirty | self._processing | set(self._ready_at))

    def shut_down(self) -> None:
        with self._cond:
            self._shutdown = True
            self._delayed.clear()
            self._ready_at.clear()
            self._cond.notify_all()


@dataclass(frozen=True, slots=True)
class Result:
    """What one reconcile asks for: look again after ``requeue_after`` seconds (None: only on the next event).
    ``pending``: the pass did not finish, it waits on work elsewhere that queues the key again — no success, so the
    key's backoff stands (a failure before and after it backs off further)."""

    requeue_after: float | None = None
    pending: bool = False


Reconcile = Callable[[K], Result | None]


class Controller(Generic[K]):
    """N workers over one WorkQueue: one reconcile per key; an exception requeues that key with backoff and
    touches nothing else."""

    def __init__(
        self,
        name: str,
        reconcile: Callable[[K], Result | None],
        workers: int = 2,
        queue: WorkQueue[K] | None = None,
        on_error: Callable[[K, BaseException], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.name = name
        self.reconcile = reconcile
        self.workers = workers
        self.queue: WorkQueue[K] = queue if queue is not None else WorkQueue()
        self.on_error = on_error
        self._threads: list[threading.Thread] = []

    def process_one(self, timeout: float | None = None) -> bool:
        """Take one key and reconcile it; False when none was ready within ``timeout`` or the queue is shut down."""
        try:
            key = self.queue.get(timeout)
        except ShutDown:
            return False
        if key is None:
            return False
        try:
            result = self.reconcile(key)
        except Exception as exc:  # one key's failure must never stop the workers
            delay = self.queue.add_rate_limited(key)
            log.warning("%s: %s failed (retry in %.1fs): %s", self.name, key, delay, exc)
            if self.on_error is not None:
                self.on_error(key, exc)
        else:
            if result is None or not result.pending:
                self.queue.forget(key)
            if result is not None and result.requeue_after is not None:
                self.queue.add_after(key, result.requeue_after)
        finally:
            self.queue.done(key)
        return True

    def _work(self) -> None:
        while self.process_one(timeout=None):  # blocks until a key; False only once shut down
            pass

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"{self.name}-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> bool:
        """Graceful stop: hand out no more keys, let in-flight reconciles finish. True when all workers ended."""
        self.queue.shut_down()
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(end - time.monotonic(), 0))
        return not any(t.is_alive() for t in self._threads)
