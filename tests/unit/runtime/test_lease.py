"""The lease keepalive on an injected clock and a scripted lock: leadership lasts exactly as long as
renewals keep succeeding within the renew deadline, ends at once when another holder is seen, and
every write is fenced by it."""

from __future__ import annotations

import pytest

from gitopskit.errors import NotLeader
from gitopskit.lease import LeaderElector, LeaseTiming

TIMING = LeaseTiming(duration=15, renew_deadline=10, retry_period=2)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class ScriptedLock:
    """try_acquire_or_renew answers from a script: True, False (another holder) or an exception."""

    namespace, name, identity, request_timeout = "ns", "lease", "me", 1.0

    def __init__(self, clock: Clock, answers: list[object], takes: float = 0.0) -> None:
        self.clock, self.answers, self.takes = clock, answers, takes
        self.holder: str | None = None
        self.released = 0

    def try_acquire_or_renew(self) -> bool:
        self.clock.t += self.takes  # the round trip to the API server
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        self.holder = "me" if answer else "other"
        return bool(answer)

    def release(self) -> None:
        self.released += 1


def elector(clock: Clock, answers: list[object], takes: float = 0.0) -> tuple[LeaderElector, ScriptedLock]:
    lock = ScriptedLock(clock, answers, takes)
    return LeaderElector(lock, TIMING, clock=clock), lock  # type: ignore[arg-type]


def test_a_leader_that_keeps_renewing_stays_leader() -> None:
    clock = Clock()
    e, _ = elector(clock, [True] * 20)
    for _ in range(20):
        e.step()
        assert e.is_leader()
        e.fence()
        clock.t += TIMING.retry_period


def test_a_leader_that_cannot_renew_stops_writing_at_the_renew_deadline_before_the_lease_expires() -> None:
    clock = Clock()
    e, _ = elector(clock, [True] + [ConnectionError("API server unreachable")] * 10)
    e.step()
    acquired = clock.t
    while clock.t < acquired + TIMING.renew_deadline - TIMING.retry_period:
        clock.t += TIMING.retry_period
        e.step()
        assert e.is_leader(), "within the renew deadline, a failed renewal is retried, not fatal"
    clock.t = acquired + TIMING.renew_deadline
    assert not e.is_leader()
    with pytest.raises(NotLeader, match="not the leader"):
        e.fence()
    assert acquired + TIMING.renew_deadline < acquired + TIMING.duration, "stops before anyone may take over"


def test_a_stopped_process_is_no_longer_leader_when_it_resumes() -> None:
    """SIGSTOP/SIGCONT: no round ran meanwhile, but the monotonic clock went on."""
    clock = Clock()
    e, _ = elector(clock, [True, False])
    e.step()
    clock.t += 60  # stopped for a minute
    assert not e.is_leader(), "no write before the next successful renewal"
    e.step()  # the Lease now has another holder
    assert not e.is_leader()


def test_seeing_another_holder_ends_leadership_at_once() -> None:
    clock = Clock()
    e, _ = elector(clock, [True, False])
    e.step()
    clock.t += 1
    e.step()
    assert not e.is_leader()


def test_the_window_counts_from_when_the_renewal_began_not_when_it_returned() -> None:
    clock = Clock()
    e, _ = elector(clock, [True], takes=4.0)  # a slow API server
    began = clock.t
    e.step()
    clock.t = began + TIMING.renew_deadline - 0.01
    assert e.is_leader()
    clock.t = began + TIMING.renew_deadline
    assert not e.is_leader()


def test_stopping_releases_a_held_lease_only() -> None:
    clock = Clock()
    e, lock = elector(clock, [True])
    e.step()
    e.stop(release=True)
    assert lock.released == 1 and not e.is_leader()
    e2, lock2 = elector(clock, [False])
    e2.step()
    e2.stop(release=True)
    assert lock2.released == 0


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"),
    [(15, 15, 2), (15, 20, 2), (15, 10, 10), (15, 10, 0)],
    ids=["deadline-equals-duration", "deadline-over-duration", "retry-equals-deadline", "retry-zero"],
)
def test_timings_that_leave_no_margin_are_refused(duration: float, deadline: float, retry: float) -> None:
    with pytest.raises(ValueError, match="retry period"):
        LeaseTiming(duration, deadline, retry)
