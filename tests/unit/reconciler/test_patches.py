"""Flux's Kustomization ``spec.patches`` (pure): strategic-merge and JSON 6902 patches with kustomize's targets, and
the GitRepository ``spec.ignore`` matcher (Flux's defaults, .sourceignore, go-git matching)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler.errors import RenderError
from reconciler.model import TRACKING_LABEL, Manifest, ResourceKey, group_of
from reconciler.patches import PatchError, json6902, parse_patches, strategic_merge
from reconciler.sourceignore import matcher
from reconciler.transform import flux_transform


def obj(api: str, kind: str, name: str, ns: str = "default", labels: dict[str, str] | None = None, **rest: Any) -> Manifest:
    body = {"apiVersion": api, "kind": kind,
            "metadata": {"name": name, "namespace": ns, "labels": {**(labels or {}), TRACKING_LABEL: "app"}}, **rest}  # fmt: skip
    return Manifest(ResourceKey(group_of(api), kind, ns, name), api, body)


def deployment(name: str, labels: dict[str, str] | None = None) -> Manifest:
    pod = {"containers": [{"name": "web", "image": "web:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                          {"name": "side", "image": "side:1"}]}  # fmt: skip
    return obj("apps/v1", "Deployment", name, labels=labels, spec={"replicas": 1, "template": {"spec": pod}})


def run(patches: list[dict[str, Any]], manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    t = flux_transform((), (), (), parse_patches(patches))
    assert t is not None
    return {m.key.name: m.body for m in t(manifests)}


def test_a_strategic_merge_patch_merges_containers_and_env_by_name_and_null_deletes() -> None:
    patch = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  template:
    spec:
      containers:
        - name: web
          image: web:2
          env: [{name: B, value: "20"}, {name: C, value: "3"}]
        - {name: side, $patch: delete}
        - {name: new, image: 'new:1'}
"""
    out = run([{"patch": patch}], [deployment("web"), deployment("other")])
    spec = out["web"]["spec"]
    assert spec["replicas"] == 3
    cs = spec["template"]["spec"]["containers"]
    assert [c["name"] for c in cs] == ["web", "new"]
    assert cs[0]["image"] == "web:2"
    assert cs[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}]
    assert out["other"]["spec"]["replicas"] == 1, "a patch without a target names its object"
    assert out["web"]["metadata"]["labels"][TRACKING_LABEL] == "app"
    assert strategic_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": None}}) == {"a": {"c": 2}}
    assert strategic_merge({"a": {"b": 1}}, {"a": {"$patch": "replace", "x": 1}}) == {"a": {"x": 1}}
    assert strategic_merge({"l": [1, 2]}, {"l": [3]}) == {"l": [3]}, "lists without a merge key are replaced"
    # a custom resource's lists are replaced whole (no schema to say they merge), as kustomize does
    cr = obj("example.com/v1", "Thing", "t", spec={"containers": [{"name": "a"}, {"name": "b"}]})
    patch = "{apiVersion: example.com/v1, kind: Thing, metadata: {name: t}, spec: {containers: [{name: c}]}}"
    out = run([{"patch": patch}], [cr])
    assert out["t"]["spec"]["containers"] == [{"name": "c"}]


def test_targets_select_by_anchored_regex_labels_and_annotations() -> None:
    objs = [deployment("web", {"tier": "front"}), deployment("web-2", {"tier": "front"}), deployment("api", {"tier": "back"}),
            obj("v1", "ConfigMap", "cfg", data={"a": "1"})]  # fmt: skip
    smp = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ignored}\nspec: {replicas: 5}\n"
    out = run([{"patch": smp, "target": {"kind": "Deployment", "name": "web"}}], copy.deepcopy(objs))
    assert [out[n]["spec"]["replicas"] for n in ("web", "web-2", "api")] == [5, 1, 1], "name: web is anchored"
    out = run([{"patch": smp, "target": {"kind": "Deploy.*", "name": "web.*"}}], copy.deepcopy(objs))
    assert [out[n]["spec"]["replicas"] for n in ("web", "web-2", "api")] == [5, 5, 1]
    out = run([{"patch": smp, "target": {"group": "apps", "version": "v1", "labelSelector": "tier in (back), !canary"}}], objs)
    assert [out[n]["spec"]["replicas"] for n in ("web", "web-2", "api")] == [1, 1, 5]
    ops = "- {op: replace, path: /data/a, value: '2'}\n- {op: add, path: /data/b, value: x}\n"
    ann = obj("v1", "ConfigMap", "x", data={"a": "1"})
    ann.body["metadata"]["annotations"] = {"patch-me": "yes"}
    out = run([{"patch": ops, "target": {"kind": "ConfigMap", "annotationSelector": "patch-me=yes"}}], [ann, objs[3]])
    assert out["x"]["data"] == {"a": "2", "b": "x"} and out["cfg"]["data"] == {"a": "1"}
    out = run([{"patch": ops, "target": {"kind": "ConfigMap", "namespace": "other"}}], [objs[3]])
    assert out["cfg"]["data"] == {"a": "1"}


def test_json6902_operations() -> None:
    doc = {"a": {"b": [1, 2, 3], "c": "x"}, "d~/": 1}
    ops = [
        {"op": "add", "path": "/a/b/-", "value": 4},
        {"op": "add", "path": "/a/b/0", "value": 0},
        {"op": "remove", "path": "/a/b/1"},
        {"op": "replace", "path": "/a/c", "value": "y"},
        {"op": "copy", "from": "/a/c", "path": "/e"},
        {"op": "move", "from": "/d~0~1", "path": "/f"},
        {"op": "test", "path": "/f", "value": 1},
    ]
    assert json6902(doc, ops) == {"a": {"b": [0, 2, 3, 4], "c": "y"}, "e": "y", "f": 1}
    assert doc["a"]["b"] == [1, 2, 3], "the input is not changed"
    with pytest.raises(RenderError, match="test failed"):
        json6902(doc, [{"op": "test", "path": "/a/c", "value": "nope"}])
    with pytest.raises(RenderError, match="does not exist"):
        json6902(doc, [{"op": "replace", "path": "/nope/x", "value": 1}])
    with pytest.raises(RenderError, match="out of range"):
        json6902(doc, [{"op": "remove", "path": "/a/b/9"}])


@pytest.mark.parametrize(
    ("patches", "message"),
    [
        ("nope", "spec.patches must be a list"),
        ([{"patch": ""}], "spec.patches[0].patch must be a non-empty string"),
        ([{"patch": "- {op: add, path: /a, value: 1}"}], "a JSON 6902 patch needs a target"),
        ([{"patch": "- {op: jump, path: /a}", "target": {"kind": "X"}}], "op must be one of"),
        ([{"patch": "- {op: add, path: a, value: 1}", "target": {"kind": "X"}}], "must be a JSON pointer"),
        ([{"patch": "spec: {}"}], "without a target must name its kind and name"),
        ([{"patch": "spec: {}", "target": {"name": "(["}}], "spec.patches[0].target.name"),
        ([{"patch": "spec: {}", "target": {"labelSelector": "a in b"}}], "cannot read selector requirement"),
        ([{"patch": "spec: {}", "target": {"kindd": "X"}}], "unknown field(s) kindd"),
        ([{"patch": "a: [", "target": {"kind": "X"}}], "not valid YAML"),
    ],
)
def test_bad_patches_are_named(patches: Any, message: str) -> None:
    with pytest.raises(PatchError) as info:
        parse_patches(patches)
    assert message in str(info.value)


def test_a_patch_without_target_that_matches_nothing_fails_the_render() -> None:
    with pytest.raises(RenderError, match=r"spec.patches\[0\]: no object Deployment nope"):
        patch = "{apiVersion: apps/v1, kind: Deployment, metadata: {name: nope}, spec: {replicas: 2}}"
        run([{"patch": patch}], [deployment("web")])


@pytest.mark.parametrize(
    ("path", "is_dir", "extra", "excluded"),
    [
        ("a/logo.png", False, "", True),  # Flux's default *.png
        (".github/workflows/ci.yaml", False, "", True),
        ("deploy/.sops.yaml", False, "", True),  # **/.sops.yaml
        ("deploy/app.yaml", False, "", False),
        ("deploy/app.yaml", False, "/*\n!/deploy/\n", False),  # exclude everything, include deploy/ again
        ("other/app.yaml", False, "/*\n!/deploy/\n", True),
        ("deploy/drafts/x.yaml", False, "drafts/", True),  # a directory pattern excludes what is below it
        ("deploy/drafts", False, "drafts/", False),  # …but not a file of that name
        ("deploy/x.yaml", False, "deploy/*.yaml\n!deploy/x.yaml\n", False),  # the last match decides
        ("deploy/y.yaml", False, "deploy/*.yaml\n!deploy/x.yaml\n", True),
        ("a/b/c/d.yaml", False, "a/**/d.yaml", True),
        ("a/d.yaml", False, "a/**/d.yaml", True),
        ("sub/x.yaml", False, "", True),  # from sub/.sourceignore: x.yaml, scoped to sub/
        ("x.yaml", False, "", False),
    ],
)
def test_ignore_rules_match_as_flux_does(path: str, is_dir: bool, extra: str, excluded: bool) -> None:
    from pathlib import Path

    m = matcher(Path("/nonexistent"), extra, [(("sub",), "# comment\nx.yaml\n")])
    assert m.excluded(tuple(path.split("/")), is_dir) is excluded
