"""The tag-selection core: one small interface, one file per ordering policy.

A :class:`TagPolicy` is built once from a validated spec (the constructors raise
:class:`~imagebot.errors.PolicyError`), after which selection is a plain loop:

    tags ─▶ exclusion list ─▶ filter (pattern / extract) ─▶ ordering ─▶ winner

Every function here is pure: no I/O, no clock, no environment.

Tie rule (documented in ``imagebot select --help``): when several tags rank equal —
``1.0.0`` and ``v1.0.0``, numbers ``1`` and ``1.0``, or several tags that extract to one
value — the tag that is greatest by Unicode code point wins (``v1.0.0`` over ``1.0.0``,
``1.0`` over ``1``). That depends only on the set of tags, never on their order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from imagebot.policy.filter import Exclusions, TagFilter


class Order(StrEnum):
    ASC = "asc"
    DESC = "desc"

    @classmethod
    def parse(cls, text: str) -> Order:
        from imagebot.errors import PolicyError

        try:
            return cls(text.strip().lower())
        except ValueError:
            raise PolicyError(f"invalid order {text!r}: use 'asc' or 'desc'") from None


class Outcome(StrEnum):
    """What happened to one tag."""

    SELECTED = "selected"
    KEPT = "kept"
    EXCLUDED = "excluded"  # matched an exclusion regex
    NO_MATCH = "no-match"  # did not match the filter pattern
    INVALID = "invalid"  # not a version / number for this policy
    OUT_OF_RANGE = "out-of-range"  # a version outside the semver range
    SHADOWED = "shadowed"  # extracted to the same value as a tag that won the tie
    UNVERIFIED = "unverified"  # allowed, but its signature did not verify (the signature gate)


@dataclass(frozen=True, slots=True)
class Verdict:
    tag: str
    outcome: Outcome
    value: str  # the value the ordering saw (the extracted value, or the tag)
    reason: str


@dataclass(frozen=True, slots=True)
class Selection:
    """The result of :meth:`TagPolicy.explain`: the winner (or None) and a verdict per tag."""

    policy: str
    winner: str | None
    reason: str
    verdicts: tuple[Verdict, ...]


class Rejected(str):
    """A reason an ordering does not rank a value (a ``str`` subclass, cheap to return)."""

    __slots__ = ()


class Ordering(Protocol):
    """Ranks candidate values; the greatest key wins.

    ``rank`` returns a comparable key or None; ``key`` the same key, or a :class:`Rejected`
    reason when the value is not admissible (not a number, outside the range, …). Keys of one
    ordering compare with each other only.
    """

    def describe(self) -> str: ...

    def rank(self, value: str) -> Any:
        """The key, or None when not admissible (the fast path of :meth:`TagPolicy.select`)."""
        ...

    def key(self, value: str) -> Any:
        """The key, or a :class:`Rejected` reason (used to explain)."""
        ...

    def rejected_outcome(self, reason: Rejected) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class TagPolicy:
    """Exclusions + optional filter + an ordering: the whole ImagePolicy of Flux, as a value."""

    ordering: Ordering
    exclusions: Exclusions
    filter: TagFilter | None = None

    def describe(self) -> str:
        parts = [self.ordering.describe()]
        if self.filter is not None:
            parts.append(self.filter.describe())
        return ", ".join(parts)

    def select(self, tags: Iterable[str]) -> str | None:
        """The newest tag allowed, exactly as written, or None when no tag qualifies."""
        best: tuple[Any, str] | None = None
        rank = self.ordering.rank
        excluded = self.exclusions.excludes
        flt = self.filter
        for tag in tags:
            if excluded(tag) is not None:
                continue
            value = tag if flt is None else flt.extract(tag)
            if value is None:
                continue
            k = rank(value)
            if k is None:
                continue
            cand = (k, tag)
            if best is None or cand > best:
                best = cand
        return None if best is None else best[1]

    def explain(self, tags: Iterable[str]) -> Selection:
        """Like :meth:`select`, with a verdict for every distinct tag, in input order."""
        seen: set[str] = set()
        rows: list[tuple[str, Outcome, str, str, Any]] = []
        for tag in tags:
            if tag in seen:
                continue
            seen.add(tag)
            rx = self.exclusions.excludes(tag)
            if rx is not None:
                rows.append((tag, Outcome.EXCLUDED, tag, f"excluded by {rx!r}", None))
                continue
            value = tag
            if self.filter is not None:
                extracted = self.filter.extract(tag)
                if extracted is None:
                    rows.append((tag, Outcome.NO_MATCH, tag, f"does not match pattern {self.filter.pattern!r}", None))
                    continue
                value = extracted
            k = self.ordering.key(value)
            if isinstance(k, Rejected):
                rows.append((tag, self.ordering.rejected_outcome(k), value, str(k), None))
                continue
            rows.append((tag, Outcome.KEPT, value, "admitted", k))
        ranked = [(r[4], r[0]) for r in rows if r[1] is Outcome.KEPT]
        winner = max(ranked)[1] if ranked else None
        verdicts = []
        win_key = max(ranked)[0] if ranked else None
        for tag, outcome, value, reason, k in rows:
            if outcome is Outcome.KEPT:
                if tag == winner:
                    outcome, reason = Outcome.SELECTED, "highest rank"
                elif k == win_key:
                    outcome, reason = Outcome.SHADOWED, f"ranks equal to {winner!r}, which wins the tie (greater by code point)"
            shown = f" (value {value!r})" if value != tag else ""
            verdicts.append(Verdict(tag, outcome, value, reason + shown))
        if winner is None:
            reason = f"no tag of {len(rows)} qualifies under {self.describe()}"
        else:
            kept = len(ranked)
            reason = f"{winner!r} ranks highest of {kept} admitted tag{'s' if kept != 1 else ''} under {self.describe()}"
        return Selection(self.describe(), winner, reason, tuple(verdicts))
