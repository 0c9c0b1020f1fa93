"""Notifications, the pure half: what an event is, how a sink's config reads, which sink wants which event,
how events coalesce, and the exact bytes each sink receives. No I/O here (``gitopskit.notifier`` sends).

Both halves emit the same typed ``Event``; a ``Notifier`` routes each one to the sinks whose filter
matches. A flapping subject is one message per window, not a hundred: the first event of a
(type, subject) goes out at once, the rest of its window are folded into one summary sent when the
window closes (``coalesced`` counts them: "and 37 more").

The generic webhook's body is JSON (``render_webhook``), signed: ``X-Imagebot-Timestamp: <unix seconds>``
and ``X-Imagebot-Signature: sha256=<hex>``, HMAC-SHA256 with the shared key over ``<timestamp>.<body>``;
a receiver checks the MAC and that the timestamp is recent (``verify_signature``), which stops replays of
an old, captured delivery. Each attempt is signed afresh; the body (and its ``id``) stays the same.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from gitopskit.duration import parse_go_duration
from gitopskit.errors import KitError

SIGNATURE_HEADER = "X-Imagebot-Signature"
TIMESTAMP_HEADER = "X-Imagebot-Timestamp"
SIGNATURE_TOLERANCE = 300.0  # seconds a signed delivery stays valid for a receiver (replay window)
MESSAGE_MAX = 1024  # characters of a message kept (Kubernetes Events cap theirs near this)


class NotifyConfigError(KitError):
    """The notifications config is invalid (the message names the field, never a secret's value)."""


class EventType(StrEnum):
    COMMIT_PUSHED = "commit-pushed"
    PR_OPENED = "pr-opened"
    PR_UPDATED = "pr-updated"
    PR_SUPERSEDED = "pr-superseded"  # the pull request now proposes a newer tag than it did
    PROMOTION_WAITING = "promotion-waiting"  # a tag soaks in the source environment before it is promoted
    PROMOTION_DONE = "promotion-done"
    DRIFT_DETECTED = "drift-detected"
    DRIFT_CORRECTED = "drift-corrected"
    SYNC_FAILED = "sync-failed"
    HEALTH_DEGRADED = "health-degraded"
    HEALTH_RECOVERED = "health-recovered"
    PEER_FAILING = "peer-failing"  # a registry or git remote has failed for longer than failingAfter
    PEER_RECOVERED = "peer-recovered"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}

DEFAULT_SEVERITY: Mapping[EventType, Severity] = {
    EventType.COMMIT_PUSHED: Severity.INFO,
    EventType.PR_OPENED: Severity.INFO,
    EventType.PR_UPDATED: Severity.INFO,
    EventType.PR_SUPERSEDED: Severity.INFO,
    EventType.PROMOTION_WAITING: Severity.INFO,
    EventType.PROMOTION_DONE: Severity.INFO,
    EventType.DRIFT_DETECTED: Severity.WARNING,
    EventType.DRIFT_CORRECTED: Severity.INFO,
    EventType.SYNC_FAILED: Severity.ERROR,
    EventType.HEALTH_DEGRADED: Severity.WARNING,
    EventType.HEALTH_RECOVERED: Severity.INFO,
    EventType.PEER_FAILING: Severity.ERROR,
    EventType.PEER_RECOVERED: Severity.INFO,
}

_TITLES: Mapping[EventType, str] = {
    EventType.COMMIT_PUSHED: "Commit pushed",
    EventType.PR_OPENED: "Pull request opened",
    EventType.PR_UPDATED: "Pull request updated",
    EventType.PR_SUPERSEDED: "Pull request superseded",
    EventType.PROMOTION_WAITING: "Promotion waiting",
    EventType.PROMOTION_DONE: "Promotion done",
    EventType.DRIFT_DETECTED: "Drift detected",
    EventType.DRIFT_CORRECTED: "Drift corrected",
    EventType.SYNC_FAILED: "Sync failed",
    EventType.HEALTH_DEGRADED: "Health degraded",
    EventType.HEALTH_RECOVERED: "Health recovered",
    EventType.PEER_FAILING: "Peer failing",
    EventType.PEER_RECOVERED: "Peer recovered",
}


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The Kubernetes object an event concerns (its Event is recorded on it)."""

    api_version: str
    kind: str
    name: str
    namespace: str = ""
    uid: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    subject: str  # the app or image (filters glob it; coalescing keys on it with the type)
    message: str
    source: str = ""  # "imagebot" or "reconciler" (the Notifier fills it in)
    severity: Severity | None = None  # None: the type's default
    details: tuple[tuple[str, str], ...] = ()  # extra facts (environment, tag, commit, url, …)
    object: ObjectRef | None = None
    time: float = 0.0  # wall-clock seconds (the Notifier fills it in when 0)
    id: str = ""  # unique per event (the Notifier fills it in): receivers de-duplicate retries by it
    coalesced: int = 0  # how many more events of this (type, subject) this one stands for

    @property
    def level(self) -> Severity:
        return self.severity or DEFAULT_SEVERITY[self.type]

    @property
    def key(self) -> tuple[EventType, str]:
        return (self.type, self.subject)

    def text(self) -> str:
        """The message, capped, with the coalesced count."""
        text = self.message if len(self.message) <= MESSAGE_MAX else self.message[: MESSAGE_MAX - 1] + "…"
        return text + (f" (and {self.coalesced} more)" if self.coalesced else "")


class Emitter(Protocol):
    """What emit points call: one method, never blocking (``gitopskit.notifier.Notifier`` is the real one)."""

    def emit(self, event: Event) -> None: ...


class NullEmitter:
    """No sinks configured: events go nowhere, at no cost."""

    def emit(self, event: Event) -> None:
        pass


# ---------------------------------------------------------------------------------------------- config


class SinkKind(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    KUBERNETES = "kubernetes"


@dataclass(frozen=True, slots=True)
class Filter:
    types: frozenset[EventType] | None = None  # None: every type
    min_severity: Severity = Severity.INFO
    subjects: tuple[str, ...] = ()  # fnmatch globs on the subject; empty: every subject
    exclude_subjects: tuple[str, ...] = ()

    def matches(self, event: Event) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        if event.level.rank < self.min_severity.rank:
            return False
        if self.subjects and not any(fnmatch.fnmatchcase(event.subject, g) for g in self.subjects):
            return False
        return not any(fnmatch.fnmatchcase(event.subject, g) for g in self.exclude_subjects)


@dataclass(frozen=True, slots=True)
class SinkConfig:
    name: str
    kind: SinkKind
    filter: Filter = field(default_factory=Filter)
    url: str = ""  # a literal URL (generic webhooks only: a Slack URL is a secret)
    url_env: str = ""
    url_file: str = ""
    key_env: str = ""  # the HMAC key (generic webhooks)
    key_file: str = ""
    ca_file: str = ""
    timeout: float = 10.0  # one attempt
    deadline: float = 300.0  # every attempt of one delivery, from the first
    namespace: str = ""  # kubernetes: where events without an object (or on cluster-scoped ones) are recorded
    object: ObjectRef | None = None  # kubernetes: the object events without one are recorded on
    max_per_minute: float = 0.0  # attempts per minute to this sink (0: no limit; Slack's default 60)


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    sinks: tuple[SinkConfig, ...] = ()
    coalesce_window: float = 300.0
    queue_size: int = 1000  # per sink
    failing_after: float = 600.0  # a registry or git remote failing this long is an event

    @property
    def enabled(self) -> bool:
        return bool(self.sinks)


_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SINK_KEYS = {
    "name", "type", "url", "urlEnv", "urlFile", "hmacKeyEnv", "hmacKeyFile", "caFile", "timeout", "deadline",
    "events", "minSeverity", "subjects", "excludeSubjects", "namespace", "object", "maxPerMinute",
}  # fmt: skip
_TOP_KEYS = {"sinks", "coalesceWindow", "queueSize", "failingAfter"}


def _str(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise NotifyConfigError(f"{where}.{key}: a string, not {type(value).__name__}")
    return value


def _strings(raw: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise NotifyConfigError(f"{where}.{key}: a list of non-empty strings")
    return tuple(value)


def _duration(raw: Mapping[str, Any], key: str, where: str, default: float) -> float:
    if key not in raw:
        return default
    try:
        return parse_go_duration(raw[key])
    except ValueError as exc:
        raise NotifyConfigError(f"{where}.{key}: {exc}") from None


def check_url(url: str, where: str) -> None:
    """An http(s)://HOST[:PORT]/… URL, or NotifyConfigError — whose message never repeats the URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise NotifyConfigError(f"{where}: not a valid URL (value not shown: it may be a secret)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0 or parts.username or parts.password:
        raise NotifyConfigError(f"{where}: must be http(s)://HOST[:PORT]/PATH without credentials (value not shown)")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise NotifyConfigError(f"{where}: contains whitespace or control characters (value not shown)")


def _object(raw: object, where: str) -> ObjectRef | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise NotifyConfigError(f"{where}: a mapping with apiVersion, kind, name (and namespace)")
    unknown = set(raw) - {"apiVersion", "kind", "name", "namespace", "uid"}
    if unknown:
        raise NotifyConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    ref = ObjectRef(*(_str(raw, k, where) for k in ("apiVersion", "kind", "name", "namespace", "uid")))
    if not (ref.api_version and ref.kind and ref.name):
        raise NotifyConfigError(f"{where}: apiVersion, kind and name are required")
    return ref


def _sink(raw: object, where: str) -> SinkConfig:
    if not isinstance(raw, dict):
        raise NotifyConfigError(f"{where}: a mapping")
    unknown = set(raw) - _SINK_KEYS
    if unknown:
        raise NotifyConfigError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    name = _str(raw, "name", where)
    if not _NAME.match(name):
        raise NotifyConfigError(f"{where}.name: {name!r} is not a DNS label (lower case, digits, '-')")
    where = f"{where} ({name})"
    try:
        kind = SinkKind(str(raw.get("type")))
    except ValueError:
        raise NotifyConfigError(f"{where}.type: one of {', '.join(SinkKind)}, not {raw.get('type')!r}") from None
    try:
        types = frozenset(EventType(t) for t in _strings(raw, "events", where)) or None
    except ValueError as exc:
        raise NotifyConfigError(f"{where}.events: {exc}; known: {', '.join(EventType)}") from None
    try:
        severity = Severity(raw.get("minSeverity", "info"))
    except ValueError:
        raise NotifyConfigError(f"{where}.minSeverity: one of {', '.join(Severity)}") from None
    filt = Filter(types, severity, _strings(raw, "subjects", where), _strings(raw, "excludeSubjects", where))
    url, url_env, url_file = (_str(raw, k, where) for k in ("url", "urlEnv", "urlFile"))
    key_env, key_file = _str(raw, "hmacKeyEnv", where), _str(raw, "hmacKeyFile", where)
    for env_name, key in ((url_env, "urlEnv"), (key_env, "hmacKeyEnv")):
        if env_name and not _ENV.match(env_name):
            raise NotifyConfigError(f"{where}.{key}: {env_name!r} is not an environment variable name")
    if kind is SinkKind.KUBERNETES:
        if url or url_env or url_file or key_env or key_file or raw.get("caFile"):
            raise NotifyConfigError(f"{where}: a kubernetes sink takes no url, hmac key or caFile")
    else:
        if sum(map(bool, (url, url_env, url_file))) != 1:
            raise NotifyConfigError(f"{where}: exactly one of url, urlEnv, urlFile")
        if url and kind is SinkKind.SLACK:
            raise NotifyConfigError(f"{where}.url: a Slack webhook URL is a secret: give urlEnv or urlFile")
        if url:
            check_url(url, f"{where}.url")
        if kind is SinkKind.SLACK and (key_env or key_file):
            raise NotifyConfigError(f"{where}: a slack sink takes no hmac key (Slack does not verify one)")
        if key_env and key_file:
            raise NotifyConfigError(f"{where}: at most one of hmacKeyEnv, hmacKeyFile")
    timeout = _duration(raw, "timeout", where, 10.0)
    deadline = _duration(raw, "deadline", where, 300.0)
    if deadline < timeout:
        raise NotifyConfigError(f"{where}.deadline: must be at least the timeout of one attempt")
    namespace = _str(raw, "namespace", where)
    obj = _object(raw.get("object"), f"{where}.object")
    if kind is not SinkKind.KUBERNETES and (namespace or obj):
        raise NotifyConfigError(f"{where}: namespace and object are for kubernetes sinks")
    rate = raw.get("maxPerMinute", 60 if kind is SinkKind.SLACK else 0)  # Slack allows about one a second
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 100_000:
        raise NotifyConfigError(f"{where}.maxPerMinute: a number from 0 (no limit) to 100000")
    return SinkConfig(
        name, kind, filt, url, url_env, url_file, key_env, key_file, _str(raw, "caFile", where), timeout, deadline,
        namespace, obj, float(rate),
    )  # fmt: skip


def parse_config(raw: object, where: str = "notifications") -> NotifyConfig:
    """The ``notifications:`` mapping (imagebot's config section, or the reconciler's --notify-config file)."""
    if raw is None:
        return NotifyConfig()
    if not isinstance(raw, dict):
        raise NotifyConfigError(f"{where}: a mapping with sinks")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise NotifyConfigError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    sinks_raw = raw.get("sinks", [])
    if not isinstance(sinks_raw, list):
        raise NotifyConfigError(f"{where}.sinks: a list")
    sinks = tuple(_sink(s, f"{where}.sinks[{n}]") for n, s in enumerate(sinks_raw))
    names = [s.name for s in sinks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise NotifyConfigError(f"{where}.sinks: duplicate name(s) {', '.join(dup)}")
    size = raw.get("queueSize", 1000)
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 100_000:
        raise NotifyConfigError(f"{where}.queueSize: an integer from 1 to 100000")
    window = 0.0 if raw.get("coalesceWindow") in ("0", 0) else _duration(raw, "coalesceWindow", where, 300.0)
    return NotifyConfig(sinks, window, size, _duration(raw, "failingAfter", where, 600.0))


def load_file(path: str) -> NotifyConfig:
    """A ``--notify-config FILE``: YAML holding one key, the same ``notifications:`` section as imagebot's config."""
    from gitopskit.yamlsafe import Limits, YamlError, load_all

    where = f"--notify-config {path}"
    try:
        with open(path, "rb") as fh:
            data = fh.read(1024 * 1024 + 1)
        if len(data) > 1024 * 1024:
            raise NotifyConfigError(f"{where}: larger than 1 MiB")
        docs = load_all(data.decode(), Limits(max_bytes=1024 * 1024, max_depth=20, max_nodes=100_000, max_text=1024 * 1024))
    except (OSError, UnicodeDecodeError) as exc:
        raise NotifyConfigError(f"{where}: cannot read: {type(exc).__name__}") from None
    except YamlError as exc:
        raise NotifyConfigError(f"{where}: not valid YAML: {exc}") from None
    doc = docs[0].data if len(docs) == 1 else None
    if not isinstance(doc, dict) or set(doc) != {"notifications"}:
        raise NotifyConfigError(f"{where}: must hold one key, notifications: (see README, Notifications)")
    try:
        return parse_config(doc["notifications"])
    except NotifyConfigError as exc:
        raise NotifyConfigError(f"{where}: {exc}") from None


# ---------------------------------------------------------------------------------------------- rendering


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def redact_url(url: str) -> str:
    """What a log may say about a secret URL: its scheme and host, never its path or query."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or '?'}/…"
    except ValueError:
        return "<url>"


def render_webhook(event: Event) -> bytes:
    doc = {
        "version": 1,
        "id": event.id,
        "type": str(event.type),
        "severity": str(event.level),
        "source": event.source,
        "subject": event.subject,
        "message": event.text(),
        "time": _iso(event.time),
        "coalesced": event.coalesced,
        "details": dict(event.details),
        "object": None
        if event.object is None
        else {
            "apiVersion": event.object.api_version,
            "kind": event.object.kind,
            "namespace": event.object.namespace,
            "name": event.object.name,
        },
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    key: bytes, body: bytes, timestamp: str | None, signature: str | None, now: float, tolerance: float = SIGNATURE_TOLERANCE
) -> bool:
    """Do the two headers sign ``body`` with ``key``, within ``tolerance`` seconds of ``now`` (no replays)?"""
    if not key or not timestamp or not signature or not timestamp.isascii() or not timestamp.isdigit():
        return False
    t = int(timestamp)
    return abs(now - t) <= tolerance and hmac.compare_digest(sign(key, t, body), signature)


_SLACK_ESCAPE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ICONS = {Severity.INFO: ":information_source:", Severity.WARNING: ":warning:", Severity.ERROR: ":rotating_light:"}


def render_slack(event: Event) -> bytes:
    """A Slack-compatible incoming-webhook body: ``text`` (the fallback every client shows) and ``blocks``."""
    esc = event.text().translate(_SLACK_ESCAPE)
    subject = event.subject.translate(_SLACK_ESCAPE).replace("`", "'")
    title = f"{_ICONS[event.level]} *{_TITLES[event.type]}* `{subject}`"
    facts = " · ".join(f"{k}: {v}".translate(_SLACK_ESCAPE) for k, v in event.details[:8])
    context = " · ".join(x for x in (event.source, _iso(event.time), facts) if x)
    body = {
        "text": f"{_TITLES[event.type]}: {event.subject}: {event.text()}".translate(_SLACK_ESCAPE),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{title}\n{esc}"[:3000]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context[:3000]}]},
        ],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def reason_of(t: EventType) -> str:
    """The Kubernetes Event reason: ``drift-detected`` → ``DriftDetected``."""
    return "".join(w.capitalize() for w in str(t).split("-"))


def render_kube_event(event: Event, obj: ObjectRef, namespace: str, component: str) -> dict[str, Any]:
    """A core/v1 Event on ``obj``. Its name derives from the event's id, so a retry after a lost answer is a
    409 (already recorded), never a second Event."""
    ts = _iso(event.time)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{obj.name[:200]}.{event.id[:16]}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.api_version,
            "kind": obj.kind,
            "name": obj.name,
            **({"namespace": obj.namespace} if obj.namespace else {}),
            **({"uid": obj.uid} if obj.uid else {}),
        },
        "reason": reason_of(event.type),
        "message": event.text(),
        "type": "Normal" if event.level is Severity.INFO else "Warning",
        "count": 1 + event.coalesced,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "source": {"component": component},
        "reportingComponent": component,
    }


# ---------------------------------------------------------------------------------------------- coalescing


@dataclass(slots=True)
class _Window:
    ends: float
    folded: int = 0
    latest: Event | None = None


class Coalescer:
    """Per (type, subject): the first event passes at once and opens a window; later ones within it are
    folded into one summary (the latest event, ``coalesced`` = how many) released when the window closes,
    which opens the next window — so a subject that keeps flapping is one message per window. Pure: the
    caller passes the time; not thread-safe (the Notifier holds its lock)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._open: dict[tuple[EventType, str], _Window] = {}

    def offer(self, event: Event, now: float) -> Event | None:
        """The event to send now, or None when it was folded into its window's summary."""
        if self.window <= 0:
            return event
        w = self._open.get(event.key)
        if w is None or now >= w.ends:
            self._open[event.key] = _Window(now + self.window)
            return event
        w.folded += 1
        w.latest = event
        return None

    def due(self, now: float) -> list[Event]:
        """Summaries of the windows that closed by ``now`` (oldest first); quiet windows are forgotten."""
        out: list[Event] = []
        for key, w in list(self._open.items()):
            if now < w.ends:
                continue
            if w.latest is None:
                del self._open[key]
                continue
            out.append(replace(w.latest, coalesced=w.folded - 1 + w.latest.coalesced) if w.folded > 1 else w.latest)
            self._open[key] = _Window(now + self.window)
        out.sort(key=lambda e: e.time)
        return out

    def flush(self) -> list[Event]:
        """Every pending summary now (shutdown: nothing folded is lost)."""
        out = self.due(float("inf"))
        self._open.clear()
        return out

    def next_due(self) -> float | None:
        return min((w.ends for w in self._open.values()), default=None)


# ---------------------------------------------------------------------------------------------- peers


@dataclass(slots=True)
class _Failing:
    since: float
    reported: bool = False


class FailureTracker:
    """A peer (registry host, git remote) failing for longer than ``after`` is one PEER_FAILING event; its
    first success after that is one PEER_RECOVERED. Pure: the caller passes the time and emits."""

    def __init__(self, after: float) -> None:
        self.after = after
        self._failing: dict[str, _Failing] = {}

    def failed(self, peer: str, now: float, error: str) -> Event | None:
        f = self._failing.setdefault(peer, _Failing(now))
        if f.reported or now - f.since < self.after:
            return None
        f.reported = True
        minutes = (now - f.since) / 60
        return Event(EventType.PEER_FAILING, peer, f"{peer} failing for {minutes:.0f} min: {error}")

    def succeeded(self, peer: str, now: float) -> Event | None:
        f = self._failing.pop(peer, None)
        if f is None or not f.reported:
            return None
        return Event(EventType.PEER_RECOVERED, peer, f"{peer} recovered after {(now - f.since) / 60:.0f} min")
