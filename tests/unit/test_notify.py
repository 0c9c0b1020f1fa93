"""Notifications, pure and in-process: config, filters, payloads, signatures, coalescing, the delivery loop's
backoff and deadline (on a clock that moves only when the code waits on it: no real sleeps)."""

from __future__ import annotations

import json
import random
import threading

import pytest

from gitopskit import notify
from gitopskit.notifier import DeliveryError, Notifier
from gitopskit.notify import Event, EventType, Filter, NotifyConfig, NotifyConfigError, ObjectRef, Severity, SinkConfig, SinkKind
from gitopskit.workqueue import Backoff


class SteppingClock:
    """Time moves only by what the code under test waits for: a retry after 8 s returns at once, 8 s later."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.waits: list[float] = []

    def now(self) -> float:
        return self.t

    def wait(self, cond: threading.Condition, timeout: float | None) -> None:
        assert timeout is not None, "a delivery never waits without a bound"
        self.waits.append(timeout)
        self.t += timeout


class FlakySink:
    name = "flaky"

    def __init__(self, errors: list[DeliveryError]) -> None:
        self.errors = errors
        self.got: list[Event] = []
        self.timeouts: list[float] = []

    def send(self, event: Event, timeout: float) -> None:
        self.timeouts.append(timeout)
        if self.errors:
            raise self.errors.pop(0)
        self.got.append(event)

    def secrets(self) -> tuple[str, ...]:
        return ("https://hooks.example/T000/B000/XXXXSECRET",)


def _notifier(sink: FlakySink, clock: SteppingClock, *, deadline: float = 300.0, window: float = 60.0, **kw: object) -> Notifier:
    cfg = SinkConfig("flaky", SinkKind.WEBHOOK, url="http://x/", timeout=10.0, deadline=deadline, **kw)  # type: ignore[arg-type]
    return Notifier(
        NotifyConfig((cfg,), coalesce_window=window, queue_size=3),
        [(cfg, sink)],
        source="test",
        clock=clock,
        wall=lambda: 1_700_000_000.0,
        rnd=random.Random(1),
        backoff=Backoff(base=1.0, cap=60.0, jitter=0.5),
    )


def _event(
    t: EventType = EventType.DRIFT_DETECTED, subject: str = "prod/web", msg: str = "replicas 3 → 5", **kw: object
) -> Event:
    return Event(t, subject, msg, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ delivery loop


def test_a_failing_delivery_is_retried_with_exponential_backoff_and_jitter_until_it_succeeds() -> None:
    clock = SteppingClock()
    sink = FlakySink([DeliveryError("answered 500")] * 5)
    n = _notifier(sink, clock)
    assert n.deliver(n.lanes[0], _event(id="e1")) is True
    assert [e.id for e in sink.got] == ["e1"]
    assert len(clock.waits) == 5
    for attempt, waited in enumerate(clock.waits, 1):
        base = min(60.0, 2.0 ** (attempt - 1))
        assert base <= waited <= base * 1.5
    assert n.metrics.events.labels("flaky", "retried")._value.get() == 5
    assert n.metrics.events.labels("flaky", "sent")._value.get() == 1


def test_retry_after_from_the_peer_is_honoured() -> None:
    clock = SteppingClock()
    sink = FlakySink([DeliveryError("answered 429", retry_after=42.0)])
    n = _notifier(sink, clock)
    assert n.deliver(n.lanes[0], _event())
    assert clock.waits == [42.0]


def test_a_delivery_gives_up_at_its_overall_deadline_and_each_attempt_fits_inside_it() -> None:
    clock = SteppingClock()
    sink = FlakySink([DeliveryError("answered 503")] * 100)
    n = _notifier(sink, clock, deadline=30.0)
    start = clock.t
    assert n.deliver(n.lanes[0], _event()) is False
    assert clock.t - start <= 30.0
    assert all(0 < t <= 10.0 for t in sink.timeouts)
    assert n.metrics.events.labels("flaky", "failed")._value.get() == 1


@pytest.mark.parametrize(
    "error", [DeliveryError("answered 404", retryable=False), DeliveryError("answered 302, a redirect", retryable=False)],
    ids=["4xx", "redirect"],
)  # fmt: skip
def test_a_refusal_for_good_is_not_retried(error: DeliveryError) -> None:
    clock = SteppingClock()
    sink = FlakySink([error])
    n = _notifier(sink, clock)
    assert n.deliver(n.lanes[0], _event()) is False
    assert clock.waits == [] and len(sink.timeouts) == 1


def test_failure_logs_never_contain_the_secret_url(caplog: pytest.LogCaptureFixture) -> None:
    clock = SteppingClock()
    secret = "https://hooks.example/T000/B000/XXXXSECRET"
    sink = FlakySink([DeliveryError(f"cannot reach {secret}", retryable=False)])
    n = _notifier(sink, clock)
    n.deliver(n.lanes[0], _event())
    assert "XXXXSECRET" not in caplog.text and "<redacted>" in caplog.text


def test_max_per_minute_paces_attempts_after_a_burst_of_a_tenth_of_a_minute() -> None:
    clock = SteppingClock()
    sink = FlakySink([DeliveryError("answered 500")])
    n = _notifier(sink, clock, max_per_minute=60.0)  # a burst of 6, then one a second
    for i in range(8):
        assert n.deliver(n.lanes[0], _event(id=str(i)))
    # 9 attempts (8 events, the first retried once): the first from the bucket of 6; during its backoff the bucket
    # refills to its cap, so the retry and the next 5 events go at once; the last two wait a second each
    retry, *paced = clock.waits
    assert 1.0 <= retry <= 1.5 and len(sink.got) == 8
    assert paced == pytest.approx([1.0, 1.0])


def test_a_slack_sink_is_paced_by_default_and_a_bad_ca_file_is_a_config_error() -> None:
    from gitopskit.notifier import build_sink

    cfg = notify.parse_config({"sinks": [{"name": "a", "type": "slack", "urlEnv": "X"}, {"name": "b", "type": "webhook",
                                          "url": "https://x.example/", "caFile": "/nonexistent/ca.pem"}]})  # fmt: skip
    assert cfg.sinks[0].max_per_minute == 60.0 and cfg.sinks[1].max_per_minute == 0.0
    with pytest.raises(NotifyConfigError, match=r"caFile /nonexistent/ca\.pem: cannot load"):
        build_sink(cfg.sinks[1], "test", lambda: None)


# ------------------------------------------------------------------ coalescing, queue


def test_a_burst_of_one_subject_is_one_message_now_and_one_summary_with_the_count_when_the_window_closes() -> None:
    c = notify.Coalescer(60.0)
    first = c.offer(_event(msg="flap 0"), 0.0)
    assert first is not None and first.message == "flap 0"
    assert all(c.offer(_event(msg=f"flap {i}", time=float(i)), float(i)) is None for i in range(1, 39))
    assert c.offer(_event(subject="prod/api"), 5.0) is not None  # another subject is not held back
    assert c.due(59.0) == []
    (summary,) = c.due(60.0)
    assert summary.message == "flap 38" and summary.coalesced == 37
    assert summary.text() == "flap 38 (and 37 more)"
    # the flapping goes on: one summary per window; once quiet, the next event goes out at once again
    assert c.offer(_event(msg="flap 39"), 70.0) is None
    assert [e.coalesced for e in c.due(120.0)] == [0]
    assert c.due(180.0) == []
    assert c.offer(_event(msg="later"), 181.0) is not None


def test_close_flushes_what_coalescing_holds() -> None:
    c = notify.Coalescer(300.0)
    c.offer(_event(), 0.0)
    c.offer(_event(msg="second"), 1.0)
    assert [e.message for e in c.flush()] == ["second"]
    assert c.next_due() is None


def test_emit_coalesces_per_type_and_subject_and_counts_it_per_sink() -> None:
    clock = SteppingClock()
    sink = FlakySink([])
    n = _notifier(sink, clock)
    for _ in range(5):
        n.emit(_event())
    n.emit(_event(EventType.DRIFT_CORRECTED))
    assert [e.type for e in n.lanes[0].queue] == [EventType.DRIFT_DETECTED, EventType.DRIFT_CORRECTED]
    assert n.metrics.events.labels("flaky", "coalesced")._value.get() == 4
    queued = n.lanes[0].queue[0]
    assert queued.source == "test" and queued.time == 1_700_000_000.0 and len(queued.id) == 32


def test_a_full_queue_drops_the_oldest_of_the_lowest_severity_first(caplog: pytest.LogCaptureFixture) -> None:
    n = _notifier(FlakySink([]), SteppingClock(), window=0)
    n.emit(_event(EventType.SYNC_FAILED, "a"))  # error
    n.emit(_event(EventType.DRIFT_CORRECTED, "b"))  # info (oldest info: the first to go)
    n.emit(_event(EventType.DRIFT_CORRECTED, "c"))  # info
    n.emit(_event(EventType.HEALTH_DEGRADED, "d"))  # warning: b is dropped
    assert [e.subject for e in n.lanes[0].queue] == ["a", "c", "d"]
    n.emit(_event(EventType.COMMIT_PUSHED, "e"))  # info, with c (older, same severity) queued: c goes
    assert [e.subject for e in n.lanes[0].queue] == ["a", "d", "e"]
    n.emit(_event(EventType.SYNC_FAILED, "f"))  # e goes; then d (warning) is the least
    n.emit(_event(EventType.SYNC_FAILED, "g"))
    assert [e.subject for e in n.lanes[0].queue] == ["a", "f", "g"]
    n.emit(_event(EventType.COMMIT_PUSHED, "h"))  # less than everything queued: the newcomer is the one dropped
    assert [e.subject for e in n.lanes[0].queue] == ["a", "f", "g"]
    assert n.metrics.events.labels("flaky", "dropped")._value.get() == 5
    assert "queue full" in caplog.text


def test_filters_by_type_severity_and_subject_globs() -> None:
    f = Filter(frozenset({EventType.SYNC_FAILED, EventType.DRIFT_DETECTED}), Severity.WARNING, ("prod/*",), ("prod/canary-*",))
    assert f.matches(_event(EventType.DRIFT_DETECTED, "prod/web"))
    assert not f.matches(_event(EventType.DRIFT_DETECTED, "staging/web"))
    assert not f.matches(_event(EventType.DRIFT_DETECTED, "prod/canary-1"))
    assert not f.matches(_event(EventType.HEALTH_DEGRADED, "prod/web"))  # type not chosen
    assert not f.matches(_event(EventType.DRIFT_DETECTED, "prod/web", severity=Severity.INFO))
    assert Filter().matches(_event(EventType.COMMIT_PUSHED, "anything"))


def test_a_peer_failing_longer_than_the_threshold_is_one_event_and_its_recovery_one_more() -> None:
    t = notify.FailureTracker(600.0)
    assert t.failed("registry ghcr.io", 0.0, "timeout") is None
    assert t.failed("registry ghcr.io", 599.0, "timeout") is None
    e = t.failed("registry ghcr.io", 601.0, "answered 503")
    assert e is not None and e.type is EventType.PEER_FAILING and "10 min" in e.message and "503" in e.message
    assert t.failed("registry ghcr.io", 900.0, "timeout") is None
    r = t.succeeded("registry ghcr.io", 960.0)
    assert r is not None and r.type is EventType.PEER_RECOVERED
    assert t.succeeded("registry ghcr.io", 970.0) is None
    t.failed("git origin", 0.0, "x")
    assert t.succeeded("git origin", 10.0) is None  # a short blip is no news


# ------------------------------------------------------------------ payloads


def test_the_webhook_signature_verifies_and_a_replay_or_tampering_does_not() -> None:
    body = notify.render_webhook(_event(id="abc", time=1_700_000_000.0))
    sig = notify.sign(b"k3y", 1_700_000_000, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert notify.verify_signature(b"k3y", body, "1700000000", sig, now=1_700_000_100)
    assert not notify.verify_signature(b"k3y", body, "1700000000", sig, now=1_700_000_000 + 301)  # replayed later
    assert not notify.verify_signature(b"k3y", body + b" ", "1700000000", sig, now=1_700_000_000)
    assert not notify.verify_signature(b"k3y", body, "1700000001", sig, now=1_700_000_000)  # timestamp swapped
    assert not notify.verify_signature(b"other", body, "1700000000", sig, now=1_700_000_000)
    assert not notify.verify_signature(b"k3y", body, "-1", sig, now=1_700_000_000)


def test_the_webhook_body_carries_the_typed_event() -> None:
    obj = ObjectRef("apps/v1", "Deployment", "web", "prod")
    e = _event(id="abc", source="reconciler", time=0.0, details=(("field", "/spec/replicas"),), object=obj, coalesced=2)
    doc = json.loads(notify.render_webhook(e))
    assert doc == {
        "version": 1, "id": "abc", "type": "drift-detected", "severity": "warning", "source": "reconciler",
        "subject": "prod/web", "message": "replicas 3 → 5 (and 2 more)", "time": "1970-01-01T00:00:00Z", "coalesced": 2,
        "details": {"field": "/spec/replicas"},
        "object": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "prod", "name": "web"},
    }  # fmt: skip


def test_the_slack_payload_has_text_and_blocks_and_escapes_markup() -> None:
    e = _event(EventType.SYNC_FAILED, "prod/<web>", "render failed: a & b <@channel>", source="reconciler", time=0.0)
    doc = json.loads(notify.render_slack(e))
    assert set(doc) == {"text", "blocks"}
    assert "<@channel>" not in json.dumps(doc) and "&lt;@channel&gt;" in doc["text"]
    section, context = doc["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert section["text"]["text"].startswith(":rotating_light: *Sync failed* `prod/&lt;web&gt;`")
    assert context["type"] == "context" and "reconciler" in context["elements"][0]["text"]


def test_the_kubernetes_event_is_named_after_the_event_id_so_a_retry_cannot_duplicate_it() -> None:
    obj = ObjectRef("apps/v1", "Deployment", "web", "prod", "u-1")
    body = notify.render_kube_event(_event(id="0123456789abcdef0123", coalesced=3), obj, "prod", "reconciler")
    assert body["metadata"] == {"name": "web.0123456789abcdef", "namespace": "prod"}
    assert body["reason"] == "DriftDetected" and body["type"] == "Warning" and body["count"] == 4
    assert body["involvedObject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "namespace": "prod",
        "uid": "u-1",
    }


# ------------------------------------------------------------------ config


def test_a_full_config_parses() -> None:
    cfg = notify.parse_config(
        {
            "coalesceWindow": "2m",
            "queueSize": 50,
            "failingAfter": "15m",
            "sinks": [
                {"name": "ops", "type": "webhook", "url": "https://ops.example/hook", "hmacKeyEnv": "OPS_KEY",
                 "events": ["sync-failed", "drift-detected"], "minSeverity": "warning", "subjects": ["prod/*"], "timeout": "5s"},
                {"name": "chat", "type": "slack", "urlFile": "/etc/notify/slack-url", "deadline": "10m"},
                {"name": "kube", "type": "kubernetes", "namespace": "flux-system",
                 "object": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "imagebot", "namespace": "flux-system"}},
            ],
        }
    )  # fmt: skip
    assert (cfg.coalesce_window, cfg.queue_size, cfg.failing_after) == (120.0, 50, 900.0)
    ops, chat, kube = cfg.sinks
    assert ops.filter.types == {EventType.SYNC_FAILED, EventType.DRIFT_DETECTED} and ops.timeout == 5.0
    assert chat.url_file == "/etc/notify/slack-url" and chat.deadline == 600.0
    assert kube.object == ObjectRef("apps/v1", "Deployment", "imagebot", "flux-system")


@pytest.mark.parametrize(
    ("sink", "expected"),
    [
        ({"name": "a", "type": "slack", "url": "https://hooks.slack.com/services/T/B/SECRETX"}, "is a secret"),
        ({"name": "a", "type": "webhook"}, "exactly one of url, urlEnv, urlFile"),
        ({"name": "a", "type": "webhook", "url": "ftp://x/SECRETX"}, "http(s)://"),
        ({"name": "a", "type": "webhook", "url": "https://user:SECRETX@x/"}, "without credentials"),
        ({"name": "a", "type": "webhook", "url": "http://x:99999/SECRETX"}, "not a valid URL"),
        ({"name": "a", "type": "pager", "urlEnv": "X"}, "type: one of webhook, slack, kubernetes"),
        ({"name": "a", "type": "webhook", "urlEnv": "X", "events": ["nope"]}, "events:"),
        ({"name": "a", "type": "webhook", "urlEnv": "X", "minSeverity": "loud"}, "minSeverity"),
        ({"name": "a", "type": "webhook", "urlEnv": "X", "timeout": "-1s"}, "timeout"),
        ({"name": "a", "type": "webhook", "urlEnv": "X", "timeout": "1m", "deadline": "10s"}, "deadline"),
        ({"name": "A b", "type": "webhook", "urlEnv": "X"}, "DNS label"),
        ({"name": "a", "type": "kubernetes", "urlEnv": "X"}, "takes no url"),
        ({"name": "a", "type": "webhook", "urlEnv": "X", "maxPerMinute": -1}, "maxPerMinute"),
        ({"name": "a", "type": "webhook", "urlEnv": "X", "color": "red"}, "unknown field(s) color"),
        ({"name": "a", "type": "webhook", "urlEnv": "1X"}, "not an environment variable name"),
    ],
    ids=["slack-literal-url", "no-url", "scheme", "userinfo", "port", "type", "event", "severity", "timeout", "deadline",
         "name", "kube-url", "rate", "unknown", "env-name"],
)  # fmt: skip
def test_invalid_sinks_are_refused_with_a_message_that_never_repeats_a_url(sink: dict[str, object], expected: str) -> None:
    with pytest.raises(NotifyConfigError) as info:
        notify.parse_config({"sinks": [sink]})
    assert expected in str(info.value)
    assert "SECRETX" not in str(info.value)


def test_duplicate_sink_names_and_a_bad_queue_size_are_refused() -> None:
    with pytest.raises(NotifyConfigError, match="duplicate"):
        notify.parse_config({"sinks": [{"name": "a", "type": "kubernetes"}] * 2})
    with pytest.raises(NotifyConfigError, match="queueSize"):
        notify.parse_config({"queueSize": 0})
    assert notify.parse_config(None) == NotifyConfig()
    assert notify.parse_config({"coalesceWindow": "0"}).coalesce_window == 0.0


def test_the_shipped_example_config_has_a_notifications_section_the_loader_and_schema_accept() -> None:
    from pathlib import Path

    from imagebot.config.load import load

    root = Path(__file__).resolve().parents[2]
    cfg = load([root / "config/imagebot.yaml"], environment=False)
    assert [(s.name, s.kind) for s in cfg.notifications.sinks] == [("chat", SinkKind.SLACK), ("ops", SinkKind.WEBHOOK)]
    schema = json.loads((root / "config/imagebot.schema.json").read_text())["properties"]["notifications"]
    sink = schema["properties"]["sinks"]["items"]["properties"]
    assert set(sink["events"]["items"]["enum"]) == set(EventType)
    assert {k for k in sink if k not in ("name", "type")} | {"name", "type"} == notify._SINK_KEYS
