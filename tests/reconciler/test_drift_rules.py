"""Which changes are drift, whatever the verb; what a namespace-confined source may touch (real test apiserver)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler.model import Action, ResourceKey
from tests.fixtures.cluster import TestCluster
from tests.reconciler.test_reconciler import app_cli, configmap, deployment, engine, write_source

pytestmark = pytest.mark.cluster


def kubectl(cluster: TestCluster, *args: str) -> str:
    """The real kubectl, so managedFields are exactly what a person's command leaves."""
    proc = subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _live(cluster: TestCluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return dict(json.loads(kubectl(cluster, "-n", namespace, "get", kind, name, "-o", "json", "--show-managed-fields")))


# ---------------------------------------------------------------- item 8: --allowed-namespaces confines cluster scope


def test_allowed_namespaces_refuses_cluster_scoped_objects_unless_their_kind_is_allowed(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    crb = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{namespace}-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    }
    other_ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{namespace}-b"}}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{namespace}.example.com"},
        "spec": {
            "group": f"{namespace}.example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object"}}}],
        },
    }
    src = write_source(tmp_path / "src", configmap("ok"), crb, other_ns, crd)
    code, _, err = app_cli(cluster, "sync", src, "s1", namespace, "--allowed-namespaces", namespace)
    assert code == 2, err
    for what in (f"ClusterRoleBinding.rbac.authorization.k8s.io {namespace}-admin", f"Namespace {namespace}-b", "widgets."):
        assert what in err, err
    assert "--allow-cluster-kind" in err
    e = engine(cluster, namespace, "s1")
    assert e.cluster.get("v1", ResourceKey("", "ConfigMap", namespace, "ok")) is None, "nothing applied"
    assert (
        e.cluster.get(
            "rbac.authorization.k8s.io/v1",
            ResourceKey("rbac.authorization.k8s.io", "ClusterRoleBinding", "", crb["metadata"]["name"]),
        )
        is None
    )

    # allowing the kind is not allowing another namespace: a Namespace must still be one of the allowed ones
    write_source(src, configmap("ok"), other_ns)
    code, _, err = app_cli(
        cluster, "sync", src, "s1", namespace, "--allowed-namespaces", namespace, "--allow-cluster-kind", "Namespace"
    )
    assert code == 2 and f"Namespace {namespace}-b is outside --allowed-namespaces" in err, err

    # an explicitly allowed kind is applied
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"{namespace}-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
    }
    write_source(src, configmap("ok"), role)
    argv = ("--allowed-namespaces", namespace, "--allow-cluster-kind", "ClusterRole.rbac.authorization.k8s.io")
    code, _, err = app_cli(cluster, "sync", src, "s1", namespace, *argv)
    assert code == 0, err
    kubectl(cluster, "delete", "clusterrole", role["metadata"]["name"])

    # without --allowed-namespaces nothing changes: cluster-scoped objects are allowed by default
    write_source(src, configmap("ok2"))
    assert app_cli(cluster, "sync", src, "s2", namespace)[0] == 0


# ---------------------------------------------------------------- item 11: kubectl scale = kubectl patch


def test_kubectl_scale_of_undeclared_replicas_is_drift_like_a_patch(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    d = deployment("web")
    del d["spec"]["replicas"]  # Git leaves replicas alone
    src = write_source(tmp_path / "src", d)
    e = engine(cluster, namespace, "k1")
    e.sync(src)
    key = next(iter(e.desired))

    def replicas() -> int:
        return int((e.cluster.get("apps/v1", key) or {})["spec"].get("replicas", 1))

    kubectl(cluster, "-n", namespace, "patch", "deployment/web", "-p", '{"spec":{"replicas":3}}')
    assert [(i.pointer, i.manager, i.live) for i in e.diff(src)[0]] == [("/spec/replicas", "kubectl-patch", 3)]
    assert e.sync(src).plan.writes[0].remove == ("/spec/replicas",)
    assert replicas() == 1, "back to the default"

    # the same field through /scale: the server records it as manager kubectl, subresource scale
    kubectl(cluster, "-n", namespace, "scale", "deployment/web", "--replicas=4")
    managed = _live(cluster, namespace, "deployment", "web")["metadata"]["managedFields"]
    (scale,) = [m for m in managed if m.get("subresource")]
    assert scale["subresource"] == "scale" and scale["fieldsV1"] == {"f:spec": {"f:replicas": {}}}, managed
    items, _ = e.diff(src)
    assert [(i.pointer, i.manager, i.live) for i in items] == [("/spec/replicas", scale["manager"], 4)], items
    r = e.sync(src)
    (a,) = r.plan.writes
    assert a.action is Action.REMOVE_FIELDS and a.remove == ("/spec/replicas",)
    assert replicas() == 1, "undone like the patch"
    assert e.sync(src).api_writes == 0 and e.diff(src)[0] == [], "undone once, then quiet"


def test_kubectl_scale_of_declared_replicas_is_corrected(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    src = write_source(tmp_path / "src", deployment("web", replicas=2))
    e = engine(cluster, namespace, "k2")
    e.sync(src)
    kubectl(cluster, "-n", namespace, "scale", "deployment/web", "--replicas=5")
    (item,) = e.diff(src)[0]
    assert (item.pointer, item.desired, item.live) == ("/spec/replicas", 2, 5)
    e.sync(src)
    assert _live(cluster, namespace, "deployment", "web")["spec"]["replicas"] == 2


# ---------------------------------------------------------------- item 12: our own annotations are never drift


def test_a_hand_set_prune_opt_out_is_not_drift_and_survives_until_the_object_leaves_git(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src", configmap("keep", a="1"), configmap("other"))
    e = engine(cluster, namespace, "o1")
    e.sync(src)
    kubectl(cluster, "-n", namespace, "annotate", "configmap/keep", "reconciler.imagebot.dev/prune=disabled", "note=hand-made")
    kubectl(cluster, "-n", namespace, "label", "configmap/keep", "reconciler.imagebot.dev/pinned=yes")
    items, _ = e.diff(src)
    assert [i.pointer for i in items] == ["/metadata/annotations/note"], "only the foreign annotation is drift"
    r = e.sync(src)
    assert r.plan.writes[0].remove == ("/metadata/annotations/note",)
    meta = _live(cluster, namespace, "configmap", "keep")["metadata"]
    assert meta["annotations"] == {"reconciler.imagebot.dev/prune": "disabled"}
    assert meta["labels"]["reconciler.imagebot.dev/pinned"] == "yes"
    assert e.sync(src).api_writes == 0

    write_source(src, configmap("other"))  # keep leaves Git: the opt-out it kept is honoured
    r = e.sync(src, prune=True)
    (skip,) = r.plan.prunes
    assert skip.action is Action.SKIP_PRUNE and "disabled" in skip.reason
    assert e.cluster.get("v1", ResourceKey("", "ConfigMap", namespace, "keep")) is not None
