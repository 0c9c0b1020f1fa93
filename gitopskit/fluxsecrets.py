"""Flux's Secret formats, parsed (pure): registry, Git transport, TLS and commit-signing credentials.

Flux keeps credentials in Secrets with well-known keys; a team moving from Flux keeps its Secrets as
they are. Both halves read them (the reconciler's GitRepository and imagebot's image objects use the
same Git format), so the parsing lives here, with no I/O: the caller fetches the Secret object from the
API server and hands its JSON here.

Every error names the Secret (``namespace/name``) and the key — never a value, not even a prefix of
one: a wrong key pasted into the wrong field must not end up in a log or a status condition.
Values are bounded: a Secret the API server stores is at most 1 MiB, so anything larger did not come
from one and is refused before decoding.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from gitopskit.errors import KitError

MAX_SECRET_BYTES = 1024 * 1024  # the API server's own limit for a whole Secret
DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_LABEL = r"[a-z0-9*](?:[a-z0-9*-]*[a-z0-9*])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:]+\])(?::[0-9]{{1,5}})?")


class SecretError(KitError):
    """A Secret is missing a key Flux's format needs, or a value is malformed. Names the Secret and key."""


class SecretType(StrEnum):
    OPAQUE = "Opaque"
    DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
    DOCKER_CFG = "kubernetes.io/dockercfg"
    BASIC_AUTH = "kubernetes.io/basic-auth"
    SSH_AUTH = "kubernetes.io/ssh-auth"
    TLS = "kubernetes.io/tls"


@dataclass(frozen=True, slots=True)
class Secret:
    """A Secret's decoded data. ``repr`` shows the keys, never the values."""

    namespace: str
    name: str
    type: str
    data: Mapping[str, bytes] = field(repr=False)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def __repr__(self) -> str:
        return f"Secret({self.ref!r}, type={self.type!r}, keys={sorted(self.data)!r})"

    def has(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str, *, required: bool = True) -> str | None:
        """The value of ``key`` as UTF-8 text (``None`` when absent and not required)."""
        raw = self.data.get(key)
        if raw is None:
            if required:
                raise SecretError(f"Secret {self.ref}: key {key!r} is missing")
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretError(f"Secret {self.ref}: key {key!r} is not UTF-8 text") from None

    def nonempty(self, key: str, *, required: bool = True) -> str | None:
        value = self.text(key, required=required)
        if value is not None and not value.strip():
            raise SecretError(f"Secret {self.ref}: key {key!r} is empty")
        return value

    def header_value(self, key: str, *, required: bool = True) -> str | None:
        """A value sent as an HTTP header (a bearer token): non-empty, with no line break or control character.
        git passes ``http.extraHeader`` to curl as it is, so ``tok\\r\\nX-Other: 1`` became a second header and a
        trailing newline (``kubectl create secret --from-file`` of an ``echo``ed file) ended the request head early;
        Go's net/http (Flux) refuses such a value too."""
        value = self.nonempty(key, required=required)
        if value is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise SecretError(
                f"Secret {self.ref}: key {key!r} holds a line break or control character (a trailing newline? "
                "write the Secret with --from-literal, or strip the file)"
            )
        return value


def secret_from_object(obj: Mapping[str, Any]) -> Secret:
    """A Secret from its API JSON: ``data`` values are base64 (strictly checked); ``stringData`` (only in
    manifests, never returned by the API server) is taken as UTF-8 text and wins, as the API server does."""
    if not isinstance(obj, Mapping):
        raise SecretError("a Secret must be an object")
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name = meta.get("name")
    name = name if isinstance(name, str) else "<unnamed>"
    namespace = meta.get("namespace")
    namespace = namespace if isinstance(namespace, str) else ""
    ref = f"{namespace}/{name}" if namespace else name
    kind = obj.get("type", SecretType.OPAQUE) or SecretType.OPAQUE
    if not isinstance(kind, str):
        raise SecretError(f"Secret {ref}: type must be a string")
    data: dict[str, bytes] = {}
    total = 0
    for section in ("data", "stringData"):
        values = obj.get(section)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise SecretError(f"Secret {ref}: {section} must be a map of keys to strings")
        for key, value in values.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise SecretError(f"Secret {ref}: {section} must be a map of keys to strings (key {str(key)!r})")
            if len(value) > 2 * MAX_SECRET_BYTES:  # refuse before any work on it
                raise SecretError(f"Secret {ref}: key {key!r} is larger than {MAX_SECRET_BYTES} bytes")
            decoded = value.encode("utf-8") if section == "stringData" else _b64(value.encode("ascii", "replace"), ref, key)
            total += len(decoded) - len(data.get(key, b""))
            if len(decoded) > MAX_SECRET_BYTES or total > MAX_SECRET_BYTES:
                raise SecretError(f"Secret {ref}: its data is larger than {MAX_SECRET_BYTES} bytes (at key {key!r})")
            data[key] = decoded
    return Secret(namespace, name, kind, data)


def _b64(raw: bytes, ref: str, key: str) -> bytes:
    compact = b"".join(raw.split())
    if len(compact) % 4 or not _BASE64.fullmatch(compact):
        raise SecretError(f"Secret {ref}: key {key!r} is not valid base64")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(f"Secret {ref}: key {key!r} is not valid base64") from None


# --- registries: kubernetes.io/dockerconfigjson -------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistryCredentials:
    username: str
    password: str = field(repr=False)  # a password, or the identity token when username is "<token>"

    def __repr__(self) -> str:
        return f"RegistryCredentials(username={self.username!r}, password='***')"


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """One ``auths`` entry: host (``*`` matches one DNS label, as the kubelet does), optional path prefix."""

    host: str
    path: str
    credentials: RegistryCredentials
    key: str  # the key as written in the Secret, for messages

    def matches(self, host: str, path: str) -> bool:
        if not _host_matches(self.host, host):
            return False
        return not self.path or path == self.path or path.startswith(self.path + "/")


def _host_matches(pattern: str, host: str) -> bool:
    if "*" not in pattern:
        return pattern == host
    p_name, _, p_port = pattern.partition(":")
    h_name, _, h_port = host.partition(":")
    p_labels, h_labels = p_name.split("."), h_name.split(".")
    return (
        p_port == h_port
        and len(p_labels) == len(h_labels)
        and all(fnmatch.fnmatchcase(h, p) for p, h in zip(p_labels, h_labels, strict=True))
    )


def normalize_registry(key: str) -> tuple[str, str]:
    """``(host, path)`` for an ``auths`` key the way docker reads it: scheme and the ``/v1/`` or ``/v2/`` API
    suffix dropped, host lower-cased, every Docker Hub spelling (``https://index.docker.io/v1/``) is docker.io."""
    text = key.strip()
    if "://" in text:
        parts = urlsplit(text)
        host, path = parts.netloc, parts.path
    else:
        host, _, path = text.partition("/")
    host = host.lower()
    if "@" in host or not _HOST.fullmatch(host):
        raise ValueError(f"{key!r} is not a registry host")
    path = path.strip("/")
    if path in ("v1", "v2"):  # the API version docker login writes, not a repository prefix
        path = ""
    if host in _HUB_ALIASES:
        host, path = DOCKER_HUB, ""
    return host, path


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """The registries a ``dockerconfigjson`` Secret holds credentials for."""

    secret: str
    entries: tuple[RegistryEntry, ...]

    def lookup(self, registry: str, repository: str = "") -> RegistryCredentials | None:
        """The credentials for ``registry`` (e.g. ``ghcr.io``, ``index.docker.io``) and repository path: an exact
        host beats a wildcard, then the longest path prefix wins."""
        host, _ = normalize_registry(registry)
        found = [e for e in self.entries if e.matches(host, repository.strip("/"))]
        if not found:
            return None
        return max(found, key=lambda e: ("*" not in e.host, len(e.path))).credentials

    @property
    def registries(self) -> tuple[str, ...]:
        return tuple(f"{e.host}/{e.path}" if e.path else e.host for e in self.entries)


def docker_config(secret: Secret) -> DockerConfig:
    """Per-registry credentials from a ``kubernetes.io/dockerconfigjson`` Secret (``.dockerconfigjson``:
    ``{"auths": {HOST: {auth | username+password | identitytoken}}}``), or the legacy ``kubernetes.io/dockercfg``
    (``.dockercfg``: the ``auths`` map itself)."""
    if secret.has(".dockerconfigjson"):
        key = ".dockerconfigjson"
    elif secret.has(".dockercfg"):
        key = ".dockercfg"
    else:
        raise SecretError(f"Secret {secret.ref}: key '.dockerconfigjson' is missing (type {SecretType.DOCKER_CONFIG_JSON})")
    text = secret.text(key)
    assert text is not None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise SecretError(f"Secret {secret.ref}: key {key!r} is not valid JSON") from None
    if key == ".dockerconfigjson":
        if not isinstance(doc, dict) or not isinstance(doc.get("auths", {}), dict):
            raise SecretError(f"Secret {secret.ref}: key {key!r} must be an object with an 'auths' map")
        auths = doc.get("auths", {})
    else:
        auths = doc
        if not isinstance(auths, dict):
            raise SecretError(f"Secret {secret.ref}: key {key!r} must be a map of registries")
    entries: dict[tuple[str, str], RegistryEntry] = {}
    for registry, entry in auths.items():
        where = f"{key} auths[{registry!r}]" if len(registry) <= 255 else f"{key} auths[<{len(registry)} chars>]"
        try:
            host, path = normalize_registry(registry)
        except ValueError:
            raise SecretError(f"Secret {secret.ref}: {where}: not a registry host") from None
        creds = _entry_credentials(entry, secret.ref, where)
        previous = entries.get((host, path))
        if previous is not None and previous.credentials != creds:
            raise SecretError(
                f"Secret {secret.ref}: {key} auths[{previous.key!r}] and auths[{registry!r}] both name "
                f"{host}{'/' + path if path else ''} with different credentials"
            )
        entries[(host, path)] = RegistryEntry(host, path, creds, registry)
    return DockerConfig(secret.ref, tuple(entries.values()))


def _entry_credentials(entry: object, ref: str, where: str) -> RegistryCredentials:
    if not isinstance(entry, dict):
        raise SecretError(f"Secret {ref}: {where} must be an object")
    for k in ("auth", "username", "password", "identitytoken"):
        if k in entry and not isinstance(entry[k], str):
            raise SecretError(f"Secret {ref}: {where}.{k} must be a string")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(entry["auth"].encode("ascii"), validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeError):
            raise SecretError(f"Secret {ref}: {where}.auth is not base64 of 'username:password'") from None
        user, sep, password = decoded.partition(":")
        if not sep or not user:
            raise SecretError(f"Secret {ref}: {where}.auth is not base64 of 'username:password'")
        return RegistryCredentials(user, password)
    if entry.get("identitytoken"):
        return RegistryCredentials("<token>", entry["identitytoken"])
    if entry.get("username"):
        if "password" not in entry:
            raise SecretError(f"Secret {ref}: {where}.password is missing (username is set)")
        return RegistryCredentials(entry["username"], entry["password"])
    raise SecretError(f"Secret {ref}: {where} has no credentials (auth, username/password or identitytoken)")


# --- Git transport: username/password, bearerToken, identity/known_hosts -------------------------


class GitAuthKind(StrEnum):
    NONE = "none"
    BASIC = "basic"
    BEARER = "bearer"
    SSH = "ssh"


@dataclass(frozen=True, slots=True)
class GitCredentials:
    """What a GitRepository's ``secretRef`` provides for its URL's transport."""

    kind: GitAuthKind
    username: str = ""
    password: str = field(default="", repr=False)  # basic auth password, or the SSH key's passphrase
    bearer_token: str = field(default="", repr=False)
    identity: str = field(default="", repr=False)  # the SSH private key, PEM or OpenSSH
    known_hosts: str = ""
    ca: str = ""  # PEM bundle for HTTPS (``ca.crt``)

    def __repr__(self) -> str:
        return f"GitCredentials(kind={self.kind.value!r}, username={self.username!r}, secrets='***')"


_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.+-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.S)
_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_KNOWN_HOST_LINE = re.compile(r"(?:@\S+\s+)?\S+\s+(?:ssh|ecdsa|sk-)[\w@.-]+\s+[A-Za-z0-9+/]+={0,3}(?:\s.*)?")


def git_credentials(secret: Secret, url: str) -> GitCredentials:
    """Credentials for ``url`` from a Flux Git Secret: over HTTP(S) ``username``/``password`` (basic) or
    ``bearerToken`` (not both), plus an optional ``ca.crt``; over SSH ``identity`` (+ ``password`` as its
    passphrase) and ``known_hosts`` — Flux verifies host keys, so ``known_hosts`` is required."""
    scheme = urlsplit(url).scheme.lower() if "://" in url else "ssh"  # scp-like git@host:path is SSH
    if scheme in ("http", "https"):
        ca = _pem_certs(secret, "ca.crt", required=False) or _pem_certs(secret, "caFile", required=False) or ""
        token = secret.header_value("bearerToken", required=False)
        user = secret.text("username", required=False)
        if token is not None:
            if user is not None:
                raise SecretError(f"Secret {secret.ref}: keys 'bearerToken' and 'username' are mutually exclusive")
            return GitCredentials(GitAuthKind.BEARER, bearer_token=token, ca=ca)
        if user is not None:
            if not user.strip():
                raise SecretError(f"Secret {secret.ref}: key 'username' is empty")
            password = secret.text("password")
            assert password is not None
            return GitCredentials(GitAuthKind.BASIC, username=user, password=password, ca=ca)  # exact, as Flux
        if secret.has("password"):
            raise SecretError(f"Secret {secret.ref}: key 'username' is missing (key 'password' is set)")
        return GitCredentials(GitAuthKind.NONE, ca=ca)
    if scheme == "ssh":
        identity = secret.nonempty("identity")
        assert identity is not None
        if not _PRIVATE_KEY.search(identity):
            raise SecretError(f"Secret {secret.ref}: key 'identity' is not a PEM or OpenSSH private key")
        known_hosts = secret.nonempty("known_hosts")
        assert known_hosts is not None
        for n, line in enumerate(known_hosts.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#") and not _KNOWN_HOST_LINE.fullmatch(line.strip()):
                raise SecretError(f"Secret {secret.ref}: key 'known_hosts' line {n} is not 'HOSTS KEYTYPE BASE64KEY'")
        passphrase = secret.text("password", required=False) or ""
        return GitCredentials(GitAuthKind.SSH, identity=identity, known_hosts=known_hosts, password=passphrase)
    raise SecretError(f"Secret {secret.ref}: URL scheme {scheme!r} takes no credentials (use https or ssh)")


# --- TLS: certSecretRef ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TLSMaterial:
    """``ca.crt`` (trust) and/or a client certificate ``tls.crt`` + ``tls.key`` (mTLS), PEM."""

    ca: str = ""
    cert: str = ""
    key: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return f"TLSMaterial(ca={bool(self.ca)}, cert={bool(self.cert)}, key={'***' if self.key else ''!r})"


def _pem_certs(secret: Secret, key: str, *, required: bool) -> str | None:
    text = secret.nonempty(key, required=required)
    if text is None:
        return None
    if not _CERT.search(text):
        raise SecretError(f"Secret {secret.ref}: key {key!r} is not a PEM certificate")
    return text


def tls_material(secret: Secret) -> TLSMaterial:
    """A ``certSecretRef`` Secret: ``ca.crt`` and/or ``tls.crt`` with ``tls.key`` (both or neither); Flux's
    deprecated ``caFile``/``certFile``/``keyFile`` are read when the new keys are absent."""
    ca = _pem_certs(secret, "ca.crt", required=False)
    if ca is None:
        ca = _pem_certs(secret, "caFile", required=False)
    cert_key, key_key = ("tls.crt", "tls.key") if secret.has("tls.crt") or secret.has("tls.key") else ("certFile", "keyFile")
    cert = _pem_certs(secret, cert_key, required=False)
    key = secret.nonempty(key_key, required=False)
    if (cert is None) != (key is None):
        missing = key_key if key is None else cert_key
        raise SecretError(f"Secret {secret.ref}: key {missing!r} is missing ({cert_key} and {key_key} go together)")
    if key is not None and not _PRIVATE_KEY.search(key):
        raise SecretError(f"Secret {secret.ref}: key {key_key!r} is not a PEM private key")
    if ca is None and cert is None:
        raise SecretError(f"Secret {secret.ref}: key 'ca.crt' is missing (or 'tls.crt' and 'tls.key')")
    return TLSMaterial(ca or "", cert or "", key or "")


# --- commit signing: signingKey --------------------------------------------------------------------


class SigningKeyType(StrEnum):
    GPG = "gpg"
    SSH = "ssh"


@dataclass(frozen=True, slots=True)
class SigningKey:
    type: SigningKeyType
    key: str = field(repr=False)  # ASCII-armored OpenPGP private key, or an OpenSSH private key
    passphrase: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return f"SigningKey(type={self.type.value!r}, key='***')"


_PGP_PRIVATE = re.compile(r"-----BEGIN PGP PRIVATE KEY BLOCK-----.+-----END PGP PRIVATE KEY BLOCK-----", re.S)


def signing_key(secret: Secret, key_type: str = SigningKeyType.GPG) -> SigningKey:
    """``signingKey.secretRef``: for ``gpg`` (the default) ``git.asc``, an ASCII-armored private key, with an
    optional ``passphrase``; for ``ssh`` ``identity``, an OpenSSH private key, with an optional ``password``."""
    try:
        kind = SigningKeyType(key_type or SigningKeyType.GPG)
    except ValueError:
        raise SecretError(f"signingKey.type {key_type!r} is not one of gpg, ssh") from None
    if kind is SigningKeyType.GPG:
        armored = secret.nonempty("git.asc")
        assert armored is not None
        if not _PGP_PRIVATE.search(armored):
            raise SecretError(f"Secret {secret.ref}: key 'git.asc' is not an ASCII-armored OpenPGP private key")
        return SigningKey(kind, armored, secret.text("passphrase", required=False) or "")
    identity = secret.nonempty("identity")
    assert identity is not None
    if "-----BEGIN OPENSSH PRIVATE KEY-----" not in identity:
        raise SecretError(f"Secret {secret.ref}: key 'identity' is not an OpenSSH private key")
    return SigningKey(kind, identity, secret.text("password", required=False) or "")


__all__ = [
    "MAX_SECRET_BYTES",
    "DockerConfig",
    "GitAuthKind",
    "GitCredentials",
    "RegistryCredentials",
    "RegistryEntry",
    "Secret",
    "SecretError",
    "SecretType",
    "SigningKey",
    "SigningKeyType",
    "TLSMaterial",
    "docker_config",
    "git_credentials",
    "normalize_registry",
    "secret_from_object",
    "signing_key",
    "tls_material",
]
