"""Leader election on a coordination.k8s.io/v1 Lease, renewed in the background (client-go's scheme).

- :class:`LeaseLock` is one round against the API server: take the Lease, or renew it. Another
  candidate takes over only after it has seen the same Lease record unchanged for
  ``leaseDurationSeconds`` on its own monotonic clock (never by comparing the holder's wall-clock
  ``renewTime`` with its own: clocks of two nodes disagree). Updates carry the resourceVersion, so
  two candidates racing for an expired Lease cannot both win.
- :class:`LeaderElector` runs that round every ``retry_period`` in a thread. It is the leader only
  while its last successful renewal *started* less than ``renew_deadline`` ago (``is_leader``);
  ``renew_deadline < duration`` leaves a margin before anyone else may take over. A replica that
  cannot renew (API unreachable, process stopped) therefore stops being leader on its own clock,
  before the Lease can expire; one that sees another holder stops at once.
- Writers call :meth:`LeaderElector.fence` right before each write (a push, a pull-request call): it
  raises :class:`~gitopskit.errors.NotLeader` unless still leader with that margin. A write already
  under way when leadership lapses runs to its own deadline (git's, the forge client's): the margin
  (``duration - renew_deadline``) is what covers it.

Clocks are injected (``clock`` monotonic seconds, ``wall`` for the timestamps humans read), so
tests drive expiry without sleeping.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gitopskit.errors import NotLeader
from gitopskit.kube import request_json

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _micro(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # MicroTime needs microseconds and 'Z'


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    duration: float = 15.0  # leaseDurationSeconds: how long others wait after the last renewal they saw
    renew_deadline: float = 10.0  # the leader stops writing this long after its last successful renewal began
    retry_period: float = 2.0  # between two rounds (renewal, or a standby's attempt)

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError(
                f"leader election needs 0 < retry period ({self.retry_period:g}s) < renew deadline "
                f"({self.renew_deadline:g}s) < lease duration ({self.duration:g}s)"
            )


class LeaseLock:
    """One Lease object, seen by one candidate."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        duration: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = _now,
        request_timeout: float = 5.0,
    ) -> None:
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.duration = max(1, math.ceil(duration))  # an integer on the wire; rounding up never shortens it
        self.clock, self.wall, self.request_timeout = clock, wall, request_timeout
        self._observed: dict[str, Any] | None = None  # the last Lease spec seen…
        self._observed_at = 0.0  # …and when it was first seen (monotonic)
        self.holder: str | None = None  # who held the Lease at the last round

    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        return request_json(self.api, method, path, body=body, timeout=self.request_timeout)

    def _body(self, spec: dict[str, Any], resource_version: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            meta["resourceVersion"] = resource_version  # guards the race between candidates
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    def try_acquire_or_renew(self) -> bool:
        """Take or renew the Lease; False while another holder's Lease is still valid, or on a lost race.
        API failures raise (ApiException, urllib3 errors): the caller decides what they mean."""
        now = self.clock()
        stamp = _micro(self.wall())
        try:
            lease = self._request("GET", f"{self._path()}/{self.name}")
        except ApiException as exc:
            if exc.status != 404:
                raise
            spec = {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            }
            try:
                self._request("POST", self._path(), self._body(spec))
            except ApiException as exc2:
                if exc2.status == 409:
                    return False  # someone else created it first
                raise
            self._saw(spec, now)
            log.info("acquired lease %s/%s (new)", self.namespace, self.name)
            return True
        cur: dict[str, Any] = lease.get("spec") or {}
        if cur != self._observed:
            self._saw(cur, now)
        holder = cur.get("holderIdentity") or None
        duration = cur.get("leaseDurationSeconds") or self.duration
        if holder is not None and holder != self.identity and now < self._observed_at + duration:
            return False  # another holder, renewed within the last lease duration as far as we have seen
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": cur.get("acquireTime") if holder == self.identity and cur.get("acquireTime") else stamp,
            "renewTime": stamp,
            "leaseTransitions": (cur.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1),
        }
        try:
            self._request("PUT", f"{self._path()}/{self.name}", self._body(spec, lease["metadata"]["resourceVersion"]))
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self._saw(spec, now)
        if holder != self.identity:
            log.info("acquired lease %s/%s (previous holder %s)", self.namespace, self.name, holder or "none")
        return True

    def release(self) -> None:
        """Give the Lease up (holder cleared), so a standby takes over at its next round instead of waiting
        out the lease duration. Only if we still hold it; failures are logged, never raised."""
        try:
            lease = self._request("GET", f"{self._path()}/{self.name}")
            cur = lease.get("spec") or {}
            if cur.get("holderIdentity") != self.identity:
                return
            spec = {**cur, "holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": _micro(self.wall())}
            self._request("PUT", f"{self._path()}/{self.name}", self._body(spec, lease["metadata"]["resourceVersion"]))
            log.info("released lease %s/%s", self.namespace, self.name)
        except Exception as exc:  # best effort: the lease expires anyway
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)

    def _saw(self, spec: dict[str, Any], now: float) -> None:
        self._observed, self._observed_at = spec, now
        self.holder = spec.get("holderIdentity") or None


class LeaderElector:
    """Keeps a :class:`LeaseLock` renewed in the background; ``is_leader()`` / ``fence()`` are cheap."""

    def __init__(
        self,
        lock: LeaseLock,
        timing: LeaseTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lock = lock
        self.timing = timing or LeaseTiming()
        self.clock = clock
        self._valid_until: float | None = None  # leader until then (monotonic), unless renewed again
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was_leader = False

    def is_leader(self) -> bool:
        """Leader, with the margin: the last successful renewal began less than ``renew_deadline`` ago."""
        with self._mutex:
            return self._valid_until is not None and self.clock() < self._valid_until

    def fence(self) -> None:
        """Raise NotLeader unless still leader with the margin; call right before every write."""
        if not self.is_leader():
            raise NotLeader(
                f"not the leader (lease {self.lock.namespace}/{self.lock.name} held by {self.lock.holder or 'nobody'}): "
                "nothing written"
            )

    def step(self) -> None:
        """One round: renew (or try to take) the Lease and update the leadership window."""
        started = self.clock()
        try:
            ok = self.lock.try_acquire_or_renew()
        except Exception as exc:  # API unreachable, refused, timed out: leadership lapses on the clock
            log.warning("lease %s/%s: renewal failed: %s", self.lock.namespace, self.lock.name, exc)
            ok = None
        with self._mutex:
            if ok:
                self._valid_until = started + self.timing.renew_deadline
            elif ok is False:
                self._valid_until = None  # someone else holds it: stop at once
        leader = self.is_leader()
        if leader != self._was_leader:
            if leader:
                log.info("leading (lease %s/%s as %s)", self.lock.namespace, self.lock.name, self.lock.identity)
            else:
                log.warning(
                    "no longer leading (lease %s/%s, holder %s): writes stop",
                    self.lock.namespace,
                    self.lock.name,
                    self.lock.holder or "unknown",
                )
            self._was_leader = leader

    def run(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self.timing.retry_period)

    def start(self) -> LeaderElector:
        self._thread = threading.Thread(target=self.run, name="lease-keepalive", daemon=True)
        self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        """Stop renewing; with ``release``, give the Lease up if still held (a clean handover)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.lock.request_timeout + 1)
        leader = self.is_leader()
        with self._mutex:
            self._valid_until = None
        if release and leader:
            self.lock.release()
