"""Per-key backoff: jittered exponential delays, capped, per key, forgotten on success; no sleeping."""

from __future__ import annotations

import random

import pytest

from imagebot.runtime.backoff import Backoff


@pytest.mark.parametrize("seed", range(5), ids=lambda s: f"seed{s}")
def test_delays_double_within_their_jitter_up_to_the_cap(seed: int) -> None:
    b = Backoff(base=10, cap=100, rnd=random.Random(seed))
    now = 1000.0
    for n in range(1, 8):
        retry = b.failed(("app", "dev"), now, "boom")
        full = min(100, 10 * 2 ** (n - 1))
        assert retry.failures == n and full / 2 <= retry.at - now <= full
        assert b.waiting(("app", "dev"), retry.at - 0.01) == retry
        assert b.waiting(("app", "dev"), retry.at) is None, "due at its time"
        now = retry.at


def test_keys_are_independent_and_a_success_forgets_the_failures() -> None:
    b = Backoff(base=10, cap=100, rnd=random.Random(1))
    b.failed(("app", "dev"), 0.0, "x")
    b.failed(("app", "dev"), 0.0, "x")
    assert b.waiting(("app", ""), 1.0) is None and b.waiting(("other", "dev"), 1.0) is None
    b.succeeded(("app", "dev"))
    assert b.get(("app", "dev")) is None
    assert b.failed(("app", "dev"), 0.0, "x").failures == 1, "counting starts again"


def test_a_very_long_outage_does_not_overflow() -> None:
    b = Backoff(base=10, cap=900, rnd=random.Random(2))
    for _ in range(2000):
        retry = b.failed(("app", ""), 0.0, "down")
    assert 450 <= retry.at <= 900
