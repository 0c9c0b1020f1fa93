"""Regular expressions from objects anyone may write, with Go's ``regexp`` semantics: RE2, linear time.

Flux's ``filterTags.pattern`` and ``exclusionList`` and kustomize's patch ``target`` fields are Go regexps.
Python's :mod:`re` backtracks and holds the GIL while it matches: ``^(a+)+$`` against a 30-character tag
runs for minutes, and every other thread of the process — the other workers, lease renewal, ``/healthz`` —
stops with it, so one hostile ImagePolicy or Kustomization would stall (or crash-loop) a whole controller.
RE2 is what Go's regexp implements: the same syntax (backreferences and lookaround refused, as Go refuses
them), ASCII-only ``\\d \\w \\s \\b``, ``(?P<n>…)`` and ``(?<n>…)`` groups, repeat counts up to 1000, and
matching in time linear in the text.
"""

from __future__ import annotations

import functools
from typing import Protocol

import re2  # type: ignore[import-untyped,unused-ignore]

# RE2 otherwise writes every refused pattern to stderr itself; the caller reports it once, with context.
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


class GoRegexError(ValueError):
    """The pattern is not a Go regular expression (the message says why, without the pattern)."""


class GoMatch(Protocol):
    def group(self, key: int | str = 0, /) -> str | None: ...


class GoRegex(Protocol):
    @property
    def pattern(self) -> str: ...
    @property
    def groups(self) -> int: ...
    @property
    def groupindex(self) -> dict[str, int]: ...
    def search(self, text: str, /) -> GoMatch | None: ...
    def fullmatch(self, text: str, /) -> GoMatch | None: ...


@functools.lru_cache(maxsize=16384)  # compiled regexes are immutable and thread-safe; patches repeat theirs
def compile_go(pattern: str) -> GoRegex:
    """Compile ``pattern`` as Go's ``regexp.Compile`` would, or raise GoRegexError."""
    try:
        rx: GoRegex = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        raise GoRegexError(reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)) from None
    return rx
