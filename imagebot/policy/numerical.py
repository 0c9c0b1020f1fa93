"""The ``numerical`` policy: tags read as decimal numbers (integers or floats).

Numbers are compared exactly (``decimal.Decimal``), so long timestamps such as
``20240131235959123`` never collide the way 64-bit floats would. Accepted: an optional sign,
digits with an optional fraction, an optional exponent (``-3``, ``1.5``, ``.5``, ``1e3``).
Not numbers (skipped): ``inf``, ``nan``, hex, underscores, surrounding spaces.
``asc`` selects the largest number, ``desc`` the smallest (Flux's meaning).
"""

from __future__ import annotations

import re
from decimal import Decimal

from imagebot.policy.base import Order, Outcome, Rejected

# ASCII digits only: ``\d`` (and ``Decimal``) accept any Unicode digit, so fullwidth 999 would rank.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_NOT_A_NUMBER = Rejected("not a number")


class NumericalOrdering:
    __slots__ = ("_sign", "order")

    def __init__(self, order: Order) -> None:
        self.order = order
        self._sign = 1 if order is Order.ASC else -1

    def describe(self) -> str:
        return f"numerical {self.order}"

    def rank(self, value: str) -> Decimal | None:
        if _NUMBER.fullmatch(value) is None:
            return None
        return Decimal(value) * self._sign

    def key(self, value: str) -> Decimal | Rejected:
        k = self.rank(value)
        return _NOT_A_NUMBER if k is None else k

    def rejected_outcome(self, reason: Rejected) -> Outcome:
        return Outcome.INVALID
