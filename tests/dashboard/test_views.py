"""The dashboard's pure parts: rows from each dialect's status, filters and sort, the Git-vs-live diff (Secret values
never), the activity timeline's links, and the event stream broadcaster (slow readers dropped, a cap)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dashboard import views as V
from dashboard.auth import Auth, TokenError, parse_tokens
from dashboard.sse import Broadcaster

SECRET = "s3cr3t-value-never-shown"


def test_a_kustomization_row_reads_flux_status_and_its_gitrepository() -> None:
    obj = {"kind": "Kustomization", "metadata": {"namespace": "ns", "name": "web"},
           "spec": {"path": "./p", "suspend": True, "sourceRef": {"kind": "GitRepository", "name": "cfg"}},
           "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "BuildFailed", "message": "boom",
                                      "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                      "lastAppliedRevision": "main@sha1:abc", "health": "Degraded", "driftCount": 3}}  # fmt: skip
    repos = {("ns", "cfg"): {"spec": {"url": "https://git.example/x.git", "ref": {"tag": "v1"}}}}
    r = V.app_row(obj, repos)
    assert (r.source, r.ref, r.sync, r.ready, r.health, r.drift, r.suspended) == (
        "https://git.example/x.git", "tag v1", "BuildFailed", "False", "Degraded", 3, True)  # fmt: skip
    assert r.key == "Kustomization/ns/web" and r.message == "boom"


def test_an_argo_cd_application_row_counts_out_of_sync_resources_and_shows_its_condition() -> None:
    obj = {"kind": "Application", "metadata": {"namespace": "argocd", "name": "a"},
           "spec": {"source": {"repoURL": "https://g/x.git", "targetRevision": "HEAD", "path": "p"}},
           "status": {"sync": {"status": "OutOfSync", "revision": "abc"}, "health": {"status": "Healthy"},
                      "resources": [{"status": "OutOfSync"}, {"status": "Synced"}],
                      "conditions": [{"type": "ComparisonError", "message": "no repo"}]}}  # fmt: skip
    r = V.app_row(obj, {})
    assert (r.sync, r.ready, r.drift, r.message, r.revision) == ("ComparisonError", "False", 1, "no repo", "abc")


def _row(name: str, ready: str = "True", drift: int = 0, health: str = "Healthy", kind: str = "App") -> V.AppRow:
    return V.AppRow(kind, "ns", name, "https://g", "main", "p", "rev", "Synced" if ready == "True" else "Failed", ready,
                    health, drift, "2026-01-01T00:00:00Z", f"message of {name}", False, "t")  # fmt: skip


@pytest.mark.parametrize(
    ("query", "names"),
    [
        (V.Query(), ["a", "b", "c", "d"]),
        (V.Query(q="message of c"), ["c"]),
        (V.Query(sync="outofsync"), ["b"]),
        (V.Query(drift=True, sort=V.Sort.DRIFT, desc=True), ["d", "c"]),
        (V.Query(health="degraded"), ["c"]),
        (V.Query(sort=V.Sort.HEALTH), ["c", "a", "b", "d"]),
    ],
    ids=["all", "search", "not-ready", "drift-desc", "health", "sort-health"],
)
def test_filters_search_and_sort(query: V.Query, names: list[str]) -> None:
    rows = [_row("b", ready="False"), _row("d", drift=5), _row("a"), _row("c", drift=1, health="Degraded")]
    if query.sort is V.Sort.HEALTH:
        rows = [_row("b"), _row("d"), _row("a"), _row("c", health="Degraded")]
    page = V.app_page(rows, query)
    assert [r.name for r in page.rows] == names and page.all == 4


def test_pages_hold_per_rows_and_the_page_number_is_clamped() -> None:
    rows = [_row(f"app-{i:03d}") for i in range(250)]
    page = V.app_page(rows, V.Query(per=100, page=9))
    assert (page.page, page.pages, len(page.rows), page.rows[0].name) == (3, 3, 50, "app-200")


def test_the_diff_sets_drifted_fields_back_to_git_and_a_secret_diff_shows_no_value() -> None:
    live = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "ns",
            "managedFields": [{"manager": "kubectl"}], "annotations": {V.LAST_APPLIED: "{...}"}},
            "spec": {"replicas": 4, "paused": True}, "status": {"replicas": 4}}  # fmt: skip
    items = [{"field": "/spec/replicas", "change": "changed", "git": 1, "live": 4},
             {"field": "/spec/paused", "change": "added", "live": True}]  # fmt: skip
    diff = V.object_diff(live, items, "apps", "Deployment")
    assert '-    "replicas": 4' in diff and '+    "replicas": 1' in diff and '-    "paused": true' in diff
    assert "managedFields" not in diff and V.LAST_APPLIED not in diff and '"status"' not in diff
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"},
              "data": {"password": SECRET, "user": "YWRtaW4="}}  # fmt: skip
    item = {"field": "/data/password", "change": "changed", "git": SECRET + "x", "live": SECRET}
    diff = V.object_diff(secret, [item], "", "Secret")
    assert SECRET not in diff and "YWRtaW4=" not in diff
    record = {"group": "", "kind": "Secret", "name": "s", "field": "/data/password", "git": SECRET, "live": SECRET}
    drift = V.drift_items([record], "corrected")
    assert drift[0].git == drift[0].live == V.REDACTED


def test_only_http_links_leave_the_dashboard() -> None:
    assert V.safe_link("javascript:alert(1)") == "" and V.safe_link("data:text/html,x") == ""
    assert V.safe_link("https://github.example/pr/1") == "https://github.example/pr/1"


def test_the_timeline_is_newest_first_and_names_who_acted() -> None:
    app = {"kind": "App", "metadata": {"namespace": "ns", "name": "web"}, "spec": {},
           "status": {"history": [{"revision": "r1", "finishedAt": "2026-01-01T00:00:01Z", "result": "ok"}]}}  # fmt: skip
    row = V.app_row(app, {})
    action = {"metadata": {"namespace": "ns", "annotations": {V.ACTOR_ANNOTATION: "alice (dashboard)"}},
              "involvedObject": {"kind": "App", "namespace": "ns", "name": "web"}, "reason": "SyncRequested",
              "message": "sync requested by alice (dashboard)", "source": {"component": "dashboard"},
              "lastTimestamp": "2026-01-01T00:00:05Z"}  # fmt: skip
    drift = {"metadata": {"namespace": "ns"}, "involvedObject": {"kind": "ConfigMap", "namespace": "ns",
             "name": f"reconciler-{row.tracking}"}, "reason": "DriftCorrected", "message": "kubectl /spec/replicas 1 → 4",
             "source": {"component": "reconciler"}, "lastTimestamp": "2026-01-01T00:00:03Z"}  # fmt: skip
    other = {**drift, "involvedObject": {"kind": "ConfigMap", "namespace": "ns", "name": "reconciler-someone-else"}}
    entries = V.activity([(app, row)], [drift, action, other], [])
    assert [(e.kind, e.actor) for e in entries] == [(V.Activity.ACTION, "alice (dashboard)"), (V.Activity.DRIFT, ""),
                                                    (V.Activity.SYNC, "")]  # fmt: skip
    assert all(e.href == "/apps/App/ns/web" for e in entries)


# ---------------------------------------------------------------------------------------------------- tokens
def test_tokens_name_their_holders_and_compare_whole() -> None:
    tokens = parse_tokens("# ops\nalice aaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbb\n", "f")
    auth = Auth(tokens)
    assert auth.check_token("aaaaaaaaaaaaaaaa") == "alice" and auth.check_token("bbbbbbbbbbbbbbbb") == "token"
    assert auth.check_token("aaaaaaaaaaaaaaa") is None and auth.check_token("") is None
    assert not Auth(tokens, read_only=True).writable
    with pytest.raises(TokenError, match="f:1: the token has 5 characters; at least 12"):
        parse_tokens("short", "f")


def test_csrf_tokens_are_bound_to_the_browser() -> None:
    auth = Auth({"aaaaaaaaaaaaaaaa": "x"})
    t = auth.csrf_for("browser-one-0123456789")
    assert auth.csrf_ok("browser-one-0123456789", t) and not auth.csrf_ok("browser-two-0123456789", t)
    assert not auth.csrf_ok("", auth.csrf_for(""))


# ---------------------------------------------------------------------------------------------------- streams
def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    return a, b


def _read(sock: socket.socket, needle: bytes, timeout: float = 10.0) -> bytes:
    buf = b""
    end = time.monotonic() + timeout
    while needle not in buf and time.monotonic() < end:
        sock.settimeout(max(end - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def test_a_stream_gets_the_messages_of_its_topics_only() -> None:
    b = Broadcaster(heartbeat=60)
    ours, theirs = _pair()
    try:
        assert b.add(ours, {"apps"})
        assert b"200 OK" in _read(theirs, b": open")
        b.publish("images", "changed", {})
        b.publish("apps", "row", {"key": "k", "html": "<tr>\n</tr>"})
        got = _read(theirs, b"\n\n", 10)
        assert got.startswith(b"event: row\ndata: ") and b"images" not in got
        assert json.loads(got.split(b"data: ", 1)[1]) == {"key": "k", "html": "<tr>\n</tr>"}  # one data line
    finally:
        b.stop()
        theirs.close()


def test_a_reader_that_falls_behind_is_dropped_and_a_full_broadcaster_refuses() -> None:
    b = Broadcaster(max_streams=2, max_buffer=64 * 1024, heartbeat=60)
    slow, slow_peer = _pair()
    fast, fast_peer = _pair()
    extra, extra_peer = _pair()
    try:
        assert b.add(slow, {"t"}) and b.add(fast, {"t"})
        assert not b.add(extra, {"t"})  # the caller answers 503
        _read(fast_peer, b": open")
        payload: dict[str, Any] = {"x": "y" * 4096}
        stop = threading.Event()

        def drain() -> None:
            fast_peer.settimeout(0.2)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    fast_peer.recv(1 << 20)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        for _ in range(400):  # ~1.6 MB: the slow peer never reads, the fast one keeps up
            b.publish("t", "changed", payload)
            time.sleep(0.002)
        deadline = time.monotonic() + 10
        while b.count() != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.count() == 1  # the slow one is gone, the fast one stays
        stop.set()
        reader.join(5)
    finally:
        b.stop()
        for s in (slow_peer, fast_peer, extra, extra_peer):
            s.close()


# ---------------------------------------------------------------------------------------------------- imagebot's state
@pytest.mark.parametrize("layout", ["tagsets", "tags"], ids=["json-per-repository", "row-per-tag"])
def test_tags_seen_are_read_from_either_scanner_layout_and_the_file_is_never_written(tmp_path: Path, layout: str) -> None:
    import sqlite3

    from dashboard.images import ImageState
    from imagebot.runtime.state import RuntimeState

    state = tmp_path / "state.db"
    RuntimeState(state).record("app", "dev", reason="ok", pending=None, now=100.0, tag="1.0.0")
    c = sqlite3.connect(state)
    if layout == "tagsets":
        c.execute("CREATE TABLE tagsets (repository TEXT PRIMARY KEY, first_seen TEXT NOT NULL)")
        c.execute("INSERT INTO tagsets VALUES (?, ?)", ("r", json.dumps({"1.0.0": 50.0, "1.1.0": 90.0})))
    else:
        c.execute("CREATE TABLE tags (repository TEXT, tag TEXT, first_seen REAL)")
        c.executemany("INSERT INTO tags VALUES (?, ?, ?)", [("r", "1.0.0", 50.0), ("r", "1.1.0", 90.0)])
    c.commit()
    c.close()
    before = state.stat().st_mtime_ns
    from dashboard import images

    with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as ro:
        seen = images._tags_seen(ro)
    assert [(t.tag, t.first_seen) for t in seen["r"]] == [("1.0.0", 50.0), ("1.1.0", 90.0)]
    rows = ImageState(state).rows(200.0)
    assert [(r.image, r.environment, r.tag) for r in rows] == [("app", "dev", "1.0.0")]
    assert state.stat().st_mtime_ns == before


# ---------------------------------------------------------------------------------------------------- publishing
class _StubView:
    """What the publisher reads of the cluster view: apps by key (no informers, no server)."""

    on_change: Any = None
    events: tuple[Any, ...] = ()
    repos: tuple[Any, ...] = ()

    def app(self, kind: str, ns: str, name: str) -> dict[str, Any]:
        return {"kind": kind, "metadata": {"namespace": ns, "name": name}, "spec": {}, "status": {}}


@pytest.mark.parametrize(("changed", "rows", "reloads"), [(3, 3, 0), (60, 0, 1)], ids=["a-few-rows", "a-burst"])
def test_a_few_changed_apps_are_pushed_as_rows_and_a_burst_as_one_reload(changed: int, rows: int, reloads: int) -> None:
    from dashboard.server import Dashboard

    b = Broadcaster(heartbeat=60)
    ours, theirs = _pair()
    d = Dashboard(_StubView(), None, Auth({}), b)  # type: ignore[arg-type]
    try:
        assert b.add(ours, {"apps"})
        _read(theirs, b": open")
        d._publish({("app", f"App/ns/a{i}"): True for i in range(changed)})
        b.publish("apps", "end", {})
        got = _read(theirs, b"event: end")
        assert (got.count(b"event: row"), got.count(b"event: changed")) == (rows, reloads)
        assert len(d._tracking) == changed  # each app's objects and Events find it, burst or not
    finally:
        b.stop()
        theirs.close()
