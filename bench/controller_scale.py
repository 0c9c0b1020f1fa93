"""The many-apps controller at scale on the test apiserver and a real git remote (issue 15's measures):

C1  cold start: 100 apps × 50 objects (5,000 objects, 20 namespaces; half Flux Kustomizations, half native Apps)
    from one repository, all Ready — `reconciler controller` as a process (target < 20 s), beside, in the same
    run, 100 sequential `reconciler sync` calls and one `kubectl apply --server-side` of the same files
C2  steady state: a full resync of the 100 unchanged apps (target < 2 s, zero writes), with its API calls
C3  drift: 100 concurrent drifts across the 100 apps, each corrected (target p99 < 1 s)
C4  memory: the controller process' RSS with the 5,000 managed objects (target < 250 MB)

    python -m bench.controller_scale
"""

from __future__ import annotations

import base64
import io
import json
import os
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


def ready_count(api: Any, ns: str) -> int:
    n = 0
    for path in (f"{APP_PATH}/namespaces/{ns}/apps", f"{KS_PATH}/namespaces/{ns}/kustomizations"):
        for o in (request_json(api, "GET", path) or {}).get("items") or []:
            conds = (o.get("status") or {}).get("conditions") or []
            n += any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
    return n


def run() -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        cluster = start_cluster(t / "kube")
        git_http = GitHttp(t / "git")
        proc: subprocess.Popen[bytes] | None = None
        try:
            api = cluster.api_client()
            from tests.integration.test_crds import install

            install(api)
            for prefix in ("ctl", "sync", "kubectl"):
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

            # C1: the controller as a process, from start to all 100 Ready
            t0 = time.monotonic()
            env = {**os.environ, "RECONCILER_WEBHOOK_SECRET": "bench"}
            proc = subprocess.Popen(
                [sys.executable, "-m", "reconciler", "controller", "--kubeconfig", str(cluster.kubeconfig), "--namespace",
                 "apps", "--workers", "8", "--cache", str(t / "cache")],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            while ready_count(api, "apps") < APPS:
                if time.monotonic() - t0 > 600:
                    raise RuntimeError(f"only {ready_count(api, 'apps')} of {APPS} apps Ready after 600 s")
                time.sleep(0.2)
            cold = time.monotonic() - t0
            rss = rss_mb(proc.pid)

            # C3: 100 concurrent drifts by a person, one per app
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
            p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
            proc.terminate()
            proc.wait(30)
            proc = None

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
        finally:
            if proc is not None:
                proc.kill()
            git_http.stop()
            stop_cluster(t / "kube")
    results.update({
        "c1_cold_s": cold, "c1_sequential_sync_s": sequential, "c1_kubectl_s": kubectl,
        "c2_resync_s": resync, "c2_api_calls": resync_calls, "c2_writes": resync_writes, "c2_lists": resync_lists,
        "c3_p50_s": p50, "c3_p99_s": p99, "c4_rss_mb": rss,
    })  # fmt: skip
    objs = APPS * PER_APP
    print(f"C1 cold start, {APPS} apps x {PER_APP} objects ({objs}) all Ready: controller {cold:5.1f}s "
          f"{'ok' if cold < 20 else 'MISSED'} (target < 20 s); 100 sequential `reconciler sync` {sequential:5.1f}s; "
          f"kubectl apply --server-side {kubectl:5.1f}s")  # fmt: skip
    print(f"C2 full resync of {APPS} unchanged apps: {resync:5.2f}s {'ok' if resync < 2 else 'MISSED'} (target < 2 s), "
          f"{resync_writes} writes {'ok' if resync_writes == 0 else 'MISSED'}, {resync_calls} API calls "
          f"({resync_calls / APPS:.1f} per app, the inventory reads), {resync_lists} lists "
          f"{'ok' if resync_lists <= 10 else 'MISSED'} (target: at most one list per resource type)")  # fmt: skip
    print(f"C3 {APPS} concurrent drifts corrected: p50 {p50 * 1000:4.0f} ms, p99 {p99 * 1000:4.0f} ms "
          f"{'ok' if p99 < 1 else 'MISSED'} (target p99 < 1 s)")  # fmt: skip
    print(f"C4 controller RSS with {objs} managed objects: {rss:5.0f} MB {'ok' if rss < 250 else 'MISSED'} (target < 250 MB)")
    return results


if __name__ == "__main__":
    run()
