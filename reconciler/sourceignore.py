"""Which files of a Flux GitRepository reach its artifact (pure): Flux's default exclusions, every ``.sourceignore``
file in the tree (scoped to its directory), then the GitRepository's ``spec.ignore`` — gitignore syntax, the last
matching pattern deciding, as Flux's source-controller (fluxcd/pkg sourceignore, go-git's gitignore matcher) does.

Matching is go-git's, which differs from git's in one way Flux users rely on: a pattern matches a path when it
matches the path's leading components, so ``/*`` followed by ``!/deploy/`` keeps everything under ``deploy/``
(and a file can be included again below an excluded directory)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

IGNORE_FILE = ".sourceignore"
# fluxcd/pkg sourceignore: ExcludeVCS, ExcludeExt, ExcludeCI, ExcludeExtra — always the lowest priority
DEFAULTS = (
    ".git/", ".gitignore", ".gitmodules", ".gitattributes",
    "*.jpg", "*.jpeg", "*.gif", "*.png", "*.wmv", "*.flv", "*.tar.gz", "*.zip",
    ".github/", ".circleci/", ".travis.yml", ".gitlab-ci.yml", "appveyor.yml", ".drone.yml", "cloudbuild.yaml",
    "codeship-services.yml", "codeship-steps.yml",
    "**/.goreleaser.yml", "**/.sops.yaml", "**/.flux.yaml",
)  # fmt: skip
MAX_IGNORE_FILES = 1000  # .sourceignore files read from one tree (a bound on work a repository can ask for)
MAX_PATTERNS = 10_000


class Match(IntEnum):
    NONE = 0
    EXCLUDE = 1
    INCLUDE = 2


def _glob(part: str) -> re.Pattern[str] | None:
    """Go's ``filepath.Match`` for one path component as a regex; None for a malformed pattern (Go: no match)."""
    out, i = [], 0
    while i < len(part):
        ch = part[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            if i == len(part):
                return None
            out.append(re.escape(part[i]))
        elif ch == "[":
            end = part.find("]", i + 2 if part[i + 1 : i + 2] in ("^", "]") else i + 1)
            if end < 0:
                return None
            body = part[i + 1 : end]
            neg = body.startswith("^")
            body = body[1:] if neg else body
            if not body:
                return None
            out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\").replace("[", "\\[") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        return None


@dataclass(frozen=True, slots=True)
class Pattern:
    domain: tuple[str, ...]  # the directory of the .sourceignore it came from (() for the root)
    parts: tuple[str, ...]
    include: bool
    dir_only: bool
    anchored: bool  # contains a slash: matched from the domain down, component by component

    @classmethod
    def parse(cls, text: str, domain: Sequence[str] = ()) -> Pattern:
        include = text.startswith("!")
        if include:
            text = text[1:]
        if not text.endswith("\\ "):
            text = text.rstrip(" ")
        dir_only = text.endswith("/")
        if dir_only:
            text = text[:-1]
        return cls(tuple(domain), tuple(text.split("/")), include, dir_only, "/" in text)

    def match(self, path: Sequence[str], is_dir: bool) -> Match:
        n = len(self.domain)
        if len(path) <= n or tuple(path[:n]) != self.domain:
            return Match.NONE
        rest = list(path[n:])
        ok = self._glob_match(rest, is_dir) if self.anchored else self._name_match(rest, is_dir)
        if not ok:
            return Match.NONE
        return Match.INCLUDE if self.include else Match.EXCLUDE

    def _name_match(self, path: list[str], is_dir: bool) -> bool:
        rx = _glob(self.parts[0])
        if rx is None:
            return False
        for i, name in enumerate(path):
            if not rx.fullmatch(name):
                continue
            return not (self.dir_only and not is_dir and i == len(path) - 1)
        return False

    def _glob_match(self, path: list[str], is_dir: bool) -> bool:
        matched = traverse = False
        for i, part in enumerate(self.parts):
            if part == "":
                traverse = False
                continue
            if part == "**":
                if i == len(self.parts) - 1:
                    break
                traverse = True
                continue
            if "**" in part:
                return False
            if not path:
                return False
            rx = _glob(part)
            if rx is None:
                return False
            if traverse:
                traverse = False
                while path:
                    name = path.pop(0)
                    if rx.fullmatch(name):
                        matched = True
                        break
                    if not path:
                        matched = False
            else:
                if not rx.fullmatch(path[0]):
                    return False
                matched = True
                path = path[1:]
        if matched and self.dir_only and not is_dir and not path:
            return False
        return matched


def read_patterns(text: str, domain: Sequence[str] = ()) -> list[Pattern]:
    return [Pattern.parse(line, domain) for line in text.splitlines() if line.strip() and not line.startswith("#")]


@dataclass(frozen=True, slots=True)
class Matcher:
    patterns: tuple[Pattern, ...]

    @property
    def includes(self) -> bool:
        """Some pattern re-includes: an excluded directory must still be walked for what it brings back."""
        return any(p.include for p in self.patterns)

    def excluded(self, path: Sequence[str], is_dir: bool) -> bool:
        for p in reversed(self.patterns):  # the last pattern that matches decides
            m = p.match(path, is_dir)
            if m is not Match.NONE:
                return m is Match.EXCLUDE
        return False


def matcher(root: Path, extra: str, ignore_files: Iterable[tuple[tuple[str, ...], str]] | None = None) -> Matcher:
    """Flux's defaults, the tree's ``.sourceignore`` files (each scoped to its directory), then ``extra``
    (``spec.ignore``). ``ignore_files`` overrides the walk (for tests): (directory components, text) pairs."""
    found = list(ignore_files) if ignore_files is not None else _ignore_files(root)
    patterns = [Pattern.parse(p) for p in DEFAULTS]
    for domain, text in found:
        patterns += read_patterns(text, domain)
    patterns += read_patterns(extra)
    return Matcher(tuple(patterns[:MAX_PATTERNS]))


def _ignore_files(root: Path) -> list[tuple[tuple[str, ...], str]]:
    out: list[tuple[tuple[str, ...], str]] = []
    for f in sorted(root.rglob(IGNORE_FILE)):
        rel = f.relative_to(root).parts
        if ".git" in rel or f.is_symlink() or not f.is_file():
            continue
        out.append((rel[:-1], f.read_text(errors="replace")[:1 << 20]))
        if len(out) >= MAX_IGNORE_FILES:
            break
    return out
