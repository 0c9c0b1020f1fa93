"""The bot's configuration as frozen values (validated once, at load)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gitopskit.notify import NotifyConfig
from imagebot.gitops.message import Templates
from imagebot.gitops.writer import Mode
from imagebot.policy import PolicySpec
from imagebot.refs import ImageRef


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

    def git_by_name(self, name: str) -> GitConfig:
        return next(g for g in self.git if g.name == name)

    def image_for(self, repository: str) -> list[ImageConfig]:
        return [i for i in self.images if i.repository.canonical_name == repository]
