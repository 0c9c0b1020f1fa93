"""The ``alphabetical`` policy: ``asc`` selects the last tag in code-point order, ``desc`` the first.

Code-point order equals Go's byte order for UTF-8, so results match Flux (CalVer and
RFC 3339-like timestamps sort correctly when they have a fixed width).
"""

from __future__ import annotations

from functools import total_ordering

from imagebot.policy.base import Order, Outcome, Rejected


@total_ordering
class _Reversed:
    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.value == other.value

    def __lt__(self, other: _Reversed) -> bool:
        return self.value > other.value

    def __hash__(self) -> int:
        return hash(self.value)


class AlphabeticalOrdering:
    __slots__ = ("order",)

    def __init__(self, order: Order) -> None:
        self.order = order

    def describe(self) -> str:
        return f"alphabetical {self.order}"

    def rank(self, value: str) -> str | _Reversed:
        return value if self.order is Order.ASC else _Reversed(value)

    key = rank

    def rejected_outcome(self, reason: Rejected) -> Outcome:
        return Outcome.INVALID
