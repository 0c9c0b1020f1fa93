"""The reconciler's notifications: the controller on the test API server tells a webhook receiver of ours and
Kubernetes Events about a failing app (once, though it is retried), and about drift seen and corrected (the
Event on the drifted object); `reconciler run --notify-config` delivers before it exits; health transitions
and the failure streak are unit-checked on AppNotices."""

from __future__ import annotations

import base64
import io
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gitopskit.kube import request_json
from gitopskit.notifier import KubeEventSink, Notifier, WebhookSink
from gitopskit.notify import Event, EventType, NotifyConfig, SinkConfig, SinkKind
from gitopskit.workqueue import Backoff
from reconciler.cli import main
from reconciler.controller import AppController
from reconciler.controller_cli import APP_PATH
from reconciler.model import Health
from reconciler.notices import AppNotices
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare
from tests.fixtures.receiver import Receiver
from tests.integration.test_crds import install
from tests.reconciler.test_controller import cm, create, ready, until


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


def test_health_is_news_when_it_turns_bad_and_when_it_recovers_and_a_retried_failure_is_told_once() -> None:
    rec = Recorder()
    n = AppNotices(rec)
    for health in (Health.PROGRESSING, Health.HEALTHY, Health.DEGRADED, Health.DEGRADED, Health.MISSING, Health.HEALTHY):
        n.synced("prod/web", health, "main@sha1:abc")
    assert [e.type for e in rec.events] == [EventType.HEALTH_DEGRADED, EventType.HEALTH_RECOVERED]
    assert rec.events[0].message == "prod/web is Degraded at main@sha1:abc"
    rec.events.clear()
    for message in ("render failed: x", "render failed: x", "render failed: y", "render failed: y"):
        n.failed("prod/web", message)
    n.synced("prod/web", Health.HEALTHY, "r2")
    n.failed("prod/web", "render failed: y")  # a new streak after a success: told again
    assert [e.message for e in rec.events] == ["render failed: x", "render failed: y", "render failed: y"]


def test_a_git_remote_failing_long_is_one_event_without_credentials_in_it() -> None:
    rec, now = Recorder(), [0.0]
    n = AppNotices(rec, failing_after=60.0, clock=lambda: now[0])
    for t in (0.0, 30.0, 61.0, 90.0):
        now[0] = t
        n.peer("git https://user:tok3n@git.example/r.git", "fetch failed")
    now[0] = 100.0
    n.peer("git https://user:tok3n@git.example/r.git", None)
    assert [(e.type, e.subject) for e in rec.events] == [
        (EventType.PEER_FAILING, "git https://git.example/r.git"), (EventType.PEER_RECOVERED, "git https://git.example/r.git"),
    ]  # fmt: skip
    assert all("tok3n" not in e.message for e in rec.events)


@pytest.mark.cluster
@pytest.mark.git
def test_the_controller_notifies_a_failing_app_once_and_drift_with_an_event_on_the_drifted_object(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> None:
    api = cluster.api_client()
    install(api)
    ns = namespace
    bare = make_bare(git_http.root, f"n-{ns}", {"apps/good/cm.yaml": cm("good", n="1"), "apps/bad/bad.yaml": "kind: [unclosed\n"})
    auth = {
        "username": base64.b64encode(GIT_USER.encode()).decode(),
        "password": base64.b64encode(GIT_PASSWORD.encode()).decode(),
    }
    create(
        api,
        f"/api/v1/namespaces/{ns}/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git-auth"}, "data": auth},
    )
    for name, path in (("good", "apps/good"), ("broken", "apps/bad")):
        body = {"apiVersion": "reconciler.imagebot.dev/v1alpha1", "kind": "App", "metadata": {"name": name},
                "spec": {"source": {"url": git_http.url(bare), "secretRef": {"name": "git-auth"}}, "path": path}}  # fmt: skip
        create(api, f"{APP_PATH}/namespaces/{ns}/apps", body)
    receiver = Receiver()
    hook = SinkConfig("ops", SinkKind.WEBHOOK, url=receiver.url(), timeout=5.0, deadline=30.0)
    kube = SinkConfig("kube", SinkKind.KUBERNETES, timeout=10.0, deadline=30.0)
    notifier = Notifier(
        NotifyConfig((hook, kube), coalesce_window=0),
        [(hook, WebhookSink("ops", receiver.url())), (kube, KubeEventSink("kube", api, "reconciler"))],
        source="reconciler",
        backoff=Backoff(base=0.05, cap=0.2),
    ).start()
    ctl = AppController(api, (ns,), workers=2, cache=tmp_path / "cache", notifier=notifier)
    ctl.start()
    try:
        assert ctl.wait_synced(30)
        until(lambda: any(r.json()["type"] == "sync-failed" for r in receiver.delivered), what="sync-failed delivered")
        until(lambda: ready(request_json(api, "GET", f"{APP_PATH}/namespaces/{ns}/apps/good")).get("status") == "True",
              what="good applied")  # fmt: skip
        request_json(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/good?fieldManager=kubectl-edit",
                     body={"data": {"n": "999"}}, content_type="application/merge-patch+json")  # fmt: skip
        until(lambda: request_json(api, "GET", f"/api/v1/namespaces/{ns}/configmaps/good")["data"] == {"n": "1"},
              what="drift corrected")  # fmt: skip
        until(lambda: {"drift-detected", "drift-corrected"} <= {r.json()["type"] for r in receiver.delivered}, what="drift told")
        failures = ctl.metrics.reconciles.labels("App", ns, "broken", "failed")
        until(lambda: failures._value.get() >= 2, what="the broken app retried")  # retried: not told again
        assert notifier.flush(20)

        def events() -> list[dict[str, Any]]:
            return request_json(api, "GET", f"/api/v1/namespaces/{ns}/events")["items"]

        until(lambda: len(events()) >= 3, what="Kubernetes Events")
        kinds = sorted((e["reason"], e["involvedObject"]["kind"], e["involvedObject"]["name"]) for e in events())
    finally:
        assert ctl.stop(30)
        notifier.close(5)
        receiver.stop()
    docs = [r.json() for r in receiver.delivered]
    failed = [d for d in docs if d["type"] == "sync-failed"]
    assert len(failed) == 1 and failed[0]["subject"] == f"{ns}/broken" and "bad.yaml" in failed[0]["message"]
    assert failed[0]["object"] == {
        "apiVersion": "reconciler.imagebot.dev/v1alpha1",
        "kind": "App",
        "namespace": ns,
        "name": "broken",
    }
    drift = next(d for d in docs if d["type"] == "drift-detected")
    assert drift["subject"] == f"{ns}/good" and "/data/n" in drift["message"] and "kubectl-edit" in drift["message"]
    assert drift["object"]["kind"] == "ConfigMap" and drift["object"]["name"] == "good"
    assert ("DriftDetected", "ConfigMap", "good") in kinds and ("DriftCorrected", "ConfigMap", "good") in kinds
    assert ("SyncFailed", "App", "broken") in kinds


def test_reconciler_run_delivers_a_sync_failure_before_it_exits_and_refuses_a_bad_notify_config(
    cluster: TestCluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver()
    monkeypatch.setenv("RUN_NOTIFY_URL", receiver.url("/secret-path-XYZ"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.yaml").write_text("kind: [unclosed\n")
    notify_file = tmp_path / "notify.yaml"
    notify_file.write_text(textwrap.dedent("""\
        notifications:
          sinks:
            - name: ops
              type: slack
              urlEnv: RUN_NOTIFY_URL
              events: [sync-failed]
        """))  # fmt: skip
    base = ["--kubeconfig", str(cluster.kubeconfig), "--name", "nrun", "--inventory-namespace", namespace,
            "--namespace", namespace, "--source", str(src), "--once"]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    try:
        code = main(["run", *base, "--notify-config", str(notify_file)], out=out, err=err)
        assert code not in (0, 2), err.getvalue()
        (got,) = receiver.delivered
    finally:
        receiver.stop()
    assert "Sync failed" in json.loads(got.body)["text"] and "nrun" in json.loads(got.body)["text"]
    notify_file.write_text(
        "notifications:\n  sinks:\n    - {name: ops, type: slack, url: 'https://hooks.slack.com/services/SECRETX'}\n"
    )
    err = io.StringIO()
    assert main(["run", *base, "--notify-config", str(notify_file)], out=io.StringIO(), err=err) == 2
    assert "is a secret" in err.getvalue() and "SECRETX" not in err.getvalue() and "Traceback" not in err.getvalue()
    monkeypatch.delenv("RUN_NOTIFY_URL")
    notify_file.write_text("notifications:\n  sinks:\n    - {name: ops, type: slack, urlEnv: RUN_NOTIFY_URL}\n")
    err = io.StringIO()
    assert main(["run", *base, "--notify-config", str(notify_file)], out=io.StringIO(), err=err) == 2
    assert "RUN_NOTIFY_URL is not set" in err.getvalue()
