"""Two `imagebot serve --leader-elect` processes on the test API server, each writing to its own bare
repository (so every write shows who made it): the leader keeps the Lease while it lives, a stopped
leader is replaced and writes nothing after it resumes until it leads again, a killed one is replaced,
a terminated one hands the Lease over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gitopskit.errors import NotLeader
from gitopskit.webhookauth import sign
from gitopskit.workspace import GitAuth, Workspace
from imagebot import refs
from imagebot.gitops.writer import Delivery, deliver
from imagebot.runtime.leader import LEASE_NAME
from imagebot.update import EditRequest
from tests.fixtures.botconfig import deployment, git_env, imagebot_config
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, log, make_bare, read_file
from tests.fixtures.net import free_port, stop_pid
from tests.fixtures.registry import RegistryServer

pytestmark = [pytest.mark.cluster, pytest.mark.git]

ROOT = Path(__file__).resolve().parents[2]
DURATION, DEADLINE, RETRY = 4.0, 2.5, 0.5
SECRET = "lease-s3cret"

IMAGES = """images:
  - name: app
    repository: {registry}/le/app
    environments:
      prod:
        policy: {{semver: "^1"}}
        setter: le:app
        target: {{git: config, path: apps}}
"""


def wait(what: str, check: Callable[[], bool], timeout: float = 60.0, procs: dict[str, Replica] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for r in (procs or {}).values():
            assert r.proc.poll() is None or r.stopped_on_purpose, f"{r.name} exited: {r.log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        time.sleep(0.1)


class Replica:
    def __init__(self, name: str, cluster: TestCluster, namespace: str, cfg: Path, tmp: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log = tmp / f"{name}.log"
        self.stopped_on_purpose = False
        argv = [sys.executable, "-m", "imagebot", "serve", "--config", str(cfg), "--listen", f"127.0.0.1:{self.port}"]
        argv += ["--leader-elect", "--kubeconfig", str(cluster.kubeconfig), "--leader-namespace", namespace]
        argv += ["--leader-identity", name, "--leader-lease-duration", str(DURATION)]
        argv += ["--leader-renew-deadline", str(DEADLINE), "--leader-retry-period", str(RETRY)]
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "IMAGEBOT_WEBHOOK_SECRET": SECRET,
            **git_env("LE"),
        }
        with self.log.open("w") as fh:
            self.proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def webhook(self, repository: str) -> int:
        body = json.dumps({"image": repository}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/", data=body, method="POST", headers={"X-Imagebot-Signature-256": sign(SECRET, body)}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False


@pytest.fixture
def world(
    cluster: TestCluster, namespace: str, registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path
) -> Iterator[tuple[dict[str, Replica], dict[str, Path], RegistryServer, Callable[[], str | None]]]:
    host = registry_plain.host
    registry_plain.pusher().push("le/app", ["1.0.0", "1.1.0"], distinct=True)
    remotes, configs = {}, {}
    for name in ("a", "b"):
        remotes[name] = make_bare(
            git_http.root, f"le-{name}-{os.urandom(4).hex()}", {"apps/deploy.yaml": deployment(f"{host}/le/app:1.0.0", "le:app")}
        )
        configs[name] = tmp_path / f"{name}.yaml"
        url = git_http.url(remotes[name])
        configs[name].write_text(imagebot_config(IMAGES.format(registry=host), state=tmp_path / f"{name}.db",
                                                 cache=tmp_path / f"cache-{name}", registries=[host], url=url, env="LE",
                                                 settings="debounce: 100ms"))  # fmt: skip
    api = cluster.api_client()

    def holder() -> str | None:
        from gitopskit.kube import request_json

        try:
            lease = request_json(api, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{LEASE_NAME}")
        except Exception:
            return None
        return (lease.get("spec") or {}).get("holderIdentity")

    replicas: dict[str, Replica] = {}
    try:
        replicas["a"] = Replica("a", cluster, namespace, configs["a"], tmp_path)
        yield replicas, remotes, registry_plain, holder
    finally:
        for r in replicas.values():
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGCONT)
            stop_pid(r.proc)


def tag_in(remote: Path) -> str:
    text = read_file(remote, "main", "apps/deploy.yaml")
    return text.split("/le/app:")[1].split()[0]


def test_one_writer_keepalive_takeover_and_no_write_after_resuming(
    world: tuple[dict[str, Replica], dict[str, Path], RegistryServer, Callable[[], str | None]],
    cluster: TestCluster,
    namespace: str,
    tmp_path: Path,
) -> None:
    replicas, remotes, registry, holder = world
    a = replicas["a"]
    wait("a leads and writes 1.1.0", lambda: holder() == "a" and tag_in(remotes["a"]) == "1.1.0", 60, replicas)
    b = replicas["b"] = Replica("b", cluster, namespace, tmp_path / "b.yaml", tmp_path)
    wait("b is up (a ready standby)", b.ready, 60, replicas)

    # 1. the leader keeps its Lease while it lives, though its loop sleeps for an hour between scans
    watched_until = time.monotonic() + 3 * DURATION
    while time.monotonic() < watched_until:
        assert holder() == "a", "the Lease changed hands while its holder was alive"
        assert tag_in(remotes["b"]) == "1.0.0", "the standby wrote"
        time.sleep(0.2)

    # 2. the leader stops (SIGSTOP): the standby takes over and writes
    a.proc.send_signal(signal.SIGSTOP)
    a.stopped_on_purpose = True
    wait("b takes over", lambda: holder() == "b", 30, replicas)
    wait("b writes its first scan", lambda: tag_in(remotes["b"]) == "1.1.0", 60, replicas)
    registry.pusher().push("le/app", ["1.2.0"], distinct=True)
    assert b.webhook(f"{registry.host}/le/app") == 202
    wait("b writes 1.2.0", lambda: tag_in(remotes["b"]) == "1.2.0", 60, replicas)

    # 3. the old leader resumes: it writes nothing, though it has 1.2.0 to write and a webhook asking for it
    head_a = log(remotes["a"], "main")
    a.proc.send_signal(signal.SIGCONT)
    assert a.webhook(f"{registry.host}/le/app") == 202
    settle = time.monotonic() + 2 * DURATION
    while time.monotonic() < settle:
        assert log(remotes["a"], "main") == head_a, "the resumed old leader wrote"
        assert holder() == "b"
        time.sleep(0.2)

    # 4. the leader dies (SIGKILL): the other takes over, and only now writes
    b.proc.send_signal(signal.SIGKILL)
    b.stopped_on_purpose = True
    wait("a takes over again", lambda: holder() == "a", 30, replicas)
    wait("a writes 1.2.0", lambda: tag_in(remotes["a"]) == "1.2.0", 60, replicas)

    # 5. a pod's stop (SIGTERM): the leader releases the Lease and exits 0
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(30) == 0, a.log.read_text()[-3000:]
    assert holder() is None, "released: a standby would take over at its next round, not a lease duration later"
    a_log = a.log.read_text()
    assert "Traceback" not in a_log, a_log[-3000:]


def test_a_fenced_workspace_pushes_nothing(git_http: GitHttp, tmp_path: Path) -> None:
    bare = make_bare(
        git_http.root, f"fence{os.urandom(4).hex()}", {"d.yaml": 'image: ghcr.io/o/app:1.0.0 # {"$imagepolicy": "x:app"}\n'}
    )
    ws = Workspace(git_http.url(bare), "main", tmp_path / "c", GitAuth(GIT_USER, GIT_PASSWORD))

    def fence() -> None:
        raise NotLeader("not the leader")

    ws.fence = fence
    before = log(bare, "main")
    with pytest.raises(NotLeader):
        deliver(ws, Delivery(), EditRequest(policies={"x:app": refs.parse("ghcr.io/o/app:1.1.0")}))
    assert log(bare, "main") == before
