"""The registry client's HTTP layer (imagebot.registry.transport) against small servers of ours: keep-alive reuse,
a kept-alive connection the server closed, compressed bodies under the cap, short bodies, HTTPS through a proxy."""

from __future__ import annotations

import gzip
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest

from imagebot.registry import RegistryClient, RegistrySettings
from imagebot.registry.errors import RegistryProtocolError, RegistryUnreachable
from imagebot.registry.limits import RetryPolicy
from imagebot.registry.transport import environment_proxy
from tests.fixtures.net import QuietHandler, ThreadServer
from tests.fixtures.pki import PKI, make_pki

pytestmark = pytest.mark.registry

TAGS = b'{"name":"app","tags":["1.0.0","1.1.0"]}'


class _Tags(QuietHandler):
    connections: ClassVar[set[int]] = set()
    close_after: ClassVar[bool] = False  # answer "Connection: close"-less, then drop the idle connection
    body: ClassVar[bytes] = TAGS
    headers_extra: ClassVar[dict[str, str]] = {}

    def do_GET(self) -> None:
        type(self).connections.add(self.client_address[1])
        self.send_body(200, type(self).body, type(self).headers_extra)
        if type(self).close_after:
            self.close_connection = True  # no header says so: the client finds out when it reuses the connection


@pytest.fixture
def tags_server() -> Iterator[ThreadServer]:
    _Tags.connections, _Tags.close_after, _Tags.body, _Tags.headers_extra = set(), False, TAGS, {}
    server = ThreadServer(_Tags)
    try:
        yield server
    finally:
        server.stop()


def _client(port: int, **kw: object) -> RegistryClient:
    return RegistryClient(RegistrySettings(host=f"127.0.0.1:{port}", plain_http=True, **kw))  # type: ignore[arg-type]


def test_connections_are_kept_alive_between_calls(tags_server: ThreadServer) -> None:
    c = _client(tags_server.port)
    for _ in range(5):
        assert c.list_tags("app") == ["1.0.0", "1.1.0"]
    assert len(_Tags.connections) == 1


def test_a_kept_alive_connection_the_server_closed_is_replaced_not_reported(tags_server: ThreadServer) -> None:
    _Tags.close_after = True
    c = _client(tags_server.port, retry=RetryPolicy(attempts=1))
    for _ in range(3):
        time.sleep(0.05)  # the server has closed the idle connection by now
        assert c.list_tags("app") == ["1.0.0", "1.1.0"]  # one attempt allowed: no failure was needed to notice
    assert len(_Tags.connections) == 3


def test_a_compressed_body_is_read_and_capped_by_its_decoded_size(tags_server: ThreadServer) -> None:
    _Tags.body, _Tags.headers_extra = gzip.compress(TAGS), {"Content-Encoding": "gzip"}
    assert _client(tags_server.port).list_tags("app") == ["1.0.0", "1.1.0"]

    bomb = b'{"tags":["' + b"a" * 5_000_000 + b'"]}'  # 5 MB of JSON, ~5 KB on the wire
    _Tags.body = gzip.compress(bomb)
    with pytest.raises(RegistryProtocolError, match="larger than 100,000 bytes"):
        _client(tags_server.port, max_body=100_000).list_tags("app")


class _Short(QuietHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(TAGS) + 10))
        self.end_headers()
        self.wfile.write(TAGS)  # ten bytes short, then the connection ends
        self.close_connection = True


def test_a_body_shorter_than_its_content_length_is_a_broken_answer_not_a_parsed_one() -> None:
    server = ThreadServer(_Short)
    try:
        with pytest.raises(RegistryUnreachable, match="unreachable after 2 attempt"):
            _client(server.port, retry=RetryPolicy(attempts=2, base=0.01)).list_tags("app")
    finally:
        server.stop()


class _ConnectProxy:
    """A CONNECT-only forward proxy on loopback that records the targets it tunnelled to."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.targets: list[str] = []
        self.auth: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.decode().split("\r\n")
        self.targets.append(lines[0])
        self.auth += [h.split(":", 1)[1].strip() for h in lines[1:] if h.lower().startswith("proxy-authorization:")]
        host, port = lines[0].split()[1].rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        socks = [client, upstream]
        while True:
            readable, _, _ = select.select(socks, [], [], 10)
            if not readable:
                break
            for s in readable:
                data = s.recv(65536)
                if not data:
                    client.close()
                    upstream.close()
                    return
                (upstream if s is client else client).sendall(data)

    def stop(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_https_goes_through_the_proxy_with_connect_and_its_credentials(pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    _Tags.connections, _Tags.close_after, _Tags.body, _Tags.headers_extra = set(), False, TAGS, {}
    server = ThreadServer(_Tags, tls=(str(pki.server_cert), str(pki.server_key)))
    proxy = _ConnectProxy()
    try:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", f"http://bob:s%40cret@127.0.0.1:{proxy.port}")
        c = RegistryClient(RegistrySettings(host=f"localhost:{server.port}", ca_file=pki.ca_cert))
        assert c.list_tags("app") == ["1.0.0", "1.1.0"]
        assert [t.rsplit(" ", 1)[0] for t in proxy.targets] == [f"CONNECT localhost:{server.port}"]
        assert proxy.auth == ["Basic Ym9iOnNAY3JldA=="]  # bob:s@cret
    finally:
        proxy.stop()
        server.stop()


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "proxied"),
    [
        ("", "registry.example", 443, True),
        ("*", "registry.example", 443, False),
        ("example", "registry.example", 443, False),
        (".example", "registry.example", 443, False),
        ("ample", "registry.example", 443, True),  # a suffix of labels, not of characters
        ("registry.example:5000", "registry.example", 443, True),
        ("registry.example:5000", "registry.example", 5000, False),
        ("10.0.0.0/8", "10.1.2.3", 443, False),
        ("10.0.0.0/8", "11.1.2.3", 443, True),
        ("127.0.0.1", "127.0.0.1", 5000, False),
        (" other.example , registry.example ", "registry.example", 443, False),
        ("*.example", "registry.example", 443, False),  # Go's (Flux's) spelling of ".example"
        ("registry.example.", "registry.example", 443, False),
        ("::1", "::1", 443, False),
        ("[::1]", "::1", 443, False),
        ("[::1]:5000", "::1", 5000, False),
        ("[::1]:5000", "::1", 443, True),
    ],
)
def test_no_proxy_has_curls_and_requests_meaning(no_proxy: str, host: str, port: int, proxied: bool) -> None:
    env = {"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": no_proxy}
    assert (environment_proxy("https", host, port, env) is not None) is proxied


def test_lower_case_wins_and_all_proxy_is_the_fallback() -> None:
    env = {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2", "ALL_PROXY": "http://all:3"}
    found = environment_proxy("https", "r.example", 443, env)
    assert found is not None and (found.host, found.port) == ("lower", 1)
    found = environment_proxy("http", "r.example", 80, env)
    assert found is not None and found.host == "all"


class _Head(QuietHandler):
    connections: ClassVar[set[int]] = set()

    def do_HEAD(self) -> None:
        type(self).connections.add(self.client_address[1])
        self.send_body(200, b"{}", {"Docker-Content-Digest": "sha256:" + "d" * 64})


def test_a_digest_by_head_reuses_its_connection() -> None:
    """Each digest read by HEAD opened a connection (a TLS handshake each on https)."""
    _Head.connections = set()
    server = ThreadServer(_Head)
    try:
        c = _client(server.port)
        for _ in range(4):
            assert c.manifest_digest("app", "1.0.0") == "sha256:" + "d" * 64
        assert len(_Head.connections) == 1
    finally:
        server.stop()
