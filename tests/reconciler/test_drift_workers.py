"""`reconciler controller`'s drift path on the real test API server (issue 15's C3 regression): a managed object's
watch event is handled by a pool of drift workers, not on its kind's informer thread — one app's slow correction
does not hold up another app's, and no correction waits for the Events the drift writes (they are written in the
background). Shown by blocking, never by timing."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from gitopskit.informer import EventType
from gitopskit.kube import request_json
from reconciler.cluster import EventRecorder, KubeCluster
from reconciler.controller import AppController
from reconciler.controller_cli import APP_PATH
from reconciler.model import Manifest, ResourceKey
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare
from tests.integration.test_crds import install
from tests.reconciler.test_controller import cm, ready, until
from tests.reconciler.test_reconciler import app_cli, configmap, write_source

HOLD = 60.0  # how long a blocked correction or Event waits to be let go (the old code waits this out, then fails)


@pytest.mark.cluster
@pytest.mark.git
def test_drift_on_one_app_is_corrected_while_another_apps_correction_and_every_event_are_blocked(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = cluster.api_client()
    install(api)
    ns = namespace
    bare = make_bare(git_http.root, f"drift-{ns}", {f"apps/{a}/cm.yaml": cm(f"{a}-cm", n="git") for a in ("slow", "fast")})
    request_json(api, "POST", f"/api/v1/namespaces/{ns}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git-auth"},
        "data": {"username": base64.b64encode(GIT_USER.encode()).decode(),
                 "password": base64.b64encode(GIT_PASSWORD.encode()).decode()}})  # fmt: skip
    for a in ("slow", "fast"):
        request_json(api, "POST", f"{APP_PATH}/namespaces/{ns}/apps", body={
            "apiVersion": "reconciler.imagebot.dev/v1alpha1", "kind": "App", "metadata": {"name": a},
            "spec": {"source": {"url": git_http.url(bare), "secretRef": {"name": "git-auth"}}, "path": f"apps/{a}",
                     "prune": True}})  # fmt: skip

    armed = threading.Event()
    slow_in_flight, fast_corrected, events_free = threading.Event(), threading.Event(), threading.Event()
    held_events: list[str] = []
    real_apply, real_event = KubeCluster.apply, KubeCluster.event

    def apply(self: KubeCluster, manifest: Manifest, force: bool = True, dry_run: bool = False) -> dict[str, Any]:
        name = manifest.key.name if armed.is_set() and manifest.key.kind == "ConfigMap" else ""
        if name == "slow-cm":  # the slow app's correction waits until the fast app's has been made
            slow_in_flight.set()
            fast_corrected.wait(HOLD)
        out = real_apply(self, manifest, force, dry_run)
        if name == "fast-cm":
            fast_corrected.set()
        return out

    def event(self: KubeCluster, namespace: str, involved: dict[str, Any], reason: str, *a: Any, **kw: Any) -> None:
        if armed.is_set():  # every Event waits until the test lets them go
            held_events.append(reason)
            events_free.wait(HOLD)
        real_event(self, namespace, involved, reason, *a, **kw)

    monkeypatch.setattr(KubeCluster, "apply", apply)
    monkeypatch.setattr(KubeCluster, "event", event)
    ctl = AppController(api, (ns,), workers=2, cache=tmp_path / "cache")
    ctl.start()
    try:
        for a in ("slow", "fast"):
            until(lambda a=a: ready(request_json(api, "GET", f"{APP_PATH}/namespaces/{ns}/apps/{a}")).get("status") == "True",
                  what=f"{a} Ready")  # fmt: skip
        armed.set()

        def drift(name: str) -> None:
            request_json(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/{name}?fieldManager=kubectl-edit",
                         body={"data": {"n": "drift"}}, content_type="application/merge-patch+json")  # fmt: skip

        def data(name: str) -> Any:
            return request_json(api, "GET", f"/api/v1/namespaces/{ns}/configmaps/{name}")["data"]

        drift("slow-cm")
        until(slow_in_flight.is_set, what="the slow app's correction under way")
        drift("fast-cm")
        # corrected while the slow app's correction still waits (for this one) and no Event has been written: on
        # the ConfigMaps' informer thread, it would wait behind the slow correction and its Events
        until(lambda: data("fast-cm") == {"n": "git"}, what="the fast app's drift corrected")
        until(lambda: data("slow-cm") == {"n": "git"}, what="the slow app's drift corrected")
        until(lambda: "DriftCorrected" in held_events, what="a DriftCorrected Event held")  # both corrected meanwhile
        events_free.set()  # the Events the drifts recorded are written, with the drift in their annotations

        def corrected() -> set[str]:
            items = request_json(api, "GET", f"/api/v1/namespaces/{ns}/events")["items"]
            return {json.loads(e["metadata"]["annotations"]["reconciler.imagebot.dev/drift"])[0]["name"]
                    for e in items if e["reason"] == "DriftCorrected"}  # fmt: skip

        until(lambda: corrected() >= {"slow-cm", "fast-cm"}, what="both DriftCorrected Events written")
    finally:
        events_free.set()
        fast_corrected.set()
        assert ctl.stop(30)


def test_the_event_recorder_writes_in_the_background_in_order_and_drops_rather_than_waits() -> None:
    written: list[tuple[Any, ...]] = []
    free, writing = threading.Event(), threading.Event()

    def write(*args: Any) -> None:
        writing.set()
        free.wait(HOLD)
        written.append(args)

    rec = EventRecorder(write, capacity=2)
    for n in range(4):  # the writer holds the first; two wait in the queue; the fourth finds it full and is dropped
        rec.record("ns", {"kind": "ConfigMap"}, f"R{n}", f"message {n}", annotations={"n": str(n)} if n else None)
        if n == 0:
            until(writing.is_set, what="the writer to take the first Event")
    assert written == [] and rec.dropped == 1, "recording never waits for a write"
    free.set()
    assert rec.close(HOLD)
    assert [w[2] for w in written] == ["R0", "R1", "R2"]
    namespace, involved, _, message, type_, annotations, at = written[1]
    assert (namespace, involved, message, type_, annotations) == ("ns", {"kind": "ConfigMap"}, "message 1", "Normal", {"n": "1"})
    assert at.endswith("Z"), "the time it was recorded, not when written"
    rec.record("ns", {}, "late", "after close")
    assert [w[2] for w in written] == ["R0", "R1", "R2"]


def test_events_of_one_object_waiting_for_a_drift_worker_collapse_into_its_newest(tmp_path: Path) -> None:
    ctl = AppController(None, ("ns",), cache=tmp_path / "cache")  # not started: the events wait for a worker

    def cm_at(name: str, rv: int) -> dict[str, Any]:
        meta = {"name": name, "namespace": "ns", "resourceVersion": str(rv)}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}

    a = [cm_at("a", n) for n in range(3)]
    ctl._on_managed(EventType.ADDED, a[0], None)
    ctl._on_managed(EventType.MODIFIED, a[1], a[0])
    ctl._on_managed(EventType.MODIFIED, cm_at("b", 7), cm_at("b", 6))
    ctl._on_managed(EventType.MODIFIED, a[2], a[1])
    assert len(ctl.drift_queue) == 2, "one queued key per object, however many events"
    got = ctl._drift_events[ResourceKey("", "ConfigMap", "ns", "a")]
    assert (got.etype, got.obj, got.prev) == (EventType.MODIFIED, a[2], None), "the newest state, the oldest prev"
    first = got.received
    ctl._on_managed(EventType.DELETED, a[2], a[2])
    assert ctl._drift_events[ResourceKey("", "ConfigMap", "ns", "a")].received == first, "latency counts from the oldest"
    assert ctl.drift.process_one(0) and ctl.drift.process_one(0)  # no app claims them: handled, nothing left
    assert ctl._drift_events == {} and len(ctl.drift_queue) == 0
    ctl.stop(5)


@pytest.mark.cluster
def test_reconciler_run_writes_its_events_off_the_loops_threads_and_all_of_them_before_it_exits(
    cluster: TestCluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reconciler run` corrects drift on one watch thread per kind: a correction's Event written there would
    hold up the next drift of that kind, so its Events go to a background writer — flushed before the exit."""
    writers: list[tuple[str, str]] = []
    real_event = KubeCluster.event

    def event(self: KubeCluster, namespace: str, involved: dict[str, Any], reason: str, *a: Any, **kw: Any) -> None:
        writers.append((reason, threading.current_thread().name))
        real_event(self, namespace, involved, reason, *a, **kw)

    monkeypatch.setattr(KubeCluster, "event", event)
    src = write_source(tmp_path / "src", configmap("a", k="1"))
    assert app_cli(cluster, "run", src, "ev", namespace, "--once")[0] == 0
    assert writers == [("Synced", "events")], "written by the background writer, and before run returned"
    items = request_json(cluster.api_client(), "GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    assert [e["reason"] for e in items] == ["Synced"]
