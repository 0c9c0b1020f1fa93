"""Every request the dashboard makes — reading every page, event streams, Sync now, suspend, resume — is granted by
what deploy/dashboard binds it to: the built-in `view` ClusterRole (its rules as kube-apiserver bootstraps them, for
the kinds used here; never Secrets) and the dashboard's own ClusterRole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dashboard.auth import Auth
from dashboard.cluster import ClusterView
from dashboard.server import Dashboard, serve
from gitopskit.kube import request_json
from tests.dashboard.test_server import KS, TOKEN, kustomization, ready, set_status, until
from tests.fixtures.cluster import TestCluster
from tests.integration.test_crds import install
from tests.integration.test_deploy import _attributes, _record, docs

pytestmark = [pytest.mark.cluster]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "dashboard" / "dashboard.yaml"
# kube-apiserver's bootstrap `view` ClusterRole (plugin/pkg/auth/authorizer/rbac/bootstrappolicy), the parts a
# dashboard could touch: namespaced reads, no Secrets
VIEW = [
    {"apiGroups": [""], "verbs": ["get", "list", "watch"],
     "resources": ["configmaps", "endpoints", "persistentvolumeclaims", "pods", "replicationcontrollers", "services",
                   "serviceaccounts", "events", "limitranges", "resourcequotas", "namespaces"]},
    {"apiGroups": ["apps"], "verbs": ["get", "list", "watch"],
     "resources": ["controllerrevisions", "daemonsets", "deployments", "replicasets", "statefulsets"]},
    {"apiGroups": ["batch"], "verbs": ["get", "list", "watch"], "resources": ["cronjobs", "jobs"]},
    {"apiGroups": ["networking.k8s.io"], "verbs": ["get", "list", "watch"], "resources": ["ingresses", "networkpolicies"]},
]  # fmt: skip


def granted(rules: list[dict[str, Any]], attrs: tuple[str, str, str, str, str]) -> bool:
    verb, group, resource, _, _ = attrs  # ClusterRoleBindings: every namespace alike
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


@pytest.fixture
def recorded(cluster: TestCluster, namespace: str) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    api = cluster.api_client()
    install(api)
    request_json(api, "POST", f"{KS}/namespaces/{namespace}/kustomizations", body=kustomization(namespace, "web"))
    entries = [{"id": f"{namespace}_web_apps_Deployment", "v": "v1"}, {"id": f"{namespace}_creds__Secret", "v": "v1"}]
    set_status(api, f"{KS}/namespaces/{namespace}/kustomizations/web",
               {"conditions": ready(True, "ok"), "inventory": {"entries": entries}})  # fmt: skip
    dash_api = cluster.api_client()
    seen = _record(dash_api)
    view = ClusterView(dash_api, (namespace,))
    d = Dashboard(view, None, Auth({TOKEN: "rbac"}))
    server = serve("127.0.0.1:0", d)
    view.start()
    d.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        d.stop()
        view.stop()


def test_every_request_the_dashboard_makes_is_granted_by_its_deploy(
    recorded: tuple[str, list[tuple[str, str]]], namespace: str
) -> None:
    url, seen = recorded
    until(lambda: f"{namespace}/web" in requests.get(f"{url}/apps", timeout=30).text, what="the app listed")
    until(lambda: any("/deployments" in u for _, u in seen), what="the managed kind watched")
    for path in ("/apps", f"/apps/Kustomization/{namespace}/web", "/images", "/activity"):
        assert requests.get(url + path, timeout=30).status_code == 200
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for action in ("sync", "suspend", "resume"):
        assert requests.post(f"{url}/apps/Kustomization/{namespace}/web/{action}", headers=auth, timeout=30).status_code == 200
    rules = [r for d in docs(DEPLOY) if d["kind"] == "ClusterRole" for r in d["rules"]] + VIEW
    asked = {a for m, u in seen if (a := _attributes(m, u)) is not None}
    assert {a[0] for a in asked} >= {"list", "watch", "patch", "create"}, asked
    refused = sorted(a for a in asked if not granted(rules, a))
    assert not refused, f"requests deploy/dashboard would refuse (403 in a real cluster): {refused}"
    assert not any(a[2] == "secrets" for a in asked), "the dashboard never reads a Secret"
