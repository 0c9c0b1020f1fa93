"""The test apiserver is a real Kubernetes API: SSA, managedFields, 409 conflicts, watch, CRDs."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest
from kubernetes import client, dynamic, watch
from kubernetes.client.rest import ApiException

from tests.fixtures.cluster import TestCluster

pytestmark = pytest.mark.cluster

DEPLOY = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}},
    },
}
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
                    }
                },
            }
        ],
    },
}


def ssa(dyn: dynamic.DynamicClient, body: dict, manager: str, namespace: str | None = None, force: bool = False):  # type: ignore[no-untyped-def]
    res = dyn.resources.get(api_version=body["apiVersion"], kind=body["kind"])
    return res.server_side_apply(
        body=body, name=body["metadata"]["name"], namespace=namespace, field_manager=manager, force_conflicts=force
    )


def test_server_side_apply_of_core_kinds_crd_and_custom_resource(cluster: TestCluster, namespace: str) -> None:
    dyn = dynamic.DynamicClient(cluster.api_client())
    ssa(dyn, DEPLOY, "reconciler", namespace)
    ssa(dyn, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}}, "reconciler", namespace)
    ssa(dyn, CRD, "reconciler")
    crds = client.ApiextensionsV1Api(cluster.api_client())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        conds = crds.read_custom_resource_definition("widgets.example.com").status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conds):
            break
        time.sleep(0.1)
    else:
        pytest.fail("CRD never became Established")
    dyn = dynamic.DynamicClient(cluster.api_client())  # fresh discovery sees the new group
    cr = ssa(
        dyn,
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}},
        "reconciler",
        namespace,
    )
    assert cr.spec.size == 3
    live = client.AppsV1Api(cluster.api_client()).read_namespaced_deployment("web", namespace)
    assert [m.manager for m in live.metadata.managed_fields] == ["reconciler"]


def test_conflicting_apply_by_another_manager_gets_409_naming_the_field(cluster: TestCluster, namespace: str) -> None:
    dyn = dynamic.DynamicClient(cluster.api_client())
    ssa(dyn, DEPLOY, "reconciler", namespace)
    other = json.loads(json.dumps(DEPLOY))
    other["spec"] = {"replicas": 4}
    with pytest.raises(ApiException) as info:
        ssa(dyn, other, "kubectl-scale", namespace)
    assert info.value.status == 409
    assert ".spec.replicas" in info.value.body
    forced = ssa(dyn, other, "kubectl-scale", namespace, force=True)
    assert forced.spec.replicas == 4


def test_watch_sees_added_modified_deleted(cluster: TestCluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api_client())
    events: list[str] = []
    # watch from the list's resourceVersion: every later change is delivered however late the stream opens
    since = core.list_namespaced_config_map(namespace).metadata.resource_version

    def run() -> None:
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=since, timeout_seconds=10):
            events.append(ev["type"])
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=run)
    t.start()
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w"), data={"k": "1"})
    core.create_namespaced_config_map(namespace, body)
    core.patch_namespaced_config_map("w", namespace, {"data": {"k": "2"}})
    core.delete_namespaced_config_map("w", namespace)
    t.join(15)
    assert events == ["ADDED", "MODIFIED", "DELETED"]


def test_kubectl_works_against_it(cluster: TestCluster, namespace: str) -> None:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    out = subprocess.run(["kubectl", "api-resources", "-o", "name"], env=env, capture_output=True, text=True, check=True).stdout
    for res in [
        "namespaces",
        "configmaps",
        "secrets",
        "services",
        "serviceaccounts",
        "pods",
        "persistentvolumeclaims",
        "deployments.apps",
        "statefulsets.apps",
        "daemonsets.apps",
        "jobs.batch",
        "cronjobs.batch",
        "ingresses.networking.k8s.io",
        "roles.rbac.authorization.k8s.io",
        "leases.coordination.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
    ]:
        assert res in out.split(), res
    manifest = json.dumps({**DEPLOY, "metadata": {"name": "kc", "namespace": namespace}})
    kubectl = ["kubectl", "-n", namespace]
    subprocess.run(
        [*kubectl, "apply", "--server-side", "-f", "-"], input=manifest, env=env, text=True, check=True, capture_output=True
    )
    scale = subprocess.run([*kubectl, "scale", "deployment/kc", "--replicas=3"], env=env, text=True, capture_output=True)
    assert scale.returncode == 0, scale.stderr
