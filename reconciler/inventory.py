"""The app's inventory and status, kept in the cluster: a head ConfigMap per app, plus shards when large.

Head ``reconciler-<app>`` (labelled ``reconciler.imagebot.dev/inventory=<app>``):
``data.status`` — last applied revision, sync state, health, drift, last prune, conflicts (JSON);
``data.manifest`` — ``{"format": 2, "digest", "objects", "shards": [names]}``;
``binaryData.inventory`` — the inventory itself when small (gzip of JSON grouped by
apiVersion/kind/namespace), else in the named shard ConfigMaps (``binaryData.chunk``, labelled
``reconciler.imagebot.dev/inventory-shard=<app>``), concatenated in order.

Why: one ConfigMap holds at most 1 MiB; 7,000 long names in the old plain JSON passed it and every
write failed from then on. Compressed and sharded, 10,000+ objects fit.

Atomic enough: shards are named after the digest of what they hold and written first; the head,
written last in one request, switches to them; shards no head names are deleted afterwards. A crash
at any point leaves the previous head and its shards intact. A read checks the digest.

The first format (``data.inventory``, a JSON list of ``{key, apiVersion}``) is still read; the
next write replaces it. Written only when its content changes, so a no-op reconcile writes nothing.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import zlib
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from reconciler.cluster import KubeCluster, _message
from reconciler.errors import ClusterError
from reconciler.model import ResourceKey, group_of

log = logging.getLogger(__name__)

INVENTORY_LABEL = "reconciler.imagebot.dev/inventory"
SHARD_LABEL = "reconciler.imagebot.dev/inventory-shard"
FORMAT = 2
INLINE_MAX = 256 * 1024  # compressed bytes kept in the head itself (the head also carries the status)
SHARD_MAX = 700 * 1024  # compressed bytes per shard: base64 in the request stays well under the 1 MiB object limit
MAX_INFLATED = 256 * 1024 * 1024  # a corrupt or hostile inventory never inflates past this


@dataclass(frozen=True, slots=True)
class Inventory:
    entries: dict[ResourceKey, str]  # key → apiVersion: every object this app may have created and not yet pruned
    status: dict[str, Any]
    # kept only to be pruned later (no longer declared: protected, opted out, pruning off or refused)
    pending: frozenset[ResourceKey] = field(default_factory=frozenset)
    shards: tuple[str, ...] = ()  # where it was read from (names of shard ConfigMaps), for the next write

    @property
    def declared(self) -> frozenset[ResourceKey]:
        """What the app's source declares (as of its last write): entries not merely pending prune."""
        return frozenset(self.entries) - self.pending


def configmap_name(app: str) -> str:
    return f"reconciler-{app}"


def _corrupt(namespace: str, app: str, why: str) -> ClusterError:
    return ClusterError(f"the inventory of {app} in {namespace} ({configmap_name(app)}) is corrupt ({why}); fix or delete it")


# ---------------------------------------------------------------- encoding (pure)
def encode(entries: dict[ResourceKey, str], pending: frozenset[ResourceKey]) -> bytes:
    """Deterministic gzip of the entries grouped by apiVersion/kind/namespace (names repeat nothing else)."""
    groups: dict[tuple[str, str, str], tuple[list[str], list[str]]] = {}
    for k, api in entries.items():
        names, kept = groups.setdefault((api, k.kind, k.namespace), ([], []))
        (kept if k in pending else names).append(k.name)
    doc = {
        "format": FORMAT,
        "groups": [
            {"apiVersion": api, "kind": kind, "namespace": ns, "names": sorted(names), "pending": sorted(kept)}
            for (api, kind, ns), (names, kept) in sorted(groups.items())
        ],
    }
    raw = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return gzip.compress(raw, compresslevel=9, mtime=0)


def decode(blob: bytes) -> tuple[dict[ResourceKey, str], frozenset[ResourceKey]]:
    """Inverse of ``encode``; ValueError on anything malformed."""
    try:
        d = zlib.decompressobj(wbits=31)
        raw = d.decompress(blob, MAX_INFLATED)
        if d.unconsumed_tail or not d.eof:
            raise ValueError("truncated or larger than the limit")
    except zlib.error as exc:
        raise ValueError(f"not gzip: {exc}") from None
    doc = json.loads(raw)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("groups"), list):
        raise ValueError("unknown layout")
    entries: dict[ResourceKey, str] = {}
    pending = set()
    for g in doc["groups"]:
        api, kind, ns = g["apiVersion"], g["kind"], g["namespace"]
        if not all(isinstance(v, str) for v in (api, kind, ns)) or not api or not kind:
            raise ValueError("a group without apiVersion/kind")
        for name, is_pending in [*((n, False) for n in g["names"]), *((n, True) for n in g["pending"])]:
            if not isinstance(name, str) or not name:
                raise ValueError("an entry without a name")
            key = ResourceKey(group_of(api), kind, ns, name)
            entries[key] = api
            if is_pending:
                pending.add(key)
    return entries, frozenset(pending)


def _chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    """(inline part, shard parts): small inventories live in the head alone."""
    if len(blob) <= INLINE_MAX:
        return blob, []
    return b"", [blob[i : i + SHARD_MAX] for i in range(0, len(blob), SHARD_MAX)]


def _digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:20]


def shard_name(app: str, digest: str, index: int) -> str:
    return f"{configmap_name(app)}-inv-{digest}-{index}"


# ---------------------------------------------------------------- reading
def load(cluster: KubeCluster, app: str, namespace: str) -> Inventory:
    head = _get(cluster, namespace, configmap_name(app), f"read inventory of {app}")
    if head is None:
        return Inventory({}, {})
    return _parse(cluster, app, namespace, head)


def load_others(cluster: KubeCluster, app: str, namespace: str) -> dict[str, Inventory]:
    """Every other app's inventory in ``namespace`` (one list, plus their shards): who declares what."""
    try:
        doc = cluster._call("GET", f"/api/v1/namespaces/{namespace}/configmaps", [("labelSelector", INVENTORY_LABEL)])
    except ApiException as exc:
        raise ClusterError(f"list the inventories in {namespace}: HTTP {exc.status}: {_message(exc)}") from exc
    out: dict[str, Inventory] = {}
    for head in doc.get("items") or []:
        other = ((head.get("metadata") or {}).get("labels") or {}).get(INVENTORY_LABEL, "")
        if not other or other == app or head["metadata"].get("name") != configmap_name(other):
            continue
        try:
            out[other] = _parse(cluster, other, namespace, head)
        except ClusterError:
            # a shard collected between the list and its read (the app just wrote anew): read its head again
            try:
                out[other] = load(cluster, other, namespace)
            except ClusterError as exc:  # unknown, as if absent: its claims count as live, its declarations unseen
                log.warning("the inventory of app %r is unreadable: %s", other, exc)
    return out


def _get(cluster: KubeCluster, namespace: str, name: str, what: str) -> dict[str, Any] | None:
    try:
        return dict(cluster._call("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}"))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise ClusterError(f"{what}: HTTP {exc.status}: {_message(exc)}") from exc


def _parse(cluster: KubeCluster, app: str, namespace: str, head: dict[str, Any]) -> Inventory:
    data = head.get("data") or {}
    try:
        status = json.loads(data.get("status") or "{}")
    except ValueError:
        raise _corrupt(namespace, app, "status is not JSON") from None
    if "manifest" not in data:  # the first format: plain JSON in data.inventory
        try:
            raw = json.loads(data.get("inventory") or "[]")
            entries = {ResourceKey.decode(e["key"]): e["apiVersion"] for e in raw}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _corrupt(namespace, app, "inventory is not a list of entries") from None
        return Inventory(entries, status)
    try:
        manifest = json.loads(data["manifest"])
        digest, shards = str(manifest["digest"]), [str(s) for s in manifest["shards"]]
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r} is not {FORMAT} (written by a newer reconciler?)")
        blob = base64.b64decode((head.get("binaryData") or {}).get("inventory") or "", validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise _corrupt(namespace, app, f"manifest: {exc}") from None
    for name in shards:
        shard = _get(cluster, namespace, name, f"read inventory shard {name} of {app}")
        if shard is None:
            raise _corrupt(namespace, app, f"shard {name} is missing")
        try:
            blob += base64.b64decode((shard.get("binaryData") or {}).get("chunk") or "", validate=True)
        except ValueError:
            raise _corrupt(namespace, app, f"shard {name} is not base64") from None
    if _digest(blob) != digest:
        raise _corrupt(namespace, app, "its shards do not match the digest in the head")
    try:
        entries, pending = decode(blob)
    except (ValueError, KeyError, TypeError) as exc:
        raise _corrupt(namespace, app, str(exc)) from None
    return Inventory(entries, status, pending, tuple(shards))


# ---------------------------------------------------------------- writing
def save(cluster: KubeCluster, app: str, namespace: str, inv: Inventory, previous: Inventory | None) -> bool:
    """Write the inventory and status when they changed; True when written."""
    if (
        previous is not None
        and previous.entries == inv.entries
        and previous.pending == inv.pending
        and previous.status == inv.status
    ):
        return False
    blob = encode(inv.entries, inv.pending)
    digest = _digest(blob)
    inline, parts = _chunks(blob)
    names = [shard_name(app, digest, i) for i in range(len(parts))]
    for name, part in zip(names, parts, strict=True):
        _apply(
            cluster,
            namespace,
            {
                "metadata": {"name": name, "labels": {SHARD_LABEL: app}},
                "binaryData": {"chunk": base64.b64encode(part).decode()},
            },
            f"write inventory shard {name} of {app}",
        )
    manifest = {"format": FORMAT, "digest": digest, "objects": len(inv.entries), "shards": names}
    head: dict[str, Any] = {
        "metadata": {"name": configmap_name(app), "labels": {INVENTORY_LABEL: app}},
        "data": {"status": json.dumps(inv.status, indent=1, sort_keys=True), "manifest": json.dumps(manifest)},
    }
    if inline:
        head["binaryData"] = {"inventory": base64.b64encode(inline).decode()}
    _apply(cluster, namespace, head, f"write inventory of {app}")
    if parts or (previous is not None and previous.shards):
        _collect(cluster, app, namespace, set(names))
    return True


def _apply(cluster: KubeCluster, namespace: str, body: dict[str, Any], what: str) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", **body}
    body["metadata"] = {**body["metadata"], "namespace": namespace}
    try:
        cluster._call(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/configmaps/{body['metadata']['name']}",
            [("fieldManager", cluster.field_manager), ("force", "true")],
            body,
            "application/apply-patch+yaml",
        )
    except ApiException as exc:
        raise ClusterError(f"{what}: HTTP {exc.status}: {_message(exc)}") from exc


def _collect(cluster: KubeCluster, app: str, namespace: str, keep: set[str]) -> None:
    """Delete this app's shards the head no longer names (superseded, or left by a crash mid-write)."""
    try:
        doc = cluster._call("GET", f"/api/v1/namespaces/{namespace}/configmaps", [("labelSelector", f"{SHARD_LABEL}={app}")])
        for item in doc.get("items") or []:
            name = (item.get("metadata") or {}).get("name", "")
            if name and name not in keep:
                cluster._call("DELETE", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    except ApiException as exc:
        if exc.status != 404:  # the next write collects what this one could not
            raise ClusterError(f"remove old inventory shards of {app}: HTTP {exc.status}: {_message(exc)}") from exc
