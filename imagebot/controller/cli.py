"""`imagebot controller`: flags, the /healthz /readyz /metrics listener, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gitopskit.errors import ListenError
from imagebot.errors import ConfigError, ExitCode, UsageError

if TYPE_CHECKING:
    from gitopskit import httpd
    from imagebot.controller.controller import ImageController

LEASE_PREFIX = "imagebot-controller"


def add_flags(sub: Any, exit_codes: str) -> None:
    c = sub.add_parser(
        "controller",
        help="reconcile Flux's ImageRepository / ImagePolicy / ImageUpdateAutomation objects in the cluster",
        description="Scan, select and update as Flux's image-reflector and image-automation controllers do, from the "
        "objects in the cluster, writing their status as Flux does. One reconcile per object: a failing object is "
        "backed off alone.",
        epilog=exit_codes,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, then in-cluster")
    c.add_argument("--context")
    c.add_argument("--namespace", action="append", default=[], metavar="NS", help="serve only these namespaces (repeatable)")
    c.add_argument("--shard", default="", metavar="KEY", help="serve only objects labelled sharding.fluxcd.io/key=KEY")
    c.add_argument("--shards", choices=["auto"],
                   help="spread the namespaces over the live replicas (Leases per slot in --leader-namespace)")  # fmt: skip
    c.add_argument("--shard-slots", type=int, default=16, metavar="K", help="slots the namespaces are hashed onto (default 16)")
    c.add_argument("--workers", type=int, default=4, help="objects reconciled at once (default 4)")
    c.add_argument("--listen", metavar="HOST:PORT", help="/healthz, /readyz and /metrics")
    c.add_argument("--cache", type=Path, help="git checkouts (default ~/.cache/imagebot/controller)")
    c.add_argument("--notify-config", metavar="FILE", help="notifications: sinks and filters (README, Notifications)")
    c.add_argument("--leader-elect", action="store_true", help="one writer per shard among replicas (a Lease)")
    c.add_argument("--leader-namespace", default=os.environ.get("POD_NAMESPACE", "default"), help="where the Lease lives")
    c.add_argument("--leader-identity", help="default: hostname and pid")
    c.add_argument("--leader-lease-duration", type=float, default=15.0, metavar="S", help="(default 15)")
    c.add_argument("--leader-renew-deadline", type=float, default=10.0, metavar="S", help="stop writing after (default 10)")
    c.add_argument("--leader-retry-period", type=float, default=2.0, metavar="S", help="(default 2)")
    c.add_argument("--log-format", choices=["text", "json"], default="text")
    c.add_argument("--log-level", default="info")
    c.set_defaults(func=cmd_controller)


def cmd_controller(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    from gitopskit.kube import load_api_client
    from gitopskit.lease import LeaderElector, LeaseLock, LeaseTiming
    from gitopskit.sharding import AutoShards
    from imagebot.controller.controller import ImageController
    from imagebot.runtime.commands import setup_logging

    if args.shards and (args.shard or args.leader_elect):
        raise UsageError("--shards auto spreads the namespaces itself: it goes without --shard and --leader-elect")
    if args.shard_slots < 1:
        raise UsageError("--shard-slots must be at least 1")
    try:
        timing = LeaseTiming(args.leader_lease_duration, args.leader_renew_deadline, args.leader_retry_period)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    setup_logging(args.log_format, args.log_level)
    notify_cfg = _notify_config(args.notify_config) if args.notify_config else None  # a bad file fails before anything starts
    api = load_api_client(args.kubeconfig, args.context)
    elector = shards = None
    identity = args.leader_identity or f"{socket.gethostname()}-{os.getpid()}"
    if args.shards:
        shards = AutoShards(api, args.leader_namespace, identity, args.shard_slots, timing, prefix=LEASE_PREFIX)
    if args.leader_elect:
        lock = LeaseLock(api, args.leader_namespace, f"{LEASE_PREFIX}-{args.shard or 'main'}", identity, timing.duration)
        elector = LeaderElector(lock, timing)
    ctl = ImageController(api, tuple(args.namespace), args.shard, args.workers, args.cache, elector=elector, shards=shards)
    notifier = None
    if notify_cfg is not None:
        from gitopskit.notifier import build_notifier
        from gitopskit.notify import NotifyConfigError

        try:
            notifier = build_notifier(notify_cfg, source="imagebot", registry=ctl.metrics.registry, api=lambda: api)
        except NotifyConfigError as exc:
            ctl.stop()
            raise ConfigError(str(exc)) from None
        ctl.notifier = notifier.start()
        ctl.peers.after = notify_cfg.failing_after
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = _server(args.listen, ctl) if args.listen else None
    except ListenError as exc:  # the port is taken, or not HOST:PORT
        ctl.stop()
        raise UsageError(f"--listen: {exc}") from None
    ctl.start()
    scope = ", ".join(args.namespace) or "all namespaces"
    print(f"imagebot controller: serving {scope}{f', shard {args.shard}' if args.shard else ''} with {args.workers} workers",
          file=err, flush=True)  # fmt: skip
    try:
        stop.wait()
    finally:
        if server is not None:
            server.shutdown()
        ctl.stop()
        if notifier is not None:
            notifier.close(30.0)  # what is queued goes out before the exit (a dead sink waits no longer)
    return int(ExitCode.OK)


def _notify_config(path: str) -> Any:
    from gitopskit.notify import NotifyConfigError, load_file

    try:
        return load_file(path)
    except NotifyConfigError as exc:
        raise ConfigError(str(exc)) from None


def _server(listen: str, ctl: ImageController) -> httpd.Server:
    from prometheus_client import generate_latest

    from gitopskit import httpd

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

    return httpd.start(listen, Handler)
