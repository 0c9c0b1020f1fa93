"""Compare live objects with Git on the fields Git declares, and say who changed what (pure).

- ``declared_drift``: every field the manifest declares must have the same value live; lists of
  objects are matched by a merge key (``name``, ``containerPort``, ``port``…) when they have one,
  otherwise by position.
- ``added_drift``: fields a manager other than ours set (``managedFields``, operation Update or
  Apply) that Git does not declare — e.g. ``kubectl edit``/``patch`` adding an env var.
- Attribution: the owning manager, its operation and time, read from ``managedFields``.
- One rule decides everywhere (diff, status, apply): a :class:`Rules` value maps a JSON pointer
  or an owning manager to ``correct`` / ``report`` / ``ignore``. An HPA owning ``/spec/replicas``
  is ignored by manager: not drift, never overwritten.
- Secret values are redacted in every rendering.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from reconciler.model import DriftItem, DriftKind, FieldPolicy, Manifest, ResourceKey

MERGE_KEYS = ("name", "containerPort", "port", "mountPath", "devicePath", "ip", "type", "topologyKey")
# never drift: server-maintained or ours
SKIP_TOP = frozenset({"status", "apiVersion", "kind"})  # list items carry no apiVersion/kind
SKIP_META = frozenset(
    {
        "managedFields",
        "resourceVersion",
        "uid",
        "generation",
        "creationTimestamp",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "ownerReferences",
        "finalizers",
    }
)
REDACT_KINDS = frozenset({("", "Secret")})


@dataclass(frozen=True, slots=True)
class Rule:
    policy: FieldPolicy
    pointer: str = ""  # a JSON pointer, '*' globs allowed (e.g. /spec/template/metadata/annotations/*)
    manager: str = ""  # or the owning field manager (e.g. an HPA controller)
    kind: str = ""  # optional: only for this kind

    def matches(self, kind: str, pointer: str, manager: str) -> bool:
        if self.kind and self.kind != kind:
            return False
        if self.pointer and not (fnmatchcase(pointer, self.pointer) or pointer.startswith(self.pointer.rstrip("/") + "/")):
            return False
        return not (self.manager and self.manager != manager)


@dataclass(frozen=True, slots=True)
class Rules:
    default: FieldPolicy = FieldPolicy.CORRECT
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    def policy(self, kind: str, pointer: str, manager: str) -> FieldPolicy:
        for r in self.rules:
            if r.matches(kind, pointer, manager):
                return r.policy
        return self.default


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _merge_key(items: list[Any]) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for k in MERGE_KEYS:
        if all(k in i for i in items):
            return k
    return None


def _walk(desired: Any, live: Any, pointer: str, fpath: tuple[str, ...]) -> Iterator[tuple[str, Any, Any, tuple[str, ...]]]:
    """Yield (pointer, desired, live, fields-path) for every declared leaf that differs."""
    if desired in ({}, [], None) and (live is _ABSENT or live in ({}, [], None)):
        return  # the API server omits empty maps, lists and nulls
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            yield pointer or "/", desired, live, fpath
            return
        for k, v in desired.items():
            if not pointer and k in SKIP_TOP:
                continue
            if pointer == "/metadata" and k in SKIP_META:
                continue
            yield from _walk(v, live.get(k, _ABSENT), f"{pointer}/{escape(k)}", (*fpath, f"f:{k}"))
        return
    if isinstance(desired, list):
        if not isinstance(live, list):
            yield pointer, desired, live, fpath
            return
        mk = _merge_key(desired)
        if mk is not None and _merge_key(live) == mk:
            by_key = {json.dumps(i[mk]): i for i in live}
            for item in desired:
                other = by_key.get(json.dumps(item[mk]), _ABSENT)
                kf = "k:" + json.dumps({mk: item[mk]}, separators=(",", ":"))
                if other is _ABSENT:
                    yield f"{pointer}/{escape(str(item[mk]))}", item, None, (*fpath, kf)
                else:
                    yield from _walk(item, other, f"{pointer}/{escape(str(item[mk]))}", (*fpath, kf))
            return
        if len(desired) != len(live):
            yield pointer, desired, live, fpath
            return
        for i, (d, lv) in enumerate(zip(desired, live, strict=True)):
            yield from _walk(d, lv, f"{pointer}/{i}", fpath)
        return
    if not _equal(desired, live):
        yield pointer, desired, None if live is _ABSENT else live, fpath


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def _equal(a: Any, b: Any) -> bool:
    if a == b and type(a) is type(b):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, (int, float, str)) and isinstance(b, (int, float, str)):
        return str(a) == str(b) and _quantity_like(str(a))
    return False


def _quantity_like(s: str) -> bool:
    return s.replace(".", "", 1).isdigit()


def owner_of(managed_fields: list[dict[str, Any]], fpath: tuple[str, ...]) -> tuple[str, str, str]:
    """(manager, operation, time) owning the deepest prefix of ``fpath`` in managedFields."""
    best: tuple[int, str, str, str] = (-1, "", "", "")
    for entry in managed_fields or []:
        node = entry.get("fieldsV1") or {}
        depth = 0
        for part in fpath:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
            depth += 1
        if depth > 0 and (depth == len(fpath) or node == {} or "." in node) and depth > best[0]:
            best = (depth, entry.get("manager", ""), entry.get("operation", ""), entry.get("time", ""))
    return best[1], best[2], best[3]


def _owned_leaves(node: Any, fpath: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if not isinstance(node, dict) or not node or set(node) == {"."}:
        yield fpath
        return
    for k, v in node.items():
        if k == ".":
            continue
        yield from _owned_leaves(v, (*fpath, k))


def _declared(desired: Any, fpath: tuple[str, ...]) -> bool:
    node = desired
    for part in fpath:
        if part.startswith("f:"):
            if not isinstance(node, dict) or part[2:] not in node:
                return False
            node = node[part[2:]]
        elif part.startswith("k:"):
            if not isinstance(node, list):
                return False
            want = json.loads(part[2:])
            node = next((i for i in node if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())), None)
            if node is None:
                return False
        elif part.startswith("v:"):
            return isinstance(node, list) and json.loads(part[2:]) in node
        else:
            return True
    return True


def _value_at(live: Any, fpath: tuple[str, ...]) -> tuple[str, Any]:
    pointer, node = "", live
    for part in fpath:
        if part.startswith("f:"):
            pointer += "/" + escape(part[2:])
            node = node.get(part[2:]) if isinstance(node, dict) else None
        elif part.startswith("k:"):
            want = json.loads(part[2:])
            pointer += "/" + escape(str(next(iter(want.values()))))
            node = next((i for i in node or [] if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())), None)
        else:
            pointer += "/" + escape(part)
            node = None
    return pointer, node


def drift(manifest: Manifest, live: dict[str, Any] | None, our_manager: str, rules: Rules) -> list[DriftItem]:
    """Every difference between Git and the live object, classified and attributed."""
    key = manifest.key
    if live is None:
        return [DriftItem(key, "", DriftKind.MISSING, None, None, "", "", "", rules.policy(key.kind, "", ""))]
    managed = (live.get("metadata") or {}).get("managedFields") or []
    items: list[DriftItem] = []
    for pointer, want, got, fpath in _walk(manifest.body, live, "", ()):
        manager, op, when = owner_of(managed, fpath)
        items.append(
            DriftItem(key, pointer, DriftKind.CHANGED, want, got, manager, op, when, rules.policy(key.kind, pointer, manager))
        )
    for entry in managed:
        manager = entry.get("manager", "")
        if manager == our_manager or entry.get("subresource"):
            continue  # status writers and /scale are handled through the declared fields
        for fpath in _owned_leaves(entry.get("fieldsV1") or {}):
            if not fpath or fpath[0] in ("f:status",) or fpath[:2] == ("f:metadata", "f:managedFields"):
                continue
            if _declared(manifest.body, fpath):
                continue
            pointer, value = _value_at(live, fpath)
            if value is None:
                continue
            items.append(
                DriftItem(
                    key,
                    pointer,
                    DriftKind.ADDED,
                    None,
                    value,
                    manager,
                    entry.get("operation", ""),
                    entry.get("time", ""),
                    rules.policy(key.kind, pointer, manager),
                )
            )
    return [i for i in items if i.policy is not FieldPolicy.IGNORE]


def in_sync(manifest: Manifest, live: dict[str, Any] | None) -> bool:
    """True when every declared field already has its value (the no-op test before applying)."""
    return live is not None and next(_walk(manifest.body, live, "", ()), None) is None


def redact(key: ResourceKey, obj: Any, other: Any = None, side: str = "differs") -> Any:
    """Secret values become markers; a value that differs from ``other``'s says so, and nothing more."""
    if (key.group, key.kind) not in REDACT_KINDS or not isinstance(obj, dict):
        return obj
    out = dict(obj)
    theirs = other if isinstance(other, dict) else {}
    for k in ("data", "stringData"):
        if isinstance(out.get(k), dict):
            found = theirs.get(k)
            peer: dict[str, Any] = found if isinstance(found, dict) else {}
            out[k] = {name: "*** (redacted)" if peer.get(name) == v else f"*** (redacted, {side})" for name, v in out[k].items()}
    return out


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in obj.items() if k not in SKIP_TOP}
    meta = {k: v for k, v in (out.get("metadata") or {}).items() if k not in SKIP_META}
    out["metadata"] = meta
    return out


def unified(manifest: Manifest, live: dict[str, Any] | None) -> str:
    """A unified diff of live vs desired, restricted to declared fields, Secret values redacted."""
    key = manifest.key
    live_part = _project(manifest.body, _strip(live)) if live is not None else {}
    desired = redact(key, _strip(manifest.body), live_part, "git value differs")
    shown_live = redact(key, live_part, _strip(manifest.body), "live value differs") if live is not None else {}
    a = json.dumps(shown_live, indent=2, sort_keys=True).splitlines(keepends=True) if live is not None else []
    b = json.dumps(desired, indent=2, sort_keys=True).splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, f"live/{key}", f"git/{key}"))


def _project(desired: Any, live: Any) -> Any:
    """The part of ``live`` at the places ``desired`` declares."""
    if isinstance(desired, dict) and isinstance(live, dict):
        return {k: _project(v, live[k]) for k, v in desired.items() if k in live}
    if isinstance(desired, list) and isinstance(live, list):
        mk = _merge_key(desired)
        if mk is not None and _merge_key(live) == mk:
            by = {json.dumps(i[mk]): i for i in live}
            return [_project(d, by[json.dumps(d[mk])]) for d in desired if json.dumps(d[mk]) in by]
        return [_project(d, lv) for d, lv in zip(desired, live, strict=False)] + live[len(desired) :]
    return live
