"""Pair desired with live, order the applies, and decide prunes behind safety rails (pure).

Nil desired = prune candidate; nil live = create. Order: CRDs, Namespaces, other
cluster-scoped objects, then namespaced ones. Prune refuses as a whole when the render
produced nothing (unless allowed) or would delete more than the threshold of the inventory
(unless forced); single objects are skipped when protected (Namespace, PVC, CRD unless
allowed), opted out by annotation, or now claimed by another app — each skip reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.diff import Held, Rules, added_fields, applicable, in_sync
from reconciler.model import PROTECTED_KINDS, PRUNE_ANNOTATION, Action, Manifest, Plan, PlannedAction, ResourceKey


@dataclass(frozen=True, slots=True)
class PruneGuards:
    enabled: bool = True
    allow_empty: bool = False
    force: bool = False
    max_fraction: float = 0.5
    allowed_kinds: frozenset[str] = frozenset()  # e.g. {"Namespace"} to allow pruning namespaces


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
) -> Plan:
    """``rules`` given: fields kubectl added that Git does not declare are planned for removal too."""
    desired = sorted(desired, key=lambda m: apply_order(m.key))
    applies = []
    for m in desired:
        obj = live.get(m.key)
        if obj is None:
            applies.append(PlannedAction(Action.CREATE, m.key, "not in the cluster", m))
            continue
        remove: tuple[str, ...] = ()
        held: tuple[Held, ...] = ()
        apply = m
        if rules is not None:
            remove = added_fields(m, obj, field_manager, rules)
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
    candidates = sorted(k for k in set(inventory) - wanted)
    inv_size = len(set(inventory))
    refused = ""
    if guards.enabled and candidates:
        if not wanted:
            if not guards.allow_empty:
                refused = f"the render produced no objects: refusing to prune all {inv_size} (use --allow-empty if intended)"
        elif inv_size and len(candidates) / inv_size > guards.max_fraction and not guards.force:
            refused = (
                f"pruning {len(candidates)} of {inv_size} objects exceeds {guards.max_fraction:.0%} of the inventory "
                "(use --force-prune if intended)"
            )
    prunes = []
    for k in reversed(sorted(candidates, key=apply_order)):  # namespaced first, CRDs last
        obj = live.get(k)
        meta = (obj or {}).get("metadata") or {}
        owner = (meta.get("labels") or {}).get(tracking_label)
        if not guards.enabled:
            prunes.append(PlannedAction(Action.SKIP_PRUNE, k, "pruning is off (--prune not given)"))
        elif refused:
            prunes.append(PlannedAction(Action.SKIP_PRUNE, k, "prune refused"))
        elif obj is None:
            continue  # already gone
        elif (k.group, k.kind) in PROTECTED_KINDS and k.kind not in guards.allowed_kinds:
            prunes.append(PlannedAction(Action.SKIP_PRUNE, k, f"{k.kind} is protected (allow with --allow-prune-kind {k.kind})"))
        elif (meta.get("annotations") or {}).get(PRUNE_ANNOTATION) == "disabled":
            prunes.append(PlannedAction(Action.SKIP_PRUNE, k, f"annotated {PRUNE_ANNOTATION}=disabled"))
        elif owner not in (None, app):
            prunes.append(PlannedAction(Action.SKIP_PRUNE, k, f"now claimed by app {owner!r}"))
        else:
            prunes.append(PlannedAction(Action.PRUNE, k, "no longer in Git"))
    return Plan(tuple(applies), tuple(prunes), refused)
