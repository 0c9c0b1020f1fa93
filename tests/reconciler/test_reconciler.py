"""The reconciler against the real test apiserver: apply, no-op, prune guards, CRDs, drift, status."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.cluster import KubeCluster
from reconciler.diff import Rule, Rules
from reconciler.engine import Engine, Settings
from reconciler.errors import ClusterError, PruneRefused, RenderError
from reconciler.model import Action, FieldPolicy, ResourceKey
from reconciler.plan import PruneGuards
from tests.fixtures.cluster import TestCluster

pytestmark = pytest.mark.cluster


def deployment(name: str, image: str = "nginx:1.25", replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "main", "image": image}]}},
        },
    }


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def write_source(d: Path, *objs: dict[str, Any]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*.yaml"):
        f.unlink()
    for i, o in enumerate(objs):
        (d / f"{i:03d}-{o['kind'].lower()}.yaml").write_text(json.dumps(o))
    return d


def engine(cluster: TestCluster, ns: str, app: str, **kw: Any) -> Engine:
    guards = kw.pop("guards", PruneGuards())
    rules = kw.pop("rules", Rules())
    return Engine(KubeCluster(cluster.api_client()), Settings(app, ns, ns, guards=guards, rules=rules, **kw))


def app_cli(cluster: TestCluster, command: str, src: Path, app: str, namespace: str, *extra: str) -> tuple[int, str, str]:
    """`reconciler COMMAND --source SRC --name APP` with objects and inventory in ``namespace``."""
    return cli(
        cluster,
        command,
        "--source",
        str(src),
        "--name",
        app,
        "--namespace",
        namespace,
        "--inventory-namespace",
        namespace,
        *extra,
    )


def cli(cluster: TestCluster, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv[:1], "--kubeconfig", str(cluster.kubeconfig), *argv[1:]], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_apply_then_reapply_writes_nothing(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    src = write_source(tmp_path / "src", deployment("web"), configmap("cfg", a="1"))
    e = engine(cluster, namespace, "a1")
    r1 = e.sync(src, "rev1")
    assert sorted(str(a.action) for a in r1.plan.applies) == ["create", "create"]
    r2 = e.sync(src, "rev1")
    assert all(a.action is Action.UNCHANGED for a in r2.plan.applies)
    assert r2.api_writes == 0, "a no-op reconcile writes nothing"
    assert r2.api_calls <= 2 + 2 * 2, "at most one list per kind (plus health), never one call per object"


def test_change_is_applied_and_removal_pruned(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    e = engine(cluster, namespace, "a2")
    src = write_source(tmp_path / "src", deployment("web"), configmap("c1", a="1"), configmap("c2"), configmap("c3"))
    e.sync(src)
    write_source(src, deployment("web", image="nginx:1.26"), configmap("c1", a="1"), configmap("c2"))
    r = e.sync(src)
    assert {(str(a.key), a.action) for a in r.plan.writes} == {(f"Deployment.apps {namespace}/web", Action.UPDATE)}
    assert [str(k) for k in r.pruned] == [f"ConfigMap {namespace}/c3"]
    live = e.cluster.get("apps/v1", r.plan.writes[0].key)
    assert live is not None and live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert e.cluster.get("v1", r.pruned[0]) is None


def test_empty_render_refuses_to_prune(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    e = engine(cluster, namespace, "a3")
    src = write_source(tmp_path / "src", configmap("keep"))
    e.sync(src)
    write_source(src)
    with pytest.raises(PruneRefused, match="no objects"):
        e.sync(src)
    assert e.cluster.get("v1", ResourceKey("", "ConfigMap", namespace, "keep")) is not None
    allowed = engine(cluster, namespace, "a3", guards=PruneGuards(allow_empty=True))
    assert len(allowed.sync(src).pruned) == 1


def test_pruning_more_than_half_is_refused_unless_forced(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    src = write_source(tmp_path / "src", *(configmap(f"c{i}") for i in range(4)))
    engine(cluster, namespace, "a4").sync(src)
    write_source(src, configmap("c0"))
    code, _, err = app_cli(cluster, "sync", src, "a4", namespace, "--prune")
    assert code == 6 and "exceeds 50%" in err
    assert all(
        engine(cluster, namespace, "a4").cluster.get("v1", ResourceKey("", "ConfigMap", namespace, f"c{i}")) for i in range(4)
    ), "nothing deleted"
    code, _, err = app_cli(cluster, "sync", src, "a4", namespace, "--prune", "--force-prune")
    assert code == 0, err


def test_protected_annotated_and_claimed_objects_are_not_pruned(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    e = engine(cluster, namespace, "a5")
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    optout = configmap("optout")
    optout["metadata"]["annotations"] = {"reconciler.imagebot.dev/prune": "disabled"}
    keep = [configmap(f"k{i}") for i in range(6)]
    src = write_source(tmp_path / "src", pvc, optout, configmap("claimed"), *keep)
    e.sync(src)
    other = engine(cluster, namespace, "other-app")
    other_src = write_source(tmp_path / "other", configmap("claimed"))
    assert [a.action for a in other.sync(other_src).plan.applies] == [Action.CONFLICT], "a5 claimed it first"
    write_source(src, *keep)
    r = e.sync(src)
    reasons = {a.key.name: (a.action, a.reason) for a in r.plan.prunes}
    assert reasons["data"][0] is Action.SKIP_PRUNE and "protected" in reasons["data"][1]
    assert reasons["optout"][0] is Action.SKIP_PRUNE and "disabled" in reasons["optout"][1]
    assert reasons["claimed"] == (Action.RELEASE, "still declared by app 'other-app': left to it")
    assert r.pruned == ()
    adopted = other.sync(other_src).plan.applies
    assert [(a.action, a.reason) for a in adopted] == [(Action.UPDATE, "adopted from app 'a5', which no longer declares it")]


def test_render_error_applies_and_prunes_nothing(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    e = engine(cluster, namespace, "a6")
    src = write_source(tmp_path / "src", configmap("c1"), configmap("c2"))
    e.sync(src)
    write_source(src, configmap("c1", a="changed"))
    (src / "broken.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
    calls = e.cluster.writes
    with pytest.raises(RenderError, match=r"without metadata\.name"):
        e.sync(src)
    assert e.cluster.writes - calls <= 1, "only the status records the failed render"
    assert e.cluster.get("v1", ResourceKey("", "ConfigMap", namespace, "c2")) is not None
    code, _, err = app_cli(cluster, "sync", src, "a6", namespace, "--prune")
    assert code == 4 and "metadata.name" in err


def test_crd_then_custom_resource_in_one_sync(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    group = f"g{namespace.replace('-', '')}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"gadgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
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
    cr = {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "spec": {"size": 2}}
    e = engine(cluster, namespace, "a7")
    r = e.sync(write_source(tmp_path / "src", cr, crd))
    order = [a.key.kind for a in r.plan.applies]
    assert order.index("CustomResourceDefinition") < order.index("Gadget")
    assert e.sync(tmp_path / "src").api_writes == 0


def test_scope_violations_exit_2_and_apply_nothing(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    src = write_source(tmp_path / "src", configmap("ok"), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    code, _, err = app_cli(cluster, "sync", src, "a8", namespace, "--no-allow-cluster-scoped")
    assert code == 2 and "cluster-scoped" in err
    write_source(src, configmap("ok"), {**configmap("elsewhere"), "metadata": {"name": "elsewhere", "namespace": "kube-system"}})
    code, _, err = app_cli(cluster, "sync", src, "a8", namespace, "--allowed-namespaces", namespace)
    assert code == 2 and "--allowed-namespaces" in err
    assert engine(cluster, namespace, "a8").cluster.get("v1", ResourceKey("", "ConfigMap", namespace, "ok")) is None


def _other_manager_apply(e: Engine, body: dict[str, Any], manager: str) -> None:
    other = KubeCluster(e.cluster.api, manager)
    from reconciler.model import Manifest, ResourceKey

    meta = body["metadata"]
    key = ResourceKey("apps", body["kind"], meta["namespace"], meta["name"])
    other.apply(Manifest(key, body["apiVersion"], body))


def _wait(pred: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("mode", [FieldPolicy.CORRECT, FieldPolicy.REPORT])
def test_drift_by_another_manager_is_corrected_or_reported_naming_the_manager(
    cluster: TestCluster, namespace: str, tmp_path: Path, mode: FieldPolicy
) -> None:
    e = engine(cluster, namespace, f"d{mode}", rules=Rules(mode))
    e.sync(write_source(tmp_path / "src", deployment("web")))
    stop = threading.Event()
    e.watch(stop, correct=mode is FieldPolicy.CORRECT)
    try:
        time.sleep(0.3)
        patch = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {"replicas": 4, "template": {"spec": {"containers": [{"name": "main", "image": "evil:1"}]}}},
        }
        _other_manager_apply(e, patch, "kubectl-edit")
        key = next(iter(e.desired))

        def replicas() -> int:
            return int((e.cluster.get("apps/v1", key) or {})["spec"]["replicas"])

        if mode is FieldPolicy.CORRECT:
            assert _wait(lambda: replicas() == 1), "replicas healed"
            live = e.cluster.get("apps/v1", key) or {}
            assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
            assert e.corrections, "the correction was recorded (its latency is measured in bench/reconcile.py, not asserted here)"
        else:
            assert _wait(lambda: len(e.drift) >= 2)
            assert replicas() == 4, "report mode changes nothing"
            described = sorted(i.describe() for i in e.drift.values())
            assert any("kubectl-edit" in d and "/spec/replicas 1 → 4" in d for d in described), described
            assert any("kubectl-edit" in d and "/image nginx:1.25 → evil:1" in d for d in described), described
    finally:
        stop.set()


def test_out_of_band_added_field_is_removed_and_ignore_rules_hold(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    rules = Rules(
        FieldPolicy.CORRECT,
        (Rule(FieldPolicy.IGNORE, manager="hpa-controller"), Rule(FieldPolicy.IGNORE, pointer="/metadata/annotations/ignored")),
    )
    e = engine(cluster, namespace, "d3", rules=rules)
    e.sync(write_source(tmp_path / "src", deployment("web")))
    stop = threading.Event()
    e.watch(stop, correct=True)
    try:
        time.sleep(0.3)
        key = next(iter(e.desired))
        base = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": namespace}}
        _other_manager_apply(e, {**base, "spec": {"replicas": 7}}, "hpa-controller")
        _patch_as(e, key, "kube-controller-manager", {"metadata": {"annotations": {"deployment.kubernetes.io/revision": "2"}}})
        _other_manager_apply(
            e, {**base, "metadata": {**base["metadata"], "annotations": {"ignored": "x", "added": "y"}}}, "kubectl-patch"
        )
        assert _wait(lambda: "added" not in ((e.cluster.get("apps/v1", key) or {})["metadata"].get("annotations") or {}))
        live = e.cluster.get("apps/v1", key) or {}
        assert live["spec"]["replicas"] == 7, "an HPA-owned field is not drift and not overwritten"
        assert live["metadata"]["annotations"].get("ignored") == "x"
        assert live["metadata"]["annotations"].get("deployment.kubernetes.io/revision") == "2", "a controller's field stays"
        image = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "evil:1"}]}}}}
        _patch_as(e, key, "kubectl-edit", image)

        def image_back() -> bool:
            return (e.cluster.get("apps/v1", key) or {})["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"

        assert _wait(image_back), "the hand-edited image is corrected"
        assert (e.cluster.get("apps/v1", key) or {})["spec"]["replicas"] == 7, "and the correction leaves the HPA's replicas"
    finally:
        stop.set()


def test_secret_values_never_appear_in_diff_or_logs(
    cluster: TestCluster, namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"password": "hunter2-s3cr3t"}}
    src = write_source(tmp_path / "src", secret)
    e = engine(cluster, namespace, "s1")
    e.sync(src)
    secret["stringData"]["password"] = "n3w-hunter2-s3cr3t"
    write_source(src, secret)
    caplog.set_level(logging.DEBUG)
    code, out, err = app_cli(cluster, "diff", src, "s1", namespace)
    assert code == 1
    text = out + err + caplog.text
    for secret_text in ("hunter2", "aHVudGVy", "bjN3LWh1bnRlcjI"):  # plain and base64 prefixes
        assert secret_text not in text
    assert "redacted" in out


def test_status_and_cli_sync_json(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    src = write_source(tmp_path / "src", deployment("web"))
    code, out, err = app_cli(cluster, "sync", src, "st", namespace, "--json")
    assert code == 0, err
    assert json.loads(out)["counts"] == {"create": 1}
    code, out, err = cli(cluster, "status", "--name", "st", "--inventory-namespace", namespace, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["revision"] == "local" and doc["sync"] == "Synced" and doc["objects"] == 1
    code, _, err = cli(cluster, "status", "--name", "nope", "--inventory-namespace", namespace)
    assert code == 2 and "never synced" in err


def test_git_source_at_branch_tag_and_commit_and_kustomize(
    cluster: TestCluster, namespace: str, tmp_path: Path, git_http, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from reconciler.source import Source
    from tests.fixtures.git import GIT_PASSWORD, GIT_USER, git, make_bare

    kustomization = (
        f"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {namespace}\nresources: [cm.yaml]\n"
    )
    bare = make_bare(
        git_http.root,
        f"src{namespace}",
        {"app/kustomization.yaml": kustomization, "app/cm.yaml": json.dumps(configmap("from-git", v="1"))},
    )
    first = git("-C", str(bare), "rev-parse", "main").strip()
    git("-C", str(bare), "tag", "v1", first)
    monkeypatch.setenv("RECONCILER_GIT_USERNAME", GIT_USER)
    monkeypatch.setenv("RECONCILER_GIT_TOKEN", GIT_PASSWORD)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for revision in ("main", "v1", first):
        fetched = Source(git_http.url(bare), revision, "app").fetch()
        assert fetched.revision == first
        r = engine(cluster, namespace, f"g{revision[:6]}").sync(fetched.root, fetched.revision)
        assert [a.key.name for a in r.plan.applies] == ["from-git"]
    with pytest.raises(Exception, match="leaves the source"):
        Source(git_http.url(bare), "main", "../..").fetch()


def test_wait_times_out_with_exit_7_until_status_says_healthy(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    src = write_source(tmp_path / "src", deployment("web"))
    code, _, err = app_cli(cluster, "sync", src, "w1", namespace, "--wait", "--timeout", "1")
    assert code == 7 and "Progressing" in err
    # no controllers on the test server: write the status a Deployment controller would
    status = {
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1, "readyReplicas": 1}
    }
    from kubernetes import client

    client.AppsV1Api(cluster.api_client()).patch_namespaced_deployment_status("web", namespace, status)
    code, out, err = app_cli(cluster, "sync", src, "w1", namespace, "--wait", "--timeout", "5")
    assert code == 0, err
    assert "health Healthy" in out


def test_sync_and_prune_are_recorded_as_kubernetes_events(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    from kubernetes import client

    e = engine(cluster, namespace, "ev")
    src = write_source(tmp_path / "src", configmap("a"), configmap("b"))
    e.sync(src, "rev-one")
    write_source(src, configmap("a"), configmap("b2"))
    e.sync(src, "rev-two")
    events = client.CoreV1Api(cluster.api_client()).list_namespaced_event(namespace).items
    messages = sorted(ev.message for ev in events if ev.reason == "Synced" and ev.involved_object.name == "reconciler-ev")
    assert any("applied 2 object(s) at rev-one" in m for m in messages), messages
    assert any("applied 1 object(s) at rev-two" in m and f"pruned ConfigMap {namespace}/b" in m for m in messages), messages


def _patch_as(e: Engine, key: ResourceKey, manager: str, patch: dict[str, Any]) -> None:
    """What `kubectl patch`/`kubectl edit` (or a controller's Update) does: a strategic merge patch."""
    other = KubeCluster(e.cluster.api, manager)
    other._call(
        "PATCH", other._path("apps/v1", key), [("fieldManager", manager)], patch, "application/strategic-merge-patch+json"
    )


def test_sync_removes_what_kubectl_added_and_leaves_what_controllers_added(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    e = engine(cluster, namespace, "d4")
    src = write_source(tmp_path / "src", deployment("web"))
    e.sync(src)
    key = next(iter(e.desired))
    sidecar = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1"}]}}}}
    _patch_as(e, key, "kubectl-patch", {"metadata": {"annotations": {"team/owner": "me"}}, **sidecar})
    _patch_as(e, key, "kube-controller-manager", {"metadata": {"annotations": {"deployment.kubernetes.io/revision": "2"}}})
    before = (e.cluster.get("apps/v1", key) or {})["spec"]["template"]["spec"]["containers"]
    at = [c["name"] for c in before].index("sidecar")  # a strategic merge patch puts it first: indices come from live

    r = e.sync(src)
    (a,) = r.plan.writes
    assert a.action is Action.REMOVE_FIELDS
    assert a.remove == (f"/spec/template/spec/containers/{at}", "/metadata/annotations/team~1owner")
    live = e.cluster.get("apps/v1", key) or {}
    assert [c["name"] for c in live["spec"]["template"]["spec"]["containers"]] == ["main"]
    assert live["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "2"}, "the controller's field stays"
    assert e.sync(src).api_writes == 0, "kubectl's leftover claim on the annotations map is not drift: no write"


def test_removal_is_guarded_by_the_resource_version_it_was_computed_from(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    e = engine(cluster, namespace, "d5")
    e.sync(write_source(tmp_path / "src", deployment("web")))
    key = next(iter(e.desired))
    _patch_as(e, key, "kubectl-patch", {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}}})
    stale = e.cluster.get("apps/v1", key) or {}
    _patch_as(e, key, "kubectl-patch", {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "x:1"}]}}}})
    with pytest.raises(ClusterError, match="changed since it was read"):
        e.cluster.remove_fields("apps/v1", key, ["/spec/template/spec/containers/1"], stale["metadata"]["resourceVersion"])
    live = e.cluster.get("apps/v1", key) or {}
    assert len(live["spec"]["template"]["spec"]["containers"]) == 3, "a stale index removed nothing"


def test_diff_names_kubectl_additions_and_the_flag_decides_whose_count(
    cluster: TestCluster, namespace: str, tmp_path: Path
) -> None:
    src = write_source(tmp_path / "src", deployment("web"))
    assert app_cli(cluster, "sync", src, "d6", namespace)[0] == 0
    e = engine(cluster, namespace, "d6")
    e.sync(src)
    key = next(iter(e.desired))
    _patch_as(e, key, "kubectl-edit", {"metadata": {"annotations": {"note": "hand-made"}}})
    code, out, _ = app_cli(cluster, "diff", src, "d6", namespace)
    assert code == 1 and "kubectl-edit" in out and "/metadata/annotations/note" in out, out
    assert app_cli(cluster, "diff", src, "d6", namespace, "--added-drift-manager", "")[0] == 0, "switched off: no drift"
    assert app_cli(cluster, "diff", src, "d6", namespace, "--added-drift-manager", "helm")[0] == 0, "only helm's count"


def test_quantities_the_server_canonicalises_are_not_drift(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    d = deployment("web")
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": 0.5, "memory": "1024Mi"},  # stored as 500m and 1Gi
        "limits": {"cpu": "1000m", "memory": "2Gi"},  # 1000m stored as 1
    }
    e = engine(cluster, namespace, "q1")
    src = write_source(tmp_path / "src", d)
    e.sync(src)
    live = (e.cluster.get("apps/v1", next(iter(e.desired))) or {})["spec"]["template"]["spec"]["containers"][0]
    assert live["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}, "the server did canonicalise"
    assert e.sync(src).api_writes == 0, "equal amounts: nothing to write"
    assert e.diff(src)[0] == [], "and nothing to report"


def test_sync_honours_ignore_and_report_rules_as_diff_does(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    hpa = Rules(rules=(Rule(FieldPolicy.IGNORE, manager="hpa-controller"),))
    e = engine(cluster, namespace, "i1", rules=hpa)
    src = write_source(tmp_path / "src", deployment("web"))
    e.sync(src)
    key = next(iter(e.desired))
    _patch_as(e, key, "hpa-controller", {"spec": {"replicas": 7}})
    assert e.sync(src).api_writes == 0, "a resync leaves the HPA's replicas alone"
    write_source(src, deployment("web", image="nginx:1.27"))
    r = e.sync(src)
    (a,) = r.plan.writes
    assert "/spec/replicas left to hpa-controller (ignore)" in a.reason
    live = e.cluster.get("apps/v1", key) or {}
    assert (live["spec"]["replicas"], live["spec"]["template"]["spec"]["containers"][0]["image"]) == (7, "nginx:1.27")
    assert e.diff(src)[0] == [], "diff agrees: no drift"

    report = engine(cluster, namespace, "i2", rules=Rules(FieldPolicy.REPORT))
    src2 = write_source(tmp_path / "src2", deployment("api"))
    report.sync(src2)
    key2 = next(iter(report.desired))
    _patch_as(report, key2, "kubectl-edit", {"spec": {"replicas": 4}})
    assert report.sync(src2).api_writes == 0, "report mode: a resync overwrites nothing"
    assert (report.cluster.get("apps/v1", key2) or {})["spec"]["replicas"] == 4
    (item,) = report.diff(src2)[0]
    assert item.describe().startswith("kubectl-edit") and item.policy is FieldPolicy.REPORT


def test_rollout_restart_survives_sync(cluster: TestCluster, namespace: str, tmp_path: Path) -> None:
    e = engine(cluster, namespace, "i3")
    src = write_source(tmp_path / "src", deployment("web"))
    e.sync(src)
    key = next(iter(e.desired))
    stamp = {"kubectl.kubernetes.io/restartedAt": "2026-11-22T03:00:00Z"}
    _patch_as(e, key, "kubectl-rollout", {"spec": {"template": {"metadata": {"annotations": stamp}}}})
    assert e.sync(src).api_writes == 0, "undoing a restart would roll the pods out a second time"
    assert (e.cluster.get("apps/v1", key) or {})["spec"]["template"]["metadata"]["annotations"] == stamp


def test_a_known_drift_is_reported_once_not_on_every_status_update(
    cluster: TestCluster, namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    e = engine(cluster, namespace, "i4", rules=Rules(FieldPolicy.REPORT))
    e.sync(write_source(tmp_path / "src", deployment("web")))
    key = next(iter(e.desired))
    _patch_as(e, key, "kubectl-edit", {"spec": {"replicas": 4}})
    live = e.cluster.get("apps/v1", key) or {}
    caplog.set_level(logging.WARNING, logger="reconciler.engine")
    for _ in range(3):  # what a controller writing status every few seconds looks like to the watch
        assert len(e.on_event("MODIFIED", live, time.monotonic(), correct=False)) == 1
    assert sum("drift on" in r.getMessage() for r in caplog.records) == 1
    assert (
        e.metrics.registry.get_sample_value("reconciler_drift_detected_total", {"kind": "Deployment", "field": "/spec/replicas"})
        == 1
    )
    _patch_as(e, key, "kubectl-edit", {"spec": {"replicas": 5}})
    e.on_event("MODIFIED", e.cluster.get("apps/v1", key) or {}, time.monotonic(), correct=False)
    assert sum("drift on" in r.getMessage() for r in caplog.records) == 2, "a new value is news again"
