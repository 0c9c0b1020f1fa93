"""Status and Events of Flux's image objects as imagebot writes them (pure): Flux's field names, conditions whose
transition time moves only with their status, and a second pass with nothing new changing nothing."""

from __future__ import annotations

from typing import Any

import pytest

from imagebot.controller import status as S


def obj(status: dict[str, Any] | None = None, generation: int = 3, requested: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "app", "namespace": "flux-system", "generation": generation, "uid": "u1",
                            "resourceVersion": "42"}  # fmt: skip
    if requested:
        meta["annotations"] = {S.REQUESTED_AT: requested}
    return {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy", "metadata": meta, "status": status or {}}


def test_a_repository_status_has_flux_fields_and_the_ten_latest_tags_in_reverse_order() -> None:
    tags = [f"1.0.{i}" for i in range(12)] + ["latest"]
    st = S.repository_status(obj(requested="r1"), "ghcr.io/org/app", tags, 0.0, ["^.*\\.sig$"])
    assert st["lastScanResult"] == {"tagCount": 13, "scanTime": "1970-01-01T00:00:00Z",
                                    "latestTags": sorted(tags, reverse=True)[:10]}  # fmt: skip
    assert st["canonicalImageName"] == "ghcr.io/org/app" and st["observedExclusionList"] == ["^.*\\.sig$"]
    assert st["observedGeneration"] == 3 and st["lastHandledReconcileAt"] == "r1"
    (ready,) = st["conditions"]
    assert ready["type"] == "Ready" and ready["status"] == "True" and ready["reason"] == "Succeeded"
    assert ready["message"] == "successful scan: found 13 tags"


def test_a_policy_status_keeps_the_previous_ref_only_when_it_moved() -> None:
    first = S.policy_status(obj(), "ghcr.io/org/app", "1.0.0", "")
    assert first["latestRef"] == {"name": "ghcr.io/org/app", "tag": "1.0.0"} and "observedPreviousRef" not in first
    moved = S.policy_status(obj({"latestRef": first["latestRef"]}), "ghcr.io/org/app", "1.1.0", "sha256:" + "a" * 64)
    assert moved["observedPreviousRef"] == {"name": "ghcr.io/org/app", "tag": "1.0.0"}
    assert moved["latestRef"]["digest"] == "sha256:" + "a" * 64
    assert "updated from 1.0.0 to 1.1.0" in moved["conditions"][0]["message"]
    same = S.policy_status(obj({"latestRef": first["latestRef"]}), "ghcr.io/org/app", "1.0.0", "")
    assert "observedPreviousRef" not in same


def test_a_condition_keeps_its_transition_time_until_its_status_moves() -> None:
    before = [S.condition("Ready", True, "Succeeded", "old message", 1, "2020-01-01T00:00:00Z")]
    same = S.conditions(obj({"conditions": before}), True, "Succeeded", "new message", now="2030-01-01T00:00:00Z")
    assert same[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z" and same[0]["message"] == "new message"
    flipped = S.conditions(obj({"conditions": before}), False, "AuthenticationFailed", "x", now="2030-01-01T00:00:00Z")
    assert flipped[0]["lastTransitionTime"] == "2030-01-01T00:00:00Z"


@pytest.mark.parametrize("stalled", [False, True], ids=["retried", "stalled"])
def test_a_failure_is_ready_false_with_stalled_only_when_a_spec_change_is_needed(stalled: bool) -> None:
    st = S.failure(obj({"latestRef": {"name": "x", "tag": "1"}}), "InvalidPolicy", "bad range", stalled)
    types = [(c["type"], c["status"]) for c in st["conditions"]]
    assert types == ([("Ready", "False"), ("Stalled", "True")] if stalled else [("Ready", "False")])
    assert "latestRef" not in st, "a failure keeps the other fields as they were (a merge patch leaves them)"


def test_a_second_pass_with_nothing_new_changes_nothing() -> None:
    o = obj()
    st = S.policy_status(o, "ghcr.io/org/app", "1.0.0", "")
    o["status"] = st
    again = S.policy_status(o, "ghcr.io/org/app", "1.0.0", "")
    assert S.unchanged(o["status"], again)


def test_an_event_names_the_object_as_flux_events_finds_it() -> None:
    ev = S.event(obj(), "Succeeded", "x" * 5000, "Normal", "imagebot-controller", now="2030-01-01T00:00:00Z",
                 revision="main@sha1:abc")  # fmt: skip
    assert ev["involvedObject"] == {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy", "name": "app",
                                    "namespace": "flux-system", "uid": "u1", "resourceVersion": "42"}  # fmt: skip
    assert ev["metadata"]["namespace"] == "flux-system" and ev["metadata"]["generateName"] == "app."
    assert len(ev["message"]) == 1024 and ev["type"] == "Normal" and ev["count"] == 1
    assert ev["metadata"]["annotations"] == {"image.toolkit.fluxcd.io/revision": "main@sha1:abc"}
