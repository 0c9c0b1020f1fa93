"""The registry client reads the environment once, with requests' meaning: proxies per origin
(NO_PROXY honoured), REQUESTS_CA_BUNDLE when no caFile is set — never ~/.netrc."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import ClassVar

import pytest

from imagebot.registry import RegistryClient, RegistrySettings
from imagebot.registry.errors import RegistryError
from tests.fixtures.net import QuietHandler
from tests.fixtures.registry import RegistryServer

pytestmark = pytest.mark.registry


class _Proxy(QuietHandler):
    """A plain-HTTP forward proxy that records the absolute URLs it was asked for."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        req = urllib.request.Request(self.path, headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as resp:
            body = resp.read()
            self.send_body(resp.status, body, {"X-Via-Test-Proxy": "1"}, resp.headers.get("Content-Type", ""))


@pytest.fixture
def proxy() -> Iterator[str]:
    _Proxy.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_proxy_from_the_environment_is_used_and_no_proxy_bypasses_it(
    registry_plain: RegistryServer, proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry_plain.pusher().push("proxied/app", ["1.0.0", "1.1.0"])
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    settings = RegistrySettings(host=registry_plain.host, plain_http=True)
    assert sorted(RegistryClient(settings).list_tags("proxied/app")) == ["1.0.0", "1.1.0"]
    assert _Proxy.seen and all(u.startswith(f"http://{registry_plain.host}/v2/proxied/app/") for u in _Proxy.seen)

    _Proxy.seen = []
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert sorted(RegistryClient(settings).list_tags("proxied/app")) == ["1.0.0", "1.1.0"]
    assert _Proxy.seen == []


def test_requests_ca_bundle_is_trusted_when_no_ca_file_is_set(
    registry_basic: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = RegistrySettings(host=registry_basic.host)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(registry_basic.pki.ca_cert))
    with pytest.raises(RegistryError) as caught:  # trusted, so the answer is the registry's own 401
        RegistryClient(settings).list_tags("basic/none")
    assert "TLS" not in str(caught.value) and "certificate" not in str(caught.value), caught.value

    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(RegistryError) as caught:  # not trusted without it
        RegistryClient(settings).list_tags("basic/none")
    assert "TLS" in str(caught.value) or "certificate" in str(caught.value), caught.value
