"""The shared kit's keyed work queue and controller loop, driven by a fake clock (no sleeping on real time)."""

from __future__ import annotations

import random
import threading

import pytest

from gitopskit.workqueue import Backoff, Controller, FakeClock, Result, ShutDown, WorkQueue


def drain(q: WorkQueue[str]) -> list[str]:
    out = []
    while (k := q.get(timeout=0)) is not None:
        out.append(k)
        q.done(k)
    return out


def test_adds_of_a_queued_key_collapse_into_one_and_order_is_first_come() -> None:
    q: WorkQueue[str] = WorkQueue(FakeClock())
    for k in ["a", "b", "a", "c", "b"]:
        q.add(k)
    assert drain(q) == ["a", "b", "c"]


def test_a_key_is_never_handed_to_two_workers_and_a_re_add_while_processing_runs_it_once_more() -> None:
    q: WorkQueue[str] = WorkQueue(FakeClock())
    q.add("a")
    assert q.get(timeout=0) == "a"
    q.add("a")  # an event arrives while "a" is being reconciled
    q.add("a")
    assert q.get(timeout=0) is None, "a key in flight is not handed out again"
    q.done("a")
    assert q.get(timeout=0) == "a", "…but is looked at once more after its worker is done"
    q.done("a")
    assert q.get(timeout=0) is None


def test_delayed_adds_wait_for_the_clock_and_the_earliest_one_wins() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock)
    q.add_after("a", 10)
    q.add_after("a", 30)  # later: ignored, the earlier stands
    q.add_after("b", 5)
    assert q.get(timeout=0) is None
    clock.advance(5)
    assert drain(q) == ["b"]
    clock.advance(5)
    assert drain(q) == ["a"]
    clock.advance(100)
    assert drain(q) == [], "the superseded later add does not fire a second time"


def test_an_immediate_add_supersedes_a_pending_delayed_one() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock)
    q.add_after("a", 10)
    q.add("a")
    assert drain(q) == ["a"]
    clock.advance(20)
    assert drain(q) == []


@pytest.mark.parametrize("seed", [1, 2, 3], ids=["seed1", "seed2", "seed3"])
def test_failures_back_off_exponentially_with_bounded_jitter_and_forget_resets(seed: int) -> None:
    q: WorkQueue[str] = WorkQueue(FakeClock(), Backoff(base=1, cap=60, jitter=0.1), seed=seed)
    delays = [q.add_rate_limited("a") for _ in range(8)]
    for n, d in enumerate(delays, start=1):
        exp = min(60, 2 ** (n - 1))
        assert exp <= d <= exp * 1.1
    assert q.failures("a") == 8
    q.forget("a")
    assert q.failures("a") == 0
    assert 1 <= q.add_rate_limited("a") <= 1.1


def test_the_overall_bucket_spreads_a_burst_of_failures() -> None:
    q: WorkQueue[int] = WorkQueue(FakeClock(), Backoff(base=0.001, cap=0.001, jitter=0, rate=10, burst=5), seed=0)
    delays = [q.add_rate_limited(i) for i in range(10)]
    assert delays[:5] == [0.001] * 5
    assert delays[5:] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])


def test_one_failing_key_backs_off_while_the_others_are_reconciled() -> None:
    clock = FakeClock()
    seen: list[str] = []

    def reconcile(key: str) -> Result:
        seen.append(key)
        if key == "bad":
            raise RuntimeError("registry unreachable")
        return Result(requeue_after=60)

    errors: list[str] = []
    c: Controller[str] = Controller(
        "t", reconcile, queue=WorkQueue(clock, Backoff(base=1, jitter=0), seed=0), on_error=lambda k, e: errors.append(k)
    )
    keys = ["a", "bad", "b", "c"]
    random.Random(7).shuffle(keys)
    for k in keys:
        c.queue.add(k)
    while c.process_one(timeout=0):
        pass
    assert sorted(seen) == ["a", "b", "bad", "c"] and errors == ["bad"]
    seen.clear()
    for step in (1, 2, 4):  # bad retries after 1, then 2, then 4 seconds; the others wait for their interval
        clock.advance(step)
        while c.process_one(timeout=0):
            pass
        assert seen == ["bad"]
        seen.clear()
    clock.advance(60)
    while c.process_one(timeout=0):
        pass
    assert sorted(seen) == ["a", "b", "bad", "c"], "the healthy keys come back after their requeue_after (bad's 8 s too)"


def test_a_pass_that_ends_waiting_for_work_elsewhere_keeps_the_keys_backoff() -> None:
    """A reconcile that failed, then ended pending (a fetch it started on its own thread queues it again), then
    failed again backs off further: the pending pass was no success (it reset the backoff, so an app whose sync
    failed after a fetch of its own was retried about every second, forever)."""
    clock = FakeClock()
    calls = 0

    def reconcile(key: str) -> Result:
        nonlocal calls
        calls += 1
        if calls % 2 == 0:
            return Result(pending=True)
        raise RuntimeError("prune refused")

    c: Controller[str] = Controller("t", reconcile, queue=WorkQueue(clock, Backoff(base=1, jitter=0), seed=0))
    c.queue.add("k")
    for n in range(1, 5):
        c.process_one(timeout=0)  # fails
        assert c.queue.failures("k") == n
        clock.advance(2 ** (n - 1))
        c.process_one(timeout=0)  # pending: woken by its fetch's end (an add)
        assert c.queue.failures("k") == n, "a pending pass reset the backoff"
        c.queue.add("k")
    c.process_one(timeout=0)
    assert c.queue.failures("k") == 5


def test_workers_run_keys_concurrently_and_stop_gracefully() -> None:
    started = threading.Barrier(2, timeout=10)
    done: list[str] = []

    def reconcile(key: str) -> None:
        started.wait()  # both keys must be in flight at once, or this times out
        done.append(key)

    c: Controller[str] = Controller("t", reconcile, workers=2)
    c.queue.add("a")
    c.queue.add("b")
    c.start()
    for _ in range(200):
        if len(done) == 2:
            break
        threading.Event().wait(0.05)
    assert sorted(done) == ["a", "b"]
    assert c.stop(timeout=10)
    with pytest.raises(ShutDown):
        c.queue.get(timeout=0)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0)
    with pytest.raises(ValueError):
        Controller("t", lambda k: None, workers=0)
