"""Pure rules: what a confined source may touch, what counts as drift whatever the verb, server defaults, port keys."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.diff import Rules, added_fields, drift, in_sync, server_defaults
from reconciler.model import DriftKind, Manifest, ResourceKey
from reconciler.plan import scope_violations


def man(kind: str, name: str, ns: str = "", group: str = "", body: dict[str, Any] | None = None) -> Manifest:
    api = f"{group}/v1" if group else "v1"
    return Manifest(
        ResourceKey(group, kind, ns, name), api, body or {"apiVersion": api, "kind": kind, "metadata": {"name": name}}
    )


CRB = man("ClusterRoleBinding", "a-admin", group="rbac.authorization.k8s.io")
NS_B = man("Namespace", "b")
NS_A = man("Namespace", "a")
CM_A = man("ConfigMap", "c", "a")


@pytest.mark.parametrize(
    ("manifests", "allowed", "kinds", "expect"),
    [
        ([CM_A, CRB, NS_B], None, frozenset(), []),  # not confined: cluster scope allowed by default
        ([CM_A], frozenset({"a"}), frozenset(), []),
        ([CM_A, CRB], frozenset({"a"}), frozenset(), ["--allow-cluster-kind ClusterRoleBinding"]),
        ([NS_B], frozenset({"a"}), frozenset({"Namespace"}), ["Namespace b is outside --allowed-namespaces"]),
        ([NS_A], frozenset({"a"}), frozenset({"Namespace"}), []),
        ([CRB], frozenset({"a"}), frozenset({"ClusterRoleBinding.rbac.authorization.k8s.io"}), []),
        ([man("ConfigMap", "c", "b")], frozenset({"a"}), frozenset(), ["ConfigMap b/c is outside --allowed-namespaces"]),
    ],
)
def test_scope_violations(
    manifests: list[Manifest], allowed: frozenset[str] | None, kinds: frozenset[str], expect: list[str]
) -> None:
    bad = scope_violations(manifests, allowed, True, kinds)
    assert len(bad) == len(expect) and all(e in b for e, b in zip(expect, bad, strict=True)), bad


def test_no_cluster_scope_at_all_refuses_even_allowed_kinds() -> None:
    assert scope_violations([NS_A], frozenset({"a"}), False, frozenset({"Namespace"})) == [
        "Namespace a is cluster-scoped (allow with --allow-cluster-scoped)"
    ]


def deploy(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": "n"}, "spec": spec}


def entry(manager: str, fields: dict[str, Any], subresource: str = "") -> dict[str, Any]:
    e = {"manager": manager, "operation": "Update", "fieldsV1": fields, "time": "2026-11-29T05:00:00Z"}
    return {**e, "subresource": subresource} if subresource else e


def live_with(managed: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    obj = deploy(**spec)
    obj["metadata"]["managedFields"] = managed
    return obj


D = Manifest(ResourceKey("apps", "Deployment", "n", "w"), "apps/v1", deploy(template={}))
REPLICAS = {"f:spec": {"f:replicas": {}}}


@pytest.mark.parametrize("subresource", ["", "scale"])
def test_a_scale_write_is_drift_like_a_patch(subresource: str) -> None:
    live = live_with([entry("kubectl", REPLICAS, subresource)], replicas=4, template={})
    (item,) = drift(D, live, "reconciler", Rules())
    assert (item.kind, item.pointer, item.manager) == (DriftKind.ADDED, "/spec/replicas", "kubectl")
    assert added_fields(D, live, "reconciler", Rules()) == ("/spec/replicas",)


def test_status_writes_and_controllers_scales_are_not() -> None:
    live = live_with(
        [entry("kubectl", {"f:status": {"f:replicas": {}}}, "status"), entry("horizontal-pod-autoscaler", REPLICAS, "scale")],
        replicas=4,
        template={},
    )
    assert drift(D, live, "reconciler", Rules()) == []


def test_our_own_labels_and_annotations_are_never_added_drift() -> None:
    fields = {
        "f:metadata": {
            "f:annotations": {"f:reconciler.imagebot.dev/prune": {}, "f:note": {}},
            "f:labels": {"f:reconciler.imagebot.dev/pinned": {}},
        }
    }
    live = live_with([entry("kubectl-annotate", fields)], template={})
    live["metadata"]["annotations"] = {"reconciler.imagebot.dev/prune": "disabled", "note": "x"}
    live["metadata"]["labels"] = {"reconciler.imagebot.dev/pinned": "yes"}
    assert [i.pointer for i in drift(D, live, "reconciler", Rules())] == ["/metadata/annotations/note"]


def test_server_defaults_are_what_a_removal_gives_back_unchanged() -> None:
    fields = {"f:spec": {"f:revisionHistoryLimit": {}, "f:paused": {}}}
    live = live_with([entry("kubectl-create", fields)], template={}, revisionHistoryLimit=10, paused=True)
    after = deploy(template={}, revisionHistoryLimit=10)  # the server re-defaulted one, the other is gone
    defaults = server_defaults(D, live, after, "reconciler", Rules())
    assert defaults == frozenset({"/spec/revisionHistoryLimit"})
    assert [i.pointer for i in drift(D, live, "reconciler", Rules(), defaults)] == ["/spec/paused"]
    assert added_fields(D, live, "reconciler", Rules(), defaults) == ("/spec/paused",)


def _pod(ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"template": {"spec": {"containers": [{"name": "dns", "ports": ports}]}}}


def test_ports_are_keyed_by_number_and_protocol() -> None:
    git = Manifest(D.key, "apps/v1", deploy(**_pod([{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53}])))
    live = deploy(**_pod([{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53, "protocol": "TCP"}]))
    assert in_sync(git, live), "53/UDP and the defaulted 53/TCP are two ports, both there"
    kubectl_owns_tcp = {
        "f:spec": {
            "f:template": {
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"dns"}': {
                            "f:ports": {
                                'k:{"containerPort":53,"protocol":"TCP"}': {".": {}, "f:containerPort": {}, "f:protocol": {}}
                            }
                        }
                    }
                }
            }
        }
    }
    live["metadata"]["managedFields"] = [entry("kubectl-create", kubectl_owns_tcp)]
    assert drift(git, live, "reconciler", Rules()) == [], "Git's 53 without a protocol is that item: declared"


def test_a_named_port_changed_by_hand_is_attributed_through_the_servers_key() -> None:
    git = Manifest(D.key, "apps/v1", deploy(**_pod([{"name": "http", "containerPort": 8080}])))
    live = deploy(**_pod([{"name": "http", "containerPort": 9090, "protocol": "TCP"}]))
    port = {'k:{"containerPort":9090,"protocol":"TCP"}': {".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}}}
    fields = {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"dns"}': {"f:ports": port}}}}}}
    live["metadata"]["managedFields"] = [entry("kubectl-edit", fields)]
    (item,) = [i for i in drift(git, live, "reconciler", Rules()) if i.kind is DriftKind.CHANGED]
    assert (item.pointer, item.manager, item.desired, item.live) == (
        "/spec/template/spec/containers/dns/ports/http/containerPort",
        "kubectl-edit",
        8080,
        9090,
    )
