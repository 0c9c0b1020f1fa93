"""Marker-free targets, matched by exact repository name (never a substring).

- ``image:`` fields holding a reference: container images anywhere in workload templates
  (``containers``, ``initContainers``, ``ephemeralContainers`` of any kind, custom resources
  included) and any other ``image: repo:tag`` (Helm values, custom resources);
- Kustomize ``images:`` entries (``name`` / ``newName`` / ``newTag`` / ``digest``) in
  kustomization files;
- Helm-style image specs: a mapping with ``repository`` + ``tag`` (+ optional ``registry``,
  ``digest``), or other configured key paths.

A reference keeps its spelling: ``nginx:1.25`` becomes ``nginx:1.26``, not
``docker.io/library/nginx:1.26``. An IMAGE naming another repository replaces the name too
(a registry move). A digest that the new IMAGE does not carry is dropped from a combined
reference, and refused where it sits in a field of its own (it would go stale). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from imagebot.refs import ImageRef, try_parse
from imagebot.update.model import HelmKeys, ImageUpdate, Problem, ProblemKind, Target
from imagebot.update.plan import Edit, InsertKey, SetValue, child
from imagebot.update.yamlscan import Path, Scalar, Scan

CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})
KUSTOMIZATION_FILES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})
_BLOCK_ENTRY_KEY = re.compile(r"^(?P<indent>[ \t]*(?:-[ \t]+)?)(?P<key>[A-Za-z]+)[ \t]*:")


def screen_tokens(images: Iterable[ImageUpdate]) -> set[str]:
    """Cheap byte screen: every spelling of a repository contains its last path component."""
    return {u.name.path.rsplit("/", 1)[-1] for u in images}


_REFERENCE_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*")


def mentioned(text: str, updates: tuple[ImageUpdate, ...]) -> list[str]:
    """Names of the requested images that ``text`` spells out as a reference anywhere (for files
    that cannot be parsed: which updates they would have concerned)."""
    images = {u.name.canonical_name: u.name.name for u in updates}
    tokens = screen_tokens(updates)
    found = {
        images[ref.canonical_name]
        for word in _REFERENCE_WORD.findall(text)
        if any(t in word for t in tokens) and (ref := try_parse(word)) is not None and ref.canonical_name in images
    }
    return sorted(found)


def _match(images: dict[str, ImageUpdate], ref: ImageRef | None) -> ImageUpdate | None:
    return None if ref is None else images.get(ref.canonical_name)


def _retarget(old: ImageRef, update: ImageUpdate) -> ImageRef:
    if old.same_repository(update.image):
        return old.with_version(update.image.tag, update.image.digest)
    return update.image


def _image_fields(file: str, scan: Scan, images: dict[str, ImageUpdate]) -> list[Edit]:
    edits: list[Edit] = []
    for s in scan.scalars:
        if s.key != "image" or s.style in ("|", ">"):
            continue
        old = try_parse(s.value)
        update = _match(images, old)
        if update is None or old is None:
            continue
        new = str(_retarget(old, update))
        in_container = len(s.path) >= 3 and s.path[-3] in CONTAINER_LISTS and isinstance(s.path[-2], int)
        edits.append(SetValue(s, new, Target.CONTAINER if in_container else Target.IMAGE_FIELD, update.name.name))
    return edits


def _children(scan: Scan, doc: int, base: Path) -> dict[str, Scalar]:
    n = len(base)
    return {str(s.path[n]): s for s in scan.scalars if s.doc == doc and len(s.path) == n + 1 and s.path[:n] == base}


def _line_bounds(text: str, pos: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    if end < 0:
        end = len(text)
    if end > start and text[end - 1] == "\r":
        end -= 1
    return start, end


def is_kustomization(file_name: str, scan: Scan, doc: int) -> bool:
    if file_name in KUSTOMIZATION_FILES:
        return True
    top = _children(scan, doc, ())
    kind, api = top.get("kind"), top.get("apiVersion")
    return (
        kind is not None
        and kind.value == "Kustomization"
        and api is not None
        and api.value.startswith("kustomize.config.k8s.io/")
    )


def _kustomize(
    file: str, file_name: str, text: str, scan: Scan, images: dict[str, ImageUpdate]
) -> tuple[list[Edit], list[Problem]]:
    edits: list[Edit] = []
    problems: list[Problem] = []
    entries = sorted(
        {(s.doc, s.path[1]) for s in scan.scalars if len(s.path) == 3 and s.path[0] == "images" and isinstance(s.path[1], int)}
    )
    for doc, idx in entries:
        if not is_kustomization(file_name, scan, doc):
            continue
        base: Path = ("images", idx)
        fields = _children(scan, doc, base)
        name = fields.get("name")
        if name is None:
            continue
        effective = fields.get("newName") or name
        update = _match(images, try_parse(effective.value))
        if update is None:
            continue
        new = update.image
        line_start, line_end = _line_bounds(text, name.start)
        block = _BLOCK_ENTRY_KEY.match(text[line_start:line_end])
        last = max(fields.values(), key=lambda f: f.end)
        _, insert_at = _line_bounds(text, last.end)
        tail = text[last.end : insert_at].strip()
        can_insert = block is not None and (tail == "" or tail.startswith("#"))
        indent = " " * len(block.group("indent")) if block else ""
        effective_ref = try_parse(effective.value)

        wanted: list[tuple[str, str]] = []
        if effective_ref is None or not effective_ref.same_repository(new):
            wanted.append(("newName", new.name))
        if new.tag is not None:
            wanted.append(("newTag", new.tag))
        if new.digest is not None:
            wanted.append(("digest", new.digest))
        subject = update.name.name
        for key, value in wanted:
            existing = fields.get(key)
            if existing is not None:
                edits.append(SetValue(existing, value, Target.KUSTOMIZE, subject))
            elif can_insert:
                edits.append(
                    InsertKey(doc, child(base, key), insert_at, indent, key, value, last.line + 1, Target.KUSTOMIZE, subject)
                )
            else:
                problems.append(
                    Problem(
                        file,
                        name.line,
                        ProblemKind.UNSUPPORTED,
                        f"images[{idx}] ({name.value}) is not a block mapping: add '{key}: {value}' by hand",
                        (subject,),
                    )
                )
        if new.tag is None and "newTag" in fields:
            problems.append(
                Problem(
                    file,
                    fields["newTag"].line,
                    ProblemKind.INPUT,
                    f"images[{idx}] has newTag {fields['newTag'].value!r} but {new} carries no tag",
                    (subject,),
                )
            )
        if new.digest is None and "digest" in fields and fields["digest"].value:
            problems.append(
                Problem(
                    file,
                    fields["digest"].line,
                    ProblemKind.INPUT,
                    f"images[{idx}] pins digest {fields['digest'].value} that {new} would leave stale: "
                    "give the IMAGE with @sha256:...",
                    (subject,),
                )
            )
    return edits, problems


def _helm(file: str, scan: Scan, images: dict[str, ImageUpdate], keys: tuple[HelmKeys, ...]) -> tuple[list[Edit], list[Problem]]:
    edits: list[Edit] = []
    problems: list[Problem] = []
    index = scan.by_path()
    for hk in keys:
        n = len(hk.repository)
        for s in scan.scalars:
            if len(s.path) < n or tuple(s.path[len(s.path) - n :]) != hk.repository:
                continue
            base = s.path[: len(s.path) - n]
            tag = index.get((s.doc, child(base, *hk.tag)))
            if tag is None:
                continue
            registry = index.get((s.doc, child(base, *hk.registry))) if hk.registry else None
            name = f"{registry.value}/{s.value}" if registry is not None and registry.value else s.value
            update = _match(images, try_parse(name))
            if update is None:
                continue
            new = update.image
            old_ref = try_parse(name)
            if old_ref is None or not old_ref.same_repository(new):
                problems.append(
                    Problem(
                        file,
                        s.line,
                        ProblemKind.UNSUPPORTED,
                        f"{new} names another repository than {name}: change the repository by hand",
                        (update.name.name,),
                    )
                )
                continue
            if new.tag is not None:
                edits.append(SetValue(tag, new.tag, Target.HELM, update.name.name))
            digest = index.get((s.doc, child(base, *hk.digest))) if hk.digest else None
            if digest is not None:
                if new.digest is not None:
                    edits.append(SetValue(digest, new.digest, Target.HELM, update.name.name))
                elif digest.value:
                    problems.append(
                        Problem(
                            file,
                            digest.line,
                            ProblemKind.INPUT,
                            f"digest {digest.value} would go stale: give the IMAGE with @sha256:...",
                            (update.name.name,),
                        )
                    )
    return edits, problems


def plan_images(
    file: str, file_name: str, text: str, scan: Scan, updates: tuple[ImageUpdate, ...], helm_keys: tuple[HelmKeys, ...]
) -> tuple[list[Edit], list[Problem]]:
    images = {u.name.canonical_name: u for u in updates}
    edits = _image_fields(file, scan, images)
    k_edits, k_problems = _kustomize(file, file_name, text, scan, images)
    h_edits, h_problems = _helm(file, scan, images, helm_keys)
    return edits + k_edits + h_edits, k_problems + h_problems
