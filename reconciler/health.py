"""Health of live objects, rolled up to the app: Healthy / Progressing / Degraded / Missing (pure).

Sync (which revision is applied) is separate from health (whether what runs is well).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reconciler.model import Health

_ORDER = {Health.HEALTHY: 0, Health.PROGRESSING: 1, Health.MISSING: 2, Health.DEGRADED: 3}


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type", ""): c for c in status.get("conditions") or [] if isinstance(c, dict)}


def object_health(kind: str, obj: dict[str, Any] | None) -> tuple[Health, str]:
    if obj is None:
        return Health.MISSING, "not found in the cluster"
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    gen = (obj.get("metadata") or {}).get("generation")
    conds = _conditions(status)
    if kind == "Deployment":
        if conds.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded":
            return Health.DEGRADED, "progress deadline exceeded"
        if conds.get("ReplicaFailure", {}).get("status") == "True":
            return Health.DEGRADED, conds["ReplicaFailure"].get("message", "replica failure")
        want = spec.get("replicas", 1)
        if gen is not None and status.get("observedGeneration", -1) < gen:
            return Health.PROGRESSING, "waiting for the controller to observe the new generation"
        if status.get("updatedReplicas", 0) < want:
            return Health.PROGRESSING, f"{status.get('updatedReplicas', 0)}/{want} replicas updated"
        if status.get("availableReplicas", 0) < want:
            return Health.PROGRESSING, f"{status.get('availableReplicas', 0)}/{want} replicas available"
        return Health.HEALTHY, f"{want}/{want} replicas available"
    if kind == "StatefulSet":
        want = spec.get("replicas", 1)
        if gen is not None and status.get("observedGeneration", -1) < gen:
            return Health.PROGRESSING, "waiting for the controller to observe the new generation"
        if status.get("readyReplicas", 0) < want:
            return Health.PROGRESSING, f"{status.get('readyReplicas', 0)}/{want} replicas ready"
        if status.get("updateRevision") and status.get("currentRevision") != status.get("updateRevision"):
            return Health.PROGRESSING, "rolling update in progress"
        return Health.HEALTHY, f"{want}/{want} replicas ready"
    if kind == "DaemonSet":
        want = status.get("desiredNumberScheduled")
        if want is None or (gen is not None and status.get("observedGeneration", -1) < gen):
            return Health.PROGRESSING, "waiting for the controller"
        if status.get("numberReady", 0) < want or status.get("updatedNumberScheduled", want) < want:
            return Health.PROGRESSING, f"{status.get('numberReady', 0)}/{want} ready"
        return Health.HEALTHY, f"{want}/{want} ready"
    if kind == "Job":
        if conds.get("Failed", {}).get("status") == "True":
            return Health.DEGRADED, conds["Failed"].get("reason", "failed")
        if conds.get("Complete", {}).get("status") == "True":
            return Health.HEALTHY, "complete"
        return Health.PROGRESSING, "running"
    if "Ready" in conds:
        c = conds["Ready"]
        if c.get("status") == "True":
            return Health.HEALTHY, c.get("message") or "ready"
        if c.get("status") == "False" and c.get("reason") not in ("Progressing", "Reconciling"):
            return Health.DEGRADED, c.get("message") or c.get("reason") or "not ready"
        return Health.PROGRESSING, c.get("message") or "becoming ready"
    return Health.HEALTHY, "exists"


def rollup(healths: Iterable[Health]) -> Health:
    worst = Health.HEALTHY
    for h in healths:
        if _ORDER[h] > _ORDER[worst]:
            worst = h
    return worst
