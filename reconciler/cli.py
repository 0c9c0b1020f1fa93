"""Command line of the reconciler: argument parsing only; errors map to documented exit codes."""

from __future__ import annotations

import argparse
import calendar
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

from gitopskit import httpd
from gitopskit.errors import ListenError
from reconciler import __version__
from reconciler.apps import DriftSpec, rules_for
from reconciler.controller_cli import add_commands
from reconciler.diff import Rules
from reconciler.engine import OBSERVE_INTERVAL, OBSERVED_AT, OBSERVED_BY, Engine, Settings, SyncReport
from reconciler.errors import ExitCode, ReconcilerError, SourceError, Unhealthy, UsageError
from reconciler.inventory import configmap_name, load
from reconciler.model import TRACKING_LABEL, Action, FieldPolicy, Health, ResourceKey
from reconciler.plan import PruneGuards
from reconciler.source import Source

log = logging.getLogger("reconciler")

NOTIFY_GRACE = 30.0  # seconds an exit waits for queued notifications

EXIT_CODES = """exit codes:
  0  ok (diff: no drift)
  1  diff: drift found
  2  usage error, or the source touches namespaces / cluster-scoped objects it may not (nothing applied)
  3  the source could not be fetched
  4  the render failed: nothing applied, nothing pruned
  5  the API server refused or could not be reached
  6  a prune guard refused the prune: nothing deleted
  7  --wait: not Healthy before --timeout
  8  an object the source declares is owned by another app: left alone, the rest applied
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}\n{self.format_usage().rstrip()}")


def _common(p: argparse.ArgumentParser, source: bool = True) -> None:
    p.add_argument("--name", required=True, help="the app's name (tracking label, inventory)")
    p.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, then in-cluster")
    p.add_argument("--context")
    p.add_argument("--inventory-namespace", default="default", help="where the app's inventory ConfigMap lives")
    p.add_argument("--field-manager", default="reconciler")
    p.add_argument("--json", action="store_true")
    if not source:
        return
    p.add_argument("--source", required=True, help="a directory, or a Git URL (https://, ssh://)")
    p.add_argument("--revision", default="main", help="branch, tag or commit (Git sources)")
    p.add_argument("--path", default="", help="directory inside the source")
    p.add_argument("--namespace", default="default", help="namespace for namespaced objects that name none")
    p.add_argument("--allowed-namespaces", help="comma-separated: the only namespaces the source may touch")
    p.add_argument(
        "--allow-cluster-scoped",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="may the source hold cluster-scoped objects (default yes; with --allowed-namespaces only the kinds "
        "--allow-cluster-kind names)",
    )
    p.add_argument(
        "--allow-cluster-kind",
        action="append",
        default=[],
        metavar="KIND",
        help="with --allowed-namespaces: a cluster-scoped kind the source may still hold (Kind or Kind.group, "
        "e.g. Namespace — only the allowed ones); repeatable",
    )
    p.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="POINTER",
        help="ignore drift at this JSON pointer ('*' globs; optionally KIND:POINTER)",
    )
    p.add_argument(
        "--ignore-manager",
        action="append",
        default=[],
        metavar="MANAGER",
        help="fields owned by this field manager are not drift (e.g. an HPA controller)",
    )
    p.add_argument("--report", action="append", default=[], metavar="POINTER", help="report, never correct, this pointer")
    p.add_argument(
        "--added-drift-manager",
        action="append",
        default=None,
        metavar="PREFIX",
        help="fields Git does not declare are drift when a field manager starting with PREFIX added them "
        "(default: kubectl, before-first-apply; fields other controllers add are theirs)",
    )


def _prune_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prune", action="store_true", help="delete what left Git (safety rails apply)")
    p.add_argument("--allow-empty", action="store_true", help="allow pruning everything when the render is empty")
    p.add_argument("--force-prune", action="store_true", help="allow pruning more than 50%% of the inventory")
    p.add_argument(
        "--allow-prune-kind",
        action="append",
        default=[],
        metavar="KIND",
        help="allow pruning a protected kind (Namespace, PersistentVolumeClaim, CustomResourceDefinition)",
    )


def _rules(args: argparse.Namespace, default: FieldPolicy = FieldPolicy.CORRECT) -> Rules:
    mode = "correct" if default is FieldPolicy.CORRECT else "report"
    added = None if args.added_drift_manager is None else tuple(args.added_drift_manager)
    return rules_for(DriftSpec(mode, tuple(args.ignore), tuple(args.report), tuple(args.ignore_manager), added))


def _engine(args: argparse.Namespace, mode: FieldPolicy = FieldPolicy.CORRECT) -> Engine:
    from reconciler.cluster import KubeCluster, load_api_client

    cluster = KubeCluster(load_api_client(args.kubeconfig, args.context), args.field_manager)
    allowed = (
        frozenset(n.strip() for n in args.allowed_namespaces.split(",") if n.strip())
        if getattr(args, "allowed_namespaces", None)
        else None
    )
    guards = PruneGuards(
        enabled=getattr(args, "prune", False),
        allow_empty=getattr(args, "allow_empty", False),
        force=getattr(args, "force_prune", False),
        allowed_kinds=frozenset(getattr(args, "allow_prune_kind", [])),
    )
    settings = Settings(
        args.name,
        getattr(args, "namespace", "default"),
        args.inventory_namespace,
        allowed,
        getattr(args, "allow_cluster_scoped", True),
        guards,
        _rules(args, mode) if hasattr(args, "ignore") else Rules(),
        allowed_cluster_kinds=frozenset(getattr(args, "allow_cluster_kind", [])),
    )
    return Engine(cluster, settings)


def _report_json(r: SyncReport) -> str:
    return json.dumps(
        {
            "app": r.app,
            "revision": r.revision,
            "dryRun": r.dry_run,
            "health": str(r.health),
            "seconds": round(r.seconds, 3),
            "apiCalls": r.api_calls,
            "apiWrites": r.api_writes,
            "counts": r.counts(),
            "pruneRefused": r.plan.refused or None,
            "actions": [
                {"object": str(a.key), "action": str(a.action), "reason": a.reason} for a in (*r.plan.applies, *r.plan.prunes)
            ],
        },
        indent=2,
    )


def _print_report(r: SyncReport, out: TextIO) -> None:
    for a in (*r.plan.applies, *r.plan.prunes):
        if a.action is not Action.UNCHANGED:
            print(f"{a.action:<11} {a.key}  ({a.reason})", file=out)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(r.counts().items()))
    print(
        f"{'dry-run ' if r.dry_run else ''}synced {r.app} at {r.revision[:12]}: {counts}; health {r.health}; "
        f"{r.api_calls} API calls ({r.api_writes} writes) in {r.seconds:.2f}s",
        file=out,
    )


def cmd_sync(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    engine = _engine(args)
    fetched = Source(args.source, args.revision, args.path).fetch()
    report = engine.sync(fetched.root, fetched.revision, prune=args.prune, dry_run=args.dry_run)
    if args.wait and not args.dry_run and not report.plan.conflicts:  # a conflict never becomes Healthy: exit 8 now
        deadline = time.monotonic() + args.timeout
        while report.health is not Health.HEALTHY:
            if time.monotonic() > deadline:
                bad = [f"{k}: {h} ({why})" for k, h, why in engine.health_report() if h is not Health.HEALTHY]
                raise Unhealthy(f"{args.name} not Healthy after {args.timeout:.0f}s: " + "; ".join(bad[:5]))
            time.sleep(1)
            report = SyncReport(
                report.app,
                report.revision,
                report.plan,
                report.dry_run,
                report.pruned,
                engine._health(list(engine.desired.values())),
                report.seconds,
                report.api_calls,
                report.api_writes,
            )
    print(_report_json(report) if args.json else "", file=out, end="\n" if args.json else "")
    if not args.json:
        _print_report(report, out)
    skipped = [a for a in report.plan.prunes if a.action is Action.SKIP_PRUNE and args.prune]
    for a in skipped:
        print(f"reconciler: prune skipped for {a.key}: {a.reason}", file=err)
    for a in report.plan.conflicts:
        print(f"reconciler: conflict: {a.key}: {a.reason}", file=err)
    return int(ExitCode.CONFLICT if report.plan.conflicts else ExitCode.OK)


def cmd_diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    engine = _engine(args)
    fetched = Source(args.source, args.revision, args.path).fetch()
    items, text = engine.diff(fetched.root)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "object": str(i.key),
                        "pointer": i.pointer,
                        "kind": str(i.kind),
                        "manager": i.manager,
                        "operation": i.operation,
                        "time": i.time,
                        "policy": str(i.policy),
                        "description": i.describe(redact=i.key.kind == "Secret"),
                    }
                    for i in items
                ],
                indent=2,
            ),
            file=out,
        )
    else:
        print(text, file=out, end="")
        for i in items:
            print(f"# {i.key}: {i.describe(redact=i.key.kind == 'Secret')} [{i.policy}]", file=out)
    return int(ExitCode.DRIFT if items else ExitCode.OK)


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from reconciler.cluster import KubeCluster, load_api_client

    cluster = KubeCluster(load_api_client(args.kubeconfig, args.context), args.field_manager)
    inv = load(cluster, args.name, args.inventory_namespace)
    if not inv.entries and not inv.status:
        raise UsageError(f"no app named {args.name!r} in namespace {args.inventory_namespace} (never synced?)")
    status = dict(inv.status)
    head = cluster.get("v1", ResourceKey("", "ConfigMap", args.inventory_namespace, configmap_name(args.name))) or {}
    observed = observation((head.get("metadata") or {}).get("annotations") or {}, time.time())
    changed = [] if observed["live"] else changes_since(cluster, inv, args.name, observed["at"])
    if args.json:
        doc = {"app": args.name, "objects": len(inv.entries), **status, "observed": observed, "changedSince": changed}
        print(json.dumps(doc, indent=2, sort_keys=True), file=out)
        return 0

    def at(fact: str) -> str:
        return f" (since {status[fact + 'At']})" if status.get(fact + "At") else ""

    print(f"app {args.name}: {len(inv.entries)} objects", file=out)
    print(f"  revision {status.get('revision', '?')[:12]}{at('revision')}", file=out)
    print(f"  sync {status.get('sync', '?')}{at('sync')}", file=out)
    print(f"  health {status.get('health', '?')}{at('health')}", file=out)
    print(f"  {observed['message']}", file=out)
    for d in status.get("drift", []):
        print(f"  drift{at('drift')}: {d}", file=out)
    for c in changed:
        print(f"  changed since then: {c}", file=out)
    for p in status.get("lastPrune", []):
        print(f"  last prune{at('lastPrune')}: {p['action']} {p['object']} ({p['reason']})", file=out)
    return 0


def observation(annotations: dict[str, str], now: float) -> dict[str, Any]:
    """Is a loop observing the app? Stale after three missed turns of the interval the loop announced."""
    at, by = annotations.get(OBSERVED_AT, ""), annotations.get(OBSERVED_BY, "")
    try:
        interval = float(annotations.get(OBSERVE_INTERVAL, "0"))
        seen = calendar.timegm(time.strptime(at, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return {"live": False, "at": "", "by": "", "message": "STALE: no loop has ever observed this app "
                "(only `sync` ran); drift and health below are as of the last sync"}  # fmt: skip
    age = max(now - seen, 0.0)
    if age <= 3 * interval + 5:
        return {"live": True, "at": at, "by": by, "message": f"observed {age:.0f}s ago by {by}"}
    return {"live": False, "at": at, "by": by, "message": f"STALE: last observed {at} ({age:.0f}s ago) by {by}; "
            "nothing is observing it now, so drift and health below may be out of date"}  # fmt: skip


def changes_since(cluster: Any, inv: Any, app: str, since: str) -> list[str]:
    """Writes to the app's objects by other field managers after ``since`` (or after the last sync): what a
    stopped loop did not see."""
    mark = since or inv.status.get("syncAt") or inv.status.get("revisionAt") or ""
    out = []
    kinds = {(k.group, k.kind): api for k, api in inv.entries.items()}
    for (_, kind), api in sorted(kinds.items()):
        try:
            live = cluster.list_managed(api, kind, f"{TRACKING_LABEL}={app}")
        except ReconcilerError:
            continue
        for key, obj in sorted(live.items()):
            for mf in (obj.get("metadata") or {}).get("managedFields") or []:
                who, when = mf.get("manager", ""), mf.get("time", "")
                if who != cluster.field_manager and when > mark:
                    out.append(f"{key} written by {who} at {when}")
    return out[:50]


def _notifier(args: argparse.Namespace, engine: Engine) -> Any:
    """--notify-config: the sinks, delivering in the background (None without the flag)."""
    if not args.notify_config:
        return None
    from gitopskit.notifier import build_notifier
    from gitopskit.notify import NotifyConfigError
    from reconciler.notices import AppNotices, load_notify_config

    cfg = load_notify_config(args.notify_config)
    try:
        notifier = build_notifier(cfg, source="reconciler", registry=engine.metrics.registry, api=lambda: engine.cluster.api)
    except NotifyConfigError as exc:
        raise UsageError(f"--notify-config {args.notify_config}: {exc}") from None
    engine.notices = AppNotices(notifier.start(), cfg.failing_after)
    return notifier


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from reconciler.cluster import EventRecorder

    mode = FieldPolicy.CORRECT if args.mode == "correct" else FieldPolicy.REPORT
    engine = _engine(args, mode)
    notifier = _notifier(args, engine)
    events = EventRecorder(engine.cluster.event)  # no correction waits for its Event (one watch thread per kind)
    engine.record_event = events.record
    source = Source(args.source, args.revision, args.path)
    stop = threading.Event()
    trigger = threading.Event()
    server = None
    if args.listen:
        server = _webhook_server(args.listen, os.environ.get(args.webhook_secret_env, ""), trigger, engine)
    last_rev, last_full = "", 0.0
    conflicts = False
    watch_stop: threading.Event | None = None
    try:
        while not stop.is_set():
            try:
                fetched = source.fetch()
                full = time.monotonic() - last_full >= args.resync
                if fetched.revision != last_rev or full:
                    report = engine.sync(fetched.root, fetched.revision, prune=args.prune)
                    conflicts = bool(report.plan.conflicts)
                    _print_report(report, out)
                    out.flush()
                    last_rev, last_full = fetched.revision, time.monotonic()
                    if watch_stop is not None:
                        watch_stop.set()
                    watch_stop = threading.Event()
                    engine.watch(watch_stop, correct=mode is FieldPolicy.CORRECT)
                health = engine.save_status()
                engine.notices.peer(f"git {args.source}", None)
                if health is not None:
                    engine.notices.synced(args.name, health, last_rev)
                engine.heartbeat(f"reconciler run on {socket.gethostname()} (pid {os.getpid()})", args.interval)
            except ReconcilerError as exc:
                print(f"reconciler: error: {exc}", file=err)
                err.flush()
                if isinstance(exc, SourceError):
                    engine.notices.peer(f"git {args.source}", str(exc))
                engine.notices.failed(args.name, str(exc))
                if args.once:
                    return int(exc.exit_code)
            if args.once:
                return int(ExitCode.CONFLICT if conflicts else ExitCode.OK)
            trigger.wait(args.interval)
            trigger.clear()
    except KeyboardInterrupt:
        return 130
    finally:
        if watch_stop is not None:
            watch_stop.set()
        if server is not None:
            server.shutdown()
        if notifier is not None:
            notifier.close(NOTIFY_GRACE)  # what is queued goes out before the exit (a dead sink waits no longer)
        events.close(NOTIFY_GRACE)  # the Events recorded, as well
    return 0


def _webhook_server(
    listen: str, secret: str, trigger: threading.Event, engine: Engine, limits: httpd.Limits | None = None
) -> httpd.Server:
    """Git push webhooks (GitHub's X-Hub-Signature-256 HMAC, GitLab's X-Gitlab-Token) trigger an immediate sync;
    /healthz, /metrics."""
    from prometheus_client import generate_latest

    if not secret:
        raise UsageError("--listen needs a webhook secret in the environment variable named by --webhook-secret-env")

    class Handler(httpd.Handler):
        def do_GET(self) -> None:
            if self.path in ("/healthz", "/readyz"):
                self.send(200, b"ok\n")
            elif self.path == "/metrics":
                self.send(200, generate_latest(engine.metrics.registry), "text/plain; version=0.0.4")
            else:
                self.send(404, b"not found\n")

        def do_POST(self) -> None:
            if self.authorized_body(secret) is None:
                return
            trigger.set()
            self.send(202, b"sync triggered\n")

    return httpd.start(listen, Handler, limits)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reconciler",
        description="Keep a cluster equal to Git: render, apply, prune safely, heal drift.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"reconciler {__version__}")
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser("sync", help="apply the source once (and prune with --prune)", epilog=EXIT_CODES, formatter_class=fmt)
    _common(s)
    _prune_flags(s)
    s.add_argument("--dry-run", action="store_true", help="server-side dry-run: validate and plan, change nothing")
    s.add_argument("--wait", action="store_true", help="wait until the app is Healthy")
    s.add_argument("--timeout", type=float, default=300)
    s.set_defaults(func=cmd_sync)
    d = sub.add_parser(
        "diff", help="live vs Git, with who changed what (exit 1 on drift)", epilog=EXIT_CODES, formatter_class=fmt
    )
    _common(d)
    d.set_defaults(func=cmd_diff)
    r = sub.add_parser(
        "run", help="the loop: poll + watch + correct/report drift + resync", epilog=EXIT_CODES, formatter_class=fmt
    )
    _common(r)
    _prune_flags(r)
    r.add_argument("--mode", choices=["correct", "report"], default="correct")
    r.add_argument("--interval", type=float, default=60, help="seconds between source polls")
    r.add_argument("--resync", type=float, default=600, help="seconds between full resyncs")
    r.add_argument("--once", action="store_true", help="one sync, then exit")
    r.add_argument("--listen", metavar="HOST:PORT", help="serve Git push webhooks, /healthz and /metrics")
    r.add_argument("--webhook-secret-env", default="RECONCILER_WEBHOOK_SECRET")
    r.add_argument("--notify-config", metavar="FILE", help="notifications: sinks and filters (README, Notifications)")
    r.set_defaults(func=cmd_run)
    sv = sub.add_parser("serve", help="'run' with the webhook receiver (--listen)", epilog=EXIT_CODES, formatter_class=fmt)
    _common(sv)
    _prune_flags(sv)
    sv.add_argument("--mode", choices=["correct", "report"], default="correct")
    sv.add_argument("--interval", type=float, default=60)
    sv.add_argument("--resync", type=float, default=600)
    sv.add_argument("--once", action="store_true")
    sv.add_argument("--listen", default="0.0.0.0:8081")
    sv.add_argument("--webhook-secret-env", default="RECONCILER_WEBHOOK_SECRET")
    sv.add_argument("--notify-config", metavar="FILE", help="notifications: sinks and filters (README, Notifications)")
    sv.set_defaults(func=cmd_run)
    st = sub.add_parser(
        "status", help="revision, sync, health, drift (who/when), last prune", epilog=EXIT_CODES, formatter_class=fmt
    )
    _common(st, source=False)
    st.set_defaults(func=cmd_status)
    add_commands(sub, EXIT_CODES)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return int(args.func(args, out, err))
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    except ReconcilerError as exc:
        print(f"reconciler: error: {exc}", file=err)
        return int(exc.exit_code)
    except ListenError as exc:  # the shared kit's: where a receiver cannot listen is a usage error
        print(f"reconciler: error: --listen: {exc}", file=err)
        return int(ExitCode.USAGE)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
