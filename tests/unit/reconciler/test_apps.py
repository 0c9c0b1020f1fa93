"""Apps as objects: Flux's Kustomization + GitRepository and the native App/Project read into one spec (pure)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from ruamel.yaml import YAML

from gitopskit.duration import parse_go_duration
from reconciler.apps import (
    Dialect,
    InvalidApp,
    ObjectRef,
    RefKind,
    flux_revision,
    from_app,
    from_kustomization,
    inventory_id,
    merge_conditions,
    object_violation,
    project_from,
    source_violation,
)

FLUX = """
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: podinfo, namespace: flux-system}
spec:
  interval: 1m0s
  url: https://github.com/stefanprodan/podinfo
  ref: {branch: master}
  secretRef: {name: https-credentials}
  ignore: |
    /*
    !/kustomize
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: podinfo
  namespace: flux-system
  annotations: {reconcile.fluxcd.io/requestedAt: "2026-11-29T05:00:00Z"}
  labels: {sharding.imagebot.dev/key: shard-a}
  generation: 3
spec:
  interval: 10m
  retryInterval: 2m
  timeout: 5m
  targetNamespace: podinfo
  sourceRef: {kind: GitRepository, name: podinfo}
  path: "./kustomize"
  prune: true
  wait: true
  dependsOn: [{name: infra}, {name: crds, namespace: other}]
  images: [{name: ghcr.io/stefanprodan/podinfo, newTag: 6.5.0}]
  commonMetadata: {labels: {team: a}}
  postBuild: {substitute: {cluster_env: prod}}
"""


def docs() -> tuple[dict[str, Any], dict[str, Any]]:
    repo, ks = YAML(typ="safe").load_all(FLUX)
    return repo, ks


def test_a_realistic_flux_kustomization_reads_as_written_and_unsupported_fields_are_named() -> None:
    repo, ks = docs()
    app = from_kustomization(ks, repo)
    assert app.dialect is Dialect.FLUX and app.ref == ObjectRef("flux-system", "podinfo") and app.generation == 3
    assert app.source.url == "https://github.com/stefanprodan/podinfo"
    assert (app.source.ref_kind, app.source.ref) == (RefKind.BRANCH, "master")
    assert app.source.secret == ObjectRef("flux-system", "https-credentials") and app.source.interval == 60
    assert (app.path, app.interval, app.retry_interval, app.timeout) == ("kustomize", 600, 120, 300)
    assert (app.prune, app.wait, app.target_namespace) == (True, True, "podinfo")
    assert app.depends_on == (ObjectRef("flux-system", "infra"), ObjectRef("other", "crds"))
    assert app.images == (("ghcr.io/stefanprodan/podinfo", "", "6.5.0", ""),)
    assert app.common_labels == (("team", "a"),)
    assert app.requested_at == "2026-11-29T05:00:00Z" and app.shard == "shard-a"
    assert app.unsupported == ("spec.postBuild",), "never silently ignored"
    assert app.source.ignore is not None  # a GitRepository's artifact filter (Flux's defaults at least)


@pytest.mark.parametrize(
    ("ref", "message"),
    [({"semver": ">=1.0 <<2"}, "spec.ref.semver: invalid semver range"), ({"name": "refs/pull/1/head"}, "refs/heads/")],
)
def test_bad_git_refs_are_named(ref: dict[str, str], message: str) -> None:
    repo, ks = docs()
    repo["spec"]["ref"] = ref
    with pytest.raises(InvalidApp, match=re.escape(message)):
        from_kustomization(ks, repo)


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("spec", "oops", "spec must be a mapping"),
        ("metadata", "oops", "metadata must be a mapping"),
        ("spec.interval", "fivemin", "spec.interval: invalid duration 'fivemin'"),
        ("spec.interval", "0s", "must be above zero"),
        ("spec.interval", 5, "spec.interval must be a string"),
        ("spec.prune", None, "spec.prune is required"),
        ("spec.prune", "yes", "spec.prune must be a boolean"),
        ("spec.sourceRef", {"kind": "Bucket", "name": "b"}, "must name a GitRepository"),
        ("spec.dependsOn", [{"namespace": "x"}], "spec.dependsOn[0] needs a name"),
        ("spec.path", "../../etc", "leaves the source"),
        ("spec.images", [{"name": "x", "newTag": 5}], "must be strings"),
        ("spec.commonMetadata", {"labels": {"a": 1}}, "must map strings to strings"),
    ],
    ids=[
        *("spec-str", "meta-str", "interval-word", "interval-zero", "interval-int", "no-prune", "prune-str", "bucket"),
        *("depends-noname", "path-escape", "image-int", "label-int"),
    ],
)
def test_bad_kustomization_fields_are_refused_with_the_field_named(where: str, value: Any, message: str) -> None:
    repo, ks = docs()
    ks = copy.deepcopy(ks)
    *parents, last = where.split(".")
    node = ks
    for p in parents:
        node = node[p]
    if value is None:
        del node[last]
    else:
        node[last] = value
    with pytest.raises(InvalidApp, match=message.replace("(", r"\(").replace("[", r"\[")):
        from_kustomization(ks, repo)


def test_a_missing_git_repository_is_an_invalid_app_naming_it() -> None:
    _, ks = docs()
    with pytest.raises(InvalidApp, match="GitRepository flux-system/podinfo not found"):
        from_kustomization(ks, None)


@pytest.mark.parametrize(
    ("ref", "kind", "value"),
    [
        ({}, RefKind.BRANCH, "master"),
        ({"tag": "v1", "branch": "x"}, RefKind.TAG, "v1"),
        ({"commit": "abc", "tag": "v1"}, RefKind.COMMIT, "abc"),
        ({"tag": "t", "semver": ">=1.0"}, RefKind.SEMVER, ">=1.0"),
        ({"semver": ">=1.0", "name": "refs/heads/x"}, RefKind.NAME, "refs/heads/x"),
        ({"name": "refs/tags/x", "commit": "abc1234"}, RefKind.COMMIT, "abc1234"),
    ],
    ids=["default-master", "tag-over-branch", "commit-first", "semver-over-tag", "name-over-semver", "commit-over-name"],
)
def test_git_refs_follow_fluxs_precedence(ref: dict[str, str], kind: RefKind, value: str) -> None:
    repo, ks = docs()
    repo["spec"]["ref"] = ref
    app = from_kustomization(ks, repo)
    assert (app.source.ref_kind, app.source.ref) == (kind, value)


def test_the_native_app_carries_drift_policy_guards_and_limits() -> None:
    app = from_app(
        {
            "apiVersion": "reconciler.imagebot.dev/v1alpha1",
            "kind": "App",
            "metadata": {"name": "web", "namespace": "team-a"},
            "spec": {
                "source": {"url": "https://git.example/config", "ref": {"tag": "v2"}, "secretRef": {"name": "git"}},
                "path": "apps/web",
                "prune": True,
                "project": "team-a",
                "drift": {"mode": "report", "ignore": ["/spec/replicas"], "ignoreManagers": ["hpa"]},
                "pruneGuards": {"allowKinds": ["Namespace"]},
                "allowedNamespaces": ["team-a"],
                "allowClusterKinds": [],
                "helm": {},
            },
        }
    )
    assert app.dialect is Dialect.NATIVE and app.key.startswith("team-a.web-")
    assert (app.source.ref_kind, app.source.ref, app.source.secret) == (RefKind.TAG, "v2", ObjectRef("team-a", "git"))
    assert (app.drift.mode, app.drift.ignore, app.drift.ignore_managers, app.drift.added_drift_managers) == (
        "report", ("/spec/replicas",), ("hpa",), None)  # fmt: skip
    assert (app.allow_prune_kinds, app.allowed_namespaces, app.allow_cluster_kinds) == (("Namespace",), ("team-a",), ())
    assert app.unsupported == ("spec.helm",)
    with pytest.raises(InvalidApp, match=r"spec\.drift\.mode must be one of correct, report"):
        from_app({"metadata": {"name": "x"}, "spec": {"source": {"url": "https://g/r"}, "drift": {"mode": "fix"}}})


def test_projects_bound_sources_namespaces_and_kinds_as_argo_cds_appproject_does() -> None:
    p = project_from(
        {
            "metadata": {"name": "team-a"},
            "spec": {
                "sourceRepos": ["https://git.example/team-a/*"],
                "destinations": [{"namespace": "team-a-*"}],
                "clusterResourceWhitelist": [{"group": "", "kind": "Namespace"}],
                "namespaceResourceBlacklist": [{"group": "", "kind": "ResourceQuota"}],
            },
        }
    )
    assert source_violation(p, "https://git.example/team-a/apps") == ""
    assert "not in project team-a's sourceRepos" in source_violation(p, "https://git.example/team-b/apps")
    assert object_violation(p, "apps", "Deployment", "team-a-web") == ""
    assert "not a destination" in object_violation(p, "apps", "Deployment", "kube-system")
    assert "namespaceResourceBlacklist" in object_violation(p, "", "ResourceQuota", "team-a-web")
    assert object_violation(p, "", "Namespace", "") == ""
    assert "clusterResourceWhitelist" in object_violation(p, "rbac.authorization.k8s.io", "ClusterRoleBinding", "")


def test_status_helpers_speak_fluxs_forms() -> None:
    assert flux_revision(RefKind.BRANCH, "main", "a" * 40) == f"main@sha1:{'a' * 40}"
    assert flux_revision(RefKind.COMMIT, "abc", "b" * 40) == f"sha1:{'b' * 40}"
    assert inventory_id("apps", "Deployment", "default", "web") == "default_web_apps_Deployment"
    assert inventory_id("", "Namespace", "", "team") == "_team__Namespace"
    old = [{"type": "Ready", "status": "True", "lastTransitionTime": "t0"}]
    same = merge_conditions(old, [{"type": "Ready", "status": "True", "lastTransitionTime": "t1"}])
    moved = merge_conditions(old, [{"type": "Ready", "status": "False", "lastTransitionTime": "t1"}])
    assert same[0]["lastTransitionTime"] == "t0" and moved[0]["lastTransitionTime"] == "t1"


@pytest.mark.parametrize(
    ("text", "seconds"), [("1m0s", 60), ("1h30m", 5400), ("500ms", 0.5), ("1.5h", 5400), (".5s", 0.5)],
    ids=["1m0s", "1h30m", "ms", "fraction", "leading-dot"],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == seconds


BAD_DURATIONS = ["", "5", "-5m", "5m ", "fivemin", "١m", "0s", "1e3s", "9" * 400 + "h"]


@pytest.mark.parametrize("text", BAD_DURATIONS, ids=lambda t: repr(t[:8]))
def test_bad_go_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


ARGO_APP = """
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: frontend-prod, namespace: argocd}
spec:
  project: shop
  source:
    repoURL: https://github.com/acme/gitops.git
    targetRevision: HEAD
    path: apps/frontend/overlays/prod
    kustomize:
      images: ["ghcr.io/acme/frontend=ghcr.io/acme/frontend:1.4.2", "nginx:1.27"]
      namePrefix: prod-
  destination: {server: https://kubernetes.default.svc, namespace: frontend-prod}
  syncPolicy:
    automated: {prune: true, selfHeal: true}
    syncOptions: [CreateNamespace=true, PruneLast=true, RespectIgnoreDifferences=true]
  ignoreDifferences:
    - {group: apps, kind: Deployment, jsonPointers: [/spec/replicas]}
    - {kind: ConfigMap, managedFieldsManagers: [kube-controller-manager]}
  revisionHistoryLimit: 5
"""


def test_an_argo_cd_application_reads_as_argo_cd_means_it() -> None:
    from reconciler.apps import from_application

    app = from_application(YAML(typ="safe").load(ARGO_APP))
    assert (app.dialect, app.project, app.default_namespace) == (Dialect.ARGO, "shop", "frontend-prod")
    assert (app.source.url, app.source.ref) == ("https://github.com/acme/gitops.git", "main")
    assert app.path == "apps/frontend/overlays/prod"
    assert (app.auto_sync, app.prune, app.self_heal, app.create_namespace, app.recurse) == (True, True, True, True, False)
    assert app.images == (("ghcr.io/acme/frontend", "ghcr.io/acme/frontend", "1.4.2", ""), ("nginx", "", "1.27", ""))
    assert app.drift.ignore == ("Deployment:/spec/replicas",) and app.drift.ignore_managers == ("kube-controller-manager",)
    assert app.history_limit == 5
    assert app.unsupported == ("spec.source.kustomize.namePrefix", "spec.syncPolicy.syncOptions RespectIgnoreDifferences=true")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"destination": {"server": "https://other.example:6443", "namespace": "x"}}, "only the cluster the controller runs in"),
        ({"source": {"repoURL": "https://charts.example", "chart": "web", "targetRevision": "1.0"}}, "Helm sources"),
        ({"sources": [{"repoURL": "a"}, {"repoURL": "b"}]}, "only one source"),
        ({"source": {"path": "x"}}, "repoURL is required"),
        ({"source": {"repoURL": "https://g/r", "path": "../up"}}, "inside the repository"),
        ({"source": {"repoURL": "file:///var/cache/clones/other-tenant", "path": "x"}}, "not a remote Git URL"),
        ({"source": {"repoURL": "/etc", "path": "x"}}, "not a remote Git URL"),
        ({"source": {"repoURL": "ext::sh -c id", "path": "x"}}, "not a remote Git URL"),
    ],
    ids=["other-cluster", "helm", "two-sources", "no-repo", "path-escape", "file-url", "local-path", "ext"],
)
def test_what_an_argo_cd_application_asks_and_we_do_not_run_is_refused_by_name(change: dict[str, Any], message: str) -> None:
    from reconciler.apps import from_application

    obj = YAML(typ="safe").load(ARGO_APP)
    obj["spec"].update(change)
    if "sources" in change:
        del obj["spec"]["source"]
    with pytest.raises(InvalidApp, match=message):
        from_application(obj)


def test_an_argo_cd_app_project_drops_destinations_on_other_clusters() -> None:
    from reconciler.apps import argo_project_from

    dests = [
        {"server": "https://other.example", "namespace": "*"},
        {"server": "https://kubernetes.default.svc", "namespace": "shop-*"},
    ]
    p = argo_project_from({"metadata": {"name": "shop"}, "spec": {"sourceRepos": ["*"], "destinations": dests}})
    assert p.destinations == ("shop-*",)
    assert "not a destination" in object_violation(p, "apps", "Deployment", "kube-system")


def test_app_keys_are_unique_per_dialect_namespace_and_name_and_always_valid_label_values() -> None:
    import re

    from reconciler.apps import AppSpec, Dialect, ObjectRef, SourceSpec

    def key(dialect: Dialect, ns: str, name: str) -> str:
        return AppSpec(ObjectRef(ns, name), dialect, 1, SourceSpec("https://g/r")).key

    keys = [key(Dialect.NATIVE, "team", "web"), key(Dialect.NATIVE, "default", "team.web"),
            key(Dialect.FLUX, "team", "web"), key(Dialect.ARGO, "team", "web")]  # fmt: skip
    assert len(set(keys)) == 4
    for k in [*keys, key(Dialect.NATIVE, "ns", "x" * 250), key(Dialect.FLUX, "ns", "a." + "b" * 48 + ".-c")]:
        assert len(k) <= 63 and re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", k), k
