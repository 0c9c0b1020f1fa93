"""CLI of the many-apps controller: `reconciler controller`, `reconciler get`, `reconciler reconcile`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kubernetes.client.exceptions import ApiException

from gitopskit import httpd
from gitopskit.errors import ListenError
from gitopskit.kube import request_json
from reconciler import apps as A
from reconciler.errors import ClusterError, ExitCode, Unhealthy, UsageError

if TYPE_CHECKING:
    from reconciler.controller import AppController

KS_PATH = "/apis/kustomize.toolkit.fluxcd.io/v1"
APP_PATH = "/apis/reconciler.imagebot.dev/v1alpha1"
ARGO_PATH = "/apis/argoproj.io/v1alpha1"


def add_commands(sub: Any, epilog: str) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    c = sub.add_parser(
        "controller",
        help="reconcile every app declared as an object (Flux Kustomization, native App)",
        epilog=epilog,
        formatter_class=fmt,
    )
    _kube(c)
    c.add_argument("--namespace", action="append", default=[], metavar="NS", help="serve only these namespaces (repeatable)")
    c.add_argument("--shard", default="", metavar="KEY", help=f"serve only apps labelled {A.SHARD_LABEL}=KEY")
    c.add_argument("--shards", choices=["auto"], help="spread the apps over the live replicas (Leases per slot)")
    c.add_argument("--shard-slots", type=int, default=16, metavar="K", help="slots the apps are hashed onto (default 16)")
    c.add_argument("--workers", type=int, default=4, help="apps reconciled at once")
    c.add_argument("--no-cross-namespace-refs", action="store_true",
                   help="refuse sourceRef and dependsOn to another namespace (Flux's multi-tenancy lockdown)")  # fmt: skip
    c.add_argument("--listen", metavar="HOST:PORT", help="/healthz, /readyz, /metrics and Git push webhooks")
    c.add_argument("--webhook-secret-env", default="RECONCILER_WEBHOOK_SECRET")
    c.add_argument("--notify-config", metavar="FILE", help="notifications: sinks and filters (README, Notifications)")
    c.add_argument("--cache", type=Path, help="git checkouts and snapshots (default ~/.cache/imagebot/controller)")
    c.add_argument("--leader-elect", action="store_true", help="one writer per shard among replicas (a Lease)")
    c.add_argument("--leader-namespace", default=os.environ.get("POD_NAMESPACE", "default"), help="where the Lease lives")
    c.add_argument("--leader-identity", help="default: hostname and pid")
    c.add_argument("--leader-lease-duration", type=float, default=15.0, metavar="S", help="(default 15)")
    c.add_argument("--leader-renew-deadline", type=float, default=10.0, metavar="S", help="stop writing after (default 10)")
    c.add_argument("--leader-retry-period", type=float, default=2.0, metavar="S", help="(default 2)")
    c.set_defaults(func=cmd_controller)
    g = sub.add_parser("get", help="apps with Ready, revision, health, drift and message", epilog=epilog, formatter_class=fmt)
    _kube(g)
    g.add_argument("app", nargs="?", help="one app by name")
    g.add_argument("-n", "--namespace", default="default")
    g.add_argument("-A", "--all-namespaces", action="store_true")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_get)
    r = sub.add_parser(
        "reconcile", help="request an immediate run of one app and wait for it", epilog=epilog, formatter_class=fmt
    )
    _kube(r)
    r.add_argument("app")
    r.add_argument("-n", "--namespace", default="default")
    r.add_argument("--kind", choices=["App", "Kustomization", "Application"], help="default: whichever exists, in that order")
    r.add_argument("--timeout", type=float, default=120)
    r.set_defaults(func=cmd_reconcile)


def _kube(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, then in-cluster")
    p.add_argument("--context")


def _api(args: argparse.Namespace, pool: int = 16) -> Any:
    from reconciler.cluster import load_api_client

    return load_api_client(args.kubeconfig, args.context, pool)


def cmd_controller(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    from gitopskit.lease import LeaderElector, LeaseLock, LeaseTiming
    from reconciler.controller import APPLY_WORKERS, DRIFT_WORKERS, AppController
    from reconciler.sharding import AutoShards

    if args.shards and (args.shard or args.leader_elect):
        raise UsageError("--shards auto spreads the apps itself: it goes without --shard and --leader-elect")
    if args.shard_slots < 1:
        raise UsageError("--shard-slots must be at least 1")
    try:
        timing = LeaseTiming(args.leader_lease_duration, args.leader_renew_deadline, args.leader_retry_period)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    notify_cfg = None
    if args.notify_config:
        from reconciler.notices import load_notify_config

        notify_cfg = load_notify_config(args.notify_config)  # a bad file fails before anything starts
    # a connection for every request in flight (each worker's app applies APPLY_WORKERS at once, the drift workers
    # one each) and every watch (they hold theirs): a full pool opens a new TLS connection per request beyond it,
    # costing both sides CPU
    api = _api(args, pool=args.workers * APPLY_WORKERS + DRIFT_WORKERS + 32)
    identity = args.leader_identity or f"{socket.gethostname()}-{os.getpid()}"
    elector = shards = None
    if args.leader_elect:
        name = f"reconciler-controller-{args.shard or 'main'}"
        elector = LeaderElector(LeaseLock(api, args.leader_namespace, name, identity, timing.duration), timing)
    if args.shards:
        shards = AutoShards(api, args.leader_namespace, identity, args.shard_slots, timing)
    ctl = AppController(api, tuple(args.namespace), args.shard, args.workers, args.cache, elector=elector, shards=shards,
                        no_cross_namespace_refs=args.no_cross_namespace_refs)
    notifier = None
    if notify_cfg is not None:
        from gitopskit.notifier import build_notifier
        from gitopskit.notify import NotifyConfigError

        try:
            notifier = build_notifier(notify_cfg, source="reconciler", registry=ctl.metrics.registry, api=lambda: api)
        except NotifyConfigError as exc:
            shutil.rmtree(ctl.secrets_dir, ignore_errors=True)
            raise UsageError(f"--notify-config {args.notify_config}: {exc}") from None
        ctl.notices.emitter = notifier.start()
        ctl.notices.peers.after = notify_cfg.failing_after
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = _server(args.listen, os.environ.get(args.webhook_secret_env, ""), ctl) if args.listen else None
    except ListenError as exc:  # the port is taken (another replica, a process not yet gone), or not ours to bind
        shutil.rmtree(ctl.secrets_dir, ignore_errors=True)
        raise UsageError(f"--listen: {exc}") from None
    ctl.start()
    print(f"reconciler controller: serving {', '.join(args.namespace) or 'all namespaces'}"
          f"{f', shard {args.shard}' if args.shard else ''} with {args.workers} workers", file=err, flush=True)  # fmt: skip
    try:
        stop.wait()
    finally:
        if server is not None:
            server.shutdown()
        ctl.stop()
        if notifier is not None:
            notifier.close(30.0)  # what is queued goes out before the exit (a dead sink waits no longer)
    return int(ExitCode.OK)


def _server(listen: str, secret: str, ctl: AppController) -> httpd.Server:
    from prometheus_client import generate_latest

    class Handler(httpd.Handler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self.send(200, b"ok\n")
            elif self.path == "/readyz":
                ok = ctl.wait_synced(0)
                self.send(200 if ok else 503, b"ok\n" if ok else b"informers not synced\n")
            elif self.path == "/metrics":
                self.send(200, generate_latest(ctl.metrics.registry), "text/plain; version=0.0.4")
            else:
                self.send(404, b"not found\n")

        def do_POST(self) -> None:
            if not secret:
                self.send(404, b"no webhook secret configured\n")
                return
            if self.authorized_body(secret) is None:
                return
            ctl.refresh()
            self.send(202, b"sources refreshed\n")

    return httpd.start(listen, Handler)


def _list(api: Any, path: str) -> list[dict[str, Any]]:
    try:
        return (request_json(api, "GET", path, timeout=30) or {}).get("items") or []
    except ApiException as exc:
        if exc.status == 404:
            return []  # the CRD is not installed
        raise ClusterError(f"GET {path}: HTTP {exc.status}") from None


def _row(obj: dict[str, Any]) -> dict[str, Any]:
    meta, st = obj.get("metadata") or {}, obj.get("status") or {}
    if obj.get("kind") == "Application":  # Argo CD's status: Ready means Synced and not Degraded
        sync, health = (st.get("sync") or {}).get("status", "Unknown"), (st.get("health") or {}).get("status", "")
        cond: dict[str, Any] = next(iter(st.get("conditions") or []), {})
        return {
            "namespace": meta.get("namespace", ""), "name": meta.get("name", ""), "kind": "Application",
            "ready": "True" if sync == "Synced" and health not in ("Degraded", "Missing") and not cond else "False",
            "reason": cond.get("type") or sync, "revision": (st.get("sync") or {}).get("revision", ""), "health": health,
            "drift": sum(1 for r in st.get("resources") or [] if r.get("status") == "OutOfSync"),
            "suspended": False, "message": cond.get("message") or (st.get("operationState") or {}).get("message", sync),
        }  # fmt: skip
    ready: dict[str, Any] = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), {})
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "kind": obj.get("kind", ""),
        "ready": ready.get("status", "Unknown"),
        "reason": ready.get("reason", ""),
        "revision": st.get("lastAppliedRevision", ""),
        "health": st.get("health", ""),
        "drift": st.get("driftCount", 0),
        "suspended": bool((obj.get("spec") or {}).get("suspend")),
        "message": ready.get("message", ""),
    }


def cmd_get(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    api = _api(args)
    scope = "" if args.all_namespaces else f"/namespaces/{args.namespace}"
    found = [_list(api, f"{base}{scope}/{plural}") for base, plural in
             ((APP_PATH, "apps"), (KS_PATH, "kustomizations"), (ARGO_PATH, "applications"))]  # fmt: skip
    rows = [_row(o) for objs in found for o in objs]
    if args.app:
        rows = [r for r in rows if r["name"] == args.app]
        if not rows:
            raise UsageError(f"no app named {args.app!r} in {'any namespace' if args.all_namespaces else args.namespace}")
    rows.sort(key=lambda r: (r["namespace"], r["name"], r["kind"]))
    if args.json:
        print(json.dumps(rows, indent=2), file=out)
        return int(ExitCode.OK)
    cols = ["NAMESPACE", "NAME", "KIND", "READY", "REVISION", "HEALTH", "DRIFT", "MESSAGE"]
    table = [[r["namespace"], r["name"], r["kind"], r["ready"] + (" (suspended)" if r["suspended"] else ""),
              r["revision"][:52], r["health"], str(r["drift"]), r["message"][:100]] for r in rows]  # fmt: skip
    widths = [max(len(c), *(len(t[i]) for t in table)) if table else len(c) for i, c in enumerate(cols)]
    for line in [cols, *table]:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip(), file=out)
    return int(ExitCode.OK)


def cmd_reconcile(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    api = _api(args)
    paths = {"App": f"{APP_PATH}/namespaces/{args.namespace}/apps/{args.app}",
             "Kustomization": f"{KS_PATH}/namespaces/{args.namespace}/kustomizations/{args.app}",
             "Application": f"{ARGO_PATH}/namespaces/{args.namespace}/applications/{args.app}"}  # fmt: skip
    kinds = [args.kind] if args.kind else ["App", "Kustomization", "Application"]
    path = None
    for kind in kinds:
        try:
            request_json(api, "GET", paths[kind], timeout=30)
            path = paths[kind]
            break
        except ApiException as exc:
            if exc.status != 404:
                raise ClusterError(f"GET {paths[kind]}: HTTP {exc.status}") from None
    if path is None:
        raise UsageError(f"no App, Kustomization or Application named {args.app!r} in namespace {args.namespace}")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 1_000_000_000:09d}Z"
    patch = {"metadata": {"annotations": {A.REQUESTED_AT: stamp}}}
    request_json(api, "PATCH", path, body=patch, content_type="application/merge-patch+json", timeout=30)
    end = time.monotonic() + args.timeout
    while time.monotonic() < end:
        obj = request_json(api, "GET", path, timeout=30) or {}
        row = _row(obj)
        if (obj.get("status") or {}).get("lastHandledReconcileAt") == stamp:
            print(f"{row['kind']} {row['namespace']}/{row['name']}: Ready={row['ready']} {row['message']}", file=out)
            if row["ready"] != "True":
                raise Unhealthy(f"{args.app} is not Ready: {row['reason']}: {row['message']}")
            return int(ExitCode.OK)
        time.sleep(0.2)
    raise Unhealthy(f"{args.app}: the controller did not handle the request within {args.timeout:.0f}s (is it running?)")
