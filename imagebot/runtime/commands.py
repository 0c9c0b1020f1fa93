"""`imagebot run`, `imagebot serve`, `imagebot config validate`, `imagebot status`."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from gitopskit.notify import Emitter, NotifyConfigError
from imagebot.config.load import load, positive_duration
from imagebot.config.model import Config, Environment
from imagebot.errors import ConfigError, ExitCode, UsageError
from imagebot.runtime.runner import Runner
from imagebot.runtime.state import InstanceLock, RuntimeState

NOTIFY_GRACE = 30.0  # seconds an exit waits for queued notifications


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {"time": self.formatTime(record), "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        )


def setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def _interval_flag(text: str) -> float:
    """Seconds (``30``) or a duration (``5m``); greater than zero and finite, or the loop would spin."""
    try:
        return positive_duration(float(text) if re.fullmatch(r"[-+0-9.eE]+|[-+]?(nan|inf)", text.strip()) else text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_flags(sub: argparse._SubParsersAction, exit_codes: str) -> None:  # type: ignore[type-arg]
    fmt = argparse.RawDescriptionHelpFormatter
    for name, helptext in (
        ("run", "the loop: scan due repositories, select, commit / open PRs"),
        ("serve", "the loop plus webhooks (registries, CI), /healthz, /readyz, /metrics"),
    ):
        p = sub.add_parser(name, help=helptext, epilog=exit_codes, formatter_class=fmt)
        p.add_argument("--config", required=True, nargs="+", metavar="FILE", help="native config, or Flux objects")
        p.add_argument("--once", action="store_true", help="one pass, then exit")
        p.add_argument("--interval", type=_interval_flag, help="time between passes, e.g. 30s or 5m (default: from the config)")
        p.add_argument("--log-format", choices=["text", "json"], default="text")
        p.add_argument("--log-level", default="INFO")
        if name == "serve":
            p.add_argument("--listen", default="0.0.0.0:8080", metavar="HOST:PORT")
            p.add_argument(
                "--leader-elect",
                action="store_true",
                help="elect one writer among replicas through a Lease (in-cluster or --kubeconfig)",
            )
            p.add_argument("--leader-namespace", default=os.environ.get("POD_NAMESPACE", "default"))
            p.add_argument("--leader-identity", help="this replica's name in the Lease (default: hostname + random suffix)")
            p.add_argument("--leader-lease-duration", type=float, default=15.0, metavar="S", help="(default 15)")
            p.add_argument(
                "--leader-renew-deadline",
                type=float,
                default=10.0,
                metavar="S",
                help="stop writing when the Lease could not be renewed for this long; < lease duration (default 10)",
            )
            p.add_argument("--leader-retry-period", type=float, default=2.0, metavar="S", help="between renewals (default 2)")
            p.add_argument("--kubeconfig")
        p.set_defaults(func=cmd_serve if name == "serve" else cmd_run)
    c = sub.add_parser("config", help="configuration tools", epilog=exit_codes, formatter_class=fmt)
    csub = c.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    csub.required = True
    v = csub.add_parser("validate", help="exit 0 when valid; else every error with file, line and field (exit 2)")
    v.add_argument("files", nargs="+", metavar="FILE")
    v.add_argument(
        "--no-environment",
        action="store_true",
        help="do not check this machine (files the config names exist, the state directory is writable): for CI",
    )
    v.set_defaults(func=cmd_validate)
    s = sub.add_parser(
        "status", help="per image and environment: current, pending, why, last commit/PR", epilog=exit_codes, formatter_class=fmt
    )
    s.add_argument("--config", required=True, nargs="+", metavar="FILE")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
    for name, helptext in (
        ("hold", "stop updates of IMAGE in ENV (or of an ImagePolicy: --policy) until released"),
        ("release", "lift an operator's hold of IMAGE in ENV (or of an ImagePolicy: --policy)"),
        ("approve", "promote the source's current tag (or --tag) to ENV (or an ImagePolicy) now, skipping the rest of its soak"),
    ):
        o = sub.add_parser(
            name,
            help=helptext,
            usage="%(prog)s (IMAGE ENV --config FILE... | --policy NAMESPACE/NAME [--kubeconfig K] [--context C]) ...",
            description="file mode: IMAGE ENV --config FILE... records the override in imagebot's state file;\n"
            "imagebot controller: --policy NAMESPACE/NAME writes the ImagePolicy's imagebot.dev/ annotations\n"
            "(a second hold, release or approve that changes nothing writes nothing and exits 0)",
            epilog=exit_codes + "  7  cluster error (--policy): the API server unreachable or refusing\n",
            formatter_class=fmt,
        )
        o.add_argument("image", nargs="?", metavar="IMAGE", help="the image's name in the config")
        o.add_argument("environment", nargs="?", metavar="ENV")
        o.add_argument("--config", nargs="+", metavar="FILE")
        o.add_argument("--policy", metavar="NAMESPACE/NAME", help="an ImagePolicy in the cluster (imagebot controller)")
        o.add_argument("--kubeconfig", help="with --policy; default: $KUBECONFIG, ~/.kube/config, then in-cluster")
        o.add_argument("--context", help="with --policy")
        o.add_argument("--timeout", type=float, default=30.0, metavar="S", help="with --policy: overall deadline (default 30)")
        o.add_argument("--by", metavar="NAME", help="file mode: who (default: $USER)")
        if name == "hold":
            o.add_argument("--reason", metavar="TEXT", help="why (--policy: default, the current hold's reason)")
            o.add_argument("--tag", metavar="TAG", help="--policy only: pin the policy's latestRef at this tag")
        if name == "approve":
            o.add_argument("--tag", metavar="TAG", help="the tag approved (default: the source's current tag)")
        o.set_defaults(func=cmd_override, action=name)


def cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    cfg = load([Path(f) for f in args.files], environment=not args.no_environment)
    for warning in cfg.warnings:  # valid, but only the cluster can provide this (see README, Flux objects)
        print(f"warning: {warning}", file=err)
    envs = sum(len(i.environments) for i in cfg.images)
    warned = f", {len(cfg.warnings)} warning(s)" if cfg.warnings else ""
    found = f", {len(cfg.discover)} discover entr{'y' if len(cfg.discover) == 1 else 'ies'}" if cfg.discover else ""
    print(f"valid: {len(cfg.images)} image(s), {envs} environment(s), {len(cfg.git)} git target(s){found}{warned}", file=out)
    return int(ExitCode.OK)


@contextlib.contextmanager
def _state_errors(state: Path) -> Iterator[None]:
    """The state file turned unusable after validation (removed directory, full disk): exit 2, not a traceback."""
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"state file {state}: {exc} (check stateFile: its directory must exist and be writable)") from None


def _start(cfg: Config) -> tuple[InstanceLock, Runner]:
    with _state_errors(cfg.state_file):
        lock = InstanceLock(cfg.state_file)
        lock.acquire()
        try:
            runner = Runner(cfg)
            if cfg.notifications.enabled:
                runner.notifier = _notifier(cfg, runner)
            return lock, runner
        except BaseException:
            lock.release()
            raise


def _notifier(cfg: Config, runner: Runner) -> Emitter:
    """The config's sinks, delivering in the background; a secret that cannot be read is a config error (exit 2)."""
    from gitopskit.notifier import build_notifier

    try:
        return build_notifier(cfg.notifications, source="imagebot", registry=runner.metrics.registry).start()
    except NotifyConfigError as exc:
        raise ConfigError(str(exc)) from None


def _stop_notifier(runner: Runner) -> None:
    """Deliver what is queued before exiting (at most NOTIFY_GRACE seconds: a dead sink never holds up an exit)."""
    close = getattr(runner.notifier, "close", None)
    if close is not None:
        close(NOTIFY_GRACE)


def _load_logged(files: list[str]) -> Config:
    """The config, its warnings logged: a Flux field only the cluster answers is named before it is needed."""
    cfg = load([Path(f) for f in files])
    for warning in cfg.warnings:
        logging.getLogger(__name__).warning("%s", warning)
    return cfg


def cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    setup_logging(args.log_format, args.log_level)
    cfg = _load_logged(args.config)
    lock, runner = _start(cfg)
    try:
        interval = args.interval or cfg.interval_seconds
        while True:
            report = runner.run_pass()
            for env, r in report.results:
                print(f"{env}: {r.status} {r.commit or ''} {r.pr.url if r.pr else ''}".rstrip(), file=out)
            if args.once:
                return int(report.codes[0] if report.codes else ExitCode.OK)  # the first failure's documented code
            time.sleep(max(1.0, min(interval, runner.until_next(runner.clock()))))  # next due image or retry
    finally:
        _stop_notifier(runner)
        lock.release()


def cmd_serve(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    from imagebot.runtime.serve import serve

    setup_logging(args.log_format, args.log_level)
    cfg = _load_logged(args.config)
    elector = None
    if args.leader_elect:
        from gitopskit.kube import load_api_client
        from gitopskit.lease import LeaseTiming
        from imagebot.runtime import leader

        try:
            timing = LeaseTiming(args.leader_lease_duration, args.leader_renew_deadline, args.leader_retry_period)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        api = load_api_client(args.kubeconfig)
        elector = leader.elector(api, args.leader_namespace, args.leader_identity or leader.default_identity(), timing)
    lock, runner = _start(cfg)
    previous = signal.signal(signal.SIGTERM, _terminate)  # a pod's stop: unwind, so the Lease is released
    try:
        if elector is None:
            serve(runner, args.listen, args.interval or cfg.interval_seconds)
        else:
            runner.fence = elector.fence  # every push and pull-request call: still leader, with margin?
            elector.start()
            try:
                serve(runner, args.listen, args.interval or cfg.interval_seconds, elector.is_leader)
            finally:
                elector.stop(release=True)
    except _Terminated:
        logging.getLogger(__name__).info("SIGTERM: stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_notifier(runner)
        lock.release()
    return int(ExitCode.OK)


class _Terminated(BaseException):
    """Raised by the SIGTERM handler in the main thread; a BaseException so no `except Exception` keeps it."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def _environment(cfg: Config, image: str, env: str) -> Environment:
    """The configured environment, or exit 2 naming what exists."""
    img = next((i for i in cfg.images if i.name == image), None)
    if img is None:
        raise UsageError(f"no image {image!r} in the config; images: {', '.join(i.name for i in cfg.images) or '(none)'}")
    found = next((e for e in img.environments if e.name == env), None)
    if found is None:
        raise UsageError(f"image {image} has no environment {env!r}; environments: {', '.join(e.name for e in img.environments)}")
    return found


_NAME_LIMIT = 200  # who, reason and tag are shown on every status line and dashboard row


def _text(flag: str, value: str) -> str:
    value = value.strip()
    if len(value) > _NAME_LIMIT or any(ord(ch) < 32 for ch in value):
        raise UsageError(f"{flag}: at most {_NAME_LIMIT} characters, no control characters")
    return value


def cmd_override(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    if args.policy is not None:
        if args.image or args.environment or args.config:
            raise UsageError("--policy names an ImagePolicy in the cluster: it goes without IMAGE ENV and --config")
        from imagebot.controller.cli import cmd_policy_override

        return cmd_policy_override(args, out)
    if not (args.image and args.environment and args.config):
        raise UsageError(f"{args.action}: give IMAGE ENV --config FILE... (file mode) or --policy NAMESPACE/NAME (ImagePolicy)")
    for flag, value in (("--kubeconfig", args.kubeconfig), ("--context", args.context)):
        if value is not None:
            raise UsageError(f"{flag} goes with --policy (file mode reads the state file)")
    if args.action == "hold" and args.tag is not None:
        raise UsageError("--tag goes with --policy: file mode holds ENV at its current tag")
    cfg = load([Path(f) for f in args.config])
    env = _environment(cfg, args.image, args.environment)
    who = _text("--by", args.by or os.environ.get("USER") or "cli") or "cli"
    with _state_errors(cfg.state_file):
        state = RuntimeState(cfg.state_file)
        now = time.time()
        if args.action == "hold":
            state.hold(args.image, env.name, who=who, reason=_text("--reason", args.reason or ""), now=now)
            print(f"{args.image} {env.name}: on hold by {who}", file=out)
        elif args.action == "release":
            if not state.release(args.image, env.name, who=who, now=now):
                print(f"{args.image} {env.name}: was not on hold", file=out)
            else:
                print(f"{args.image} {env.name}: released by {who}; the next pass updates it", file=out)
        else:
            tag = approve(state, args.image, env, args.tag, who, now)
            print(f"{args.image} {env.name}: {tag} approved by {who}; the next pass promotes it", file=out)
    return int(ExitCode.OK)


def approve(state: RuntimeState, image: str, env: Environment, tag: str | None, who: str, now: float) -> str:
    """Approve ``tag`` (default: the source's current tag) for ``env``'s promotion; UsageError when there is none."""
    if not env.promote_from:
        raise UsageError(f"{image} {env.name} does not promote from another environment: nothing to approve")
    if tag is not None and (not tag.strip() or len(tag) > 128 or any(ord(ch) <= 32 for ch in tag)):
        raise UsageError(f"--tag {tag!r}: not a tag")
    approved = state.approve(image, env.name, source=env.promote_from, tag=tag, who=who, now=now)
    if approved is None:
        raise UsageError(f"{image} {env.promote_from} has no current tag yet: nothing to approve")
    return approved


def cmd_status(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    cfg = load([Path(f) for f in args.config])
    with _state_errors(cfg.state_file):
        state = RuntimeState(cfg.state_file)
        rows = state.all()
        overrides = state.all_overrides()
    if args.json:
        docs = []
        for r in rows:
            doc = {k: getattr(r, k) for k in r.__slots__}
            o = overrides.get((r.image, r.environment))
            doc["hold"] = {k: getattr(o.hold, k) for k in o.hold.__slots__} if o and o.hold else None
            doc["approval"] = {k: getattr(o.approval, k) for k in o.approval.__slots__} if o and o.approval else None
            docs.append(doc)
        print(json.dumps(docs, indent=2), file=out)
        return 0
    for r in rows:
        o = overrides.get((r.image, r.environment))
        print(
            f"{r.image} {r.environment}: current {r.tag or '-'}{'@' + r.digest[:19] if r.digest else ''}"
            f"  pending {r.pending or '-'}  ({r.reason})"
            + (f"  last commit {r.last_commit[:12]}" if r.last_commit else "")
            + (f"  PR {r.last_pr}" if r.last_pr else "")
            + (f"  HELD by {o.hold.who}: {o.hold.reason or '-'}" if o and o.hold else "")
            + (f"  APPROVED {o.approval.tag} by {o.approval.who}" if o and o.approval else ""),
            file=out,
        )
    return 0
