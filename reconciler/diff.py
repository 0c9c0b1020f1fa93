"""Compare live objects with Git on the fields Git declares, and say who changed what (pure).

- ``declared_drift``: every field the manifest declares must have the same value live; lists of
  objects are matched by a merge key (``name``, ``containerPort``, ``port``…) when they have one,
  otherwise by position.
- ``added_drift``: fields a manager other than ours set (``managedFields``, operation Update or
  Apply) that Git does not declare — e.g. ``kubectl edit``/``patch`` adding an env var, or
  ``kubectl scale`` setting replicas through ``/scale`` (same field, same rule). Our own labels and
  annotations (``reconciler.imagebot.dev/…``: the prune opt-out) are never drift.
- Attribution: the owning manager, its operation and time, read from ``managedFields``.
- One rule decides everywhere (diff, status, apply): a :class:`Rules` value maps a JSON pointer
  or an owning manager to ``correct`` / ``report`` / ``ignore``. An HPA owning ``/spec/replicas``
  is ignored by manager: not drift, never overwritten.
- Secret values are redacted in every rendering.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

from reconciler.model import PRUNE_ANNOTATION, DriftItem, DriftKind, FieldPolicy, Manifest, ResourceKey

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
RESTARTED_AT = "/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt"
OWN_PREFIX = PRUNE_ANNOTATION.split("/")[0] + "/"  # reconciler.imagebot.dev/


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
    # Fields Git does not declare are drift only when one of these managers (name prefixes) added them: people
    # with kubectl. What controllers add (the Deployment controller's revision annotation, an operator's
    # caBundle) is theirs; removing it would fight them forever. Declared fields are drift whoever changed them.
    added_by: tuple[str, ...] = ("kubectl", "before-first-apply")

    def counts_added(self, manager: str) -> bool:
        return manager.startswith(self.added_by)

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


def _identity(item: dict[str, Any], mk: str) -> dict[str, Any]:
    """An item's key fields as the API server keys it: ports by number *and* protocol (53/UDP and 53/TCP are
    two items; Git may leave the protocol to its default)."""
    if mk in ("containerPort", "port"):
        return {mk: item[mk], "protocol": item.get("protocol", _KEY_DEFAULTS["protocol"])}
    return {mk: item[mk]}


def _key_text(item: dict[str, Any], mk: str) -> str:
    return json.dumps(_identity(item, mk), separators=(",", ":"), sort_keys=True)


def _item_pointer(item: dict[str, Any], mk: str) -> str:
    ident = _identity(item, mk)
    extra = "" if ident.get("protocol", "TCP") == "TCP" else f"~1{ident['protocol']}"  # 53 and 53/UDP apart
    return escape(str(item[mk])) + extra


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
            by_key = {_key_text(i, mk): i for i in live}
            for item in desired:
                other = by_key.get(_key_text(item, mk), _ABSENT)
                kf = "k:" + _key_text(item, mk)
                if other is _ABSENT:
                    yield f"{pointer}/{_item_pointer(item, mk)}", item, None, (*fpath, kf)
                else:
                    yield from _walk(item, other, f"{pointer}/{_item_pointer(item, mk)}", (*fpath, kf))
            return
        if len(desired) != len(live):
            yield pointer, desired, live, fpath
            return
        for i, (d, lv) in enumerate(zip(desired, live, strict=True)):
            yield from _walk(d, lv, f"{pointer}/{i}", fpath)
        return
    if not _equal(desired, live) and not (_quantity_field(pointer) and _same_quantity(desired, live)):
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


# The API server stores resource quantities in canonical form (0.5 → 500m, 1024Mi → 1Gi, 1000m → 1):
# equal amounts are not drift. Only where Kubernetes has quantities — elsewhere "1Gi" and "1024Mi" differ.
_QUANTITY_PARENTS = frozenset(
    {"limits", "requests", "hard", "capacity", "allocatable", "overhead", "max", "min", "default", "defaultRequest"}
)
_QUANTITY_KEYS = frozenset({"sizeLimit", "storage"})
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$")
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def _quantity_field(pointer: str) -> bool:
    parts = pointer.rsplit("/", 2)
    return len(parts) == 3 and (parts[1] in _QUANTITY_PARENTS or parts[2] in _QUANTITY_KEYS)


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes resource quantity as an exact number (None when it is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    m = _QUANTITY.match(str(value).strip())
    if m is None:
        return None
    number, exponent, suffix = Decimal(m[1]), m[2], str(m[3] or "")
    if exponent is not None:
        return number.scaleb(int(exponent))
    if suffix in _BINARY:
        return number * Decimal(2 ** _BINARY[suffix])
    return number.scaleb(_DECIMAL.get(suffix, 0))


def _same_quantity(a: Any, b: Any) -> bool:
    qa, qb = parse_quantity(a), parse_quantity(b)
    return qa is not None and qa == qb


def owner_of(managed_fields: list[dict[str, Any]], fpath: tuple[str, ...], live: Any = None) -> tuple[str, str, str]:
    """(manager, operation, time) owning the deepest prefix of ``fpath`` in managedFields.

    ``live`` given: a list item ``fpath`` names by Git's merge key (a port by ``name``) is also found under the
    key the server uses for it (``containerPort`` + ``protocol``), read from the live item.
    """
    alts = _server_keys(live, fpath) if live is not None else {}
    best: tuple[int, str, str, str] = (-1, "", "", "")
    for entry in managed_fields or []:
        node = entry.get("fieldsV1") or {}
        depth = 0
        for n, part in enumerate(fpath):
            if isinstance(node, dict) and part not in node and alts.get(n) in node:
                part = alts[n]
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
            depth += 1
        if depth > 0 and (depth == len(fpath) or node == {} or "." in node) and depth > best[0]:
            best = (depth, entry.get("manager", ""), entry.get("operation", ""), entry.get("time", ""))
    return best[1], best[2], best[3]


def _server_keys(live: Any, fpath: tuple[str, ...]) -> dict[int, str]:
    """For each k: part of ``fpath`` naming a port by another key, the k: part the server keys it by."""
    out: dict[int, str] = {}
    node = live
    for n, part in enumerate(fpath):
        if part.startswith("f:"):
            node = node.get(part[2:]) if isinstance(node, dict) else None
        elif part.startswith("k:"):
            at = _match(node, json.loads(part[2:]))
            node = None if at is None else node[at]
            if isinstance(node, dict):
                for mk in ("containerPort", "port"):
                    if mk in node:
                        out[n] = "k:" + _key_text(node, mk)
                        break
        else:
            break
    return out


def _owned_leaves(node: Any, fpath: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if not isinstance(node, dict) or not node:
        yield fpath
        return
    if set(node) == {"."} and fpath and fpath[-1].startswith("f:"):
        return  # owning a map's existence is not owning what others put in it (left behind when its keys go)
    if set(node) == {"."}:
        yield fpath
        return
    for k, v in node.items():
        if k == ".":
            continue
        yield from _owned_leaves(v, (*fpath, k))


# List-map key fields the server defaults: managedFields name a port k:{"containerPort":80,"protocol":"TCP"}
# whether or not Git wrote the protocol, so an item of Git's without one is that item.
_KEY_DEFAULTS = {"protocol": "TCP"}


def _match(items: Any, want: dict[str, Any], declared: bool = False) -> int | None:
    """Index of the item with the key fields ``want`` (``declared``: ``items`` is Git's, which may omit a
    defaulted key field)."""
    if not isinstance(items, list):
        return None

    def same(i: dict[str, Any], k: str, v: Any) -> bool:
        if k in i:
            return bool(i[k] == v)
        return declared and k in _KEY_DEFAULTS and _KEY_DEFAULTS[k] == v

    return next((n for n, i in enumerate(items) if isinstance(i, dict) and all(same(i, k, v) for k, v in want.items())), None)


def _declared(desired: Any, fpath: tuple[str, ...]) -> bool:
    node = desired
    key: dict[str, Any] = {}
    for part in fpath:
        if part.startswith("f:"):
            if not isinstance(node, dict) or part[2:] not in node:
                return part[2:] in key  # a key field Git left to its default: the item Git declares implies it
            node = node[part[2:]]
            key = {}
        elif part.startswith("k:"):
            key = json.loads(part[2:])
            at = _match(node, key, declared=True)
            if at is None:
                return False
            node = node[at]
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
            at = _match(node, want)
            node = None if at is None else node[at]
        else:
            pointer += "/" + escape(part)
            node = None
    return pointer, node


def _removal_path(desired: Any, live: Any, fpath: tuple[str, ...]) -> tuple[str | int, ...] | None:
    """Path (list indices, not merge keys) removing the undeclared field at ``fpath``.

    Map keys are followed down to the owned field itself (a map may hold others' fields too); a list item
    Git does not declare — an added sidecar container, an added env var — is removed whole, because removing
    its leaves one by one would leave an invalid item behind.
    """
    want, node = desired, live
    path: tuple[str | int, ...] = ()
    for part in fpath:
        if part.startswith("f:"):
            name = part[2:]
            if not isinstance(node, dict) or name not in node:
                return None
            path, node = (*path, name), node[name]
            want = want.get(name) if isinstance(want, dict) else None
        elif part.startswith("k:"):
            key = json.loads(part[2:])
            at = _match(node, key)
            if at is None:
                return None
            path, node = (*path, at), node[at]
            mine = _match(want, key, declared=True)
            if mine is None:
                return path
            want = want[mine]
        elif part.startswith("v:"):
            value = json.loads(part[2:])
            if not isinstance(node, list) or value not in node:
                return None
            return None if isinstance(want, list) and value in want else (*path, node.index(value))
        else:
            return None
    return path


def _out_of_band(
    manifest: Manifest, live: dict[str, Any], our_manager: str, rules: Rules, defaults: frozenset[str] = frozenset()
) -> Iterator[tuple[dict[str, Any], tuple[str, ...], str, Any]]:
    """(managedFields entry, fields path, pointer, value) for each field kubectl added that Git does not declare.

    ``defaults``: pointers of such fields the API server fills in by itself (see :func:`server_defaults`).
    """
    managed = (live.get("metadata") or {}).get("managedFields") or []
    for entry in managed:
        manager = entry.get("manager", "")
        if manager == our_manager or entry.get("subresource") == "status" or not rules.counts_added(manager):
            continue  # controllers keep theirs. A /scale write is kubectl's like a patch: same field, same rule
        for fpath in _owned_leaves(entry.get("fieldsV1") or {}):
            if not fpath or fpath[0] in ("f:status",) or fpath[:2] == ("f:metadata", "f:managedFields"):
                continue
            if _ours(fpath):
                continue  # our own opt-outs (prune: disabled) set by hand must survive until the object leaves Git
            if _declared(manifest.body, fpath):
                continue
            pointer, value = _value_at(live, fpath)
            if value is None or (isinstance(value, (dict, list)) and _owned_below(managed, fpath, entry)):
                continue  # a map or list that also holds others' fields: only its own keys are this manager's
            if pointer.endswith(RESTARTED_AT):
                continue  # `kubectl rollout restart` is an action, not config: undoing it would roll out again
            if pointer in defaults:
                continue  # kubectl create/apply sent it, but the server would set the same value anyway
            yield entry, fpath, pointer, value


def _ours(fpath: tuple[str, ...]) -> bool:
    """A label or annotation under our own prefix (reconciler.imagebot.dev/): the tool's controls, never drift."""
    return (
        len(fpath) >= 3
        and fpath[:2] in (("f:metadata", "f:labels"), ("f:metadata", "f:annotations"))
        and fpath[2].startswith("f:" + OWN_PREFIX)
    )


def _owned_below(managed: list[dict[str, Any]], fpath: tuple[str, ...], me: dict[str, Any]) -> bool:
    """Does any other manager own a field strictly inside ``fpath``?"""
    for entry in managed:
        if entry is me:
            continue
        node = entry.get("fieldsV1") or {}
        for part in fpath:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and set(node) - {"."}:
            return True
    return False


def drift(
    manifest: Manifest, live: dict[str, Any] | None, our_manager: str, rules: Rules, defaults: frozenset[str] = frozenset()
) -> list[DriftItem]:
    """Every difference between Git and the live object, classified and attributed."""
    key = manifest.key
    if live is None:
        return [DriftItem(key, "", DriftKind.MISSING, None, None, "", "", "", rules.policy(key.kind, "", ""))]
    managed = (live.get("metadata") or {}).get("managedFields") or []
    items: list[DriftItem] = []
    for pointer, want, got, fpath in _walk(manifest.body, live, "", ()):
        manager, op, when = owner_of(managed, fpath, live)
        items.append(
            DriftItem(key, pointer, DriftKind.CHANGED, want, got, manager, op, when, rules.policy(key.kind, pointer, manager))
        )
    for entry, _, pointer, value in _out_of_band(manifest, live, our_manager, rules, defaults):
        manager = entry.get("manager", "")
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


def added_fields(
    manifest: Manifest,
    live: dict[str, Any],
    our_manager: str,
    rules: Rules,
    defaults: frozenset[str] = frozenset(),
    *,
    any_policy: bool = False,
) -> tuple[str, ...]:
    """JSON-patch paths removing what kubectl added and policy corrects (``any_policy``: whatever the policy),
    in an order safe to apply one by one."""
    found: set[tuple[str | int, ...]] = set()
    for entry, fpath, pointer, _ in _out_of_band(manifest, live, our_manager, rules, defaults):
        if any_policy or rules.policy(manifest.key.kind, pointer, entry.get("manager", "")) is FieldPolicy.CORRECT:
            path = _removal_path(manifest.body, live, fpath)
            if path:
                found.add(path)
    # an ancestor already removed covers its descendants; within a list, the highest index goes first
    outer = {p for p in found if not any(q != p and p[: len(q)] == q for q in found)}
    return tuple("/" + "/".join(escape(str(x)) for x in p) for p in sorted(outer, reverse=True))


def server_defaults(
    manifest: Manifest, live: dict[str, Any], after: dict[str, Any], our_manager: str, rules: Rules
) -> frozenset[str]:
    """Pointers of the fields kubectl added that the server puts back as they were once removed.

    ``after`` is the object as the server returns it from a dry-run removal of every such field. `kubectl
    create` and client-side `kubectl apply` own every field of the object they sent, the ones the server
    defaulted (``imagePullPolicy``, ``protocol: TCP``, …) too, and so does ``before-first-apply``; a field
    that comes back with the same value is the server's default, not an addition: not drift.
    """
    found = set()
    for _, fpath, pointer, value in _out_of_band(manifest, live, our_manager, rules):
        _, again = _value_at(after, fpath)
        if again is not None and (again == value or _equal(value, again)):
            found.add(pointer)
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class Held:
    """A declared field another manager changed and policy keeps from being overwritten."""

    pointer: str
    manager: str
    policy: FieldPolicy


def applicable(
    manifest: Manifest, live: dict[str, Any] | None, our_manager: str, rules: Rules
) -> tuple[Manifest, tuple[Held, ...]]:
    """What to apply so that the rule decides apply as it decides diff and status.

    A declared field whose live value another manager set (an HPA's replicas, a hand edit in report
    mode) and whose policy is ``ignore`` or ``report`` is left out of the apply configuration, so
    server-side apply keeps the other manager's value. A field we still own, or that nobody owns, is
    a change in Git and is applied whatever the policy: policies govern drift, not Git.
    """
    if live is None:
        return manifest, ()
    managed = (live.get("metadata") or {}).get("managedFields") or []
    held: list[tuple[tuple[str, ...], Held]] = []
    for pointer, _, _, fpath in _walk(manifest.body, live, "", ()):
        manager, _, _ = owner_of(managed, fpath, live)
        if not manager or manager == our_manager:
            continue
        policy = rules.policy(manifest.key.kind, pointer, manager)
        if policy is not FieldPolicy.CORRECT:
            held.append((fpath, Held(pointer, manager, policy)))
    if not held:
        return manifest, ()
    body = json.loads(json.dumps(manifest.body))
    for fpath, _ in held:
        _drop(body, fpath)
    return replace(manifest, body=body), tuple(h for _, h in held)


def _drop(node: Any, fpath: tuple[str, ...]) -> None:
    """Remove the field at ``fpath`` (f: keys, k: list items) from a plain JSON document, in place."""
    for i, part in enumerate(fpath):
        last = i == len(fpath) - 1
        if part.startswith("f:") and isinstance(node, dict) and part[2:] in node:
            if last:
                del node[part[2:]]
                return
            node = node[part[2:]]
        elif part.startswith("k:") and isinstance(node, list):
            at = _match(node, json.loads(part[2:]), declared=True)
            if at is None:
                return
            if last:
                del node[at]
                return
            node = node[at]
        else:
            return


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


def unified(manifest: Manifest, live: dict[str, Any] | None, added: Iterable[str] = ()) -> str:
    """A unified diff of live vs desired, restricted to declared fields plus the ``added`` ones (JSON pointers
    of fields set out of band that are drift), Secret values redacted. Every line ends in a newline, so the
    diffs of several objects concatenate into one valid unified diff."""
    key = manifest.key
    live_part = _project(manifest.body, _strip(live)) if live is not None else {}
    if live is not None:
        for pointer in added:
            _copy_pointer(live, live_part, pointer)
    desired = redact(key, _strip(manifest.body), live_part, "git value differs")
    shown_live = redact(key, live_part, _strip(manifest.body), "live value differs") if live is not None else {}
    a = (json.dumps(shown_live, indent=2, sort_keys=True) + "\n").splitlines(keepends=True) if live is not None else []
    b = (json.dumps(desired, indent=2, sort_keys=True) + "\n").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, f"live/{key}", f"git/{key}"))


def _copy_pointer(src: Any, dest: dict[str, Any], pointer: str) -> None:
    """Copy the value at ``pointer`` from ``src`` into ``dest`` through mappings only (a list item added out of
    band is named in the drift lines; its index means nothing in the projected list)."""
    parts = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    cur_src, cur_dest = src, dest
    for i, part in enumerate(parts):
        if not isinstance(cur_src, dict) or part not in cur_src or not isinstance(cur_dest, dict):
            return
        if i == len(parts) - 1:
            cur_dest[part] = cur_src[part]
            return
        cur_src = cur_src[part]
        nxt = cur_dest.setdefault(part, {})
        if not isinstance(nxt, dict):
            return
        cur_dest = nxt


def _project(desired: Any, live: Any) -> Any:
    """The part of ``live`` at the places ``desired`` declares."""
    if isinstance(desired, dict) and isinstance(live, dict):
        return {k: _project(v, live[k]) for k, v in desired.items() if k in live}
    if isinstance(desired, list) and isinstance(live, list):
        mk = _merge_key(desired)
        if mk is not None and _merge_key(live) == mk:
            by = {_key_text(i, mk): i for i in live}
            return [_project(d, by[_key_text(d, mk)]) for d in desired if _key_text(d, mk) in by]
        return [_project(d, lv) for d, lv in zip(desired, live, strict=False)] + live[len(desired) :]
    return live
