"""The plan's ownership and prune decisions (pure): who may apply, what is released, kept or pruned."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.model import PRUNE_ANNOTATION, TAKE_OVER_ANNOTATION, TRACKING_LABEL, Action, Manifest, ResourceKey
from reconciler.plan import ARGO_SYNC_OPTIONS, Claims, PruneGuards, plan

KEY = ResourceKey("", "ConfigMap", "n", "shared")


def manifest(take_over: bool = False) -> Manifest:
    meta: dict[str, Any] = {"name": "shared", "labels": {TRACKING_LABEL: "me"}}
    if take_over:
        meta["annotations"] = {TAKE_OVER_ANNOTATION: "true"}
    return Manifest(KEY, "v1", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"a": "1"}})


def live(owner: str, took: bool = False, **annotations: str) -> dict[str, Any]:
    if took:
        annotations[TAKE_OVER_ANNOTATION] = "true"
    labels = {TRACKING_LABEL: owner} if owner else {}
    return {"metadata": {"name": "shared", "namespace": "n", "labels": labels, "annotations": annotations}, "data": {"a": "0"}}


@pytest.mark.parametrize(
    ("owner", "took", "take_over", "claims", "action", "reason"),
    [
        ("", False, False, Claims(), Action.UPDATE, "declared fields differ"),
        ("me", False, False, Claims(), Action.UPDATE, "declared fields differ"),
        ("other", False, False, Claims(), Action.CONFLICT, "'other' owns it (first claim)"),
        ("other", False, False, Claims({KEY: ("other",)}, frozenset({"other"})), Action.CONFLICT, "first claim"),
        ("other", False, False, Claims({}, frozenset({"other"})), Action.UPDATE, "adopted from app 'other'"),
        ("other", False, True, Claims({KEY: ("other",)}, frozenset({"other"})), Action.UPDATE, "taken over from app 'other'"),
        ("other", True, True, Claims({KEY: ("other",)}, frozenset({"other"})), Action.CONFLICT, "'other' took it over"),
    ],
    ids=["unlabelled_adopted", "ours", "foreign_unknown_inventory", "foreign_declared", "stale_claim", "take_over", "no_retake"],
)
def test_who_may_apply_an_object(owner: str, took: bool, take_over: bool, claims: Claims, action: Action, reason: str) -> None:
    p = plan([manifest(take_over)], {KEY: live(owner, took)}, [KEY], "me", TRACKING_LABEL, claims=claims)
    (a,) = p.applies
    assert a.action is action and reason in a.reason
    assert (a in p.conflicts) is (action is Action.CONFLICT) and (a in p.writes) is (action is not Action.CONFLICT)
    if action is Action.CONFLICT:
        assert "'me'" in a.reason and "'other'" in a.reason, "both app names"


@pytest.mark.parametrize(
    ("key", "obj", "claims", "guards", "action", "reason"),
    [
        (KEY, live("other"), Claims(), PruneGuards(), Action.RELEASE, "now claimed by app 'other'"),
        (KEY, live("me"), Claims({KEY: ("other",)}, frozenset({"other"})), PruneGuards(), Action.RELEASE, "still declared"),
        (KEY, live("me", **{PRUNE_ANNOTATION: "disabled"}), Claims(), PruneGuards(), Action.SKIP_PRUNE, "disabled"),
        (KEY, live("me", **{ARGO_SYNC_OPTIONS: "Validate=true,Prune=false"}), Claims(), PruneGuards(), Action.SKIP_PRUNE, "Argo"),
        (ResourceKey("", "Namespace", "", "x"), live("me"), Claims(), PruneGuards(), Action.SKIP_PRUNE, "protected"),
        (
            ResourceKey("", "Namespace", "", "x"),
            live("me"),
            Claims(),
            PruneGuards(allowed_kinds=frozenset({"Namespace"})),
            Action.PRUNE,
            "no longer",
        ),
        (KEY, live("me"), Claims(), PruneGuards(enabled=False), Action.SKIP_PRUNE, "pruning is off"),
        (KEY, live(""), Claims(), PruneGuards(), Action.PRUNE, "no longer in Git"),
    ],
    ids=[
        *("claimed_elsewhere", "declared_elsewhere", "opted_out", "argo_prune_false", "protected", "protected_allowed"),
        *("prune_off", "label_removed"),
    ],
)
def test_what_happens_to_a_candidate(
    key: ResourceKey, obj: dict[str, Any], claims: Claims, guards: PruneGuards, action: Action, reason: str
) -> None:
    keep = [Manifest(ResourceKey("", "ConfigMap", "n", f"k{i}"), "v1", {}) for i in range(3)]
    inventory = [key, *(m.key for m in keep)]
    live_objs = {key: obj, **{m.key: live("me") for m in keep}}
    p = plan(keep, live_objs, inventory, "me", TRACKING_LABEL, guards, claims=claims)
    assert [(a.key, a.action) for a in p.prunes] == [(key, action)] and reason in p.prunes[0].reason


def test_the_half_guard_counts_only_what_would_be_deleted() -> None:
    """Kept candidates (protected, remembered across syncs) do not push a small prune over the threshold."""
    namespaces = [ResourceKey("", "Namespace", "", f"ns{i}") for i in range(5)]
    gone = ResourceKey("", "ConfigMap", "n", "gone")
    keep = [Manifest(ResourceKey("", "ConfigMap", "n", f"k{i}"), "v1", {}) for i in range(2)]
    inventory = [*namespaces, gone, *(m.key for m in keep)]
    live_objs = {k: live("me") for k in inventory}
    p = plan(keep, live_objs, inventory, "me", TRACKING_LABEL)
    assert p.refused == "" and [a.key for a in p.prunes if a.action is Action.PRUNE] == [gone]
    assert all(a.action is Action.SKIP_PRUNE for a in p.prunes if a.key in namespaces)
