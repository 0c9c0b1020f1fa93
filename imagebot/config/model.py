"""The bot's configuration as frozen values (validated once, at load)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from gitopskit.notify import NotifyConfig
from imagebot.gitops.message import Templates
from imagebot.gitops.writer import Mode
from imagebot.policy import PolicySpec
from imagebot.refs import ImageRef

if TYPE_CHECKING:  # field types only: a cold start without Flux objects never imports the Secret formats
    from gitopskit.fluxsecrets import GitCredentials, RegistryCredentials, SigningKey, TLSMaterial


class Purpose(StrEnum):
    """What a Secret (or ServiceAccount) named by a Flux object is for."""

    REGISTRY_AUTH = "registry credentials"
    REGISTRY_TLS = "registry TLS"
    PULL_SECRETS = "image pull secrets"
    GIT_AUTH = "git credentials"
    SIGNING = "commit signing key"
    COSIGN_KEYS = "cosign public keys"


@dataclass(frozen=True, slots=True)
class Reference:
    """A cluster object (``Secret``, ``ServiceAccount``) a Flux object names in one of its fields."""

    kind: str
    namespace: str
    name: str
    owner: str  # the naming object, e.g. "ImageRepository flux-system/podinfo"
    field: str  # e.g. "spec.secretRef"
    purpose: Purpose

    @property
    def target(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def needed(self, why: str) -> str:
        """One line for when file mode meets a field only the cluster can answer."""
        return (
            f"{self.owner}: {self.field}: {why}; {self.target} ({self.purpose}) is read from the cluster and is not "
            "among the loaded files (add its manifest to the --config files, or run `imagebot controller`)"
        )


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    host: str
    plain_http: bool = False
    ca_file: Path | None = None
    credentials_env: str | None = None
    credentials_file: Path | None = None
    docker_config: Path | None = None
    requests_per_second: float | None = None
    max_concurrency: int = 8
    credentials: RegistryCredentials | None = None  # from a Flux Secret (secretRef, serviceAccountName)
    tls: TLSMaterial | None = None  # from a Flux certSecretRef
    unresolved: tuple[Reference, ...] = ()  # Flux fields file mode could not read: an error only when needed


@dataclass(frozen=True, slots=True)
class FluxCommit:
    """What an ImageUpdateAutomation adds to a git target: Flux's commit message and signing."""

    namespace: str
    name: str
    message_template: str = ""  # Go text/template ("" = Flux's default message)
    values: tuple[tuple[str, str], ...] = ()  # messageTemplateValues
    api_version: str = "v1"  # v1beta2 still offers the deprecated .Updated
    signing_key: SigningKey | None = None


@dataclass(frozen=True, slots=True)
class GitConfig:
    name: str
    url: str
    branch: str = "main"
    username_env: str | None = None
    token_env: str | None = None
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None
    author_name: str = "imagebot"
    author_email: str = "imagebot@users.noreply.invalid"
    signing_key_file: Path | None = None
    github_api: str = "https://api.github.com"
    github_repo: str | None = None
    github_token_env: str | None = None
    templates: Templates = field(default_factory=Templates)
    credentials: GitCredentials | None = None  # from a GitRepository's secretRef
    flux: FluxCommit | None = None
    unresolved: tuple[Reference, ...] = ()  # Flux fields file mode could not read: an error only when needed


@dataclass(frozen=True, slots=True)
class Target:
    git: str  # name of a GitConfig
    path: str = ""
    mode: Mode = Mode.PUSH
    push_branch: str | None = None
    group: str = "default"
    labels: tuple[str, ...] = ()
    reviewers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VerifySpec:
    """``verify: {cosign: {key | keys | secretRef}}`` (or a Flux ImagePolicy's ``imagebot.dev/cosign-secret``): only
    tags with a valid cosign signature by one of these keys."""

    keys: tuple[Path, ...]  # PEM public key files (ECDSA P-256 or Ed25519)
    max_per_pass: int = 10  # signature fetches per environment and pass (cached verdicts are free)
    secret: Reference | None = None  # the Secret whose *.pub entries are keys too
    pems: tuple[tuple[str, bytes], ...] = ()  # that Secret's entries (name, PEM), when it was among the loaded files
    unresolved: str = ""  # else the failure when a tag must be verified: only the cluster holds the Secret


@dataclass(frozen=True, slots=True)
class Environment:
    name: str
    policy: PolicySpec | None  # None when promoted from another environment
    target: Target
    setter: str | None = None  # the $imagepolicy REF this environment feeds (else: marker-free by repository)
    promote_from: str | None = None
    soak_seconds: float = 0.0
    min_age_seconds: float = 0.0
    allow_downgrade: bool = False
    hold: bool = False
    digest: bool = False  # pin the digest too (repo:tag@sha256:…)
    verify: VerifySpec | None = None  # the signature gate (the image's, unless the environment sets its own)


class DiscoverLevel(StrEnum):
    """How far discovery moves a reference from its current tag (Renovate's default levels)."""

    PATCH = "patch"
    MINOR = "minor"
    MAJOR = "major"


@dataclass(frozen=True, slots=True)
class DiscoverConfig:
    """One ``discover:`` entry: every reference under ``path`` of ``git`` without an ``images:`` entry moves within
    ``level``; ``include`` / ``exclude`` are shell globs (fnmatch) over the repository name; delivered like a target."""

    git: str
    path: str
    level: DiscoverLevel
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    mode: Mode = Mode.PUSH
    push_branch: str | None = None
    labels: tuple[str, ...] = ()
    reviewers: tuple[str, ...] = ()
    interval_seconds: float | None = None  # None: the config's interval

    @property
    def name(self) -> str:
        """What its state rows and pull-request branch are named by: the git entry and the path."""
        return f"{self.git}:{self.path.strip('/') or '.'}"


@dataclass(frozen=True, slots=True)
class ImageConfig:
    name: str
    repository: ImageRef
    environments: tuple[Environment, ...]
    interval_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class Config:
    images: tuple[ImageConfig, ...]
    git: tuple[GitConfig, ...]
    registries: tuple[RegistryConfig, ...] = ()
    interval_seconds: float = 300.0
    debounce_seconds: float = 2.0
    state_file: Path = Path("imagebot-state.db")
    webhook_secret_env: str | None = None
    cache_dir: Path | None = None
    source: str = ""
    notifications: NotifyConfig = field(default_factory=NotifyConfig)  # the `notifications:` section (README)
    discover: tuple[DiscoverConfig, ...] = ()  # the `discover:` entries (README, Discovery)
    warnings: tuple[str, ...] = ()  # valid, but something only the cluster can provide (config validate prints them)

    def git_by_name(self, name: str) -> GitConfig:
        return next(g for g in self.git if g.name == name)

    def image_for(self, repository: str) -> list[ImageConfig]:
        return [i for i in self.images if i.repository.canonical_name == repository]
