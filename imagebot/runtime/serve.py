"""`imagebot serve`: the loop plus an HTTP receiver for webhooks, /healthz, /readyz and /metrics.

A valid webhook enqueues the repositories it names; after the debounce window every queued
repository is scanned once and its updates are batched into one commit / PR per group.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from prometheus_client import generate_latest

from gitopskit import httpd
from imagebot.errors import ConfigError
from imagebot.runtime import webhooks
from imagebot.runtime.runner import Runner

log = logging.getLogger(__name__)


class Service:
    def __init__(self, runner: Runner, secret: str, debounce: float, is_leader: Callable[[], bool] = lambda: True) -> None:
        self.runner = runner
        self.is_leader = is_leader
        self.secret = secret
        self.debounce = debounce
        self._queue: dict[str, float] = {}  # repository → first received (monotonic)
        self._cv = threading.Condition()
        self.ready = threading.Event()
        self.stop = threading.Event()

    def enqueue(self, repos: list[str]) -> None:
        now = time.monotonic()
        with self._cv:
            for r in repos:
                self._queue.setdefault(r, now)
            self._cv.notify()

    def enqueue_at(self, received: dict[str, float]) -> None:
        with self._cv:
            for r, t in received.items():
                self._queue[r] = min(t, self._queue.get(r, t))

    def loop(self, interval: float) -> None:
        """Webhook batches as they come; due scans every ``interval``."""
        next_poll = 0.0
        while not self.stop.is_set():
            with self._cv:
                if not self._queue:
                    self._cv.wait(timeout=max(0.05, min(interval, next_poll - time.monotonic())))
                batch: dict[str, float] = {}
                if self._queue:
                    while True:  # new events notify the condition: keep waiting until the window has passed
                        wait = min(self._queue.values()) + self.debounce - time.monotonic()
                        if wait <= 0 or self.stop.is_set():
                            break
                        self._cv.wait(timeout=wait)
                    batch, self._queue = self._queue, {}
            try:
                if not self.is_leader():
                    self.ready.set()  # a standby replica is ready; it just does not write
                    if batch:  # kept for when this replica leads
                        self.enqueue_at(batch)
                    next_poll = 0.0  # a new leader scans at once: its predecessor may have stopped mid-pass
                    self.stop.wait(1.0)
                    continue
                if batch:
                    self.runner.run_pass(only=list(batch), received=min(batch.values()))
                if time.monotonic() >= next_poll:
                    self.runner.run_pass()
                    # the next due image or backed-off retry, at most ``interval`` away
                    next_poll = time.monotonic() + max(1.0, min(interval, self.runner.until_next(self.runner.clock())))
                self.ready.set()
            except Exception:
                log.exception("pass failed")
                self.runner.metrics.errors.labels("pass").inc()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(httpd.Handler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self.send(200, b"ok\n")
                elif self.path == "/readyz":
                    self.send(200 if service.ready.is_set() else 503, b"ready\n" if service.ready.is_set() else b"starting\n")
                elif self.path == "/metrics":
                    self.send(200, generate_latest(service.runner.metrics.registry), "text/plain; version=0.0.4")
                else:
                    self.send(404, b"not found\n")

            def do_POST(self) -> None:
                body = self.authorized_body(service.secret)
                if body is None:
                    return
                try:
                    named = webhooks.repositories(body)
                except webhooks.BadPayload as exc:
                    self._refuse(400, f"{exc}\n".encode())
                    return
                repos = [r for r in named if service.runner.cfg.image_for(r)]
                if not repos:
                    self.send(202, b"nothing configured for this event\n")
                    return
                service.enqueue(repos)
                self.send(202, ("scanning " + " ".join(repos) + "\n").encode())

        return Handler


def serve(runner: Runner, listen: str, interval: float, is_leader: Callable[[], bool] = lambda: True) -> None:
    env = runner.cfg.webhook_secret_env or "IMAGEBOT_WEBHOOK_SECRET"
    secret = os.environ.get(env, "")
    if not secret:
        raise ConfigError(f"webhooks need a shared secret: set {env}")
    service = Service(runner, secret, runner.cfg.debounce_seconds, is_leader)
    server = httpd.start(listen, service.handler())
    log.info("listening on %s", listen)
    try:
        service.loop(interval)
    finally:
        service.stop.set()
        server.shutdown()
