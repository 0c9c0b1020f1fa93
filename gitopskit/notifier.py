"""Notifications, the sending half: the sinks (generic webhook, Slack-compatible webhook, Kubernetes Events)
and the ``Notifier`` that delivers to them in the background.

- ``emit`` never blocks a reconcile: it coalesces (``notify.Coalescer``), then appends to each matching
  sink's bounded queue under one short lock. A full queue drops its oldest event of the lowest severity
  (counted, logged); one thread per sink delivers, so a sink that hangs delays only itself.
- A delivery is retried with exponential backoff and jitter (or the peer's Retry-After) until it succeeds,
  is refused for good (a 4xx, a redirect), or its overall deadline passes: at-least-once within the
  deadline. Events of one sink go out in order; receivers de-duplicate by the event's ``id``.
- Every POST: no redirects followed (http.client follows none), a per-attempt deadline enforced by a timer
  that shuts the socket (a server dripping bytes cannot stretch it), the answer read up to a cap.
- Secrets (webhook URLs — Slack's are credentials — and HMAC keys) come from the environment or a file
  (a mounted Secret) and never reach a log or an error: messages are scrubbed of them, URLs shown as
  scheme://host/….
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter

from gitopskit import notify
from gitopskit.errors import KitError
from gitopskit.notify import Event, NotifyConfig, NotifyConfigError, ObjectRef, SinkConfig, SinkKind
from gitopskit.workqueue import Backoff, Clock, RealClock

log = logging.getLogger(__name__)

MAX_RESPONSE = 64 * 1024  # bytes of an answer read (and ignored beyond the status)
RETRY_AFTER_CAP = 300.0
USER_AGENT = "gitopskit-notifier/1"
_SLACK_PATH = re.compile(r"hooks\.slack\.com/[^\s'\"]*")


class DeliveryError(KitError):
    """One attempt failed. ``retryable`` says whether another attempt may succeed."""

    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Sink(Protocol):
    name: str

    def send(self, event: Event, timeout: float) -> None:
        """Deliver within ``timeout`` seconds or raise DeliveryError."""

    def secrets(self) -> tuple[str, ...]:
        """Strings no log or error may contain."""


# ---------------------------------------------------------------------------------------------- HTTP


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return min(float(value.strip()), RETRY_AFTER_CAP)
    return None


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """The system CAs, or ``ca_file``'s (NotifyConfigError when it cannot be loaded)."""
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise NotifyConfigError(f"caFile {ca_file}: cannot load: {type(exc).__name__}") from None


def post(url: str, body: bytes, headers: dict[str, str], timeout: float, context: ssl.SSLContext | None = None) -> int:
    """POST ``body``; the status of a 2xx answer, else DeliveryError. No redirect is followed."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        ctx = context or tls_context()
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    expired = threading.Event()

    def cut() -> None:  # the attempt's deadline: whatever the socket is doing, it stops now
        expired.set()
        sock = conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(timeout, cut)
    timer.daemon = True
    timer.start()
    try:
        conn.request("POST", target, body=body, headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers})
        resp = conn.getresponse()
        resp.read(MAX_RESPONSE)  # drained up to the cap; the status is the answer
        status, retry_after = resp.status, _retry_after(resp.getheader("Retry-After"))
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise DeliveryError(f"no answer within {timeout:.1f}s") from None
        raise DeliveryError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
    finally:
        timer.cancel()
        conn.close()
    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        raise DeliveryError(f"answered {status}, a redirect (not followed)", retryable=False)
    retryable = status >= 500 or status in (408, 425, 429)
    raise DeliveryError(f"answered {status}", retryable=retryable, retry_after=retry_after)


class WebhookSink:
    """The generic webhook: JSON, HMAC-signed when a key is configured."""

    def __init__(
        self, name: str, url: str, key: bytes = b"", tls: ssl.SSLContext | None = None, wall: Callable[[], float] = time.time
    ) -> None:
        self.name, self.url, self.key, self.tls, self.wall = name, url, key, tls, wall

    def send(self, event: Event, timeout: float) -> None:
        body = notify.render_webhook(event)
        headers = {"X-Imagebot-Event": str(event.type), "X-Imagebot-Delivery": event.id}
        if self.key:  # signed per attempt: the timestamp is when it was sent, so the replay window stays short
            ts = int(self.wall())
            headers[notify.TIMESTAMP_HEADER] = str(ts)
            headers[notify.SIGNATURE_HEADER] = notify.sign(self.key, ts, body)
        post(self.url, body, headers, timeout, self.tls)

    def secrets(self) -> tuple[str, ...]:
        path = urlsplit(self.url).path
        return tuple(s for s in (self.url, path if len(path) > 1 else "", self.key.decode(errors="replace")) if s)

    def __repr__(self) -> str:
        return f"WebhookSink({self.name!r}, {notify.redact_url(self.url)!r})"


class SlackSink:
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): its URL is the credential."""

    def __init__(self, name: str, url: str, tls: ssl.SSLContext | None = None) -> None:
        self.name, self.url, self.tls = name, url, tls

    def send(self, event: Event, timeout: float) -> None:
        post(self.url, notify.render_slack(event), {}, timeout, self.tls)

    def secrets(self) -> tuple[str, ...]:
        path = urlsplit(self.url).path
        return tuple(s for s in (self.url, path if len(path) > 1 else "") if s)

    def __repr__(self) -> str:
        return f"SlackSink({self.name!r}, {notify.redact_url(self.url)!r})"


class KubeEventSink:
    """core/v1 Events on the object an event concerns (or the sink's configured object)."""

    def __init__(self, name: str, api: Any, component: str, namespace: str = "", default: ObjectRef | None = None) -> None:
        self.name, self.api, self.component, self.namespace, self.default = name, api, component, namespace, default

    def wants(self, event: Event) -> bool:
        return event.object is not None or self.default is not None

    def send(self, event: Event, timeout: float) -> None:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        from gitopskit.kube import request_json

        obj = event.object or self.default
        if obj is None:
            raise DeliveryError("no object to record the event on (give the sink an object)", retryable=False)
        ns = obj.namespace or self.namespace or "default"
        body = notify.render_kube_event(event, obj, ns, self.component)
        try:
            request_json(self.api, "POST", f"/api/v1/namespaces/{ns}/events", body=body, timeout=timeout)
        except ApiException as exc:
            if exc.status == 409:
                return  # this event's id is already recorded: an earlier attempt's answer was lost
            retryable = exc.status is None or exc.status >= 500 or exc.status in (408, 429)
            raise DeliveryError(f"API server answered {exc.status} {exc.reason}", retryable=retryable) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise DeliveryError(f"API server unreachable: {type(exc).__name__}") from None

    def secrets(self) -> tuple[str, ...]:
        return ()


def read_secret(env_name: str, file_name: str, what: str) -> str:
    """A secret from the environment or a file (a mounted Secret); the error names where, never the value."""
    if env_name:
        value = os.environ.get(env_name, "").strip()
        if not value:
            raise NotifyConfigError(f"{what}: environment variable {env_name} is not set")
        return value
    try:
        value = Path(file_name).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise NotifyConfigError(f"{what}: cannot read {file_name}: {exc.__class__.__name__}") from None
    if not value:
        raise NotifyConfigError(f"{what}: {file_name} is empty")
    return value


def build_sink(cfg: SinkConfig, component: str, api: Callable[[], Any]) -> Sink:
    """The sink ``cfg`` describes, its secrets read now (NotifyConfigError when one is missing or invalid)."""
    where = f"notification sink {cfg.name}"
    if cfg.kind is SinkKind.KUBERNETES:
        return KubeEventSink(cfg.name, api(), component, cfg.namespace, cfg.object)
    url = cfg.url or read_secret(cfg.url_env, cfg.url_file, f"{where} url")
    notify.check_url(url, f"{where} url")
    try:
        tls = tls_context(cfg.ca_file) if urlsplit(url).scheme == "https" else None
    except NotifyConfigError as exc:
        raise NotifyConfigError(f"{where}: {exc}") from None
    if cfg.kind is SinkKind.SLACK:
        return SlackSink(cfg.name, url, tls)
    key = read_secret(cfg.key_env, cfg.key_file, f"{where} hmac key") if cfg.key_env or cfg.key_file else ""
    return WebhookSink(cfg.name, url, key.encode(), tls)


# ---------------------------------------------------------------------------------------------- the notifier


class NotifyMetrics:
    def __init__(self, prefix: str, registry: CollectorRegistry | None = None) -> None:
        self.events = Counter(
            f"{prefix}_notifications_total",
            "Notifications per sink: sent, failed (gave up), dropped (queue full), coalesced (folded), retried",
            ["sink", "result"],
            registry=registry,
        )


@dataclass(slots=True)
class _Lane:
    cfg: SinkConfig
    sink: Sink
    queue: deque[Event]
    thread: threading.Thread | None = None
    busy: bool = False
    dropped: int = 0
    tokens: float = 0.0  # attempts allowed now (maxPerMinute), refilled by the clock
    refilled: float | None = None


class Notifier:
    """Routes events to sinks and delivers them on background threads (``start``; ``close`` at exit)."""

    def __init__(
        self,
        cfg: NotifyConfig,
        sinks: Sequence[tuple[SinkConfig, Sink]],
        *,
        source: str,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
        rnd: random.Random | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.clock: Clock = clock or RealClock()
        self.wall = wall
        self.rnd = rnd or random.Random()
        self.backoff = backoff or Backoff(base=1.0, cap=60.0, jitter=0.5)
        self.metrics = NotifyMetrics(source, registry)
        self.lanes = [_Lane(c, s, deque()) for c, s in sinks]
        self._secrets = tuple(sorted({x for _, s in sinks for x in s.secrets()}, key=len, reverse=True))
        self.coalescer = notify.Coalescer(cfg.coalesce_window)
        self._cond = threading.Condition()
        self._closing = False
        self._abandon = False
        self._threads: list[threading.Thread] = []
        for lane in self.lanes:
            for result in ("sent", "failed", "dropped", "coalesced", "retried"):
                self.metrics.events.labels(lane.cfg.name, result)  # every series exists from the start (rate() works)

    # ------------------------------------------------------------------ emitting
    def emit(self, event: Event) -> None:
        if not self.lanes or self._closing:
            return
        event = replace(
            event,
            source=event.source or self.source,
            time=event.time or self.wall(),
            id=event.id or uuid.uuid4().hex,
        )
        with self._cond:
            out = self.coalescer.offer(event, self.clock.now())
            if out is None:
                for lane in self._matching(event):
                    self.metrics.events.labels(lane.cfg.name, "coalesced").inc()
                return
            self._route(out)

    def _matching(self, event: Event) -> Iterable[_Lane]:
        for lane in self.lanes:
            if lane.cfg.filter.matches(event) and (not isinstance(lane.sink, KubeEventSink) or lane.sink.wants(event)):
                yield lane

    def _route(self, event: Event) -> None:
        """(Lock held.) Queue ``event`` on every sink that wants it; a full queue loses its least important."""
        for lane in self._matching(event):
            if len(lane.queue) >= self.cfg.queue_size:
                victim = min(range(len(lane.queue)), key=lambda n: (lane.queue[n].level.rank, n))
                if lane.queue[victim].level.rank <= event.level.rank:
                    dropped = lane.queue[victim]
                    del lane.queue[victim]
                    lane.queue.append(event)
                else:
                    dropped = event
                lane.dropped += 1
                self.metrics.events.labels(lane.cfg.name, "dropped").inc()
                if lane.dropped == 1 or lane.dropped % 100 == 0:  # one line per hundred, not one per drop
                    log.warning(
                        "notification sink %s: queue full (%d): dropped %s %s (%d dropped so far)",
                        lane.cfg.name, self.cfg.queue_size, dropped.type, dropped.subject, lane.dropped,
                    )  # fmt: skip
            else:
                lane.queue.append(event)
        self._cond.notify_all()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Notifier:
        if self._threads or not self.lanes:
            return self
        for lane in self.lanes:
            t = threading.Thread(target=self._lane_loop, args=(lane,), name=f"notify-{lane.cfg.name}", daemon=True)
            lane.thread = t
            self._threads.append(t)
        self._threads.append(threading.Thread(target=self._summaries, name="notify-coalesce", daemon=True))
        for t in self._threads:
            t.start()
        return self

    def idle(self) -> bool:
        with self._cond:
            return all(not lane.queue and not lane.busy for lane in self.lanes)

    def flush(self, timeout: float) -> bool:
        """Wait (real time) until every queued event is delivered or given up; True when all are."""
        end = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() >= end:
                return False
            time.sleep(0.02)
        return True

    def close(self, grace: float = 10.0) -> None:
        """Send what coalescing still holds, keep delivering for up to ``grace`` seconds, then stop."""
        with self._cond:
            if self._closing:
                return
            for event in self.coalescer.flush():
                self._route(event)
            self._closing = True
            self._cond.notify_all()
        end = time.monotonic() + grace
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        with self._cond:
            self._abandon = True
            left = sum(len(lane.queue) + lane.busy for lane in self.lanes)
            self._cond.notify_all()
        if left:
            log.warning("notifications: %d undelivered at shutdown (grace %.0fs over)", left, grace)

    # ------------------------------------------------------------------ the threads
    def _summaries(self) -> None:
        with self._cond:
            while not self._closing:
                for event in self.coalescer.due(self.clock.now()):
                    self._route(event)
                due = self.coalescer.next_due()
                self.clock.wait(self._cond, None if due is None else max(0.0, due - self.clock.now()))

    def _lane_loop(self, lane: _Lane) -> None:
        while True:
            with self._cond:
                while not lane.queue and not self._closing:
                    self.clock.wait(self._cond, None)
                if not lane.queue or self._abandon:
                    return
                event = lane.queue.popleft()
                lane.busy = True
            try:
                self.deliver(lane, event)
            finally:
                with self._cond:
                    lane.busy = False
                    self._cond.notify_all()

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return _SLACK_PATH.sub("hooks.slack.com/<redacted>", text)

    def _pace(self, lane: _Lane) -> None:
        """Wait for a token of the sink's maxPerMinute (a bucket of a tenth of a minute's worth, at least one)."""
        rate = lane.cfg.max_per_minute
        if not rate:
            return
        burst = max(1.0, rate / 10)
        with self._cond:
            while not self._abandon:
                now = self.clock.now()
                lane.tokens = burst if lane.refilled is None else min(burst, lane.tokens + (now - lane.refilled) * rate / 60)
                lane.refilled = now
                if lane.tokens >= 1:
                    lane.tokens -= 1
                    return
                self.clock.wait(self._cond, (1 - lane.tokens) * 60 / rate)

    def deliver(self, lane: _Lane, event: Event) -> bool:
        """Attempts until one succeeds, one is refused for good, or the deadline passes (True: delivered)."""
        name, started, attempt = lane.cfg.name, self.clock.now(), 0
        deadline = started + lane.cfg.deadline
        while True:
            attempt += 1
            self._pace(lane)
            left = deadline - self.clock.now()
            try:
                lane.sink.send(event, max(0.001, min(lane.cfg.timeout, left)))
            except Exception as exc:
                err = exc if isinstance(exc, DeliveryError) else DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False)
                if not isinstance(exc, DeliveryError):
                    log.error("notification sink %s: unexpected %s", name, self.scrub(repr(exc)))
                delay = err.retry_after if err.retry_after is not None else self.backoff.delay(attempt, self.rnd)
                at = self.clock.now() + delay
                if not err.retryable or at >= deadline or self._abandon:
                    self.metrics.events.labels(name, "failed").inc()
                    log.error(
                        "notification %s %s to sink %s failed after %d attempt(s): %s",
                        event.type, event.subject, name, attempt, self.scrub(str(err)),
                    )  # fmt: skip
                    return False
                self.metrics.events.labels(name, "retried").inc()
                log.warning(
                    "notification %s %s to sink %s: attempt %d failed (%s); retrying in %.1fs",
                    event.type, event.subject, name, attempt, self.scrub(str(err)), delay,
                )  # fmt: skip
                with self._cond:
                    while self.clock.now() < at and not self._abandon:
                        self.clock.wait(self._cond, at - self.clock.now())
                continue
            self.metrics.events.labels(name, "sent").inc()
            log.debug("notification %s %s sent to %s (attempt %d)", event.type, event.subject, name, attempt)
            return True


def build_notifier(
    cfg: NotifyConfig,
    *,
    source: str,
    registry: CollectorRegistry | None = None,
    api: Callable[[], Any] | None = None,
) -> Notifier:
    """Sinks built from ``cfg`` (secrets read now: NotifyConfigError when one is missing); not started."""

    def default_api() -> Any:
        from gitopskit.kube import load_api_client

        return load_api_client()

    sinks = [(c, build_sink(c, source, api or default_api)) for c in cfg.sinks]
    return Notifier(cfg, sinks, source=source, registry=registry)
