"""Flux's image automation objects → imagebot's typed configuration (pure: no I/O, no cluster calls).

File mode (``load``) and ``imagebot controller`` share this translation, so one ImageRepository means the
same thing wherever it is read. Objects are plain mappings (API JSON, or YAML documents, whose line numbers
are kept in messages); Secrets arrive already fetched, as :class:`gitopskit.fluxsecrets.Secret`.

The API, per object (what the controller calls from its reconcile of one key)::

    refs = references(obj, git_repository)          # the Secrets / ServiceAccounts obj names (fetch these)
    resolved = Resolved(secrets={(ns, name): secret_from_object(s)},        # what was fetched
                        service_accounts={(ns, name): pull_secret_names(sa)},
                        cluster=True)                 # True: a named object that is absent is *missing* (an error)
    repo = image_repository(obj, resolved)           # -> Repository: image, interval, exclusions, RegistryAccess
    pol = image_policy(obj, repo)                    # -> Policy: PolicySpec (with repo's exclusionList), setter
    auto = image_update_automation(obj, git_repository, resolved)   # -> Automation (git, template, signing)
    data = auto.template_data(records)               # messageTemplate data for the ChangeRecords of one commit

and the adapters that apply the results (the same for ``run`` and the controller)::

    RegistryClient(RegistrySettings(repo.access.host, plain_http=repo.access.insecure, tls=repo.access.tls,
                                    credentials=StaticCredentials(Credentials(c.username, c.password))))
    Workspace(auto.url, auto.branch, cache, flux_git_auth(auto.credentials, private_dir),     # gitopskit.workspace
              Identity(auto.author_name, auto.author_email,
                       openpgp=OpenPGPKey(auto.signing_key.key, auto.signing_key.passphrase,   # gitopskit.openpgp
                                          f"{auto.ref}: spec.git.commit.signingKey")))     # type gpg: every commit signed
    Delivery(..., go_message=GoMessage(ns, name, auto.message_template, auto.template_values, str(auto.api_version)))
                                                      # the writer renders it over message.change_records(changes)

and for a whole set (file mode)::

    t = translate(objects, origins=files)            # also takes v1 Secret / ServiceAccount manifests among them
    t.errors, t.warnings                             # FluxProblem each: object, field path, message, file:line
    cfg = t.config()                                 # imagebot's Config (call only when there are no errors)

Every problem is a :class:`FluxProblem` naming the object (``Kind namespace/name``) and the field path
(``spec.secretRef``); the per-object functions raise :class:`FluxError` (a ConfigError: exit 2) holding all of
that object's errors, and return warnings on the result. Without the cluster (``Resolved(cluster=False)``,
file mode) a Secret that is not among the loaded objects is a *warning*, and the field is carried as an
unresolved :class:`Reference` so that ``run`` fails — one line naming the object and field — only when the
value is actually needed (the registry asks for credentials, a commit must be signed).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from gitopskit import fluxsecrets as fs
from imagebot import refs
from imagebot.config import fluxextras
from imagebot.config.fields import Reader, policy_spec
from imagebot.config.model import (
    Config,
    Environment,
    FluxCommit,
    GitConfig,
    ImageConfig,
    Purpose,
    Reference,
    RegistryConfig,
    Target,
    VerifySpec,
)
from imagebot.config.yamlload import Map, line_of
from imagebot.errors import ConfigError
from imagebot.gitops import gotemplate
from imagebot.gitops.writer import Mode
from imagebot.policy import DEFAULT_EXCLUDES, PolicySpec
from imagebot.verify import VerifyError, secret_keys

FLUX_IMAGE = "image.toolkit.fluxcd.io/"
FLUX_SOURCE = "source.toolkit.fluxcd.io/"
DEFAULT_NAMESPACE = "flux-system"  # file mode: an object without a namespace
COSIGN_SECRET = "imagebot.dev/cosign-secret"  # on an ImagePolicy: a Secret of its namespace, its *.pub entries the keys
DEFAULT_INTERVAL = 300.0

__all__ = [
    "Automation",
    "DigestReflection",
    "FluxError",
    "FluxProblem",
    "ObjectRef",
    "Policy",
    "Purpose",
    "Reference",
    "RegistryAccess",
    "Repository",
    "Resolved",
    "Severity",
    "Translation",
    "image_policy",
    "image_repository",
    "image_update_automation",
    "pull_secret_credentials",
    "pull_secret_names",
    "references",
    "translate",
]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class DigestReflection(StrEnum):
    NEVER = "Never"
    IF_NOT_PRESENT = "IfNotPresent"
    ALWAYS = "Always"


class _Strategy(StrEnum):
    SETTERS = "Setters"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class FluxProblem:
    """One problem with one field of one object; ``str`` is ``[file:line: ]Kind ns/name.field: message``."""

    subject: ObjectRef | None
    field: str  # the path below the object, e.g. spec.secretRef ("" for the object itself)
    message: str
    severity: Severity = Severity.ERROR
    origin: str = ""  # the file it was read from ("" from the cluster)
    line: int | None = None

    @property
    def where(self) -> str:
        if self.subject is None:
            return self.field
        return f"{self.subject}.{self.field}" if self.field else str(self.subject)

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        return f"{self.origin}:{self.line or '?'}: {text}" if self.origin else text


class FluxError(ConfigError):
    """An object cannot be used as written; ``problems`` has every error found in it (exit 2)."""

    def __init__(self, problems: Sequence[FluxProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems) or "invalid Flux object")


@dataclass(frozen=True, slots=True)
class Resolved:
    """The cluster objects the Flux objects name, as fetched: Secrets, and each ServiceAccount's imagePullSecrets.

    ``cluster``: True when everything named was looked up (the controller), so a name absent here is a
    missing object — an error; False in file mode, where it is a warning and the field stays unresolved."""

    secrets: Mapping[tuple[str, str], fs.Secret] = field(default_factory=dict)
    service_accounts: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    cluster: bool = False


@dataclass(frozen=True, slots=True)
class RegistryAccess:
    """How to reach one ImageRepository's registry: credentials and TLS from its Secrets, or what is unresolved."""

    host: str  # canonical registry host[:port]
    insecure: bool = False  # spec.insecure: plain HTTP
    credentials: fs.RegistryCredentials | None = None
    tls: fs.TLSMaterial | None = None
    timeout: float | None = None
    unresolved: tuple[Reference, ...] = ()


@dataclass(frozen=True, slots=True)
class Repository:
    ref: ObjectRef
    image: refs.ImageRef
    interval: float
    exclusions: tuple[str, ...]
    access: RegistryAccess
    suspend: bool = False
    references: tuple[Reference, ...] = ()
    warnings: tuple[FluxProblem, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    ref: ObjectRef
    repository: tuple[str, str]  # the ImageRepository's (namespace, name)
    spec: PolicySpec
    digest_reflection: DigestReflection = DigestReflection.NEVER
    interval: float | None = None  # spec.interval (with digestReflectionPolicy Always)
    suspend: bool = False
    warnings: tuple[FluxProblem, ...] = ()
    cosign_secret: str | None = None  # imagebot.dev/cosign-secret: the signature gate's Secret (in the namespace)
    verify: VerifySpec | None = None  # that gate, once the Secret is looked up (file mode)
    extras: fluxextras.Extras = field(default_factory=fluxextras.Extras)  # imagebot's annotations (promotion, min-age, …)

    @property
    def setter(self) -> str:
        """The marker name Flux gives this policy: ``# {"$imagepolicy": "NS:NAME"}``."""
        return f"{self.ref.namespace}:{self.ref.name}"


@dataclass(frozen=True, slots=True)
class Automation:
    ref: ObjectRef
    source: ObjectRef  # the GitRepository
    url: str
    branch: str  # checked out (spec.git.checkout.ref.branch, else the GitRepository's ref.branch)
    push_branch: str | None  # None: push to ``branch``
    path: str  # spec.update.path, normalised relative to the repository root ("" = the root)
    author_name: str
    author_email: str
    message_template: str = ""
    template_values: tuple[tuple[str, str], ...] = ()
    api_version: gotemplate.ApiVersion = gotemplate.ApiVersion.V1
    signing_key: fs.SigningKey | None = None
    credentials: fs.GitCredentials | None = None
    interval: float = DEFAULT_INTERVAL
    suspend: bool = False
    references: tuple[Reference, ...] = ()
    unresolved: tuple[Reference, ...] = ()
    warnings: tuple[FluxProblem, ...] = ()

    def commit(self) -> FluxCommit:
        return FluxCommit(
            self.ref.namespace,
            self.ref.name,
            self.message_template,
            self.template_values,
            str(self.api_version),
            self.signing_key,
        )

    def template_data(self, records: Sequence[gotemplate.ChangeRecord]) -> gotemplate.TemplateData:
        return gotemplate.template_data(self.ref.namespace, self.ref.name, records, dict(self.template_values), self.api_version)

    def message(self, records: Sequence[gotemplate.ChangeRecord]) -> str:
        """The commit message Flux would write for these changes."""
        return gotemplate.render(self.message_template, self.template_data(records))


# --- reading -------------------------------------------------------------------------------------------


class _Sink:
    """Collects a Reader's problems as FluxProblems about the object being read."""

    def __init__(self, subject: ObjectRef | None) -> None:
        self.subject = subject
        self.problems: list[FluxProblem] = []

    def _field(self, where: str) -> str:
        label = str(self.subject) if self.subject is not None else ""
        if label and where.startswith(label):
            return where[len(label) :].lstrip(".")
        return where

    def add(self, file: str, node: Any, key: Any, where: str, message: str) -> None:
        subject = self.subject if self._field(where) != where else None
        line = line_of(node, key) or None
        self.problems.append(FluxProblem(subject, self._field(where), message, Severity.ERROR, file, line))

    def warn(self, r: Reader, key: str | None, message: str) -> None:
        where = f"{r.where}.{key}" if key is not None else r.where
        line = line_of(r.node, key) or None
        self.problems.append(FluxProblem(self.subject, self._field(where), message, Severity.WARNING, r.file, line))

    def raise_errors(self) -> tuple[FluxProblem, ...]:
        """Raise FluxError when any error was recorded; else the warnings."""
        errors = [p for p in self.problems if p.severity is Severity.ERROR]
        if errors:
            raise FluxError(errors)
        return tuple(self.problems)


def object_ref(obj: Any) -> ObjectRef:
    """Kind, namespace and name of an object, tolerating any shape (for messages)."""
    d: Mapping[str, Any] = obj if isinstance(obj, Mapping) else {}
    meta: Mapping[str, Any] = d["metadata"] if isinstance(d.get("metadata"), Mapping) else {}
    kind, ns, name = d.get("kind"), meta.get("namespace"), meta.get("name")
    return ObjectRef(
        kind if isinstance(kind, str) else "object",
        ns if isinstance(ns, str) and ns else DEFAULT_NAMESPACE,
        name if isinstance(name, str) else "",
    )


def _open(obj: Any, origin: str, allowed: set[str] | None) -> tuple[_Sink, Reader, ObjectRef]:
    """A sink for ``obj``'s problems and a Reader of its spec; metadata is checked on the way."""
    ref = object_ref(obj)
    sink = _Sink(ref)
    _metadata(sink, origin, obj, ref)
    spec = Reader(sink, origin, obj if isinstance(obj, dict) else Map(), str(ref), None).sub("spec", allowed)
    return sink, spec, ref


def _metadata(sink: _Sink, origin: str, obj: Any, ref: ObjectRef) -> None:
    """Check an object's metadata (its problems are reported by kind: the name may be what is wrong)."""
    subject, sink.subject = sink.subject, None
    meta = Reader(sink, origin, obj, ref.kind, None).sub("metadata", None)
    meta.text("namespace", DEFAULT_NAMESPACE)
    meta.text("name", "", required=True)
    sink.subject = subject


def _secret_name(r: Reader, key: str) -> str | None:
    """``key: {name: NAME}`` (a LocalObjectReference)."""
    if not r.has(key):
        return None
    name: str | None = r.sub(key, {"name"}).text("name", required=True)
    return name


def _lookup(
    sink: _Sink, r: Reader, key: str, ref: Reference, resolved: Resolved, what: str = "Secret"
) -> tuple[fs.Secret | None, bool]:
    """The Secret ``ref`` names: (secret, False) found; (None, True) unresolved in file mode; (None, False) error."""
    secret = resolved.secrets.get((ref.namespace, ref.name))
    if secret is not None:
        return secret, False
    if resolved.cluster:
        r.error(key, f"{what} {ref.namespace}/{ref.name} not found")
        return None, False
    sink.warn(r, key, f"{ref.target} ({ref.purpose}) is read from the cluster: not among the loaded files")
    return None, True


def _parsed(r: Reader, key: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except fs.SecretError as exc:
        r.error(key, str(exc))
        return None


def pull_secret_names(service_account: Mapping[str, Any]) -> tuple[str, ...]:
    """The Secret names of a ServiceAccount's ``imagePullSecrets`` (``[{name: …}]``), in order; malformed entries skipped."""
    items = service_account.get("imagePullSecrets") if isinstance(service_account, Mapping) else None
    if not isinstance(items, list):
        return ()
    return tuple(i["name"] for i in items if isinstance(i, Mapping) and isinstance(i.get("name"), str) and i["name"])


def pull_secret_credentials(secrets: Sequence[fs.Secret], registry: str, path: str = "") -> fs.RegistryCredentials | None:
    """Registry credentials from a ServiceAccount's image pull Secrets (dockerconfigjson), as the kubelet finds
    them: the first Secret, in the ServiceAccount's order, holding an entry for ``registry`` (and ``path``).
    Raises SecretError naming a malformed Secret."""
    for s in secrets:
        found = fs.docker_config(s).lookup(registry, path)
        if found is not None:
            return found
    return None


# --- ImageRepository -------------------------------------------------------------------------------------

_REPO_FIELDS = {
    "image",
    "interval",
    "timeout",
    "exclusionList",
    "secretRef",
    "proxySecretRef",
    "certSecretRef",
    "serviceAccountName",
    "suspend",
    "provider",
    "insecure",
    "accessFrom",
}


def _repository_refs(spec: Reader, ref: ObjectRef) -> list[Reference]:
    out = []
    for key, purpose in (("secretRef", Purpose.REGISTRY_AUTH), ("certSecretRef", Purpose.REGISTRY_TLS)):
        name = _secret_name(spec, key)
        if name:
            out.append(Reference("Secret", ref.namespace, name, str(ref), f"spec.{key}", purpose))
    sa = spec.text("serviceAccountName")
    if sa:
        out.append(Reference("ServiceAccount", ref.namespace, sa, str(ref), "spec.serviceAccountName", Purpose.PULL_SECRETS))
    return out


def image_repository(obj: Mapping[str, Any], resolved: Resolved | None = None, origin: str = "") -> Repository:
    """An ImageRepository: what to scan, how often, and how to reach its registry (credentials from
    ``secretRef`` then ``serviceAccountName``'s image pull secrets, as Flux; TLS from ``certSecretRef``)."""
    resolved = resolved or Resolved()
    sink, spec, ref = _open(obj, origin, _REPO_FIELDS)
    image = spec.parsed("image", refs.parse_name, required=True)
    interval = spec.duration("interval", DEFAULT_INTERVAL, positive=True)
    timeout = spec.duration("timeout", 0.0, positive=True) if spec.has("timeout") else None
    exclusions = spec.strings("exclusionList", DEFAULT_EXCLUDES[:1])  # Flux's default: ^.*\.sig$
    suspend = spec.get("suspend", bool, False)
    insecure = spec.get("insecure", bool, False)
    provider = spec.get("provider", str, "generic")
    if provider not in ("generic", ""):
        spec.error("provider", f"{provider!r}: cloud provider login is not supported; give the credentials in a secretRef")
    if spec.has("proxySecretRef"):
        spec.error("proxySecretRef", "not supported: registry access through a proxy")
    if spec.has("accessFrom"):
        sink.warn(spec, "accessFrom", "not enforced: every ImagePolicy may refer to this ImageRepository")
    references = _repository_refs(spec, ref)
    creds: fs.RegistryCredentials | None = None
    tls: fs.TLSMaterial | None = None
    unresolved: list[Reference] = []
    host, path = (image.canonical_registry, image.canonical_path) if image is not None else ("", "")
    for r in references:
        key = r.field.removeprefix("spec.")
        if r.purpose is Purpose.PULL_SECRETS:
            names = resolved.service_accounts.get((r.namespace, r.name))
            if names is None:
                if resolved.cluster:
                    spec.error(key, f"ServiceAccount {r.namespace}/{r.name} not found")
                else:
                    sink.warn(spec, key, f"{r.target} ({r.purpose}) is read from the cluster: not among the loaded files")
                    unresolved.append(r)
                continue
            pulls = []
            for n in names:
                pull = Reference("Secret", r.namespace, n, str(ref), r.field, Purpose.PULL_SECRETS)
                secret, missing = _lookup(sink, spec, key, pull, resolved)
                if secret is not None:
                    pulls.append(secret)
                elif missing:
                    unresolved.append(pull)
            if creds is None and image is not None:
                creds = _parsed(spec, key, pull_secret_credentials, pulls, host, path)
            continue
        secret, missing = _lookup(sink, spec, key, r, resolved)
        if missing:
            unresolved.append(r)
        if secret is None:
            continue
        if r.purpose is Purpose.REGISTRY_TLS:
            tls = _parsed(spec, key, fs.tls_material, secret)
        elif image is not None:
            config = _parsed(spec, key, fs.docker_config, secret)
            found = config.lookup(host, path) if config is not None else None
            if config is not None and found is None:
                held = ", ".join(config.registries) or "none"
                sink.warn(
                    spec, key, f"Secret {secret.ref} holds no credentials for {host} (it has: {held}): scanning anonymously"
                )
            creds = creds or found
    warnings = sink.raise_errors()
    assert image is not None
    access = RegistryAccess(host, insecure, creds, tls, timeout, tuple(unresolved))
    return Repository(ref, image, interval, exclusions, access, suspend, tuple(references), warnings)


# --- ImagePolicy -------------------------------------------------------------------------------------------


def image_policy(obj: Mapping[str, Any], repository: Repository | None = None, origin: str = "") -> Policy:
    """An ImagePolicy: its PolicySpec (the ImageRepository's ``exclusionList`` applied, when given)."""
    sink, s, ref = _open(
        obj, origin, {"imageRepositoryRef", "policy", "filterTags", "digestReflectionPolicy", "interval", "suspend"}
    )
    rr = s.sub("imageRepositoryRef", {"name", "namespace"}, required=True)
    repo_key = (rr.text("namespace", ref.namespace), rr.text("name", "", required=True))
    choice = s.sub("policy", {"semver", "numerical", "alphabetical"}, required=True)
    native = Map(choice.node.line if isinstance(choice.node, Map) else 0)
    for kind, key, default in (("semver", "range", None), ("numerical", "order", "asc"), ("alphabetical", "order", "asc")):
        if choice.has(kind):
            value = choice.sub(kind, {key}).get(key, str, default, required=default is None)
            if value is not None:
                native[kind] = value
                native.key_lines[kind] = line_of(choice.node, kind) or 0
    if not native and not sink.problems:
        choice.error(None, "give exactly one of semver, numerical, alphabetical")
    ft = s.sub("filterTags", {"pattern", "extract"})
    for key in ("pattern", "extract"):
        if ft.text(key):
            native[key] = ft.node[key]
    excludes = repository.exclusions if repository is not None else DEFAULT_EXCLUDES[:1]
    spec = policy_spec(s, native, f"{ref}.spec.policy", ()) if native else None
    digest = s.choice("digestReflectionPolicy", DigestReflection, DigestReflection.NEVER)
    interval = s.duration("interval", 0.0, positive=True) if s.has("interval") else None
    suspend = s.get("suspend", bool, False)
    notes = Reader(sink, origin, obj if isinstance(obj, dict) else Map(), str(ref), None).sub("metadata", None)
    cosign = notes.sub("annotations", None).text(COSIGN_SECRET) if notes.has("annotations") else None
    extras = fluxextras.Extras()
    try:  # the controller's reading of the same annotations, with the same messages
        extras = fluxextras.parse(notes.node.get("annotations") if notes.has("annotations") else None, ref.name)
    except fluxextras.ExtrasError as exc:  # spelt as the controller spells it: metadata.annotations[KEY]
        ann = notes.sub("annotations", None)
        sink.add(origin, ann.node, exc.annotation, f"{ref}.{exc}".split("]: ", 1)[0] + "]", str(exc).split("]: ", 1)[-1])
    for key, why in ((fluxextras.HOLD_TAG, "file mode holds at the current tag"),
                     (fluxextras.APPROVE, "file mode approves with `imagebot approve`")):  # fmt: skip
        if key in (notes.node.get("annotations") or {}) and not any(p.severity is Severity.ERROR for p in sink.problems):
            sink.warn(notes.sub("annotations", None), key, f"honoured by `imagebot controller` only: {why}")
    warnings = sink.raise_errors()
    assert spec is not None
    spec = PolicySpec(spec.kind, spec.argument, spec.pattern, spec.extract, excludes)
    return Policy(ref, repo_key, spec, digest, interval, suspend, warnings, cosign, extras=extras)


def cosign_gate(pol: Policy, secrets: Mapping[tuple[str, str], fs.Secret], origin: str, line: int | None) -> Policy:
    """File mode's reading of ``imagebot.dev/cosign-secret``: the keys of the Secret when it is among the loaded
    files (its problems are errors), else a warning and a gate that fails when a tag must be verified."""
    if pol.cosign_secret is None:
        return pol
    ns, name = pol.ref.namespace, pol.cosign_secret
    where = f"metadata.annotations[{COSIGN_SECRET}]"
    ref = Reference("Secret", ns, name, str(pol.ref), where, Purpose.COSIGN_KEYS)
    secret = secrets.get((ns, name))
    if secret is None:
        problem = FluxProblem(pol.ref, where, f"{ref.target} ({ref.purpose}) is read from the cluster: not among the loaded "
                              "files", Severity.WARNING, origin, line)  # fmt: skip
        gate = VerifySpec((), secret=ref, unresolved=ref.needed("a tag must be verified; nothing is selected"))
        return replace(pol, verify=gate, warnings=(*pol.warnings, problem))
    try:
        secret_keys(secret.data, f"{ns}/{name}")
    except VerifyError as exc:
        raise FluxError([FluxProblem(pol.ref, where, str(exc), Severity.ERROR, origin, line)]) from None
    pems = tuple((k, v) for k, v in sorted(secret.data.items()) if k.endswith(".pub"))
    return replace(pol, verify=VerifySpec((), secret=ref, pems=pems))


# --- ImageUpdateAutomation ---------------------------------------------------------------------------------

_SIGNING_FIELD = "spec.git.commit.signingKey.secretRef"
_AUTOMATION_FIELDS = {"interval", "sourceRef", "git", "update", "suspend", "policySelector"}


def _update_path(u: Reader) -> str:
    """spec.update.path relative to the repository root ("" = the root); one leaving the repository is refused."""
    raw = u.get("path", str, "./").strip()
    rel = posixpath.normpath(raw or ".")
    if posixpath.isabs(raw) or rel == ".." or rel.startswith("../"):
        u.error("path", f"{raw!r} must be a path inside the repository (relative, without ..)")
        return ""
    return "" if rel == "." else rel


def _source(s: Reader, ref: ObjectRef) -> ObjectRef:
    src = s.sub("sourceRef", {"kind", "name", "namespace", "apiVersion"}, required=True)
    kind = src.get("kind", str, "GitRepository")
    if kind != "GitRepository":
        src.error("kind", f"{kind!r}: only a GitRepository can be updated")
    return ObjectRef("GitRepository", src.text("namespace", ref.namespace), src.text("name", "", required=True))


def references(obj: Mapping[str, Any], git_repository: Mapping[str, Any] | None = None) -> tuple[Reference, ...]:
    """The Secrets and ServiceAccounts ``obj`` names (and, for an ImageUpdateAutomation, its GitRepository's
    ``secretRef``): what the controller fetches (and watches) before translating ``obj``."""
    ref = object_ref(obj)
    sink = _Sink(ref)
    spec = Reader(sink, "", obj if isinstance(obj, dict) else Map(), str(ref), None).sub("spec", None)
    out: list[Reference] = []
    if ref.kind == "ImageRepository":
        out += _repository_refs(spec, ref)
    elif ref.kind == "ImageUpdateAutomation":
        name = _secret_name(spec.sub("git", None).sub("commit", None).sub("signingKey", None), "secretRef")
        if name:
            out.append(Reference("Secret", ref.namespace, name, str(ref), _SIGNING_FIELD, Purpose.SIGNING))
        if git_repository is not None:
            out += references(git_repository)
    elif ref.kind == "GitRepository":
        name = _secret_name(spec, "secretRef")
        if name:
            out.append(Reference("Secret", ref.namespace, name, str(ref), "spec.secretRef", Purpose.GIT_AUTH))
    return tuple(out)


def image_update_automation(
    obj: Mapping[str, Any],
    git_repository: Mapping[str, Any] | None,
    resolved: Resolved | None = None,
    origin: str = "",
    git_origin: str = "",
) -> Automation:
    """An ImageUpdateAutomation with the GitRepository it names: where to check out and push, the update
    path, the author, the ``messageTemplate`` (checked here against Flux's data for the object's API
    version: anything outside the supported subset is an error naming the construct), the signing key and
    the Git credentials."""
    resolved = resolved or Resolved()
    sink, s, ref = _open(obj, origin, _AUTOMATION_FIELDS)
    api = obj.get("apiVersion") if isinstance(obj, Mapping) else None
    api_version = gotemplate.ApiVersion.V1BETA2 if api == FLUX_IMAGE + "v1beta2" else gotemplate.ApiVersion.V1
    interval = s.duration("interval", DEFAULT_INTERVAL, positive=True)
    suspend = s.get("suspend", bool, False)
    source = _source(s, ref)
    if s.has("policySelector"):
        s.error("policySelector", "not supported: every ImagePolicy in the namespace is used")
    gg = s.sub("git", {"checkout", "commit", "push"})
    checkout = gg.sub("checkout", {"ref"}).sub("ref", None).text("branch")
    commit = gg.sub("commit", {"author", "messageTemplate", "signingKey", "messageTemplateValues"})
    author = commit.sub("author", {"name", "email"})
    author_name, author_email = author.text("name", "imagebot"), author.text("email", "imagebot@users.noreply.invalid")
    template = commit.get("messageTemplate", str, "")
    if template:
        try:
            gotemplate.check(template, "messageTemplate", api_version)
        except gotemplate.TemplateError as exc:
            commit.error("messageTemplate", str(exc))
    values_node = commit.sub("messageTemplateValues", None)
    values = tuple((str(k), v) for k, v in values_node.node.items() if isinstance(v, str))
    for k, v in values_node.node.items():
        if not isinstance(v, str):
            values_node.error(str(k), "must be a string")
    push = gg.sub("push", {"branch", "refspec", "options"})
    for extra in ("refspec", "options"):
        if push.has(extra):
            push.error(extra, "not supported")
    push_branch = push.text("branch")
    update = s.sub("update", {"path", "strategy"})
    update.choice("strategy", _Strategy, _Strategy.SETTERS)
    path = _update_path(update)
    unresolved: list[Reference] = []
    references_: list[Reference] = []
    signing: fs.SigningKey | None = None
    sk = commit.sub("signingKey", {"secretRef", "type"}) if commit.has("signingKey") else None
    if sk is not None:
        key_type = sk.get("type", str, "gpg")
        name = _secret_name(sk, "secretRef")
        if not sk.has("secretRef"):
            sk.error("secretRef", "required")
        if name:
            r = Reference("Secret", ref.namespace, name, str(ref), _SIGNING_FIELD, Purpose.SIGNING)
            references_.append(r)
            secret, missing = _lookup(sink, sk, "secretRef", r, resolved)
            if missing:
                unresolved.append(r)
            if secret is not None:
                signing = _parsed(sk, "secretRef", fs.signing_key, secret, key_type)
            elif not missing and key_type not in tuple(fs.SigningKeyType):
                sk.error("type", f"{key_type!r} is not one of gpg, ssh")
    # the GitRepository: its URL, default branch and transport credentials
    url, branch, creds = "", checkout or "", None
    if git_repository is None:
        s.error("sourceRef", f"{source} is not among the loaded objects" if not resolved.cluster else f"{source} not found")
    else:
        gref = object_ref(git_repository)
        if gref.key != source.key or gref.kind != "GitRepository":
            s.error("sourceRef", f"names {source}, not {gref}")
        gsink = _Sink(gref)
        _metadata(gsink, git_origin or origin, git_repository, gref)
        gspec = Reader(gsink, git_origin or origin, git_repository, str(gref), None).sub("spec", None)
        url = gspec.text("url", "", required=True)
        branch = branch or gspec.sub("ref", None).text("branch") or "main"
        gname = _secret_name(gspec, "secretRef")
        if gname:
            r = Reference("Secret", gref.namespace, gname, str(gref), "spec.secretRef", Purpose.GIT_AUTH)
            references_.append(r)
            secret, missing = _lookup(gsink, gspec, "secretRef", r, resolved)
            if missing:
                unresolved.append(r)
            if secret is not None and url:
                creds = _parsed(gspec, "secretRef", fs.git_credentials, secret, url)
        sink.problems += gsink.problems
    warnings = sink.raise_errors()
    other = push_branch if push_branch not in (None, branch) else None
    return Automation(
        ref,
        source,
        url,
        branch,
        other,
        path,
        author_name,
        author_email,
        template,
        values,
        api_version,
        signing,
        creds,
        interval,
        suspend,
        tuple(references_),
        tuple(unresolved),
        warnings,
    )


# --- a whole set (file mode) --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Translation:
    repositories: tuple[Repository, ...] = ()
    policies: tuple[Policy, ...] = ()
    automations: tuple[Automation, ...] = ()
    problems: tuple[FluxProblem, ...] = ()

    @property
    def errors(self) -> tuple[FluxProblem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[FluxProblem, ...]:
        return tuple(p for p in self.problems if p.severity is Severity.WARNING)

    def config(self) -> Config:
        """imagebot's Config: one image per ImageRepository, one environment per ImagePolicy and
        ImageUpdateAutomation of its namespace (named after the policy), one git target per automation."""
        if self.errors:
            raise FluxError(self.errors)
        problems = list(self.warnings)
        gits: list[GitConfig] = []
        targets: dict[str, list[tuple[str, Target]]] = {}
        for a in sorted(self.automations, key=lambda a: a.ref.key):
            if a.suspend:
                problems.append(FluxProblem(a.ref, "spec.suspend", "suspended: not run", Severity.WARNING))
                continue
            git_name = f"{a.ref.namespace}/{a.ref.name}"
            gits.append(
                GitConfig(
                    git_name,
                    a.url,
                    a.branch,
                    author_name=a.author_name,
                    author_email=a.author_email,
                    credentials=a.credentials,
                    flux=a.commit(),
                    unresolved=a.unresolved,
                )
            )
            mode = Mode.PUSH_BRANCH if a.push_branch else Mode.PUSH
            targets.setdefault(a.ref.namespace, []).append((a.ref.name, Target(git_name, a.path, mode, a.push_branch)))
        repos = {r.ref.key: r for r in self.repositories}
        images: dict[tuple[str, str], ImageConfig] = {}
        for p in self.policies:  # in the order given: environments, like images, keep the files' order
            repo = repos.get(p.repository)
            if repo is None or repo.suspend or p.suspend:
                if repo is not None:
                    what = p.ref if p.suspend else repo.ref
                    problems.append(FluxProblem(what, "spec.suspend", "suspended: not run", Severity.WARNING))
                continue
            ns_targets = targets.get(p.ref.namespace, [])
            if not ns_targets:
                problems.append(
                    FluxProblem(p.ref, "", f"no ImageUpdateAutomation in namespace {p.ref.namespace}: nothing writes its tags",
                                Severity.WARNING)
                )  # fmt: skip
            for auto_name, target in ns_targets:
                env_name = p.ref.name if len(ns_targets) == 1 else f"{p.ref.name}@{auto_name}"
                digest = p.digest_reflection is not DigestReflection.NEVER
                x = p.extras
                promote = _promote_from(p, self.policies, auto_name if len(ns_targets) > 1 else None)
                env = Environment(env_name, None if promote else p.spec, target, setter=p.setter, digest=digest, verify=p.verify,
                                  promote_from=promote, soak_seconds=x.soak_seconds, min_age_seconds=x.min_age_seconds,
                                  allow_downgrade=x.allow_downgrade, hold=x.held)  # fmt: skip
                cur = images.get(repo.ref.key)
                envs = (*(cur.environments if cur else ()), env)
                images[repo.ref.key] = ImageConfig(f"{repo.ref.namespace}/{repo.ref.name}", repo.image, envs, repo.interval)
        registries, clash = _registries(self.repositories)
        if clash:
            raise FluxError(clash)
        ordered = tuple(images[r.ref.key] for r in self.repositories if r.ref.key in images)
        return Config(ordered, tuple(gits), registries, warnings=tuple(str(p) for p in problems))


def _promote_from(p: Policy, policies: Sequence[Policy], automation: str | None) -> str | None:
    """The environment an ImagePolicy's ``imagebot.dev/promote-from`` names in file mode: its source's environment,
    which must be one of the same ImageRepository (file mode's environments are an image's)."""
    name = p.extras.promote_from
    if name is None:
        return None
    where = f"metadata.annotations[{fluxextras.PROMOTE_FROM}]"
    src = next((q for q in policies if q.ref.namespace == p.ref.namespace and q.ref.name == name), None)
    if src is None:
        raise FluxError([FluxProblem(p.ref, where, f"ImagePolicy {p.ref.namespace}/{name} is not among the loaded files")])
    if src.repository != p.repository:
        why = (f"file mode promotes between ImagePolicies of one ImageRepository; {name} selects from "
               f"{src.repository[0]}/{src.repository[1]} (`imagebot controller` promotes across them)")  # fmt: skip
        raise FluxError([FluxProblem(p.ref, where, why)])
    return name if automation is None else f"{name}@{automation}"


def _registries(repositories: Sequence[Repository]) -> tuple[tuple[RegistryConfig, ...], list[FluxProblem]]:
    """One RegistryConfig per host (imagebot's registry client is per host): ImageRepositories on one host must
    agree on credentials and TLS."""
    by_host: dict[str, Repository] = {}
    clash: list[FluxProblem] = []
    for r in repositories:
        a = r.access
        if not (a.credentials or a.tls or a.unresolved or a.insecure):
            continue
        first = by_host.setdefault(a.host, r)
        if first is not r and (first.access.credentials, first.access.tls, first.access.insecure) != (
            a.credentials,
            a.tls,
            a.insecure,
        ):
            clash.append(
                FluxProblem(
                    r.ref, "spec", f"registry {a.host} is also used by {first.ref} with other credentials, TLS or insecure "
                    "setting: file mode has one registry client per host (the controller has one per ImageRepository)"
                )
            )  # fmt: skip
    out = []
    for host, r in by_host.items():
        a = r.access
        unresolved = tuple(u for rr in repositories if rr.access.host == host for u in rr.access.unresolved)
        out.append(RegistryConfig(host, plain_http=a.insecure, credentials=a.credentials, tls=a.tls, unresolved=unresolved))
    return tuple(out), clash


def _kind_of(d: Any) -> tuple[str, str]:
    if not isinstance(d, Mapping):
        return "", ""
    api, kind = d.get("apiVersion"), d.get("kind")
    return (api if isinstance(api, str) else ""), (kind if isinstance(kind, str) else "")


def translate(objects: Sequence[Any], resolved: Resolved | None = None, origins: Sequence[str] | None = None) -> Translation:
    """Every object of a set, problems collected (never raised). v1 Secret and ServiceAccount documents among
    ``objects`` resolve the references the Flux objects make (file mode's local alternative to the cluster)."""
    origin_of = list(origins) if origins is not None else [""] * len(objects)
    problems: list[FluxProblem] = []
    secrets = dict(resolved.secrets) if resolved else {}
    accounts = dict(resolved.service_accounts) if resolved else {}
    repos: dict[tuple[str, str], tuple[int, Any]] = {}
    gitrepos: dict[tuple[str, str], tuple[int, Any]] = {}
    policies: list[tuple[int, Any]] = []
    automations: list[tuple[int, Any]] = []
    for i, d in enumerate(objects):
        api, kind = _kind_of(d)
        ref = object_ref(d)
        if api == "v1" and kind == "Secret":
            try:
                secret = fs.secret_from_object({**d, "metadata": {**(d.get("metadata") or {}), "namespace": ref.namespace}})
                secrets[(ref.namespace, ref.name)] = secret
            except (fs.SecretError, TypeError) as exc:
                problems.append(FluxProblem(ref, "", str(exc), Severity.ERROR, origin_of[i], line_of(d, None) or None))
        elif api == "v1" and kind == "ServiceAccount":
            accounts[(ref.namespace, ref.name)] = pull_secret_names(d)
        elif kind == "ImageRepository" and api.startswith(FLUX_IMAGE):
            repos[ref.key] = (i, d)
        elif kind == "ImagePolicy" and api.startswith(FLUX_IMAGE):
            policies.append((i, d))
        elif kind == "ImageUpdateAutomation" and api.startswith(FLUX_IMAGE):
            automations.append((i, d))
        elif kind == "GitRepository" and api.startswith(FLUX_SOURCE):
            gitrepos[ref.key] = (i, d)
            sink = _Sink(ref)
            _metadata(sink, origin_of[i], d, ref)  # also when no automation names it
            problems += sink.problems
        else:
            problems.append(
                FluxProblem(None, kind or "object", "not one of ImageRepository, ImagePolicy, ImageUpdateAutomation, "
                            "GitRepository (or a v1 Secret / ServiceAccount they name)", Severity.ERROR, origin_of[i],
                            line_of(d, "kind") or None)
            )  # fmt: skip
    res = Resolved(secrets, accounts, resolved.cluster if resolved else False)
    out_repos: dict[tuple[str, str], Repository] = {}
    for key, (i, d) in repos.items():
        try:
            out_repos[key] = image_repository(d, res, origin_of[i])
            problems += out_repos[key].warnings
        except FluxError as exc:
            problems += exc.problems
    out_policies: list[Policy] = []
    for i, d in policies:
        try:
            pol = image_policy(d, None, origin_of[i])
        except FluxError as exc:
            problems += exc.problems
            continue
        repo = out_repos.get(pol.repository)
        if repo is None:
            if pol.repository not in repos:
                where = "spec.imageRepositoryRef"
                msg = f"ImageRepository {pol.repository[0]}/{pol.repository[1]} is not among the loaded files"
                problems.append(
                    FluxProblem(pol.ref, where, msg, Severity.ERROR, origin_of[i], _line(d, "spec", "imageRepositoryRef"))
                )
            continue
        try:
            pol = image_policy(d, repo, origin_of[i])
            pol = cosign_gate(pol, secrets, origin_of[i], _line(d, "metadata", "annotations"))
        except FluxError as exc:
            problems += exc.problems
            continue
        problems += pol.warnings
        out_policies.append(pol)
    out_autos: list[Automation] = []
    for i, d in automations:
        gi, gdoc = gitrepos.get(_source_key(d), (i, None))
        try:
            auto = image_update_automation(d, gdoc, res, origin_of[i], origin_of[gi])
        except FluxError as exc:
            problems += exc.problems
            continue
        problems += auto.warnings
        out_autos.append(auto)
    return Translation(tuple(out_repos.values()), tuple(out_policies), tuple(out_autos), _unique(problems))


def _source_key(d: Any) -> tuple[str, str]:
    """The (namespace, name) an automation's sourceRef names, read leniently (its errors are reported later)."""
    ref = object_ref(d)
    spec = d.get("spec") if isinstance(d, Mapping) else None
    src = spec.get("sourceRef") if isinstance(spec, Mapping) else None
    if not isinstance(src, Mapping):
        return ("", "")
    ns, name = src.get("namespace") or ref.namespace, src.get("name")
    return (ns, name) if isinstance(ns, str) and isinstance(name, str) else ("", "")


def _line(d: Any, *path: str) -> int | None:
    node = d
    for p in path[:-1]:
        node = node.get(p) if isinstance(node, Mapping) else None
    return line_of(node, path[-1]) or None if node is not None else None


def _unique(problems: Sequence[FluxProblem]) -> tuple[FluxProblem, ...]:
    """Each problem once (a GitRepository shared by two automations is read twice), in file and line order."""
    seen: dict[str, FluxProblem] = {}
    for p in problems:
        seen.setdefault(str(p) + p.severity, p)
    return tuple(sorted(seen.values(), key=lambda p: (p.origin, p.line or 0)))
