"""Tag filters (Flux ``filterTags``) and the exclusion list (Flux ``exclusionList``).

Regexes use Python's :mod:`re` with unanchored search, as Flux uses Go's ``regexp``, and
``re.ASCII`` so that ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII-only as in Go (a fullwidth
digit is no digit).
Go's ``(?<name>…)`` named-group syntax is accepted and translated to ``(?P<name>…)``.
The extract template follows Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``,
``${name}``; ``$$`` is a literal ``$``; a name is the longest run of letters, digits and
``_`` (so ``$1x`` names group ``1x``); an unknown or unmatched group expands to nothing;
a ``$`` not followed by a name is kept as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

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

_GO_NAMED_GROUP = re.compile(r"(?<!\\)\(\?<(?=[A-Za-z_])")
_TEMPLATE_TOKEN = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def compile_regex(pattern: str, what: str) -> re.Pattern[str]:
    """Compile a user regex (Go named groups translated) or raise a PolicyError saying where."""
    translated = _GO_NAMED_GROUP.sub("(?P<", pattern)
    try:
        return re.compile(translated, re.ASCII)
    except re.error as exc:
        pos = f" at position {exc.pos}" if exc.pos is not None else ""
        raise PolicyError(f"invalid {what} regex {pattern!r}: {exc.msg}{pos}") from None


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
    _rx: re.Pattern[str] = field(init=False, repr=False, compare=False)
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
    _compiled: tuple[tuple[str, re.Pattern[str]], ...] = field(init=False, repr=False, compare=False)

    _any: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = tuple((p, compile_regex(p, "--exclude")) for p in self.patterns)
        object.__setattr__(self, "_compiled", compiled)
        # One combined search screens every tag; the matching regex is named only on a hit.
        try:
            combined = re.compile("|".join(f"(?:{rx.pattern})" for _, rx in compiled)) if compiled else None
        except re.error:  # e.g. the same group name in two patterns
            combined = None
        object.__setattr__(self, "_any", combined)

    def excludes(self, tag: str) -> str | None:
        if self._any is not None and self._any.search(tag) is None:
            return None
        for text, rx in self._compiled:
            if rx.search(tag):
                return text
        return None
