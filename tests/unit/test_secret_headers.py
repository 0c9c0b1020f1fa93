"""A Secret value that becomes an HTTP header (a GitRepository's ``bearerToken``) carries no line break: git hands
``http.extraHeader`` to curl as it is, so ``tok\\r\\nX-Other: 1`` was a second header on the wire, and the common
trailing newline (``--from-file`` of an ``echo``ed file) ended the request head early. Refused where it enters,
naming the Secret and key, never the value; the request a clean token makes is unchanged."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading

import pytest

from gitopskit.fluxsecrets import GitAuthKind, SecretError, git_credentials, secret_from_object
from gitopskit.workspace import flux_git_auth

SENTINEL = "s3cr3t-Sentinel-Token"


def secret(data: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "flux-system"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}  # fmt: skip


@pytest.mark.parametrize(
    "token",
    [SENTINEL + "\n", SENTINEL + "\r\nX-Injected: 1", "a\x00" + SENTINEL, SENTINEL + "\t", SENTINEL + "\x7f"],
    ids=["trailing_newline", "crlf_second_header", "nul", "tab", "del"],
)
def test_a_bearer_token_with_a_line_break_or_control_character_is_refused_naming_the_key(token: str) -> None:
    with pytest.raises(SecretError) as err:
        git_credentials(secret_from_object(secret({"bearerToken": token})), "https://git.example/r.git")
    msg = str(err.value)
    assert msg.startswith("Secret flux-system/creds: key 'bearerToken' holds a line break or control character"), msg
    assert SENTINEL not in msg


def _headers_git_sends(token: str) -> bytes:
    """The request head `git ls-remote` sends with the token's header, as a server on 127.0.0.1 receives it."""
    srv = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = srv.accept()
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := conn.recv(4096)):
            data += chunk
        got.append(data)
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{srv.getsockname()[1]}/r.git"
    creds = git_credentials(secret_from_object(secret({"bearerToken": token})), url)
    assert creds.kind is GitAuthKind.BEARER
    env = {**os.environ, **flux_git_auth(creds, None).environment(url)}  # type: ignore[arg-type]
    subprocess.run(["git", "ls-remote", url], env=env, capture_output=True, timeout=60)
    t.join(30)
    srv.close()
    return got[0]


def test_a_clean_bearer_token_is_one_authorization_header_on_the_wire() -> None:
    head = _headers_git_sends(SENTINEL)
    assert f"\r\nAuthorization: Bearer {SENTINEL}\r\n".encode() in head
    assert head.count(b"\r\n\r\n") == 1 and b"\n\r\n" not in head.split(b"\r\n\r\n")[0]
