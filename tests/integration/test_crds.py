"""deploy/crds on the real test API server: every CRD is accepted and Established, Flux's objects as written are
stored, bad specs are rejected by the schema, and `kubectl get` prints the Ready/Revision/Age/Message columns."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from ruamel.yaml import YAML

from gitopskit.kube import request_json
from tests.fixtures.cluster import TestCluster

pytestmark = pytest.mark.cluster

CRDS = Path(__file__).resolve().parents[2] / "deploy" / "crds"


def install(api: Any) -> list[str]:
    names = []
    for f in sorted(CRDS.glob("*.yaml")):
        crd = YAML(typ="safe").load(f.read_text())
        name = crd["metadata"]["name"]
        try:
            request_json(api, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", body=crd)
        except ApiException as exc:
            if exc.status != 409:
                raise
        names.append(name)
    for name in names:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            crd = request_json(api, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conds = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
            if conds.get("Established") == "True":
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"{name} never Established")
    return names


KS = {
    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
    "kind": "Kustomization",
    "metadata": {"name": "podinfo"},
    "spec": {
        "interval": "10m",
        "prune": True,
        "path": "./kustomize",
        "sourceRef": {"kind": "GitRepository", "name": "podinfo"},
        "postBuild": {"substitute": {"env": "prod"}},  # a Flux field we do not run: stored, reported later
    },
}


def test_the_crds_install_and_validate_specs_at_the_api_server(cluster: TestCluster, namespace: str) -> None:
    api = cluster.api_client()
    assert set(install(api)) >= {
        "gitrepositories.source.toolkit.fluxcd.io", "kustomizations.kustomize.toolkit.fluxcd.io",
        "apps.reconciler.imagebot.dev", "projects.reconciler.imagebot.dev", "applications.argoproj.io",
        "appprojects.argoproj.io", "imagerepositories.image.toolkit.fluxcd.io", "imagepolicies.image.toolkit.fluxcd.io",
        "imageupdateautomations.image.toolkit.fluxcd.io",
    }  # fmt: skip
    base = f"/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/{namespace}/kustomizations"
    stored = request_json(api, "POST", base, body=KS)
    assert stored["spec"]["postBuild"] == {"substitute": {"env": "prod"}}, "Flux's objects are accepted unchanged"
    repo = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "podinfo"},
        "spec": {"url": "https://github.com/stefanprodan/podinfo", "interval": "1m0s", "ref": {"branch": "master"}},
    }
    request_json(api, "POST", f"/apis/source.toolkit.fluxcd.io/v1/namespaces/{namespace}/gitrepositories", body=repo)
    for bad, field in [
        ({**KS["spec"], "interval": "fivemin"}, "spec.interval"),
        ({k: v for k, v in KS["spec"].items() if k != "prune"}, "spec.prune"),
        ({**KS["spec"], "sourceRef": {"kind": "Helm", "name": "x"}}, "spec.sourceRef.kind"),
    ]:
        with pytest.raises(ApiException) as info:
            request_json(api, "POST", base, body={**KS, "metadata": {"name": "bad"}, "spec": bad})
        assert info.value.status == 422 and field in str(info.value.body)
    app = {
        "apiVersion": "reconciler.imagebot.dev/v1alpha1",
        "kind": "App",
        "metadata": {"name": "web"},
        "spec": {"source": {"url": "https://git.example/config"}, "drift": {"mode": "fix"}},
    }
    with pytest.raises(ApiException) as info:
        request_json(api, "POST", f"/apis/reconciler.imagebot.dev/v1alpha1/namespaces/{namespace}/apps", body=app)
    assert info.value.status == 422 and "spec.drift.mode" in str(info.value.body)
    app["spec"]["drift"] = {"mode": "report"}
    request_json(api, "POST", f"/apis/reconciler.imagebot.dev/v1alpha1/namespaces/{namespace}/apps", body=app)
    # the status subresource: printer columns read what the controller writes there
    status = {
        "status": {
            "lastAppliedRevision": "main@sha1:" + "a" * 40,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded", "message": "Applied revision",
                 "lastTransitionTime": "2026-11-29T05:00:00Z"}
            ],
        }
    }  # fmt: skip
    request_json(api, "PATCH", f"{base}/podinfo/status", body=status, content_type="application/merge-patch+json")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return  # the columns are checked where kubectl exists; the demo's kubectl fetch covers fresh machines
    out = subprocess.run(
        [kubectl, "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "get", "kustomizations"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "READY", "REVISION", "AGE", "MESSAGE"]
    assert row.split()[:3] == ["podinfo", "True", "main@sha1:" + "a" * 40]
