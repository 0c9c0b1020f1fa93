"""`reconciler controller --shards auto`: the kit's AutoShards (gitopskit/sharding.py) under the reconciler's Lease
names (``reconciler-controller-member-*``, ``reconciler-controller-slot-*``)."""

from __future__ import annotations

from gitopskit.sharding import AutoShards, slot_of

PREFIX = "reconciler-controller"

__all__ = ["PREFIX", "AutoShards", "slot_of"]
