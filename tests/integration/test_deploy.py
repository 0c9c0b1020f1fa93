"""deploy/: every manifest is accepted by a server-side dry-run apply, and RBAC grants nothing
beyond what each component uses; leader election on a real Lease."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from ruamel.yaml import YAML

from gitopskit.lease import LeaseLock
from imagebot.runtime.leader import LEASE_NAME, RBAC_USES
from reconciler import rbac
from tests.fixtures.cluster import TestCluster

pytestmark = pytest.mark.cluster
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def docs(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in YAML(typ="safe").load_all(path.read_text()) if d]


def test_every_manifest_passes_server_side_dry_run(cluster: TestCluster) -> None:
    for overlay in (DEPLOY / "base", DEPLOY / "overlays" / "example", DEPLOY / "controller", DEPLOY / "image-controller",
                    DEPLOY / "dashboard"):
        built = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, check=True).stdout
        proc = subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager",
                "deploy-test",
                "-f",
                "-",
            ],
            input=built,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("(server dry run)") == len([d for d in YAML(typ="safe").load_all(built) if d])


def _rules(kind_name: str) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    out = []
    for f in sorted((DEPLOY / "base").glob("*.yaml")):
        for d in docs(f):
            if d["kind"] == "Role" and d["metadata"]["name"].startswith(kind_name):
                out.extend((d["metadata"]["namespace"], r) for r in d["rules"])
    return out


def test_imagebot_rbac_is_its_lease_only() -> None:
    granted = {(g, res, v) for _, r in _rules("imagebot") for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}
    assert granted == RBAC_USES
    for _, r in _rules("imagebot"):
        if set(r["verbs"]) & {"get", "update"}:
            assert r.get("resourceNames") == ["imagebot-leader"], "get/update only its own Lease"
    roles = [d for f in (DEPLOY / "base").glob("*.yaml") for d in docs(f)]
    assert not [d for d in roles if d["kind"] in ("ClusterRole", "ClusterRoleBinding")], "no cluster-wide grants by default"


def test_reconciler_rbac_matches_what_it_does() -> None:
    manage = [(ns, r) for ns, r in _rules("reconciler-manage")]
    own = [(ns, r) for ns, r in _rules("reconciler-inventory")]
    assert {ns for ns, _ in manage} == {"apps"} and {ns for ns, _ in own} == {"gitops-system"}
    for _, r in manage:
        assert set(r["verbs"]) <= rbac.MANAGE_VERBS and "*" not in r["resources"] and "*" not in r["apiGroups"]
    granted_own = {(g, res, v) for _, r in own for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}
    assert granted_own == rbac.OWN_NAMESPACE


def test_lease_election_one_leader_and_takeover_after_expiry(cluster: TestCluster, namespace: str) -> None:
    now = [1000.0]
    a = LeaseLock(cluster.api_client(), namespace, LEASE_NAME, "a", duration=15, clock=lambda: now[0])
    b = LeaseLock(cluster.api_client(), namespace, LEASE_NAME, "b", duration=15, clock=lambda: now[0])
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    now[0] += 10
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew(), "renewal keeps the lease"
    now[0] += 14
    assert not b.try_acquire_or_renew(), "expiry counts from the renewal b saw, on b's own clock"
    now[0] += 2
    assert b.try_acquire_or_renew() and not a.try_acquire_or_renew(), "an expired lease is taken over"
    lease = json.loads(
        subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "-n",
                namespace,
                "get",
                "lease",
                "imagebot-leader",
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert lease["spec"]["holderIdentity"] == "b"


# ---------------------------------------------------------------- what the reconciler really asks for
def _attributes(method: str, url: str) -> tuple[str, str, str, str, str] | None:
    """(verb, apiGroup, resource, namespace, name) of one request, as the RBAC authorizer sees it;
    None for discovery, which every authenticated client may read."""
    parts_url = urlsplit(url)
    parts = [p for p in parts_url.path.split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) > 1:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    watching = parse_qs(parts_url.query).get("watch", [""])[0].lower() in ("true", "1")
    verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method)
    verb = verb or ("get" if name else "watch" if watching else "list")
    return verb, group, resource, namespace, name


def _record(api: Any) -> list[tuple[str, str]]:
    """Every (method, URL) the client sends from now on: raw calls, the dynamic client and watches alike."""
    seen: list[tuple[str, str]] = []
    pool = api.rest_client.pool_manager
    real = pool.request

    def recording(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        seen.append((method, url))
        return real(method, url, *args, **kwargs)

    pool.request = recording
    return seen


def _granted(rules: list[tuple[str, dict]], attrs: tuple[str, str, str, str, str]) -> bool:  # type: ignore[type-arg]
    verb, group, resource, namespace, name = attrs
    return any(
        ns == namespace
        and group in r["apiGroups"]
        and resource in r["resources"]
        and verb in r["verbs"]
        and (not r.get("resourceNames") or name in r["resourceNames"])
        for ns, r in rules
    )


def test_every_request_the_reconciler_makes_is_granted_by_its_namespaced_roles(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    from kubernetes import client

    from reconciler.cluster import KubeCluster
    from reconciler.engine import Engine, Settings
    from reconciler.plan import PruneGuards

    core = client.CoreV1Api(cluster.api_client())
    inventory_ns = f"{namespace}-inv"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=inventory_ns)))
    # the deploy's namespaces stand for this test's: apps → namespace, gitops-system → inventory_ns
    rename = {"apps": namespace, "gitops-system": inventory_ns}
    rules = [(rename[ns], r) for ns, r in _rules("reconciler")]

    api = cluster.api_client()
    seen = _record(api)
    settings = Settings(
        "rbac-app",
        namespace,
        inventory_ns,
        allowed_namespaces=frozenset({namespace}),
        allow_cluster_scoped=False,
        guards=PruneGuards(force=True),
    )
    e = Engine(KubeCluster(api), settings)
    src = tmp_path / "src"
    src.mkdir()

    def write(image: str, with_config: bool = True) -> None:
        objs = [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}},
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "m", "image": image}]}},
                },
            },
        ]
        if with_config:
            objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}})
        for f in src.glob("*.yaml"):
            f.unlink()
        for i, o in enumerate(objs):
            (src / f"{i}.yaml").write_text(json.dumps(o))

    write("nginx:1")
    e.sync(src)
    e.sync(src)
    write("nginx:2", with_config=False)
    assert e.sync(src).pruned, "the ConfigMap left Git and was pruned"
    e.diff(src)
    e.save_status()
    stop = threading.Event()
    e.watch(stop, correct=True)
    other = client.AppsV1Api(cluster.api_client())  # a person with kubectl, not recorded
    other.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 3}}, field_manager="kubectl-edit")
    deadline = time.monotonic() + 10
    while not e.corrections and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    assert e.corrections, "the watch saw and corrected the drift"

    asked = {a for m, u in seen if (a := _attributes(m, u)) is not None}
    assert {a[0] for a in asked} >= {"get", "list", "watch", "create", "patch", "delete"}, "the scenario covers every verb"
    refused = sorted(a for a in asked if not _granted(rules, a))
    assert not refused, f"requests the deploy's Roles would refuse (403 in a real cluster): {refused}"
    core.delete_namespace(inventory_ns)


def test_every_request_the_bot_makes_for_leader_election_is_granted_by_its_role(cluster: TestCluster, namespace: str) -> None:
    api = cluster.api_client()
    seen = _record(api)
    now = [1000.0]
    a = LeaseLock(api, namespace, LEASE_NAME, "a", duration=15, clock=lambda: now[0])
    assert a.try_acquire_or_renew() and a.try_acquire_or_renew(), "create, then get + renew"
    b = LeaseLock(api, namespace, LEASE_NAME, "b", duration=15, clock=lambda: now[0])
    assert not b.try_acquire_or_renew()
    now[0] += 30
    assert b.try_acquire_or_renew(), "take over after expiry"
    b.release()
    rules = [(namespace, r) for _, r in _rules("imagebot")]
    asked = {x for m, u in seen if (x := _attributes(m, u)) is not None}
    assert {x[0] for x in asked} == {"create", "get", "update"}
    assert not sorted(x for x in asked if not _granted(rules, x))


def test_a_new_candidate_waits_a_full_duration_whatever_the_lease_timestamps_say(cluster: TestCluster, namespace: str) -> None:
    """Expiry is judged on the candidate's own clock from when it first saw the record, never by comparing
    the holder's renewTime with the local wall clock (two nodes' clocks disagree)."""
    import datetime as dt

    now = [1000.0]
    skewed = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # the holder's wall clock is decades behind
    a = LeaseLock(cluster.api_client(), namespace, LEASE_NAME, "a", duration=15, clock=lambda: now[0], wall=lambda: skewed)
    assert a.try_acquire_or_renew()
    b = LeaseLock(cluster.api_client(), namespace, LEASE_NAME, "b", duration=15, clock=lambda: now[0])
    assert not b.try_acquire_or_renew(), "an ancient renewTime is no proof of expiry"
    now[0] += 5
    a.release()
    assert b.try_acquire_or_renew(), "a released lease is taken at the next round"


# ---------------------------------------------------------------- what the imagebot controller really asks for
def test_every_request_the_image_controller_makes_is_granted_by_its_namespaced_roles(
    cluster: TestCluster, namespace: str, tmp_path: Path, registry_basic: Any, git_http: Any
) -> None:
    """The realistic Flux set end to end (scan, select, commit, status, Events, a missing Secret, leader election)
    with every request recorded and checked against deploy/image-controller's Roles."""
    from kubernetes import client

    from gitopskit.lease import LeaderElector, LeaseLock, LeaseTiming
    from imagebot.controller.controller import ImageController
    from tests.fixtures.git import GIT_PASSWORD, log, make_bare
    from tests.fixtures.registry import PASSWORD, USER
    from tests.integration.test_crds import install
    from tests.integration.test_image_controller import Cluster, flux, manifests, realistic_set, until

    core = client.CoreV1Api(cluster.api_client())
    lease_ns = f"{namespace}-lease"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=lease_ns)))
    rename = {"flux-system": namespace, "gitops-system": lease_ns}
    rules = [
        (rename[d["metadata"]["namespace"]], r)
        for d in docs(DEPLOY / "image-controller" / "image-controller.yaml")
        if d["kind"] == "Role"
        for r in d["rules"]
    ]
    install(cluster.api_client())
    kube = Cluster(cluster.api_client(), namespace)
    registry_basic.pusher().push("team/app", ["1.0.0", "1.1.0"])
    bare = make_bare(git_http.root, f"rbac-{namespace}", manifests(registry_basic.host, namespace))
    realistic_set(kube, registry_basic, git_http.url(bare), USER, PASSWORD, GIT_PASSWORD)
    kube.create(flux("ImageRepository", "no-secret", {"image": "127.0.0.1:1/x", "interval": "1h", "secretRef": {"name": "x"},
                                                      "serviceAccountName": "puller"}))  # fmt: skip
    gated = flux("ImagePolicy", "signed", {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": "^1"}}})
    gated["metadata"]["annotations"] = {"imagebot.dev/cosign-secret": "cosign-pub"}  # its Secret read with GET
    kube.create(gated)

    api = cluster.api_client()
    seen = _record(api)
    timing = LeaseTiming(6, 4, 1)
    elector = LeaderElector(LeaseLock(api, lease_ns, "imagebot-controller-main", "rbac-test", timing.duration), timing)
    ctl = ImageController(api, (namespace,), workers=4, cache=tmp_path / "cache", elector=elector)
    ctl.start()
    try:
        until(lambda: len(log(bare, "main")) >= 2, what="a commit on the remote")
        until(lambda: kube.get("ImageUpdateAutomation", "config").get("status", {}).get("lastPushCommit"), what="status")
        until(lambda: kube.get("ImageRepository", "no-secret").get("status", {}).get("conditions"), what="failure")
        until(lambda: "cosign-pub" in str(kube.get("ImagePolicy", "signed").get("status")), what="the cosign Secret named")
        # imagebot's own settings (after the commit: these policies have no marker in the files): a promotion (the
        # controller records since when its source has its tag) and a minimum age (it records when it first saw the
        # tags) — both annotations it writes on ImagePolicies
        for name, extra in (("app-prod", {"imagebot.dev/promote-from": "app", "imagebot.dev/soak": "0s"}),
                            ("app-aged", {"imagebot.dev/min-age": "1h"})):  # fmt: skip
            pol = flux("ImagePolicy", name, {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": "^1.0"}}})
            pol["metadata"]["annotations"] = extra
            kube.create(pol)
        until(lambda: (kube.get("ImagePolicy", "app-prod").get("status") or {}).get("latestRef"), what="a promotion")
        until(lambda: "imagebot.dev/first-seen" in kube.get("ImagePolicy", "app-aged")["metadata"].get("annotations", {}),
              what="the min-age record")  # fmt: skip
    finally:
        ctl.stop()
    asked = {a for m, u in seen if (a := _attributes(m, u)) is not None}
    assert {a[0] for a in asked} >= {"get", "list", "watch", "create", "patch", "update"}, "the scenario covers every verb"
    refused = sorted(a for a in asked if not _granted(rules, a))
    assert not refused, f"requests the deploy's Roles would refuse (403 in a real cluster): {refused}"
    core.delete_namespace(lease_ns)
