"""Registry credentials and the distribution auth flows (anonymous, Basic, Bearer token).

Credentials come from a docker ``config.json`` (``DOCKER_CONFIG`` or ``~/.docker``: ``auths``,
``credHelpers``, ``credsStore``) read through the ``docker`` package's ``docker.auth`` module,
or from references in our configuration (an environment variable or a file holding
``user:password``) — never from command-line arguments, and never logged: :class:`Credentials`
redacts itself in ``repr``.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from imagebot.errors import ClusterOnlyError, ConfigError


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***')"


class CredentialSource(Protocol):
    def lookup(self, registry: str) -> Credentials | None: ...


def parse_user_password(text: str, origin: str) -> Credentials:
    user, sep, password = text.strip().partition(":")
    if not sep or not user:
        raise ConfigError(f"credentials in {origin} must be 'username:password'")
    return Credentials(user, password)


@dataclass(frozen=True, slots=True)
class EnvCredentials:
    """``user:password`` in an environment variable (the name is configuration, the value secret)."""

    variable: str
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)

    def lookup(self, registry: str) -> Credentials | None:
        value = self.environ.get(self.variable)
        if value is None:
            raise ConfigError(f"environment variable {self.variable} (registry credentials) is not set")
        return parse_user_password(value, f"${self.variable}")


@dataclass(frozen=True, slots=True)
class FileCredentials:
    path: Path

    def lookup(self, registry: str) -> Credentials | None:
        try:
            text = self.path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read registry credentials file {self.path}: {exc.strerror}") from None
        return parse_user_password(text, str(self.path))


@dataclass(frozen=True, slots=True)
class DockerConfigCredentials:
    """``config.json`` through ``docker.auth`` (auths, credHelpers, credsStore)."""

    config_dir: Path | None = None  # None: $DOCKER_CONFIG, then ~/.docker

    def lookup(self, registry: str) -> Credentials | None:
        from docker import auth as docker_auth
        from docker.errors import DockerException

        directory = self.config_dir or (Path(os.environ["DOCKER_CONFIG"]) if os.environ.get("DOCKER_CONFIG") else None)
        config_path = str(directory / "config.json") if directory else None
        try:
            cfg = docker_auth.load_config(config_path=config_path)
            hub = registry in ("docker.io", "index.docker.io", "registry-1.docker.io")
            found = docker_auth.resolve_authconfig(cfg, None if hub else registry)
        except (DockerException, OSError, ValueError) as exc:
            raise ConfigError(f"cannot read docker credentials for {registry}: {type(exc).__name__}") from None
        if not found:
            return None
        user = found.get("username") or found.get("Username")
        password = found.get("password") or found.get("Password") or found.get("Secret")
        if user and password is not None:
            return Credentials(user, password)
        token = found.get("identitytoken") or found.get("IdentityToken")
        if token:
            return Credentials("<token>", token)
        return None


@dataclass(frozen=True, slots=True)
class StaticCredentials:
    """Credentials held in memory (from a Flux Secret): the same for every lookup."""

    credentials: Credentials

    def lookup(self, registry: str) -> Credentials | None:
        return self.credentials


@dataclass(frozen=True, slots=True)
class ClusterOnlyCredentials:
    """The last source of a chain in file mode: the credentials are in a Secret only the cluster holds.
    Consulted only when the registry asks for credentials — then it fails, naming the object and field."""

    message: str

    def lookup(self, registry: str) -> Credentials | None:
        raise ClusterOnlyError(self.message)


@dataclass(frozen=True, slots=True)
class Chain:
    sources: tuple[CredentialSource, ...]

    def lookup(self, registry: str) -> Credentials | None:
        for s in self.sources:
            found = s.lookup(registry)
            if found is not None:
                return found
        return None


NO_CREDENTIALS: CredentialSource = Chain(())

# a name starts where no name character precedes it: else each character of a 64 KiB run of them is a new start
# that rescans the run (quadratic CPU that no deadline interrupts)
_PARAM = re.compile(r'(?<![A-Za-z0-9_])([A-Za-z0-9_]+)=(?:"([^"]*)"|([^,\s]*))', re.ASCII)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…",scope="…"`` → ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


@dataclass(slots=True)
class _Token:
    value: str
    expires: float


class TokenCache:
    """Bearer tokens per (realm, service, scope, user), kept until shortly before they expire."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._tokens: dict[tuple[str, str, str, str], _Token] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def get(self, key: tuple[str, str, str, str]) -> str | None:
        with self._lock:
            tok = self._tokens.get(key)
            if tok is None or tok.expires <= self._clock():
                return None
            return tok.value

    def put(self, key: tuple[str, str, str, str], value: str, expires_in: float) -> None:
        with self._lock:
            # distribution: default 60 s; renew 10% (at most 30 s) early
            self._tokens[key] = _Token(value, self._clock() + max(1.0, expires_in - min(30.0, expires_in * 0.1)))
