"""Two `reconciler controller --leader-elect` processes: one writes, the other waits with warm caches; SIGKILL of the
leader hands its apps to the other within a lease duration; a leader stopped (SIGSTOP) past its lease writes
nothing after SIGCONT until it leads again."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gitopskit.kube import request_json
from reconciler.controller_cli import APP_PATH
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare
from tests.integration.test_crds import install
from tests.reconciler.test_argo import b64
from tests.reconciler.test_controller import cm, create, until

pytestmark = [pytest.mark.cluster, pytest.mark.git]

TIMING = ["--leader-lease-duration", "3", "--leader-renew-deadline", "2", "--leader-retry-period", "0.3"]


def start(cluster: TestCluster, ns: str, name: str, tmp: Path, mode: list[str] | None = None) -> subprocess.Popen[str]:
    log = (tmp / f"{name}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "--log-level", "INFO", "controller", "--kubeconfig", str(cluster.kubeconfig),
         "--namespace", ns, *(mode or ["--leader-elect"]), "--leader-namespace", ns, "--leader-identity", name,
         "--cache", str(tmp / f"cache-{name}"), *TIMING],
        stdout=log, stderr=subprocess.STDOUT, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip


def holder(api: Any, ns: str) -> str:
    try:
        lease = request_json(api, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/reconciler-controller-main")
    except Exception:
        return ""
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


class Apps:
    """N single-ConfigMap native Apps in ``ns`` from one repository over smart HTTP with a Flux basic-auth Secret."""

    def __init__(self, api: Any, ns: str, git_http: GitHttp, name: str, count: int) -> None:
        self.api, self.ns = api, ns
        bare = make_bare(git_http.root, f"{name}-{ns}", {f"apps/a{i}/cm.yaml": cm(f"a{i}", n=str(i)) for i in range(count)})
        self.url = git_http.url(bare)
        data = b64(username=GIT_USER, password=GIT_PASSWORD)
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git"}, "data": data}
        create(api, f"/api/v1/namespaces/{ns}/secrets", secret)

    def add(self, i: int) -> None:
        spec = {"source": {"url": self.url, "secretRef": {"name": "git"}}, "path": f"apps/a{i}", "prune": True}
        body = {"apiVersion": "reconciler.imagebot.dev/v1alpha1", "kind": "App", "metadata": {"name": f"a{i}"}, "spec": spec}
        create(self.api, f"{APP_PATH}/namespaces/{self.ns}/apps", body)

    def ready(self, i: int) -> bool:
        st = request_json(self.api, "GET", f"{APP_PATH}/namespaces/{self.ns}/apps/a{i}").get("status") or {}
        return any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or [])


def test_leader_election_hands_apps_over_on_sigkill_and_a_stopped_leader_stays_quiet(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> None:
    api = cluster.api_client()
    install(api)
    ns = namespace
    apps = Apps(api, ns, git_http, "rep", 4)
    app, ready = apps.add, apps.ready

    procs = {name: start(cluster, ns, name, tmp_path) for name in ("r1", "r2")}
    try:
        app(0)
        until(lambda: ready(0), timeout=90, what="a0 Ready")
        first = until(lambda: holder(api, ns), what="a leader")
        other = "r2" if first == "r1" else "r1"

        # SIGKILL the leader: the other replica takes over within about a lease duration and serves new apps
        procs[first].send_signal(signal.SIGKILL)
        procs[first].wait(10)
        killed_at = time.monotonic()
        app(1)
        until(lambda: holder(api, ns) == other, timeout=30, what="takeover")
        until(lambda: ready(1), timeout=60, what="a1 Ready after takeover")
        assert time.monotonic() - killed_at < 30

        # SIGSTOP the new leader past its lease: the restarted first replica takes over; after SIGCONT the stopped
        # one must not write (it finds it is no longer leading before any write)
        procs[first] = start(cluster, ns, first, tmp_path)
        procs[other].send_signal(signal.SIGSTOP)
        until(lambda: holder(api, ns) == first, timeout=30, what="takeover from the stopped leader")
        app(2)
        until(lambda: ready(2), timeout=60, what="a2 Ready under the new leader")
        procs[other].send_signal(signal.SIGCONT)
        app(3)
        until(lambda: ready(3), timeout=60, what="a3 Ready")
        time.sleep(2)  # let the resumed replica run a few rounds
        log = (tmp_path / f"{other}.log").read_text()
        assert "no longer leading" in log, log
        assert f"{ns}/a2 at" not in log and f"{ns}/a3 at" not in log, f"the stopped replica wrote after it lost the lease:\n{log}"
        assert holder(api, ns) == first
        cms = request_json(api, "GET", f"/api/v1/namespaces/{ns}/configmaps")["items"]
        owners = {c["metadata"]["name"]: [m["manager"] for m in c["metadata"].get("managedFields") or []] for c in cms}
        assert all(set(m) <= {"reconciler"} for n, m in owners.items() if n in {"a0", "a1", "a2", "a3"}), json.dumps(owners)
    finally:
        for p in procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGCONT)
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()


def test_shards_auto_spreads_the_apps_over_live_replicas_and_takes_over_a_dead_ones_slots(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> None:
    api = cluster.api_client()
    install(api)
    ns = namespace
    apps = Apps(api, ns, git_http, "auto", 10)
    app, ready = apps.add, apps.ready

    def slot_holders() -> dict[str, str]:
        leases = request_json(api, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases")["items"]
        return {x["metadata"]["name"]: x["spec"].get("holderIdentity") or "" for x in leases if "-slot-" in x["metadata"]["name"]}

    auto = ["--shards", "auto", "--shard-slots", "4"]
    procs = {name: start(cluster, ns, name, tmp_path, auto) for name in ("s1", "s2")}
    try:
        for i in range(8):
            app(i)
        for i in range(8):
            until(lambda i=i: ready(i), timeout=90, what=f"a{i} Ready")
        until(lambda: sorted(slot_holders().values()).count("s1") == 2 and sorted(slot_holders().values()).count("s2") == 2,
              timeout=30, what="two slots each")  # fmt: skip
        procs["s1"].send_signal(signal.SIGKILL)
        procs["s1"].wait(10)
        until(lambda: set(slot_holders().values()) == {"s2"} and len(slot_holders()) == 4, timeout=30, what="s2 holds all")
        for i in (8, 9):
            app(i)
            until(lambda i=i: ready(i), timeout=60, what=f"a{i} Ready after s1 died")
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
