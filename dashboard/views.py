"""What the pages show, computed from the objects the cluster view holds (pure: no I/O, no clock of its own).

Each datum comes from where its writer keeps it — the app objects' status (conditions, revision, health, drift,
history; Argo CD's sync/health/resources/history), the reconciler's inventory ConfigMap (last prune and the
guards that held), Events (syncs, drift corrections with their attribution, the dashboard's own actions), the
managed objects (health, live values) and imagebot's state. Nothing here is stored anywhere else.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.apps import app_key
from reconciler.diff import REDACT_KINDS
from reconciler.health import object_health

Obj = dict[str, Any]

DRIFT_ANNOTATION = "reconciler.imagebot.dev/drift"  # on the reconciler's drift Events: the items as JSON
ACTOR_ANNOTATION = "dashboard.imagebot.dev/actor"  # on the dashboard's action Events: who did it
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
REDACTED = "*** (redacted)"


class Sort(StrEnum):
    NAME = "name"
    NAMESPACE = "namespace"
    KIND = "kind"
    SYNC = "sync"
    HEALTH = "health"
    DRIFT = "drift"
    TIME = "time"


@dataclass(frozen=True, slots=True)
class AppRow:
    kind: str
    namespace: str
    name: str
    source: str  # repository URL
    ref: str  # branch/tag/commit (Flux ref, Argo CD targetRevision)
    path: str
    revision: str
    sync: str  # Synced / OutOfSync / the failing reason
    ready: str  # True / False / Unknown
    health: str
    drift: int
    time: str  # last sync (or last transition) time, RFC 3339
    message: str
    suspended: bool
    tracking: str  # the tracking label value of its objects (the inventory's name)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def ok(self) -> bool:
        return self.ready == "True"


def _ready_condition(st: Mapping[str, Any]) -> Obj:
    return next((c for c in st.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"), {})


def app_row(obj: Obj, repos: Mapping[tuple[str, str], Obj]) -> AppRow:
    meta, spec, st = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    ns, name, kind = str(meta.get("namespace") or ""), str(meta.get("name") or ""), str(obj.get("kind") or "")
    if not isinstance(spec, dict):
        spec = {}
    tracking = app_key(kind, ns, name)
    if kind == "Application":
        src: Obj = spec.get("source") or next(iter(spec.get("sources") or []), {}) or {}
        sync = str((st.get("sync") or {}).get("status") or "Unknown")
        health = str((st.get("health") or {}).get("status") or "")
        cond: Obj = next(iter(st.get("conditions") or []), {}) or {}
        op = st.get("operationState") or {}
        ready = "True" if sync == "Synced" and health not in ("Degraded", "Missing") and not cond else "False"
        if not st:
            ready = "Unknown"
        return AppRow(
            kind, ns, name, str(src.get("repoURL") or ""), str(src.get("targetRevision") or "HEAD"), str(src.get("path") or ""),
            str((st.get("sync") or {}).get("revision") or ""), sync if not cond else str(cond.get("type") or sync), ready, health,
            sum(1 for r in st.get("resources") or [] if isinstance(r, dict) and r.get("status") == "OutOfSync"),
            str(op.get("finishedAt") or st.get("reconciledAt") or ""),
            str(cond.get("message") or op.get("message") or sync), False, tracking,
        )  # fmt: skip
    ref = spec.get("sourceRef") if isinstance(spec.get("sourceRef"), dict) else {}
    url, gitref = "", ""
    if kind == "App" and isinstance(spec.get("source"), dict):
        url = str(spec["source"].get("url") or "")
        gitref = _ref_text(spec["source"].get("ref"))
    if ref:
        repo = repos.get((str(ref.get("namespace") or ns), str(ref.get("name") or "")))
        rspec = (repo or {}).get("spec") or {}
        url = str(rspec.get("url") or f"{ref.get('kind', 'GitRepository')} {ref.get('name', '')}")
        gitref = _ref_text(rspec.get("ref"))
    ready_c = _ready_condition(st)
    ready = str(ready_c.get("status") or "Unknown")
    history = st.get("history") or []
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    sync = "Synced" if ready == "True" else str(ready_c.get("reason") or ("Pending" if not st else "Unknown"))
    return AppRow(
        kind, ns, name, url, gitref, str(spec.get("path") or ""), str(st.get("lastAppliedRevision") or ""), sync, ready,
        str(st.get("health") or ""), int(st.get("driftCount") or 0) if str(st.get("driftCount", "0")).isdigit() else 0,
        str(last.get("finishedAt") or ready_c.get("lastTransitionTime") or ""), str(ready_c.get("message") or ""),
        bool(spec.get("suspend")), tracking,
    )  # fmt: skip


def _ref_text(ref: Any) -> str:
    if not isinstance(ref, dict):
        return ""
    for k in ("commit", "tag", "semver", "name", "branch"):
        if ref.get(k):
            return f"{k} {ref[k]}" if k != "branch" else str(ref[k])
    return ""


# ---------------------------------------------------------------------------- the Apps list
@dataclass(frozen=True, slots=True)
class Query:
    q: str = ""
    sync: str = ""  # "" | synced | outofsync
    health: str = ""  # "" | a health value
    kind: str = ""
    drift: bool = False  # only apps with drift
    suspended: bool = False  # only suspended apps
    sort: Sort = Sort.NAME
    desc: bool = False
    page: int = 1
    per: int = 100


@dataclass(frozen=True, slots=True)
class AppPage:
    rows: tuple[AppRow, ...]
    total: int  # matching the filters
    all: int  # every app
    page: int
    pages: int
    counts: Mapping[str, int] = field(default_factory=dict)  # ready / not ready / drifted / suspended among all


def matches(r: AppRow, q: Query) -> bool:
    if q.q:
        text = f"{r.namespace}/{r.name} {r.kind} {r.source} {r.revision} {r.message}".lower()
        if not all(word in text for word in q.q.lower().split()):
            return False
    if (q.sync == "synced" and not r.ok) or (q.sync == "outofsync" and r.ok):
        return False
    if q.health and r.health.lower() != q.health.lower():
        return False
    if q.kind and r.kind != q.kind:
        return False
    return not ((q.drift and not r.drift) or (q.suspended and not r.suspended))


def _sort_key(s: Sort) -> Any:
    return {
        Sort.NAME: lambda r: (r.name, r.namespace, r.kind),
        Sort.NAMESPACE: lambda r: (r.namespace, r.name, r.kind),
        Sort.KIND: lambda r: (r.kind, r.namespace, r.name),
        Sort.SYNC: lambda r: (r.ok, r.sync, r.namespace, r.name),
        Sort.HEALTH: lambda r: (_HEALTH_RANK.get(r.health, 0), r.namespace, r.name),
        Sort.DRIFT: lambda r: (r.drift, r.namespace, r.name),
        Sort.TIME: lambda r: (r.time, r.namespace, r.name),
    }[s]


_HEALTH_RANK = {"Degraded": 0, "Missing": 1, "Progressing": 2, "Unknown": 3, "": 3, "Healthy": 4}


def app_page(rows: Iterable[AppRow], q: Query) -> AppPage:
    every = list(rows)
    found = sorted((r for r in every if matches(r, q)), key=_sort_key(q.sort), reverse=q.desc)
    pages = max(1, -(-len(found) // q.per))
    page = min(max(q.page, 1), pages)
    counts = {
        "ready": sum(1 for r in every if r.ok),
        "notready": sum(1 for r in every if not r.ok),
        "drifted": sum(1 for r in every if r.drift),
        "suspended": sum(1 for r in every if r.suspended),
    }
    return AppPage(tuple(found[(page - 1) * q.per : page * q.per]), len(found), len(every), page, pages, counts)


# ---------------------------------------------------------------------------- App detail
@dataclass(frozen=True, slots=True)
class Drift:
    object: str  # "Deployment demo/web"
    field: str  # JSON pointer
    change: str  # changed / added / missing
    git: str  # Git's value (JSON text), redacted for Secrets
    live: str
    manager: str
    time: str
    policy: str  # correct / report / ignore
    outcome: str  # "drift now" | "corrected" | "reported"
    at: str  # when the reconciler saw it (the Event's time), or "" for current drift


@dataclass(frozen=True, slots=True)
class ObjectView:
    kind: str
    namespace: str
    name: str
    health: str
    why: str
    sync: str  # Synced / OutOfSync / Missing (not in the cluster) / Pruning (kept, awaiting prune)
    diff: str  # unified diff Git vs live ("" when in sync or unknown), Secret values redacted


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    revision: str
    started: str
    finished: str
    duration: str
    result: str
    changes: str


@dataclass(frozen=True, slots=True)
class EventView:
    time: str
    type: str  # Normal / Warning
    reason: str
    message: str
    object: str
    actor: str


@dataclass(frozen=True, slots=True)
class Guard:
    object: str
    action: str
    reason: str


@dataclass(frozen=True, slots=True)
class AppDetail:
    row: AppRow
    groups: tuple[tuple[str, tuple[ObjectView, ...]], ...]  # by kind
    drift: tuple[Drift, ...]  # current drift first, then corrections seen (newest first)
    guards: tuple[Guard, ...]
    guards_at: str
    history: tuple[HistoryEntry, ...]
    events: tuple[EventView, ...]
    conditions: tuple[Obj, ...]


def _value_text(v: Any, limit: int = 200) -> str:
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _secret(group: str, kind: str) -> bool:
    return (group, kind) in REDACT_KINDS


def drift_items(raw: Iterable[Any], outcome: str, at: str = "") -> list[Drift]:
    """Drift records as the reconciler writes them (status.drift, a drift Event's annotation), validated."""
    out = []
    for d in raw:
        if not isinstance(d, dict):
            continue
        secret = _secret(str(d.get("group") or ""), str(d.get("kind") or ""))
        where = f"{d['namespace']}/" if d.get("namespace") else ""
        obj = f"{d.get('kind', '')} {where}{d.get('name', '')}"
        git, live = (REDACTED, REDACTED) if secret else (_value_text(d.get("git")), _value_text(d.get("live")))
        change, manager = str(d.get("change") or "changed"), str(d.get("manager") or "")
        out.append(Drift(obj, str(d.get("field") or ""), change, git, live, manager, str(d.get("time") or ""),
                         str(d.get("policy") or ""), outcome, at))  # fmt: skip
    return out


def _time_of(ev: Obj) -> str:
    meta = ev.get("metadata") or {}
    return str(ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") or meta.get("creationTimestamp") or "")


def event_view(ev: Obj) -> EventView:
    inv = ev.get("involvedObject") or {}
    ann = (ev.get("metadata") or {}).get("annotations") or {}
    where = f"{inv['namespace']}/" if inv.get("namespace") else ""
    actor = str(ann.get(ACTOR_ANNOTATION) or (ev.get("source") or {}).get("component") or "")
    return EventView(
        _time_of(ev), str(ev.get("type") or "Normal"), str(ev.get("reason") or ""), str(ev.get("message") or ""),
        f"{inv.get('kind', '')} {where}{inv.get('name', '')}", actor,
    )


def app_events(events: Iterable[Obj], row: AppRow) -> list[Obj]:
    """Events about this app: on its object (the dashboard's actions, Flux-style), or on its inventory
    ConfigMap (the reconciler's syncs and drift corrections)."""
    out = []
    for ev in events:
        inv = ev.get("involvedObject") or {}
        if inv.get("namespace", (ev.get("metadata") or {}).get("namespace")) != row.namespace:
            continue
        if (inv.get("kind") == row.kind and inv.get("name") == row.name) or (
            inv.get("kind") == "ConfigMap" and inv.get("name") == f"reconciler-{row.tracking}"
        ):
            out.append(ev)
    return sorted(out, key=_time_of, reverse=True)


def _strip(obj: Obj) -> Obj:
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (out.get("metadata") or {}).items()
            if k not in ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp")}  # fmt: skip
    ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def _redact(obj: Obj) -> Obj:
    out = dict(obj)
    for k in ("data", "stringData"):
        if isinstance(out.get(k), dict):
            out[k] = {name: REDACTED for name in out[k]}
    return out


def _set_pointer(obj: Any, pointer: str, value: Any, remove: bool) -> None:
    parts = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    cur = obj
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            try:
                idx = int(part)
            except ValueError:
                return
            if not 0 <= idx < len(cur):
                return
            if last:
                if remove:
                    del cur[idx]
                else:
                    cur[idx] = value
                return
            cur = cur[idx]
        elif isinstance(cur, dict):
            if last:
                if remove:
                    cur.pop(part, None)
                else:
                    cur[part] = value
                return
            if part not in cur:
                if remove:
                    return
                cur[part] = {}
            cur = cur[part]
        else:
            return


def object_diff(live: Obj | None, items: Iterable[Any], group: str, kind: str) -> str:
    """Git vs live for one object as a unified diff: the live object, and the same with each drifted field set
    back to what Git declares (or, for a field added out of band, without it). Secret values never appear."""
    items = [d for d in items if isinstance(d, dict) and str(d.get("field", "")).startswith("/")]
    if live is None or not items:
        return ""
    shown = _strip(live)
    git = copy.deepcopy(shown)
    for d in items:
        _set_pointer(git, str(d["field"]), d.get("git"), remove=d.get("change") == "added")
    if _secret(group, kind):
        shown, git = _redact(shown), _redact(git)
    a = (json.dumps(shown, indent=2, sort_keys=True) + "\n").splitlines(keepends=True)
    b = (json.dumps(git, indent=2, sort_keys=True) + "\n").splitlines(keepends=True)
    name = f"{kind} {live.get('metadata', {}).get('namespace', '')}/{live.get('metadata', {}).get('name', '')}"
    return "".join(difflib.unified_diff(a, b, f"live/{name}", f"git/{name}"))


def _inventory_keys(obj: Obj) -> list[tuple[str, str, str, str, str]]:
    """(apiVersion, group, kind, namespace, name) of what the app's status lists."""
    st = obj.get("status") or {}
    out = []
    for e in (st.get("inventory") or {}).get("entries") or []:
        parts = str(e.get("id", "")).split("_")
        if len(parts) < 4:
            continue
        ns, name, group, kind = parts[0], "_".join(parts[1:-2]), parts[-2], parts[-1]
        v = str(e.get("v") or "")
        out.append((f"{group}/{v}" if group else v, group, kind, ns, name))
    for r in st.get("resources") or []:
        if not isinstance(r, dict):
            continue
        group, v = str(r.get("group") or ""), str(r.get("version") or "")
        out.append((f"{group}/{v}" if group else v, group, str(r.get("kind") or ""), str(r.get("namespace") or ""),
                    str(r.get("name") or "")))  # fmt: skip
    return out


def app_detail(obj: Obj, row: AppRow, managed: Iterable[Obj], inventory: Obj | None, events: Iterable[Obj]) -> AppDetail:
    st = obj.get("status") or {}
    live_by: dict[tuple[str, str, str, str], Obj] = {}
    for m in managed:
        meta = m.get("metadata") or {}
        api = str(m.get("apiVersion") or "")
        group = api.split("/")[0] if "/" in api else ""
        live_by[(group, str(m.get("kind") or ""), str(meta.get("namespace") or ""), str(meta.get("name") or ""))] = m
    current = [d for d in st.get("drift") or [] if isinstance(d, dict)]
    argo_state = {
        (str(r.get("group") or ""), str(r.get("kind") or ""), str(r.get("namespace") or ""), str(r.get("name") or "")): r
        for r in st.get("resources") or [] if isinstance(r, dict)
    }  # fmt: skip
    views: dict[str, list[ObjectView]] = {}
    seen: set[tuple[str, str, str, str]] = set()
    for _api, group, kind, ns, name in _inventory_keys(obj):
        k = (group, kind, ns, name)
        if k in seen:
            continue
        seen.add(k)
        live = live_by.get(k)
        mine = [d for d in current if (d.get("group") or "", d.get("kind"), d.get("namespace") or "", d.get("name")) == k]
        argo = argo_state.get(k, {})
        if _secret(group, kind):
            health, why = "Healthy", ""  # never watched: its values stay out of the dashboard
        elif live is None:
            health, why = ("Missing", "not found in the cluster") if not argo else (
                str((argo.get("health") or {}).get("status") or "Unknown"), str(argo.get("message") or ""))
        else:
            h, why = object_health(kind, live)
            health = str(h)
        sync = "OutOfSync" if mine or argo.get("status") == "OutOfSync" else "Synced"
        if argo.get("requiresPruning"):
            sync = "Pruning"
        views.setdefault(kind, []).append(ObjectView(kind, ns, name, health, why, sync, object_diff(live, mine, group, kind)))
    groups = tuple((kind, tuple(sorted(v, key=lambda o: (o.namespace, o.name)))) for kind, v in sorted(views.items()))
    evs = app_events(events, row)
    drift = drift_items(current, "drift now")
    for ev in evs:
        ann = (ev.get("metadata") or {}).get("annotations") or {}
        raw = ann.get(DRIFT_ANNOTATION)
        if not raw:
            continue
        try:
            items = json.loads(raw)
        except ValueError:
            continue
        outcome = "corrected" if ev.get("reason") == "DriftCorrected" else "reported"
        drift += drift_items(items if isinstance(items, list) else [], outcome, _time_of(ev))
    guards: list[Guard] = []
    guards_at = ""
    if inventory is not None:
        try:
            inv_status = json.loads(((inventory.get("data") or {}).get("status")) or "{}")
        except ValueError:
            inv_status = {}
        guards = [Guard(str(p.get("object", "")), str(p.get("action", "")), str(p.get("reason", "")))
                  for p in inv_status.get("lastPrune") or [] if isinstance(p, dict) and p.get("action") != "prune"]  # fmt: skip
        guards_at = str(inv_status.get("lastPruneAt") or "")
    return AppDetail(
        row, groups, tuple(drift), tuple(guards), guards_at, tuple(history(obj)), tuple(event_view(e) for e in evs[:100]),
        tuple(c for c in st.get("conditions") or [] if isinstance(c, dict)),
    )


def history(obj: Obj) -> list[HistoryEntry]:
    """Sync history, newest first: Argo CD's ``status.history``, or the reconciler's (Flux/App) ``status.history``."""
    st = obj.get("status") or {}
    out = []
    for h in reversed(st.get("history") or []):
        if not isinstance(h, dict):
            continue
        started = str(h.get("deployStartedAt") or h.get("startedAt") or "")
        finished = str(h.get("deployedAt") or h.get("finishedAt") or "")
        result = str(h.get("result") or ("Succeeded" if "deployedAt" in h else ""))
        out.append(HistoryEntry(str(h.get("revision") or ""), started, finished, str(h.get("duration") or ""), result,
                                str(h.get("changes") or "")))  # fmt: skip
    return out


# ---------------------------------------------------------------------------- Activity
class Activity(StrEnum):
    COMMIT = "commit"
    PR = "pr"
    SYNC = "sync"
    DRIFT = "drift"
    PRUNE = "prune"
    FAILURE = "failure"
    ACTION = "action"


@dataclass(frozen=True, slots=True)
class Entry:
    time: str  # RFC 3339
    kind: Activity
    title: str
    detail: str
    href: str  # a page of ours ("/apps/…") or an http(s) link (a pull request), "" for none
    actor: str


def safe_link(url: str) -> str:
    """Only http(s) links leave the dashboard (never javascript: or data: from a stored value)."""
    return url if url.startswith(("https://", "http://")) else ""


def app_href(kind: str, namespace: str, name: str) -> str:
    from urllib.parse import quote

    return f"/apps/{quote(kind)}/{quote(namespace)}/{quote(name)}"


def activity(
    apps: Iterable[tuple[Obj, AppRow]], events: Iterable[Obj], images: Iterable[Any], limit: int = 500,
    actions: Iterable[Any] = (),
) -> list[Entry]:
    """One timeline, newest first: syncs (status history), failures (a Ready=False condition), the reconciler's
    Events (syncs with prunes, drift corrected or reported with who changed it), the dashboard's actions (with
    who), and imagebot's last commit and pull request per image × environment."""
    out: list[Entry] = []
    by_tracking: dict[tuple[str, str], AppRow] = {}
    by_object: dict[tuple[str, str, str], AppRow] = {}
    for obj, row in apps:
        by_tracking[(row.namespace, f"reconciler-{row.tracking}")] = row
        by_object[(row.kind, row.namespace, row.name)] = row
        href = app_href(row.kind, row.namespace, row.name)
        for h in history(obj)[:20]:
            out.append(Entry(h.finished or h.started, Activity.SYNC, f"{row.namespace}/{row.name} synced {h.revision[:60]}",
                             " · ".join(x for x in (h.result, h.changes, h.duration) if x), href, ""))  # fmt: skip
        if row.ready == "False":
            cond = _ready_condition(obj.get("status") or {})
            out.append(Entry(row.time or str(cond.get("lastTransitionTime") or ""), Activity.FAILURE,
                             f"{row.namespace}/{row.name}: {row.sync}", row.message, href, ""))  # fmt: skip
    for ev in events:
        inv = ev.get("involvedObject") or {}
        ns = str(inv.get("namespace") or (ev.get("metadata") or {}).get("namespace") or "")
        found = by_tracking.get((ns, str(inv.get("name") or ""))) if inv.get("kind") == "ConfigMap" else None
        found = found or by_object.get((str(inv.get("kind") or ""), ns, str(inv.get("name") or "")))
        if found is None:
            if inv.get("kind") == "ImagePolicy" and (ev.get("source") or {}).get("component") == "dashboard":
                v = event_view(ev)  # the dashboard's hold / release / approve on the imagebot controller's policies
                out.append(Entry(v.time, Activity.ACTION, f"{ns}/{inv.get('name', '')}: {v.reason}", v.message, "/images",
                                 v.actor))  # fmt: skip
            continue
        row = found
        v = event_view(ev)
        reason = v.reason
        kind = Activity.ACTION if (ev.get("source") or {}).get("component") == "dashboard" else (
            Activity.DRIFT if reason.startswith("Drift") else Activity.PRUNE if "pruned" in v.message else
            Activity.FAILURE if v.type == "Warning" else Activity.SYNC)  # fmt: skip
        out.append(Entry(v.time, kind, f"{row.namespace}/{row.name}: {reason}", v.message,
                         app_href(row.kind, row.namespace, row.name), v.actor if kind is Activity.ACTION else ""))  # fmt: skip
    import time as _time

    for img in images:
        when = _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(img.updated)) if img.updated else ""
        if img.last_pr:
            out.append(Entry(when, Activity.PR, f"{img.image} {img.environment}: pull request", img.reason,
                             safe_link(img.last_pr), "imagebot"))  # fmt: skip
        if img.last_commit:
            since = _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(img.since)) if img.since else when
            out.append(Entry(since, Activity.COMMIT, f"{img.image} {img.environment}: commit {img.last_commit[:12]}",
                             f"{img.tag}{'@' + img.digest[:19] if img.digest else ''}", "", "imagebot"))  # fmt: skip
    for a in actions:  # operators' holds, releases and approvals (imagebot's CLI or this dashboard), with who
        what = {"hold": "on hold", "release": "released", "approve": f"{a.detail} approved early"}.get(a.action, a.action)
        detail = a.detail if a.action == "hold" else ""
        out.append(Entry(_time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(a.at)), Activity.ACTION,
                         f"{a.image} {a.environment}: {what} by {a.who}", detail, "/images", a.who))  # fmt: skip
    out.sort(key=lambda e: e.time, reverse=True)
    return out[:limit]


# ---------------------------------------------------------------------------- Flux image objects (imagebot controller)
@dataclass(frozen=True, slots=True)
class FluxPolicy:
    namespace: str
    name: str
    image: str  # the ImageRepository's image (canonicalImageName when scanned)
    policy: str  # "semver >=1.0.0", "numerical asc", "alphabetical desc", with the filter pattern
    latest: str  # status.latestRef as image:tag@digest
    previous: str
    ready: str  # True / False / Unknown
    message: str
    tag_count: int
    scan_time: str
    latest_tags: tuple[str, ...]
    hold: str | None = None  # imagebot.dev/hold: the reason ("" none given); None: not held
    hold_tag: str = ""  # imagebot.dev/hold-tag: pinned at
    promote_from: str = ""  # imagebot.dev/promote-from
    approved: str = ""  # imagebot.dev/approve
    pending: str = ""  # with promote-from: the source's latestRef tag, when this policy does not have it yet

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _ref(ref: Any) -> str:
    if not isinstance(ref, dict) or not ref.get("name"):
        return ""
    tag = f":{ref['tag']}" if ref.get("tag") else ""
    digest = f"@{ref['digest']}" if ref.get("digest") else ""
    return f"{ref['name']}{tag}{digest}"


def _tag(ref: Any) -> str:
    return str(ref.get("tag") or "") if isinstance(ref, dict) else ""


def flux_policies(policies: Iterable[Obj], repositories: Iterable[Obj]) -> list[FluxPolicy]:
    """Each ImagePolicy with what imagebot's controller wrote: the latest ref selected (and the previous one), its
    Ready condition, and its ImageRepository's last scan; and the operators' settings (hold, promotion, approval)."""
    repos = {(str((r.get("metadata") or {}).get("namespace") or ""), str((r.get("metadata") or {}).get("name") or "")): r
             for r in repositories}  # fmt: skip
    policies = list(policies)
    latest = {(str((p.get("metadata") or {}).get("namespace") or ""), str((p.get("metadata") or {}).get("name") or "")):
              _tag((p.get("status") or {}).get("latestRef")) for p in policies}  # fmt: skip
    out = []
    for p in policies:
        meta, spec, st = p.get("metadata") or {}, p.get("spec") or {}, p.get("status") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        ref = spec.get("imageRepositoryRef") or {}
        repo = repos.get((str(ref.get("namespace") or ns), str(ref.get("name") or ""))) or {}
        rst = repo.get("status") or {}
        scan = rst.get("lastScanResult") or {}
        chosen = spec.get("policy") or {}
        kind = next(iter(chosen), "")
        args = chosen.get(kind) or {}
        text = f"{kind} {args.get('range') or args.get('order') or ''}".strip()
        flt = (spec.get("filterTags") or {}).get("pattern")
        if flt:
            text += f", tags matching {flt}"
        cond = _ready_condition(st)
        found = meta.get("annotations")
        ann: dict[str, Any] = found if isinstance(found, dict) else {}
        hold, source = ann.get("imagebot.dev/hold"), str(ann.get("imagebot.dev/promote-from") or "").strip()
        offered = latest.get((ns, source), "") if source else ""
        out.append(FluxPolicy(
            ns, name, str(rst.get("canonicalImageName") or (repo.get("spec") or {}).get("image") or ref.get("name") or ""),
            text, _ref(st.get("latestRef")) or str(st.get("latestImage") or ""), _ref(st.get("observedPreviousRef")),
            str(cond.get("status") or "Unknown"), str(cond.get("message") or ""), int(scan.get("tagCount") or 0),
            str(scan.get("scanTime") or ""), tuple(str(t) for t in (scan.get("latestTags") or [])[:10]),
            None if hold is None else str(hold), str(ann.get("imagebot.dev/hold-tag") or ""), source,
            str(ann.get("imagebot.dev/approve") or ""), offered if offered != _tag(st.get("latestRef")) else "",
        ))  # fmt: skip
    return sorted(out, key=lambda f: (f.namespace, f.name))
