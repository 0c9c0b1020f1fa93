"""deploy/crds for Flux's image objects on the real test API server: v1 and v1beta2 are served, a realistic Flux set
from Flux's docs is stored exactly as written, bad specs are a 422 naming the field, and `kubectl get` prints Flux's
columns from the status imagebot writes."""

from __future__ import annotations

import copy
import shutil
import subprocess
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from gitopskit.kube import request_json
from tests.fixtures.cluster import TestCluster
from tests.integration.test_crds import install
from tests.unit.gitops.test_gotemplate import FLUX_V1_EXAMPLE

pytestmark = pytest.mark.cluster

GROUP = "/apis/image.toolkit.fluxcd.io"
MESSAGE = FLUX_V1_EXAMPLE  # Flux's v1 documentation example, stored as written


def obj(version: str, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"image.toolkit.fluxcd.io/{version}", "kind": kind, "metadata": {"name": name}, "spec": spec}


FLUX_SET = [
    obj("v1", "ImageRepository", "podinfo", {
        "image": "registry.example:5000/stefanprodan/podinfo", "interval": "1m0s", "timeout": "60s",
        "secretRef": {"name": "regcred"}, "certSecretRef": {"name": "registry-ca"}, "provider": "generic",
        "exclusionList": ["^.*\\.sig$", "^.*-rc\\..*$"], "serviceAccountName": "image-puller",
        "accessFrom": {"namespaceSelectors": [{"matchLabels": {"kubernetes.io/metadata.name": "flux-system"}}]},
    }),
    obj("v1beta2", "ImageRepository", "legacy", {"image": "ghcr.io/org/app", "interval": "5h"}),
    obj("v1", "ImagePolicy", "podinfo", {
        "imageRepositoryRef": {"name": "podinfo"}, "policy": {"semver": {"range": "5.0.x"}},
        "digestReflectionPolicy": "Always", "interval": "10m",
    }),
    obj("v1", "ImagePolicy", "main-builds", {
        "imageRepositoryRef": {"name": "podinfo", "namespace": "flux-system"},
        "filterTags": {"pattern": "^main-[a-fA-F0-9]+-(?P<ts>.*)", "extract": "$ts"},
        "policy": {"numerical": {"order": "asc"}},
    }),
    obj("v1beta2", "ImagePolicy", "rc", {
        "imageRepositoryRef": {"name": "legacy"}, "filterTags": {"pattern": "^RELEASE\\.(?P<ts>.*)Z$", "extract": "$ts"},
        "policy": {"alphabetical": {"order": "desc"}},
    }),
    obj("v1", "ImageUpdateAutomation", "podinfo-update", {
        "interval": "30m", "sourceRef": {"kind": "GitRepository", "name": "podinfo", "namespace": "flux-system"},
        "git": {
            "checkout": {"ref": {"branch": "main"}},
            "commit": {
                "author": {"email": "fluxcdbot@users.noreply.github.com", "name": "fluxcdbot"},
                "signingKey": {"secretRef": {"name": "signing-key"}},
                "messageTemplate": MESSAGE, "messageTemplateValues": {"cluster": "prod"},
            },
            "push": {"branch": "auto", "refspec": "refs/heads/auto:refs/heads/auto",
                     "options": {"merge_request.create": "", "merge_request.target": "main"}},
        },
        "update": {"path": "./clusters/prod", "strategy": "Setters"},
        "policySelector": {"matchLabels": {"app.kubernetes.io/instance": "podinfo"}},
    }),
    obj("v1beta2", "ImageUpdateAutomation", "legacy-update", {
        "interval": "1m", "sourceRef": {"kind": "GitRepository", "name": "podinfo"},
        "git": {"commit": {"author": {"email": "bot@example.com"},
                           "messageTemplate": "{{range .Updated.Images}}{{println .}}{{end}}"}},
        "update": {"path": "./", "strategy": "Setters"},
    }),
]  # fmt: skip


def plural(kind: str) -> str:
    return {"ImageRepository": "imagerepositories", "ImagePolicy": "imagepolicies"}.get(kind, kind.lower() + "s")


def url(o: dict[str, Any], namespace: str) -> str:
    return f"/apis/{o['apiVersion']}/namespaces/{namespace}/{plural(o['kind'])}"


def test_flux_image_objects_are_stored_as_written_and_validated(cluster: TestCluster, namespace: str) -> None:
    api = cluster.api_client()
    assert {
        "imagerepositories.image.toolkit.fluxcd.io", "imagepolicies.image.toolkit.fluxcd.io",
        "imageupdateautomations.image.toolkit.fluxcd.io",
    } <= set(install(api))  # fmt: skip
    for o in FLUX_SET:
        stored = request_json(api, "POST", url(o, namespace), body=o)
        assert stored["spec"] == o["spec"], f"{o['kind']}/{o['metadata']['name']} is stored exactly as written"
    # a field Flux may add later, at any depth, is kept rather than pruned
    future = copy.deepcopy(FLUX_SET[5])
    future["metadata"]["name"] = "future"
    future["spec"]["git"]["commit"]["author"]["signoff"] = True
    future["spec"]["update"]["futureOption"] = {"x": 1}
    future["spec"]["sourceRef"]["futureRef"] = "y"
    assert request_json(api, "POST", url(future, namespace), body=future)["spec"] == future["spec"]
    # one storage version: a v1beta2 object reads back as v1, unchanged
    legacy = request_json(api, "GET", f"{GROUP}/v1/namespaces/{namespace}/imagepolicies/rc")
    assert legacy["spec"]["policy"] == {"alphabetical": {"order": "desc"}}

    def bad(index: int, change: Any, field: str) -> None:
        o = copy.deepcopy(FLUX_SET[index])
        o["metadata"]["name"] = "bad"
        change(o["spec"])
        with pytest.raises(ApiException) as info:
            request_json(api, "POST", url(o, namespace), body=o)
        assert info.value.status == 422 and field in str(info.value.body), (field, info.value.body)

    bad(0, lambda s: s.update(interval="fivemin"), "spec.interval")
    bad(0, lambda s: s.pop("image"), "spec.image")
    bad(0, lambda s: s.update(secretRef={}), "spec.secretRef.name")
    bad(1, lambda s: s.update(interval="1d"), "spec.interval")  # Go durations have no days
    bad(2, lambda s: s["policy"].update(numerical={"order": "asc"}), "spec.policy")  # two policies
    bad(2, lambda s: s.update(policy={}), "spec.policy")
    bad(2, lambda s: s.update(policy={"semver": {}}), "spec.policy.semver.range")
    bad(3, lambda s: s.update(policy={"numerical": {"order": "up"}}), "spec.policy.numerical.order")
    bad(3, lambda s: s["filterTags"].update(pattern=["^x"]), "spec.filterTags.pattern")
    bad(4, lambda s: s.pop("imageRepositoryRef"), "spec.imageRepositoryRef")
    bad(2, lambda s: s.update(digestReflectionPolicy="Sometimes"), "spec.digestReflectionPolicy")
    bad(5, lambda s: s.pop("sourceRef"), "spec.sourceRef")
    bad(5, lambda s: s["sourceRef"].update(kind="Bucket"), "spec.sourceRef.kind")
    bad(5, lambda s: s["update"].update(strategy="Regex"), "spec.update.strategy")
    bad(5, lambda s: s["git"]["commit"]["author"].pop("email"), "spec.git.commit.author.email")
    bad(5, lambda s: s["git"]["commit"].update(messageTemplateValues={"n": 1}), "spec.git.commit.messageTemplateValues")
    bad(5, lambda s: s["git"]["commit"]["signingKey"].update(type="x509"), "spec.git.commit.signingKey.type")
    bad(6, lambda s: s.update(interval="soon"), "spec.interval")

    # the status imagebot writes, as Flux writes it, read back by kubectl's columns
    ready = [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "resolved to 5.0.3",
              "lastTransitionTime": "2026-11-29T05:00:00Z", "observedGeneration": 1}]  # fmt: skip
    statuses = {
        "imagerepositories/podinfo": {"canonicalImageName": "registry.example:5000/stefanprodan/podinfo",
                                      "lastScanResult": {"tagCount": 42, "scanTime": "2026-11-29T05:00:00Z",
                                                         "latestTags": ["5.0.3", "5.0.2"]}},
        "imagepolicies/podinfo": {"latestRef": {"name": "registry.example:5000/stefanprodan/podinfo", "tag": "5.0.3",
                                                "digest": "sha256:" + "a" * 64},
                                  "observedPreviousRef": {"name": "registry.example:5000/stefanprodan/podinfo", "tag": "5.0.2"}},
        "imageupdateautomations/podinfo-update": {"lastAutomationRunTime": "2026-11-29T05:00:00Z",
                                                  "lastPushCommit": "3ebb95cc56d2db59bc6ffbe0d9dd0ea445edeb77",
                                                  "lastPushTime": "2026-11-29T05:00:00Z",
                                                  "observedPolicies": {"podinfo": {"name": "ghcr.io/org/app", "tag": "5.0.3"}}},
    }  # fmt: skip
    for path, status in statuses.items():
        written = request_json(
            api, "PATCH", f"{GROUP}/v1/namespaces/{namespace}/{path}/status",
            body={"status": {**status, "conditions": ready}}, content_type="application/merge-patch+json",
        )  # fmt: skip
        assert {k: written["status"][k] for k in status} == status
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return  # the columns are checked where kubectl exists; the demo's kubectl fetch covers fresh machines

    def get(resource: str, *extra: str) -> list[list[str]]:
        out = subprocess.run(
            [kubectl, "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "get", resource, *extra],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        return [line.split() for line in out.splitlines()]

    pol = get("imagepolicies")
    assert pol[0] == ["NAME", "IMAGE", "TAG", "READY", "STATUS", "AGE"]
    assert next(r for r in pol if r[0] == "podinfo")[1:4] == ["registry.example:5000/stefanprodan/podinfo", "5.0.3", "True"]
    repo = get("imagerepositories", "-o", "wide")
    assert repo[0] == ["NAME", "IMAGE", "TAGS", "READY", "STATUS", "LAST", "SCAN", "AGE"]
    assert next(r for r in repo if r[0] == "podinfo")[1:4] == ["registry.example:5000/stefanprodan/podinfo", "42", "True"]
    auto = get("imageupdateautomations")
    assert auto[0] == ["NAME", "LAST", "RUN", "READY", "STATUS", "AGE"]
    assert next(r for r in auto if r[0] == "podinfo-update")[1:3] == ["2026-11-29T05:00:00Z", "True"]
