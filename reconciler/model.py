"""Values of the reconciler: keys, objects, actions, drift, health (frozen, pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

TRACKING_LABEL = "reconciler.imagebot.dev/app"
PRUNE_ANNOTATION = "reconciler.imagebot.dev/prune"  # "disabled" opts an object out of pruning
# "true" on a manifest: take the object from the app that owns it (whose tracking label it carries)
TAKE_OVER_ANNOTATION = "reconciler.imagebot.dev/take-over"
PROTECTED_KINDS = frozenset(
    {("", "Namespace"), ("", "PersistentVolumeClaim"), ("apiextensions.k8s.io", "CustomResourceDefinition")}
)


@dataclass(frozen=True, slots=True, order=True)
class ResourceKey:
    """Identity of an object across versions: group, kind, namespace ('' if cluster-scoped), name."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        gk = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{gk} {self.namespace}/{self.name}" if self.namespace else f"{gk} {self.name}"

    def encode(self) -> str:
        return f"{self.group}|{self.kind}|{self.namespace}|{self.name}"

    @classmethod
    def decode(cls, text: str) -> ResourceKey:
        g, k, ns, n = text.split("|")
        return cls(g, k, ns, n)


def group_of(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def describe_document(doc: Any) -> str:
    """How every message names a document from Git: its shape and identity, never its content. A Secret
    that lost its ``kind`` is still a Secret, so no value is shown for any document: only the top-level
    keys and, when they are strings, apiVersion, kind, metadata.namespace and metadata.name."""
    if not isinstance(doc, dict):
        return f"a {_yaml_type(doc)}, not a mapping"
    keys = [_clip(str(k), 40) for k in list(doc)[:12]]
    shown = ", ".join(keys) + (", …" if len(doc) > len(keys) else "")
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    ident = [
        f"{label} {_clip(value)}"
        for label, value in (
            ("apiVersion", doc.get("apiVersion")),
            ("kind", doc.get("kind")),
            ("namespace", meta.get("namespace")),
            ("name", meta.get("name")),
        )
        if isinstance(value, str) and value
    ]
    return f"a mapping with keys {shown or '(none)'}" + (f" ({', '.join(ident)})" if ident else "")


def _yaml_type(v: Any) -> str:
    if isinstance(v, list):
        return "sequence"
    return "null" if v is None else "scalar"


def _clip(text: str, n: int = 63) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass(frozen=True, slots=True)
class Manifest:
    """A desired object as rendered from Git (with the app's tracking label added)."""

    key: ResourceKey
    api_version: str
    body: dict[str, Any] = field(compare=False, hash=False)
    source: str = ""  # file it came from

    @property
    def kind(self) -> str:
        return self.key.kind


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    REMOVE_FIELDS = "remove-fields"  # declared fields match; kubectl added fields Git does not declare
    CONFLICT = "conflict"  # declared here, owned by another app: not applied
    PRUNE = "prune"
    SKIP_PRUNE = "skip-prune"  # kept, and kept in the inventory to prune later
    RELEASE = "release"  # left to the app that now owns or declares it: dropped from the inventory, not deleted


class FieldPolicy(StrEnum):
    CORRECT = "correct"
    REPORT = "report"
    IGNORE = "ignore"


class Health(StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    MISSING = "Missing"


class DriftKind(StrEnum):
    CHANGED = "changed"  # a field Git declares has another value
    ADDED = "added"  # a field Git does not declare was set out of band
    MISSING = "missing"  # the object is gone


@dataclass(frozen=True, slots=True)
class DriftItem:
    key: ResourceKey
    pointer: str  # JSON pointer, e.g. /spec/replicas
    kind: DriftKind
    desired: Any
    live: Any
    manager: str  # the field manager that set the live value ("" if unknown)
    operation: str
    time: str  # RFC 3339 from managedFields (none for a subresource's update: the engine dates it when seen)
    policy: FieldPolicy

    def describe(self, redact: bool = False) -> str:
        when = self.time[11:19] if len(self.time) >= 19 else self.time
        who = f"{self.manager or 'unknown manager'} {when}".strip()
        live, desired = ("***", "***") if redact else (_short(self.live), _short(self.desired))
        if self.kind is DriftKind.ADDED:
            return f"{who} {self.pointer} added {live} (not in Git)"
        if self.kind is DriftKind.MISSING:
            return f"{self.key} deleted out of band"
        return f"{who} {self.pointer} {desired} → {live}"

    def record(self, redact: bool = False) -> dict[str, Any]:
        """The item as the app's status and drift Events carry it, for readers such as the dashboard: Git's and the
        live value (each cut to 1 KiB of JSON; a Secret's never), who set it, when, and the policy."""
        git, live = ("***", "***") if redact else (_bounded(self.desired), _bounded(self.live))
        return {
            "group": self.key.group, "kind": self.key.kind, "namespace": self.key.namespace, "name": self.key.name,
            "field": self.pointer, "change": str(self.kind), "git": git, "live": live, "manager": self.manager,
            "time": self.time, "policy": str(self.policy),
        }  # fmt: skip


def _bounded(v: Any, limit: int = 1024) -> Any:
    import json

    text = json.dumps(v, sort_keys=True, default=str)
    return v if len(text) <= limit else text[: limit - 1] + "…"


def _short(v: Any) -> str:
    import json

    text = json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class PlannedAction:
    action: Action
    key: ResourceKey
    reason: str = ""
    manifest: Manifest | None = None
    remove: tuple[str, ...] = ()  # JSON pointers added out of band, deepest first: removed after the apply


@dataclass(frozen=True, slots=True)
class Plan:
    applies: tuple[PlannedAction, ...]  # CREATE / UPDATE / UNCHANGED / REMOVE_FIELDS / CONFLICT, in apply order
    prunes: tuple[PlannedAction, ...]  # PRUNE / SKIP_PRUNE / RELEASE
    refused: str = ""  # why the prune as a whole was refused ("" when allowed)

    @property
    def writes(self) -> tuple[PlannedAction, ...]:
        return tuple(a for a in self.applies if a.action in (Action.CREATE, Action.UPDATE, Action.REMOVE_FIELDS))

    @property
    def conflicts(self) -> tuple[PlannedAction, ...]:
        return tuple(a for a in self.applies if a.action is Action.CONFLICT)
