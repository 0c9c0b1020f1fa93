"""Discovery: move every image reference in a tree to the newest tag its semver policy allows.

No per-image configuration: the marker-free finders' places (container and other ``image:``
fields, Kustomize ``images:`` entries with a ``newTag``, Helm ``repository`` + ``tag`` specs)
are read, and each reference gets a policy relative to its own current tag, as Renovate does by
default: ``patch`` stays within the current major.minor, ``minor`` within the current major,
``major`` admits any newer release. Only strict semver release tags (optional ``v``, the same
spelling as the current tag) are candidates; a reference whose current tag is not semver
(``latest``, ``sha-…``, dates) is skipped and reported, and so is one pinned by digest (moving
its tag would leave the digest stale). Pure: the tag listings come in as arguments.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from imagebot.policy.semver import parse_tag
from imagebot.refs import ImageRef, try_parse
from imagebot.update.engine import edit_text
from imagebot.update.images import is_kustomization
from imagebot.update.model import Change, EditRequest, FileEdit, HelmKeys, ImageUpdate, Problem, ProblemKind
from imagebot.update.plan import child
from imagebot.update.yamlscan import Scan, YamlSyntaxError, scan


class Level(StrEnum):
    PATCH = "patch"
    MINOR = "minor"
    MAJOR = "major"


@dataclass(frozen=True, slots=True)
class Found:
    """One reference in a file: its repository (as spelled) and current tag / digest."""

    file: str
    line: int
    name: ImageRef  # repository only, as spelled in the file
    tag: str | None
    digest: str | None


@dataclass(frozen=True, slots=True)
class Filter:
    """Which repositories discovery considers: shell globs (fnmatch) over the canonical name
    (``docker.io/library/nginx``) and over the name as spelled (``nginx``)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def admits(self, name: ImageRef) -> bool:
        names = (name.canonical_name, name.name)
        if self.include and not any(fnmatch.fnmatchcase(n, g) for g in self.include for n in names):
            return False
        return not any(fnmatch.fnmatchcase(n, g) for g in self.exclude for n in names)


def find_references(file: str, text: str) -> tuple[list[Found], list[Problem]]:
    """Every image reference the marker-free finders would edit in one file's text."""
    if "{{" in text:
        return [], []  # templated files are never edited
    body = text[1:] if text.startswith("\ufeff") else text
    try:
        parsed = scan(body)
    except YamlSyntaxError:
        return [], []  # not YAML: nothing to discover (the edit pass reports parse errors of files it edits)
    out: list[Found] = []
    file_name = file.rsplit("/", 1)[-1]
    for s in parsed.scalars:
        if s.key == "image" and s.style not in ("|", ">"):
            ref = try_parse(s.value)
            if ref is not None:
                out.append(Found(file, s.line, ref.with_version(None, None), ref.tag, ref.digest))
    _kustomize(file, file_name, parsed, out)
    _helm(file, parsed, out)
    return out, []


def _kustomize(file: str, file_name: str, parsed: Scan, out: list[Found]) -> None:
    entries = sorted(
        {(s.doc, s.path[1]) for s in parsed.scalars if len(s.path) == 3 and s.path[0] == "images" and isinstance(s.path[1], int)}
    )
    index = parsed.by_path()
    for doc, idx in entries:
        if not is_kustomization(file_name, parsed, doc):
            continue
        base = ("images", idx)
        name = index.get((doc, child(base, "newName"))) or index.get((doc, child(base, "name")))
        tag = index.get((doc, child(base, "newTag")))
        digest = index.get((doc, child(base, "digest")))
        ref = try_parse(name.value) if name is not None else None
        if ref is None or name is None or tag is None:
            continue  # no tag written here: nothing to move relative to
        out.append(Found(file, tag.line, ref.with_version(None, None), tag.value, digest.value if digest else None))


def _helm(file: str, parsed: Scan, out: list[Found]) -> None:
    hk = HelmKeys()
    index = parsed.by_path()
    for s in parsed.scalars:
        if not s.path or s.path[-1] != "repository":
            continue
        base = s.path[:-1]
        tag = index.get((s.doc, child(base, *hk.tag)))
        if tag is None:
            continue
        registry = index.get((s.doc, child(base, "registry")))
        digest = index.get((s.doc, child(base, "digest")))
        ref = try_parse(f"{registry.value}/{s.value}" if registry is not None and registry.value else s.value)
        if ref is None or ref.tag is not None or ref.digest is not None:
            continue
        out.append(Found(file, tag.line, ref, tag.value, digest.value if digest is not None and digest.value else None))


def movable(f: Found) -> bool:
    """Whether a reference can move at all (a semver tag, no digest pin): only those need a listing."""
    return f.digest is None and f.tag is not None and parse_tag(f.tag) is not None


def newest(current: str, tags: Iterable[str], level: Level) -> str | None:
    """The newest release tag above ``current`` within ``level``; None when none is (or ``current`` is not semver)."""
    key = parse_tag(current)
    if key is None:
        return None
    v = current.startswith("v")
    best: tuple[tuple[object, ...], str] | None = None
    for t in tags:
        k = parse_tag(t)
        if k is None or k[3] == 0 or t.startswith("v") != v or k <= key:
            continue
        if level is Level.PATCH and k[:2] != key[:2]:
            continue
        if level is Level.MINOR and k[0] != key[0]:
            continue
        if best is None or k > best[0]:
            best = (k, t)
    return None if best is None else best[1]


@dataclass(frozen=True, slots=True)
class Plan:
    edits: tuple[FileEdit, ...]
    skipped: tuple[Problem, ...]  # references left alone, and why (not semver, pinned, registry failure)


def plan(
    texts: Mapping[str, str],
    found: Mapping[str, list[Found]],
    listings: Mapping[str, tuple[str, ...] | str],
    level: Level,
) -> Plan:
    """Edit each file so its references move to their newest allowed tag.

    ``listings`` maps a canonical repository name to its tags, or to an error message. The same
    repository in one file must agree on one target (else that repository is left alone there:
    the finders edit by repository name).
    """
    edits: list[FileEdit] = []
    skipped: list[Problem] = []
    for file, refs_ in found.items():
        targets: dict[str, set[str | None]] = {}
        names: dict[str, ImageRef] = {}
        for f in refs_:
            repo = f.name.canonical_name
            names[repo] = f.name
            listing = listings.get(repo)
            target: str | None = None
            if f.digest is not None:
                skipped.append(
                    Problem(file, f.line, ProblemKind.INPUT, f"{f.name.name} is pinned by digest: kept", (f.name.name,))
                )
            elif f.tag is None or parse_tag(f.tag) is None:
                skipped.append(
                    Problem(
                        file,
                        f.line,
                        ProblemKind.INPUT,
                        f"{f.name.name}:{f.tag or ''} is not a semver tag: skipped",
                        (f.name.name,),
                    )
                )
            elif isinstance(listing, str):
                skipped.append(Problem(file, f.line, ProblemKind.IO, f"{f.name.name}: registry: {listing}", (f.name.name,)))
            elif listing is not None:
                target = newest(f.tag, listing, level)
            targets.setdefault(repo, set()).add(target)
        updates = []
        for repo, ts in targets.items():
            if len(ts) != 1 or None in ts:
                if len(ts) > 1:
                    skipped.append(
                        Problem(file, None, ProblemKind.CONFLICT, f"{names[repo].name}: references disagree in one file: skipped")
                    )
                continue
            (tag,) = ts
            assert tag is not None
            updates.append(ImageUpdate(names[repo], names[repo].with_version(tag, None)))
        if updates:
            edits.append(edit_text(file, texts[file], EditRequest(images=tuple(updates))))
    return Plan(tuple(edits), tuple(skipped))


def environment(file: str) -> str:
    """The environment a file belongs to: its first directory under the discovery root."""
    head, sep, _ = file.partition("/")
    return head if sep else "."


def _under(base: str, path: str) -> str:
    return path if not base else base if path == "." else f"{base}/{path}"


def summary(changes: Iterable[Change], base: str = "") -> tuple[str, str]:
    """A discovery commit's title and body: the moves grouped by environment path (``base`` and the first
    directory under it, e.g. ``envs/prod``), each ``name: old → new`` once per environment, with its files
    (repository paths)."""
    base = base.strip("/")
    by_env: dict[str, dict[tuple[str, str, str], set[str]]] = {}
    for c in changes:
        old, new = try_parse(c.old), try_parse(c.new)
        old_v = old.tag if old is not None and old.tag else c.old
        new_v = new.tag if new is not None and new.tag else c.new
        env = _under(base, environment(c.file))
        by_env.setdefault(env, {}).setdefault((c.subject, old_v, new_v), set()).add(_under(base, c.file))
    moves = sum(len(m) for m in by_env.values())
    envs = sorted(by_env)
    title = f"chore(images): discovered {moves} update{'s' if moves != 1 else ''} in {', '.join(envs)}"
    lines: list[str] = []
    for env in envs:
        lines.append(f"{env}:")
        for (name, old_v, new_v), files in sorted(by_env[env].items()):
            lines.append(f"- {name}: {old_v} → {new_v} ({', '.join(sorted(files))})")
        lines.append("")
    return title, "\n".join(lines)
