"""A Kustomization's patches cost what the patches do, not one copy of the object per patch: each JSON 6902 and
strategic-merge patch deep-copied the whole object, so 10,000 label patches on one Deployment (a 1.4 MB spec the API
server accepts) spent ~100 s of a worker's CPU at every interval. Counted in copied nodes, not timed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler import patches as P
from reconciler.model import TRACKING_LABEL, Manifest, ResourceKey
from reconciler.transform import flux_transform


def deployment(name: str, labels: int = 0) -> Manifest:
    meta = {"name": name, "namespace": "default", "labels": {TRACKING_LABEL: "app", **{f"l{i}": "v" for i in range(labels)}}}
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}}}}  # fmt: skip
    return Manifest(ResourceKey("apps", "Deployment", "default", name), "apps/v1", body)


def count_copied_nodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every dict/list node copy.deepcopy copies inside reconciler.patches, summed."""
    copied = [0]
    real = copy.deepcopy

    def counting(x: Any, memo: Any = None) -> Any:
        stack = [x]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                copied[0] += 1 + len(node)
                stack.extend(node.values())
            elif isinstance(node, list):
                copied[0] += 1 + len(node)
                stack.extend(node)
        return real(x, memo)

    monkeypatch.setattr(P.copy, "deepcopy", counting)
    return copied


@pytest.mark.parametrize("kind", ["json6902", "strategic"])
def test_n_patches_on_a_large_object_copy_it_once_not_n_times(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    n, size = 300, 3000  # a Deployment with 3,000 labels, 300 patches adding one each
    if kind == "json6902":
        raw = [{"patch": f"- {{op: add, path: /metadata/labels/p{i}, value: v}}", "target": {"kind": "Deployment"}}
               for i in range(n)]  # fmt: skip
    else:
        raw = [{"patch": f"metadata: {{labels: {{p{i}: v}}}}", "target": {"name": "web"}} for i in range(n)]
    t = flux_transform((), (), (), P.parse_patches(raw))
    assert t is not None
    original = deployment("web", labels=size)
    before = copy.deepcopy(original.body)
    copied = count_copied_nodes(monkeypatch)
    (out,) = t([original])
    labels = out.body["metadata"]["labels"]
    assert len(labels) == size + 1 + n and labels[TRACKING_LABEL] == "app" and labels[f"p{n - 1}"] == "v"
    assert original.body == before, "the input manifest is never modified"
    assert copied[0] < 3 * (size + 50) + 20 * n, f"{copied[0]} nodes copied: the object was copied per patch"


def test_a_failing_patch_after_others_fails_the_render_and_leaves_the_input_alone() -> None:
    raw = [{"patch": "- {op: add, path: /metadata/labels/a, value: v}", "target": {"kind": "Deployment"}},
           {"patch": "metadata: {labels: {b: v}}", "target": {"kind": "Deployment"}},
           {"patch": "- {op: test, path: /spec/replicas, value: 9}", "target": {"kind": "Deployment"}}]  # fmt: skip
    t = flux_transform((), (), (), P.parse_patches(raw))
    assert t is not None
    original = deployment("web")
    before = copy.deepcopy(original.body)
    with pytest.raises(Exception, match=r"spec\.patches\[2\].*test failed"):
        t([original])
    assert original.body == before


def test_the_same_patches_read_again_at_the_next_reconcile_parse_no_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = [0]
    real = P.yamlsafe.load_all

    def counting(*args: Any, **kw: Any) -> Any:
        loads[0] += 1
        return real(*args, **kw)

    monkeypatch.setattr(P.yamlsafe, "load_all", counting)
    raw = [{"patch": f"- {{op: add, path: /metadata/labels/cost-{i}, value: v}}", "target": {"kind": "Deployment"}}
           for i in range(200)]  # fmt: skip
    first = P.parse_patches(raw)
    assert loads[0] == 200
    again = P.parse_patches(raw)  # the next reconcile reads the same spec
    assert loads[0] == 200, "YAML parsed again"
    assert [p.doc for p in again] == [p.doc for p in first]
    big = [{"patch": "metadata: {annotations: {a: '" + "x" * 10_000 + "'}}", "target": {"kind": "Deployment"}}]
    P.parse_patches(big)
    P.parse_patches(big)
    assert loads[0] == 202, "a large patch is not kept (the cache stays small)"
