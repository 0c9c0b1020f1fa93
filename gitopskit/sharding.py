"""``--shards auto`` for both controllers: objects spread over the live replicas, each reconciled by one at a time.

The objects (apps; image objects by namespace) are hashed onto K slots (a stable hash of a key); each slot is a
Lease. Every replica renews a member Lease of its own and counts the live members — a member Lease whose record it
has seen change within its duration, on its own monotonic clock (never another node's wall clock) — and holds about
K / members slots: it takes free or expired slots while under that share and releases slots while over it, so a new
replica gets its share and a dead one's slots are taken over within a lease duration. A replica reconciles and
writes only for the slots it holds with margin (the same rule as leader election: its last successful renewal began
less than the renew deadline ago), so two replicas never write for one object at once.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from gitopskit.errors import NotLeader
from gitopskit.kube import request_json
from gitopskit.lease import LeaseLock, LeaseTiming

log = logging.getLogger(__name__)


def slot_of(key: str, slots: int) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % slots


class AutoShards:
    def __init__(
        self,
        api: Any,
        namespace: str,
        identity: str,
        slots: int = 16,
        timing: LeaseTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
        prefix: str = "reconciler-controller",
    ) -> None:
        """``prefix`` names the Leases (``<prefix>-member-<tag>``, ``<prefix>-slot-<i>``): one set per controller."""
        if slots < 1:
            raise ValueError("--shard-slots must be at least 1")
        self.api, self.namespace, self.identity, self.slots = api, namespace, identity, slots
        self.prefix = prefix
        self.timing = timing or LeaseTiming()
        self.clock = clock
        tag = hashlib.sha256(identity.encode()).hexdigest()[:12]
        self.member = LeaseLock(api, namespace, f"{prefix}-member-{tag}", identity, self.timing.duration, clock)
        duration = self.timing.duration
        self.locks = [LeaseLock(api, namespace, f"{prefix}-slot-{i}", identity, duration, clock) for i in range(slots)]
        self._valid_until: list[float | None] = [None] * slots
        self._members: dict[str, tuple[dict[str, Any], float]] = {}  # member Lease name -> (spec seen, first seen)
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_change: Callable[[], None] | None = None  # told when the set of held slots changes

    # ------------------------------------------------------------------ what we hold
    def held(self) -> list[int]:
        now = self.clock()
        with self._mutex:
            return [i for i, v in enumerate(self._valid_until) if v is not None and now < v]

    def owns(self, key: str) -> bool:
        return slot_of(key, self.slots) in self.held()

    def fence(self, key: str) -> None:
        if not self.owns(key):
            raise NotLeader(f"this replica does not hold slot {slot_of(key, self.slots)} of {key}: nothing written")

    # ------------------------------------------------------------------ one round
    def live_members(self) -> int:
        now = self.clock()
        found = request_json(self.api, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases", timeout=5)
        live = 0
        for lease in (found or {}).get("items") or []:
            name = (lease.get("metadata") or {}).get("name", "")
            if not name.startswith(f"{self.prefix}-member-"):
                continue
            spec = lease.get("spec") or {}
            seen = self._members.get(name)
            if seen is None or seen[0] != spec:
                self._members[name] = seen = (spec, now)
            if spec.get("holderIdentity") and now < seen[1] + (spec.get("leaseDurationSeconds") or self.timing.duration):
                live += 1
        return max(live, 1)

    def _round(self, i: int) -> None:
        started = self.clock()
        try:
            ok: bool | None = self.locks[i].try_acquire_or_renew()
        except Exception as exc:  # leadership of the slot lapses on the clock
            log.warning("slot %d: renewal failed: %s", i, exc)
            ok = None
        with self._mutex:
            if ok:
                self._valid_until[i] = started + self.timing.renew_deadline
            elif ok is False:
                self._valid_until[i] = None

    def step(self) -> None:
        before = self.held()
        try:
            self.member.try_acquire_or_renew()
            target = math.ceil(self.slots / self.live_members())
        except Exception as exc:
            log.warning("shard membership: %s", exc)
            target = len(before)  # keep what we hold; take nothing new while blind
        for i in before:
            self._round(i)
        held = self.held()
        for i in held[target:]:  # over our share: hand the extra slots to the others at once
            with self._mutex:
                self._valid_until[i] = None
            self.locks[i].release()
        if len(held) < target:
            start = int(hashlib.sha256(self.identity.encode()).hexdigest(), 16) % self.slots  # spread the first tries
            for j in range(self.slots):
                i = (start + j) % self.slots
                if len(self.held()) >= target:
                    break
                if i not in held:
                    self._round(i)
        after = self.held()
        if after != before:
            log.info("shard slots held: %s (share %d of %d)", after, target, self.slots)
            if self.on_change is not None:
                self.on_change()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> AutoShards:
        def run() -> None:
            while not self._stop.is_set():
                self.step()
                self._stop.wait(self.timing.retry_period)

        self._thread = threading.Thread(target=run, name="shards", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.member.request_timeout + 1)
        for i in self.held():
            self.locks[i].release()
        with self._mutex:
            self._valid_until = [None] * self.slots
        self.member.release()
