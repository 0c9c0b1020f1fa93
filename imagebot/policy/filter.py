"""Tag filters (Flux ``filterTags``) and the exclusion list (Flux ``exclusionList``).

Regexes are Go's (:mod:`gitopskit.goregex`: RE2, the engine Go's ``regexp`` implements) with unanchored
search, as Flux uses them: ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII-only (a fullwidth digit is no
digit), ``(?<name>…)`` and ``(?P<name>…)`` name groups, and matching takes time linear in the tag — a
pattern that would backtrack catastrophically in Python's ``re`` (``^(a+)+$``) cannot stall the process.
The extract template follows Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``,
``${name}``; ``$$`` is a literal ``$``; a name is the longest run of letters, digits and
``_`` (so ``$1x`` names group ``1x``); an unknown or unmatched group expands to nothing;
a ``$`` not followed by a name is kept as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gitopskit.goregex import GoRegex, GoRegexError, compile_go
from imagebot.errors import PolicyError

# cosign's signature/attestation/SBOM tags, and the OCI 1.1 referrers tag schema
# ``<alg>-<digest hex, cut to 64>`` that cosign 3, oras and notation use on registries without the
# referrers API: such a tag names a digest, never a release.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    r"^.*\.sig$",
    r"^.*\.att$",
    r"^.*\.sbom$",
    r"^sha(?:256|512)-[0-9a-f]{64}(?:\.[A-Za-z0-9_-]+)?$",
)

# What a tag must look like for each default to match it (a necessary condition: ``$`` is the end of the text
# in Go): a tag that fits none is not excluded, without a regex call — RE2's binding costs ~2 µs a search,
# a tenth of a cold run's CPU over 60,000 tags; the screen is ~0.2 µs.
_SCREENS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    DEFAULT_EXCLUDES[0]: ((), (".sig",)),
    DEFAULT_EXCLUDES[1]: ((), (".att",)),
    DEFAULT_EXCLUDES[2]: ((), (".sbom",)),
    DEFAULT_EXCLUDES[3]: (("sha256-", "sha512-"), ()),
}

_TEMPLATE_TOKEN = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def compile_regex(pattern: str, what: str) -> GoRegex:
    """Compile a user regex as Go would or raise a PolicyError saying where."""
    try:
        return compile_go(pattern)
    except GoRegexError as exc:
        raise PolicyError(f"invalid {what} regex {pattern!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Piece:
    literal: str = ""
    group: int | str | None = None


def _parse_template(template: str) -> tuple[_Piece, ...]:
    pieces: list[_Piece] = []
    pos = 0
    for m in _TEMPLATE_TOKEN.finditer(template):
        if m.start() > pos:
            pieces.append(_Piece(literal=template[pos : m.start()]))
        token = m.group(0)
        if token == "$$":
            pieces.append(_Piece(literal="$"))
        else:
            name = m.group(1) or m.group(2)
            pieces.append(_Piece(group=int(name) if name.isascii() and name.isdigit() else name))
        pos = m.end()
    if pos < len(template):
        pieces.append(_Piece(literal=template[pos:]))
    return tuple(pieces)


@dataclass(frozen=True, slots=True)
class TagFilter:
    """``pattern`` with an optional ``extract`` template; ``extract(tag)`` → value or None."""

    pattern: str
    template: str = ""
    _rx: GoRegex = field(init=False, repr=False, compare=False)
    _pieces: tuple[_Piece, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rx = compile_regex(self.pattern, "--pattern")
        object.__setattr__(self, "_rx", rx)
        pieces = _parse_template(self.template)
        object.__setattr__(self, "_pieces", pieces)

    def describe(self) -> str:
        return f"pattern {self.pattern!r}" + (f" extract {self.template!r}" if self.template else "")

    def extract(self, tag: str) -> str | None:
        m = self._rx.search(tag)
        if m is None:
            return None
        if not self.template:
            return tag
        out: list[str] = []
        names = self._rx.groupindex
        ngroups = self._rx.groups
        for p in self._pieces:
            if p.group is None:
                out.append(p.literal)
            elif isinstance(p.group, int):
                if p.group <= ngroups:
                    out.append(m.group(p.group) or "")
            elif p.group in names:
                out.append(m.group(p.group) or "")
        return "".join(out)


@dataclass(frozen=True, slots=True)
class Exclusions:
    """Regexes of tags never considered; ``excludes(tag)`` → the matching regex or None."""

    patterns: tuple[str, ...] = DEFAULT_EXCLUDES
    _compiled: tuple[tuple[str, GoRegex], ...] = field(init=False, repr=False, compare=False)

    _any: GoRegex | None = field(init=False, repr=False, compare=False)
    _screen: tuple[tuple[str, ...], tuple[str, ...]] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = tuple((p, compile_regex(p, "--exclude")) for p in self.patterns)
        object.__setattr__(self, "_compiled", compiled)
        # One combined search screens every tag; the matching regex is named only on a hit.
        try:
            combined = compile_go("|".join(f"(?:{rx.pattern})" for _, rx in compiled)) if compiled else None
        except GoRegexError:  # e.g. the same group name in two patterns
            combined = None
        object.__setattr__(self, "_any", combined)
        screen = None
        if all(p in _SCREENS for p in self.patterns):  # only patterns whose screen is known (the defaults)
            screen = (
                tuple(x for p in self.patterns for x in _SCREENS[p][0]),
                tuple(x for p in self.patterns for x in _SCREENS[p][1]),
            )
        object.__setattr__(self, "_screen", screen)

    def excludes(self, tag: str) -> str | None:
        screen = self._screen
        if screen is not None and not (tag.startswith(screen[0]) or tag.endswith(screen[1])):
            return None
        if self._any is not None and self._any.search(tag) is None:
            return None
        for text, rx in self._compiled:
            if rx.search(tag):
                return text
        return None
