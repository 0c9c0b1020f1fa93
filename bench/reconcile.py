"""Reconciler figures on the test apiserver, each with its baseline measured in the same run:

P4  first apply of 1,000 objects vs `kubectl apply --server-side` of the same files (target <= 0.25x)
P5  no-op reconcile of 1,000 objects: time and API calls (target < 1 s, <= 1 call per object);
    kubectl re-run as the baseline (it re-patches everything)
P6  drift -> corrected latency over 100 drifts, p50 / p99 (target p99 < 1 s)

    python -m bench.reconcile
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from reconciler.cluster import KubeCluster
from reconciler.engine import Engine, Settings
from reconciler.model import Manifest, ResourceKey
from tests.fixtures.cluster import start_cluster, stop_cluster

N = 1000
P4_RUNS = 3


def write_objects(d: Path, ns: str) -> None:
    d.mkdir(parents=True)
    (d / "ns.yaml").write_text(json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
    for i in range(N - 1):
        if i % 4 == 0:
            obj: dict[str, Any] = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"d{i}", "namespace": ns},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": f"d{i}"}},
                    "template": {
                        "metadata": {"labels": {"app": f"d{i}"}},
                        "spec": {"containers": [{"name": "c", "image": f"nginx:1.{i % 20}"}]},
                    },
                },
            }
        else:
            obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": ns}, "data": {"k": str(i)}}
        (d / f"o{i:04d}.yaml").write_text(json.dumps(obj))


def kubectl_apply(kubeconfig: Path, d: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "apply", "--server-side", "-f", str(d)], check=True, capture_output=True
    )
    return time.perf_counter() - t0


def run() -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        cluster = start_cluster(t / "kube")
        try:
            # P4, repeated: each run creates its own 1,000 objects in fresh namespaces, ours and kubectl's
            firsts: list[tuple[float, float]] = []
            for run_no in range(P4_RUNS):
                write_objects(t / f"kubectl{run_no}", f"bench-kubectl-{run_no}")
                write_objects(t / f"ours{run_no}", f"bench-ours-{run_no}")
                k = kubectl_apply(cluster.kubeconfig, t / f"kubectl{run_no}")
                e = Engine(KubeCluster(cluster.api_client(), "reconciler"), Settings(f"bench{run_no}", workers=16))
                firsts.append((e.sync(t / f"ours{run_no}", "r1").seconds, k))
            last = P4_RUNS - 1
            k1 = statistics.median(k for _, k in firsts)
            ours1 = statistics.median(o for o, _ in firsts)
            k2 = kubectl_apply(cluster.kubeconfig, t / f"kubectl{last}")
            noops = [e.sync(t / f"ours{last}", "r1") for _ in range(7)]  # the no-op is cheap: show its spread
            r2 = sorted(noops, key=lambda r: r.seconds)[len(noops) // 2]  # the median run
            spread = (min(r.seconds for r in noops), max(r.seconds for r in noops))
            writes = max(r.api_writes for r in noops)
            results.update(
                {
                    "p4_ours_s": ours1,
                    "p4_kubectl_s": k1,
                    "p4_ratio": ours1 / k1,
                    "p4_ours_min_s": min(o for o, _ in firsts),
                    "p4_ours_max_s": max(o for o, _ in firsts),
                    "p5_noop_s": r2.seconds,
                    "p5_api_calls": r2.api_calls,
                    "p5_api_writes": writes,
                    "p5_min_s": spread[0],
                    "p5_max_s": spread[1],
                    "p5_kubectl_rerun_s": k2,
                }
            )
            print(
                f"P4 first apply of {N} objects, median of {P4_RUNS}: reconciler {ours1:5.2f}s "
                f"(min {min(o for o, _ in firsts):.2f}, max {max(o for o, _ in firsts):.2f}) vs kubectl --server-side "
                f"{k1:5.2f}s (min {min(k for _, k in firsts):.2f}, max {max(k for _, k in firsts):.2f}) "
                f"-> {ours1 / k1:4.2f}x  {'ok' if ours1 / k1 <= 0.25 else 'MISSED'} (target <= 0.25x)"
            )
            print(
                f"P5 no-op reconcile of {N}: median {r2.seconds * 1000:4.0f} ms of {len(noops)} runs "
                f"(min {spread[0] * 1000:.0f}, max {spread[1] * 1000:.0f}), {r2.api_calls} API calls, {writes} writes "
                f"{'ok' if spread[1] < 1 and r2.api_calls <= N and writes == 0 else 'MISSED'} (kubectl re-run: {k2:5.2f}s)"
            )
            # P6: 100 drifts by another field manager, corrected through the watch
            stop = threading.Event()
            e.watch(stop, correct=True)
            time.sleep(1.0)
            other = KubeCluster(cluster.api_client(), "kubectl-edit")
            deploys = [m for m in e.desired.values() if m.kind == "Deployment"][:100]
            lat = []
            for m in deploys:
                before = len(e.corrections)
                patch = {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": m.key.name, "namespace": m.key.namespace},
                    "spec": {"replicas": 5},
                }
                t0 = time.monotonic()
                other.apply(Manifest(ResourceKey("apps", "Deployment", m.key.namespace, m.key.name), "apps/v1", patch))
                deadline = t0 + 5
                while len(e.corrections) == before and time.monotonic() < deadline:
                    time.sleep(0.002)
                lat.append(time.monotonic() - t0)
            stop.set()
            lat.sort()
            p50, p99 = statistics.median(lat), lat[int(len(lat) * 0.99) - 1]
            results.update({"p6_p50_s": p50, "p6_p99_s": p99})
            print(
                f"P6 drift -> corrected over {len(lat)} drifts: p50 {p50 * 1000:5.0f} ms, p99 {p99 * 1000:5.0f} ms  "
                f"{'ok' if p99 < 1 else 'MISSED'} (target p99 < 1 s)"
            )
        finally:
            stop_cluster(t / "kube")
    return results


if __name__ == "__main__":
    run()
