"""Notifications over real sockets: receivers of ours on 127.0.0.1 (one that fails for a while), and Events on
the test API server."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest

from gitopskit import notify
from gitopskit.notifier import KubeEventSink, Notifier, SlackSink, WebhookSink, build_notifier
from gitopskit.notify import Event, EventType, NotifyConfig, NotifyConfigError, ObjectRef, SinkConfig, SinkKind
from gitopskit.workqueue import Backoff, FakeClock
from tests.fixtures.cluster import TestCluster
from tests.fixtures.receiver import Receiver

KEY = b"hmac-key-for-tests"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _notifier(cfg: SinkConfig, sink: object, window: float = 0.0) -> Notifier:
    return Notifier(
        NotifyConfig((cfg,), coalesce_window=window),
        [(cfg, sink)],
        source="test",
        backoff=Backoff(base=0.05, cap=0.2, jitter=0.5),
    ).start()  # type: ignore[list-item]


def _sent(n: Notifier, sink: str, result: str) -> float:
    return n.metrics.events.labels(sink, result)._value.get()


def test_a_receiver_failing_for_a_while_gets_every_event_once_in_order_and_signed(receiver: Receiver) -> None:
    receiver.faults = ["500", "close", "hang", "500", "drip", "500"]
    cfg = SinkConfig("ops", SinkKind.WEBHOOK, url=receiver.url(), timeout=1.0, deadline=60.0)
    n = _notifier(cfg, WebhookSink("ops", receiver.url(), KEY))
    try:
        for i in range(20):
            n.emit(Event(EventType.COMMIT_PUSHED, f"image-{i}", f"pushed {i}", details=(("commit", f"{i:040x}"),)))
        got = receiver.wait(20)
        assert n.flush(20)
    finally:
        n.close(5)
        receiver.release.set()
    ids = [r.json()["id"] for r in got]
    assert len(ids) == len(set(ids)) == 20  # nothing lost, nothing twice
    assert [r.json()["subject"] for r in got] == [f"image-{i}" for i in range(20)]  # in order
    for r in got:
        assert notify.verify_signature(
            KEY, r.body, r.headers["x-imagebot-timestamp"], r.headers["x-imagebot-signature"], time.time()
        )
        assert r.headers["x-imagebot-event"] == "commit-pushed" and r.headers["x-imagebot-delivery"] == r.json()["id"]
    assert len(receiver.seen) == 26  # the six failed attempts were retried, each once
    assert (_sent(n, "ops", "sent"), _sent(n, "ops", "retried"), _sent(n, "ops", "failed")) == (20, 6, 0)


def test_a_redirect_is_not_followed_and_a_4xx_is_not_retried(receiver: Receiver) -> None:
    receiver.faults = ["redirect"]
    cfg = SinkConfig("ops", SinkKind.WEBHOOK, url=receiver.url(), timeout=2.0, deadline=30.0)
    n = _notifier(cfg, WebhookSink("ops", receiver.url()))
    try:
        n.emit(Event(EventType.SYNC_FAILED, "prod/web", "boom"))
        assert n.flush(20)
    finally:
        n.close(5)
    assert [r.path for r in receiver.seen] == ["/hook"] and receiver.delivered == []
    assert _sent(n, "ops", "failed") == 1


def test_the_slack_sink_posts_text_and_blocks_and_its_url_never_reaches_a_log(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_path = "/services/T0SECRET/B0SECRET/xoxSECRETTOKEN"
    url = receiver.url(secret_path)
    receiver.faults = ["500", "close", "hang"]
    cfg = SinkConfig("chat", SinkKind.SLACK, url_env="X", timeout=0.5, deadline=60.0)
    n = _notifier(cfg, SlackSink("chat", url))
    try:
        n.emit(Event(EventType.HEALTH_DEGRADED, "prod/web", "Deployment prod/web: 1/3 replicas available"))
        (got,) = receiver.wait(1)
        assert n.flush(20)
    finally:
        n.close(5)
        receiver.release.set()
    assert got.path == secret_path
    doc = got.json()
    assert set(doc) == {"text", "blocks"} and [b["type"] for b in doc["blocks"]] == ["section", "context"]
    assert "Health degraded" in doc["text"] and "1/3 replicas" in doc["blocks"][0]["text"]["text"]
    assert "attempt 3 failed" in caplog.text  # the failures were logged…
    assert "SECRET" not in caplog.text  # …without the URL's secret path
    assert "SECRET" not in repr(n.lanes[0].sink)


def test_a_burst_from_a_flapping_app_is_one_message_then_one_summary_when_the_window_closes(receiver: Receiver) -> None:
    clock = FakeClock()  # the window closes when the test says so, however slowly this machine emits
    cfg = SinkConfig("ops", SinkKind.WEBHOOK, url=receiver.url(), timeout=2.0, deadline=30.0)
    n = Notifier(NotifyConfig((cfg,), coalesce_window=60.0), [(cfg, WebhookSink("ops", receiver.url()))], source="test",
                 clock=clock).start()  # fmt: skip
    try:
        for i in range(100):
            n.emit(Event(EventType.HEALTH_DEGRADED if i % 2 == 0 else EventType.HEALTH_RECOVERED, "prod/web", f"flap {i}"))
        assert [r.json()["coalesced"] for r in receiver.wait(2)] == [0, 0]  # the first of each type, at once
        clock.advance(59)
        assert n.flush(10) and len(receiver.delivered) == 2
        clock.advance(1)  # the window closes: one summary per type
        receiver.wait(4)
        assert n.flush(10)
        clock.advance(60)  # a quiet window sends nothing …
        n.emit(Event(EventType.HEALTH_DEGRADED, "prod/web", "later"))  # … and the next event goes out at once
        receiver.wait(5)
    finally:
        n.close(5)
    docs = [r.json() for r in receiver.delivered]
    assert [(d["type"], d["coalesced"]) for d in docs[2:4]] == [("health-degraded", 48), ("health-recovered", 48)]
    assert docs[2]["message"] == "flap 98 (and 48 more)" and docs[3]["message"] == "flap 99 (and 48 more)"
    assert len(docs) == 5 and docs[4]["message"] == "later"
    assert _sent(n, "ops", "coalesced") == 98


def test_a_missing_secret_is_a_clear_error_naming_where_it_was_looked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_TEST_URL", raising=False)
    cfg = notify.parse_config({"sinks": [{"name": "chat", "type": "slack", "urlEnv": "NOTIFY_TEST_URL"}]})
    with pytest.raises(NotifyConfigError, match="NOTIFY_TEST_URL is not set"):
        build_notifier(cfg, source="test")
    monkeypatch.setenv("NOTIFY_TEST_URL", "not a url SECRETVALUE")
    with pytest.raises(NotifyConfigError) as info:
        build_notifier(cfg, source="test")
    assert "SECRETVALUE" not in str(info.value)


def test_kubernetes_events_land_on_the_object_and_a_retried_event_is_recorded_once(cluster: TestCluster, namespace: str) -> None:
    from kubernetes import client

    api = cluster.api_client()
    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="web")))
    obj = ObjectRef("v1", "ConfigMap", "web", namespace, cm.metadata.uid)
    cfg = SinkConfig("kube", SinkKind.KUBERNETES, timeout=10.0, deadline=30.0)
    sink = KubeEventSink("kube", api, "reconciler")
    n = _notifier(cfg, sink)
    try:
        n.emit(Event(EventType.DRIFT_DETECTED, "web", "/data/x changed by kubectl", object=obj, id="f" * 32))
        n.emit(Event(EventType.COMMIT_PUSHED, "no-object", "nowhere to record this"))  # no object, no default: skipped
        assert n.flush(20)
        sink.send(Event(EventType.DRIFT_DETECTED, "web", "again", object=obj, id="f" * 32, time=time.time()), 10.0)  # a 409
    finally:
        n.close(5)
    events = core.list_namespaced_event(namespace).items
    assert len(events) == 1
    (e,) = events
    assert (e.reason, e.type, e.involved_object.kind, e.involved_object.name, e.involved_object.uid) == (
        "DriftDetected", "Warning", "ConfigMap", "web", cm.metadata.uid,
    )  # fmt: skip
    assert e.message == "/data/x changed by kubectl" and e.source.component == "reconciler"
    assert _sent(n, "kube", "sent") == 1 and _sent(n, "kube", "failed") == 0
    assert json.loads(json.dumps(api.sanitize_for_serialization(e)))["count"] == 1
