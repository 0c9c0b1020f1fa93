"""Render a source directory into validated manifests: plain YAML (recursive) or Kustomize.

Plain directories: every ``*.yaml``/``*.yml``/``*.json`` below, multi-document; documents that
are not Kubernetes objects (no ``apiVersion``/``kind``) are ignored, as are other files.
A directory with a ``kustomization.yaml`` is built with ``kustomize build`` or ``kubectl
kustomize`` (a clear error when neither exists). Symlinks that leave the source are never
followed. Every object must have apiVersion, kind and metadata.name, or the render fails —
and a failed render applies and prunes nothing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from reconciler.errors import RenderError
from reconciler.model import Manifest, ResourceKey, group_of

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def _inside(root: Path, path: Path) -> bool:
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return real == root or root in real.parents


_CSafeLoader: Any
try:  # libyaml through ruamel.yaml.clibz: ~15x faster than the pure-Python loader
    from ruamel.yaml.cyaml import CSafeLoader as _CSafeLoader
except ImportError:  # pragma: no cover
    _CSafeLoader = None


def _documents(text: str, origin: str) -> list[Any]:
    try:
        if _CSafeLoader is None:  # pragma: no cover
            return [d for d in YAML(typ="safe").load_all(text) if d is not None]
        loader = _CSafeLoader(text)
        try:
            docs = []
            while loader.check_data():
                d = loader.get_data()
                if d is not None:
                    docs.append(d)
            return docs
        finally:
            loader.dispose()
    except YAMLError as exc:
        raise RenderError(f"{origin}: not valid YAML: {str(exc).splitlines()[0]}") from None
    except Exception as exc:
        raise RenderError(f"{origin}: not valid YAML: {exc}") from None


def _plain(root: Path) -> list[tuple[str, Any]]:
    docs: list[tuple[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and _inside(root, Path(dirpath) / d))
        for name in sorted(filenames):
            if not name.endswith((".yaml", ".yml", ".json")):
                continue
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if not _inside(root, p):
                raise RenderError(f"{rel}: symlink leads outside the source; refusing to follow it")
            try:
                text = p.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise RenderError(f"{rel}: unreadable: {exc}") from None
            docs.extend((rel, d) for d in _documents(text, rel))
    return docs


def _kustomize(root: Path) -> list[tuple[str, Any]]:
    if shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(root)]
    elif shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(root)]
    else:
        raise RenderError("the source is a Kustomize directory but neither 'kustomize' nor 'kubectl' is installed")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RenderError(f"{' '.join(cmd[:2])} failed: {proc.stderr.strip()[:600]}")
    return [("kustomize", d) for d in _documents(proc.stdout, "kustomize output")]


def _flatten(origin: str, doc: Any) -> list[tuple[str, Any]]:
    if (
        isinstance(doc, dict)
        and isinstance(doc.get("kind"), str)
        and doc["kind"].endswith("List")
        and isinstance(doc.get("items"), list)
    ):
        return [(origin, i) for i in doc["items"]]
    return [(origin, doc)]


def render(root: Path, app: str, tracking_label: str) -> list[Manifest]:
    """Render ``root``; namespaces are not defaulted here (that needs discovery)."""
    root = root.resolve()
    if not root.is_dir():
        raise RenderError(f"{root}: no such source directory")
    is_kustomize = any((root / n).is_file() for n in KUSTOMIZATION_NAMES)
    raw = _kustomize(root) if is_kustomize else _plain(root)
    manifests: list[Manifest] = []
    seen: dict[ResourceKey, str] = {}
    for origin, doc in (item for o, d in raw for item in _flatten(o, d)):
        if not isinstance(doc, dict) or ("apiVersion" not in doc and "kind" not in doc):
            continue  # not a Kubernetes object (e.g. a config file): ignored
        api, kind = doc.get("apiVersion"), doc.get("kind")
        meta = doc.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(api, str) or not api or not isinstance(kind, str) or not kind:
            raise RenderError(f"{origin}: an object without apiVersion or kind: {json.dumps(doc)[:120]}")
        if not isinstance(name, str) or not name:
            raise RenderError(f"{origin}: {kind} without metadata.name")
        assert isinstance(meta, dict)
        ns = meta.get("namespace") or ""
        if not isinstance(ns, str):
            raise RenderError(f"{origin}: {kind} {name}: metadata.namespace must be a string")
        body = json.loads(json.dumps(doc, default=str))  # plain dicts/lists, no YAML types
        if api == "v1" and kind == "Secret" and isinstance(body.get("stringData"), dict):
            # what the API server stores: stringData folded into data, base64 (so live and Git compare)
            data = dict(body.get("data") or {})
            for k, v in body.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            body["data"] = data
        labels = body["metadata"].setdefault("labels", {}) or {}
        body["metadata"]["labels"] = {**labels, tracking_label: app}
        key = ResourceKey(group_of(api), kind, ns, name)
        if key in seen:
            raise RenderError(f"{origin}: {key} is declared twice (also in {seen[key]})")
        seen[key] = origin
        manifests.append(Manifest(key, api, body, origin))
    return manifests
