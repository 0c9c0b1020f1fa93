"""Pure parts of the reconciler: plan order and prune guards, declared-field diff, health, render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.diff import Held, Rule, Rules, added_fields, applicable, drift, in_sync, owner_of, parse_quantity
from reconciler.errors import RenderError
from reconciler.health import object_health, rollup
from reconciler.model import TRACKING_LABEL, Action, FieldPolicy, Health, Manifest, ResourceKey
from reconciler.plan import PruneGuards, plan
from reconciler.render import render


def m(kind: str, name: str, ns: str = "n", group: str = "", body: dict | None = None) -> Manifest:  # type: ignore[type-arg]
    api = f"{group}/v1" if group else "v1"
    return Manifest(
        ResourceKey(group, kind, ns, name), api, body or {"apiVersion": api, "kind": kind, "metadata": {"name": name}}
    )


def test_apply_order_crds_namespaces_cluster_then_namespaced() -> None:
    desired = [
        m("ConfigMap", "c"),
        m("Namespace", "n", ""),
        m("ClusterRole", "r", "", "rbac.authorization.k8s.io"),
        m("CustomResourceDefinition", "x", "", "apiextensions.k8s.io"),
    ]
    p = plan(desired, {}, [], "app", TRACKING_LABEL)
    assert [a.key.kind for a in p.applies] == ["CustomResourceDefinition", "Namespace", "ClusterRole", "ConfigMap"]
    assert all(a.action is Action.CREATE for a in p.applies)


@pytest.mark.parametrize(
    ("desired", "inventory", "guards", "refused"),
    [
        (0, 3, PruneGuards(), "no objects"),
        (0, 3, PruneGuards(allow_empty=True), ""),
        (1, 4, PruneGuards(), "exceeds 50%"),
        (1, 4, PruneGuards(force=True), ""),
        (2, 4, PruneGuards(), ""),
    ],
    ids=["empty_refused", "empty_allowed", "over_half_refused", "over_half_forced", "half_is_fine"],
)
def test_prune_guards(desired: int, inventory: int, guards: PruneGuards, refused: str) -> None:
    inv = [ResourceKey("", "ConfigMap", "n", f"c{i}") for i in range(inventory)]
    live = {k: {"metadata": {"labels": {TRACKING_LABEL: "app"}}} for k in inv}
    p = plan([m("ConfigMap", f"c{i}") for i in range(desired)], live, inv, "app", TRACKING_LABEL, guards)
    assert (refused in p.refused) if refused else p.refused == ""
    if refused:
        assert all(a.action is Action.SKIP_PRUNE for a in p.prunes)


def test_declared_fields_only_and_merge_keys() -> None:
    desired = m(
        "Deployment",
        "w",
        group="apps",
        body={
            "spec": {
                "replicas": 1,
                "template": {"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}},
            }
        },
    )
    live = {
        "spec": {
            "replicas": 1,
            "paused": False,
            "template": {
                "spec": {
                    "containers": [{"name": "b", "image": "y:1", "imagePullPolicy": "Always"}, {"name": "a", "image": "x:2"}]
                }
            },
        }
    }
    assert not in_sync(desired, live)
    items = drift(desired, live, "reconciler", Rules())
    assert [(i.pointer, i.desired, i.live) for i in items] == [("/spec/template/spec/containers/a/image", "x:1", "x:2")]
    live["spec"]["template"]["spec"]["containers"][1]["image"] = "x:1"
    assert in_sync(desired, live)


def test_attribution_from_managed_fields() -> None:
    managed = [
        {
            "manager": "reconciler",
            "operation": "Apply",
            "time": "2026-01-01T10:00:00Z",
            "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}},
        },
        {
            "manager": "kubectl-scale",
            "operation": "Update",
            "time": "2026-01-01T12:03:07Z",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        },
    ]
    assert owner_of(managed, ("f:spec", "f:replicas"))[0] in ("reconciler", "kubectl-scale")
    desired = m("Deployment", "w", group="apps", body={"spec": {"replicas": 2}})
    live = {"metadata": {"managedFields": managed[1:]}, "spec": {"replicas": 10}}
    (item,) = drift(desired, live, "reconciler", Rules())
    assert item.describe() == "kubectl-scale 12:03:07 /spec/replicas 2 → 10"
    ignored = drift(desired, live, "reconciler", Rules(rules=(Rule(FieldPolicy.IGNORE, manager="kubectl-scale"),)))
    assert ignored == []


def _web(containers: list[dict], annotations: dict | None = None, managed: list[dict] | None = None) -> dict:  # type: ignore[type-arg]
    meta: dict = {"name": "web", "resourceVersion": "7", "managedFields": managed or []}  # type: ignore[type-arg]
    if annotations:
        meta["annotations"] = annotations
    return {"metadata": meta, "spec": {"template": {"spec": {"containers": containers}}}}


def _owned(manager: str, fields: dict, operation: str = "Update") -> dict:  # type: ignore[type-arg]
    return {"manager": manager, "operation": operation, "time": "2026-01-01T12:00:00Z", "fieldsV1": fields}


GIT_WEB = _web([{"name": "main", "image": "app:1"}])
SIDECAR = {'k:{"name":"sidecar"}': {".": {}, "f:image": {}, "f:name": {}}}
SIDECAR2 = {'k:{"name":"debug"}': {".": {}, "f:image": {}, "f:name": {}}}
ANNOT = {"f:metadata": {"f:annotations": {"f:team/owner": {}}}}
REVISION = {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}}
CONTAINERS = [{"name": "main", "image": "app:1"}, {"name": "sidecar", "image": "sh:1"}, {"name": "debug", "image": "busybox"}]


@pytest.mark.parametrize(
    ("live", "rules", "removed"),
    [
        pytest.param(
            _web(CONTAINERS[:1], {"team/owner": "x"}, [_owned("kubectl-edit", ANNOT)]),
            Rules(),
            ("/metadata/annotations/team~1owner",),
            id="kubectl-edit-annotation-removed-with-escaped-key",
        ),
        pytest.param(
            _web(CONTAINERS[:1], {"deployment.kubernetes.io/revision": "3"}, [_owned("kube-controller-manager", REVISION)]),
            Rules(),
            (),
            id="controller-annotation-is-the-controllers",
        ),
        pytest.param(
            _web(
                CONTAINERS[:2],
                managed=[_owned("kubectl-patch", {"f:spec": {"f:template": {"f:spec": {"f:containers": SIDECAR}}}})],
            ),
            Rules(),
            ("/spec/template/spec/containers/1",),
            id="added-container-removed-whole-by-index",
        ),
        pytest.param(
            _web(
                CONTAINERS,
                managed=[
                    _owned("kubectl-patch", {"f:spec": {"f:template": {"f:spec": {"f:containers": {**SIDECAR, **SIDECAR2}}}}})
                ],
            ),
            Rules(),
            ("/spec/template/spec/containers/2", "/spec/template/spec/containers/1"),
            id="highest-index-first-so-each-remove-stays-valid",
        ),
        pytest.param(
            _web(CONTAINERS[:1], {"team/owner": "x"}, [_owned("kubectl-edit", ANNOT)]),
            Rules(rules=(Rule(FieldPolicy.IGNORE, pointer="/metadata/annotations/*"),)),
            (),
            id="ignored-pointer-kept",
        ),
        pytest.param(
            _web(CONTAINERS[:1], {"team/owner": "x"}, [_owned("kubectl-edit", ANNOT)]),
            Rules(rules=(Rule(FieldPolicy.REPORT, pointer="/metadata/annotations/*"),)),
            (),
            id="reported-pointer-kept",
        ),
        pytest.param(
            _web(
                CONTAINERS[:1],
                {"deployment.kubernetes.io/revision": "3"},
                [_owned("kubectl-patch", {"f:metadata": {"f:annotations": {}}}), _owned("kube-controller-manager", REVISION)],
            ),
            Rules(),
            (),
            id="claim-on-a-map-others-fill-is-not-drift",
        ),
        pytest.param(
            _web(
                CONTAINERS[:1],
                {"deployment.kubernetes.io/revision": "3"},
                [
                    _owned("kubectl-patch", {"f:metadata": {"f:annotations": {".": {}}}}),
                    _owned("kube-controller-manager", REVISION),
                ],
            ),
            Rules(),
            (),
            id="map-existence-marker-is-not-drift",
        ),
        pytest.param(
            _web(CONTAINERS[:1], {"team/owner": "x"}, [_owned("kubectl-edit", ANNOT)]),
            Rules(added_by=()),
            (),
            id="added-drift-switched-off",
        ),
        pytest.param(
            _web(CONTAINERS[:1], {"team/owner": "x"}, [_owned("argocd-controller", ANNOT, "Apply")]),
            Rules(added_by=("argocd",)),
            ("/metadata/annotations/team~1owner",),
            id="configured-manager-prefix",
        ),
    ],
)
def test_fields_added_out_of_band_are_removed_only_when_kubectl_added_them(
    live: dict,
    rules: Rules,
    removed: tuple[str, ...],  # type: ignore[type-arg]
) -> None:
    desired = m("Deployment", "web", group="apps", body=GIT_WEB)
    assert added_fields(desired, live, "reconciler", rules) == removed
    shown = {i.pointer for i in drift(desired, live, "reconciler", rules) if i.kind.name == "ADDED"}
    assert bool(shown) == bool(removed) or rules.rules, "drift shows what would be removed"


def test_plan_removes_added_fields_even_when_declared_fields_match() -> None:
    desired = m("Deployment", "web", group="apps", body=GIT_WEB)
    added = _web(CONTAINERS[:1], {"team/owner": "x"}, [_owned("kubectl-edit", ANNOT)])
    (a,) = plan([desired], {desired.key: added}, [], "app", TRACKING_LABEL, rules=Rules()).applies
    assert (a.action, a.remove) == (Action.REMOVE_FIELDS, ("/metadata/annotations/team~1owner",))
    changed = json.loads(json.dumps(added))
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "app:2"
    (a,) = plan([desired], {desired.key: changed}, [], "app", TRACKING_LABEL, rules=Rules()).applies
    assert (a.action, a.remove) == (Action.UPDATE, ("/metadata/annotations/team~1owner",))
    (a,) = plan([desired], {desired.key: added}, [], "app", TRACKING_LABEL).applies
    assert a.action is Action.UNCHANGED, "without rules the plan only compares declared fields"


@pytest.mark.parametrize(
    ("kind", "obj", "health"),
    [
        ("Deployment", None, Health.MISSING),
        (
            "Deployment",
            {
                "metadata": {"generation": 2},
                "spec": {"replicas": 2},
                "status": {"observedGeneration": 2, "updatedReplicas": 2, "availableReplicas": 2},
            },
            Health.HEALTHY,
        ),
        (
            "Deployment",
            {"metadata": {"generation": 3}, "spec": {"replicas": 2}, "status": {"observedGeneration": 2}},
            Health.PROGRESSING,
        ),
        (
            "Deployment",
            {"status": {"conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}},
            Health.DEGRADED,
        ),
        ("Job", {"status": {"conditions": [{"type": "Failed", "status": "True"}]}}, Health.DEGRADED),
        ("Job", {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, Health.HEALTHY),
        ("Widget", {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Broken"}]}}, Health.DEGRADED),
        ("ConfigMap", {"data": {}}, Health.HEALTHY),
    ],
)
def test_object_health(kind: str, obj: dict | None, health: Health) -> None:  # type: ignore[type-arg]
    assert object_health(kind, obj)[0] is health


def test_rollup_worst_wins() -> None:
    assert rollup([Health.HEALTHY, Health.PROGRESSING]) is Health.PROGRESSING
    assert rollup([Health.MISSING, Health.PROGRESSING]) is Health.MISSING
    assert rollup([Health.MISSING, Health.DEGRADED]) is Health.DEGRADED


def test_render_ignores_non_manifests_and_refuses_escaping_links(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nsettings: {x: 1}\n")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "list.json").write_text(
        json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}]}
        )
    )
    out = render(tmp_path, "app", TRACKING_LABEL)
    assert sorted(x.key.name for x in out) == ["a", "b"]
    assert all(x.body["metadata"]["labels"][TRACKING_LABEL] == "app" for x in out)
    outside = tmp_path.parent / "outside.yaml"
    outside.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: evil}\n")
    (tmp_path / "link.yaml").symlink_to(outside)
    with pytest.raises(RenderError, match="outside the source"):
        render(tmp_path, "app", TRACKING_LABEL)


def test_reconciler_webhook_needs_a_valid_signature_or_gitlab_token() -> None:
    import threading
    import urllib.error
    import urllib.request

    from imagebot.runtime.webhooks import sign
    from reconciler.cli import _webhook_server
    from reconciler.engine import Metrics
    from tests.fixtures.net import free_port

    class FakeEngine:
        metrics = Metrics()

    trigger = threading.Event()
    port = free_port()
    server = _webhook_server(f"127.0.0.1:{port}", "s3cret", trigger, FakeEngine())  # type: ignore[arg-type]
    try:
        body = b'{"ref": "refs/heads/main"}'

        def post(sig: str | None, extra: dict[str, str] | None = None) -> int:
            headers = {"X-Hub-Signature-256": sig} if sig else {}
            headers.update(extra or {})
            req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, method="POST", headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert post(None) == 401 and post(sign("wrong", body)) == 401 and not trigger.is_set()
        assert post(None, {"X-Gitlab-Token": "wrong"}) == 401 and not trigger.is_set()
        assert post(sign("s3cret", body)) == 202 and trigger.is_set()
        trigger.clear()
        assert post(None, {"X-Gitlab-Token": "s3cret"}) == 202 and trigger.is_set(), "GitLab sends a token, not a signature"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
    finally:
        server.shutdown()


RES = "/spec/template/spec/containers/0/resources"


@pytest.mark.parametrize(
    ("path", "git", "live", "same"),
    [
        (f"{RES}/requests/cpu", 0.5, "500m", True),
        (f"{RES}/requests/cpu", "1000m", "1", True),
        (f"{RES}/limits/memory", "1024Mi", "1Gi", True),
        (f"{RES}/limits/memory", "1e9", "1G", True),
        (f"{RES}/limits/memory", "1Gi", "1G", False),
        (f"{RES}/limits/cpu", 2, "2", True),
        (f"{RES}/limits/cpu", "2", "2500m", False),
        ("/spec/resources/requests/storage", "10240Mi", "10Gi", True),
        ("/spec/hard/pods", "10", "10", True),
        ("/data/size", "1024Mi", "1Gi", False),  # a ConfigMap value is text, not a quantity: a real change
        (f"{RES}/limits/memory", "1Gi", "lots", False),
    ],
)
def test_resource_quantities_compare_by_amount_where_kubernetes_has_quantities(
    path: str, git: object, live: str, same: bool
) -> None:
    def obj(value: object) -> dict:  # type: ignore[type-arg]
        doc: dict = {}  # type: ignore[type-arg]
        node = doc
        parts = [p for p in path.split("/") if p]
        for i, part in enumerate(parts[:-1]):
            nxt: object = [] if parts[i + 1] == "0" else {}
            if isinstance(node, list):
                node.append(nxt)
            else:
                node[part] = nxt
            node = nxt  # type: ignore[assignment]
        if isinstance(node, list):
            node.append(value)
        else:
            node[parts[-1]] = value
        return doc

    desired = m("X", "x", body=obj(git))
    assert in_sync(desired, obj(live)) is same


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from([("Ki", "Mi"), ("Mi", "Gi"), ("Gi", "Ti"), ("Ti", "Pi")]))
def test_binary_quantities_are_exact(n: int, units: tuple[str, str]) -> None:
    small, big = units
    assert parse_quantity(f"{n * 1024}{small}") == parse_quantity(f"{n}{big}")
    assert parse_quantity(f"{n}m") * 1000 == parse_quantity(str(n))  # type: ignore[operator]


@pytest.mark.parametrize("text", ["", "Gi", "1.2.3", "1 Gi", "1gi", "0x10", True, None, [1]])
def test_what_is_not_a_quantity(text: object) -> None:
    assert parse_quantity(text) is None


def _scaled(replicas: int, image: str, owners: list[dict]) -> dict:  # type: ignore[type-arg]
    return {
        "metadata": {"name": "web", "managedFields": owners},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "main", "image": image}]}}},
    }


GIT_SCALED = {"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "main", "image": "app:1"}]}}}}
OURS = _owned("reconciler", {"f:spec": {"f:template": {}}}, "Apply")  # another manager's change took replicas
OURS_ALL = _owned("reconciler", {"f:spec": {"f:replicas": {}, "f:template": {}}}, "Apply")
REPLICAS = {"f:spec": {"f:replicas": {}}}
IMAGE = {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"main"}': {"f:image": {}}}}}}}
HPA = Rules(rules=(Rule(FieldPolicy.IGNORE, manager="hpa-controller"),))


@pytest.mark.parametrize(
    ("live", "rules", "held", "applied_replicas", "applied_image"),
    [
        pytest.param(_scaled(7, "app:1", [OURS, _owned("hpa-controller", REPLICAS)]), HPA,
                     (Held("/spec/replicas", "hpa-controller", FieldPolicy.IGNORE),), None, "app:1", id="hpa-keeps-replicas"),
        pytest.param(_scaled(4, "app:1", [OURS, _owned("kubectl-edit", REPLICAS)]), Rules(FieldPolicy.REPORT),
                     (Held("/spec/replicas", "kubectl-edit", FieldPolicy.REPORT),), None, "app:1",
                     id="report-mode-overwrites-nothing"),
        pytest.param(_scaled(4, "app:1", [OURS, _owned("kubectl-edit", REPLICAS)]), Rules(),
                     (), 1, "app:1", id="correct-mode-reapplies"),
        pytest.param(_scaled(2, "app:1", [OURS_ALL]), Rules(FieldPolicy.REPORT),
                     (), 1, "app:1", id="a-git-change-is-applied-whatever-the-policy"),
        pytest.param(_scaled(7, "evil:1", [OURS, _owned("hpa-controller", REPLICAS), _owned("kubectl-edit", IMAGE)]), HPA,
                     (Held("/spec/replicas", "hpa-controller", FieldPolicy.IGNORE),), None, "app:1",
                     id="hand-edited-image-corrected-hpa-replicas-kept"),
    ],
)  # fmt: skip
def test_apply_leaves_fields_others_hold_under_ignore_or_report(
    live: dict,
    rules: Rules,
    held: tuple[Held, ...],
    applied_replicas: int | None,
    applied_image: str,  # type: ignore[type-arg]
) -> None:
    desired = m("Deployment", "web", group="apps", body=GIT_SCALED)
    apply, got = applicable(desired, live, "reconciler", rules)
    assert got == held
    assert apply.body["spec"].get("replicas") == applied_replicas
    assert apply.body["spec"]["template"]["spec"]["containers"] == [{"name": "main", "image": applied_image}]
    assert desired.body == GIT_SCALED, "the desired manifest itself is untouched"


def test_plan_says_which_fields_it_leaves_to_whom() -> None:
    desired = m("Deployment", "web", group="apps", body=GIT_SCALED)
    live = _scaled(7, "app:1", [OURS, _owned("hpa-controller", REPLICAS)])
    (a,) = plan([desired], {desired.key: live}, [], "app", TRACKING_LABEL, rules=HPA).applies
    assert (a.action, a.reason) == (Action.UNCHANGED, "/spec/replicas left to hpa-controller (ignore)")


def test_rollout_restart_annotation_is_an_action_not_an_addition() -> None:
    desired = m("Deployment", "web", group="apps", body=GIT_SCALED)
    live = _scaled(
        1,
        "app:1",
        [
            OURS,
            _owned(
                "kubectl-rollout",
                {"f:spec": {"f:template": {"f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/restartedAt": {}}}}}},
            ),
        ],
    )
    live["spec"]["template"]["metadata"] = {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-22T03:00:00Z"}}
    assert added_fields(desired, live, "reconciler", Rules()) == ()
    assert drift(desired, live, "reconciler", Rules()) == []


@given(
    st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=6, unique=True),
    st.data(),
)
def test_apply_drops_exactly_the_held_fields_and_nothing_else(names: list[str], data: st.DataObject) -> None:
    held = data.draw(st.sets(st.sampled_from(names)), label="containers another manager changed")
    containers = [{"name": n, "image": f"{n}:1", "args": [n]} for n in names]
    git = {"spec": {"replicas": 2, "template": {"spec": {"containers": containers}}}}
    live = json.loads(json.dumps(git))
    for c in live["spec"]["template"]["spec"]["containers"]:
        if c["name"] in held:
            c["image"] = f"{c['name']}:hand-made"
    owned = {"f:spec": {"f:template": {"f:spec": {"f:containers": {f'k:{{"name":"{n}"}}': {"f:image": {}} for n in held}}}}}
    live["metadata"] = {
        "managedFields": [_owned("reconciler", {"f:spec": {"f:replicas": {}}}, "Apply"), _owned("operator", owned)]
    }
    desired = m("Deployment", "web", group="apps", body=git)
    rules = Rules(rules=(Rule(FieldPolicy.IGNORE, manager="operator"),))
    apply, got = applicable(desired, live, "reconciler", rules)
    assert {h.pointer for h in got} == {f"/spec/template/spec/containers/{n}/image" for n in held}
    expected = json.loads(json.dumps(git))
    for c in expected["spec"]["template"]["spec"]["containers"]:
        if c["name"] in held:
            del c["image"]
    assert apply.body == expected, "only the held images are left out; names, args and replicas stay declared"
    assert in_sync(apply, live), "what is applied agrees with live: nothing left to overwrite"
