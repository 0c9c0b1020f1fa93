"""The many-apps controller at scale on the test apiserver and a real git remote (issue 15's measures):

C1  cold start: 100 apps × 50 objects (5,000 objects, 20 namespaces; half Flux Kustomizations, half native Apps)
    from one repository, all Ready — `reconciler controller` as a process (target < 20 s), beside, in the same
    run, 100 sequential `reconciler sync` calls and one `kubectl apply --server-side` of the same files
C2  steady state: a full resync of the 100 unchanged apps (target < 2 s, zero writes), with its API calls
C3  drift: 100 concurrent drifts across the 100 apps, each corrected (target p99 < 1 s)
C4  memory: the controller process' RSS with the 5,000 managed objects (target < 250 MB)

floor  what the test apiserver alone needs for the same 5,000 server-side applies: a raw-JSON SSA loop (8 threads,
       no render, no plan, no status), its wall time and the apiserver + etcd CPU it costs

    python -m bench.controller_scale              (all of it)
    python -m bench.controller_scale --c1         (C1 and the floor only: the controller's cold start)
    python -m bench.controller_scale --c1 --py-spy OUT.svg   (the controller under py-spy, a flame graph)
    python -m bench.controller_scale --c3         (C1 and C3 only, with where C3's time goes: the controller's
                                                   own time per correction, from its log)

Beside each cold start: the CPU seconds the controller, the apiserver and etcd spent in it (from /proc).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gitopskit.informer import ApiTransport, EventType, Informer, Key
from gitopskit.kube import request_json
from tests.fixtures.cluster import start_cluster, stop_cluster
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare

APPS, PER_APP, NAMESPACES = 100, 50, 20
ROOT = Path(__file__).resolve().parents[1]
APP_PATH = "/apis/reconciler.imagebot.dev/v1alpha1"
KS_PATH = "/apis/kustomize.toolkit.fluxcd.io/v1"


def objects(app: int, ns: str) -> dict[str, str]:
    files = {}
    for j in range(PER_APP):
        if j % 10 == 0:
            obj: dict[str, Any] = {
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"a{app}-d{j}", "namespace": ns},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": f"a{app}-d{j}"}},
                         "template": {"metadata": {"labels": {"app": f"a{app}-d{j}"}},
                                      "spec": {"containers": [{"name": "c", "image": f"nginx:1.{j % 20}"}]}}},
            }  # fmt: skip
        else:
            obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"a{app}-c{j}", "namespace": ns},
                   "data": {"k": str(j)}}  # fmt: skip
        files[f"{obj['kind'].lower()}-{j:02d}.yaml"] = json.dumps(obj)
    return files


def repo_files(prefix: str) -> dict[str, str]:
    out = {}
    for i in range(APPS):
        for name, text in objects(i, f"{prefix}-{i % NAMESPACES}").items():
            out[f"apps/a{i}/{name}"] = text
    return out


def b64(**v: str) -> dict[str, str]:
    return {k: base64.b64encode(x.encode()).decode() for k, x in v.items()}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ReadyWatch:
    """The apps' Ready conditions as they change, from a watch: polling lists of 100 apps (each status holding its
    50 inventory entries) every 0.2 s would cost the apiserver CPU the measure is about."""

    def __init__(self, api: Any, ns: str) -> None:
        self.stop = threading.Event()
        self.ready: set[tuple[str, str]] = set()
        self.changed = threading.Condition()
        transport = ApiTransport(api)
        self.informers = [Informer(transport, f"{APP_PATH}/namespaces/{ns}/apps"),
                          Informer(transport, f"{KS_PATH}/namespaces/{ns}/kustomizations")]  # fmt: skip
        for inf in self.informers:
            inf.add_handler(self._on)
            inf.start(self.stop)

    def _on(self, etype: EventType, obj: dict[str, Any], prev: dict[str, Any] | None) -> None:
        conds = (obj.get("status") or {}).get("conditions") or []
        ready = etype is not EventType.DELETED and any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
        key = (str(obj.get("kind")), str(Key.of(obj)))
        with self.changed:
            (self.ready.add if ready else self.ready.discard)(key)
            self.changed.notify_all()

    def wait(self, n: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.ready) >= n, timeout)

    def close(self) -> None:
        self.stop.set()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process and the children it reaped (git) have used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """CPU seconds the test apiserver and etcd spend between two reads."""

    def __init__(self, run_dir: Path) -> None:
        self.pids = {p: int((run_dir / f"{p}.pid").read_text()) for p in ("apiserver", "etcd")}
        self.t0 = {p: cpu_s(pid) for p, pid in self.pids.items()}

    def used(self) -> dict[str, float]:
        return {p: cpu_s(pid) - self.t0[p] for p, pid in self.pids.items()}


def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def setup(t: Path) -> tuple[Any, Any, Any, str]:
    """The cluster, the git remote holding the 100 apps, and the 100 app objects (not yet reconciled)."""
    cluster = start_cluster(t / "kube")
    git_http = GitHttp(t / "git")
    api = cluster.api_client()
    from tests.integration.test_crds import install

    install(api)
    for prefix in ("ctl", "sync", "kubectl", "floor"):
        for n in range(NAMESPACES):
            request_json(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": f"{prefix}-{n}"}})
    request_json(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": "apps"}})
    bare = make_bare(git_http.root, "config", repo_files("ctl"))
    url = git_http.url(bare)
    request_json(api, "POST", "/api/v1/namespaces/apps/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git"},
        "data": b64(username=GIT_USER, password=GIT_PASSWORD)})  # fmt: skip
    request_json(api, "POST", "/apis/source.toolkit.fluxcd.io/v1/namespaces/apps/gitrepositories", body={
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "config"},
        "spec": {"url": url, "interval": "10m", "ref": {"branch": "main"}, "secretRef": {"name": "git"}}})  # fmt: skip
    for i in range(APPS):
        if i % 2:
            body = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                    "metadata": {"name": f"a{i}"}, "spec": {"interval": "30m", "prune": True, "path": f"./apps/a{i}",
                             "sourceRef": {"kind": "GitRepository", "name": "config"}}}  # fmt: skip
            request_json(api, "POST", f"{KS_PATH}/namespaces/apps/kustomizations", body=body)
        else:
            body = {"apiVersion": "reconciler.imagebot.dev/v1alpha1", "kind": "App", "metadata": {"name": f"a{i}"},
                    "spec": {"source": {"url": url, "secretRef": {"name": "git"}}, "path": f"apps/a{i}",
                             "prune": True, "interval": "30m"}}  # fmt: skip
            request_json(api, "POST", f"{APP_PATH}/namespaces/apps/apps", body=body)
    return cluster, git_http, api, url


def cold_start(
    cluster: Any, api: Any, t: Path, py_spy: str = "", log: Path | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, float]]:
    """C1: the controller as a process, from start to all 100 Ready; the process is left running (its INFO log
    in ``log`` when given)."""
    server = ServerCpu(cluster.run_dir)
    t0 = time.monotonic()
    env = {**os.environ, "RECONCILER_WEBHOOK_SECRET": "bench"}
    argv = [sys.executable, "-m", "reconciler", *(["--log-level", "INFO"] if log else []), "controller",
            "--kubeconfig", str(cluster.kubeconfig), "--namespace", "apps", "--workers", "8",
            "--cache", str(t / "cache")]  # fmt: skip
    if py_spy:
        argv = [str(Path(sys.executable).with_name("py-spy")), "record", "-r", "50", "-o", py_spy, "--", *argv]
    watch = ReadyWatch(api, "apps")
    err = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        if not watch.wait(APPS, 600):
            raise RuntimeError(f"only {len(watch.ready)} of {APPS} apps Ready after 600 s")
    finally:
        watch.close()
    cold = time.monotonic() - t0
    pid = proc.pid
    if py_spy:  # the controller is py-spy's child
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        pid = int(kids[0]) if kids else proc.pid
    used = server.used()
    return proc, {"c1_cold_s": cold, "c1_controller_cpu_s": cpu_s(pid), "c1_apiserver_cpu_s": used["apiserver"],
                  "c1_etcd_cpu_s": used["etcd"], "c4_rss_mb": rss_mb(pid)}  # fmt: skip


def floor(cluster: Any, api: Any, threads: int = 8) -> dict[str, float]:
    """The same 5,000 objects server-side applied by a bare loop (raw JSON, ``threads`` at once, namespaces
    already there): what the apiserver alone needs, the part of C1 no reconciler change can remove."""
    bodies = [json.loads(text) for text in repo_files("floor").values()]
    paths = []
    for b in bodies:
        ns, name = b["metadata"]["namespace"], b["metadata"]["name"]
        base = "/apis/apps/v1" if b["kind"] == "Deployment" else "/api/v1"
        paths.append(f"{base}/namespaces/{ns}/{b['kind'].lower()}s/{name}")
    server = ServerCpu(cluster.run_dir)
    t0 = time.monotonic()

    def one(i: int) -> None:
        request_json(api, "PATCH", paths[i], [("fieldManager", "floor"), ("force", "true")], bodies[i],
                     "application/apply-patch+yaml")  # fmt: skip

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(len(bodies))))
    took = time.monotonic() - t0
    used = server.used()
    return {"floor_ssa_s": took, "floor_apiserver_cpu_s": used["apiserver"], "floor_etcd_cpu_s": used["etcd"]}


def run(c1_only: bool = False, py_spy: str = "") -> dict[str, float]:
    results: dict[str, float] = {"load_before": float(load_avg().split()[0])}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        cluster = git_http = None
        proc: subprocess.Popen[bytes] | None = None
        try:
            cluster, git_http, api, _ = setup(t)
            proc, c1 = cold_start(cluster, api, t, py_spy)
            results.update(c1)
            results["load_c1"] = float(load_avg().split()[0])
            if c1_only:
                proc.send_signal(2 if py_spy else 15)  # py-spy writes its graph on SIGINT
                proc.wait(60)
                proc = None
                results.update(floor(cluster, api))
            else:
                results.update(rest(cluster, api, t, proc))
                proc = None
                results.update(floor(cluster, api))
        finally:
            if proc is not None:
                proc.kill()
            if git_http is not None:
                git_http.stop()
            stop_cluster(t / "kube")
    report(results, c1_only)
    return results


def c3(api: Any) -> dict[str, float]:
    """C3: 100 concurrent drifts by a person, one per app, each timed from its write to the Git value read back."""

    def drift(i: int) -> float:
        ns, name = f"ctl-{i % NAMESPACES}", f"a{i}-c1"
        path = f"/api/v1/namespaces/{ns}/configmaps/{name}"
        t1 = time.monotonic()
        request_json(api, "PATCH", path + "?fieldManager=kubectl-edit", body={"data": {"k": "drift"}},
                     content_type="application/merge-patch+json")  # fmt: skip
        while request_json(api, "GET", path)["data"] != {"k": "1"}:
            if time.monotonic() - t1 > 30:
                return float("inf")
            time.sleep(0.005)
        return time.monotonic() - t1

    with ThreadPoolExecutor(max_workers=APPS) as pool:
        lat = sorted(pool.map(drift, range(APPS)))
    return {"c3_p50_s": statistics.median(lat), "c3_p99_s": lat[int(len(lat) * 0.99) - 1], "c3_max_s": lat[-1]}


def corrections(log: Path) -> list[float]:
    """The controller's own time per correction (its log: watch event handled → correction applied), in s, in the
    log's order."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        m = re.search(r"corrected .* in (\d+) ms", line)
        if m:
            out.append(int(m.group(1)) / 1000)
    return out


def run_c3(rounds: int) -> None:
    """C1 then C3 ``rounds`` times on the same controller (a drift, corrected, then the next round), with the
    controller's own time per correction beside each: where C3's time goes."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        cluster = git_http = None
        proc: subprocess.Popen[bytes] | None = None
        try:
            cluster, git_http, api, _ = setup(t)
            log = t / "controller.log"
            proc, c1 = cold_start(cluster, api, t, log=log)
            print(f"C1 {c1['c1_cold_s']:5.1f}s  [load {load_avg()}]", flush=True)
            time.sleep(2)  # the Ready-time status writes and first health passes settle
            for n in range(rounds):
                before = len(corrections(log))
                load = load_avg()
                server, ctl0 = ServerCpu(cluster.run_dir), cpu_s(proc.pid)
                r = c3(api)
                ctl_cpu, used = cpu_s(proc.pid) - ctl0, server.used()
                time.sleep(0.5)  # the log's last lines
                own = sorted(corrections(log)[before:])
                own_s = "no log lines"
                if own:
                    own_s = (f"controller's own per correction: p50 {statistics.median(own) * 1000:4.0f} ms, "
                             f"max {own[-1] * 1000:4.0f} ms, sum {sum(own):5.2f} s over {len(own)}")  # fmt: skip
                print(f"C3 round {n + 1}: p50 {r['c3_p50_s'] * 1000:5.0f} ms, p99 {r['c3_p99_s'] * 1000:5.0f} ms, "
                      f"max {r['c3_max_s'] * 1000:5.0f} ms; {own_s}; CPU-s controller {ctl_cpu:4.2f}, "
                      f"apiserver {used['apiserver']:4.2f}, etcd {used['etcd']:4.2f}  [load {load}]", flush=True)  # fmt: skip
        finally:
            if proc is not None:
                proc.kill()
            if git_http is not None:
                git_http.stop()
            if cluster is not None:
                stop_cluster(t / "kube")


def rest(cluster: Any, api: Any, t: Path, proc: subprocess.Popen[bytes]) -> dict[str, float]:
    """C3 (on the running controller, which is then stopped), C2 in process, and the two peers of C1."""

    results = c3(api)
    proc.terminate()
    proc.wait(30)

    # C2: a full resync of the 100 unchanged apps, in process (to count its API calls)
    from reconciler.controller import AppController

    ctl = AppController(cluster.api_client(), ("apps",), workers=8, cache=t / "cache")
    calls = {"n": 0, "writes": 0, "lists": 0}
    pool_mgr = ctl.api.rest_client.pool_manager
    real = pool_mgr.request

    def counting(method: str, url: str, *a: Any, **kw: Any) -> Any:
        if "watch=" not in url:
            calls["n"] += 1
            calls["writes"] += method in ("POST", "PUT", "PATCH", "DELETE")
            calls["lists"] += method == "GET" and "labelSelector=" in url
        return real(method, url, *a, **kw)

    pool_mgr.request = counting
    done = threading.Event()
    seen: list[int] = []
    real_reconcile = ctl.controller.reconcile

    def counted(key: Any) -> Any:
        r = real_reconcile(key)
        seen.append(1)
        if len(seen) >= APPS:
            done.set()
        return r

    ctl.controller.reconcile = counted
    ctl.start()
    done.wait(300)  # the first pass after a start builds the engines: not the steady state
    seen.clear()
    done.clear()
    calls["n"] = calls["writes"] = calls["lists"] = 0
    t2 = time.monotonic()
    ctl._enqueue_all()
    done.wait(300)
    resync = time.monotonic() - t2
    resync_calls, resync_writes, resync_lists = calls["n"], calls["writes"], calls["lists"]
    ctl.stop(30)

    # baselines on the same files: 100 sequential `reconciler sync`, one kubectl apply --server-side
    from reconciler.cli import main as reconciler_main

    src = t / "src"
    for rel, text in repo_files("sync").items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    t3 = time.monotonic()
    for i in range(APPS):
        argv = ["sync", "--kubeconfig", str(cluster.kubeconfig), "--source", str(src / f"apps/a{i}"),
                "--name", f"seq{i}", "--inventory-namespace", "apps"]  # fmt: skip
        code = reconciler_main(argv, out=io.StringIO(), err=io.StringIO())
        assert code == 0
    sequential = time.monotonic() - t3
    ksrc = t / "ksrc"
    for rel, text in repo_files("kubectl").items():
        (ksrc / rel).parent.mkdir(parents=True, exist_ok=True)
        (ksrc / rel).write_text(text)
    t4 = time.monotonic()
    subprocess.run([shutil.which("kubectl") or "kubectl", "--kubeconfig", str(cluster.kubeconfig), "apply",
                    "--server-side", "-R", "-f", str(ksrc)], check=True, capture_output=True)  # fmt: skip
    kubectl = time.monotonic() - t4
    return {
        "c1_sequential_sync_s": sequential, "c1_kubectl_s": kubectl,
        "c2_resync_s": resync, "c2_api_calls": resync_calls, "c2_writes": resync_writes, "c2_lists": resync_lists,
        **results,
    }  # fmt: skip


def report(r: dict[str, float], c1_only: bool) -> None:
    objs = APPS * PER_APP
    cold = r["c1_cold_s"]
    peers = "" if c1_only else (f"; 100 sequential `reconciler sync` {r['c1_sequential_sync_s']:5.1f}s; "
                                f"kubectl apply --server-side {r['c1_kubectl_s']:5.1f}s")  # fmt: skip
    print(f"C1 cold start, {APPS} apps x {PER_APP} objects ({objs}) all Ready: controller {cold:5.1f}s "
          f"{'ok' if cold < 20 else 'MISSED'} (target < 20 s){peers}  [load {r['load_before']:.1f} before, "
          f"{r['load_c1']:.1f} after]")  # fmt: skip
    print(f"   CPU during C1: controller {r['c1_controller_cpu_s']:5.1f}s, apiserver {r['c1_apiserver_cpu_s']:5.1f}s, "
          f"etcd {r['c1_etcd_cpu_s']:5.1f}s (2 cores: {2 * cold:5.1f} CPU-s of wall)")  # fmt: skip
    print(f"   floor: the same {objs} server-side applies from a bare 8-thread raw-JSON loop {r['floor_ssa_s']:5.1f}s, "
          f"apiserver {r['floor_apiserver_cpu_s']:5.1f} CPU-s, etcd {r['floor_etcd_cpu_s']:5.1f} CPU-s")  # fmt: skip
    if not c1_only:
        resync, calls, writes, lists = r["c2_resync_s"], int(r["c2_api_calls"]), int(r["c2_writes"]), int(r["c2_lists"])
        print(f"C2 full resync of {APPS} unchanged apps: {resync:5.2f}s {'ok' if resync < 2 else 'MISSED'} (target < 2 s), "
              f"{writes} writes {'ok' if writes == 0 else 'MISSED'}, {calls} API calls "
              f"({calls / APPS:.1f} per app, the inventory reads), {lists} lists "
              f"{'ok' if lists <= 10 else 'MISSED'} (target: at most one list per resource type)")  # fmt: skip
        p50, p99 = r["c3_p50_s"], r["c3_p99_s"]
        print(f"C3 {APPS} concurrent drifts corrected: p50 {p50 * 1000:4.0f} ms, p99 {p99 * 1000:4.0f} ms "
              f"{'ok' if p99 < 1 else 'MISSED'} (target p99 < 1 s)")  # fmt: skip
    rss = r["c4_rss_mb"]
    print(f"C4 controller RSS with {objs} managed objects: {rss:5.0f} MB {'ok' if rss < 250 else 'MISSED'} (target < 250 MB)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.controller_scale")
    ap.add_argument("--c1", action="store_true", help="the cold start and the floor only")
    ap.add_argument("--py-spy", default="", metavar="OUT", help="run the controller under py-spy record, graph to OUT")
    ap.add_argument("--c3", type=int, nargs="?", const=1, default=0, metavar="ROUNDS",
                    help="the cold start, then C3 (ROUNDS times), with the controller's own time per correction")  # fmt: skip
    a = ap.parse_args()
    if a.c3:
        run_c3(a.c3)
    else:
        run(a.c1, a.py_spy)
