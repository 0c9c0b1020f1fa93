"""The inventory against the test apiserver: large (sharded), old format read, crash-safe writes."""

from __future__ import annotations

import json
import random
import string
import threading
from pathlib import Path
from typing import Any

import pytest

from reconciler import inventory
from reconciler.cluster import KubeCluster
from reconciler.engine import Engine, Settings
from reconciler.errors import ClusterError
from reconciler.inventory import Inventory, load, save
from reconciler.model import Action, Manifest, ResourceKey
from reconciler.plan import PruneGuards
from tests.fixtures.cluster import TestCluster

pytestmark = pytest.mark.cluster


def many(n: int, seed: int) -> dict[ResourceKey, str]:
    """n objects with long, random (hardly compressible) names across a few kinds and namespaces."""
    rnd = random.Random(seed)
    kinds = [("v1", "ConfigMap"), ("v1", "Secret"), ("apps/v1", "Deployment"), ("v1", "Service")]
    out = {}
    for i in range(n):
        api, kind = kinds[i % len(kinds)]
        name = f"{i:05d}-" + "".join(rnd.choices(string.ascii_lowercase + string.digits, k=230))
        out[ResourceKey("apps" if api == "apps/v1" else "", kind, f"ns-{i % 7}", name)] = api
    return out


class Faulty(KubeCluster):
    """Fails the n-th write whose path contains ``match`` — a crash at that point of a save."""

    def __init__(self, api: Any, match: str, nth: int = 1) -> None:
        super().__init__(api)
        self.match, self.left = match, nth

    def _call(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if method == "PATCH" and self.match in path:
            self.left -= 1
            if self.left == 0:
                raise ClusterError(f"injected crash writing {path}")
        return super()._call(method, path, *args, **kwargs)


def test_ten_thousand_long_names_are_written_and_read_back(cluster: TestCluster, namespace: str) -> None:
    c = KubeCluster(cluster.api_client())
    entries = many(10_000, 1)
    assert len(json.dumps([{"key": k.encode(), "apiVersion": v} for k, v in entries.items()])) > 2 * 1024 * 1024
    pending = frozenset(list(entries)[:10])
    inv = Inventory(entries, {"revision": "r1"}, pending)
    assert save(c, "big", namespace, inv, Inventory({}, {}))
    got = load(c, "big", namespace)
    assert got.entries == entries and got.pending == pending and got.status == {"revision": "r1"}
    assert len(got.shards) >= 2, "too large for one object: sharded"
    assert not save(c, "big", namespace, got, got), "unchanged: nothing written"
    # one entry fewer: new shards, the old ones collected
    fewer = dict(entries)
    fewer.pop(next(iter(fewer)))
    assert save(c, "big", namespace, Inventory(fewer, {"revision": "r2"}), got)
    again = load(c, "big", namespace)
    assert again.entries == fewer and set(again.shards).isdisjoint(got.shards)
    listed = c._call("GET", f"/api/v1/namespaces/{namespace}/configmaps", [("labelSelector", inventory.SHARD_LABEL)])
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == sorted(again.shards), "superseded shards deleted"


@pytest.mark.parametrize(("match", "nth"), [("-inv-", 2), ("/configmaps/reconciler-crash", 0)], ids=["in_a_shard", "at_the_head"])
def test_a_crash_mid_write_keeps_the_previous_inventory(cluster: TestCluster, namespace: str, match: str, nth: int) -> None:
    c = KubeCluster(cluster.api_client())
    old = many(6_000, 2)
    save(c, "crash", namespace, Inventory(old, {"revision": "old"}), Inventory({}, {}))
    before = load(c, "crash", namespace)
    new = many(6_000, 3)
    shards = len(before.shards)
    faulty = Faulty(cluster.api_client(), match, nth or shards + 1)  # the head is the write after every shard
    with pytest.raises(ClusterError, match="injected crash"):
        save(faulty, "crash", namespace, Inventory(new, {"revision": "new"}), before)
    after = load(c, "crash", namespace)
    assert after.entries == old and after.status == {"revision": "old"}
    # the next write succeeds and collects what the crashed one left
    save(c, "crash", namespace, Inventory(new, {"revision": "new"}), after)
    final = load(c, "crash", namespace)
    assert final.entries == new
    listed = c._call("GET", f"/api/v1/namespaces/{namespace}/configmaps", [("labelSelector", inventory.SHARD_LABEL)])
    assert sorted(i["metadata"]["name"] for i in listed["items"]) == sorted(final.shards)


def test_the_first_format_is_read_and_replaced_on_the_next_write(cluster: TestCluster, namespace: str) -> None:
    c = KubeCluster(cluster.api_client())
    keys = {ResourceKey("", "ConfigMap", namespace, f"c{i}"): "v1" for i in range(3)}
    keys[ResourceKey("apps", "Deployment", namespace, "web")] = "apps/v1"
    old_body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "reconciler-legacy", "namespace": namespace, "labels": {inventory.INVENTORY_LABEL: "legacy"}},
        "data": {
            "inventory": json.dumps([{"key": k.encode(), "apiVersion": v} for k, v in keys.items()], indent=1),
            "status": json.dumps({"revision": "r0", "sync": "Synced"}),
        },
    }
    c._call(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/configmaps/reconciler-legacy",
        [("fieldManager", c.field_manager), ("force", "true")],
        old_body,
        "application/apply-patch+yaml",
    )
    got = load(c, "legacy", namespace)
    assert got.entries == keys and got.status["revision"] == "r0" and got.pending == frozenset()
    save(c, "legacy", namespace, Inventory(keys, {**got.status, "revision": "r1"}), got)
    head = c._call("GET", f"/api/v1/namespaces/{namespace}/configmaps/reconciler-legacy")
    assert "inventory" not in head["data"] and "manifest" in head["data"], "written in the new format"
    assert load(c, "legacy", namespace).entries == keys


@pytest.mark.parametrize(
    ("data", "binary"),
    [
        ({"inventory": "{not json"}, {}),
        ({"manifest": json.dumps({"format": 2, "digest": "x", "shards": []})}, {"inventory": "aGVsbG8="}),
        ({"manifest": json.dumps({"format": 2, "digest": "x", "shards": ["reconciler-bad-inv-x-0"]})}, {}),
        ({"manifest": json.dumps({"format": 99, "digest": "x", "shards": []})}, {}),
    ],
    ids=["old_not_json", "digest_mismatch", "missing_shard", "newer_format"],
)
def test_a_corrupt_inventory_is_a_clear_error(
    cluster: TestCluster, namespace: str, data: dict[str, str], binary: dict[str, str]
) -> None:
    c = KubeCluster(cluster.api_client())
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "reconciler-bad", "namespace": namespace}}
    body["data"], body["binaryData"] = data, binary
    c._call("POST", f"/api/v1/namespaces/{namespace}/configmaps", None, body)
    with pytest.raises(ClusterError, match=r"inventory of bad .* is corrupt"):
        load(c, "bad", namespace)


def test_encoding_round_trips_and_is_deterministic() -> None:
    entries = many(50, 4)
    pending = frozenset(list(entries)[::7])
    shuffled = dict(random.Random(5).sample(list(entries.items()), len(entries)))
    blob = inventory.encode(entries, pending)
    assert blob == inventory.encode(shuffled, pending)
    assert inventory.decode(blob) == (entries, pending)


# ---------------------------------------------------------------- the engine's use of it
def _engine(c: KubeCluster, ns: str, app: str, **guards: Any) -> Engine:
    return Engine(c, Settings(app, ns, ns, guards=PruneGuards(**guards)))


def _source(d: Path, *objs: dict[str, Any]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*.yaml"):
        f.unlink()
    for i, o in enumerate(objs):
        (d / f"{i:03d}.yaml").write_text(json.dumps(o))
    return d


def _cm(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}}


def test_a_protected_object_kept_from_pruning_is_pruned_once_allowed(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    c = KubeCluster(cluster.api_client())
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    key = ResourceKey("", "PersistentVolumeClaim", namespace, "data")
    keep = [_cm(f"k{i}") for i in range(3)]
    src = _source(tmp_path / "src", pvc, *keep)
    _engine(c, namespace, "prot").sync(src)
    _source(src, *keep)
    r = _engine(c, namespace, "prot").sync(src)
    assert [(a.action, a.key) for a in r.plan.prunes] == [(Action.SKIP_PRUNE, key)] and "--allow-prune-kind" in r.plan.prunes[
        0
    ].reason
    inv = load(c, "prot", namespace)
    assert key in inv.entries and key in inv.pending, "kept in the inventory, marked as awaiting prune"
    r = _engine(c, namespace, "prot").sync(src)
    assert [a.action for a in r.plan.prunes] == [Action.SKIP_PRUNE], "still remembered a sync later"
    r = _engine(c, namespace, "prot", allowed_kinds=frozenset({"PersistentVolumeClaim"})).sync(src)
    assert r.pruned == (key,) and c.get("v1", key) is None, "following the advice prunes it"
    assert key not in load(c, "prot", namespace).entries


def test_a_kept_object_declared_again_is_no_longer_awaiting_prune(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    c = KubeCluster(cluster.api_client())
    optout = _cm("optout")
    optout["metadata"]["annotations"] = {"reconciler.imagebot.dev/prune": "disabled"}
    keep = [_cm(f"k{i}") for i in range(3)]
    src = _source(tmp_path / "src", optout, *keep)
    _engine(c, namespace, "again").sync(src)
    _engine(c, namespace, "again").sync(_source(src, *keep))
    key = ResourceKey("", "ConfigMap", namespace, "optout")
    assert key in load(c, "again", namespace).pending
    _engine(c, namespace, "again").sync(_source(src, optout, *keep))
    inv = load(c, "again", namespace)
    assert key in inv.entries and not inv.pending


class DiesMidApply(KubeCluster):
    """Lets ``allowed`` applies through, then fails every other one — a sync that dies half-way."""

    def __init__(self, api: Any, allowed: int) -> None:
        super().__init__(api)
        self.allowed = allowed
        self._left_lock = threading.Lock()

    def apply(self, manifest: Manifest, force: bool = True, dry_run: bool = False) -> dict[str, Any]:
        with self._left_lock:
            self.allowed -= 1
            if self.allowed < 0:
                raise ClusterError(f"injected: the sync died before applying {manifest.key}")
        return super().apply(manifest, force, dry_run)


def test_objects_created_by_a_sync_that_died_are_pruned_later(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    c = KubeCluster(cluster.api_client())
    keep = [_cm(f"k{i}") for i in range(4)]
    src = _source(tmp_path / "src", *keep)
    _engine(c, namespace, "died").sync(src)
    _source(src, *keep, *(_cm(f"n{i}") for i in range(6)))
    with pytest.raises(ClusterError, match="injected"):
        _engine(DiesMidApply(cluster.api_client(), allowed=3), namespace, "died").sync(src)
    created = [ResourceKey("", "ConfigMap", namespace, f"n{i}") for i in range(6)]
    assert sum(c.get("v1", k) is not None for k in created) == 3, "three were created before the sync died"
    _source(src, *keep)  # and they left Git before the next successful sync
    r = _engine(c, namespace, "died").sync(src)
    assert all(c.get("v1", k) is None for k in created), f"leaked: {[str(k) for k in created if c.get('v1', k)]}"
    assert len(r.pruned) == 3
    assert set(load(c, "died", namespace).entries) == {ResourceKey("", "ConfigMap", namespace, f"k{i}") for i in range(4)}


def test_an_app_of_ten_thousand_long_named_objects_syncs_and_prunes(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    """The whole path at the size that broke it: apply, inventory write, and prune still working afterwards."""
    names = [f"{i:05d}-" + "x" * 180 + f"-{i:05d}" for i in range(10_000)]
    src = tmp_path / "src"
    src.mkdir()
    docs = [json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}}) for n in names]
    (src / "all.yaml").write_text("\n---\n".join(docs))
    c = KubeCluster(cluster.api_client())
    e = Engine(c, Settings("huge", namespace, namespace, workers=16))
    r = e.sync(src)
    assert len(r.plan.applies) == 10_000
    assert len(load(c, "huge", namespace).entries) == 10_000
    (src / "all.yaml").write_text("\n---\n".join(docs[150:]))
    r = e.sync(src)
    assert len(r.pruned) == 150 and c.get("v1", ResourceKey("", "ConfigMap", namespace, names[0])) is None
    inv = load(c, "huge", namespace)
    assert len(inv.entries) == 9_850
    assert len(inv.status["lastPrune"]) == 100 and inv.status["lastPruneMore"] == 50, "the status stays small too"
