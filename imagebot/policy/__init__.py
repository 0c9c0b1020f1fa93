"""Tag-selection policies (pure): semver, numerical, alphabetical, filters and exclusions."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from imagebot.errors import PolicyError
from imagebot.policy.alphabetical import AlphabeticalOrdering
from imagebot.policy.base import Order, Ordering, Outcome, Selection, TagPolicy, Verdict
from imagebot.policy.filter import DEFAULT_EXCLUDES, Exclusions, TagFilter
from imagebot.policy.numerical import NumericalOrdering
from imagebot.policy.semver import SemverOrdering

__all__ = [
    "DEFAULT_EXCLUDES",
    "Exclusions",
    "Order",
    "Ordering",
    "Outcome",
    "PolicyKind",
    "PolicySpec",
    "Selection",
    "TagFilter",
    "TagPolicy",
    "Verdict",
    "build",
]


class PolicyKind(StrEnum):
    SEMVER = "semver"
    NUMERICAL = "numerical"
    ALPHABETICAL = "alphabetical"


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A policy as the user wrote it (CLI flags, native config or a Flux ImagePolicy)."""

    kind: PolicyKind
    argument: str  # the range for semver, the order for the others
    pattern: str | None = None
    extract: str = ""
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES


def build(spec: PolicySpec) -> TagPolicy:
    """Validate a spec and build its policy; raises PolicyError saying what is wrong."""
    if spec.extract and spec.pattern is None:
        raise PolicyError("--extract needs --pattern: the template refers to the pattern's groups")
    ordering: Ordering
    if spec.kind is PolicyKind.SEMVER:
        ordering = SemverOrdering(spec.argument)
    elif spec.kind is PolicyKind.NUMERICAL:
        ordering = NumericalOrdering(Order.parse(spec.argument))
    else:
        ordering = AlphabeticalOrdering(Order.parse(spec.argument))
    flt = TagFilter(spec.pattern, spec.extract) if spec.pattern is not None else None
    return TagPolicy(ordering=ordering, exclusions=Exclusions(spec.excludes), filter=flt)
