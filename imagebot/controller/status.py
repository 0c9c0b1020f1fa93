"""Status and Events of Flux's image objects, written the way Flux's controllers write them (pure: no I/O).

Field names and shapes are Flux's (image-reflector-controller and image-automation-controller, API v1), so
``flux get images``, ``kubectl get imagepolicies`` (printer columns) and dashboards read what imagebot writes:
- ImageRepository: ``lastScanResult{tagCount, scanTime, latestTags}``, ``canonicalImageName``,
  ``observedExclusionList``;
- ImagePolicy: ``latestRef{name, tag, digest}``, ``observedPreviousRef``;
- ImageUpdateAutomation: ``lastAutomationRunTime``, ``lastPushCommit``, ``lastPushTime``, ``observedPolicies``,
  ``observedSourceRevision``;
- each: ``observedGeneration``, ``lastHandledReconcileAt``, and a ``Ready`` condition (plus ``Stalled`` when only a
  spec change can help) with Flux's reasons.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

Obj = dict[str, Any]

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
LATEST_TAGS = 10  # Flux keeps the ten latest tags (sorted in reverse) in lastScanResult.latestTags


class Reason(StrEnum):
    """Flux's condition reasons (fluxcd/pkg/apis/meta and the image controllers' own)."""

    SUCCEEDED = "Succeeded"
    FAILED = "ReconciliationFailed"
    INVALID_IMAGE = "ImageURLInvalid"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    READ_FAILED = "ReadOperationFailed"
    INVALID_POLICY = "InvalidPolicy"
    DEPENDENCY_NOT_READY = "DependencyNotReady"
    INVALID_SOURCE = "InvalidSourceConfiguration"
    GIT_FAILED = "GitOperationFailed"
    UPDATE_FAILED = "UpdateFailed"
    INVALID_SPEC = "InvalidSpec"


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


def now_rfc3339(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def generation(obj: Mapping[str, Any]) -> int:
    g = (obj.get("metadata") or {}).get("generation")
    return g if isinstance(g, int) else 0


def requested_at(obj: Mapping[str, Any]) -> str:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(REQUESTED_AT)
    return value if isinstance(value, str) else ""


def condition(ctype: str, ok: bool, reason: str, message: str, gen: int, now: str) -> Obj:
    return {
        "type": ctype,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message[:32768],
        "observedGeneration": gen,
        "lastTransitionTime": now,
    }


def conditions(obj: Mapping[str, Any], ok: bool, reason: str, message: str, stalled: bool = False, now: str = "") -> list[Obj]:
    """Ready (and Stalled when only a spec change can help); a condition whose status did not move keeps its
    lastTransitionTime, so a pass with nothing new writes nothing."""
    now = now or now_rfc3339()
    gen = generation(obj)
    new = [condition("Ready", ok, reason, message, gen, now)]
    if stalled:
        new.append(condition("Stalled", True, reason, message, gen, now))
    old = {c.get("type"): c for c in ((obj.get("status") or {}).get("conditions") or []) if isinstance(c, dict)}
    out = []
    for c in new:
        prev = old.get(c["type"])
        if prev is not None and prev.get("status") == c["status"]:
            c = {**c, "lastTransitionTime": prev.get("lastTransitionTime", now)}
        out.append(c)
    return out


def ready_of(obj: Mapping[str, Any]) -> Obj:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})


def _common(obj: Mapping[str, Any]) -> Obj:
    out: Obj = {"observedGeneration": generation(obj)}
    if requested_at(obj):
        out["lastHandledReconcileAt"] = requested_at(obj)
    return out


def failure(obj: Mapping[str, Any], reason: str, message: str, stalled: bool = False) -> Obj:
    """The status patch of a failed reconcile: Ready=False naming the cause; every other field kept as it was."""
    return {**_common(obj), "conditions": conditions(obj, False, reason, message, stalled)}


def latest_tags(tags: Sequence[str]) -> list[str]:
    """Flux's ``latestTags``: the tags sorted in reverse (code-point) order, the first ten."""
    return sorted(tags, reverse=True)[:LATEST_TAGS]


def repository_status(
    obj: Mapping[str, Any], canonical: str, tags: Sequence[str], scan_time: float, exclusions: Sequence[str]
) -> Obj:
    message = f"successful scan: found {len(tags)} tags"
    return {
        **_common(obj),
        "canonicalImageName": canonical,
        "lastScanResult": {"tagCount": len(tags), "scanTime": now_rfc3339(scan_time), "latestTags": latest_tags(tags)},
        "observedExclusionList": list(exclusions),
        "conditions": conditions(obj, True, Reason.SUCCEEDED, message),
    }


def image_ref(name: str, tag: str, digest: str = "") -> Obj:
    return {"name": name, "tag": tag, **({"digest": digest} if digest else {})}


def policy_status(obj: Mapping[str, Any], name: str, tag: str, digest: str) -> Obj:
    old = (obj.get("status") or {}).get("latestRef")
    new = image_ref(name, tag, digest)
    out: Obj = {**_common(obj), "latestRef": new}
    if isinstance(old, dict) and old and old != new:
        out["observedPreviousRef"] = old
    msg = f"Latest image tag for {name} resolved to {tag}" + (f" (digest {digest})" if digest else "")
    if isinstance(old, dict) and old.get("tag") and old.get("tag") != tag:
        msg = f"Latest image tag for {name} updated from {old.get('tag')} to {tag}"
    out["conditions"] = conditions(obj, True, Reason.SUCCEEDED, msg)
    return out


def automation_status(
    obj: Mapping[str, Any],
    run_time: float,
    message: str,
    observed_policies: Mapping[str, Obj],
    source_revision: str,
    push_commit: str = "",
    push_time: float | None = None,
) -> Obj:
    out: Obj = {
        **_common(obj),
        "lastAutomationRunTime": now_rfc3339(run_time),
        "observedPolicies": dict(sorted(observed_policies.items())),
        "conditions": conditions(obj, True, Reason.SUCCEEDED, message),
    }
    if source_revision:
        out["observedSourceRevision"] = source_revision
    if push_commit:
        out["lastPushCommit"] = push_commit
        out["lastPushTime"] = now_rfc3339(push_time)
    return out


def unchanged(old: Mapping[str, Any], new: Mapping[str, Any], volatile: Sequence[str] = ()) -> bool:
    """Would writing ``new`` change nothing but the ``volatile`` fields (times that move every pass)?"""
    return all(old.get(k) == v for k, v in new.items() if k not in volatile)


def event(
    obj: Mapping[str, Any], reason: str, message: str, type_: str, component: str, now: str = "", revision: str = ""
) -> Obj:
    """A core/v1 Event about ``obj``, as Flux's controllers record them (``kubectl describe`` and ``flux events``
    find it by involvedObject)."""
    meta = obj.get("metadata") or {}
    now = now or now_rfc3339()
    body: Obj = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": meta.get("namespace", "")},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", ""),
            "kind": obj.get("kind", ""),
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "reason": reason,
        "message": message[:1024],
        "type": type_,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    if revision:
        body["metadata"]["annotations"] = {"image.toolkit.fluxcd.io/revision": revision}
    return body
