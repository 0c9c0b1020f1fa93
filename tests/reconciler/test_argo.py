"""Argo CD's Application and AppProject, as written, run by `reconciler controller` beside a Flux Kustomization:
automated prune + selfHeal, manual sync, selfHeal off, project refusals, and two apps declaring one object."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gitopskit.kube import request_json
from reconciler.controller import AppController
from reconciler.controller_cli import ARGO_PATH, KS_PATH
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, git, make_bare
from tests.integration.test_crds import install
from tests.reconciler.test_controller import cli, cm, create, until

pytestmark = [pytest.mark.cluster, pytest.mark.git]


def deployment(name: str, replicas: int = 2) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": name, "image": f"ghcr.io/o/{name}:1.0"}]}}},
    })  # fmt: skip


def b64(**values: str) -> dict[str, str]:
    """Secret data (the test API server has no registry strategy: stringData is not folded into data)."""
    return {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}


def application(name: str, url: str, path: str, namespace: str, project: str = "team", **policy: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "project": project,
        "source": {"repoURL": url, "path": path, "targetRevision": "main"},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
    }
    if policy:
        spec["syncPolicy"] = policy
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name}, "spec": spec}


def test_argo_cd_applications_under_an_app_project_beside_a_flux_kustomization(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> None:
    api = cluster.api_client()
    install(api)
    ns = namespace
    target = f"{ns}-apps"
    request_json(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": target}})
    bare = make_bare(git_http.root, f"argo-{ns}", {
        "apps/frontend/deploy.yaml": deployment("frontend"),
        "apps/frontend/cm.yaml": cm("frontend-config", a="1"),
        "apps/manual/cm.yaml": cm("manual", a="1"),
        "apps/manual/wave.yaml": json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "wave", "annotations": {"argocd.argoproj.io/sync-wave": "2"}}}),
        "apps/noheal/cm.yaml": cm("noheal", a="1"),
        "apps/noheal/extra.yaml": cm("noheal-extra", a="1"),
        "apps/shared/cm.yaml": cm("shared", a="1"),
        "apps/shared/sub/ignored.yaml": cm("not-recursed", a="1"),
    })  # fmt: skip
    url = git_http.url(bare)
    creds = {"apiVersion": "v1", "kind": "Secret",
             "metadata": {"name": "repo-cfg", "labels": {"argocd.argoproj.io/secret-type": "repository"}},
             "data": b64(url=url, username=GIT_USER, password=GIT_PASSWORD)}  # fmt: skip
    create(api, f"/api/v1/namespaces/{ns}/secrets", creds)  # Argo CD's declarative repository credentials
    project = {"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "team"},
               "spec": {"sourceRepos": [url], "destinations": [{"server": "https://kubernetes.default.svc", "namespace": target}],
                        "namespaceResourceWhitelist": [{"group": "*", "kind": "*"}]}}  # fmt: skip
    create(api, f"{ARGO_PATH}/namespaces/{ns}/appprojects", project)
    apps = f"{ARGO_PATH}/namespaces/{ns}/applications"
    create(api, apps, application("frontend-prod", url, "apps/frontend", target, automated={"prune": True, "selfHeal": True}))
    create(api, apps, application("manual", url, "apps/manual", target))
    create(api, apps, application("noheal", url, "apps/noheal", target, automated={"prune": False, "selfHeal": False}))
    create(api, apps, application("forbidden", url, "apps/manual", "kube-system", automated={"prune": True}))
    create(api, apps, application("shared-argo", url, "apps/shared", target, automated={}))
    ks = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "shared-flux"},
          "spec": {"interval": "10m", "prune": True, "path": "./apps/shared", "targetNamespace": target,
                   "sourceRef": {"kind": "GitRepository", "name": "cfg"}}}  # fmt: skip
    repo = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "cfg"},
            "spec": {"url": url, "interval": "1m", "ref": {"branch": "main"}, "secretRef": {"name": "flux-cfg"}}}  # fmt: skip
    flux_creds = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "flux-cfg"},
                  "data": b64(username=GIT_USER, password=GIT_PASSWORD)}  # fmt: skip

    def app(name: str) -> dict[str, Any]:
        return request_json(api, "GET", f"{apps}/{name}")

    def live(name: str) -> dict[str, Any] | None:
        try:
            return request_json(api, "GET", f"/api/v1/namespaces/{target}/configmaps/{name}")
        except Exception:
            return None

    ctl = AppController(api, (ns,), workers=4, cache=tmp_path / "cache")
    ctl.start()
    try:
        fe = until(lambda: (a := app("frontend-prod")).get("status", {}).get("sync", {}).get("status") == "Synced" and a,
                   what="frontend-prod Synced")  # fmt: skip
        st = fe["status"]
        assert len(st["sync"]["revision"]) == 40 and st["health"]["status"] in ("Healthy", "Progressing")
        assert {(r["kind"], r["name"], r["status"]) for r in st["resources"]} == {
            ("ConfigMap", "frontend-config", "Synced"), ("Deployment", "frontend", "Synced")}  # fmt: skip
        assert st["operationState"]["phase"] == "Succeeded" and st["history"][0]["revision"] == st["sync"]["revision"]
        # no controllers on the test server: write the status the Deployment controller would; the app turns Healthy
        dep = f"/apis/apps/v1/namespaces/{target}/deployments/frontend"
        gen = request_json(api, "GET", dep)["metadata"]["generation"]
        rollout = {"status": {"observedGeneration": gen, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
                              "readyReplicas": 2}}  # fmt: skip
        request_json(api, "PATCH", f"{dep}/status", body=rollout, content_type="application/merge-patch+json")
        until(lambda: app("frontend-prod")["status"]["health"]["status"] == "Healthy", what="frontend-prod Healthy")

        # without automated: compared, OutOfSync, nothing applied until a sync is requested
        manual = until(lambda: app("manual").get("status", {}).get("sync", {}).get("status"), what="manual compared")
        assert manual == "OutOfSync" and live("manual") is None
        code, out, err = cli(cluster, "reconcile", "manual", "-n", ns, "--kind", "Application", "--timeout", "60")
        assert live("manual") is not None, (code, out, err)
        until(lambda: app("manual")["status"]["sync"]["status"] == "Synced", what="manual Synced after the request")
        notes = [c for c in app("manual")["status"]["conditions"] if c["type"] == "UnsupportedObjectAnnotations"]
        assert notes and "sync-wave is not honoured" in notes[0]["message"], "waves are reported, never silently ignored"

        # the project forbids kube-system: refused, nothing applied there
        cond = until(lambda: (app("forbidden").get("status") or {}).get("conditions"), what="forbidden refused")
        assert cond[0]["type"] == "InvalidSpecError" and "kube-system is not a destination of project team" in cond[0]["message"]
        kube_system = request_json(api, "GET", "/api/v1/namespaces/kube-system/configmaps")["items"]
        assert "manual" not in {c["metadata"]["name"] for c in kube_system}, "nothing applied"

        # selfHeal: a `kubectl scale` is undone; without selfHeal a hand edit is only reported (OutOfSync)
        until(lambda: live("noheal") is not None, what="noheal applied")
        request_json(api, "PATCH", f"/apis/apps/v1/namespaces/{target}/deployments/frontend/scale?fieldManager=kubectl",
                     body={"spec": {"replicas": 5}}, content_type="application/merge-patch+json")  # fmt: skip
        until(lambda: request_json(api, "GET", dep)["spec"]["replicas"] == 2, what="scale undone under selfHeal")
        request_json(api, "PATCH", f"/api/v1/namespaces/{target}/configmaps/noheal?fieldManager=kubectl-edit",
                     body={"data": {"a": "hand"}}, content_type="application/merge-patch+json")  # fmt: skip
        until(lambda: app("noheal")["status"]["sync"]["status"] == "OutOfSync", what="noheal OutOfSync")
        assert live("noheal")["data"] == {"a": "hand"}, "reported, not corrected"  # type: ignore[index]

        # directory.recurse defaults to false, as in Argo CD
        until(lambda: live("shared") is not None, what="shared applied")
        assert live("not-recursed") is None

        # a file leaves Git: pruned under prune, kept (and reported) without it
        work = tmp_path / "work"
        git("clone", "-q", str(bare), str(work))
        (work / "apps/frontend/cm.yaml").unlink()
        (work / "apps/noheal/extra.yaml").unlink()
        git("-C", str(work), "commit", "-qam", "remove two files")
        git("-C", str(work), "push", "-q", "origin", "HEAD:main")
        ctl.refresh()
        until(lambda: live("frontend-config") is None, what="frontend-config pruned")
        until(lambda: app("noheal")["status"]["sync"]["revision"] == git("-C", str(work), "rev-parse", "HEAD").strip(),
              what="noheal at the new revision")  # fmt: skip
        assert live("noheal-extra") is not None, "prune: false keeps it"
        kept = [r for r in app("noheal")["status"]["resources"] if r["name"] == "noheal-extra"]
        assert kept and kept[0]["status"] == "OutOfSync" and kept[0]["requiresPruning"] is True, "…and reports it"

        # a Flux Kustomization declaring the Application's object: the conflict names both; neither prunes it (created
        # together with its GitRepository, its first answer may be that the GitRepository is not listed yet)
        create(api, f"/api/v1/namespaces/{ns}/secrets", flux_creds)
        create(api, f"/apis/source.toolkit.fluxcd.io/v1/namespaces/{ns}/gitrepositories", repo)
        create(api, f"{KS_PATH}/namespaces/{ns}/kustomizations", ks)
        msg = until(lambda: ((r := [c for c in (request_json(api, "GET", f"{KS_PATH}/namespaces/{ns}/kustomizations/shared-flux")
                                              .get("status") or {}).get("conditions") or [] if c["type"] == "Ready"])
                             and r[0]["status"] == "False" and "owned by another app" in r[0]["message"] and r[0]["message"]),
                    what="flux conflict")  # fmt: skip
        assert "owned by another app" in msg and "shared-argo" in msg, msg
        assert live("shared") is not None
    finally:
        assert ctl.stop(30)
