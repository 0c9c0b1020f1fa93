"""The shared informer on the real test API server: paged list, watch events into the cache, label selector."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from gitopskit.informer import ApiTransport, Informer, Key
from gitopskit.kube import request_json
from tests.fixtures.cluster import TestCluster

pytestmark = pytest.mark.cluster


def until(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_the_informer_lists_in_pages_then_follows_changes_through_the_watch(cluster: TestCluster, namespace: str) -> None:
    api = cluster.api_client()
    path = f"/api/v1/namespaces/{namespace}/configmaps"

    def create(name: str, label: str = "yes") -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"informed": label}}}
        request_json(api, "POST", path, body=body)

    for i in range(7):
        create(f"cm-{i}")
    create("other", label="no")
    events: list[tuple[str, str]] = []
    inf = Informer(ApiTransport(api), path, label_selector="informed=yes", page_size=3, watch_seconds=2)
    inf.add_handler(lambda t, o, p: events.append((str(t), str(Key.of(o)))))
    stop = threading.Event()
    thread = inf.start(stop)
    try:
        assert inf.wait_synced(20)
        assert sorted(k.name for k in inf.cached_keys()) == [f"cm-{i}" for i in range(7)], "paged list, selector honoured"
        create("cm-new")
        request_json(api, "PATCH", f"{path}/cm-0", body={"data": {"k": "v"}}, content_type="application/merge-patch+json")
        request_json(api, "DELETE", f"{path}/cm-1")
        assert until(lambda: ("DELETED", f"{namespace}/cm-1") in events)
        assert until(lambda: (inf.get(Key(namespace, "cm-0")) or {}).get("data") == {"k": "v"})
        assert inf.get(Key(namespace, "cm-new")) is not None and inf.get(Key(namespace, "cm-1")) is None
        assert inf.get(Key(namespace, "other")) is None
        # the server ends each watch after watch_seconds: the informer resumes without listing again
        time.sleep(2.5)
        create("cm-late")
        assert until(lambda: inf.get(Key(namespace, "cm-late")) is not None)
        assert inf.lists == 1
    finally:
        stop.set()
    thread.join(1)
