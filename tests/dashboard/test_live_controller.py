"""The dashboard beside a real `reconciler controller` (in-process) on the test API server and a real git remote: a
manual scale is corrected by the controller and appears on the open page, live, with who changed what; the
sync history comes from the App's status; Sync now is handled by the controller."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gitopskit.kube import request_json
from reconciler.controller import AppController
from reconciler.controller_cli import APP_PATH
from tests.dashboard.test_server import _read_until, _sse, until
from tests.fixtures.browser import DashboardServer, start_dashboard
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare
from tests.integration.test_crds import install

pytestmark = [pytest.mark.cluster, pytest.mark.git]

TOKEN = "t0ken-for-live-tests-0123"


def deployment(name: str, replicas: int) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}},
    })  # fmt: skip


def page_with(url: str, needle: str, count: int = 1) -> str:
    def got() -> str:
        text = requests.get(url, timeout=30).text
        return text if text.count(needle) >= count else ""

    return str(until(got, 30, f"{needle!r} x{count} on {url}"))


@pytest.fixture
def running(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> Iterator[tuple[Any, str, DashboardServer]]:
    api = cluster.api_client()
    install(api)
    ns = namespace
    bare = make_bare(git_http.root, f"live-{ns}", {"app/web.yaml": deployment("web", 1)})
    data = {k: base64.b64encode(v.encode()).decode() for k, v in (("username", GIT_USER), ("password", GIT_PASSWORD))}
    request_json(api, "POST", f"/api/v1/namespaces/{ns}/secrets",
                 body={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "g"}, "data": data})  # fmt: skip
    spec = {"source": {"url": git_http.url(bare), "secretRef": {"name": "g"}}, "path": "app", "prune": True}
    app = {"apiVersion": "reconciler.imagebot.dev/v1alpha1", "kind": "App", "metadata": {"name": "web"}, "spec": spec}
    request_json(api, "POST", f"{APP_PATH}/namespaces/{ns}/apps", body=app)
    ctl = AppController(api, (ns,), workers=2, cache=tmp_path / "cache")
    ctl.start()
    dash = start_dashboard(tmp_path / "dash", cluster.kubeconfig, token=TOKEN, extra=["--namespace", ns])
    try:
        yield api, ns, dash
    finally:
        dash.stop()
        assert ctl.stop(30)


def test_a_manual_scale_is_corrected_and_appears_live_with_who_changed_what(running: tuple[Any, str, DashboardServer]) -> None:
    api, ns, dash = running
    page = f"{dash.url}/apps/App/{ns}/web"
    until(lambda: 'data-test="history-row"' in requests.get(page, timeout=30).text, 60, "the first sync in the history")
    sock = _sse(dash.url, f"app:App/{ns}/web")
    try:
        _read_until(sock, b": open")
        # what `kubectl scale deploy/web --replicas=4` sends: the /scale subresource, field manager kubectl
        request_json(api, "PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale", [("fieldManager", "kubectl")],
                     body={"spec": {"replicas": 4}}, content_type="application/merge-patch+json")  # fmt: skip
        _read_until(sock, b"event: changed", 30)
    finally:
        sock.close()
    body = page_with(page, 'data-outcome="corrected"')
    found = re.search(r'<tr data-test="drift-row"[^>]*data-outcome="corrected">.*?</tr>', body, re.S)
    assert found, body
    row = found.group(0)
    assert 'data-field="/spec/replicas"' in row and 'data-manager="kubectl"' in row
    assert "<code>1</code> → <code>4</code>" in row and "correct" in row
    # "When": the time kubectl set the field, from the object's managedFields (was empty for a corrected drift)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[^"]+">[^<]+</time>', cells[4]), row
    until(lambda: (request_json(api, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web") or {})["spec"]["replicas"] == 1,
          30, "the scale undone")  # fmt: skip
    timeline = requests.get(f"{dash.url}/activity", timeout=30).text
    assert "DriftCorrected" in timeline and 'data-kind="drift"' in timeline


def test_sync_now_from_the_dashboard_is_handled_by_the_controller_and_recorded(running: tuple[Any, str, DashboardServer]) -> None:
    api, ns, dash = running
    path = f"{APP_PATH}/namespaces/{ns}/apps/web"
    until(lambda: (request_json(api, "GET", path) or {}).get("status", {}).get("history"), 60, "a first sync")
    before = len((request_json(api, "GET", path) or {})["status"]["history"])
    page_with(f"{dash.url}/apps/App/{ns}/web", 'data-test="history-row"', before)  # the dashboard has seen it
    r = requests.post(f"{dash.url}/apps/App/{ns}/web/sync", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code == 200
    stamp = r.json()["requestedAt"]
    until(lambda: (request_json(api, "GET", path) or {}).get("status", {}).get("lastHandledReconcileAt") == stamp, 60,
          "the request handled")  # fmt: skip
    history = (request_json(api, "GET", path) or {})["status"]["history"]
    assert len(history) == before + 1  # a requested sync is recorded even when it changed nothing
    assert re.fullmatch(r"\d+\.\d\ds", history[-1]["duration"]) and history[-1]["result"] == "ReconciliationSucceeded"
    page = page_with(f"{dash.url}/apps/App/{ns}/web", 'data-test="history-row"', before + 1)
    assert "sync requested by token (dashboard API)" in page

