"""`imagebot controller` on the test apiserver (issue 16's measures), the controller run as a process:

I1  registry push → commit on the remote, 50 ImagePolicies through the controller: a tag pushed to a real registry
    (Debian's docker-registry), the ImageRepository's `reconcile.fluxcd.io/requestedAt` set as a Flux Receiver
    does, until the remote (git over smart HTTP) holds the new tag — 50 events one after another (p50 / p99)
I2  the controller's RSS holding 500 ImageRepositories × 1,000 tags (a cheap registry of ours on 127.0.0.1 answers
    every tag list), with their 500 ImagePolicies resolved

    python -m bench.image_controller
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gitopskit.kube import request_json
from tests.fixtures.cluster import start_cluster, stop_cluster
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare, read_file
from tests.fixtures.net import QuietHandler, ThreadServer
from tests.fixtures.pki import make_pki
from tests.fixtures.registry import start_registry

IMAGE = "/apis/image.toolkit.fluxcd.io/v1"
POLICIES, REPOS_RSS, TAGS_RSS = 50, 500, 1000


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def _create(api: Any, ns: str, plural: str, body: dict[str, Any], base: str = IMAGE) -> None:
    request_json(api, "POST", f"{base}/namespaces/{ns}/{plural}", body=body)


def _flux(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _controller(kubeconfig: Path, ns: str, cache: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "imagebot", "controller", "--kubeconfig", str(kubeconfig), "--namespace", ns,
           "--workers", "4", "--cache", str(cache), "--log-level", "warning"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _until(cond: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out: {what}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def push_to_commit(api: Any, kubeconfig: Path, work: Path) -> dict[str, float]:
    ns = "bench-latency"
    request_json(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": ns}})
    reg = start_registry("plain", work / "registry", make_pki(work / "pki"))
    git = GitHttp(work / "git")
    (work / "git").mkdir(exist_ok=True)
    proc = None
    try:
        pusher = reg.pusher()
        files = {}
        for i in range(POLICIES):
            pusher.push(f"fleet/app{i}", ["1.0.0"])
            files[f"apps/app{i}.yaml"] = f'image: {reg.host}/fleet/app{i}:1.0.0 # {{"$imagepolicy": "{ns}:app{i}"}}\n'
        bare = make_bare(work / "git", "fleet", files)
        creds = {"username": _b64(GIT_USER), "password": _b64(GIT_PASSWORD)}
        _create(api, ns, "secrets", {"metadata": {"name": "git"}, "data": creds}, "/api/v1")
        _create(api, ns, "gitrepositories", {
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "fleet"},
            "spec": {"url": git.url(bare), "interval": "1h", "ref": {"branch": "main"}, "secretRef": {"name": "git"}},
        }, "/apis/source.toolkit.fluxcd.io/v1")  # fmt: skip
        _create(api, ns, "imageupdateautomations", _flux("ImageUpdateAutomation", "fleet", {
            "interval": "1h", "sourceRef": {"kind": "GitRepository", "name": "fleet"},
            "git": {"checkout": {"ref": {"branch": "main"}}, "commit": {"author": {"name": "bot", "email": "bot@example.org"}},
                    "push": {"branch": "main"}},
            "update": {"path": "./apps", "strategy": "Setters"},
        }))  # fmt: skip
        for i in range(POLICIES):
            _create(api, ns, "imagerepositories", _flux("ImageRepository", f"app{i}", {
                "image": f"{reg.host}/fleet/app{i}", "interval": "1h", "insecure": True}))  # fmt: skip
            _create(api, ns, "imagepolicies", _flux("ImagePolicy", f"app{i}", {
                "imageRepositoryRef": {"name": f"app{i}"}, "policy": {"semver": {"range": ">=1.0.0"}}}))  # fmt: skip
        proc = _controller(kubeconfig, ns, work / "cache-latency", work / "latency.log")

        def automation_ready() -> bool:
            o = request_json(api, "GET", f"{IMAGE}/namespaces/{ns}/imageupdateautomations/fleet") or {}
            got = {p for p in (o.get("status") or {}).get("observedPolicies") or {}}
            return len(got) == POLICIES

        _until(automation_ready, 180, "the 50 policies resolved and observed")
        seconds = []
        for i in range(POLICIES):
            pusher.push(f"fleet/app{i}", ["1.1.0"])
            t0 = time.perf_counter()
            request_json(api, "PATCH", f"{IMAGE}/namespaces/{ns}/imagerepositories/app{i}",
                         body={"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": f"push-{i}"}}},
                         content_type="application/merge-patch+json")  # fmt: skip
            _until(lambda n=i: f"app{n}:1.1.0" in read_file(bare, "main", f"apps/app{n}.yaml"), 60, f"app{i} committed")
            seconds.append(time.perf_counter() - t0)
        seconds.sort()
        p99 = seconds[min(len(seconds) - 1, round(0.99 * (len(seconds) - 1)))]
        print(f"I1 registry push -> commit, {POLICIES} policies through the controller: p50 {statistics.median(seconds):.2f} s, "
              f"p99 {p99:.2f} s (min {seconds[0]:.2f}, max {seconds[-1]:.2f})")  # fmt: skip
        return {"i1_p50_s": round(statistics.median(seconds), 3), "i1_p99_s": round(p99, 3), "i1_max_s": round(seconds[-1], 3)}
    finally:
        if proc is not None:
            _stop(proc)
        git.stop()
        reg.stop()


def _tag_registry(tags: int) -> ThreadServer:
    """Every repository has the same ``tags`` semver tags; answers /v2/ and tag lists only (what a scan needs)."""
    body = json.dumps({"name": "x", "tags": [f"1.{i // 100}.{i % 100}" for i in range(tags)]}).encode()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/v2/") and "/tags/list" in self.path:
                self.send_body(200, body, {}, "application/json")
            elif self.path.rstrip("/") == "/v2":
                self.send_body(200, b"{}", {}, "application/json")
            else:
                self.send_body(404, b"{}", {}, "application/json")

    return ThreadServer(Handler)


def memory(api: Any, kubeconfig: Path, work: Path) -> dict[str, float]:
    ns = "bench-rss"
    request_json(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": ns}})
    reg = _tag_registry(TAGS_RSS)
    host = f"127.0.0.1:{reg.port}"
    proc = None
    try:
        for i in range(REPOS_RSS):
            _create(api, ns, "imagerepositories", _flux("ImageRepository", f"r{i}", {
                "image": f"{host}/team/app{i}", "interval": "1h", "insecure": True}))  # fmt: skip
            _create(api, ns, "imagepolicies", _flux("ImagePolicy", f"r{i}", {
                "imageRepositoryRef": {"name": f"r{i}"}, "policy": {"semver": {"range": "^1.0"}}}))  # fmt: skip
        t0 = time.perf_counter()
        proc = _controller(kubeconfig, ns, work / "cache-rss", work / "rss.log")

        def resolved() -> bool:
            items = (request_json(api, "GET", f"{IMAGE}/namespaces/{ns}/imagepolicies") or {}).get("items") or []
            return sum(1 for o in items if (o.get("status") or {}).get("latestRef", {}).get("tag") == "1.9.99") == REPOS_RSS

        _until(resolved, 600, f"{REPOS_RSS} policies resolved")
        took = time.perf_counter() - t0
        rss, peak = _rss_mb(proc.pid), _rss_mb(proc.pid, "VmHWM")
        print(f"I2 controller holding {REPOS_RSS} ImageRepositories x {TAGS_RSS:,} tags ({REPOS_RSS} policies resolved in "
              f"{took:.1f} s from start): RSS {rss:.0f} MB, peak {peak:.0f} MB")  # fmt: skip
        return {"i2_rss_mb": round(rss, 1), "i2_peak_mb": round(peak, 1), "i2_resolve_all_s": round(took, 1)}
    finally:
        if proc is not None:
            _stop(proc)
        reg.stop()


def run() -> dict[str, float]:
    from tests.integration.test_crds import install

    work = Path(tempfile.mkdtemp(prefix="bench-image-controller-"))
    cluster = start_cluster(work / "apiserver")
    try:
        api = cluster.api_client()
        install(api)
        results = push_to_commit(api, cluster.kubeconfig, work)
        results.update(memory(api, cluster.kubeconfig, work))
        return results
    finally:
        stop_cluster(work / "apiserver")
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(json.dumps(run(), indent=2))
