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
import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gitopskit import semver
from gitopskit.duration import parse_go_duration
from reconciler.diff import Rule, Rules
from reconciler.model import FieldPolicy
from reconciler.patches import Patch, PatchError, parse_patches

FLUX_KUSTOMIZE = "kustomize.toolkit.fluxcd.io"
FLUX_SOURCE = "source.toolkit.fluxcd.io"
ARGO = "argoproj.io"
IN_CLUSTER = ("https://kubernetes.default.svc", "in-cluster")  # Argo CD's names for the cluster it runs in
NATIVE = "reconciler.imagebot.dev"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"  # what `flux reconcile` sets; `reconciler reconcile` too
SHARD_LABEL = "sharding.imagebot.dev/key"


class Dialect(StrEnum):
    FLUX = "Kustomization"
    NATIVE = "App"
    ARGO = "Application"


class RefKind(StrEnum):
    BRANCH = "branch"
    TAG = "tag"
    COMMIT = "commit"
    SEMVER = "semver"
    NAME = "name"


class InvalidApp(ValueError):
    """The object cannot be run as written; the message names the field (the app becomes Stalled)."""


class SourceNotFound(InvalidApp):
    """The GitRepository the app names does not exist (yet): as in Flux, not ready yet and retried — never Stalled
    (it is often created just after the app)."""


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
    # Flux's artifact filter: None (native and Argo CD sources) keeps every file; a string (a GitRepository's
    # ``spec.ignore``, "" when absent) is gitignore patterns on top of Flux's defaults and ``.sourceignore`` files
    ignore: str | None = None
    suspend: bool = False  # a GitRepository's spec.suspend: not fetched; its apps keep the snapshot they have


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
    patches: tuple[Patch, ...] = ()  # Flux's spec.patches (strategic-merge and JSON 6902, with targets)
    common_labels: tuple[tuple[str, str], ...] = ()
    common_annotations: tuple[tuple[str, str], ...] = ()
    requested_at: str = ""
    shard: str = ""
    unsupported: tuple[str, ...] = ()
    default_namespace: str = ""  # for namespaced objects that name none ("": the dialect's default)
    auto_sync: bool = True  # False (Argo CD without syncPolicy.automated): diff and report, apply only on request
    self_heal: bool = True  # False: drift is reported, never corrected
    recurse: bool = True  # False (Argo CD's directory.recurse default): only the path's own files
    create_namespace: bool = False  # Argo CD's CreateNamespace=true
    history_limit: int = 10

    @property
    def key(self) -> str:
        """The name the engine tracks the app by: the tracking label's value (cluster-wide) and the inventory
        ConfigMap's name. Unique per (dialect, namespace, name) — ``NS.web`` in ``default`` and ``web`` in NS,
        or a Kustomization and an App of one name, never share it — and a valid label value (63 bytes at most)
        for any name: a readable prefix and a digest of the three."""
        return app_key(self.dialect, self.ref.namespace, self.ref.name)


def app_key(dialect: str, namespace: str, name: str) -> str:
    """:attr:`AppSpec.key` from the object's identity alone (the dashboard finds an app's objects by it)."""
    digest = hashlib.sha256(f"{dialect}/{namespace}/{name}".encode()).hexdigest()[:10]
    return f"{f'{namespace}.{name}'[:52].rstrip('.-')}-{digest}"


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


_REMOTE = re.compile(r"^(https?|ssh|git)://[^/\s]+|^[\w.-]+@[\w.-]+:[^/\s]")  # scp-like ``git@host:org/repo`` too


def _remote(url: str, field: str) -> str:
    """A source must be a remote Git URL: a local path or ``file://`` would let a tenant render the controller's own
    disk (or another tenant's cached clone, credentials bypassed)."""
    if not _REMOTE.match(url):
        raise InvalidApp(f"{field} {url!r:.200} is not a remote Git URL (http, https, ssh or git@host:path)")
    return url


def _unsupported(spec: dict[str, Any], supported: frozenset[str], prefix: str = "spec") -> list[str]:
    return [f"{prefix}.{k}" for k in sorted(spec) if k not in supported]


# --------------------------------------------------------------------------- Flux
# what we run; anything else in the spec (timeout, verify, include, …) is named in the condition
_GITREPO_FIELDS = frozenset({"url", "ref", "interval", "secretRef", "ignore", "suspend"})
_KUSTOMIZATION_FIELDS = frozenset(
    {
        "sourceRef", "path", "interval", "retryInterval", "prune", "targetNamespace", "dependsOn", "suspend", "wait",
        "images", "commonMetadata", "patches", "force", "timeout",
    }
)  # fmt: skip


def git_source(repo: dict[str, Any]) -> SourceSpec:
    """A Flux GitRepository as a source (url, ref, secretRef, interval, ignore). Refs in Flux's precedence: commit,
    then name, semver, tag, branch."""
    ref, _, _, _ = _meta(repo)
    url = _get(repo, "spec.url", str)
    if not url:
        raise InvalidApp(f"GitRepository {ref}: spec.url is missing")
    _remote(url, f"GitRepository {ref}: spec.url")
    kind, value = RefKind.BRANCH, "master"  # Flux's default branch when no ref is given
    r = _get(repo, "spec.ref", dict, {})
    for k in (RefKind.COMMIT, RefKind.NAME, RefKind.SEMVER, RefKind.TAG, RefKind.BRANCH):  # Flux's precedence
        v = r.get(str(k))
        if v is not None:
            if not isinstance(v, str) or not v:
                raise InvalidApp(f"GitRepository {ref}: spec.ref.{k} must be a non-empty string")
            kind, value = k, v
            break
    if kind is RefKind.SEMVER:
        try:
            semver.parse_range(value)
        except semver.RangeError as exc:
            raise InvalidApp(f"GitRepository {ref}: spec.ref.semver: {exc}") from None
    if kind is RefKind.NAME and (not value.startswith(("refs/heads/", "refs/tags/")) or value.endswith("/")):
        raise InvalidApp(f"GitRepository {ref}: spec.ref.name {value!r}: only refs/heads/… and refs/tags/… are supported")
    secret = _get(repo, "spec.secretRef.name", str)
    return SourceSpec(
        url,
        kind,
        value,
        ObjectRef(ref.namespace, secret) if secret else None,
        _duration(repo, "spec.interval", 60.0),
        ref,
        _get(repo, "spec.ignore", str, ""),
        bool(_get(repo, "spec.suspend", bool, False)),
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


def _patches(obj: dict[str, Any]) -> tuple[Patch, ...]:
    spec = obj.get("spec")
    try:
        return parse_patches(spec.get("patches") if isinstance(spec, dict) else None)
    except PatchError as exc:
        raise InvalidApp(str(exc)) from None


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
        "patches": _patches(obj),
        "common_labels": _labels(obj, "spec.commonMetadata.labels"),
        "common_annotations": _labels(obj, "spec.commonMetadata.annotations"),
        "requested_at": str(annotations.get(REQUESTED_AT) or ""),
        "shard": str(labels.get(SHARD_LABEL) or ""),
    }


def from_kustomization(obj: dict[str, Any], repo: dict[str, Any] | None) -> AppSpec:
    """A Flux Kustomization (v1) and the GitRepository its sourceRef names (None: not found → SourceNotFound)."""
    ref, gen, ann, labels = _meta(obj)
    spec = _get(obj, "spec", dict, {})
    src_kind = _get(obj, "spec.sourceRef.kind", str)
    src_name = _get(obj, "spec.sourceRef.name", str)
    if src_kind != "GitRepository" or not src_name:
        raise InvalidApp(f"spec.sourceRef must name a GitRepository (got {src_kind or 'nothing'})")
    if repo is None:
        ns = _get(obj, "spec.sourceRef.namespace", str) or ref.namespace
        raise SourceNotFound(f"GitRepository {ns}/{src_name} not found")
    prune = _get(obj, "spec.prune", bool)
    if prune is None:
        raise InvalidApp("spec.prune is required (true or false), as in Flux")
    unsupported = _unsupported(spec, _KUSTOMIZATION_FIELDS)
    unsupported += _unsupported(_get(repo, "spec", dict, {}), _GITREPO_FIELDS, "GitRepository spec")
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
        "source", "sourceRef", "path", "interval", "retryInterval", "prune", "targetNamespace", "dependsOn",
        "suspend", "wait", "project", "drift", "pruneGuards", "allowedNamespaces", "allowClusterKinds", "images",
        "commonMetadata", "patches", "force", "timeout",
    }
)  # fmt: skip


def from_app(obj: dict[str, Any], repo: dict[str, Any] | None = None) -> AppSpec:
    """A native App: its own ``source`` (url, ref, secretRef) or a ``sourceRef`` to a Flux GitRepository."""
    ref, gen, ann, labels = _meta(obj)
    spec = _get(obj, "spec", dict, {})
    unsupported = _unsupported(spec, _APP_FIELDS)
    if "sourceRef" in spec:
        if repo is None:
            raise SourceNotFound(f"GitRepository {_get(obj, 'spec.sourceRef.name', str)} not found")
        source = git_source(repo)
        unsupported += _unsupported(_get(repo, "spec", dict, {}), _GITREPO_FIELDS, "GitRepository spec")
    else:
        url = _get(obj, "spec.source.url", str)
        if not url:
            raise InvalidApp("spec.source.url (or spec.sourceRef) is required")
        _remote(url, "spec.source.url")
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
        unsupported=tuple(unsupported),
        **_common(obj, ref, ann, labels),
    )


# --------------------------------------------------------------------------- Argo CD
_ARGO_SPEC = frozenset(
    {"project", "source", "sources", "destination", "syncPolicy", "ignoreDifferences", "revisionHistoryLimit", "info"}
)
_ARGO_SOURCE = frozenset({"repoURL", "path", "targetRevision", "directory", "kustomize"})
_ARGO_OPTIONS = frozenset({"CreateNamespace=true", "PruneLast=true", "ServerSideApply=true", "Validate=true"})


def _kustomize_image(text: Any, i: int) -> tuple[str, str, str, str]:
    """Argo CD's ``kustomize.images`` entry (``name=newName:tag``, ``name:tag``, ``name@digest``)."""
    if not isinstance(text, str) or not text:
        raise InvalidApp(f"spec.source.kustomize.images[{i}] must be a string like name=new:tag")
    name, _, new = text.partition("=") if "=" in text else ("", "", text)
    ref, _, digest = new.partition("@")
    slash, colon = ref.rfind("/"), ref.rfind(":")
    new_name, tag = (ref[:colon], ref[colon + 1 :]) if colon > slash else (ref, "")
    return (name or new_name, new_name if name else "", tag, digest)


def from_application(obj: dict[str, Any]) -> AppSpec:
    """An Argo CD Application (argoproj.io/v1alpha1), read as Argo CD means it; what we do not run is named."""
    ref, gen, ann, labels = _meta(obj)
    spec = _get(obj, "spec", dict, {})
    unsupported = _unsupported(spec, _ARGO_SPEC)
    sources = _get(obj, "spec.sources", list)
    if sources is not None:
        if len(sources) != 1 or not isinstance(sources[0], dict):
            raise InvalidApp("spec.sources: only one source is supported")
        source: dict[str, Any] = sources[0]
    else:
        source = _get(obj, "spec.source", dict, {})
    url = source.get("repoURL")
    if not isinstance(url, str) or not url:
        raise InvalidApp("spec.source.repoURL is required")
    _remote(url, "spec.source.repoURL")
    for k in sorted(source):
        if k not in _ARGO_SOURCE:
            unsupported.append(f"spec.source.{k}" + (" (Helm sources)" if k == "chart" or k == "helm" else ""))
    if "chart" in source:
        raise InvalidApp("spec.source.chart: Helm sources are not supported")
    rev = source.get("targetRevision") or "HEAD"
    if not isinstance(rev, str):
        raise InvalidApp("spec.source.targetRevision must be a string")
    path = source.get("path") or ""
    if not isinstance(path, str) or ".." in path.split("/"):
        raise InvalidApp(f"spec.source.path {path!r} must be a path inside the repository")
    dest = _get(obj, "spec.destination", dict, {})
    server, cluster = dest.get("server"), dest.get("name")
    if (server or cluster) not in (*IN_CLUSTER, None) or (server is None and cluster is None):
        raise InvalidApp(
            f"spec.destination: only the cluster the controller runs in ({IN_CLUSTER[0]} or name {IN_CLUSTER[1]}) "
            f"is supported, not {server or cluster!r}"
        )
    namespace = dest.get("namespace") or ""
    if not isinstance(namespace, str):
        raise InvalidApp("spec.destination.namespace must be a string")
    directory = source.get("directory") or {}
    if not isinstance(directory, dict):
        raise InvalidApp("spec.source.directory must be a mapping")
    unsupported += [f"spec.source.directory.{k}" for k in sorted(directory) if k != "recurse"]
    kz = source.get("kustomize") or {}
    if not isinstance(kz, dict):
        raise InvalidApp("spec.source.kustomize must be a mapping")
    unsupported += [f"spec.source.kustomize.{k}" for k in sorted(kz) if k not in ("images", "commonLabels")]
    images = tuple(_kustomize_image(t, i) for i, t in enumerate(kz.get("images") or []))
    auto = _get(obj, "spec.syncPolicy.automated", dict)
    options = _strings(obj, "spec.syncPolicy.syncOptions") or ()
    unsupported += [f"spec.syncPolicy.syncOptions {o}" for o in options if o not in _ARGO_OPTIONS]
    rules_ignore, managers = [], []
    for i, d in enumerate(_get(obj, "spec.ignoreDifferences", list, [])):
        if not isinstance(d, dict):
            raise InvalidApp(f"spec.ignoreDifferences[{i}] must be a mapping")
        kind = d.get("kind") or ""
        for ptr in d.get("jsonPointers") or []:
            rules_ignore.append(f"{kind}:{ptr}" if kind else str(ptr))
        managers += [str(m) for m in d.get("managedFieldsManagers") or []]
        if d.get("jqPathExpressions"):
            unsupported.append(f"spec.ignoreDifferences[{i}].jqPathExpressions")
        if d.get("name") or d.get("namespace"):
            unsupported.append(f"spec.ignoreDifferences[{i}].name/namespace (applied to every {kind or 'object'})")
    limit = _get(obj, "spec.revisionHistoryLimit", int, 10)
    return AppSpec(
        ref=ref,
        dialect=Dialect.ARGO,
        generation=gen,
        source=SourceSpec(url, RefKind.BRANCH, "main" if rev == "HEAD" else rev, None, 180.0),
        path=path.strip("/").removeprefix("./").strip("/") if path not in (".", "./") else "",
        interval=180.0,  # Argo CD's default timeout.reconciliation
        retry_interval=30.0,
        prune=bool((auto or {}).get("prune", False)),
        project=_get(obj, "spec.project", str, "default"),
        drift=DriftSpec("correct", tuple(rules_ignore), (), tuple(managers)),
        allow_empty=bool((auto or {}).get("allowEmpty", False)),
        images=images,
        common_labels=_labels({"spec": {"l": kz.get("commonLabels") or {}}}, "spec.l"),
        requested_at=str(ann.get(REQUESTED_AT) or ""),
        shard=str(labels.get(SHARD_LABEL) or ""),
        unsupported=tuple(unsupported),
        default_namespace=namespace,
        auto_sync=auto is not None,
        self_heal=bool((auto or {}).get("selfHeal", False)),
        recurse=bool(directory.get("recurse", False)),
        create_namespace="CreateNamespace=true" in options,
        history_limit=limit if limit > 0 else 10,
    )


def argo_project_from(obj: dict[str, Any]) -> ProjectSpec:
    """An Argo CD AppProject: the same boundary as our Project; a destination on another cluster allows nothing
    here."""
    dests = _get(obj, "spec.destinations", list, [])
    here = [d for d in dests if not isinstance(d, dict) or (d.get("server") or d.get("name") or "*") in (*IN_CLUSTER, "*")]
    spec = _get(obj, "spec", dict, {})
    return project_from({**obj, "spec": {**spec, "destinations": here}})


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
    CONFLICT = "OwnershipConflict"


def flux_revision(ref_kind: RefKind, ref: str, sha: str) -> str:
    """Flux's ``<ref>@sha1:<sha>`` form (``main@sha1:…``, ``v1.0@sha1:…``, ``refs/heads/main@sha1:…`` for a ref
    name, ``sha1:…`` for a commit); for a semver range ``ref`` is the tag it chose."""
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
