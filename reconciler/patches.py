"""Flux's Kustomization ``spec.patches`` (pure): strategic-merge and JSON 6902 patches applied to the rendered objects,
each to the objects its ``target`` selects — or, for a strategic-merge patch without one, to the object it names —
as kustomize's patch transformer does.

- ``target``: ``group``, ``version``, ``kind``, ``name``, ``namespace`` are regular expressions matched against the
  whole value (kustomize anchors them: ``name: web`` does not select ``web-2``; ``name: web.*`` does); an absent
  field matches anything. ``labelSelector``/``annotationSelector`` are Kubernetes selectors (``a=b``, ``a!=b``,
  ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``).
- Strategic merge: maps merge, ``null`` deletes a key, ``$patch: replace``/``delete`` on a map; lists of the
  built-in kinds merge by their Kubernetes merge key (containers and volumes by ``name``, ports by
  ``containerPort`` or ``port``, volumeMounts by ``mountPath``, …) — other lists, and every list of a custom
  resource, are replaced, as kustomize does without the type's schema.
- JSON 6902: ``add``, ``remove``, ``replace``, ``move``, ``copy``, ``test`` on RFC 6901 pointers (``-`` appends).
A patch that cannot apply (a missing path, a failed test) fails the render: nothing is applied.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from gitopskit import yamlsafe
from gitopskit.goregex import GoRegex, GoRegexError, compile_go
from reconciler.errors import RenderError
from reconciler.model import Manifest, ResourceKey, group_of


class PatchError(ValueError):
    """A patch in the spec cannot be read; the message names it (the app is Stalled)."""


class PatchKind(StrEnum):
    STRATEGIC = "strategic-merge"
    JSON6902 = "json6902"


# --------------------------------------------------------------------------- selectors
_REQ = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9_.-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # exists | !exists | = | != | in | notin
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has, value = self.key in labels, labels.get(self.key)
        if self.op == "exists":
            return has
        if self.op == "!exists":
            return not has
        if self.op in ("=", "in"):
            return has and value in self.values
        return not has or value not in self.values  # != and notin: also objects without the key, as Kubernetes


def parse_selector(text: str, where: str) -> tuple[Requirement, ...]:
    parts, depth, cur = [], 0, ""
    for ch in text:  # commas split requirements, except inside in (…)/notin (…)
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if not p.strip():
            if text.strip():
                raise PatchError(f"{where}: empty requirement in {text!r}")
            continue
        m = _REQ.match(p)
        if m is None:
            raise PatchError(f"{where}: cannot read selector requirement {p.strip()!r}")
        neg, key, eq, value, setop, values = m.groups()
        if neg and (eq or setop):
            raise PatchError(f"{where}: '!' takes a key only, not {p.strip()!r}")
        if setop:
            out.append(Requirement(key, setop, tuple(v.strip() for v in values.split(",") if v.strip())))
        elif eq:
            out.append(Requirement(key, "!=" if eq == "!=" else "=", (value,)))
        else:
            out.append(Requirement(key, "!exists" if neg else "exists"))
    return tuple(out)


def _regex(text: str, where: str) -> GoRegex | None:
    """Validated where it enters, compiled once (a Go regexp, as kustomize's; matched whole, as it anchors them)."""
    if not text:
        return None
    try:
        return compile_go(f"(?:{text})")
    except GoRegexError as exc:
        raise PatchError(f"{where}: {text!r} is not a regular expression: {exc}") from None


@dataclass(frozen=True, slots=True)
class Target:
    group: str = ""
    version: str = ""
    kind: str = ""
    name: str = ""
    namespace: str = ""
    label_selector: tuple[Requirement, ...] = ()
    annotation_selector: tuple[Requirement, ...] = ()
    _rx: tuple[GoRegex | None, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = (self.group, self.version, self.kind, self.name, self.namespace)
        object.__setattr__(self, "_rx", tuple(_regex(text, "target") for text in fields))

    def matches(self, m: Manifest) -> bool:
        api = m.api_version
        version = api.split("/")[-1]
        meta = m.body.get("metadata") or {}
        values = (group_of(api), version, m.kind, m.key.name, m.key.namespace)
        for rx, value in zip(self._rx, values, strict=True):
            if rx is not None and rx.fullmatch(value) is None:
                return False
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        return all(r.matches(labels) for r in self.label_selector) and all(
            r.matches(annotations) for r in self.annotation_selector
        )


@dataclass(frozen=True, slots=True)
class Patch:
    kind: PatchKind
    doc: Any  # the strategic-merge object, or the JSON 6902 operation list
    target: Target | None
    where: str  # spec.patches[i] (for messages)


_TARGET_FIELDS = ("group", "version", "kind", "name", "namespace", "labelSelector", "annotationSelector")


def parse_patches(items: Any) -> tuple[Patch, ...]:
    """``spec.patches`` read and validated (PatchError names the entry)."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise PatchError("spec.patches must be a list")
    out: list[Patch] = []
    for i, item in enumerate(items):
        where = f"spec.patches[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("patch"), str) or not item["patch"].strip():
            raise PatchError(f"{where}.patch must be a non-empty string")
        extra = sorted(set(item) - {"patch", "target"})
        if extra:
            raise PatchError(f"{where}: unknown field(s) {', '.join(extra)}")
        target = None
        raw = item.get("target")
        if raw is not None:
            if not isinstance(raw, dict) or not all(isinstance(raw.get(k, ""), str) for k in _TARGET_FIELDS):
                raise PatchError(f"{where}.target must map {', '.join(_TARGET_FIELDS)} to strings")
            unknown = sorted(set(raw) - set(_TARGET_FIELDS))
            if unknown:
                raise PatchError(f"{where}.target: unknown field(s) {', '.join(unknown)}")
            for k in ("group", "version", "kind", "name", "namespace"):
                _regex(raw.get(k, ""), f"{where}.target.{k}")
            target = Target(
                group=raw.get("group", ""),
                version=raw.get("version", ""),
                kind=raw.get("kind", ""),
                name=raw.get("name", ""),
                namespace=raw.get("namespace", ""),
                label_selector=parse_selector(raw.get("labelSelector", ""), f"{where}.target.labelSelector"),
                annotation_selector=parse_selector(raw.get("annotationSelector", ""), f"{where}.target.annotationSelector"),
            )
        try:
            docs = json.loads(_patch_json(item["patch"]))
        except yamlsafe.YamlError as exc:
            raise PatchError(f"{where}.patch is not valid YAML: {exc}") from None
        if len(docs) == 1 and isinstance(docs[0], list):
            if target is None:
                raise PatchError(f"{where}: a JSON 6902 patch needs a target")
            for j, op in enumerate(docs[0]):
                _check_op(op, f"{where}.patch[{j}]")
            out.append(Patch(PatchKind.JSON6902, docs[0], target, where))
            continue
        for d in docs:
            if not isinstance(d, dict):
                raise PatchError(f"{where}.patch must be a strategic-merge object or a JSON 6902 list")
            if target is None:
                meta = d.get("metadata")
                if not isinstance(meta, dict) or not all(isinstance(v, str) and v for v in (d.get("kind"), meta.get("name"))):
                    raise PatchError(f"{where}: a strategic-merge patch without a target must name its kind and name")
            out.append(Patch(PatchKind.STRATEGIC, d, target, where))
        if not docs:
            raise PatchError(f"{where}.patch is empty")
    return tuple(out)


_CACHED_PATCH_CHARS = 2048  # a typical patch; the cache holds at most 16,384 of them (~ 64 MB at worst)


def _patch_json(text: str) -> str:
    """The patch's YAML documents as one JSON text — read once per distinct small patch: the spec is read at every
    reconcile, and YAML costs ~1 ms a patch (10,000 patches: 10 s of a worker's CPU per interval)."""
    return _cached_patch_json(text) if len(text) <= _CACHED_PATCH_CHARS else _load_patch_json(text)


def _load_patch_json(text: str) -> str:
    docs = [d.data for d in yamlsafe.load_all(text, yamlsafe.Limits()) if d.data is not None]
    return json.dumps(docs, default=str)


_cached_patch_json = functools.lru_cache(maxsize=16384)(_load_patch_json)


_OPS = {"add": ("path", "value"), "remove": ("path",), "replace": ("path", "value"), "move": ("from", "path"),
        "copy": ("from", "path"), "test": ("path", "value")}  # fmt: skip


def _check_op(op: Any, where: str) -> None:
    if not isinstance(op, dict) or op.get("op") not in _OPS:
        raise PatchError(f"{where}: op must be one of {', '.join(_OPS)}")
    for k in _OPS[op["op"]]:
        if k not in op:
            raise PatchError(f"{where}: {op['op']} needs {k!r}")
        if k in ("path", "from") and not (isinstance(op[k], str) and (op[k] == "" or op[k].startswith("/"))):
            raise PatchError(f"{where}.{k} must be a JSON pointer (/a/b)")


# --------------------------------------------------------------------------- JSON 6902
def _tokens(pointer: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]] if pointer else []


def _index(container: list[Any], token: str, pointer: str, adding: bool) -> int:
    if token == "-" and adding:
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", token):
        raise RenderError(f"JSON pointer {pointer}: {token!r} is not a list index")
    i = int(token)
    if i > len(container) or (i == len(container) and not adding):
        raise RenderError(f"JSON pointer {pointer}: index {i} is out of range")
    return i


def _parent(doc: Any, pointer: str) -> tuple[Any, str]:
    tokens = _tokens(pointer)
    cur = doc
    for t in tokens[:-1]:
        if isinstance(cur, dict) and t in cur:
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t, pointer, False)]
        else:
            raise RenderError(f"JSON pointer {pointer}: {t!r} does not exist")
    return cur, tokens[-1]


def _get(doc: Any, pointer: str) -> Any:
    if not pointer:
        return doc
    parent, last = _parent(doc, pointer)
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, pointer, False)]
    raise RenderError(f"JSON pointer {pointer} does not exist")


def _add(doc: Any, pointer: str, value: Any) -> Any:
    if not pointer:
        return value
    parent, last = _parent(doc, pointer)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, pointer, True), value)
    else:
        raise RenderError(f"JSON pointer {pointer}: the parent is not a mapping or list")
    return doc


def _remove(doc: Any, pointer: str) -> Any:
    if not pointer:
        raise RenderError("a JSON 6902 patch cannot remove the whole object")
    parent, last = _parent(doc, pointer)
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, pointer, False)]
    else:
        raise RenderError(f"JSON pointer {pointer} does not exist")
    return doc


def json6902(doc: Any, ops: Sequence[dict[str, Any]], *, in_place: bool = False) -> Any:
    """RFC 6902 applied to a copy of ``doc`` — or to ``doc`` itself when the caller owns it (``in_place``)."""
    if not in_place:
        doc = copy.deepcopy(doc)
    for op in ops:
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # must exist
            doc = _add(_remove(doc, path) if path else doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, op["from"]))
            if kind == "move":
                if path.startswith(op["from"] + "/"):
                    raise RenderError(f"JSON 6902 move: {path} is inside {op['from']}")
                doc = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif _get(doc, path) != op["value"]:
            raise RenderError(f"JSON 6902 test failed at {path}")
    return doc


# --------------------------------------------------------------------------- strategic merge
BUILTIN_GROUPS = frozenset(
    {"", "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "rbac.authorization.k8s.io", "storage.k8s.io",
     "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "admissionregistration.k8s.io",
     "apiextensions.k8s.io", "node.k8s.io", "extensions"}
)  # fmt: skip
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
    "env": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "imagePullSecrets": "name",
    "hostAliases": "ip", "resourceClaims": "name", "readinessGates": "conditionType",
}  # fmt: skip


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":  # a container's ports by containerPort, a Service's by port
        return "containerPort" if any(isinstance(i, dict) and "containerPort" in i for i in items) else "port"
    return MERGE_KEYS.get(field)


def strategic_merge(base: Any, patch: Any, builtin: bool = True, field: str = "") -> Any:
    """``patch`` merged into ``base`` (Kubernetes' strategic merge for the directives above). Neither is modified;
    the result shares with ``base`` what the patch does not touch (a copy of the patch's values, and new maps and
    lists only along the paths it changes), so N patches on one object cost N patches, not N copies of it."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    out = dict(base) if isinstance(base, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue  # $setElementOrder, $retainKeys, …: order and retention hints, not values
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict):
            merged = strategic_merge(out.get(k), v, builtin, k)
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
        elif isinstance(v, list) and builtin and isinstance(out.get(k), list) and _merge_key(k, out[k] + v):
            out[k] = _merge_list(out[k], v, _merge_key(k, out[k] + v) or "", builtin, k)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _merge_list(base: list[Any], patch: list[Any], key: str, builtin: bool, field: str) -> list[Any]:
    out = list(base)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            if isinstance(item, dict) and item.get("$patch") == "replace":
                return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
            out.append(copy.deepcopy(item))
            continue
        at = next((i for i, b in enumerate(out) if isinstance(b, dict) and b.get(key) == item[key]), None)
        if at is None:
            if item.get("$patch") != "delete":
                out.append({k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"})
            continue
        merged = strategic_merge(out[at], item, builtin, field)
        if merged is None:
            del out[at]
        else:
            out[at] = merged
    return out


# --------------------------------------------------------------------------- applying
_IDENTITY = ("apiVersion", "kind")


def _smp_selects(p: Patch, m: Manifest) -> bool:
    d = p.doc
    meta = d.get("metadata") or {}
    if d.get("kind") != m.kind or meta.get("name") != m.key.name:
        return False
    api = d.get("apiVersion")
    if isinstance(api, str) and api and group_of(api) != m.key.group:
        return False
    ns = meta.get("namespace")
    return not ns or ns == m.key.namespace


def apply_patches(manifests: list[Manifest], patches: Sequence[Patch], tracking_label: str) -> list[Manifest]:
    """Every patch applied, in order, to the objects it selects. The tracking label stays whatever a patch does.

    An object's body is copied once, by its first patch; the later ones change that copy (a failing patch fails the
    whole render, so no patch needs a copy of its own: copying per patch made 10,000 patches on one object
    quadratic — minutes of a worker's CPU at every interval)."""
    out = list(manifests)
    owned: set[int] = set()  # the indexes whose body is this function's copy
    for p in patches:
        hit = False
        for i, m in enumerate(out):
            if not (p.target.matches(m) if p.target is not None else _smp_selects(p, m)):
                continue
            hit = True
            try:
                mine = m.body if i in owned else copy.deepcopy(m.body)
                if p.kind is PatchKind.JSON6902:
                    body = json6902(mine, p.doc, in_place=True)
                else:
                    doc = p.doc
                    if p.target is not None:  # the target decides which objects: the patch's own identity is not applied
                        meta = {k: v for k, v in (doc.get("metadata") or {}).items() if k not in ("name", "namespace")}
                        doc = {**{k: v for k, v in doc.items() if k not in _IDENTITY}, "metadata": meta}
                    body = strategic_merge(mine, doc, m.key.group in BUILTIN_GROUPS)
            except RenderError as exc:
                raise RenderError(f"{p.where} on {m.key}: {exc}") from None
            out[i] = _rekey(m, body, tracking_label, p.where)
            owned.add(i)
        if not hit and p.target is None:
            d = p.doc
            raise RenderError(f"{p.where}: no object {d.get('kind')} {(d.get('metadata') or {}).get('name')} to patch")
    return out


def _rekey(m: Manifest, body: Any, tracking_label: str, where: str) -> Manifest:
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        raise RenderError(f"{where} on {m.key}: the result is not an object with metadata")
    meta = body["metadata"]
    api, kind, name, ns = body.get("apiVersion"), body.get("kind"), meta.get("name"), meta.get("namespace") or ""
    if not all(isinstance(v, str) and v for v in (api, kind, name)) or not isinstance(ns, str):
        raise RenderError(f"{where} on {m.key}: the result lacks apiVersion, kind or metadata.name")
    assert isinstance(api, str) and isinstance(kind, str) and isinstance(name, str)
    app = ((m.body.get("metadata") or {}).get("labels") or {}).get(tracking_label)
    if app is not None and (meta.get("labels") or {}).get(tracking_label) != app:  # (unchanged: no copy of the labels)
        meta["labels"] = {**(meta.get("labels") or {}), tracking_label: app}
    return replace(m, key=ResourceKey(group_of(api), kind, ns, name), api_version=api, body=body)
