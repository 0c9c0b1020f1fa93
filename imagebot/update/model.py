"""Typed results of an edit: what changed where, and what was refused and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from imagebot.refs import ImageRef


class Target(StrEnum):
    """Which kind of reference a change updated."""

    SETTER = "setter"  # {"$imagepolicy": "ns:name"} — the whole reference
    SETTER_TAG = "setter:tag"
    SETTER_NAME = "setter:name"
    SETTER_DIGEST = "setter:digest"
    CONTAINER = "container"  # containers / initContainers / ephemeralContainers[].image
    IMAGE_FIELD = "image-field"  # any other `image: repo:tag` (Helm values, custom resources)
    KUSTOMIZE = "kustomize"  # kustomization images[] newName / newTag / digest
    HELM = "helm"  # Helm values image.repository + image.tag (+ registry, digest)


class ProblemKind(StrEnum):
    INPUT = "input"  # the requested value cannot be written (e.g. a :tag setter fed a digest-only IMAGE)
    PARSE = "parse"  # the file is not valid YAML
    TEMPLATE = "template"  # a marker inside a templated file ({{ ... }}): reported, not edited
    ALIASED = "aliased"  # the value is anchored and re-used through an alias
    UNSUPPORTED = "unsupported"  # e.g. a block scalar or an explicit tag holds the value
    CONFLICT = "conflict"  # two updates want different values in one place
    VERIFY = "verify"  # the edited text did not re-parse to exactly the intended change
    IO = "io"  # unreadable, or a symlink leading outside the tree


@dataclass(frozen=True, slots=True)
class ObjectIdentity:
    """The object (YAML document) a change is in, as Flux identifies it in commit messages (its
    ``ObjectIdentifier``): empty fields where the document has none (a kustomization.yaml may lack a name)."""

    api_version: str = ""
    kind: str = ""
    name: str = ""
    namespace: str = ""


_SETTER_SUFFIX = {"setter:tag": ":tag", "setter:name": ":name", "setter:digest": ":digest"}


@dataclass(frozen=True, slots=True)
class Change:
    file: str
    line: int
    target: Target
    subject: str  # the policy REF for setters, the image name for marker-free updates
    field: str  # the YAML path, e.g. spec.template.spec.containers[0].image
    old: str
    new: str
    doc: int = 0  # 0-based index of the YAML document in the file
    object: ObjectIdentity = ObjectIdentity()

    @property
    def setter(self) -> str:
        """The setter as Flux names it in a Change (``NS:NAME`` or ``NS:NAME:tag``…); "" for a marker-free update."""
        if not self.target.startswith("setter"):
            return ""
        return self.subject + _SETTER_SUFFIX.get(self.target.value, "")


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int | None
    kind: ProblemKind
    message: str
    subjects: tuple[str, ...] = ()  # the requested REFs / image names it concerns; () when the file could not tell


@dataclass(frozen=True, slots=True)
class Place:
    """A place in a file that one requested subject (a policy REF or an image name) targets."""

    file: str
    line: int
    field: str
    subject: str
    value: str | None  # what the file holds there (None: a key still to be inserted)
    wanted: str
    changed: bool = False  # this edit writes ``wanted`` there


@dataclass(frozen=True, slots=True)
class FileEdit:
    """The outcome for one file: ``updated`` equals ``original`` when nothing is written."""

    file: str
    original: str
    updated: str
    changes: tuple[Change, ...] = ()
    problems: tuple[Problem, ...] = ()
    places: tuple[Place, ...] = ()

    @property
    def changed(self) -> bool:
        return self.updated != self.original


@dataclass(frozen=True, slots=True)
class ImageUpdate:
    """A marker-free update: references to repository ``name`` move to ``image``."""

    name: ImageRef
    image: ImageRef


@dataclass(frozen=True, slots=True)
class HelmKeys:
    """Key paths (relative to a mapping) of a Helm-style image spec."""

    repository: tuple[str, ...] = ("repository",)
    tag: tuple[str, ...] = ("tag",)
    registry: tuple[str, ...] | None = ("registry",)
    digest: tuple[str, ...] | None = ("digest",)


@dataclass(frozen=True, slots=True)
class EditRequest:
    policies: dict[str, ImageRef] = field(default_factory=dict)  # REF → IMAGE, for setter markers
    images: tuple[ImageUpdate, ...] = ()  # for marker-free updates
    helm_keys: tuple[HelmKeys, ...] = (HelmKeys(),)


@dataclass(frozen=True, slots=True)
class ChangeSet:
    edits: tuple[FileEdit, ...]

    @property
    def changes(self) -> tuple[Change, ...]:
        return tuple(c for e in self.edits for c in e.changes)

    @property
    def problems(self) -> tuple[Problem, ...]:
        return tuple(p for e in self.edits for p in e.problems)

    @property
    def places(self) -> tuple[Place, ...]:
        return tuple(p for e in self.edits for p in e.places)

    @property
    def changed_files(self) -> tuple[FileEdit, ...]:
        return tuple(e for e in self.edits if e.changed)


@dataclass(frozen=True, slots=True)
class Passed:
    """A newer tag the selection did not take, and why (the policy's exclusion or the signature gate's verdict)."""

    tag: str
    reason: str


@dataclass(frozen=True, slots=True)
class Provenance:
    """An image's OCI annotations (``org.opencontainers.image.*``) and platforms, as far as they are known;
    ``unavailable`` says why they could not be read (a failure that never blocks the update)."""

    source: str = ""
    revision: str = ""
    created: str = ""
    version: str = ""
    platforms: tuple[str, ...] = ()
    unavailable: str = ""


@dataclass(frozen=True, slots=True)
class Why:
    """Why one subject (a setter REF or an image name) moves: the facts a pull request body and commit trailers
    explain. Every field is optional: ``imagebot update`` knows less than ``imagebot run``."""

    environment: str = ""
    policy: str = ""  # the policy, e.g. "semver ^1.2"
    reason: str = ""  # the selection's own words, e.g. "newest allowed tag 1.3.0"
    passed_over: tuple[Passed, ...] = ()  # newer tags not taken, newest first
    signature: str = ""  # "verified (key …)", "not required", or "" when unknown
    old_tag: str = ""
    old_digest: str = ""
    new_digest: str = ""
    old: Provenance | None = None
    new: Provenance | None = None
