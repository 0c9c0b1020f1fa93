"""`dashboard serve`: the web dashboard as one process.

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT); 2 usage error (bad flag, unreadable or malformed token file,
missing token variable, no kubeconfig, unreadable imagebot config, cannot listen) — one line, never a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from gitopskit.errors import KitError

EPILOG = """auth: without a token the dashboard is read-only. --token-file F (one token per line, or 'NAME TOKEN' to name
its holder in the activity timeline) or --token-env NAME (the variable holds the token) gives write access to
whoever logs in with it (or sends Authorization: Bearer TOKEN). --read-only refuses every action anyway.

exit codes: 0 stopped, 2 usage error"""


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dashboard", description="GitOps dashboard: apps, images, drift and history, live")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the dashboard", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, then in-cluster")
    s.add_argument("--context")
    s.add_argument("--namespace", action="append", default=[], metavar="NS", help="read only these namespaces (repeatable)")
    s.add_argument("--imagebot-state", type=Path, metavar="PATH", help="imagebot's state file (SQLite), read-only")
    s.add_argument("--imagebot-config", type=Path, action="append", default=[], metavar="FILE",
                   help="imagebot's config (policies, promotion, soak, hold; its stateFile unless --imagebot-state)")  # fmt: skip
    s.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="(default 127.0.0.1:8080)")
    tok = s.add_mutually_exclusive_group()
    tok.add_argument("--token-file", type=Path, metavar="F", help="write tokens, one per line ('NAME TOKEN' or 'TOKEN')")
    tok.add_argument("--token-env", metavar="NAME", help="environment variable holding the write token")
    s.add_argument("--read-only", action="store_true", help="no actions, whatever token is given")
    s.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                   help="a reverse proxy (ingress) in front of the dashboard: requests from it are counted by the client "
                        "its X-Forwarded-For names (repeatable; e.g. 10.0.0.0/8)")  # fmt: skip
    s.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    s.set_defaults(func=cmd_serve)
    return p


def _tokens(args: argparse.Namespace) -> dict[str, str]:
    from dashboard.auth import TokenError, parse_tokens

    try:
        if args.token_file is not None:
            try:
                text = args.token_file.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"--token-file {args.token_file}: {getattr(exc, 'strerror', None) or exc}") from None
            return parse_tokens(text, str(args.token_file))
        if args.token_env is not None:
            value = os.environ.get(args.token_env)
            if not value:
                raise UsageError(f"--token-env {args.token_env}: the variable is not set or empty")
            return parse_tokens(value, f"${args.token_env}")
    except TokenError as exc:
        raise UsageError(str(exc)) from None
    return {}


def _trusted(items: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise UsageError(f"--trusted-proxy {item!r}: not an address or CIDR (e.g. 10.0.0.0/8, 192.0.2.7, fd00::/8)") from None
    return tuple(out)


def cmd_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from dashboard.auth import Auth
    from dashboard.cluster import ClusterView
    from dashboard.images import ImageState
    from dashboard.server import Dashboard, serve
    from gitopskit.kube import load_api_client

    tokens = _tokens(args)
    trusted = _trusted(args.trusted_proxy)
    images = None
    if args.imagebot_state is not None or args.imagebot_config:
        try:
            images = ImageState(args.imagebot_state, args.imagebot_config)
        except Exception as exc:  # imagebot's config errors say file:line and why
            raise UsageError(f"--imagebot-config: {exc}") from None
    api = load_api_client(args.kubeconfig, args.context)
    view = ClusterView(api, tuple(args.namespace))
    d = Dashboard(view, images, Auth(tokens, read_only=args.read_only), trusted_proxies=trusted)
    server = serve(args.listen, d)
    view.start()
    d.start()
    host, port = server.server_address[:2]
    mode = "read-only" if not d.auth.writable else f"write access for {len(tokens)} token(s)"
    print(f"dashboard: http://{host}:{port}/ ({mode})", file=out, flush=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    server.shutdown()
    d.stop()
    view.stop()
    return 0


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args, out, err))
    except (UsageError, KitError) as exc:
        print(f"dashboard: {exc}", file=err)
        return 2
