"""Drift always has a time: the API server records none for an update through a subresource (kubectl scale), so the
engine dates such drift when first seen and keeps that date on re-delivery (the end-to-end check is
tests/dashboard/test_live_controller.py: the dashboard's "When" of a corrected scale)."""

from __future__ import annotations

import re
from dataclasses import replace

from reconciler.engine import _dated
from reconciler.model import DriftItem, DriftKind, FieldPolicy, ResourceKey

KEY = ResourceKey("apps", "Deployment", "demo", "web")
SCALED = DriftItem(KEY, "/spec/replicas", DriftKind.CHANGED, 1, 4, "kubectl", "Update", "", FieldPolicy.CORRECT)


def test_drift_without_a_time_is_dated_when_seen_and_keeps_that_date() -> None:
    first = _dated(SCALED, None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first.time)
    assert _dated(replace(SCALED), first) is first  # re-delivered: the same drift, not news
    assert _dated(replace(SCALED, live=5), replace(first, time="2000-01-01T00:00:00Z")).time != "2000-01-01T00:00:00Z"
    given = replace(SCALED, time="2026-01-02T03:04:05Z")
    assert _dated(given, first) is given  # the API server's time wins
