"""Lease-based leader election (coordination.k8s.io/v1), so a second replica never writes.

The holder renews its Lease every ``duration / 3``; another candidate takes over only after
``renewTime + leaseDurationSeconds`` has passed. Updates use the Lease's resourceVersion, so
two candidates racing for an expired Lease cannot both win.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gitopskit.kube import request_json

log = logging.getLogger(__name__)

LEASE_NAME = "imagebot-leader"
# What the bot asks of the API server, and nothing more (deploy/ RBAC is tested against this).
RBAC_USES = {
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "update"),
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _micro(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        identity: str,
        name: str = LEASE_NAME,
        duration: int = 15,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        self.api = api
        self.namespace, self.identity, self.name, self.duration = namespace, identity, name, duration
        self.clock = clock

    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"

    def try_acquire(self) -> bool:
        """Take or renew the Lease; False while another holder's Lease is still valid."""
        now = self.clock()
        stamp = _micro(now)  # MicroTime needs microseconds and 'Z'
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "renewTime": stamp,
            "acquireTime": stamp,
        }
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        try:
            lease = request_json(self.api, "GET", f"{self._path()}/{self.name}")
        except ApiException as exc:
            if exc.status != 404:
                raise
            try:
                request_json(
                    self.api,
                    "POST",
                    self._path(),
                    body={"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec},
                )
                return True
            except ApiException as exc2:
                if exc2.status == 409:
                    return False  # someone else created it first
                raise
        cur = lease.get("spec") or {}
        holder = cur.get("holderIdentity")
        renew = _parse(cur.get("renewTime") or cur.get("acquireTime"))
        expired = renew is None or renew + dt.timedelta(seconds=cur.get("leaseDurationSeconds") or self.duration) < now
        if holder != self.identity and not expired:
            return False
        if holder == self.identity and cur.get("acquireTime"):
            spec["acquireTime"] = cur["acquireTime"]
        meta["resourceVersion"] = lease["metadata"]["resourceVersion"]  # guards the race between candidates
        try:
            request_json(
                self.api,
                "PUT",
                f"{self._path()}/{self.name}",
                body={"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec},
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        if holder != self.identity:
            log.info("acquired lease %s/%s (previous holder %s)", self.namespace, self.name, holder)
        return True


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
