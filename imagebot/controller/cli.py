"""`imagebot controller`: flags, the /healthz /readyz /metrics listener, and a clean stop on SIGTERM/SIGINT; and
`imagebot hold|release|approve --policy NS/NAME` (the annotations the controller reads, written in the cluster)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
from collections.abc import Callable
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


def cmd_policy_override(args: argparse.Namespace, out: TextIO) -> int:
    """``imagebot hold|release|approve --policy NS/NAME``: the annotations on the ImagePolicy that ``imagebot
    controller`` reads (imagebot/controller/overrides.py), written with a resourceVersion precondition; exit 0 also
    when nothing needed writing ("already held"), 2 for an unknown object or a refused action, 7 when the API server
    is unreachable or refuses."""
    import time

    import urllib3
    from kubernetes.client.exceptions import ApiException

    from gitopskit.kube import load_api_client, request_json
    from imagebot.controller import overrides as O
    from imagebot.errors import ClusterError

    if args.by is not None:
        raise UsageError("--by is file mode's record: the API server's audit log records who changed an ImagePolicy")
    if not 0 < args.timeout < float("inf"):
        raise UsageError("--timeout must be a number of seconds greater than zero")
    ref = O.parse_ref(args.policy)
    action = O.Action(args.action)
    reason = args.reason if action is O.Action.HOLD else None
    tag = args.tag if action is not O.Action.RELEASE else None
    if reason is not None:
        reason = O.check_reason(reason)
    if tag is not None:
        O.check_tag(tag)
    api = load_api_client(args.kubeconfig, args.context)
    deadline = time.monotonic() + args.timeout  # the whole command, however many conflicts it meets

    def call(method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None) -> Any:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClusterError(f"{ref}: the API server did not answer within --timeout {args.timeout:g}s")
        try:
            return request_json(api, method, path, query, body, "application/merge-patch+json", timeout=left)
        except ApiException as exc:
            if exc.status in (404, 409):
                raise
            detail = {401: " (the kubeconfig's credentials were refused)",
                      403: f" (the kubeconfig's user needs get and patch on imagepolicies in {ref.namespace})"}  # fmt: skip
            said = f"{method} {path}: HTTP {exc.status} {exc.reason or ''}".rstrip()
            raise ClusterError(said + detail.get(exc.status or 0, "")) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterError(f"the API server is unreachable: {type(exc).__name__}: {exc}") from None

    def get(path: str) -> dict[str, Any] | None:
        try:
            found = call("GET", path)
        except ApiException:
            return None  # 404 (a 409 is no answer to a GET)
        if not isinstance(found, dict):
            raise ClusterError(f"GET {path}: not a JSON object")
        return found

    def patch(path: str, body: dict[str, Any]) -> None:
        try:
            call("PATCH", path, body)
        except ApiException as exc:
            if exc.status == 409:
                raise O.Conflict from None
            raise ClusterError(f"PATCH {path}: HTTP {exc.status}: the ImagePolicy is gone") from None

    try:
        _, message = O.apply(action, ref, get, patch, reason=reason, tag=tag)
    except O.NotFound as exc:
        raise O.NotFound(f"{exc}{_elsewhere(call, ref)}") from None
    print(message, file=out)
    return int(ExitCode.OK)


def _elsewhere(call: Callable[..., Any], ref: Any) -> str:
    """A hint after "no ImagePolicy NAME in namespace NS": the namespaces that have one by that name, or that the
    API server serves no ImagePolicies at all (best effort: a user may not list across namespaces)."""
    from kubernetes.client.exceptions import ApiException

    from imagebot.controller.overrides import IMAGE_PATH
    from imagebot.errors import ImagebotError

    try:
        query = [("fieldSelector", f"metadata.name={ref.name}"), ("limit", "20")]
        found = call("GET", f"{IMAGE_PATH}/imagepolicies", query=query)
    except ApiException as exc:
        return " (the API server serves no ImagePolicies: are Flux's image CRDs installed?)" if exc.status == 404 else ""
    except ImagebotError:
        return ""
    items = (found or {}).get("items") or [] if isinstance(found, dict) else []
    spaces = sorted({str((i.get("metadata") or {}).get("namespace")) for i in items if isinstance(i, dict)})
    return f"; there is one in namespace {', '.join(spaces)}" if spaces else ""
