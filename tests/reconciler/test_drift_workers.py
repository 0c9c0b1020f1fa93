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
from reconciler import apps as A
from reconciler.cluster import EventRecorder, KubeCluster
from reconciler.controller import AppController, AppKey
from reconciler.controller_cli import APP_PATH
from reconciler.engine import KeyFence
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


class _Slots:
    """A stand-in for AutoShards: which apps this replica holds now."""

    def __init__(self, *held: str) -> None:
        self.held = set(held)

    def owns(self, key: str) -> bool:
        return key in self.held

    def stop(self) -> None:
        pass


def test_the_event_writer_drops_the_events_of_an_app_this_replica_no_longer_owns_when_it_writes(tmp_path: Path) -> None:
    """The writer's thread is no app's, so the shards' fence of the write itself cannot tell whose Event it is: an
    Event queued while the replica owned the app, written after its slot went to another, was written anyway."""
    slots = _Slots("App/ns/a", "App/ns/b")
    ctl = AppController(None, ("ns",), cache=tmp_path / "cache", shards=slots)  # type: ignore[arg-type]
    written: list[str] = []
    free, writing = threading.Event(), threading.Event()

    def write(namespace: str, involved: dict[str, Any], reason: str, *rest: Any) -> None:
        writing.set()
        free.wait(HOLD)
        written.append(reason)

    ctl.events._write = write
    obj = {"apiVersion": "reconciler.imagebot.dev/v1alpha1", "kind": "App", "metadata": {"name": "a", "namespace": "ns"},
           "spec": {"source": {"url": "https://git.example.com/r.git"}}}  # fmt: skip
    engine_a = ctl._engine(AppKey("App", "ns", "a"), A.from_app(obj), None)
    engine_b = ctl._engine(AppKey("App", "ns", "b"), A.from_app({**obj, "metadata": {"name": "b", "namespace": "ns"}}), None)
    engine_a.record_event("ns", {}, "first", "held by the writer")
    until(writing.is_set, what="the writer to take the first Event")
    engine_a.record_event("ns", {}, "a-lost", "recorded while a was ours")
    engine_b.record_event("ns", {}, "b-kept", "b stays ours")
    ctl.events.record("ns", {}, "no-app", "no app named: written as before")
    slots.held.discard("App/ns/a")  # the slot of a goes to another replica before those are written
    free.set()
    assert ctl.events.close(HOLD)
    assert written == ["first", "b-kept", "no-app"] and ctl.events.fenced == 1
    ctl.stop(5)


def test_a_sync_marking_an_object_waits_for_a_correction_under_way_and_the_drift_path_then_leaves_it() -> None:
    """The fence closes the check-then-act gap: a correction that began before the sync's mark (and may apply the
    object) ends before the sync deletes it; while marked, and after a prune, the drift path handles nothing."""
    fence = KeyFence(remember=2)
    key, other = ResourceKey("", "ConfigMap", "ns", "a"), ResourceKey("", "ConfigMap", "ns", "b")
    marked, release = threading.Event(), threading.Event()

    def sync() -> None:
        with fence.replacing(key):
            marked.set()
            release.wait(HOLD)

    with fence.correcting(key, deleted=False) as ok:
        assert ok
        t = threading.Thread(target=sync)
        t.start()
        assert not marked.wait(0.2), "the sync marks the object only after the correction under way"
    until(marked.is_set, what="the sync's mark once the correction ended")
    with fence.correcting(key, deleted=True) as ok:
        assert not ok, "the deletion of an object the sync is replacing is not drift"
    with fence.correcting(other, deleted=True) as ok:
        assert ok, "another object's is"
    release.set()
    t.join(HOLD)
    with fence.correcting(key, deleted=True) as ok:
        assert ok, "after the recreate, a deletion is drift again"
    fence.pruned(key)
    with fence.correcting(key, deleted=True) as ok:
        assert not ok, "a prune's deletion is never drift"
    with fence.correcting(key, deleted=False) as ok:
        assert ok, "only its deletion is the prune's"
    fence.wanted([key])
    with fence.correcting(key, deleted=True) as ok:
        assert ok, "declared again: its deletion is drift again"
    for n in range(3):
        fence.pruned(ResourceKey("", "ConfigMap", "ns", f"p{n}"))
    with fence.correcting(ResourceKey("", "ConfigMap", "ns", "p0"), deleted=True) as ok:
        assert ok, "the oldest pruned are forgotten past the bound"
