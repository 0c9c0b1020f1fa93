"""Render a source directory into validated manifests: plain YAML (recursive) or Kustomize.

Plain directories: every ``*.yaml``/``*.yml``/``*.json`` below, multi-document; documents with
none of ``apiVersion``, ``kind``, ``metadata`` are not Kubernetes objects and are ignored, as are
other files. A directory with a ``kustomization.yaml`` is built with ``kustomize build`` or
``kubectl kustomize`` (a clear error when neither exists). Symlinks that leave the source are
never followed. Every object (and every item of a ``List``) must have apiVersion, kind and
metadata.name, each object may be declared once, and every file is loaded within
``gitopskit.yamlsafe`` limits (size, nesting, alias expansion) — or the render fails, and a
failed render applies and prunes nothing. Messages name documents by file, line and identity,
never by content (:func:`reconciler.model.describe_document`)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitopskit import yamlsafe
from reconciler.errors import RenderError
from reconciler.model import Manifest, ResourceKey, describe_document, group_of

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# every file (and kustomize's output): size, nesting, and each document's size with aliases expanded
LIMITS = yamlsafe.Limits()


def _inside(root: Path, path: Path) -> bool:
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return real == root or root in real.parents


@dataclass(frozen=True, slots=True)
class _Doc:
    where: str  # file:line (and the item of a List)
    source: str  # file:line of the document
    data: Any
    in_list: bool = False  # an item of a List: an object by definition


def _documents(text: str, origin: str) -> list[_Doc]:
    try:
        docs = yamlsafe.load_json(text, LIMITS) or yamlsafe.load_all(text, LIMITS)
    except yamlsafe.YamlLimitError as exc:
        raise RenderError(f"{origin}: refused, over a render limit: {exc}") from None
    except yamlsafe.YamlError as exc:
        raise RenderError(f"{origin}: not valid YAML: {exc}") from None
    return [_Doc(f"{origin}:{d.line}", f"{origin}:{d.line}", d.data) for d in docs if d.data is not None]


def _plain(root: Path) -> list[_Doc]:
    docs: list[_Doc] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and _inside(root, Path(dirpath) / d))
        for name in sorted(filenames):
            if not name.endswith((".yaml", ".yml", ".json")):
                continue
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            # the walk enters no symlinked directory: only a file that is itself a link can lead outside
            if os.path.islink(p) and not _inside(root, p):
                raise RenderError(f"{rel}: symlink leads outside the source; refusing to follow it")
            try:
                size = p.stat().st_size
                if size > LIMITS.max_bytes:
                    raise RenderError(f"{rel}: refused, over a render limit: {size} bytes (at most {LIMITS.max_bytes})")
                text = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise RenderError(f"{rel}: unreadable: {exc}") from None
            docs.extend(_documents(text, rel))
    return docs


def _kustomize(root: Path) -> list[_Doc]:
    if shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(root)]
    elif shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(root)]
    else:
        raise RenderError("the source is a Kustomize directory but neither 'kustomize' nor 'kubectl' is installed")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RenderError(f"{' '.join(cmd[:2])} failed: {proc.stderr.strip()[:600]}")
    return _documents(proc.stdout, "kustomize output")


def _flatten(doc: _Doc) -> list[_Doc]:
    d = doc.data
    if isinstance(d, dict) and isinstance(d.get("kind"), str) and d["kind"].endswith("List") and isinstance(d.get("items"), list):
        return [_Doc(f"{doc.where} items[{i}]", doc.source, item, True) for i, item in enumerate(d["items"])]
    return [doc]


def _looks_like_object(doc: Any) -> bool:
    """A mapping with any of apiVersion, kind, metadata is meant as a Kubernetes object: when it is incomplete,
    the render fails (dropping it would make its live object a prune candidate). Anything else is not ours."""
    return isinstance(doc, dict) and any(k in doc for k in ("apiVersion", "kind", "metadata"))


def refuse_duplicates(manifests: Iterable[Manifest]) -> None:
    """One object declared twice would be applied twice and flip on every sync. Call again once namespaces
    are defaulted (``cfg`` and ``default/cfg`` are one object; so are a ClusterRole with and without a stray
    namespace)."""
    seen: dict[ResourceKey, Manifest] = {}
    for m in manifests:
        first = seen.setdefault(m.key, m)
        if first is not m:
            raise RenderError(f"{m.key} is declared twice: in {first.source} and in {m.source}")


def render(root: Path, app: str, tracking_label: str) -> list[Manifest]:
    """Render ``root``; namespaces are not defaulted here (that needs discovery)."""
    root = root.resolve()
    if not root.is_dir():
        raise RenderError(f"{root}: no such source directory")
    is_kustomize = any((root / n).is_file() for n in KUSTOMIZATION_NAMES)
    raw = _kustomize(root) if is_kustomize else _plain(root)
    manifests: list[Manifest] = []
    for doc in (item for d in raw for item in _flatten(d)):
        if not doc.in_list and not _looks_like_object(doc.data):
            continue  # not a Kubernetes object (e.g. a config file): ignored
        manifests.append(_manifest(doc, app, tracking_label))
    refuse_duplicates(manifests)
    return manifests


def _manifest(doc: _Doc, app: str, tracking_label: str) -> Manifest:
    d = doc.data
    if not isinstance(d, dict):
        raise RenderError(f"{doc.where}: an item of a List must be an object, found {describe_document(d)}")
    api, kind = d.get("apiVersion"), d.get("kind")
    missing = [f for f, v in (("apiVersion", api), ("kind", kind)) if not isinstance(v, str) or not v]
    if missing:
        raise RenderError(f"{doc.where}: an object without {' and '.join(missing)}: {describe_document(d)}")
    assert isinstance(api, str) and isinstance(kind, str)
    meta = d.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise RenderError(f"{doc.where}: {kind} without metadata.name")
    assert isinstance(meta, dict)
    ns = meta.get("namespace") or ""
    if not isinstance(ns, str):
        raise RenderError(f"{doc.where}: {kind} {name}: metadata.namespace must be a string")
    body = json.loads(json.dumps(d, default=str))  # plain dicts/lists, no YAML types (size bounded at load)
    if api == "v1" and kind == "Secret" and isinstance(body.get("stringData"), dict):
        # what the API server stores: stringData folded into data, base64 (so live and Git compare)
        data = dict(body.get("data") or {})
        for k, v in body.pop("stringData").items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        body["data"] = data
    labels = body["metadata"].setdefault("labels", {}) or {}
    body["metadata"]["labels"] = {**labels, tracking_label: app}
    return Manifest(ResourceKey(group_of(api), kind, ns, name), api, body, doc.source)
