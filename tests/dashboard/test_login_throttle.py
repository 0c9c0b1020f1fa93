"""Online token guessing against `dashboard serve` (a process of its own, so its lock-outs touch no other test):
wrong tokens from one address, by the login form or as a Bearer token, lock that address out for longer each time
(429 with Retry-After, the token not checked); a right token resets it. The throttle's arithmetic on a fake clock."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dashboard.throttle import FORGET_SECONDS, LOCK_AFTER, MAX_CLIENTS, MAX_LOCK_SECONDS, Throttle, Throttled, client_key
from tests.dashboard.test_server import until
from tests.fixtures.browser import DashboardServer, start_dashboard
from tests.fixtures.cluster import TestCluster

TOKEN = "thr0ttle-t0ken-0123456789"
WRONG = "wrong-t0ken-0123456789"


@pytest.fixture
def dash(cluster: TestCluster, tmp_path: Path) -> Iterator[DashboardServer]:
    server = start_dashboard(tmp_path, cluster.kubeconfig, token=TOKEN)
    try:
        yield server
    finally:
        server.stop()


def login(dash: DashboardServer, token: str) -> requests.Response:
    s = requests.Session()
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', s.get(f"{dash.url}/login", timeout=30).text)
    assert csrf
    return s.post(f"{dash.url}/login", data={"csrf": csrf.group(1), "token": token, "next": "/apps"}, allow_redirects=False,
                  timeout=30)  # fmt: skip


@pytest.mark.cluster
def test_wrong_logins_lock_the_address_out_with_retry_after_and_a_right_one_resets_it(dash: DashboardServer) -> None:
    for _ in range(LOCK_AFTER):
        assert login(dash, WRONG).status_code == 401
    locked = login(dash, TOKEN)  # the right token, but not checked while locked out
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
    assert "too many wrong tokens" in locked.text and "Traceback" not in locked.text
    assert "dashboard_session" not in locked.cookies
    assert requests.get(f"{dash.url}/apps", timeout=30).status_code == 200, "reading needs no login: never locked"
    ok = until(lambda: (r := login(dash, TOKEN)).status_code == 303 and r, timeout=60, what="the lock-out to end")
    assert "dashboard_session" in ok.cookies
    for _ in range(LOCK_AFTER):  # the success forgot the failures: the count starts again
        assert login(dash, WRONG).status_code == 401
    assert login(dash, WRONG).status_code == 429


@pytest.mark.cluster
def test_wrong_bearer_tokens_count_as_guesses_too(dash: DashboardServer) -> None:
    action = f"{dash.url}/apps/Kustomization/nowhere/web/sync"
    for _ in range(LOCK_AFTER):
        assert requests.post(action, headers={"Authorization": f"Bearer {WRONG}"}, timeout=30).status_code == 401
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Bearer {WRONG}"}):
        r = requests.post(action, headers=headers, timeout=30)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1, (headers, r.status_code)
    r = requests.get(f"{dash.url}/apps", headers={"Authorization": f"Bearer {WRONG}"}, timeout=30)
    assert r.status_code == 429, "a page's Bearer token is checked, so it is a guess too"
    assert login(dash, TOKEN).status_code == 429, "one address, one count: the form and Bearer alike"


def test_the_lock_out_doubles_after_the_free_failures_up_to_its_cap() -> None:
    now = [1000.0]
    t = Throttle(clock=lambda: now[0])
    locks = []
    for _ in range(LOCK_AFTER + 14):
        t.failed("192.0.2.7")
        try:
            t.check("192.0.2.7")
            locks.append(0)
        except Throttled as exc:
            locks.append(exc.retry_after)
            now[0] += exc.retry_after  # wait it out, then guess again
    assert locks[: LOCK_AFTER - 1] == [0] * (LOCK_AFTER - 1)
    assert locks[LOCK_AFTER - 1 : LOCK_AFTER + 4] == [1, 2, 4, 8, 16]
    assert max(locks) == MAX_LOCK_SECONDS
    t.check("192.0.2.8")  # another address is not affected
    t.succeeded("192.0.2.7")
    t.check("192.0.2.7")


def test_failures_are_forgotten_an_hour_after_the_last() -> None:
    now = [0.0]
    t = Throttle(clock=lambda: now[0])
    for _ in range(LOCK_AFTER - 1):
        t.failed("192.0.2.7")
    now[0] += FORGET_SECONDS + 1
    t.failed("192.0.2.7")
    t.check("192.0.2.7")  # one failure, not five


def test_an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_as_its_ipv4() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("fe80::1%eth0") == "fe80::/64"


def test_the_clients_remembered_are_bounded() -> None:
    t = Throttle(clock=lambda: 0.0)
    for n in range(MAX_CLIENTS + 50):
        t.failed(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    assert len(t._records) == MAX_CLIENTS


def test_the_readme_states_the_numbers_the_throttle_uses() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = " ".join(readme[readme.index("**Auth and safety**") :][:2000].split())  # line breaks as spaces
    ordinal = {5: "5th"}[LOCK_AFTER]
    assert f"the {ordinal} wrong token in a row" in section
    assert f"(up to {MAX_LOCK_SECONDS / 60:g} min)" in section and "429 with `Retry-After`" in section
    assert FORGET_SECONDS == 3600 and "forgotten an hour after the last wrong one" in section


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted_and_nobody_else_is_believed() -> None:
    from ipaddress import ip_network

    from dashboard.throttle import client_address

    proxies = (ip_network("10.0.0.0/8"), ip_network("fd00::/8"))
    assert client_address("10.1.1.1", "198.51.100.7", proxies) == "198.51.100.7"
    assert client_address("10.1.1.1", "203.0.113.9, 198.51.100.7, 10.2.2.2", proxies) == "198.51.100.7", "last untrusted hop"
    assert client_address("10.1.1.1", "", proxies) == "10.1.1.1"
    assert client_address("10.1.1.1", "10.3.3.3, 10.2.2.2", proxies) == "10.1.1.1", "only proxies: the peer"
    assert client_address("10.1.1.1", "not-an-ip, 198.51.100.7", proxies) == "198.51.100.7"
    assert client_address("10.1.1.1", "198.51.100.7, bogus", proxies) == "10.1.1.1", "a hop we cannot read stops the walk"
    assert client_address("192.0.2.1", "198.51.100.7", proxies) == "192.0.2.1", "an untrusted peer's header is ignored"
    assert client_address("::ffff:10.1.1.1", "198.51.100.7", proxies) == "198.51.100.7"
    assert client_address("10.1.1.1", "198.51.100.7", ()) == "10.1.1.1"


@pytest.mark.cluster
def test_a_guesser_behind_the_ingress_locks_out_itself_not_everyone(cluster: TestCluster, tmp_path: Path) -> None:
    server = start_dashboard(tmp_path, cluster.kubeconfig, token=TOKEN, extra=["--trusted-proxy", "127.0.0.0/8"])
    try:

        def login_as(client: str, token: str) -> int:
            s = requests.Session()
            s.headers["X-Forwarded-For"] = client
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', s.get(f"{server.url}/login", timeout=30).text)
            assert csrf
            r = s.post(f"{server.url}/login", data={"csrf": csrf.group(1), "token": token, "next": "/apps"},
                       allow_redirects=False, timeout=30)  # fmt: skip
            return r.status_code

        for _ in range(LOCK_AFTER):
            assert login_as("198.51.100.7", WRONG) == 401
        assert login_as("198.51.100.7", TOKEN) == 429
        assert login_as("198.51.100.8", TOKEN) == 303, "another client behind the same ingress still logs in"
    finally:
        server.stop()
