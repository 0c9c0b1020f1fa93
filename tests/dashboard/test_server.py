"""`dashboard serve` as a process over HTTP, against the real test API server: every page, its security headers,
server-sent events carrying an informer change, the actions with and without a token and CSRF token, Secret
values never rendered, and 1,000 apps."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes.client.exceptions import ApiException

from dashboard.auth import MIN_TOKEN_CHARS, TokenError, parse_tokens
from gitopskit.kube import request_json
from tests.fixtures.browser import DashboardServer, start_dashboard
from tests.fixtures.cluster import TestCluster
from tests.integration.test_crds import install

pytestmark = [pytest.mark.cluster]

KS = "/apis/kustomize.toolkit.fluxcd.io/v1"
APPS = "/apis/reconciler.imagebot.dev/v1alpha1"
ARGO = "/apis/argoproj.io/v1alpha1"
TOKEN = "t0ken-for-tests-0123456789"
SECRET_VALUE = "hunter2-super-secret-value"


def until(cond: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what or cond}")


def kustomization(ns: str, name: str, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": name, "namespace": ns},
        "spec": {"interval": "5m", "path": "./apps", "prune": True, "sourceRef": {"kind": "GitRepository", "name": "config"}},
    }  # fmt: skip


def set_status(api: Any, path: str, status: dict[str, Any]) -> None:
    request_json(api, "PATCH", f"{path}/status", body={"status": status}, content_type="application/merge-patch+json")


def ready(ok: bool, message: str, reason: str = "ReconciliationSucceeded") -> list[dict[str, Any]]:
    return [{"type": "Ready", "status": "True" if ok else "False", "reason": reason if ok else "ReconciliationFailed",
             "message": message, "lastTransitionTime": "2026-11-29T08:00:00Z", "observedGeneration": 1}]  # fmt: skip


@pytest.fixture(scope="module")
def ns(cluster: TestCluster) -> Iterator[str]:
    api = cluster.api_client()
    install(api)
    name = f"d-{uuid.uuid4().hex[:8]}"
    request_json(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    request_json(api, "POST", f"/apis/source.toolkit.fluxcd.io/v1/namespaces/{name}/gitrepositories", body={
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "config", "namespace": name},
        "spec": {"url": "https://git.example/config.git", "interval": "1m", "ref": {"branch": "main"}}})  # fmt: skip
    web = f"{KS}/namespaces/{name}/kustomizations/web"
    request_json(api, "POST", f"{KS}/namespaces/{name}/kustomizations", body=kustomization(name, "web"))
    set_status(api, web, {
        "conditions": ready(True, "Applied revision: main@sha1:0123"), "lastAppliedRevision": "main@sha1:" + "ab" * 20,
        "health": "Healthy", "driftCount": 2,
        "inventory": {"entries": [{"id": f"{name}_web_apps_Deployment", "v": "v1"}, {"id": f"{name}_creds__Secret", "v": "v1"}]},
        "drift": [
            {"group": "apps", "kind": "Deployment", "namespace": name, "name": "web", "field": "/spec/replicas",
             "change": "changed", "git": 1, "live": 4, "manager": "kubectl", "time": "2026-11-29T08:01:00Z", "policy": "report"},
            {"group": "", "kind": "Secret", "namespace": name, "name": "creds", "field": "/data/password",
             "change": "changed", "git": SECRET_VALUE, "live": SECRET_VALUE + "-live", "manager": "kubectl-edit",
             "time": "2026-11-29T08:02:00Z", "policy": "report"},
        ],
        "history": [{"revision": "main@sha1:" + "ab" * 20, "startedAt": "2026-11-29T08:00:00Z",
                     "finishedAt": "2026-11-29T08:00:01Z", "duration": "0.8s", "result": "Succeeded",
                     "changes": "1 create"}],
    })  # fmt: skip
    # the managed objects: a Deployment drifted to 4 replicas, and a Secret (never read by the dashboard)
    label = {"reconciler.imagebot.dev/app": app_key("Kustomization", name, "web")}
    request_json(api, "POST", f"/apis/apps/v1/namespaces/{name}/deployments", body={
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": name, "labels": label},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}}})  # fmt: skip
    request_json(api, "PATCH", f"/apis/apps/v1/namespaces/{name}/deployments/web/status", body={"status": {
        "observedGeneration": 1, "replicas": 4, "updatedReplicas": 4, "readyReplicas": 4, "availableReplicas": 4}},
        content_type="application/merge-patch+json")  # fmt: skip
    request_json(api, "POST", f"/api/v1/namespaces/{name}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": name, "labels": label},
        "stringData": {"password": SECRET_VALUE}})  # fmt: skip
    # an inventory ConfigMap as the reconciler writes it: a prune guard held
    request_json(api, "POST", f"/api/v1/namespaces/{name}/configmaps", body={
        "metadata": {"name": f"reconciler-{label['reconciler.imagebot.dev/app']}",
                     "labels": {"reconciler.imagebot.dev/inventory": label["reconciler.imagebot.dev/app"]}},
        "data": {"status": json.dumps({"lastPrune": [{"object": f"PersistentVolumeClaim {name}/data", "action": "skip-prune",
                                                      "reason": "protected kind PersistentVolumeClaim"}],
                                       "lastPruneAt": "2026-11-29T08:00:01Z"})}})  # fmt: skip
    request_json(api, "POST", f"{APPS}/namespaces/{name}/apps", body={
        "apiVersion": "reconciler.imagebot.dev/v1alpha1", "kind": "App", "metadata": {"name": "native", "namespace": name},
        "spec": {"source": {"url": "https://git.example/other.git", "ref": {"branch": "main"}}, "path": "x"}})  # fmt: skip
    yield name


def app_key(kind: str, ns: str, name: str) -> str:
    from reconciler.apps import app_key as key

    return key(kind, ns, name)


@pytest.fixture(scope="module")
def dash(cluster: TestCluster, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    server = start_dashboard(tmp_path_factory.mktemp("dash"), cluster.kubeconfig, token=TOKEN, extra=["--namespace", ns])
    try:
        yield server
    finally:
        server.stop()


def login(dash: DashboardServer, token: str = TOKEN) -> tuple[requests.Session, str]:
    s = requests.Session()
    page = s.get(f"{dash.url}/login", timeout=30)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert csrf, page.text
    form = {"csrf": csrf.group(1), "token": token, "next": "/apps"}
    r = s.post(f"{dash.url}/login", data=form, allow_redirects=False, timeout=30)
    assert r.status_code in (303, 401), r.text
    return s, csrf.group(1)


def wait_listed(dash: DashboardServer, text: str, path: str = "/apps") -> str:
    def got() -> str:
        body = requests.get(dash.url + path, timeout=30).text
        return body if text in body else ""

    return str(until(got, what=f"{text!r} on {path}"))


# ------------------------------------------------------------------------------------------------ pages
@pytest.mark.parametrize("path", ["/", "/apps", "/images", "/activity", "/login", "/static/app.js", "/static/style.css"],
                         ids=["root", "apps", "images", "activity", "login", "script", "stylesheet"])  # fmt: skip
def test_every_page_answers_with_the_security_headers(dash: DashboardServer, path: str) -> None:
    r = requests.get(dash.url + path, timeout=30)
    assert r.status_code == 200
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "same-origin"  # not no-referrer: see test_browser (a browser's POST)
    if path.startswith("/static/"):
        return
    assert "<script>" not in r.text and " onclick=" not in r.text and "style=" not in r.text  # nothing inline: CSP holds
    assert "<script src=\"/static/app.js\"" in r.text and "cdn" not in r.text.lower()  # every asset from the package


def test_the_apps_page_lists_every_dialect_with_sync_health_drift_and_source(dash: DashboardServer, ns: str) -> None:
    body = wait_listed(dash, f"{ns}/native")
    row = body[body.index(f'data-key="Kustomization/{ns}/web"'):]
    row = row[: row.index("</tr>")]
    assert "✓ Synced" in row and "♥ Healthy" in row and "⚠ 2" in row
    assert "https://git.example/config.git" in row and "main@abababababab" in row
    assert 'data-key="App/' in body and "2 of 2" in body


def test_the_app_detail_shows_objects_drift_with_attribution_guards_history_and_events(dash: DashboardServer, ns: str) -> None:
    body = wait_listed(dash, f'data-object="Deployment/{ns}/web" data-health="Healthy"', f"/apps/Kustomization/{ns}/web")
    drift = body[body.index('id="drift-table"'):body.index("</table>", body.index('id="drift-table"'))]
    assert "/spec/replicas" in drift and "<code>1</code> → <code>4</code>" in drift and "kubectl" in drift and "report" in drift
    assert "PersistentVolumeClaim" in body and "protected kind" in body  # the prune guard that held
    assert 'data-test="history-row"' in body and "1 create" in body
    # the unified diff Git vs live of the drifted Deployment
    assert re.search(r'<span class="del">-\s+&#34;replicas&#34;: 4,?</span>', body)
    assert re.search(r'<span class="add">\+\s+&#34;replicas&#34;: 1,?</span>', body)


def test_secret_values_are_never_rendered_in_drift_diffs_or_events(dash: DashboardServer, ns: str, cluster: TestCluster) -> None:
    api = cluster.api_client()
    key = app_key("Kustomization", ns, "web")
    request_json(api, "POST", f"/api/v1/namespaces/{ns}/events", body={
        "apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "reconciler-", "namespace": ns, "annotations": {
            "reconciler.imagebot.dev/drift": json.dumps([{"group": "", "kind": "Secret", "namespace": ns, "name": "creds",
                                                          "field": "/data/password", "change": "changed", "git": SECRET_VALUE,
                                                          "live": "x" + SECRET_VALUE, "manager": "kubectl-edit",
                                                          "time": "2026-11-29T08:03:00Z", "policy": "correct"}])}},
        "involvedObject": {"kind": "ConfigMap", "namespace": ns, "name": f"reconciler-{key}"},
        "reason": "DriftCorrected", "message": "kubectl-edit /data/password *** → *** corrected", "type": "Normal",
        "firstTimestamp": "2026-11-29T08:03:00Z", "lastTimestamp": "2026-11-29T08:03:00Z", "count": 1})  # fmt: skip
    body = wait_listed(dash, "DriftCorrected", f"/apps/Kustomization/{ns}/web")
    assert "/data/password" in body and "*** (redacted)" in body
    for path in (f"/apps/Kustomization/{ns}/web", "/activity", "/apps"):
        text = requests.get(dash.url + path, timeout=30).text
        assert SECRET_VALUE not in text, path
        assert "aHVudGVy" not in text  # nor its base64


def test_an_unknown_app_or_page_is_a_404_page_not_a_traceback(dash: DashboardServer, ns: str) -> None:
    for path in (f"/apps/Kustomization/{ns}/nope", "/apps/Pod/x/y", "/apps/Kustomization/NOT_A/x", "/nope", "/static/../cli.py"):
        r = requests.get(dash.url + path, timeout=30)
        assert r.status_code == 404, path
        assert "Traceback" not in r.text


# ------------------------------------------------------------------------------------------------ live updates
def _sse(url: str, topics: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(f"GET /events?topics={topics} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


def _read_until(sock: socket.socket, needle: bytes, timeout: float = 30.0) -> bytes:
    buf = b""
    end = time.monotonic() + timeout
    while needle not in buf:
        left = end - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {needle!r} on the event stream; got {buf[-2000:]!r}")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            pytest.fail(f"the event stream ended; got {buf[-2000:]!r}")
        buf += chunk
    return buf


def test_an_informer_change_reaches_an_open_page_as_a_server_sent_event(
    dash: DashboardServer, ns: str, cluster: TestCluster
) -> None:
    api = cluster.api_client()
    request_json(api, "POST", f"{KS}/namespaces/{ns}/kustomizations", body=kustomization(ns, "live"))
    wait_listed(dash, f"{ns}/live")
    sock = _sse(dash.url, "apps")
    try:
        head = _read_until(sock, b": open")
        assert b"text/event-stream" in head
        set_status(api, f"{KS}/namespaces/{ns}/kustomizations/live", {"conditions": ready(False, "boom: render failed"),
                                                                        "health": "Degraded"})  # fmt: skip
        got = _read_until(sock, b"boom: render failed")
        assert b"event: row" in got and f"Kustomization/{ns}/live".encode() in got
    finally:
        sock.close()


def test_sixty_open_event_streams_hold_no_worker_and_all_receive_a_change(
    dash: DashboardServer, ns: str, cluster: TestCluster
) -> None:
    api = cluster.api_client()
    socks = [_sse(dash.url, f"app:Kustomization/{ns}/web") for _ in range(60)]
    try:
        for s in socks:
            _read_until(s, b": open")
        assert requests.get(dash.url + "/apps", timeout=30).status_code == 200  # the 32 workers are free
        set_status(api, f"{KS}/namespaces/{ns}/kustomizations/web", {"driftCount": 3})
        for s in socks:
            assert b"event: changed" in _read_until(s, b"event: changed")
    finally:
        for s in socks:
            s.close()
        set_status(api, f"{KS}/namespaces/{ns}/kustomizations/web", {"driftCount": 2})


def test_a_fragment_request_returns_only_the_live_region(dash: DashboardServer, ns: str) -> None:
    r = requests.get(f"{dash.url}/apps/Kustomization/{ns}/web?fragment=1", timeout=30)
    assert r.status_code == 200 and "<html" not in r.text and 'id="app-title"' in r.text


# ------------------------------------------------------------------------------------------------ actions and auth
def _annotations(api: Any, path: str) -> dict[str, str]:
    return dict(((request_json(api, "GET", path) or {}).get("metadata") or {}).get("annotations") or {})


def test_an_action_without_a_login_is_refused_and_changes_nothing(dash: DashboardServer, ns: str, cluster: TestCluster) -> None:
    api = cluster.api_client()
    path = f"{KS}/namespaces/{ns}/kustomizations/web"
    s = requests.Session()
    page = s.get(f"{dash.url}/apps/Kustomization/{ns}/web", timeout=30)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert csrf and 'id="action-sync" data-test="action-sync" disabled' in page.text
    r = s.post(f"{dash.url}/apps/Kustomization/{ns}/web/sync", data={"csrf": csrf.group(1)}, allow_redirects=False, timeout=30)
    assert r.status_code == 401
    r = requests.post(f"{dash.url}/apps/Kustomization/{ns}/web/sync", headers={"Authorization": "Bearer wrong-token-0123456789"},
                      timeout=30)  # fmt: skip
    assert r.status_code == 401
    assert "reconcile.fluxcd.io/requestedAt" not in _annotations(api, path)


def test_a_wrong_token_does_not_log_in(dash: DashboardServer) -> None:
    s, _ = login(dash, "not-the-token-0123456789")
    assert "dashboard_session" not in s.cookies


def test_sync_now_sets_requested_at_and_records_who_did_it(dash: DashboardServer, ns: str, cluster: TestCluster) -> None:
    api = cluster.api_client()
    path = f"{KS}/namespaces/{ns}/kustomizations/web"
    s, csrf = login(dash)
    assert "dashboard_session" in s.cookies
    jar = {"dashboard_csrf": s.cookies["dashboard_csrf"]}
    raw = requests.post(f"{dash.url}/login", data={"csrf": csrf, "token": TOKEN}, cookies=jar, allow_redirects=False, timeout=30)
    assert raw.status_code == 303
    assert re.search(r"dashboard_session=[^;]+; Path=/; HttpOnly; SameSite=Strict", raw.headers["Set-Cookie"])
    r = s.post(f"{dash.url}/apps/Kustomization/{ns}/web/sync", data={"csrf": csrf}, allow_redirects=False, timeout=30)
    assert r.status_code == 303 and r.headers["Location"] == f"/apps/Kustomization/{ns}/web"
    assert _annotations(api, path).get("reconcile.fluxcd.io/requestedAt")
    wait_listed(dash, "sync requested by token (dashboard)", f"/apps/Kustomization/{ns}/web")
    timeline = wait_listed(dash, "SyncRequested", "/activity")
    assert "by token (dashboard)" in timeline


def test_a_post_without_the_csrf_token_or_from_another_origin_is_refused(
    dash: DashboardServer, ns: str, cluster: TestCluster
) -> None:
    api = cluster.api_client()
    path = f"{KS}/namespaces/{ns}/kustomizations/web"
    s, csrf = login(dash)
    for data, headers in (({}, {}), ({"csrf": "0" * 64}, {}), ({"csrf": csrf}, {"Origin": "https://evil.example"})):
        url = f"{dash.url}/apps/Kustomization/{ns}/web/suspend"
        r = s.post(url, data=data, headers=headers, allow_redirects=False, timeout=30)
        assert r.status_code == 403, (data, headers)
    assert not ((request_json(api, "GET", path) or {}).get("spec") or {}).get("suspend")


def test_suspend_and_resume_by_bearer_token(dash: DashboardServer, ns: str, cluster: TestCluster) -> None:
    api = cluster.api_client()
    request_json(api, "POST", f"{KS}/namespaces/{ns}/kustomizations", body=kustomization(ns, "pausable"))
    path = f"{KS}/namespaces/{ns}/kustomizations/pausable"
    wait_listed(dash, f"{ns}/pausable")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = requests.post(f"{dash.url}/apps/Kustomization/{ns}/pausable/suspend", headers=auth, timeout=30)
    assert r.status_code == 200 and r.json()["by"] == "token (dashboard API)"
    assert (request_json(api, "GET", path) or {})["spec"]["suspend"] is True
    until(lambda: 'data-value="true"' in requests.get(f"{dash.url}/apps/Kustomization/{ns}/pausable", timeout=30).text,
          what="suspended on the page")  # fmt: skip
    r = requests.post(f"{dash.url}/apps/Kustomization/{ns}/pausable/resume", headers=auth, timeout=30)
    assert r.status_code == 200
    assert (request_json(api, "GET", path) or {})["spec"]["suspend"] is False


def test_a_read_only_dashboard_refuses_every_action(cluster: TestCluster, ns: str, tmp_path: Path) -> None:
    server = start_dashboard(tmp_path, cluster.kubeconfig, read_only=True, extra=["--namespace", ns])
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = requests.post(f"{server.url}/apps/Kustomization/{ns}/web/sync", headers=auth, timeout=30)
        assert r.status_code in (401, 403)
        assert 'id="read-only"' in requests.get(server.url + "/apps", timeout=30).text
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ scale
def test_a_thousand_apps_render_paginated_and_whole(cluster: TestCluster, tmp_path: Path) -> None:
    api = cluster.api_client()
    install(api)
    name = f"k-{uuid.uuid4().hex[:8]}"
    request_json(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    from concurrent.futures import ThreadPoolExecutor

    def make(i: int) -> None:
        request_json(api, "POST", f"{KS}/namespaces/{name}/kustomizations", body=kustomization(name, f"app-{i:04d}"))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, range(1000)))
    server = start_dashboard(tmp_path, cluster.kubeconfig, extra=["--namespace", name])
    try:
        until(lambda: "1000 of 1000" in requests.get(server.url + "/apps", timeout=60).text, 60, "1,000 apps listed")
        first = requests.get(server.url + "/apps", timeout=60).text
        assert first.count('data-test="app-row"') == 100 and "page 1 of 10" in first
        whole = requests.get(server.url + "/apps?per=1000&sort=name&dir=desc", timeout=60).text
        assert whole.count('data-test="app-row"') == 1000
        assert whole.index("app-0999") < whole.index("app-0000")
        found = requests.get(server.url + "/apps?q=app-0421", timeout=60).text
        assert found.count('data-test="app-row"') == 1 and "1 of 1000" in found
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------ the command
@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("", "no token in it"),
        ("short\n", "tok:1: the token has 5 characters; at least 12 are needed"),
        # the name is not counted: 16 characters on the line, 11 in the token
        ("ops 0123456789a\n", "tok:1: the token (after the name) has 11 characters; at least 12 are needed"),
        ("a b c\n", "give TOKEN or NAME TOKEN"),
    ],
    ids=["empty", "short", "short-after-name", "three-fields"],
)
def test_a_bad_token_file_is_a_usage_error_in_one_line(tmp_path: Path, content: str, why: str) -> None:
    f = tmp_path / "tok"
    f.write_text(content)
    exe = str(Path(sys.executable).parent / "dashboard")
    argv = [exe, "serve", "--token-file", str(f), "--listen", "127.0.0.1:0"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert why in p.stderr and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_the_readme_states_the_token_length_the_code_enforces() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("**Auth and safety**") :][:600]
    assert f"the token at least {MIN_TOKEN_CHARS} characters, NAME not counted" in section
    assert parse_tokens("x" * MIN_TOKEN_CHARS, "t") and _refuses("x" * (MIN_TOKEN_CHARS - 1))


def _refuses(text: str) -> bool:
    try:
        parse_tokens(text, "t")
    except TokenError:
        return True
    return False


def test_the_kubernetes_api_errors_of_an_action_are_a_clear_page(dash: DashboardServer, ns: str, cluster: TestCluster) -> None:
    s, csrf = login(dash)
    r = s.post(f"{dash.url}/apps/Kustomization/{ns}/never-there/sync", data={"csrf": csrf}, allow_redirects=False, timeout=30)
    assert r.status_code == 404 and "Traceback" not in r.text


def test_the_actions_record_shows_in_events_of_the_app_namespace(dash: DashboardServer, ns: str, cluster: TestCluster) -> None:
    api = cluster.api_client()
    s, csrf = login(dash)
    s.post(f"{dash.url}/apps/App/{ns}/native/sync", data={"csrf": csrf}, allow_redirects=False, timeout=30)
    events = (request_json(api, "GET", f"/api/v1/namespaces/{ns}/events") or {}).get("items") or []
    mine = [e for e in events if e.get("reason") == "SyncRequested" and e["involvedObject"]["name"] == "native"]
    assert mine and mine[0]["metadata"]["annotations"]["dashboard.imagebot.dev/actor"] == "token (dashboard)"
    assert mine[0]["source"]["component"] == "dashboard"


def test_an_argo_cd_application_cannot_be_suspended_from_the_dashboard(
    dash: DashboardServer, ns: str, cluster: TestCluster
) -> None:
    api = cluster.api_client()
    try:
        request_json(api, "POST", f"{ARGO}/namespaces/{ns}/applications", body={
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "argo", "namespace": ns},
            "spec": {"project": "default",
                     "source": {"repoURL": "https://git.example/a.git", "path": "p", "targetRevision": "HEAD"},
                     "destination": {"server": "https://kubernetes.default.svc", "namespace": ns}}})  # fmt: skip
    except ApiException as exc:
        pytest.fail(f"Application not created: {exc.body}")
    wait_listed(dash, f"{ns}/argo")
    r = requests.post(f"{dash.url}/apps/Application/{ns}/argo/suspend", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code == 400 and "syncPolicy.automated" in r.text
    r = requests.post(f"{dash.url}/apps/Application/{ns}/argo/sync", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code == 200
    assert _annotations(api, f"{ARGO}/namespaces/{ns}/applications/argo").get("reconcile.fluxcd.io/requestedAt")


def test_the_page_says_stale_when_a_controller_stops_renewing_its_lease(
    dash: DashboardServer, ns: str, cluster: TestCluster
) -> None:
    api = cluster.api_client()
    path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"

    def now(offset: float = 0.0) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + offset))

    request_json(api, "POST", path, body={
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "reconciler-controller-main"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15, "renewTime": now()}})  # fmt: skip
    page = wait_listed(dash, "reconciler-controller-main (pod-a): renewed")
    assert 'data-stale="false"' in page, page[page.index('id="stale"'):page.index("</div>", page.index('id="stale"'))]
    request_json(api, "PATCH", f"{path}/reconciler-controller-main", body={"spec": {"renewTime": now(-120)}},
                 content_type="application/merge-patch+json")  # fmt: skip
    page = wait_listed(dash, 'data-stale="true"')
    assert "NOT RUNNING?" in page and "STALE: a controller has not renewed its lease" in page
    sock = _sse(dash.url, "apps")
    try:
        assert b'"stale":true' in _read_until(sock, b'"stale":true')  # an open page learns it on connect
    finally:
        sock.close()
    request_json(api, "DELETE", f"{path}/reconciler-controller-main")
    wait_listed(dash, 'data-stale="false"')


def test_a_page_and_its_fragment_carry_the_same_digest_until_something_visible_changes(
    dash: DashboardServer, ns: str, cluster: TestCluster
) -> None:
    url = f"{dash.url}/apps/Kustomization/{ns}/web"
    browser = requests.Session()  # one browser: its forms carry one CSRF token
    page = browser.get(url, timeout=30)
    digest = page.headers["X-Live-Digest"]
    assert f'data-digest="{digest}"' in page.text
    assert browser.get(url + "?fragment=1", timeout=30).headers["X-Live-Digest"] == digest
    set_status(cluster.api_client(), f"{KS}/namespaces/{ns}/kustomizations/web", {"health": "Progressing"})
    try:
        until(lambda: browser.get(url + "?fragment=1", timeout=30).headers["X-Live-Digest"] != digest, what="a new digest")
    finally:
        set_status(cluster.api_client(), f"{KS}/namespaces/{ns}/kustomizations/web", {"health": "Healthy"})


def test_the_images_page_shows_what_the_imagebot_controller_wrote_on_flux_image_objects(
    dash: DashboardServer, ns: str, cluster: TestCluster
) -> None:
    api = cluster.api_client()
    base = f"/apis/image.toolkit.fluxcd.io/v1/namespaces/{ns}"
    request_json(api, "POST", f"{base}/imagerepositories", body={
        "apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository", "metadata": {"name": "app"},
        "spec": {"image": "registry.example/team/app", "interval": "5m"}})  # fmt: skip
    set_status(api, f"{base}/imagerepositories/app", {
        "canonicalImageName": "registry.example/team/app",
        "lastScanResult": {"tagCount": 3, "scanTime": "2026-11-29T08:00:00Z", "latestTags": ["1.1.0", "1.0.0"]}})  # fmt: skip
    request_json(api, "POST", f"{base}/imagepolicies", body={
        "apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy", "metadata": {"name": "app-prod"},
        "spec": {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": "^1"}}}})  # fmt: skip
    set_status(api, f"{base}/imagepolicies/app-prod", {
        "latestRef": {"name": "registry.example/team/app", "tag": "1.1.0"},
        "observedPreviousRef": {"name": "registry.example/team/app", "tag": "1.0.0"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "lastTransitionTime": "2026-11-29T08:00:00Z",
                        "message": "Latest image tag for ^1 resolved to 1.1.0"}]})  # fmt: skip
    def row_of(page: str) -> str:
        row = page[page.index(f'data-key="{ns}/app-prod"') :]
        return row[: row.index("</tr>")]

    # the policy and its repository come through two watches: the row may be listed before the repository's status
    wait_listed(dash, f'data-key="{ns}/app-prod"', "/images")

    def scanned() -> str:
        row = row_of(requests.get(dash.url + "/images", timeout=30).text)
        return row if "3 tag(s)" in row else ""

    row = str(until(scanned, what="the repository's scan on the policy's row"))
    assert "semver ^1" in row and "registry.example/team/app:1.1.0" in row and "was <code>registry.example/team/app:1.0.0" in row
    assert "✓ Ready" in row and "3 tag(s)" in row and "newest: 1.1.0, 1.0.0" in row
