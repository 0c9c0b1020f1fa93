"""Where a receiver cannot listen is one clear ListenError (both halves turn it into exit 2), never an OSError."""

from __future__ import annotations

import socket

import pytest

from gitopskit import httpd
from gitopskit.errors import ListenError
from imagebot.errors import ExitCode, exit_code_of


class Hello(httpd.Handler):
    def do_GET(self) -> None:
        self.send(200, b"hi\n")


def test_a_taken_port_and_a_bad_address_are_listen_errors() -> None:
    held = socket.create_server(("127.0.0.1", 0))
    try:
        port = held.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"):
            httpd.start(f"127.0.0.1:{port}", Hello)
    finally:
        held.close()
    for bad in ("127.0.0.1", "127.0.0.1:http", "127.0.0.1:99999", "127.0.0.1:٨٠"):
        with pytest.raises(ListenError, match="give HOST:PORT"):
            httpd.start(bad, Hello)


def test_imagebot_maps_a_listen_error_to_its_usage_exit_code() -> None:
    assert exit_code_of(ListenError("cannot listen on x")) is ExitCode.USAGE
