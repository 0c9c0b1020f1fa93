"""The loop: fetch → render → plan → apply → prune → watch → correct or report.

``Engine.sync`` is one reconcile (render → plan → apply → prune, inventory and status saved);
``Engine.watch`` starts one watcher per managed kind that corrects (or reports) drift as it
happens (``on_event`` → ``correct``); ``Engine.diff`` and ``health_report`` only read. The loop
that keeps the cluster equal to Git — poll the source, sync a new revision and restart the
watchers, resync fully at an interval as a safety net — is ``reconciler run``/``serve``
(``cmd_run`` in reconciler/cli.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Histogram

from reconciler import diff as diffmod
from reconciler.cluster import KubeCluster
from reconciler.errors import ClusterError, DeadlineExceeded, PruneRefused, RenderError, UsageError
from reconciler.health import object_health, rollup
from reconciler.inventory import Inventory, configmap_name, load, load_others, save
from reconciler.model import (
    TRACKING_LABEL,
    Action,
    DriftItem,
    DriftKind,
    FieldPolicy,
    Health,
    Manifest,
    Plan,
    ResourceKey,
    group_of,
)
from reconciler.notices import AppNotices
from reconciler.plan import Claims, PruneGuards, apply_order, owner_of, plan, scope_violations
from reconciler.render import refuse_duplicates, render

log = logging.getLogger(__name__)

STAMPED = frozenset({"revision", "sync", "health", "drift", "lastPrune"})  # facts whose time the status shows
OBSERVED_AT = "reconciler.imagebot.dev/observed-at"  # on the inventory head: the last turn of a loop
OBSERVED_BY = "reconciler.imagebot.dev/observed-by"
OBSERVE_INTERVAL = "reconciler.imagebot.dev/observe-interval"
# how the API server words a change it refuses as immutable (Flux's force recreates on these)
IMMUTABLE = ("field is immutable", "cannot change", "cannot be changed", "updates to statefulset spec for fields other than")
STATUS_LIST_MAX = 100  # entries of a list kept in the status (the rest counted): the status must stay small
DRIFT_ANNOTATION = "reconciler.imagebot.dev/drift"  # on a drift Event: its items as JSON (DriftItem.record)
DRIFT_EVENT_MAX = 20  # items one drift Event carries
PRUNED_REMEMBERED = 10_000  # pruned objects whose deletion the drift path keeps ignoring (the oldest forgotten first)


class KeyFence:
    """The fence between a sync's own deletions and the drift path, which would "correct" them back: a sync marks
    an object it deletes (a forced recreate, from its delete to its create; a prune) with ``replacing`` — which
    first waits for a correction of that object already under way — and the drift path handles an object's event
    only through ``correcting``, which refuses a marked object, and a deletion the sync's prune made. Shared by
    every engine of a controller: a drift worker may still hold an app's previous engine, whose desired state
    still names what the new one prunes."""

    def __init__(self, remember: int = PRUNED_REMEMBERED) -> None:
        self._cond = threading.Condition()
        self._marked: Tally[ResourceKey] = Tally()
        self._busy: Tally[ResourceKey] = Tally()  # corrections under way
        self._pruned: dict[ResourceKey, None] = {}  # insertion-ordered: the oldest go first past ``remember``
        self._remember = remember

    @contextmanager
    def replacing(self, key: ResourceKey) -> Iterator[None]:
        with self._cond:
            self._marked[key] += 1
            while self._busy[key]:  # a correction begun before the mark ends before the delete
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._marked[key] -= 1
                if self._marked[key] <= 0:
                    del self._marked[key]

    def pruned(self, key: ResourceKey) -> None:
        """The sync's prune deletes ``key``: its deletion is never drift (until a sync wants it again)."""
        with self._cond:
            self._pruned.pop(key, None)
            self._pruned[key] = None
            while len(self._pruned) > self._remember:
                del self._pruned[next(iter(self._pruned))]

    def wanted(self, keys: list[ResourceKey]) -> None:
        """A sync declares ``keys`` again: their deletion is drift again."""
        with self._cond:
            for k in keys:
                self._pruned.pop(k, None)

    @contextmanager
    def correcting(self, key: ResourceKey, deleted: bool) -> Iterator[bool]:
        """True (and held until the end) when the drift path may handle this event of ``key`` now."""
        with self._cond:
            ok = not self._marked[key] and not (deleted and key in self._pruned)
            if ok:
                self._busy[key] += 1
        try:
            yield ok
        finally:
            if ok:
                with self._cond:
                    self._busy[key] -= 1
                    if self._busy[key] <= 0:
                        del self._busy[key]
                    self._cond.notify_all()


@dataclass(frozen=True, slots=True)
class Settings:
    app: str
    default_namespace: str = "default"
    inventory_namespace: str = "default"
    allowed_namespaces: frozenset[str] | None = None  # None: any
    allow_cluster_scoped: bool = True
    guards: PruneGuards = field(default_factory=PruneGuards)
    rules: diffmod.Rules = field(default_factory=diffmod.Rules)
    workers: int = 8
    tracking_label: str = TRACKING_LABEL
    # a tenant boundary (the app's Project): why an object may not be applied, "" when it may
    admit: Callable[[Manifest], str] | None = field(default=None, compare=False)
    target_namespace: str = ""  # set: every namespaced object goes there (Flux's targetNamespace)
    # what the app's spec does to rendered objects before anything else (Flux's images, commonMetadata)
    transform: Callable[[list[Manifest]], list[Manifest]] | None = field(default=None, compare=False)
    allowed_cluster_kinds: frozenset[str] = frozenset()  # with allowed_namespaces: the cluster-scoped kinds still allowed
    # Flux's spec.force: an object whose change the API server refuses as immutable is deleted and created again
    force: bool = False


@dataclass(frozen=True, slots=True)
class SyncReport:
    app: str
    revision: str
    plan: Plan
    dry_run: bool
    pruned: tuple[ResourceKey, ...]
    health: Health
    seconds: float
    api_calls: int
    api_writes: int
    # each declared object's health as this sync left it (its apply's answer, else the live object it read)
    resources: tuple[tuple[ResourceKey, Health, str], ...] = ()

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in (*self.plan.applies, *self.plan.prunes):
            out[str(a.action)] = out.get(str(a.action), 0) + 1
        return out


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.applies = Counter("reconciler_applies_total", "Objects applied", ["kind"], registry=r)
        self.prunes = Counter("reconciler_prunes_total", "Objects pruned", ["kind"], registry=r)
        self.drift_detected = Counter("reconciler_drift_detected_total", "Drifted fields seen", ["kind", "field"], registry=r)
        self.drift_corrected = Counter(
            "reconciler_drift_corrected_total", "Drifted fields corrected", ["kind", "field"], registry=r
        )
        self.duration = Histogram("reconciler_reconcile_duration_seconds", "Duration of one sync", registry=r)
        self.correction = Histogram(
            "reconciler_drift_correction_seconds",
            "Watch event to correction",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )


def _crd_kinds(manifests: list[Manifest]) -> dict[tuple[str, str], tuple[str, bool]]:
    """(group, kind) each CRD in the source defines -> (the CRD's name, namespaced?)."""
    out = {}
    for m in manifests:
        if m.key.group == "apiextensions.k8s.io" and m.key.kind == "CustomResourceDefinition":
            spec = m.body.get("spec")
            spec = spec if isinstance(spec, dict) else {}
            names = spec.get("names")
            names = names if isinstance(names, dict) else {}
            out[(str(spec.get("group", "")), str(names.get("kind", "")))] = (m.key.name, spec.get("scope") == "Namespaced")
    return out


class Engine:
    def __init__(
        self, cluster: KubeCluster, settings: Settings, metrics: Metrics | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.cluster = cluster
        self.s = settings
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.desired: dict[ResourceKey, Manifest] = {}
        self.revision = ""
        self.drift: dict[tuple[ResourceKey, str], DriftItem] = {}
        self.corrections: list[float] = []
        self._lock = threading.Lock()
        self._inventory: Inventory | None = None
        # (apiVersion, kind, label selector, namespace) -> the matching live objects, None when not cached
        self.live_cache: Callable[[str, str, str, str | None], dict[ResourceKey, dict[str, Any]] | None] | None = None
        # told the rendered objects before the live state is read (a controller starts its shared informers for
        # their kinds, so the reads below come from its cache, not one list per kind and app)
        self.prepare: Callable[[list[Manifest]], None] | None = None
        # (apiVersion, kind, tracking label, keys) -> those of the keys that exist carrying the label (any app's), None
        # when not cached: who else claims an object, without listing everyone's objects
        self.lookup: Callable[[str, str, str, list[ResourceKey]], dict[ResourceKey, dict[str, Any]] | None] | None = None
        self._server_defaults: dict[ResourceKey, tuple[str, frozenset[str]]] = {}  # key -> (resourceVersion, pointers)
        self.notices = AppNotices()  # drift seen / corrected as notifications (the controller and `run` set the notifier)
        # writes a Kubernetes Event (namespace, involved object, reason, message[, type, annotations]): the cluster's,
        # or the controller's background EventRecorder so that no correction or sync waits for its Events
        self.record_event: Callable[..., None] = cluster.event
        self.subject = settings.app  # the app's name in notifications
        # what this engine's syncs delete (a forced recreate, a prune) the drift path leaves alone (a controller
        # shares one between its engines)
        self.fence = KeyFence()
        self._deadline: float | None = None

    @property
    def inventory(self) -> Inventory | None:
        """What the last sync recorded (declared objects and kept prune candidates), None before one."""
        return self._inventory

    @property
    def selector(self) -> str:
        return f"{self.s.tracking_label}={self.s.app}"

    # ------------------------------------------------------------------ render + validate
    def desired_state(self, source: Path) -> list[Manifest]:
        manifests = render(source, self.s.app, self.s.tracking_label)
        if self.s.transform is not None:
            manifests = self.s.transform(manifests)
        crds = _crd_kinds(manifests)
        out = []
        for m in manifests:
            crd = crds.get((m.key.group, m.kind))
            scoped = crd[1] if crd is not None else self.cluster.namespaced(m.api_version, m.kind)
            target = self.s.target_namespace or (self.s.default_namespace if not m.key.namespace else "")
            if scoped and target and target != m.key.namespace:
                body = {**m.body, "metadata": {**m.body["metadata"], "namespace": target}}
                m = replace(m, key=replace(m.key, namespace=target), body=body)
            elif not scoped and m.key.namespace:
                body = {**m.body, "metadata": {k: v for k, v in m.body["metadata"].items() if k != "namespace"}}
                m = replace(m, key=replace(m.key, namespace=""), body=body)
            out.append(m)
        refuse_duplicates(out)  # now that `cfg` and `default/cfg` are spelled alike
        self._validate_scope(out)
        return out

    def _validate_scope(self, manifests: list[Manifest]) -> None:
        bad = scope_violations(manifests, self.s.allowed_namespaces, self.s.allow_cluster_scoped, self.s.allowed_cluster_kinds)
        if self.s.admit is not None:
            bad += [why for m in manifests if (why := self.s.admit(m))]
        if bad:
            raise UsageError("the source touches what it may not; nothing applied: " + "; ".join(bad[:5]))

    # ------------------------------------------------------------------ live state
    def live_state(
        self, desired: list[Manifest], inventory: Inventory, fresh: bool = True
    ) -> dict[ResourceKey, dict[str, Any] | None]:
        """The live objects of the kinds the app declares or inventoried: from ``live_cache`` (a controller's
        informers) unless ``fresh`` is asked for, or the cache has not got that kind; else one list per kind."""
        kinds: dict[tuple[str, str], str] = {}
        for m in desired:
            kinds[(m.key.group, m.kind)] = m.api_version
        for k, api in inventory.entries.items():
            kinds.setdefault((k.group, k.kind), api)
        live: dict[ResourceKey, dict[str, Any] | None] = {}

        def one(item: tuple[str, str, str | None]) -> dict[ResourceKey, dict[str, Any]]:
            api, kind, namespace = item
            if not fresh and self.live_cache is not None:
                cached = self.live_cache(api, kind, self.selector, namespace)
                if cached is not None:
                    return cached
            try:
                return self.cluster.list_managed(api, kind, self.selector, namespace)
            except ClusterError as exc:
                if "does not serve" in str(exc):
                    return {}  # a CRD applied in this same sync
                raise

        lists = [(api, kind, ns) for (_, kind), api in kinds.items() for ns in self._scopes(api, kind)]
        with ThreadPoolExecutor(max_workers=self.s.workers) as pool:
            for found in pool.map(one, lists):
                live.update(found)
        return live

    def _scopes(self, api_version: str, kind: str) -> list[str | None]:
        """Where to list and watch a kind: everywhere (one call), or — with --allowed-namespaces, the
        namespaced Roles the deploy grants — in each allowed namespace, never cluster-wide."""
        if self.s.allowed_namespaces is None:
            return [None]
        try:
            namespaced = self.cluster.namespaced(api_version, kind)
        except ClusterError:
            return [None]  # not served (yet): the list reports it
        scopes: list[str | None] = [None]
        if namespaced:
            scopes = [*sorted(self.s.allowed_namespaces)]
        return scopes

    # ------------------------------------------------------------------ sync
    def sync(
        self, source: Path, revision: str = "", *, prune: bool = True, dry_run: bool = False, deadline: float | None = None
    ) -> SyncReport:
        """One reconcile. ``deadline`` (time.monotonic()) is checked between the apply stages and before pruning:
        past it the sync stops there with DeadlineExceeded (Flux's spec.timeout)."""
        t0 = time.perf_counter()
        self._deadline = deadline
        calls0, writes0 = self.cluster.calls, self.cluster.writes
        try:
            desired = self.desired_state(source)
        except RenderError:
            self._set_status({"sync": "RenderFailed"}, dry_run)
            raise
        inventory = load(self.cluster, self.s.app, self.s.inventory_namespace)
        if self.prepare is not None:
            self.prepare(desired)
        live = self.live_state(desired, inventory, fresh=False)
        wanted = {m.key for m in desired}
        live.update(self._owned_elsewhere([m for m in desired if m.key not in live]))
        for k, api in inventory.entries.items():  # prune candidates no longer labelled ours: look them up by name
            if k not in wanted and k not in live:
                live[k] = self.cluster.get(api, k)
        guards = replace(self.s.guards, enabled=prune and self.s.guards.enabled)
        p = plan(
            desired,
            live,
            inventory.entries.keys(),
            self.s.app,
            self.s.tracking_label,
            guards,
            rules=self.s.rules,
            field_manager=self.cluster.field_manager,
            claims=self._claims(wanted, live, inventory),
            defaults={m.key: self._defaults(m, live.get(m.key)) for m in desired},
        )
        pruned: list[ResourceKey] = []
        if not dry_run:
            for a in p.conflicts:
                log.error("ownership conflict on %s: %s", a.key, a.reason)
            inventory = self._record_intent(desired, inventory)
            # the watch compares what it sees with self.desired: publish this revision before writing it, or the
            # watch would "correct" our own apply back to the previous revision (and roll out three times)
            self._publish(desired, revision)
            after = dict(live)  # the live state this sync leaves: what each write answered replaces what was read
            after.update(self._remove_added(p, live))
            after.update(self._apply(p))
            if p.refused:
                self._save_inventory(desired, inventory, p, revision)
                raise PruneRefused(f"prune refused: {p.refused}; nothing deleted")
            self._check_deadline("pruning")
            for a in p.prunes:
                if a.action is Action.PRUNE:
                    with self.fence.replacing(a.key):
                        self.fence.pruned(a.key)
                        self.cluster.delete(inventory.entries[a.key], a.key)
                    self.metrics.prunes.labels(a.key.kind).inc()
                    pruned.append(a.key)
            self._save_inventory(desired, inventory, p, revision)
            self._events(p, pruned, revision)
        else:
            p = self._dry_run(p, desired)
        # health as the sync left the objects: what a write answered is the object after our write (no list needed
        # to see our own writes); an object not written is as it was read
        resources: tuple[tuple[ResourceKey, Health, str], ...] = ()
        health = Health.PROGRESSING
        if not dry_run:
            resources = tuple((m.key, *object_health(m.kind, after.get(m.key))) for m in desired)
            health = rollup(h for _, h, _ in resources)
        took = time.perf_counter() - t0
        self.metrics.duration.observe(took)
        return SyncReport(
            self.s.app,
            revision,
            p,
            dry_run,
            tuple(pruned),
            health,
            took,
            self.cluster.calls - calls0,
            self.cluster.writes - writes0,
            resources,
        )

    def _dry_run(self, p: Plan, desired: list[Manifest]) -> Plan:
        """Server-side dry-run of every write. A custom resource whose CRD is in this same source cannot be
        dry-run before that CRD exists (the server does not serve its kind yet): the plan says so instead."""
        crds = _crd_kinds(desired)
        applies = []
        for a in p.applies:
            if a.action in (Action.CREATE, Action.UPDATE, Action.REMOVE_FIELDS):
                assert a.manifest is not None
                crd = crds.get((a.key.group, a.key.kind))
                try:
                    self.cluster.apply(a.manifest, dry_run=True)
                except ClusterError as exc:
                    if crd is None or "does not serve" not in str(exc):
                        raise
                    later = f"not dry-run: its kind will exist once CustomResourceDefinition {crd[0]} is applied"
                    a = replace(a, reason=f"{a.reason}; {later}" if a.reason else later)
            applies.append(a)
        return replace(p, applies=tuple(applies))

    def _publish(self, desired: list[Manifest], revision: str) -> None:
        self.fence.wanted([m.key for m in desired])
        with self._lock:
            self.desired = {m.key: m for m in desired}
            self.revision = revision

    def _owned_elsewhere(self, missing: list[Manifest]) -> dict[ResourceKey, dict[str, Any]]:
        """Declared objects our list did not find that another app's label claims: looked up in ``lookup`` (a
        controller's informers hold every labelled object), else one list per kind, only when something is missing
        (so a no-op sync asks nothing more)."""
        label = self.s.tracking_label
        selector = f"{label},{label}!={self.s.app}"
        wanted = {m.key for m in missing}
        kinds = {(m.key.group, m.kind): m.api_version for m in missing}
        out: dict[ResourceKey, dict[str, Any]] = {}
        for (_, kind), api in sorted(kinds.items()):
            if self.lookup is not None:
                found = self.lookup(api, kind, label, [k for k in wanted if k.kind == kind and k.group == group_of(api)])
                if found is not None:
                    out.update((k, v) for k, v in found.items() if owner_of(v, label) not in ("", self.s.app))
                    continue
            for ns in self._scopes(api, kind):
                try:
                    found = self.cluster.list_managed(api, kind, selector, ns)
                except ClusterError as exc:
                    if "does not serve" in str(exc):
                        continue  # a CRD applied in this same sync: nobody owns its objects yet
                    raise
                out.update((k, v) for k, v in found.items() if k in wanted)
        return out

    def _claims(self, wanted: set[ResourceKey], live: dict[ResourceKey, dict[str, Any] | None], inventory: Inventory) -> Claims:
        """What the other apps (their inventories beside ours) declare — read only when it matters: a declared
        object another app owns, or a prune candidate that is still ours."""
        app, label = self.s.app, self.s.tracking_label
        foreign = any(owner_of(live.get(k), label) not in ("", app) for k in wanted if live.get(k) is not None)
        ours_leaving = any(
            live.get(k) is not None and owner_of(live.get(k), label) in ("", app) for k in inventory.entries if k not in wanted
        )
        if not foreign and not ours_leaving:
            return Claims()
        others = load_others(self.cluster, app, self.s.inventory_namespace)
        declared: dict[ResourceKey, list[str]] = {}
        for name, inv in sorted(others.items()):
            for k in inv.declared:
                declared.setdefault(k, []).append(name)
        return Claims({k: tuple(v) for k, v in declared.items()}, frozenset(others))

    def _record_intent(self, desired: list[Manifest], inventory: Inventory) -> Inventory:
        """Before applying, the inventory lists everything this sync may create (old ∪ new): a sync that
        dies half-way leaves nothing it created outside the inventory, so a later sync can prune it."""
        entries = {**inventory.entries, **{m.key: m.api_version for m in desired}}
        if entries == inventory.entries:
            return inventory
        pending = frozenset(entries) - {m.key for m in desired}
        intent = replace(inventory, entries=entries, pending=pending)
        save(self.cluster, self.s.app, self.s.inventory_namespace, intent, inventory)
        return intent

    def _drift_of(self, m: Manifest, live: dict[str, Any] | None) -> list[DriftItem]:
        """One object's drift, by the one rule diff, compare and the watch share (server defaults included)."""
        return diffmod.drift(m, live, self.cluster.field_manager, self.s.rules, self._defaults(m, live))

    def _defaults(self, m: Manifest, live: dict[str, Any] | None) -> frozenset[str]:
        """Fields kubectl added that the server would set anyway (diff.server_defaults), asked by a dry-run
        removal: only for objects with such fields (adopted from `kubectl create`/`apply`), once per resourceVersion."""
        if live is None:
            return frozenset()
        paths = diffmod.added_fields(m, live, self.cluster.field_manager, self.s.rules, any_policy=True)
        if not paths:
            return frozenset()
        rv = (live.get("metadata") or {}).get("resourceVersion", "")
        known = self._server_defaults.get(m.key)
        if known is not None and known[0] == rv:
            return known[1]
        try:
            after = self.cluster.remove_fields(m.api_version, m.key, list(paths), rv, dry_run=True)
        except ClusterError as exc:
            log.info("could not ask the server which fields of %s it defaults: %s", m.key, exc)
            return frozenset()
        found = diffmod.server_defaults(m, live, after, self.cluster.field_manager, self.s.rules)
        self._server_defaults[m.key] = (rv, found)
        return found

    def _remove_added(self, p: Plan, live: dict[ResourceKey, dict[str, Any] | None]) -> dict[ResourceKey, dict[str, Any]]:
        """Fields kubectl added that Git does not declare go before the apply (sync undoes them as the watch does).
        Returns the objects as the server answered."""
        out = {}
        for a in p.applies:
            if a.remove and a.manifest is not None:
                rv = ((live.get(a.key) or {}).get("metadata") or {}).get("resourceVersion", "")
                out[a.key] = self.cluster.remove_fields(a.manifest.api_version, a.key, list(a.remove), rv)
                for pointer in a.remove:
                    self.metrics.drift_corrected.labels(a.key.kind, pointer).inc()
                log.info("removed from %s what was added out of band: %s", a.key, ", ".join(a.remove))
        return out

    def _apply(self, p: Plan) -> dict[ResourceKey, dict[str, Any]]:
        """Apply the creates and updates, stage by stage (namespaces and CRDs first); the objects as the server
        answered."""
        writes = [a for a in p.applies if a.action in (Action.CREATE, Action.UPDATE)]
        stages: dict[int, list[Manifest]] = {}
        out: dict[ResourceKey, dict[str, Any]] = {}
        for a in writes:
            assert a.manifest is not None
            stages.setdefault(apply_order(a.key)[0], []).append(a.manifest)
        with ThreadPoolExecutor(max_workers=self.s.workers) as pool:
            for rank in sorted(stages):
                self._check_deadline("applying")
                batch = stages[rank]
                out.update(zip((m.key for m in batch), pool.map(self._apply_one, batch), strict=True))
                for m in batch:
                    self.metrics.applies.labels(m.kind).inc()
                if rank == 0:  # CRDs: wait until Established before their custom resources
                    for m in batch:
                        self.cluster.wait_established(m.key.name)
        return out

    def _check_deadline(self, doing: str) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise DeadlineExceeded(f"timeout: the deadline passed before {doing} finished")

    def _apply_one(self, m: Manifest) -> dict[str, Any]:
        """Apply; with ``force``, an object whose change is refused as immutable is deleted and created again."""
        try:
            return self.cluster.apply(m)
        except ClusterError as exc:
            text = str(exc).lower()
            if not (self.s.force and "http 422" in text and any(k in text for k in IMMUTABLE)):
                raise
            log.warning("%s: immutable field changed; force: deleting and creating it again", m.key)
        # the drift path must not "correct" the deletion (recreating the object before this create, or the old one)
        with self.fence.replacing(m.key):
            self.cluster.delete(m.api_version, m.key)
            end = time.monotonic() + 60.0  # finalizers may hold it a moment
            while self.cluster.get(m.api_version, m.key) is not None:
                if time.monotonic() > end:
                    raise ClusterError(f"force: {m.key} was deleted to be recreated but is still there after 60s (finalizers?)")
                time.sleep(0.1)
            return self.cluster.apply(m)

    def _events(self, p: Plan, pruned: list[ResourceKey], revision: str) -> None:
        writes = p.writes
        if not writes and not pruned:
            return
        ns = self.s.inventory_namespace
        involved = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": ns, "name": f"reconciler-{self.s.app}"}
        cleaned = [a for a in writes if a.remove]
        msg = f"applied {len(writes)} object(s) at {revision[:12] or 'local'}"
        if cleaned:
            msg += f"; removed fields added out of band from {', '.join(str(a.key) for a in cleaned[:10])}"
        if pruned:
            msg += f"; pruned {', '.join(str(k) for k in pruned[:10])}"
        self.record_event(ns, involved, "Synced", msg)

    def _save_inventory(self, desired: list[Manifest], previous: Inventory, p: Plan, revision: str) -> None:
        """Declared objects, plus prune candidates kept (protected, opted out, pruning off or refused) until
        they are pruned or declared again; pruned, gone and released ones leave."""
        entries = {m.key: m.api_version for m in desired}
        kept = frozenset(a.key for a in p.prunes if a.action is Action.SKIP_PRUNE and a.key in previous.entries)
        for k in kept:
            entries[k] = previous.entries[k]
        prunes = [{"object": str(a.key), "action": str(a.action), "reason": a.reason} for a in p.prunes]
        status = {k: v for k, v in previous.status.items() if k != "conflicts"}
        update: dict[str, Any] = {
            "revision": revision,
            "sync": "PruneRefused" if p.refused else "Conflict" if p.conflicts else "Synced",
            "objects": len(desired),
        }
        if prunes:  # a sync with nothing to prune keeps the record of the last prune (and its time)
            status.pop("lastPruneMore", None)
            update["lastPrune"] = prunes[:STATUS_LIST_MAX]
            if len(prunes) > STATUS_LIST_MAX:
                update["lastPruneMore"] = len(prunes) - STATUS_LIST_MAX
        status = self._stamped(status, update)
        if p.conflicts:
            status["conflicts"] = [f"{a.key}: {a.reason}" for a in p.conflicts[:STATUS_LIST_MAX]]
        inv = Inventory(entries, status, kept, previous.shards)
        save(self.cluster, self.s.app, self.s.inventory_namespace, inv, previous)
        self._inventory = inv

    def _set_status(self, update: dict[str, Any], dry_run: bool) -> None:
        if dry_run:
            return
        prev = load(self.cluster, self.s.app, self.s.inventory_namespace)
        status = self._stamped(prev.status, update)
        save(self.cluster, self.s.app, self.s.inventory_namespace, replace(prev, status=status), prev)

    def _stamped(self, status: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        """``status`` with ``update`` applied; each fact whose value changed gets ``<fact>At``, the time it was
        first observed so (a fact that did not change keeps its time: an unchanged sync writes nothing)."""
        out = dict(status)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock()))
        for k, v in update.items():
            if out.get(k) != v:
                out[k] = v
                if k in STAMPED:
                    out[f"{k}At"] = now
        return out

    def heartbeat(self, observer: str, interval: float) -> None:
        """Say that a loop observes this app: one small patch of the inventory head's annotations per turn, so
        ``status`` can tell a live app from a stale record. Nothing when the app was never synced."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock()))
        ann = {OBSERVED_AT: now, OBSERVED_BY: observer, OBSERVE_INTERVAL: str(int(max(interval, 1)))}
        path = f"/api/v1/namespaces/{self.s.inventory_namespace}/configmaps/{configmap_name(self.s.app)}"
        try:
            body = {"metadata": {"annotations": ann}}
            self.cluster._call("PATCH", path, body=body, content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status != 404:
                log.warning("heartbeat of %s not written: HTTP %s", self.s.app, exc.status)

    def save_status(self) -> Health | None:
        """Record health and the current drift (who/when) in the app's status, when they changed; the health."""
        with self._lock:
            drift = sorted(
                f"{i.key}: {i.describe(redact=(i.key.group, i.key.kind) in diffmod.REDACT_KINDS)} [{i.policy}]"
                for i in self.drift.values()
            )
            desired = list(self.desired.values())
        if not desired:
            return None
        health = self._health(desired)
        self._set_status({"health": str(health), "drift": drift}, dry_run=False)
        return health

    def _health(self, desired: list[Manifest], fresh: bool = True) -> Health:
        live = self.live_state(desired, Inventory({}, {}), fresh)
        return rollup(object_health(m.kind, live.get(m.key))[0] for m in desired)

    def health_report(self, fresh: bool = True) -> list[tuple[ResourceKey, Health, str]]:
        desired = list(self.desired.values())
        live = self.live_state(desired, Inventory({}, {}), fresh)
        return [(m.key, *object_health(m.kind, live.get(m.key))) for m in desired]

    # ------------------------------------------------------------------ diff
    def compare(self, source: Path, revision: str = "") -> tuple[list[DriftItem], Health]:
        """Render and compare, writing nothing (an app that may not sync now). The desired state is published,
        so the watch reports drift against what Git holds now."""
        desired = self.desired_state(source)
        if self.prepare is not None:
            self.prepare(desired)
        live = self.live_state(desired, Inventory({}, {}), fresh=False)
        items = [i for m in desired for i in self._drift_of(m, live.get(m.key))]
        with self._lock:
            self.desired = {m.key: m for m in desired}
            self.revision = revision
        return items, rollup(object_health(m.kind, live.get(m.key))[0] for m in desired)

    def diff(self, source: Path) -> tuple[list[DriftItem], str]:
        desired = self.desired_state(source)
        live = self.live_state(desired, Inventory({}, {}))
        items: list[DriftItem] = []
        text = []
        for m in sorted(desired, key=lambda m: apply_order(m.key)):
            obj = live.get(m.key)
            found = self._drift_of(m, obj)
            if found:
                items.extend(found)
                text.append(diffmod.unified(m, obj, [i.pointer for i in found if i.kind is DriftKind.ADDED]))
        return items, "".join(text)

    # ------------------------------------------------------------------ drift handling
    def on_event(self, etype: str, obj: dict[str, Any], received: float, correct: bool) -> list[DriftItem]:
        meta = obj.get("metadata") or {}
        api = obj.get("apiVersion", "")
        key = ResourceKey(
            api.split("/")[0] if "/" in api else "", obj.get("kind", ""), meta.get("namespace") or "", meta.get("name", "")
        )
        with self.fence.correcting(key, etype == "DELETED") as ok:
            if not ok:  # a sync of ours is deleting/recreating it, or pruned it: nothing drifted
                log.debug("%s %s: the sync's own replacement or prune, not drift", etype, key)
                return []
            return self._on_event(key, etype, obj, received, correct)

    def _on_event(self, key: ResourceKey, etype: str, obj: dict[str, Any], received: float, correct: bool) -> list[DriftItem]:
        meta = obj.get("metadata") or {}
        api = obj.get("apiVersion", "")
        with self._lock:
            manifest = self.desired.get(key)
        if manifest is None:
            return []
        live = None if etype == "DELETED" else obj
        # a deletion is judged before anything is said: a stale one, or another app's object now, is no drift of ours
        if live is None and self._not_our_deletion(key, str(meta.get("uid") or ""), self.cluster.get(manifest.api_version, key)):
            with self._lock:
                for k in [k for k in self.drift if k[0] == key]:
                    del self.drift[k]
            return []
        items = self._drift_of(manifest, live)
        # a value our own field manager wrote is a sync in flight (or one that raced this event), never drift: correcting
        # it would undo a change of revision; the sync that wrote it is the one to finish or retry it
        items = [i for i in items if not (i.kind is DriftKind.CHANGED and i.manager == self.cluster.field_manager)]
        with self._lock:
            before = {k[1]: self.drift.pop(k) for k in [k for k in self.drift if k[0] == key]}
            items = [_dated(i, before.get(i.pointer)) for i in items]
            for i in items:
                self.drift[(key, i.pointer)] = i
        if not items:
            return []
        # status updates re-deliver the object often: a drift already reported (same value, same who/when) is not news
        news = [i for i in items if before.get(i.pointer) != i]
        redact = (key.group, key.kind) in diffmod.REDACT_KINDS
        for i in news:
            self.metrics.drift_detected.labels(key.kind, i.pointer).inc()
            log.warning("drift on %s: %s", key, i.describe(redact=redact))
        if news:
            self.notices.drift(self.subject, key, api, str(meta.get("uid") or ""), news, redact)
        if correct:
            self.correct(manifest, items, received, live)
        reported = [i for i in news if not correct or i.policy is not FieldPolicy.CORRECT]
        if reported:
            self._drift_event("DriftDetected", reported)
        return items

    def _drift_event(self, reason: str, items: list[DriftItem]) -> None:
        """An Event on the app's inventory ConfigMap saying what drifted, who changed it and when (the dashboard's
        drift history and timeline read it); Secret values never appear in it."""

        def secret(i: DriftItem) -> bool:
            return (i.key.group, i.key.kind) in diffmod.REDACT_KINDS

        ns = self.s.inventory_namespace
        involved = {"apiVersion": "v1", "kind": "ConfigMap", "namespace": ns, "name": configmap_name(self.s.app)}
        shown = items[:DRIFT_EVENT_MAX]
        message = "; ".join(f"{i.key}: {i.describe(redact=secret(i))} [{i.policy}]" for i in shown)
        records = json.dumps([i.record(redact=secret(i)) for i in shown], sort_keys=True)
        self.record_event(ns, involved, reason, message, annotations={DRIFT_ANNOTATION: records})

    def _not_our_deletion(self, key: ResourceKey, gone_uid: str, now: dict[str, Any] | None) -> bool:
        """A DELETED event that is no drift: the object was created again since, ours (a forced recreate: a late
        event of its previous incarnation, whose uid differs; its own events say the rest), or it is now claimed
        by another app (the next sync reports the conflict)."""
        owner = owner_of(now, self.s.tracking_label)
        uid = ((now or {}).get("metadata") or {}).get("uid")
        if owner == self.s.app and gone_uid and uid and uid != gone_uid:
            return True
        if owner not in ("", self.s.app):
            log.error("%s is now claimed by app %r: not re-applied (the next sync reports the conflict)", key, owner)
            return True
        return False

    def correct(self, manifest: Manifest, items: list[DriftItem], received: float, live: dict[str, Any] | None) -> None:
        """Undo ``items``; ``live`` None: the object was deleted (and is not back: see :meth:`_not_our_deletion`)."""
        todo = [i for i in items if i.policy is FieldPolicy.CORRECT]
        if not todo:
            return
        if live is not None and any(i.kind is DriftKind.ADDED for i in todo):
            added = diffmod.added_fields(manifest, live, self.cluster.field_manager, self.s.rules, self._defaults(manifest, live))
            if added:
                rv = (live.get("metadata") or {}).get("resourceVersion", "")
                self.cluster.remove_fields(manifest.api_version, manifest.key, list(added), rv)
        if any(i.kind in (DriftKind.CHANGED, DriftKind.MISSING) for i in todo):
            # the fields other managers hold under ignore/report stay theirs: apply the rest
            self.cluster.apply(diffmod.applicable(manifest, live, self.cluster.field_manager, self.s.rules)[0])
        took = time.monotonic() - received
        self.corrections.append(took)
        self.metrics.correction.observe(took)
        for i in todo:
            self.metrics.drift_corrected.labels(manifest.kind, i.pointer).inc()
        with self._lock:
            for i in todo:
                self.drift.pop((manifest.key, i.pointer), None)
        log.info("corrected %s in %.0f ms: %s", manifest.key, took * 1000, ", ".join(i.pointer or "(object)" for i in todo))
        self.notices.corrected(self.subject, manifest.key, manifest.api_version, todo, took * 1000)
        self._drift_event("DriftCorrected", todo)  # after the correction: its latency is not the Event's

    def watch(self, stop: threading.Event, correct: bool) -> list[threading.Thread]:
        """One thread per managed kind, handling events until ``stop`` is set."""
        kinds = {(m.api_version, m.kind) for m in self.desired.values()}
        threads = []
        for api, kind in sorted(kinds):
            for ns in self._scopes(api, kind):
                t = threading.Thread(
                    target=self._watch_kind, args=(api, kind, stop, correct, ns), name=f"watch-{kind}-{ns or 'all'}", daemon=True
                )
                t.start()
                threads.append(t)
        return threads

    def _watch_kind(self, api: str, kind: str, stop: threading.Event, correct: bool, namespace: str | None = None) -> None:
        for etype, obj in self.cluster.watch(api, kind, self.selector, None, stop, namespace=namespace):
            try:
                self.on_event(etype, obj, time.monotonic(), correct)
            except ClusterError as exc:
                log.error("could not correct drift: %s", exc)


def _dated(item: DriftItem, seen: DriftItem | None) -> DriftItem:
    """The drift with a time: the API server records none for an update through a subresource (``kubectl scale``
    writes /scale), so such drift is dated when first seen, and keeps that date when re-delivered (else each
    status update of the object would be news)."""
    if item.time:
        return item
    if seen is not None and replace(seen, time="") == item:
        return seen
    return replace(item, time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
