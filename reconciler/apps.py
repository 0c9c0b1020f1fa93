"""Apps declared as Kubernetes objects, in two dialects, read into one spec the engine runs (pure).

- Flux, unchanged: ``kustomize.toolkit.fluxcd.io/v1`` Kustomization with its ``source.toolkit.fluxcd.io/v1``
  GitRepository.
- Native: ``reconciler.imagebot.dev/v1alpha1`` App — what Flux cannot express (drift policy, prune guards,
  allowed namespaces and cluster kinds) — and the cluster-scoped Project, the tenant boundary (which sources,
  destination namespaces and kinds an app may use), spelt like Argo CD's AppProject.

Every field is validated here, where it enters; a field we do not support is listed in ``unsupported`` (shown in
the app's Ready condition), never silently ignored.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gitopskit.duration import parse_go_duration
from reconciler.diff import Rule, Rules
from reconciler.model import FieldPolicy

FLUX_KUSTOMIZE = "kustomize.toolkit.fluxcd.io"
FLUX_SOURCE = "source.toolkit.fluxcd.io"
NATIVE = "reconciler.imagebot.dev"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"  # what `flux reconcile` sets; `reconciler reconcile` too
SHARD_LABEL = "sharding.imagebot.dev/key"


class Dialect(StrEnum):
    FLUX = "Kustomization"
    NATIVE = "App"


class RefKind(StrEnum):
    BRANCH = "branch"
    TAG = "tag"
    COMMIT = "commit"
    SEMVER = "semver"


class InvalidApp(ValueError):
    """The object cannot be run as written; the message names the field (the app becomes Stalled)."""


@dataclass(frozen=True, slots=True, order=True)
class ObjectRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class SourceSpec:
    url: str
    ref_kind: RefKind = RefKind.BRANCH
    ref: str = "main"
    secret: ObjectRef | None = None  # Flux's Secret formats: username/password, bearerToken, identity/known_hosts
    interval: float = 60.0
    origin: ObjectRef | None = None  # the GitRepository it came from (Flux), for status and sharing


@dataclass(frozen=True, slots=True)
class DriftSpec:
    mode: str = "correct"  # correct | report
    ignore: tuple[str, ...] = ()  # JSON pointers ([KIND:]POINTER, globs)
    report: tuple[str, ...] = ()
    ignore_managers: tuple[str, ...] = ()
    added_drift_managers: tuple[str, ...] | None = None  # None: the engine's default (kubectl, before-first-apply)


@dataclass(frozen=True, slots=True)
class AppSpec:
    ref: ObjectRef
    dialect: Dialect
    generation: int
    source: SourceSpec
    path: str = ""
    interval: float = 300.0
    retry_interval: float = 60.0
    timeout: float = 300.0
    prune: bool = False
    target_namespace: str = ""
    depends_on: tuple[ObjectRef, ...] = ()
    suspend: bool = False
    wait: bool = False
    force: bool = False
    project: str = ""
    drift: DriftSpec = field(default_factory=DriftSpec)
    allow_empty: bool = False
    force_prune: bool = False
    allow_prune_kinds: tuple[str, ...] = ()
    allowed_namespaces: tuple[str, ...] | None = None
    allow_cluster_kinds: tuple[str, ...] | None = None  # None: any (unless a project says otherwise)
    images: tuple[tuple[str, str, str, str], ...] = ()  # (name, newName, newTag, digest), Kustomize's images
    common_labels: tuple[tuple[str, str], ...] = ()
    common_annotations: tuple[tuple[str, str], ...] = ()
    requested_at: str = ""
    shard: str = ""
    unsupported: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The name the engine tracks the app by (tracking label value, inventory): unique per namespace."""
        return self.ref.name if self.ref.namespace == "default" else f"{self.ref.namespace}.{self.ref.name}"


def rules_for(drift: DriftSpec) -> Rules:
    """The drift policy as the engine's Rules (the CLI's --ignore/--report/--ignore-manager flags mean the same)."""
    default = FieldPolicy.CORRECT if drift.mode == "correct" else FieldPolicy.REPORT
    rules = []
    for text in drift.ignore:
        kind, _, pointer = text.rpartition(":") if not text.startswith("/") else ("", "", text)
        rules.append(Rule(FieldPolicy.IGNORE, pointer=pointer, kind=kind))
    rules += [Rule(FieldPolicy.IGNORE, manager=m) for m in drift.ignore_managers]
    rules += [Rule(FieldPolicy.REPORT, pointer=p) for p in drift.report]
    if drift.added_drift_managers is None:
        return Rules(default, tuple(rules))
    return Rules(default, tuple(rules), tuple(m for m in drift.added_drift_managers if m))


# --------------------------------------------------------------------------- field readers
def _get(obj: dict[str, Any], path: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    cur: Any = obj
    parts = path.split(".")
    for i, p in enumerate(parts):
        if not isinstance(cur, dict):
            raise InvalidApp(f"{'.'.join(parts[:i])} must be a mapping")
        cur = cur.get(p)
        if cur is None:
            return default
    if not isinstance(cur, kind) or (kind is int and isinstance(cur, bool)):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InvalidApp(f"{path} must be a {_NAMES.get(want, want)}, not {cur!r:.60}")
    return cur


_NAMES = {"str": "string", "bool": "boolean", "dict": "mapping", "list": "list", "int": "integer"}


def _duration(obj: dict[str, Any], path: str, default: float) -> float:
    text = _get(obj, path, str)
    if text is None:
        return default
    try:
        return parse_go_duration(text)
    except ValueError as exc:
        raise InvalidApp(f"{path}: {exc}") from None


def _strings(obj: dict[str, Any], path: str) -> tuple[str, ...] | None:
    items = _get(obj, path, list)
    if items is None:
        return None
    if not all(isinstance(i, str) for i in items):
        raise InvalidApp(f"{path} must be a list of strings")
    return tuple(items)


def _labels(obj: dict[str, Any], path: str) -> tuple[tuple[str, str], ...]:
    m = _get(obj, path, dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in m.items()):
        raise InvalidApp(f"{path} must map strings to strings")
    return tuple(sorted(m.items()))


def _meta(obj: dict[str, Any]) -> tuple[ObjectRef, int, dict[str, Any], dict[str, Any]]:
    meta = _get(obj, "metadata", dict, {})
    name, ns = meta.get("name"), meta.get("namespace") or "default"
    if not isinstance(name, str) or not name:
        raise InvalidApp("metadata.name is missing")
    gen = meta.get("generation", 0)
    return ObjectRef(str(ns), name), gen if isinstance(gen, int) else 0, meta.get("annotations") or {}, meta.get("labels") or {}


def _depends(obj: dict[str, Any], ns: str) -> tuple[ObjectRef, ...]:
    out = []
    for i, d in enumerate(_get(obj, "spec.dependsOn", list, [])):
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not d["name"]:
            raise InvalidApp(f"spec.dependsOn[{i}] needs a name")
        out.append(ObjectRef(str(d.get("namespace") or ns), d["name"]))
    return tuple(out)


def _unsupported(spec: dict[str, Any], supported: frozenset[str], prefix: str = "spec") -> list[str]:
    return [f"{prefix}.{k}" for k in sorted(spec) if k not in supported]


# --------------------------------------------------------------------------- Flux
_GITREPO_FIELDS = frozenset({"url", "ref", "interval", "secretRef", "timeout", "ignore", "suspend"})
_KUSTOMIZATION_FIELDS = frozenset(
    {
        "sourceRef", "path", "interval", "retryInterval", "timeout", "prune", "targetNamespace", "dependsOn",
        "suspend", "wait", "force", "images", "commonMetadata",
    }
)  # fmt: skip


def git_source(repo: dict[str, Any]) -> SourceSpec:
    """A Flux GitRepository as a source (url, ref, secretRef, interval)."""
    ref, _, _, _ = _meta(repo)
    url = _get(repo, "spec.url", str)
    if not url:
        raise InvalidApp(f"GitRepository {ref}: spec.url is missing")
    kind, value = RefKind.BRANCH, "master"  # Flux's default branch when no ref is given
    r = _get(repo, "spec.ref", dict, {})
    for k in (RefKind.COMMIT, RefKind.TAG, RefKind.SEMVER, RefKind.BRANCH):  # Flux's precedence
        v = r.get(str(k))
        if v is not None:
            if not isinstance(v, str) or not v:
                raise InvalidApp(f"GitRepository {ref}: spec.ref.{k} must be a non-empty string")
            kind, value = k, v
            break
    secret = _get(repo, "spec.secretRef.name", str)
    return SourceSpec(
        url,
        kind,
        value,
        ObjectRef(ref.namespace, secret) if secret else None,
        _duration(repo, "spec.interval", 60.0),
        ref,
    )


def _images(obj: dict[str, Any]) -> tuple[tuple[str, str, str, str], ...]:
    images = []
    for i, im in enumerate(_get(obj, "spec.images", list, [])):
        if not isinstance(im, dict) or not isinstance(im.get("name"), str):
            raise InvalidApp(f"spec.images[{i}] needs a name")
        vals = [im.get(k, "") for k in ("newName", "newTag", "digest")]
        if not all(isinstance(v, str) for v in vals):
            raise InvalidApp(f"spec.images[{i}]: newName, newTag and digest must be strings")
        images.append((im["name"], vals[0], vals[1], vals[2]))
    return tuple(images)


def _common(obj: dict[str, Any], ref: ObjectRef, annotations: dict[str, Any], labels: dict[str, Any]) -> dict[str, Any]:
    """The fields Flux's Kustomization and the native App share, with Flux's defaults."""
    path = _get(obj, "spec.path", str) or ""
    if ".." in path.split("/"):
        raise InvalidApp(f"spec.path {path!r} leaves the source")
    interval = _duration(obj, "spec.interval", 300.0)
    return {
        "path": path.strip("/").removeprefix("./").strip("/") if path not in ("./", ".") else "",
        "interval": interval,
        "retry_interval": _duration(obj, "spec.retryInterval", interval),
        "timeout": _duration(obj, "spec.timeout", interval),
        "target_namespace": _get(obj, "spec.targetNamespace", str, ""),
        "depends_on": _depends(obj, ref.namespace),
        "suspend": bool(_get(obj, "spec.suspend", bool, False)),
        "wait": bool(_get(obj, "spec.wait", bool, False)),
        "force": bool(_get(obj, "spec.force", bool, False)),
        "images": _images(obj),
        "common_labels": _labels(obj, "spec.commonMetadata.labels"),
        "common_annotations": _labels(obj, "spec.commonMetadata.annotations"),
        "requested_at": str(annotations.get(REQUESTED_AT) or ""),
        "shard": str(labels.get(SHARD_LABEL) or ""),
    }


def from_kustomization(obj: dict[str, Any], repo: dict[str, Any] | None) -> AppSpec:
    """A Flux Kustomization (v1) and the GitRepository its sourceRef names (None: not found → InvalidApp)."""
    ref, gen, ann, labels = _meta(obj)
    spec = _get(obj, "spec", dict, {})
    src_kind = _get(obj, "spec.sourceRef.kind", str)
    src_name = _get(obj, "spec.sourceRef.name", str)
    if src_kind != "GitRepository" or not src_name:
        raise InvalidApp(f"spec.sourceRef must name a GitRepository (got {src_kind or 'nothing'})")
    if repo is None:
        ns = _get(obj, "spec.sourceRef.namespace", str) or ref.namespace
        raise InvalidApp(f"GitRepository {ns}/{src_name} not found")
    prune = _get(obj, "spec.prune", bool)
    if prune is None:
        raise InvalidApp("spec.prune is required (true or false), as in Flux")
    unsupported = _unsupported(spec, _KUSTOMIZATION_FIELDS)
    unsupported += _unsupported(_get(repo, "spec", dict, {}), _GITREPO_FIELDS, "GitRepository spec")
    if _get(repo, "spec.ref.semver", str):
        unsupported.append("GitRepository spec.ref.semver")
    return AppSpec(
        ref=ref,
        dialect=Dialect.FLUX,
        generation=gen,
        source=git_source(repo),
        prune=prune,
        unsupported=tuple(unsupported),
        **_common(obj, ref, ann, labels),
    )


# --------------------------------------------------------------------------- native
_APP_FIELDS = frozenset(
    {
        "source", "sourceRef", "path", "interval", "retryInterval", "timeout", "prune", "targetNamespace",
        "dependsOn", "suspend", "wait", "force", "project", "drift", "pruneGuards", "allowedNamespaces",
        "allowClusterKinds", "images", "commonMetadata",
    }
)  # fmt: skip


def from_app(obj: dict[str, Any], repo: dict[str, Any] | None = None) -> AppSpec:
    """A native App: its own ``source`` (url, ref, secretRef) or a ``sourceRef`` to a Flux GitRepository."""
    ref, gen, ann, labels = _meta(obj)
    spec = _get(obj, "spec", dict, {})
    if "sourceRef" in spec:
        if repo is None:
            raise InvalidApp(f"GitRepository {_get(obj, 'spec.sourceRef.name', str)} not found")
        source = git_source(repo)
    else:
        url = _get(obj, "spec.source.url", str)
        if not url:
            raise InvalidApp("spec.source.url (or spec.sourceRef) is required")
        r = _get(obj, "spec.source.ref", dict, {})
        kind, value = RefKind.BRANCH, "main"
        for k in (RefKind.COMMIT, RefKind.TAG, RefKind.BRANCH):
            v = r.get(str(k))
            if v is not None:
                if not isinstance(v, str) or not v:
                    raise InvalidApp(f"spec.source.ref.{k} must be a non-empty string")
                kind, value = k, v
                break
        secret = _get(obj, "spec.source.secretRef.name", str)
        source = SourceSpec(url, kind, value, ObjectRef(ref.namespace, secret) if secret else None, 60.0)
    mode = _get(obj, "spec.drift.mode", str, "correct")
    if mode not in ("correct", "report"):
        raise InvalidApp(f"spec.drift.mode must be one of correct, report (got {mode!r})")
    return AppSpec(
        ref=ref,
        dialect=Dialect.NATIVE,
        generation=gen,
        source=source,
        prune=bool(_get(obj, "spec.prune", bool, False)),
        project=_get(obj, "spec.project", str, ""),
        drift=DriftSpec(
            mode,
            _strings(obj, "spec.drift.ignore") or (),
            _strings(obj, "spec.drift.report") or (),
            _strings(obj, "spec.drift.ignoreManagers") or (),
            _strings(obj, "spec.drift.addedDriftManagers"),
        ),
        allow_empty=bool(_get(obj, "spec.pruneGuards.allowEmpty", bool, False)),
        force_prune=bool(_get(obj, "spec.pruneGuards.force", bool, False)),
        allow_prune_kinds=_strings(obj, "spec.pruneGuards.allowKinds") or (),
        allowed_namespaces=_strings(obj, "spec.allowedNamespaces"),
        allow_cluster_kinds=_strings(obj, "spec.allowClusterKinds"),
        unsupported=tuple(_unsupported(spec, _APP_FIELDS)),
        **_common(obj, ref, ann, labels),
    )


# --------------------------------------------------------------------------- projects
@dataclass(frozen=True, slots=True)
class GroupKind:
    group: str  # "" for the core group; "*" any
    kind: str  # "*" any

    def matches(self, group: str, kind: str) -> bool:
        return fnmatch.fnmatchcase(group, self.group or "") and fnmatch.fnmatchcase(kind, self.kind)


@dataclass(frozen=True, slots=True)
class ProjectSpec:
    """What the apps of a project may use (Argo CD's AppProject spelling; globs as Argo's)."""

    name: str
    source_repos: tuple[str, ...] = ("*",)
    destinations: tuple[str, ...] = ("*",)  # namespace globs
    cluster_whitelist: tuple[GroupKind, ...] = ()  # cluster-scoped kinds allowed (none by default, as in Argo CD)
    cluster_blacklist: tuple[GroupKind, ...] = ()
    namespace_whitelist: tuple[GroupKind, ...] | None = None  # None: every namespaced kind
    namespace_blacklist: tuple[GroupKind, ...] = ()


def _group_kinds(obj: dict[str, Any], path: str) -> tuple[GroupKind, ...] | None:
    items = _get(obj, path, list)
    if items is None:
        return None
    out = []
    for i, gk in enumerate(items):
        if not isinstance(gk, dict) or not isinstance(gk.get("kind"), str) or not isinstance(gk.get("group", ""), str):
            raise InvalidApp(f"{path}[{i}] needs group and kind strings")
        out.append(GroupKind(gk.get("group", ""), gk["kind"]))
    return tuple(out)


def project_from(obj: dict[str, Any]) -> ProjectSpec:
    """A native Project (or, with the same spec, Argo CD's AppProject)."""
    ref, _, _, _ = _meta(obj)
    dests = []
    for i, d in enumerate(_get(obj, "spec.destinations", list, [])):
        if not isinstance(d, dict) or not isinstance(d.get("namespace", "*"), str):
            raise InvalidApp(f"spec.destinations[{i}].namespace must be a string")
        dests.append(d.get("namespace", "*"))
    return ProjectSpec(
        ref.name,
        _strings(obj, "spec.sourceRepos") or (),
        tuple(dests),
        _group_kinds(obj, "spec.clusterResourceWhitelist") or (),
        _group_kinds(obj, "spec.clusterResourceBlacklist") or (),
        _group_kinds(obj, "spec.namespaceResourceWhitelist"),
        _group_kinds(obj, "spec.namespaceResourceBlacklist") or (),
    )


def source_violation(project: ProjectSpec, url: str) -> str:
    """Why the project forbids this source URL ('' when allowed)."""
    if any(fnmatch.fnmatchcase(url, pat) for pat in project.source_repos):
        return ""
    return f"source {url} is not in project {project.name}'s sourceRepos"


def object_violation(project: ProjectSpec, group: str, kind: str, namespace: str) -> str:
    """Why the project forbids an object of this group/kind in this namespace ('' for cluster-scoped)."""
    gk = f"{kind}.{group}" if group else kind
    if not namespace:
        if not any(w.matches(group, kind) for w in project.cluster_whitelist):
            return f"cluster-scoped {gk} is not in project {project.name}'s clusterResourceWhitelist"
        if any(b.matches(group, kind) for b in project.cluster_blacklist):
            return f"cluster-scoped {gk} is in project {project.name}'s clusterResourceBlacklist"
        return ""
    if not any(fnmatch.fnmatchcase(namespace, pat) for pat in project.destinations):
        return f"namespace {namespace} is not a destination of project {project.name}"
    if project.namespace_whitelist is not None and not any(w.matches(group, kind) for w in project.namespace_whitelist):
        return f"{gk} is not in project {project.name}'s namespaceResourceWhitelist"
    if any(b.matches(group, kind) for b in project.namespace_blacklist):
        return f"{gk} is in project {project.name}'s namespaceResourceBlacklist"
    return ""


# --------------------------------------------------------------------------- status, as Flux writes it
class Reason(StrEnum):
    SUCCEEDED = "ReconciliationSucceeded"
    FAILED = "ReconciliationFailed"
    PROGRESSING = "Progressing"
    DEPENDENCY_NOT_READY = "DependencyNotReady"
    ARTIFACT_FAILED = "ArtifactFailed"
    BUILD_FAILED = "BuildFailed"
    PRUNE_FAILED = "PruneFailed"
    HEALTH_CHECK_FAILED = "HealthCheckFailed"
    INVALID = "InvalidSpec"  # Stalled: nothing will change until the spec does
    PROJECT_DENIED = "ProjectViolation"
    SUSPENDED = "Suspended"


def flux_revision(ref_kind: RefKind, ref: str, sha: str) -> str:
    """Flux's ``<ref>@sha1:<sha>`` form (``main@sha1:…``, ``v1.0@sha1:…``, ``sha1:…`` for a commit)."""
    if ref_kind is RefKind.COMMIT:
        return f"sha1:{sha}"
    return f"{ref}@sha1:{sha}"


def inventory_id(group: str, kind: str, namespace: str, name: str) -> str:
    """Flux's inventory entry id: ``<namespace>_<name>_<group>_<kind>``."""
    return f"{namespace}_{name}_{group}_{kind}"


def condition(ctype: str, ok: bool | None, reason: str, message: str, generation: int, now: str) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": "Unknown" if ok is None else ("True" if ok else "False"),
        "reason": reason,
        "message": message[:32768],
        "observedGeneration": generation,
        "lastTransitionTime": now,
    }


def merge_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New conditions replace old ones of the same type; lastTransitionTime moves only when status does."""
    by_type = {c.get("type"): c for c in old if isinstance(c, dict)}
    out = []
    for c in new:
        prev = by_type.get(c["type"])
        if prev is not None and prev.get("status") == c["status"]:
            c = {**c, "lastTransitionTime": prev.get("lastTransitionTime", c["lastTransitionTime"])}
        out.append(c)
    return out
