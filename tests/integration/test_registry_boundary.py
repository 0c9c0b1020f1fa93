"""The registry boundary against hostile servers of ours: validation, deadlines, size caps, secrets.

Each fault here hung, leaked or let bad data through before: a tag outside the OCI grammar or a
malformed digest reached Git, a dripping registry hung a call forever, a 200 MB tag list was
read whole, a 403 echoing the password printed it, a plain-http token realm of a TLS registry
received the password, and a redirect could carry our Authorization header elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from imagebot import refs
from imagebot.cli import main
from imagebot.errors import RegistryError
from imagebot.registry import Platform, Registries, RegistryClient, RegistrySettings
from imagebot.registry.auth import Credentials, EnvCredentials
from imagebot.registry.errors import RegistryAuthError, RegistryProtocolError, RegistryUnreachable
from imagebot.registry.limits import parse_retry_after
from imagebot.registry.scanner import Scanner
from imagebot.registry.state import ScanState
from tests.fixtures.net import QuietHandler
from tests.fixtures.pki import PKI
from tests.fixtures.scripted import Hostile, json_answer

PASSWORD = "s3cr3t-Pa55word!/+="
USER = "robot"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
TOKEN = "eyJ0b2tlbi1zZWNyZXQtdmFsdWUtMTIzNDU2Nzg5"
GOOD = "sha256:" + "a" * 64


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    h = Hostile()
    yield h
    h.stop()


@pytest.fixture
def hostile2() -> Iterator[Hostile]:
    h = Hostile()
    yield h
    h.stop()


@pytest.fixture
def hostile_tls(pki: PKI) -> Iterator[Hostile]:
    h = Hostile(tls=(str(pki.server_cert), str(pki.server_key)))
    yield h
    h.stop()


def plain(h: Hostile, **kw: Any) -> RegistryClient:
    return RegistryClient(RegistrySettings(host=h.host, plain_http=True, **kw), sleep=lambda s: None)


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def bounded(call: Callable[[], object], limit: float = 60.0) -> BaseException | object:
    """Run ``call`` in a thread; what it returned or raised, or a failure if it never ends."""
    box: list[object] = []

    def target() -> None:
        try:
            box.append(call())
        except BaseException as exc:
            box.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit)
    assert box, f"the registry call did not end within {limit} s (no overall deadline)"
    return box[0]


# ------------------------------------------------------------------ 2: validation at the boundary
INVALID_TAGS = ["zz #x", "zz: x", 'q"uote', "tab\there", "line\u2028sep", "z/../../x", "x" * 10_000, "-lead", ".dot", ""]


def test_invalid_tags_are_ignored_and_reported_never_passed_on(hostile: Hostile, tmp_path: Path) -> None:
    tags = ["1.0.0", "1.1.0", *INVALID_TAGS]
    hostile.on("/v2/app/tags/list", json_answer(200, json.dumps({"name": "app", "tags": tags}).encode()))
    listing = plain(hostile).tag_listing("app")
    assert listing.tags == ("1.0.0", "1.1.0")
    assert listing.invalid_count == len(INVALID_TAGS)
    assert all(len(t) <= 200 for t in listing.invalid)

    code, out, err = cli(["tags", f"{hostile.host}/app", "--insecure-registry", hostile.host, "--json"])
    doc = json.loads(out)
    assert code == 0 and doc["tags"] == ["1.0.0", "1.1.0"] and doc["invalidCount"] == len(INVALID_TAGS)
    assert "zz #x" in doc["invalid"] and "outside the OCI tag grammar" in err
    assert "\u2028" not in err and "\t" not in err  # shown escaped

    code, out, err = cli(
        ["select", "--image", f"{hostile.host}/app", "--alphabetical", "asc", "--insecure-registry", hostile.host]
    )
    assert (code, out) == (0, "1.1.0\n") and "10 tag(s) outside the OCI tag grammar ignored" in err

    state = ScanState(tmp_path / "state.db")
    result = Scanner(Registries(RegistrySettings(host="", plain_http=True)), state).scan([refs.parse(f"{hostile.host}/app")])
    res = result[f"{hostile.host}/app"]
    assert res.ok and res.tags == ("1.0.0", "1.1.0") and res.invalid_count == len(INVALID_TAGS)
    assert set(state.known_tags(f"{hostile.host}/app")) == {"1.0.0", "1.1.0"}


@pytest.mark.parametrize(
    "header",
    [
        "sha256:" + "A" * 64,
        "sha256:abc",
        "md5:" + "a" * 32,
        GOOD + ", " + GOOD,
        "sha256:" + "\u0660" * 64,
        "sha256:" + "a" * 63 + "g",
        "zz #x",
    ],
    ids=["upper_hex", "short", "other_algorithm", "two_values", "non_ascii_digits", "not_hex", "garbage"],
)
def test_an_invalid_content_digest_is_a_registry_error(hostile: Hostile, header: str) -> None:
    def with_header(h: QuietHandler) -> None:
        body = b"{}"
        h.send_response(200)
        h.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Docker-Content-Digest", header.encode("utf-8").decode("latin-1") if not header.isascii() else header)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    hostile.on("/v2/app/manifests/1.0.0", with_header)
    code, out, err = cli(["digest", f"{hostile.host}/app:1.0.0", "--insecure-registry", hostile.host])
    assert (code, out) == (3, ""), err
    assert "is not a digest" in err or "does not match" in err


def test_a_content_digest_must_match_the_manifest_bytes(hostile: Hostile) -> None:
    body = b'{"schemaVersion":2}'
    real = "sha256:" + hashlib.sha256(body).hexdigest()
    for name, digest in (("good", real), ("lie", GOOD)):
        hostile.on(f"/v2/{name}/manifests/1.0.0", json_answer(200, body, {"Docker-Content-Digest": digest}))
    # HEAD carries no body to check: the header is validated for form; with --platform the GET is checked
    assert plain(hostile).manifest_digest("good", "1.0.0") == real
    hostile.on("/v2/lie/manifests/1.0.0", _head_405_then(body, GOOD))
    with pytest.raises(RegistryProtocolError, match="does not match"):
        plain(hostile).manifest_digest("lie", "1.0.0")


def _head_405_then(body: bytes, digest: str) -> Callable[[QuietHandler], None]:
    def script(h: QuietHandler) -> None:
        if h.command == "HEAD":
            h.send_body(405, b"")
        else:
            h.send_body(200, body, {"Docker-Content-Digest": digest})

    return script


def test_index_entries_and_config_digests_are_validated_before_use(hostile: Hostile) -> None:
    index = {"manifests": [{"digest": "sha256:../../x", "platform": {"os": "linux", "architecture": "amd64"}}]}
    hostile.on("/v2/idx/manifests/1.0.0", json_answer(200, json.dumps(index).encode()))
    with pytest.raises(RegistryProtocolError, match="index entry is not a digest"):
        plain(hostile).manifest_digest("idx", "1.0.0", Platform.parse("linux/amd64"))
    single = {"config": {"digest": "z/../../x"}}
    hostile.on("/v2/one/manifests/1.0.0", json_answer(200, json.dumps(single).encode()))
    with pytest.raises(RegistryProtocolError, match="config descriptor is not a digest"):
        plain(hostile).manifest_digest("one", "1.0.0", Platform.parse("linux/amd64"))
    hostile.on("/v2/list/manifests/1.0.0", json_answer(200, b"[1, 2]"))
    with pytest.raises(RegistryProtocolError, match="not a JSON object"):
        plain(hostile).manifest_digest("list", "1.0.0", Platform.parse("linux/amd64"))
    assert not any("/blobs/" in s.path for s in hostile.seen)


# ------------------------------------------------------------------ 8: deadlines and size caps
def test_a_dripping_tag_list_ends_at_the_deadline(hostile: Hostile) -> None:
    hostile.on("/v2/slow/tags/list", hostile.drip_body())
    got = bounded(lambda: plain(hostile, deadline=1.0).list_tags("slow"))
    assert isinstance(got, RegistryUnreachable) and "deadline" in str(got), got


def test_a_dripping_second_page_ends_at_the_deadline(hostile: Hostile) -> None:
    link = {"Link": '</v2/slow/tags/list?n=1&last=1>; rel="next"'}
    first = json_answer(200, b'{"name":"slow","tags":["1"]}', link)
    drip = hostile.drip_body()
    hostile.on("/v2/slow/tags/list", lambda h: (drip if "last=" in h.path else first)(h))
    got = bounded(lambda: plain(hostile, deadline=1.0).list_tags("slow"))
    assert isinstance(got, RegistryUnreachable) and "deadline" in str(got), got


def test_dripping_headers_end_at_the_deadline(hostile: Hostile) -> None:
    hostile.on("/v2/slow/manifests/1.0.0", hostile.drip_headers())
    got = bounded(lambda: plain(hostile, deadline=1.0).manifest_digest("slow", "1.0.0"))
    assert isinstance(got, RegistryUnreachable) and "deadline" in str(got), got


def test_a_dripping_token_service_ends_at_the_deadline(hostile: Hostile) -> None:
    realm = f'Bearer realm="http://{hostile.host}/token",service="x"'
    hostile.on("/v2/app/tags/list", json_answer(401, b"{}", {"WWW-Authenticate": realm}))
    hostile.on("/token", hostile.drip_body())
    got = bounded(lambda: plain(hostile, deadline=1.0).list_tags("app"))
    assert isinstance(got, RegistryUnreachable) and "deadline" in str(got), got


def test_a_dripping_config_blob_ends_at_the_deadline(hostile: Hostile) -> None:
    hostile.on("/v2/app/manifests/1.0.0", json_answer(200, json.dumps({"config": {"digest": GOOD}}).encode()))
    hostile.on(f"/v2/app/blobs/{GOOD}", hostile.drip_body())
    got = bounded(lambda: plain(hostile, deadline=1.0).manifest_digest("app", "1.0.0", Platform.parse("linux/amd64")))
    assert isinstance(got, RegistryUnreachable) and "deadline" in str(got), got


def test_the_cli_tags_command_honours_the_deadline(hostile: Hostile) -> None:
    hostile.on("/v2/slow/tags/list", hostile.drip_body())
    got = bounded(lambda: cli(["tags", f"{hostile.host}/slow", "--insecure-registry", hostile.host, "--timeout", "1"]))
    assert isinstance(got, tuple) and got[0] == 3 and "deadline" in got[2], got


@pytest.mark.parametrize("declare_length", [False, True], ids=["streamed", "content_length"])
def test_a_huge_tag_list_is_refused_at_the_size_cap(hostile: Hostile, declare_length: bool) -> None:
    total = 200 * 1024 * 1024
    hostile.on("/v2/huge/tags/list", hostile.huge_body(total, declare_length))
    got = bounded(lambda: plain(hostile, max_body=1024 * 1024).list_tags("huge"))
    assert isinstance(got, RegistryProtocolError) and "larger than 1,048,576 bytes" in str(got), got
    hostile.stop_event.set()
    # the client stopped reading at the cap: the server got nowhere near sending it all
    assert hostile.bytes_sent < total // 4


def test_the_size_cap_counts_every_page_of_a_listing(hostile: Hostile) -> None:
    page = json.dumps({"name": "p", "tags": [f"t{i}" for i in range(20_000)]}).encode()  # ~ 170 KB
    hostile.on("/v2/p/tags/list", json_answer(200, page, {"Link": '</v2/p/tags/list?n=1&last=x>; rel="next"'}))
    hostile.on("/v2/p/tags/list?n=1&last=x", json_answer(200, page))
    with pytest.raises(RegistryError):  # the second page reuses... the loop or the cap, never unbounded
        plain(hostile, max_body=len(page) + 10, max_pages=50).list_tags("p")


# ------------------------------------------------------------------ 11: secrets
def _basic_then_403_echo(h: QuietHandler) -> None:
    auth = h.headers.get("Authorization")
    if not auth:
        h.send_body(401, b"{}", {"WWW-Authenticate": 'Basic realm="r"'})
        return
    decoded = base64.b64decode(auth.split()[1]).decode()
    body = json.dumps(
        {"errors": [{"code": "DENIED", "message": f"user {decoded} sent {auth} (raw {PASSWORD}) q={quote(PASSWORD)}"}]}
    )
    h.send_body(403, body.encode())


def test_a_403_echoing_basic_credentials_never_prints_them(hostile: Hostile, monkeypatch: pytest.MonkeyPatch) -> None:
    hostile.on("/v2/app/tags/list", _basic_then_403_echo)
    monkeypatch.setenv("REG_CREDS", f"{USER}:{PASSWORD}")
    code, _, err = cli(["tags", f"{hostile.host}/app", "--insecure-registry", hostile.host, "--credentials-env", "REG_CREDS"])
    assert code == 3 and "credentials rejected" in err
    for secret in (PASSWORD, BASIC, "s3cr3t-Pa55word"):
        assert secret not in err


def test_a_403_echoing_the_bearer_token_never_prints_it(hostile: Hostile) -> None:
    realm = f'Bearer realm="http://{hostile.host}/token",service="x"'

    def registry(h: QuietHandler) -> None:
        auth = h.headers.get("Authorization")
        if not auth:
            h.send_body(401, b"{}", {"WWW-Authenticate": realm})
        else:
            h.send_body(403, json.dumps({"errors": [{"code": "DENIED", "message": f"scope denied for {auth[7:]}"}]}).encode())

    hostile.on("/v2/app/tags/list", registry)
    hostile.on("/token", json_answer(200, json.dumps({"token": TOKEN, "expires_in": 300}).encode()))
    client = plain(hostile, credentials=EnvCredentials("X", {"X": f"{USER}:{PASSWORD}"}))
    with pytest.raises(RegistryAuthError) as info:
        client.list_tags("app")
    assert TOKEN not in str(info.value) and "scope denied for ***" in str(info.value)


def test_a_tls_registry_naming_a_plain_http_token_realm_gets_no_password(
    hostile_tls: Hostile, hostile: Hostile, pki: PKI
) -> None:
    realm = f'Bearer realm="http://{hostile.host}/token",service="x"'
    hostile_tls.on("/v2/app/tags/list", json_answer(401, b"{}", {"WWW-Authenticate": realm}))
    hostile.on("/token", json_answer(200, json.dumps({"token": TOKEN}).encode()))
    client = RegistryClient(
        RegistrySettings(host=hostile_tls.host, ca_file=pki.ca_cert, credentials=EnvCredentials("X", {"X": f"{USER}:{PASSWORD}"}))
    )
    with pytest.raises(RegistryAuthError, match="plain-http token realm"):
        client.list_tags("app")
    assert hostile.seen == []  # nothing, let alone the password, went to the plain-http realm


def test_a_redirect_to_another_origin_never_carries_our_authorization(hostile: Hostile, hostile2: Hostile) -> None:
    body = b'{"schemaVersion":2}'
    digest = "sha256:" + hashlib.sha256(body).hexdigest()

    def registry(h: QuietHandler) -> None:
        if h.headers.get("Authorization") != f"Basic {BASIC}":
            h.send_body(401, b"{}", {"WWW-Authenticate": 'Basic realm="r"'})
        else:
            h.send_body(307, b"", {"Location": f"http://{hostile2.host}/cdn/manifest"})

    hostile.on("/v2/app/manifests/1.0.0", registry)
    hostile2.on("/cdn/manifest", json_answer(200, body, {"Docker-Content-Digest": digest}))
    client = plain(hostile, credentials=EnvCredentials("X", {"X": f"{USER}:{PASSWORD}"}))
    assert client.manifest_digest("app", "1.0.0") == digest
    assert hostile2.seen and all("Authorization" not in s.headers and "authorization" not in s.headers for s in hostile2.seen)


def test_a_cdn_401_after_a_redirect_is_not_answered_with_our_credentials(hostile: Hostile, hostile2: Hostile) -> None:
    def registry(h: QuietHandler) -> None:
        if not h.headers.get("Authorization"):
            h.send_body(401, b"{}", {"WWW-Authenticate": 'Basic realm="r"'})
        else:
            h.send_body(302, b"", {"Location": f"http://{hostile2.host}/cdn"})

    hostile.on("/v2/app/manifests/1.0.0", registry)
    hostile2.on("/cdn", json_answer(401, b"{}", {"WWW-Authenticate": f'Bearer realm="http://{hostile2.host}/steal"'}))
    client = plain(hostile, credentials=EnvCredentials("X", {"X": f"{USER}:{PASSWORD}"}))
    with pytest.raises(RegistryError):
        client.manifest_digest("app", "1.0.0")
    assert not any(s.path.startswith("/steal") for s in hostile2.seen)
    assert all("Authorization" not in s.headers for s in hostile2.seen)


def test_a_redirect_from_https_to_http_is_refused(hostile_tls: Hostile, hostile: Hostile, pki: PKI) -> None:
    hostile_tls.on("/v2/app/manifests/1.0.0", json_answer(302, b"", {"Location": f"http://{hostile.host}/x"}))
    client = RegistryClient(RegistrySettings(host=hostile_tls.host, ca_file=pki.ca_cert))
    with pytest.raises(RegistryProtocolError, match="from https to plain http"):
        client.manifest_digest("app", "1.0.0")
    assert hostile.seen == []


def test_credentials_are_scrubbed_from_every_message_the_client_builds() -> None:
    client = RegistryClient(RegistrySettings(host="r.example", credentials=EnvCredentials("X", {"X": f"{USER}:{PASSWORD}"})))
    client._credentials()
    text = f"a {PASSWORD} b {BASIC} c"
    assert client.scrub(text) == "a *** b *** c"
    assert Credentials(USER, PASSWORD).__repr__().count(PASSWORD) == 0


def test_a_finished_calls_deadline_never_cuts_a_later_call_on_the_same_connection(hostile: Hostile) -> None:
    # each answer takes 1.2 s; the first call's 2 s deadline passes while the second call, on the
    # same pooled connection, waits for its answer: that call must not be cut (nor retried)
    def slow(h: QuietHandler) -> None:
        time.sleep(1.2)
        h.send_body(200, b'{"name":"app","tags":["1"]}')

    hostile.on("/v2/app/tags/list", slow)
    client = plain(hostile, deadline=2.0)
    assert client.list_tags("app") == ["1"]
    assert client.list_tags("app") == ["1"]
    assert client.requests_made == 2 and len(hostile.seen) == 2


def test_huge_retry_after_is_not_waited_for() -> None:
    assert parse_retry_after("9" * 400) == float("inf")


def test_a_dripping_tls_handshake_ends_at_the_deadline(pki: PKI) -> None:
    # bounded by the connect timeout, which the client never sets beyond the time left
    # a TLS record header announcing 16 KB, then one byte at a time: the handshake never completes
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"\x16\x03\x03\x40\x00\x02\x00\x3f\xfc")  # a 16 KB ServerHello, never sent
                while not stop.wait(0.05):
                    try:
                        conn.sendall(b"\x00")
                    except OSError:
                        break

    threading.Thread(target=serve, daemon=True).start()
    try:
        host = f"127.0.0.1:{listener.getsockname()[1]}"
        client = RegistryClient(RegistrySettings(host=host, ca_file=pki.ca_cert, deadline=1.0), sleep=lambda s: None)
        got = bounded(lambda: client.list_tags("app"))
        assert isinstance(got, RegistryUnreachable) and "deadline" in str(got), got
    finally:
        stop.set()
        listener.close()
