"""The app's inventory and status, kept in the cluster in one ConfigMap per app.

``data.inventory``: the objects the app applied (apiVersion + key), sorted JSON.
``data.status``: last applied revision, sync state, health, drift (with who/when), last prune.
Written only when its content changes, so a no-op reconcile writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from reconciler.cluster import KubeCluster, _message
from reconciler.errors import ClusterError
from reconciler.model import ResourceKey

INVENTORY_LABEL = "reconciler.imagebot.dev/inventory"


@dataclass(frozen=True, slots=True)
class Inventory:
    entries: dict[ResourceKey, str]  # key → apiVersion
    status: dict[str, Any]


def configmap_name(app: str) -> str:
    return f"reconciler-{app}"


def load(cluster: KubeCluster, app: str, namespace: str) -> Inventory:
    try:
        cm = cluster._call("GET", f"/api/v1/namespaces/{namespace}/configmaps/{configmap_name(app)}")
    except ApiException as exc:
        if exc.status == 404:
            return Inventory({}, {})
        raise ClusterError(f"read inventory of {app}: HTTP {exc.status}: {_message(exc)}") from exc
    data = cm.get("data") or {}
    try:
        raw = json.loads(data.get("inventory") or "[]")
        status = json.loads(data.get("status") or "{}")
    except ValueError:
        raise ClusterError(f"the inventory ConfigMap {namespace}/{configmap_name(app)} is corrupt; fix or delete it") from None
    return Inventory({ResourceKey.decode(e["key"]): e["apiVersion"] for e in raw}, status)


def save(cluster: KubeCluster, app: str, namespace: str, inv: Inventory, previous: Inventory | None) -> bool:
    """Write the inventory and status when they changed; True when written."""
    if previous is not None and previous.entries == inv.entries and previous.status == inv.status:
        return False
    entries = sorted(({"key": k.encode(), "apiVersion": v} for k, v in inv.entries.items()), key=lambda e: e["key"])
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": configmap_name(app), "namespace": namespace, "labels": {INVENTORY_LABEL: app}},
        "data": {"inventory": json.dumps(entries, indent=1), "status": json.dumps(inv.status, indent=1, sort_keys=True)},
    }
    try:
        cluster._call(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/configmaps/{configmap_name(app)}",
            [("fieldManager", cluster.field_manager), ("force", "true")],
            body,
            "application/apply-patch+yaml",
        )
    except ApiException as exc:
        raise ClusterError(f"write inventory of {app}: HTTP {exc.status}: {_message(exc)}") from exc
    return True
