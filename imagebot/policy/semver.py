"""The ``semver`` policy: the highest version inside a Masterminds/semver v3 range (the syntax Flux uses). The
range grammar, the tag parser and their comparison rules are the kit's (:mod:`gitopskit.semver`), shared with the
reconciler's GitRepository ``ref.semver``; this module maps their errors onto PolicyError and explains rejections."""

from __future__ import annotations

from gitopskit import semver as _kit
from gitopskit.semver import Comparator, Key, parse_tag
from imagebot.errors import PolicyError
from imagebot.policy.base import Outcome, Rejected

__all__ = ["Comparator", "Key", "SemverOrdering", "parse_range", "parse_tag"]

_NOT_SEMVER = Rejected("not strict semver (MAJOR.MINOR.PATCH, optional 'v')")


def parse_range(text: str) -> tuple[tuple[Comparator, ...], ...]:
    """Parse a range into OR-sets of AND-ed comparators, or raise PolicyError naming the bad part."""
    try:
        return _kit.parse_range(text)
    except _kit.RangeError as exc:
        raise PolicyError(str(exc)) from None


class SemverOrdering:
    """The ``semver`` policy: the highest version inside the range."""

    __slots__ = ("_compiled", "_pre_ok", "range", "sets")

    def __init__(self, range_: str) -> None:
        self.range = range_
        self.sets = parse_range(range_)
        self._pre_ok = tuple(any(c.has_pre for c in s) for s in self.sets)
        self._compiled = tuple((tuple(c.check for c in s), pre_ok) for s, pre_ok in zip(self.sets, self._pre_ok, strict=True))

    def describe(self) -> str:
        return f"semver {self.range!r}"

    def rank(self, value: str) -> Key | None:
        v = parse_tag(value)
        if v is None:
            return None
        for comparators, pre_ok in self._compiled:
            if v[3] == 0 and not pre_ok:
                continue
            for c in comparators:
                if not c(v):
                    break
            else:
                return v
        return None

    def key(self, value: str) -> Key | Rejected:
        v = self.rank(value)
        if v is not None:
            return v
        if parse_tag(value) is None:
            return _NOT_SEMVER
        reasons = []
        v = parse_tag(value)
        assert v is not None
        for comparators, pre_ok in zip(self.sets, self._pre_ok, strict=True):
            if v[3] == 0 and not pre_ok:
                reasons.append("a pre-release, and no comparator in its set carries one")
            else:
                reasons.append(f"outside {next(c.text for c in comparators if not c.check(v))}")
        return Rejected("; ".join(dict.fromkeys(reasons)))

    def rejected_outcome(self, reason: Rejected) -> Outcome:
        return Outcome.INVALID if reason.startswith("not strict") else Outcome.OUT_OF_RANGE
