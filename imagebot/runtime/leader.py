"""imagebot's leader election: which Lease, what it may ask of the API server, who it is.

The election itself is the kit's (gitopskit.lease): a background keepalive renews the Lease every
retry period; the replica is leader only while its last successful renewal began less than the renew
deadline ago (renew deadline < lease duration), and another replica takes over only after it has
seen the Lease unchanged for a whole lease duration. `imagebot serve --leader-elect` runs passes only
while leading, and fences every write — each push and each pull-request call — with "still leader
with margin" right before it, so a replica that stalls (stopped, partitioned from the API server)
stops writing before anyone else may start. A write already under way when leadership lapses is
bounded by its own deadline, not interrupted. A standby answers probes and keeps its webhook queue
for when it leads; a leader that stops cleanly releases the Lease.
"""

from __future__ import annotations

import socket
import uuid

from kubernetes import client

from gitopskit.lease import LeaderElector, LeaseLock, LeaseTiming

LEASE_NAME = "imagebot-leader"
# What the bot asks of the API server, and nothing more (deploy/ RBAC is tested against this).
RBAC_USES = {
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "update"),
}


def default_identity() -> str:
    """Unique per process (a restarted pod keeps its name but is a new candidate, as in client-go)."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def elector(api: client.ApiClient, namespace: str, identity: str, timing: LeaseTiming | None = None) -> LeaderElector:
    timing = timing or LeaseTiming()
    lock = LeaseLock(api, namespace, LEASE_NAME, identity, timing.duration, request_timeout=max(1.0, timing.renew_deadline / 2))
    return LeaderElector(lock, timing)
