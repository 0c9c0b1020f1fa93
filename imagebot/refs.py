"""The one image-reference parser and formatter: ``[registry[:port]/]path[:tag][@digest]``.

Grammar and normalisation follow the distribution/reference rules Docker uses:

- the first path component is a registry host when it contains ``.`` or ``:``, is ``localhost``,
  or has an upper-case letter (``localhost:5000/x`` and ``host:5000/app`` name a registry);
- otherwise the registry is ``docker.io``, and a single-component Docker Hub name gains
  ``library/`` (``nginx`` → ``docker.io/library/nginx``); ``index.docker.io`` is ``docker.io``;
- path components are lower-case ``[a-z0-9]+`` joined by ``.``, ``_``, ``__`` or runs of ``-``;
- a tag is ``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``; a digest is ``algorithm:hex`` (``sha256`` and
  ``sha512`` need 64 and 128 hex digits).

Everything is pure. A reference keeps its spelling (``name``) so edits never rewrite how a
user wrote an image; comparisons use :attr:`ImageRef.canonical_name`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from imagebot.errors import InvalidReference

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

# Explicit ASCII classes, used with fullmatch only (tags arrive from registries: no Unicode
# digits or letters, no trailing newline).
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", re.ASCII)
DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}", re.ASCII)
_DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_HOST_RE = re.compile(
    r"(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
)
MAX_NAME = 255


def valid_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


def valid_digest(digest: str) -> bool:
    if DIGEST_RE.fullmatch(digest) is None:
        return False
    algo, _, hexpart = digest.partition(":")
    want = _DIGEST_LENGTHS.get(algo)
    return want is None or (len(hexpart) == want and hexpart == hexpart.lower())


def check_tag(tag: str) -> str:
    if not valid_tag(tag):
        raise InvalidReference(f"invalid tag {tag!r}: a tag is [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}")
    return tag


def check_digest(digest: str) -> str:
    if not valid_digest(digest):
        raise InvalidReference(f"invalid digest {digest!r}: expected algorithm:hex, e.g. sha256:<64 lower-case hex digits>")
    return digest


@dataclass(frozen=True, slots=True)
class ImageRef:
    """A parsed reference. ``registry`` is None when the user wrote none (Docker Hub implied)."""

    registry: str | None
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository as written: ``[registry/]path``."""
        return f"{self.registry}/{self.path}" if self.registry else self.path

    @property
    def canonical_registry(self) -> str:
        if self.registry is None or self.registry.lower() in _HUB_ALIASES:
            return DOCKER_HUB
        return self.registry

    @property
    def canonical_path(self) -> str:
        if self.canonical_registry == DOCKER_HUB and "/" not in self.path:
            return f"library/{self.path}"
        return self.path

    @property
    def canonical_name(self) -> str:
        """``docker.io/library/nginx`` for ``nginx``: the name to compare references by."""
        return f"{self.canonical_registry}/{self.canonical_path}"

    @property
    def identifier(self) -> str:
        """``tag``, ``tag@digest`` or ``@digest``'s digest: what follows the name."""
        return str(self)[len(self.name) + 1 :]

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def same_repository(self, other: ImageRef) -> bool:
        return self.canonical_name == other.canonical_name

    def with_version(self, tag: str | None, digest: str | None) -> ImageRef:
        return replace(self, tag=tag, digest=digest)


def parse(text: str, *, require_version: bool = False) -> ImageRef:
    """Parse a reference or raise InvalidReference saying what is wrong."""
    if not isinstance(text, str) or not text:
        raise InvalidReference("empty image reference")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidReference(f"invalid image reference {text!r}: whitespace is not allowed")
    rest, at, digest = text.partition("@")
    if at:
        check_digest(digest)
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        check_tag(tag)
    registry: str | None = None
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _HOST_RE.fullmatch(first):
            raise InvalidReference(f"invalid registry host {first!r} in {text!r}")
        registry, rest = first, remainder
    if not _PATH_RE.fullmatch(rest):
        raise InvalidReference(
            f"invalid repository path {rest!r} in {text!r}: components are lower-case [a-z0-9] joined by '.', '_', '__' or '-'"
        )
    ref = ImageRef(registry, rest, tag, digest or None)
    if len(ref.name) > MAX_NAME:
        raise InvalidReference(f"repository name longer than {MAX_NAME} characters in {text!r}")
    if require_version and tag is None and ref.digest is None:
        raise InvalidReference(f"image {text!r} has neither a tag nor a digest: write NAME:TAG or NAME@sha256:...")
    return ref


def parse_name(text: str) -> ImageRef:
    """Parse a repository name that must carry no tag or digest (e.g. NAME in --image NAME=IMAGE)."""
    ref = parse(text)
    if ref.tag is not None or ref.digest is not None:
        raise InvalidReference(f"{text!r} must be a repository name without tag or digest (e.g. ghcr.io/org/app)")
    return ref


def try_parse(text: str) -> ImageRef | None:
    try:
        return parse(text)
    except InvalidReference:
        return None
