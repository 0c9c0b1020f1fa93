"""The registry client's HTTP layer attacked as a hostile registry or network would, with raw answers from a server
of ours (tests.fixtures.rawhttp): framing and header abuse, encodings, cut or extra answers, connections that die or
go silent, unusable redirect targets, proxies, and TLS that must fail closed.

What broke before: a header line without a colon or a negative Content-Length made the client wait for the deadline
(http.client had dropped the framing), two different Content-Lengths or a truncated gzip body were read as a short
answer, a ``br`` body was taken for the manifest itself (its digest computed over compressed bytes), raw deflate was
an unreachable registry, a negative chunk size or a redirect to a non-ASCII or out-of-range URL raised a bare
ValueError, and an error body cut at its cap left its connection in the pool, mid-answer.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import socket
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imagebot.errors import RegistryError
from imagebot.registry import Platform, RegistryClient, RegistrySettings
from imagebot.registry.errors import RegistryAuthError, RegistryProtocolError, RegistryUnreachable
from imagebot.registry.limits import RetryPolicy
from tests.fixtures.pki import PKI, make_pki
from tests.fixtures.rawhttp import RawServer, answer, reset, serve_each
from tests.fixtures.scripted import wait_until
from tests.integration.test_registry_boundary import bounded  # a call that never ends fails, not hangs

TAGS = b'{"name":"app","tags":["1.0.0"]}'
EVIL = b'{"name":"app","tags":["evil"]}'
AMD64 = Platform.parse("linux/amd64")
# an index naming the platform asked for: taken raw, any of the bodies below would "work"
INDEX = json.dumps(
    {"mediaType": "application/vnd.oci.image.index.v1+json",
     "manifests": [{"digest": "sha256:" + "b" * 64, "platform": {"os": "linux", "architecture": "amd64"}}]}
).encode()  # fmt: skip


def ok(body: bytes, *extra: tuple[str, str]) -> bytes:
    return answer("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra], body)


def chunked(body: bytes, trailer: bytes = b"") -> bytes:
    return b"%x\r\n%s\r\n0\r\n%s\r\n" % (len(body), body, trailer)


def _raw_deflate(data: bytes) -> bytes:
    z = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return z.compress(data) + z.flush()


@pytest.fixture
def servers() -> Iterator[Callable[..., RawServer]]:
    started: list[RawServer] = []

    def start(script: Callable[..., None], tls: tuple[str, str] | None = None) -> RawServer:
        started.append(RawServer(script, tls))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def client(server: RawServer, **kw: object) -> RegistryClient:
    kw.setdefault("deadline", 10.0)
    kw.setdefault("retry", RetryPolicy(attempts=3, base=0.01))
    return RegistryClient(RegistrySettings(host=server.host, plain_http=True, **kw), sleep=lambda s: None)  # type: ignore[arg-type]


# ------------------------------------------------------------------ framing, headers, encodings
MALFORMED = {
    "120_headers": answer("200 OK", [*((f"X-{i}", "v") for i in range(120)), ("Content-Length", str(len(INDEX)))], INDEX),
    "70kb_header_line": answer("200 OK", [("X-Big", "a" * 70_000), ("Content-Length", str(len(INDEX)))], INDEX),
    "header_without_colon": b"HTTP/1.1 200 OK\r\nX-A: 1\r\nNoColonHere\r\nContent-Length: %d\r\n\r\n%s" % (len(INDEX), INDEX),
    "two_content_lengths": answer("200 OK", [("Content-Length", "12"), ("Content-Length", str(len(INDEX)))], INDEX),
    "negative_content_length": answer("200 OK", [("Content-Length", "-1")], INDEX),
    "negative_chunk_size": answer("200 OK", [("Transfer-Encoding", "chunked")], b"-5\r\n" + INDEX),
    "transfer_encoding_not_chunked": answer("200 OK", [("Transfer-Encoding", "gzip, chunked")], chunked(gzip.compress(INDEX))),
    "not_an_http_status_line": b"SSH-2.0-OpenSSH_9.6\r\n\r\n" + INDEX,
    "content_encoding_br": ok(INDEX, ("Content-Encoding", "br")),
    "content_encoding_zstd": ok(INDEX, ("Content-Encoding", "zstd")),
    "gzip_twice": ok(gzip.compress(gzip.compress(INDEX)), ("Content-Encoding", "gzip, gzip")),
    "gzip_truncated": ok(gzip.compress(INDEX)[:-12], ("Content-Encoding", "gzip")),
    "gzip_then_garbage": ok(gzip.compress(INDEX) + b"garbage", ("Content-Encoding", "gzip")),
    "deflate_garbage": ok(b"\x78\x9c not deflate at all", ("Content-Encoding", "deflate")),
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_answer_is_refused_at_once_never_read_as_a_manifest(servers: Callable[..., RawServer], raw: bytes) -> None:
    server = servers(serve_each(raw))
    with pytest.raises(RegistryProtocolError, match="malformed HTTP answer") as info:
        client(server).manifest_digest("app", "1.0.0", AMD64)
    assert len(server.requests) == 1, "a malformed answer is not asked for again"
    assert "\n" not in str(info.value)


TOLERATED = {
    "lf_only_line_endings": answer("200 OK", [("Content-Length", str(len(TAGS)))], TAGS, eol=b"\n"),
    "same_content_length_twice": answer("200 OK", [("Content-Length", str(len(TAGS)))] * 2, TAGS),
    "chunked_with_trailers": answer("200 OK", [("Transfer-Encoding", "chunked")], chunked(TAGS, b"X-T: 1\r\nX-U: 2\r\n")),
    "deflate_zlib_wrapped": ok(zlib.compress(TAGS), ("Content-Encoding", "deflate")),
    "deflate_raw": ok(_raw_deflate(TAGS), ("Content-Encoding", "DEFLATE")),
}


@pytest.mark.parametrize("raw", TOLERATED.values(), ids=TOLERATED.keys())
def test_unusual_but_well_framed_answers_are_read_on_one_kept_alive_connection(
    servers: Callable[..., RawServer], raw: bytes
) -> None:
    server = servers(serve_each(raw))
    c = client(server)
    assert c.list_tags("app") == ["1.0.0"]
    assert c.list_tags("app") == ["1.0.0"]
    assert server.connections == 1


def test_content_length_with_chunked_is_read_chunked_and_its_connection_not_reused(servers: Callable[..., RawServer]) -> None:
    # RFC 9112 6.3: Transfer-Encoding overrides Content-Length, and the connection must be closed after
    raw = answer("200 OK", [("Content-Length", "3"), ("Transfer-Encoding", "chunked")], chunked(TAGS))
    server = servers(serve_each(raw))
    c = client(server)
    assert c.list_tags("app") == ["1.0.0"]
    assert c.list_tags("app") == ["1.0.0"]
    assert server.connections == 2


def test_a_chunk_size_past_any_integer_still_stops_at_the_cap(servers: Callable[..., RawServer]) -> None:
    def script(conn: socket.socket, server: RawServer) -> None:
        server.request(conn)
        conn.sendall(answer("200 OK", [("Transfer-Encoding", "chunked")], b"f" * 40 + b"\r\n"))
        while not server.stopped.is_set():
            conn.sendall(b"[" * 65536)

    server = servers(script)
    with pytest.raises(RegistryProtocolError, match="larger than 1,048,576 bytes"):
        client(server, max_body=1 << 20).list_tags("app")


# ------------------------------------------------------------------ error bodies, extra answers
def test_a_100_mb_error_body_is_cut_at_64_kb_and_its_connection_never_reused(servers: Callable[..., RawServer]) -> None:
    def script(conn: socket.socket, server: RawServer) -> None:
        if server.connections == 1:  # 100 MB announced; 128 KB (what the client reads to see it is over) sent, then a pause
            server.request(conn)
            conn.sendall(answer("404 Not Found", [("Content-Length", str(100 << 20))], b"x" * (128 << 10)))
        while server.request(conn) is not None:  # a reused first connection would be seen asking here
            conn.sendall(ok(TAGS))

    server = servers(script)
    c = client(server)
    reply = c.request("GET", f"http://{server.host}/v2/app/tags/list", "repository:app:pull")
    assert reply.status_code == 404 and len(reply.content) == 64 * 1024
    assert c.list_tags("app") == ["1.0.0"]
    assert server.connections == 2 and len(server.requests) == 2


def test_bytes_after_an_answer_are_never_taken_for_the_next_one(servers: Callable[..., RawServer]) -> None:
    # a forged extra answer after each real one, and a HEAD answered with a body
    digest = "sha256:" + "c" * 64

    def script(conn: socket.socket, server: RawServer) -> None:
        while (head := server.request(conn)) is not None:
            if head.startswith(b"HEAD"):
                conn.sendall(answer("200 OK", [("Content-Length", str(len(EVIL))), ("Docker-Content-Digest", digest)], EVIL))
            else:
                conn.sendall(ok(TAGS) + ok(EVIL))

    server = servers(script)
    c = client(server)
    for _ in range(3):
        assert c.manifest_digest("app", "1.0.0") == digest
        assert c.list_tags("app") == ["1.0.0"]
        assert c.list_tags("app") == ["1.0.0"]


# ------------------------------------------------------------------ connections: every call ends, nothing leaks
def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_200_calls_that_break_leak_no_socket_and_no_thread(servers: Callable[..., RawServer]) -> None:
    def script(conn: socket.socket, server: RawServer) -> None:
        head = server.request(conn)
        kind = head.split(b" ")[1].split(b"/")[2] if head else b""
        if kind == b"reset":  # mid-body, with a TCP RST
            conn.sendall(answer("200 OK", [("Content-Length", "1000")], TAGS[:10]))
            reset(conn)
        elif kind == b"silent":  # accepts, reads, never answers
            server.stopped.wait()
        elif kind == b"never-ending":  # a chunked body that never ends
            conn.sendall(answer("200 OK", [("Transfer-Encoding", "chunked")], b""))
            while not server.stopped.wait(0.01):
                conn.sendall(b"1\r\n \r\n")
        elif kind == b"malformed":
            conn.sendall(MALFORMED["negative_content_length"])
        # else "closed": hangs up without a word

    kinds = ["reset", "silent", "never-ending", "malformed", "closed"]
    server = servers(script)
    c = client(server, deadline=0.3, retry=RetryPolicy(attempts=2, base=0.01))
    with pytest.raises(RegistryError):
        c.list_tags("closed")  # the deadline reaper's thread exists from here on
    threads, fds = threading.active_count(), _fds()

    def call(i: int) -> str:
        try:
            c.list_tags(kinds[i % len(kinds)])
        except RegistryError as exc:
            return type(exc).__name__
        return "answered"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(call, range(200)))
    assert "answered" not in outcomes and len(outcomes) == 200
    server.stop()  # its own connection threads and sockets go too
    assert wait_until(lambda: threading.active_count() <= threads and _fds() <= fds, timeout=20), (
        threading.active_count(),
        threads,
        _fds(),
        fds,
    )


# ------------------------------------------------------------------ redirects and links
@pytest.mark.parametrize(
    "location",
    ["http://127.0.0.1:99999/x", "http://[::1/x", "http://127.0.0.1:abc/x", "/v2/app/t\u00e9gs", "http://h\u00e9.example/x",
     "/v2/a\x01b", "http://:80/x", "file:///etc/passwd", "gopher://127.0.0.1/x"],
    ids=["port_out_of_range", "open_ipv6_bracket", "port_not_a_number", "non_ascii_path", "non_ascii_host", "control_char",
         "no_host", "file_scheme", "gopher_scheme"],
)  # fmt: skip
def test_a_redirect_to_an_unusable_url_is_refused_with_a_message(servers: Callable[..., RawServer], location: str) -> None:
    server = servers(serve_each(answer("302 Found", [("Location", location), ("Content-Length", "0")])))
    with pytest.raises(RegistryProtocolError, match="refusing a redirect to"):
        client(server).list_tags("app")


@pytest.mark.parametrize("link", ["/v2/app/t\u00e9gs", "http://[::1/x", "/v2/a\x01b"], ids=["non_ascii", "ipv6", "control"])
def test_a_pagination_link_to_an_unusable_url_is_refused(servers: Callable[..., RawServer], link: str) -> None:
    server = servers(serve_each(ok(TAGS, ("Link", f'<{link}>; rel="next"'))))
    with pytest.raises(RegistryProtocolError, match="refusing the pagination link"):
        client(server).list_tags("app")


@pytest.mark.parametrize("realm", ["http://[::1/token", "http://127.0.0.1:99999/token", "http://h\u00e9/token"])
def test_a_token_realm_that_is_not_a_usable_url_is_refused(servers: Callable[..., RawServer], realm: str) -> None:
    challenge = answer("401 Unauthorized", [("WWW-Authenticate", f'Bearer realm="{realm}"'), ("Content-Length", "0")])
    server = servers(serve_each(challenge))
    with pytest.raises(RegistryAuthError, match="unusable token realm"):
        client(server).list_tags("app")


def test_a_redirect_loop_ends_after_five_hops(servers: Callable[..., RawServer]) -> None:
    server = servers(serve_each(answer("307 Temporary Redirect", [("Location", "/v2/app/tags/list"), ("Content-Length", "0")])))
    with pytest.raises(RegistryProtocolError, match="more than 5 redirects"):
        client(server).list_tags("app")
    assert len(server.requests) == 6


# ------------------------------------------------------------------ TLS fails closed
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _leaf(pki: PKI, d: Path, name: str, san: x509.GeneralName, days: tuple[int, int]) -> tuple[str, str]:
    """A server certificate signed by the test CA, for ``san``, valid from/to ``days`` relative to now."""
    ca_key = serialization.load_pem_private_key((pki.ca_cert.parent / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    (d / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (d / f"{name}.key").write_bytes(pem)
    return str(d / f"{name}.crt"), str(d / f"{name}.key")


@pytest.mark.parametrize("case", ["wrong_hostname", "expired", "self_signed"])
def test_a_certificate_that_does_not_verify_fails_closed(
    servers: Callable[..., RawServer], pki: PKI, tmp_path: Path, case: str
) -> None:
    import ipaddress

    here = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    tls = {
        "wrong_hostname": lambda: _leaf(pki, tmp_path, "other", x509.DNSName("other.example"), (-1, 1)),
        "expired": lambda: _leaf(pki, tmp_path, "expired", here, (-3, -1)),
        "self_signed": lambda: (str(pki.token_cert), str(pki.token_key)),
    }[case]()
    server = servers(serve_each(ok(TAGS)), tls=tls)
    c = RegistryClient(RegistrySettings(host=server.host, ca_file=pki.ca_cert, deadline=10), sleep=lambda s: None)
    with pytest.raises(RegistryUnreachable, match="TLS verification failed"):
        c.list_tags("app")
    assert server.requests == [] and server.connections == 1  # not retried, and never plain HTTP


def test_a_plain_http_server_on_the_tls_port_gets_no_request_in_clear(servers: Callable[..., RawServer], pki: PKI) -> None:
    seen: list[bytes] = []

    def script(conn: socket.socket, server: RawServer) -> None:
        conn.settimeout(5)
        seen.append(conn.recv(4096))
        conn.sendall(ok(TAGS))

    server = servers(script)
    c = RegistryClient(RegistrySettings(host=server.host, ca_file=pki.ca_cert, deadline=10), sleep=lambda s: None)
    with pytest.raises(RegistryUnreachable, match="TLS"):
        c.list_tags("app")
    assert seen and all(first.startswith(b"\x16\x03") for first in seen)  # a TLS ClientHello, never "GET "
    assert server.connections == 1


# ------------------------------------------------------------------ proxies
def test_proxy_credentials_never_reach_a_registry_no_proxy_sends_to_directly(
    servers: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = servers(serve_each(ok(TAGS)))
    for name in ("no_proxy", "http_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://bob:s3cret@127.0.0.1:9")  # nothing listens there: it must not be used
    monkeypatch.setenv("NO_PROXY", f"localhost,127.0.0.1:{server.port}")
    assert client(server).list_tags("app") == ["1.0.0"]
    assert b"proxy-authorization" not in server.requests[0].lower()
    assert server.requests[0].startswith(b"GET /v2/app/tags/list")  # origin form, not a proxy's absolute form


def test_an_https_registry_behind_a_connect_proxy_never_sees_the_proxy_credentials(
    servers: Callable[..., RawServer], pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.test_registry_transport import _ConnectProxy

    server = servers(serve_each(ok(TAGS)), tls=(str(pki.server_cert), str(pki.server_key)))
    proxy = _ConnectProxy()
    try:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", f"http://bob:s3cret@127.0.0.1:{proxy.port}")
        c = RegistryClient(RegistrySettings(host=f"localhost:{server.port}", ca_file=pki.ca_cert, deadline=10))
        assert c.list_tags("app") == ["1.0.0"]
        assert proxy.auth and all(b"proxy-authorization" not in r.lower() for r in server.requests)
    finally:
        proxy.stop()


# ------------------------------------------------------------------ what the client parses from an answer
def test_link_and_challenge_headers_are_parsed_in_linear_time(servers: Callable[..., RawServer]) -> None:
    # 90 header lines of 65,000 characters each, joined: a backtracking regex spent hours of CPU on them
    links = [("Link", "<" * 65_000)] * 90
    server = servers(serve_each(ok(TAGS, *links)))
    assert bounded(lambda: client(server).list_tags("app")) == ["1.0.0"]
    challenges = [("WWW-Authenticate", "Bearer " + "a" * 65_000)] * 90
    server = servers(serve_each(answer("401 Unauthorized", [*challenges, ("Content-Length", "0")])))
    got = bounded(lambda: client(server).list_tags("app"))
    assert isinstance(got, RegistryAuthError) and "without a realm" in str(got), got


@pytest.mark.parametrize(("status", "message"), [("200 OK", "is not JSON"), ("404 Not Found", "not found")])
def test_json_nested_too_deeply_for_the_parser_is_bad_json_not_a_crash(
    servers: Callable[..., RawServer], status: str, message: str
) -> None:
    deep = b"[" * 100_000
    server = servers(serve_each(answer(status, [("Content-Length", str(len(deep)))], deep)))
    with pytest.raises(RegistryError, match=message):
        client(server).list_tags("app")
    with pytest.raises(RegistryError, match=message):
        client(server).manifest_digest("app", "1.0.0", AMD64)


@pytest.mark.parametrize(
    "proxy", ["https://bob:s3cret@127.0.0.1:9", "socks5://bob:s3cret@127.0.0.1:9", "http://bob:s3cret@127.0.0.1:99999"]
)
def test_a_proxy_the_client_cannot_use_is_an_error_never_a_direct_request(
    servers: Callable[..., RawServer], monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    server = servers(serve_each(ok(TAGS)))
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    with pytest.raises(RegistryUnreachable, match="HTTP_PROXY") as info:
        client(server).list_tags("app")
    assert "s3cret" not in str(info.value) and "bob" not in str(info.value)
    assert server.requests == []  # not around the proxy the operator set


def test_terminal_control_sequences_in_a_registry_answer_are_shown_escaped(servers: Callable[..., RawServer]) -> None:
    import io

    from imagebot.cli import main

    words = "evil \x1b]0;pwned\x07 \x9b31m bidi\u202e"
    body = json.dumps({"errors": [{"code": "X\x1b[2J", "message": words}]}).encode()
    for raw in (answer("404 Not\x1b[31m Found", [("Content-Length", str(len(body)))], body),
                answer("500 Bad\x1b[31mThing", [("Content-Length", "0")])):  # fmt: skip
        server = servers(serve_each(raw))
        err = io.StringIO()
        code = main(["tags", f"{server.host}/app", "--insecure-registry", server.host], out=io.StringIO(), err=err)
        assert code == 3 and "\\x1b[" in err.getvalue()
        assert not any(c in err.getvalue() for c in "\x1b\x07\x9b\u202e"), err.getvalue()
