"""A Flux certSecretRef applied to the registry client from memory (RegistrySettings.tls), against Debian's
docker-registry with our own CA: ``ca.crt`` makes its certificate verify, ``tls.crt`` + ``tls.key`` answer a registry
that requires a client certificate; REQUESTS_CA_BUNDLE cannot replace the CA; the key is never left on disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import certifi
import pytest

from gitopskit.fluxsecrets import TLSMaterial
from imagebot.errors import ConfigError, RegistryError
from imagebot.registry.client import RegistryClient, RegistrySettings
from tests.fixtures.registry import RegistryServer


def material(registry: RegistryServer, *, ca: bool = True, client: bool = True) -> TLSMaterial:
    pki = registry.pki
    assert pki.client_cert is not None and pki.client_key is not None
    return TLSMaterial(
        pki.ca_cert.read_text() if ca else "",
        pki.client_cert.read_text() if client else "",
        pki.client_key.read_text() if client else "",
    )


def _tls_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("imagebot-tls-*")}


def test_ca_and_client_certificate_from_memory_reach_a_registry_requiring_mutual_tls(
    registry_mtls: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"mtls/app{os.urandom(3).hex()}"
    registry_mtls.pusher().push(name, ["1.0.0", "1.1.0"])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # requests would put this bundle in place of verify=True
    before = _tls_dirs()
    client = RegistryClient(RegistrySettings(registry_mtls.host, tls=material(registry_mtls), deadline=20))
    assert _tls_dirs() == before, "the client key is on disk only while ssl loads it"
    assert sorted(client.tag_listing(name).tags) == ["1.0.0", "1.1.0"]


@pytest.mark.parametrize(
    ("ca", "client", "needle"),
    [(True, False, "TLS"), (False, True, "TLS verification failed")],
    ids=["no-client-certificate", "no-ca"],
)
def test_without_the_client_certificate_or_the_ca_the_registry_is_not_reached(
    registry_mtls: RegistryServer, ca: bool, client: bool, needle: str
) -> None:
    c = RegistryClient(RegistrySettings(registry_mtls.host, tls=material(registry_mtls, ca=ca, client=client), deadline=10))
    with pytest.raises(RegistryError) as info:
        c.tag_listing("mtls/none")
    assert needle in str(info.value)


def test_a_key_that_does_not_match_the_certificate_is_a_config_error_naming_neither(registry_mtls: RegistryServer) -> None:
    pki = registry_mtls.pki
    wrong = TLSMaterial(pki.ca_cert.read_text(), pki.server_cert.read_text(), pki.token_key.read_text())
    with pytest.raises(ConfigError) as info:
        RegistryClient(RegistrySettings(registry_mtls.host, tls=wrong))
    assert "client certificate and key" in str(info.value) and "BEGIN" not in str(info.value)
