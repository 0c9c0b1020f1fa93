"""The Images page from imagebot's own state file (written here by imagebot's own classes) and config: current tag
and digest, the newest tag the policy allows and why, every tag it did not keep and by what, a pending promotion
with its soak end, hold, last commit and PR, tags seen; the state opened read-only; a state change pushed live."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from imagebot.registry.state import ScanState
from imagebot.runtime.discovery import row_image
from imagebot.runtime.state import RuntimeState
from tests.dashboard.test_server import _read_until, _sse, until
from tests.fixtures.browser import DashboardServer, start_dashboard
from tests.fixtures.cluster import TestCluster

pytestmark = [pytest.mark.cluster]

REPO = "registry.example:5000/team/app"
FOUND = "registry.example:5000/team/found"  # a repository only `discover:` knows (no images: entry)


def config(state: Path) -> str:
    return f"""apiVersion: imagebot.dev/v1
kind: Config
stateFile: {state}
registries:
  - host: registry.example:5000
git:
  - name: config
    url: https://git.example/config.git
    branch: main
images:
  - name: app
    repository: {REPO}
    environments:
      dev:
        policy: {{semver: ">=1.0.0-0"}}
        target: {{git: config, path: dev}}
      prod:
        promote: {{from: dev, soak: 24h}}
        target: {{git: config, path: prod}}
      frozen:
        policy: {{semver: "^1"}}
        hold: true
        target: {{git: config, path: frozen}}
"""


@pytest.fixture
def dash(cluster: TestCluster, tmp_path: Path) -> Iterator[tuple[DashboardServer, Path]]:
    state = tmp_path / "state.db"
    now = time.time()
    scan = ScanState(state)
    scan.record_tags(REPO, ["1.0.0", "1.1.0", "1.2.0-rc.1", "latest", "sha256-" + "a" * 64 + ".sig"], now - 7200)
    rt = RuntimeState(state)
    rt.record("app", "dev", reason="committed: 1.2.0-rc.1", pending=None, now=now - 3600, tag="1.2.0-rc.1",
              digest="sha256:" + "b" * 64, commit="c0ffee" * 6 + "abcd")  # fmt: skip
    rt.record("app", "prod", reason="1.2.0-rc.1 soaking in dev", pending="1.2.0-rc.1", now=now, tag="1.0.0",
              digest="sha256:" + "c" * 64, pr="https://github.example/acme/config/pull/7")  # fmt: skip
    scan.record_tags(FOUND, ["2.0.0", "2.1.0"], now - 600)
    rt.record(row_image(FOUND), "config:envs/staging", reason="up to date within minor", pending=None, now=now, tag="2.1.0")
    cfg = tmp_path / "imagebot.yaml"
    cfg.write_text(config(state))
    server = start_dashboard(tmp_path / "dash", cluster.kubeconfig, extra=["--imagebot-config", str(cfg), "--namespace", "none"])
    try:
        yield server, state
    finally:
        server.stop()


def row(page: str, key: str) -> str:
    start = page.index(f'data-key="{key}"')
    return page[start : page.index("</tr>", start)]


def test_each_image_environment_shows_current_newest_and_why_pending_with_soak_hold_and_links(
    dash: tuple[DashboardServer, Path],
) -> None:
    server, _ = dash
    page = requests.get(f"{server.url}/images", timeout=30).text
    dev = row(page, "app/dev")
    assert "<code>1.2.0-rc.1</code>" in dev and "sha256:bbbbbbbbbbbb" in dev and "c0ffeec0ffee" in dev
    assert "ranks highest of 3 admitted tags under semver" in dev  # the policy's own sentence for its choice
    assert "2 tag(s) not kept" in dev
    assert "<code>latest</code> invalid: not strict semver" in dev  # every tag not kept, with what refused it
    assert ".sig</code> excluded: excluded by" in dev  # the default cosign exclusion
    assert "5 tag(s) seen" in dev
    prod = row(page, "app/prod")
    assert "<code>1.0.0</code>" in prod and "promoted from dev after 24h soak" in prod
    assert 'data-test="soak"' in prod and "soak ends" in prod  # dev's since + 24 h
    assert 'href="https://github.example/acme/config/pull/7"' in prod and 'rel="noopener noreferrer"' in prod
    frozen = row(page, "app/frozen")
    assert 'data-value="true"' in frozen and "on hold" in frozen and "not yet run" in frozen


def test_a_discovered_reference_shows_its_repository_and_the_tags_seen(dash: tuple[DashboardServer, Path]) -> None:
    server, _ = dash
    found = row(requests.get(f"{server.url}/images", timeout=30).text, f"discover:{FOUND}/config:envs/staging")
    assert f'<span class="muted wrap">{FOUND}</span>' in found
    assert "<code>2.1.0</code>" in found and "up to date within minor" in found and "2 tag(s) seen" in found


def test_the_state_file_is_never_written_and_a_change_by_imagebot_reaches_the_open_page(
    dash: tuple[DashboardServer, Path],
) -> None:
    server, state = dash
    before = state.stat().st_mtime_ns
    requests.get(f"{server.url}/images", timeout=30)
    requests.get(f"{server.url}/activity", timeout=30)
    assert state.stat().st_mtime_ns == before
    sock = _sse(server.url, "images")
    try:
        _read_until(sock, b": open")
        RuntimeState(state).record("app", "dev", reason="committed: 1.1.0", pending=None, now=time.time(), tag="1.1.0")
        _read_until(sock, b"event: changed")
    finally:
        sock.close()
    until(lambda: "committed: 1.1.0" in requests.get(f"{server.url}/images", timeout=30).text, what="the new state")


def test_without_a_state_file_the_page_says_so(cluster: TestCluster, tmp_path: Path) -> None:
    server = start_dashboard(tmp_path, cluster.kubeconfig, state=tmp_path / "missing.db", extra=["--namespace", "none"])
    try:
        page = requests.get(f"{server.url}/images", timeout=30).text
        assert 'id="images-problem"' in page and "no such file" in page
    finally:
        server.stop()


def test_hold_release_and_approve_need_the_token_and_csrf_write_imagebots_state_and_show_who(
    dash: tuple[DashboardServer, Path],
) -> None:
    from tests.dashboard.test_server import TOKEN, login

    server, state = dash
    base = f"{server.url}/images/app"
    anonymous = requests.Session()
    page = anonymous.get(f"{server.url}/images", timeout=30).text
    assert 'data-test="action-hold" disabled' in row(page, "app/dev"), "no login: the buttons are disabled"
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert anonymous.post(f"{base}/dev/hold", data={"csrf": csrf}, allow_redirects=False, timeout=30).status_code == 401
    wrong = {"Authorization": "Bearer wrong-token-0123456789"}
    assert requests.post(f"{base}/prod/approve", headers=wrong, timeout=30).status_code == 401
    s, csrf = login(server)
    for data in ({}, {"csrf": "0" * 64}):  # logged in, but no or a wrong CSRF token
        assert s.post(f"{base}/dev/hold", data=data, allow_redirects=False, timeout=30).status_code == 403
    assert RuntimeState(state).overrides("app") == {}, "nothing refused was written"

    r = s.post(f"{base}/dev/hold", data={"csrf": csrf, "reason": "incident 42"}, allow_redirects=False, timeout=30)
    assert r.status_code == 303 and r.headers["Location"] == "/images"
    hold = RuntimeState(state).overrides("app")["dev"].hold
    assert hold is not None and (hold.who, hold.reason) == ("token (dashboard)", "incident 42")
    dev = row(s.get(f"{server.url}/images", timeout=30).text, "app/dev")
    assert "on hold by token (dashboard)" in dev and "incident 42" in dev and 'data-test="action-release"' in dev
    assert s.post(f"{base}/dev/release", data={"csrf": csrf}, allow_redirects=False, timeout=30).status_code == 303
    assert RuntimeState(state).overrides("app") == {}

    assert 'data-test="action-approve"' in row(s.get(f"{server.url}/images", timeout=30).text, "app/prod")
    r = requests.post(f"{base}/prod/approve", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code == 200 and r.json()["by"] == "token (dashboard API)", r.text
    approval = RuntimeState(state).overrides("app")["prod"].approval
    assert approval is not None and (approval.tag, approval.who) == ("1.2.0-rc.1", "token (dashboard API)")
    assert "1.2.0-rc.1 approved by token (dashboard API)" in row(s.get(f"{server.url}/images", timeout=30).text, "app/prod")

    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.post(f"{base}/dev/approve", headers=bearer, timeout=30).status_code == 400, "dev promotes from nothing"
    assert requests.post(f"{server.url}/images/nope/dev/hold", headers=bearer, timeout=30).status_code == 404
    timeline = s.get(f"{server.url}/activity", timeout=30).text
    for line in ("app dev: on hold by token (dashboard)", "app dev: released by token (dashboard)",
                 "app prod: 1.2.0-rc.1 approved early by token (dashboard API)"):  # fmt: skip
        assert line in timeline, timeline
