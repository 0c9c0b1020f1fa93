"""Flux's images and commonMetadata on rendered objects (pure)."""

from __future__ import annotations

import pytest

from reconciler.model import Manifest, ResourceKey
from reconciler.transform import flux_transform, set_image, split_image


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("nginx", ("nginx", "", "")),
        ("nginx:1.25", ("nginx", "1.25", "")),
        ("localhost:5000/app:1", ("localhost:5000/app", "1", "")),
        ("localhost:5000/app", ("localhost:5000/app", "", "")),
        ("ghcr.io/o/app:1@sha256:" + "a" * 64, ("ghcr.io/o/app", "1", "sha256:" + "a" * 64)),
    ],
    ids=["bare", "tag", "port-tag", "port-no-tag", "tag-digest"],
)
def test_image_references_split_at_the_right_colon(ref: str, parts: tuple[str, str, str]) -> None:
    assert split_image(ref) == parts


@pytest.mark.parametrize(
    ("ref", "rule", "new"),
    [
        ("ghcr.io/o/app:1.0", ("ghcr.io/o/app", "", "2.0", ""), "ghcr.io/o/app:2.0"),
        ("ghcr.io/o/app:1.0", ("ghcr.io/o/app", "mirror.io/app", "", ""), "mirror.io/app:1.0"),
        ("ghcr.io/o/app:1.0", ("ghcr.io/o/app", "", "2.0", "sha256:" + "b" * 64), "ghcr.io/o/app@sha256:" + "b" * 64),
        ("ghcr.io/o/app-other:1.0", ("ghcr.io/o/app", "", "2.0", ""), None),
    ],
    ids=["tag", "name", "digest-wins", "other-image"],
)
def test_kustomize_image_rules(ref: str, rule: tuple[str, str, str, str], new: str | None) -> None:
    assert set_image(ref, rule) == new


def test_the_flux_transform_sets_images_in_every_container_list_and_metadata_only_at_the_top() -> None:
    body = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "j", "labels": {"keep": "1"}},
        "spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"pod": "1"}}, "spec": {
            "initContainers": [{"name": "i", "image": "busybox:1"}],
            "containers": [{"name": "c", "image": "ghcr.io/o/app:1.0"}, {"name": "s", "image": "envoy:1"}],
        }}}}},
    }  # fmt: skip
    m = Manifest(ResourceKey("batch", "CronJob", "ns", "j"), "batch/v1", body)
    t = flux_transform([("ghcr.io/o/app", "", "2.0", ""), ("busybox", "", "1.36", "")], [("team", "a")], [("note", "x")])
    assert t is not None
    (out,) = t([m])
    pod = out.body["spec"]["jobTemplate"]["spec"]["template"]
    assert [c["image"] for c in pod["spec"]["containers"]] == ["ghcr.io/o/app:2.0", "envoy:1"]
    assert pod["spec"]["initContainers"][0]["image"] == "busybox:1.36"
    assert out.body["metadata"]["labels"] == {"keep": "1", "team": "a"} and out.body["metadata"]["annotations"] == {"note": "x"}
    assert pod["metadata"]["labels"] == {"pod": "1"}, "pod templates keep their own labels"
    assert m.body["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/o/app:1.0"
    assert flux_transform([], [], []) is None
