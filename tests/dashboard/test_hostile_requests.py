"""`dashboard serve` under requests nobody's page sends: a forged CSRF token with a non-ASCII character, event streams
asking for thousands of topics, very long query strings — a clear 4xx each, never a 500 or unbounded memory."""

from __future__ import annotations

import socket
from urllib.parse import quote

import pytest
import requests

from tests.dashboard import test_server as base
from tests.fixtures.browser import DashboardServer

pytestmark = [pytest.mark.cluster]
dash, ns, login = base.dash, base.ns, base.login  # the server and namespace of test_server's tests


@pytest.mark.parametrize("forged", ["é", "\u2603" * 64, "0" * 63 + "é"], ids=["one_accent", "snowmen", "hex_then_accent"])
def test_a_forged_csrf_token_with_a_non_ascii_character_is_a_403_not_a_500(dash: DashboardServer, forged: str) -> None:
    s, _ = login(dash)
    for path in ("/login", "/logout", "/apps/Kustomization/x/web/sync"):
        r = s.post(dash.url + path, data={"csrf": forged, "token": "x"}, allow_redirects=False, timeout=30)
        assert r.status_code == 403, (path, r.status_code, r.text[:300])
        assert "CSRF" in r.text


def _stream_status(url: str, query: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    try:
        sock.sendall(f"GET /events?{query} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        return int(head.split(b" ", 2)[1]), head
    finally:
        sock.close()


@pytest.mark.parametrize(
    "topics",
    [" ".join(f"t{i}" for i in range(3000)), "status apps app:Kustomization/a/b " + "x" * 299, "app:Secret/ns/creds"],
    ids=["thousands_of_topics", "an_unknown_long_topic", "a_kind_it_does_not_show"],
)
def test_an_event_stream_asking_for_topics_no_page_asks_for_is_refused(dash: DashboardServer, topics: str) -> None:
    code, head = _stream_status(dash.url, "topics=" + quote(topics))
    assert code == 400, head[:300]


def test_the_topics_the_pages_ask_for_still_stream(dash: DashboardServer, ns: str) -> None:
    for topics in ("status", "status apps", "status images", "status activity", f"status app:Kustomization/{ns}/web"):
        code, head = _stream_status(dash.url, "topics=" + quote(topics))
        assert code == 200 and b"text/event-stream" in head, (topics, head[:300])


def test_a_very_long_query_string_is_answered_not_a_traceback(dash: DashboardServer) -> None:
    for query in ("q=" + "a" * 30_000, "&".join(["sort=name"] * 3000), "page=" + "9" * 5000, "per=-1&page=-5"):
        r = requests.get(f"{dash.url}/apps?{query}", timeout=30)
        assert r.status_code == 200, (query[:40], r.status_code)
    r = requests.get(f"{dash.url}/apps?q=" + "a" * 40_000, timeout=30)
    assert r.status_code == 431, r.status_code  # over the 32 KiB request head
