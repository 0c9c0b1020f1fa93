"""The loop against the real test apiserver: the reconciler's own writes are never drift."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.cluster import KubeCluster
from reconciler.diff import Rules
from reconciler.engine import Engine, Settings
from reconciler.model import Manifest, ResourceKey
from tests.fixtures.cluster import TestCluster
from tests.reconciler.test_reconciler import _patch_as, _wait, configmap, deployment, write_source

pytestmark = pytest.mark.cluster


class SlowAfterApply(KubeCluster):
    """A cluster whose API server answers the rest of a sync slowly: the watch sees each apply well before
    the sync returns (on a busy real cluster that window is often longer than the watch latency)."""

    def apply(self, manifest: Manifest, force: bool = True, dry_run: bool = False) -> dict[str, Any]:
        out = super().apply(manifest, force, dry_run)
        if threading.current_thread().name.startswith("ThreadPool"):  # the sync's apply, not a watch correction
            time.sleep(0.3)
        return out


def _generation(e: Engine, key: ResourceKey) -> int:
    return int(((e.cluster.get("apps/v1", key) or {}).get("metadata") or {})["generation"])


def _settled(e: Engine, key: ResourceKey, n: int) -> None:
    """Wait until the watch has handled every event on ``key`` so far: an annotation kubectl adds after them is
    removed by the watch only once it has caught up (one object's events arrive in order)."""
    _patch_as(e, key, "kubectl-edit", {"metadata": {"annotations": {f"sentinel-{n}": "x"}}})
    assert _wait(
        lambda: f"sentinel-{n}" not in ((e.cluster.get("apps/v1", key) or {})["metadata"].get("annotations") or {}),
        timeout=20,
    ), "the watch caught up"


def test_each_git_change_rolls_out_once_while_the_watch_runs(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    e = Engine(SlowAfterApply(cluster.api_client()), Settings("loop1", namespace, namespace, rules=Rules()))
    src = write_source(tmp_path / "src", deployment("web", image="demo/app:1.0.0"))
    e.sync(src, "rev0")
    key = next(iter(e.desired))
    stop = threading.Event()
    e.watch(stop, correct=True)
    try:
        _settled(e, key, 0)
        assert _generation(e, key) == 1
        for n, image in enumerate(("demo/app:1.1.0", "demo/app:1.2.0", "demo/app:1.3.0"), start=1):
            write_source(src, deployment("web", image=image))
            e.sync(src, f"rev{n}")
            _settled(e, key, n)
            live = e.cluster.get("apps/v1", key) or {}
            assert live["spec"]["template"]["spec"]["containers"][0]["image"] == image
            assert _generation(e, key) == 1 + n, "one rollout per Git change: the watch never reverted our own apply"
        assert not e.drift, "the reconciler's own writes are not drift"
    finally:
        stop.set()


def test_a_field_our_own_manager_wrote_is_not_drift_to_correct(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    """Whatever revision the watch holds, a value the reconciler's field manager set is ours, never reverted."""
    e = Engine(KubeCluster(cluster.api_client()), Settings("loop2", namespace, namespace, rules=Rules()))
    src = write_source(tmp_path / "src", deployment("web", image="demo/app:1.0.0"))
    e.sync(src, "rev0")
    key = next(iter(e.desired))
    newer = Engine(KubeCluster(cluster.api_client()), Settings("loop2", namespace, namespace, rules=Rules()))
    newer.sync(write_source(tmp_path / "src2", deployment("web", image="demo/app:2.0.0")), "rev1")
    live = e.cluster.get("apps/v1", key) or {}
    writes = e.cluster.writes
    assert e.on_event("MODIFIED", live, time.monotonic(), correct=True) == []
    assert e.cluster.writes == writes, "nothing re-applied"
    assert not e.drift
    assert _generation(e, key) == 2


class SlowAfterDelete(KubeCluster):
    def delete(self, api_version: str, key: ResourceKey) -> None:
        super().delete(api_version, key)
        time.sleep(0.3)  # the rest of the sync is slow: the watch sees the deletion long before the sync returns


def test_an_object_pruned_while_the_watch_runs_stays_deleted(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    e = Engine(SlowAfterDelete(cluster.api_client()), Settings("loop3", namespace, namespace, rules=Rules()))
    src = write_source(tmp_path / "src", configmap("keep"), configmap("keep2"), configmap("gone"))
    e.sync(src, "rev0")
    stop = threading.Event()
    e.watch(stop, correct=True)
    try:
        write_source(src, configmap("keep"), configmap("keep2"))
        assert [k.name for k in e.sync(src, "rev1").pruned] == ["gone"]
        keep = ResourceKey("", "ConfigMap", namespace, "keep")
        # the watch of ConfigMaps delivers in order: once it has removed this later addition, it has seen the deletion
        other = KubeCluster(e.cluster.api, "kubectl-edit")
        other._call(
            "PATCH",
            other._path("v1", keep),
            [("fieldManager", "kubectl-edit")],
            {"metadata": {"annotations": {"sentinel": "x"}}},
            "application/strategic-merge-patch+json",
        )
        assert _wait(lambda: "sentinel" not in ((e.cluster.get("v1", keep) or {})["metadata"].get("annotations") or {}), 20)
        assert e.cluster.get("v1", ResourceKey("", "ConfigMap", namespace, "gone")) is None, "the watch did not re-create it"
    finally:
        stop.set()
