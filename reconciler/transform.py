"""What Flux's Kustomization does to rendered objects before applying them (pure), in kustomize's order: ``patches``
(reconciler.patches), ``images`` (Kustomize's image transformer: a container image named ``name`` gets
``newName``/``newTag``/``digest``) and ``commonMetadata`` (labels and annotations on every object's own metadata —
never on selectors or pod templates)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from reconciler.model import TRACKING_LABEL, Manifest
from reconciler.patches import Patch, apply_patches

ImageRule = tuple[str, str, str, str]  # (name, newName, newTag, digest)
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def split_image(ref: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference; tag and digest '' when absent."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], digest
    return name, "", digest


def set_image(ref: str, rule: ImageRule) -> str | None:
    """The new reference when ``rule`` names this image, else None."""
    name, tag, digest = split_image(ref)
    want, new_name, new_tag, new_digest = rule
    if name != want:
        return None
    name = new_name or name
    if new_digest:
        return f"{name}@{new_digest}"
    if new_tag:
        return f"{name}:{new_tag}"
    return f"{name}{':' + tag if tag else ''}{'@' + digest if digest else ''}"


def _images(node: Any, rules: Sequence[ImageRule]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in CONTAINER_LISTS and isinstance(v, list):
                for c in v:
                    if isinstance(c, dict) and isinstance(c.get("image"), str):
                        for rule in rules:
                            new = set_image(c["image"], rule)
                            if new is not None:
                                c["image"] = new
                                break
            _images(v, rules)
    elif isinstance(node, list):
        for v in node:
            _images(v, rules)


def flux_transform(
    images: Sequence[ImageRule],
    labels: Sequence[tuple[str, str]],
    annotations: Sequence[tuple[str, str]],
    patches: Sequence[Patch] = (),
    tracking_label: str = TRACKING_LABEL,
) -> Callable[[list[Manifest]], list[Manifest]] | None:
    """The transform for one Kustomization's ``patches``, ``images`` and ``commonMetadata`` (None when it has none)."""
    if not images and not labels and not annotations and not patches:
        return None

    def apply(manifests: list[Manifest]) -> list[Manifest]:
        if patches:
            manifests = apply_patches(manifests, patches, tracking_label)
        out = []
        for m in manifests:
            body = copy.deepcopy(m.body)
            if images:
                _images(body, images)
            meta = body.setdefault("metadata", {})
            if labels:
                meta["labels"] = {**(meta.get("labels") or {}), **dict(labels)}
            if annotations:
                meta["annotations"] = {**(meta.get("annotations") or {}), **dict(annotations)}
            out.append(replace(m, body=body))
        return out

    return apply


Transform = Callable[[list[Manifest]], list[Manifest]]


def top_level_only(manifests: list[Manifest]) -> list[Manifest]:
    """Argo CD's plain directories without ``directory.recurse``: only the files directly in the path."""
    return [m for m in manifests if "/" not in m.source.split(":", 1)[0]]


def compose(*steps: Transform | None) -> Transform | None:
    todo = [t for t in steps if t is not None]
    if not todo:
        return None

    def apply(manifests: list[Manifest]) -> list[Manifest]:
        for t in todo:
            manifests = t(manifests)
        return manifests

    return apply
