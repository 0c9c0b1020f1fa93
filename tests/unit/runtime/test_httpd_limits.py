"""Both webhook receivers under hostile load, on loopback: half-open connections are closed after the
read timeout while valid webhooks still get through, a burst of concurrent webhooks is all accepted
(a real backlog and a bounded pool), oversized heads are refused, and a signed body of the wrong JSON
shape is a 400 — never a dropped connection or a traceback."""

from __future__ import annotations

import http.client
import json
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest

from gitopskit import httpd
from gitopskit.webhookauth import sign

SECRET = "s3cret"
BODY = b'{"image": "ghcr.io/acme/app", "tag": "1.2.3"}'
FAST = httpd.Limits(read_timeout=1.0)


def _imagebot(limits: httpd.Limits) -> Any:
    from imagebot.runtime.serve import Service

    runner = SimpleNamespace(cfg=SimpleNamespace(image_for=lambda repo: [repo]), metrics=None)
    service = Service(runner, SECRET, debounce=60)  # type: ignore[arg-type]
    return httpd.start("127.0.0.1:0", service.handler(), limits)


def _reconciler(limits: httpd.Limits) -> Any:
    from reconciler.cli import _webhook_server
    from reconciler.engine import Metrics

    return _webhook_server("127.0.0.1:0", SECRET, threading.Event(), SimpleNamespace(metrics=Metrics()), limits)  # type: ignore[arg-type]


RECEIVERS = pytest.mark.parametrize("receiver", [_imagebot, _reconciler], ids=["imagebot-serve", "reconciler-run"])


@contextmanager
def running(receiver: Callable[[httpd.Limits], Any], limits: httpd.Limits = FAST) -> Iterator[int]:
    server = receiver(limits)
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def post(port: int, body: bytes = BODY, headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/", body=body, headers=headers or {"X-Imagebot-Signature-256": sign(SECRET, body)})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True  # reset counts as closed


@RECEIVERS
def test_half_open_connections_are_closed_after_the_read_timeout_while_a_valid_webhook_gets_through(
    receiver: Callable[[httpd.Limits], Any],
) -> None:
    with running(receiver) as port:
        idle = []
        for _ in range(500):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setblocking(False)
            idle.append(s)
        partial = socket.create_connection(("127.0.0.1", port), timeout=10)
        partial.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        partial.setblocking(False)
        idle.append(partial)
        try:
            assert post(port)[0] == 202, "a valid webhook is served while 500 connections sit idle"
            sel = selectors.DefaultSelector()
            for s in idle:
                sel.register(s, selectors.EVENT_READ)
            open_ = set(idle)
            deadline = time.monotonic() + 60
            while open_ and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=0.5):
                    s = key.fileobj
                    assert isinstance(s, socket.socket)
                    if s in open_ and _closed(s):
                        open_.discard(s)
                        sel.unregister(s)
            assert not open_, f"{len(open_)} of {len(idle)} half-open connections still open after the read timeout"
            assert post(port)[0] == 202
        finally:
            for s in idle:
                s.close()


@RECEIVERS
def test_two_hundred_concurrent_valid_webhooks_are_all_accepted(receiver: Callable[[httpd.Limits], Any]) -> None:
    with running(receiver, httpd.Limits()) as port:
        n = 200
        start = threading.Barrier(n)
        results: list[object] = []

        def one() -> None:
            start.wait(30)
            try:
                results.append(post(port)[0])
            except OSError as exc:
                results.append(repr(exc))

        threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads)
        refused = [r for r in results if r != 202]
        assert not refused, f"{len(refused)} of {n} refused or reset: {refused[:5]}"


@RECEIVERS
def test_an_oversized_request_head_is_refused_with_431(receiver: Callable[[httpd.Limits], Any]) -> None:
    with running(receiver) as port:
        headers = {f"X-Pad-{i}": "x" * 1000 for i in range(64)}  # 64 KB of headers, each line short
        headers["X-Imagebot-Signature-256"] = sign(SECRET, BODY)
        assert post(port, BODY, headers)[0] == 431
        assert post(port)[0] == 202


@pytest.mark.parametrize(
    "body",
    [
        b'{"events": [1]}',
        b'{"events": [{"action": "push", "target": "rt/app"}]}',
        b'{"events": [{"action": "push", "target": {"repository": 7}}]}',
        b'{"push_data": {}, "repository": "x"}',
        b'{"package": {"owner": "x", "name": 3}}',
        b'{"event_data": {"resources": "all"}}',
        b'{"event_data": {"resources": [1]}}',
        b"[1, 2]",
        b'"just a string"',
        b"{not json",
        b"\xff\xfe",
    ],
    ids=lambda b: b.decode(errors="replace")[:40],
)
def test_a_signed_body_of_the_wrong_shape_is_a_400_without_a_traceback(
    body: bytes, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with running(_imagebot) as port:
        status, answer = post(port, body, {"X-Imagebot-Signature-256": sign(SECRET, body)})
        assert status == 400, answer
        assert post(port)[0] == 202, "the receiver still works"
    assert not [r for r in caplog.records if r.exc_info], "no traceback logged"
    assert "Traceback" not in capfd.readouterr().err


def test_a_signed_event_naming_nothing_configured_is_accepted_quietly() -> None:
    """A well-formed event the bot does not know (a ping, another event type) is not an error: 202."""
    with running(_imagebot) as port:
        body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
        assert post(port, body)[0] == 202


def test_a_handler_that_fails_answers_500_and_the_server_keeps_serving(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(httpd.Handler):
        def do_GET(self) -> None:
            if self.path == "/boom":
                raise RuntimeError("a bug")
            self.send(200, b"ok\n")

    server = httpd.start("127.0.0.1:0", Broken, FAST)
    try:
        port = server.server_address[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/boom")
        assert conn.getresponse().status == 500
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.shutdown()
    assert any("a bug" in r.getMessage() or (r.exc_info and "a bug" in str(r.exc_info[1])) for r in caplog.records)


def test_keep_alive_requests_on_one_connection_are_all_answered() -> None:
    class Echo(httpd.Handler):
        def do_POST(self) -> None:
            got = self.body()
            if got is not None:
                self.send(200, got)

    server = httpd.start("127.0.0.1:0", Echo, httpd.Limits(read_timeout=2.0, workers=1))
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        for i in range(20):
            conn.request("POST", "/", body=str(i).encode())
            r = conn.getresponse()
            assert (r.status, r.read()) == (200, str(i).encode())
            if i == 10:
                time.sleep(0.3)  # idle between requests: the connection waits without a worker
        conn.close()
    finally:
        server.shutdown()


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="workers"):
        httpd.Limits(workers=0)
    with pytest.raises(ValueError, match="read_timeout"):
        httpd.Limits(read_timeout=0)


def test_an_ipv6_listen_address_in_brackets_is_served() -> None:
    class Ok(httpd.Handler):
        def do_GET(self) -> None:
            self.send(200, b"ok\n")

    try:
        server = httpd.start("[::1]:0", Ok, FAST)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        conn = http.client.HTTPConnection("::1", server.server_address[1], timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.shutdown()
