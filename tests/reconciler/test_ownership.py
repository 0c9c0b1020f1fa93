"""Two apps declaring one object: the first claim wins, conflicts are reported, nothing is taken in turn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.cluster import KubeCluster
from reconciler.engine import Engine, Settings
from reconciler.inventory import load
from reconciler.model import TAKE_OVER_ANNOTATION, TRACKING_LABEL, Action, ResourceKey
from reconciler.plan import PruneGuards
from tests.fixtures.cluster import TestCluster
from tests.reconciler.test_reconciler import app_cli, configmap, write_source

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]


def engine(cluster: TestCluster, ns: str, app: str) -> Engine:
    return Engine(KubeCluster(cluster.api_client()), Settings(app, ns, ns, guards=PruneGuards(force=True)))


def shared(owner: str, take_over: bool = False) -> dict[str, Any]:
    cm = configmap("shared", owner=owner)
    if take_over:
        cm["metadata"]["annotations"] = {TAKE_OVER_ANNOTATION: "true"}
    return cm


def live(e: Engine, ns: str) -> dict[str, Any]:
    obj = e.cluster.get("v1", ResourceKey("", "ConfigMap", ns, "shared"))
    assert obj is not None
    return obj


def test_the_second_app_leaves_the_object_alone_reports_both_names_and_exits_8(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    a = engine(cluster, namespace, "app-a")
    a.sync(write_source(tmp_path / "a", shared("a"), configmap("only-a")))
    before = live(a, namespace)["metadata"]["resourceVersion"]
    src_b = write_source(tmp_path / "b", shared("b"), configmap("only-b"))
    code, _, err = app_cli(cluster, "sync", src_b, "app-b", namespace, "--prune")
    assert code == 8, err
    assert "conflict" in err and "'app-a'" in err and "'app-b'" in err and TAKE_OVER_ANNOTATION in err
    obj = live(a, namespace)
    assert obj["metadata"]["resourceVersion"] == before, "not applied by the second app"
    assert obj["metadata"]["labels"][TRACKING_LABEL] == "app-a" and obj["data"] == {"owner": "a"}
    assert a.cluster.get("v1", ResourceKey("", "ConfigMap", namespace, "only-b")) is not None, "the rest was applied"
    status = load(a.cluster, "app-b", namespace).status
    assert status["sync"] == "Conflict" and "app-a" in status["conflicts"][0]
    # the owner, syncing again, sees nothing to do: no fight
    assert all(x.action is Action.UNCHANGED for x in a.sync(tmp_path / "a").plan.applies)


def test_take_over_is_explicit_and_cannot_be_taken_back_in_turn(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    a, b = engine(cluster, namespace, "app-a"), engine(cluster, namespace, "app-b")
    src_a = write_source(tmp_path / "a", shared("a"))
    a.sync(src_a)
    r = b.sync(write_source(tmp_path / "b", shared("b", take_over=True)))
    assert [(x.action, x.reason) for x in r.plan.applies] == [
        (Action.UPDATE, f"taken over from app 'app-a' ({TAKE_OVER_ANNOTATION})")
    ]
    assert live(b, namespace)["metadata"]["labels"][TRACKING_LABEL] == "app-b"
    for src in (src_a, write_source(src_a, shared("a", take_over=True))):  # A answers with take-over too: still B's
        r = a.sync(src)
        assert [x.action for x in r.plan.applies] == [Action.CONFLICT] and "took it over" in r.plan.applies[0].reason
    obj = live(b, namespace)
    assert obj["metadata"]["labels"][TRACKING_LABEL] == "app-b" and obj["data"] == {"owner": "b"}


def test_an_object_another_app_still_declares_is_never_pruned_and_passes_to_it(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    a, b = engine(cluster, namespace, "app-a"), engine(cluster, namespace, "app-b")
    src_a = write_source(tmp_path / "a", shared("a"), configmap("only-a"))
    a.sync(src_a)
    src_b = write_source(tmp_path / "b", shared("b"))
    assert [x.action for x in b.sync(src_b).plan.applies] == [Action.CONFLICT]
    r = a.sync(write_source(src_a, configmap("only-a")))
    assert [(x.action, x.reason) for x in r.plan.prunes] == [(Action.RELEASE, "still declared by app 'app-b': left to it")]
    assert r.pruned == () and live(a, namespace)["data"] == {"owner": "a"}, "not deleted"
    assert ResourceKey("", "ConfigMap", namespace, "shared") not in load(a.cluster, "app-a", namespace).entries
    r = b.sync(src_b)
    assert [x.action for x in r.plan.applies] == [Action.UPDATE] and "adopted" in r.plan.applies[0].reason
    obj = live(b, namespace)
    assert obj["metadata"]["labels"][TRACKING_LABEL] == "app-b" and obj["data"] == {"owner": "b"}


def test_two_run_loops_on_overlapping_sources_stop_writing(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    """The fight that never ended (thousands of writes in seconds): the object's resourceVersion settles."""
    procs = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        for app in ("a", "b"):
            src = write_source(tmp_path / app, shared(app), configmap(f"only-{app}"))
            argv = [sys.executable, "-m", "reconciler", "run", "--kubeconfig", str(cluster.kubeconfig), "--source", str(src)]
            argv += ["--name", f"loop-{app}", "--namespace", namespace, "--inventory-namespace", namespace, "--prune"]
            argv += ["--interval", "0.1", "--resync", "0.3"]
            log = (tmp_path / f"{app}.log").open("w")
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT))
        e = engine(cluster, namespace, "observer")
        deadline = time.monotonic() + 60
        while not all(load(e.cluster, f"loop-{x}", namespace).status.get("sync") for x in "ab"):
            assert time.monotonic() < deadline, "both loops synced"
            assert all(p.poll() is None for p in procs), (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
            time.sleep(0.2)
        # settled = unchanged across a window in which each loop resyncs several times
        stable = False
        while not stable and time.monotonic() < deadline:
            rv = live(e, namespace)["metadata"]["resourceVersion"]
            time.sleep(2.0)
            stable = live(e, namespace)["metadata"]["resourceVersion"] == rv
        assert stable, "the two loops kept writing the shared object"
        owner = live(e, namespace)["metadata"]["labels"][TRACKING_LABEL]
        loser = "loop-b" if owner == "loop-a" else "loop-a"
        # the loser says so at its next sync (on a loaded machine that may come after the window above)
        while load(e.cluster, loser, namespace).status.get("sync") != "Conflict" and time.monotonic() < deadline + 30:
            time.sleep(0.2)
        assert load(e.cluster, loser, namespace).status.get("sync") == "Conflict"
        assert all(p.poll() is None for p in procs), "both loops still running"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert json.loads(json.dumps(live(e, namespace)["data"])) in ({"owner": "a"}, {"owner": "b"})
