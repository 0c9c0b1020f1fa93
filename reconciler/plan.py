"""Pair desired with live, order the applies, decide ownership, and decide prunes behind safety rails (pure).

Nil desired = prune candidate; nil live = create. Order: CRDs, Namespaces, other
cluster-scoped objects, then namespaced ones.

Ownership: an object belongs to the app its tracking label names; the first claim wins. A declared
object another app owns is a conflict, left alone, unless that app no longer declares it (its
inventory says so: adopted) or the manifest is annotated ``take-over: "true"`` and the owner did not
take it over itself (taken over). So two apps declaring one object never take it from each other in turn.

Prune refuses as a whole when the render produced nothing (unless allowed) or would delete more
than the threshold of the inventory (unless forced). A candidate another app now owns or still
declares is released (left to it, dropped from the inventory); one protected (Namespace, PVC, CRD
unless allowed) or opted out by annotation is skipped and stays in the inventory, so allowing it
later prunes it. Each decision is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.diff import Held, Rules, added_fields, applicable, in_sync
from reconciler.model import (
    PROTECTED_KINDS,
    PRUNE_ANNOTATION,
    TAKE_OVER_ANNOTATION,
    Action,
    Manifest,
    Plan,
    PlannedAction,
    ResourceKey,
)


@dataclass(frozen=True, slots=True)
class PruneGuards:
    enabled: bool = True
    allow_empty: bool = False
    force: bool = False
    max_fraction: float = 0.5
    allowed_kinds: frozenset[str] = frozenset()  # e.g. {"Namespace"} to allow pruning namespaces


@dataclass(frozen=True, slots=True)
class Claims:
    """What the other apps' inventories (those we could read) declare."""

    declared: Mapping[ResourceKey, tuple[str, ...]] = field(default_factory=dict)  # key → apps declaring it
    known: frozenset[str] = frozenset()  # apps whose inventory was read

    def others(self, key: ResourceKey, app: str) -> tuple[str, ...]:
        return tuple(a for a in self.declared.get(key, ()) if a != app)

    def stale(self, key: ResourceKey, owner: str) -> bool:
        """The owner's inventory was read and no longer declares the object: its claim lapsed."""
        return owner in self.known and owner not in self.declared.get(key, ())


def owner_of(obj: Mapping[str, Any] | None, tracking_label: str) -> str:
    return str((((obj or {}).get("metadata") or {}).get("labels") or {}).get(tracking_label) or "")


def _ownership(m: Manifest, obj: Mapping[str, Any], app: str, tracking_label: str, claims: Claims) -> PlannedAction | None:
    """None when ``app`` may apply ``m`` over ``obj``; else why it is adopted, taken over, or a conflict."""
    owner = owner_of(obj, tracking_label)
    if owner in ("", app):
        return None
    if claims.stale(m.key, owner):
        return PlannedAction(Action.UPDATE, m.key, f"adopted from app {owner!r}, which no longer declares it", m)
    wants = ((m.body.get("metadata") or {}).get("annotations") or {}).get(TAKE_OVER_ANNOTATION) == "true"
    took = ((obj.get("metadata") or {}).get("annotations") or {}).get(TAKE_OVER_ANNOTATION) == "true"
    if wants and not took:
        return PlannedAction(Action.UPDATE, m.key, f"taken over from app {owner!r} ({TAKE_OVER_ANNOTATION})", m)
    why = (
        f"app {owner!r} took it over ({TAKE_OVER_ANNOTATION}); remove it from one of the two apps"
        if took
        else f'app {owner!r} owns it (first claim); annotate {TAKE_OVER_ANNOTATION}: "true" to take it over'
    )
    return PlannedAction(Action.CONFLICT, m.key, f"declared by apps {app!r} and {owner!r}: {why}; not applied")


def scope_violations(
    manifests: Iterable[Manifest],
    allowed_namespaces: frozenset[str] | None,
    allow_cluster_scoped: bool = True,
    cluster_kinds: frozenset[str] = frozenset(),
) -> list[str]:
    """What the source may not touch; an empty list means all of it may be applied.

    With ``allowed_namespaces`` set the source is confined to those namespaces, so a cluster-scoped
    object — a ClusterRoleBinding to cluster-admin, a Namespace, a CRD — would be a way out: each is
    refused unless its kind is allowed (``Kind`` or ``Kind.group``, --allow-cluster-kind), and a
    Namespace must also be one of the allowed namespaces.
    """
    bad = []
    for m in manifests:
        k = m.key
        if k.namespace:
            if allowed_namespaces is not None and k.namespace not in allowed_namespaces:
                bad.append(f"{k} is outside --allowed-namespaces")
        elif not allow_cluster_scoped:
            bad.append(f"{k} is cluster-scoped (allow with --allow-cluster-scoped)")
        elif allowed_namespaces is not None:
            if k.kind not in cluster_kinds and f"{k.kind}.{k.group}" not in cluster_kinds:
                bad.append(f"{k} is cluster-scoped and --allowed-namespaces is set (allow with --allow-cluster-kind {k.kind})")
            elif (k.group, k.kind) == ("", "Namespace") and k.name not in allowed_namespaces:
                bad.append(f"{k} is outside --allowed-namespaces")
    return bad


ARGO_SYNC_OPTIONS = "argocd.argoproj.io/sync-options"  # Argo CD's per-object opt-outs, e.g. Prune=false


def _sync_options(meta: dict[str, Any]) -> set[str]:
    return {o.strip() for o in str((meta.get("annotations") or {}).get(ARGO_SYNC_OPTIONS, "")).split(",")}


def apply_order(key: ResourceKey) -> tuple[int, str, str, str]:
    if key.group == "apiextensions.k8s.io" and key.kind == "CustomResourceDefinition":
        rank = 0
    elif key.group == "" and key.kind == "Namespace":
        rank = 1
    elif not key.namespace:
        rank = 2
    else:
        rank = 3
    return rank, key.kind, key.namespace, key.name


def plan(
    desired: Iterable[Manifest],
    live: Mapping[ResourceKey, dict[str, Any] | None],
    inventory: Iterable[ResourceKey],
    app: str,
    tracking_label: str,
    guards: PruneGuards = PruneGuards(),
    *,
    rules: Rules | None = None,
    field_manager: str = "reconciler",
    claims: Claims | None = None,
    defaults: Mapping[ResourceKey, frozenset[str]] | None = None,
) -> Plan:
    """``rules`` given: fields kubectl added that Git does not declare are planned for removal too, except
    those ``defaults`` names per object (the server's defaults, see :func:`reconciler.diff.server_defaults`).
    ``live`` may hold objects other apps own (found by name): ownership decides what happens to them."""
    claims = claims or Claims()
    desired = sorted(desired, key=lambda m: apply_order(m.key))
    applies = []
    for m in desired:
        obj = live.get(m.key)
        if obj is None:
            applies.append(PlannedAction(Action.CREATE, m.key, "not in the cluster", m))
            continue
        owned = _ownership(m, obj, app, tracking_label, claims)
        if owned is not None:
            applies.append(owned)
            continue
        remove: tuple[str, ...] = ()
        held: tuple[Held, ...] = ()
        apply = m
        if rules is not None:
            remove = added_fields(m, obj, field_manager, rules, (defaults or {}).get(m.key, frozenset()))
            apply, held = applicable(m, obj, field_manager, rules)
        added = f"added out of band: {', '.join(remove)}" if remove else ""
        kept = "; ".join(f"{h.pointer} left to {h.manager} ({h.policy})" for h in held)
        if not in_sync(apply, obj):
            why = "; ".join(filter(None, ["declared fields differ", added, kept]))
            applies.append(PlannedAction(Action.UPDATE, m.key, why, apply, remove))
        elif remove:
            applies.append(PlannedAction(Action.REMOVE_FIELDS, m.key, "; ".join(filter(None, [added, kept])), apply, remove))
        else:
            applies.append(PlannedAction(Action.UNCHANGED, m.key, kept or "declared fields match", apply))
    wanted = {m.key for m in desired}
    candidates = set(inventory) - wanted
    inv_size = len(set(inventory))
    decided: list[PlannedAction] = []
    deletable: list[ResourceKey] = []
    for k in reversed(sorted(candidates, key=apply_order)):  # namespaced first, CRDs last
        obj = live.get(k)
        if obj is None:
            continue  # already gone: forgotten
        meta = obj.get("metadata") or {}
        owner = owner_of(obj, tracking_label)
        declared_by = claims.others(k, app)
        if owner not in ("", app):
            decided.append(PlannedAction(Action.RELEASE, k, f"now claimed by app {owner!r}"))
        elif declared_by:
            decided.append(PlannedAction(Action.RELEASE, k, f"still declared by app {declared_by[0]!r}: left to it"))
        elif (k.group, k.kind) in PROTECTED_KINDS and k.kind not in guards.allowed_kinds:
            decided.append(PlannedAction(Action.SKIP_PRUNE, k, f"{k.kind} is protected (allow with --allow-prune-kind {k.kind})"))
        elif (meta.get("annotations") or {}).get(PRUNE_ANNOTATION) == "disabled":
            decided.append(PlannedAction(Action.SKIP_PRUNE, k, f"annotated {PRUNE_ANNOTATION}=disabled"))
        elif "Prune=false" in _sync_options(meta):
            decided.append(PlannedAction(Action.SKIP_PRUNE, k, f"annotated {ARGO_SYNC_OPTIONS}: Prune=false (Argo CD)"))
        else:
            decided.append(PlannedAction(Action.PRUNE, k, "no longer in Git"))
            deletable.append(k)
    refused = ""
    if guards.enabled and deletable:
        if not wanted:
            if not guards.allow_empty:
                refused = f"the render produced no objects: refusing to prune all {inv_size} (use --allow-empty if intended)"
        elif inv_size and len(deletable) / inv_size > guards.max_fraction and not guards.force:
            refused = (
                f"pruning {len(deletable)} of {inv_size} objects exceeds {guards.max_fraction:.0%} of the inventory "
                "(use --force-prune if intended)"
            )
    prunes = []
    for a in decided:
        if a.action is Action.PRUNE and not guards.enabled:
            a = PlannedAction(Action.SKIP_PRUNE, a.key, "pruning is off (--prune not given)")
        elif a.action is Action.PRUNE and refused:
            a = PlannedAction(Action.SKIP_PRUNE, a.key, "prune refused")
        prunes.append(a)
    return Plan(tuple(applies), tuple(prunes), refused)
