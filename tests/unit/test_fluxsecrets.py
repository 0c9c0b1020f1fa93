"""Flux's Secret formats: realistic Secrets as Flux's docs and `kubectl create secret` write them, and hostile ones.

Every error names the Secret and the key and never echoes a value."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitopskit.errors import KitError
from gitopskit.fluxsecrets import (
    MAX_SECRET_BYTES,
    GitAuthKind,
    SecretError,
    SigningKeyType,
    docker_config,
    git_credentials,
    normalize_registry,
    secret_from_object,
    signing_key,
    tls_material,
)

SECRET_VALUE = "s3cr3t-Sentinel-Value"
CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI" + SECRET_VALUE + "\n-----END EC PRIVATE KEY-----\n"
OPENSSH = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA" + SECRET_VALUE + "\n-----END OPENSSH PRIVATE KEY-----\n"
PGP = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQdGBGV" + SECRET_VALUE + "\n=abcd\n-----END PGP PRIVATE KEY BLOCK-----\n"
KNOWN_HOSTS = (
    "github.com ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9\n"
    "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
)


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def secret(data: dict[str, str | bytes], *, type_: str = "Opaque", name: str = "creds") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "flux-system"},
        "type": type_,
        "data": {k: b64(v) for k, v in data.items()},
    }


def dockerconfig(auths: dict[str, Any]) -> dict[str, Any]:
    return secret({".dockerconfigjson": json.dumps({"auths": auths})}, type_="kubernetes.io/dockerconfigjson", name="regcred")


def fails(obj: dict[str, Any], fn: Any, *args: Any) -> str:
    with pytest.raises(SecretError) as info:
        fn(secret_from_object(obj), *args)
    msg = str(info.value)
    assert SECRET_VALUE not in msg and "hunter2" not in msg, "an error never echoes a secret value"
    assert isinstance(info.value, KitError)
    return msg


# --- dockerconfigjson -----------------------------------------------------------------------------


def test_docker_config_as_kubectl_create_secret_docker_registry_writes_it() -> None:
    # `kubectl create secret docker-registry` writes username, password and auth; docker login writes only auth
    s = dockerconfig(
        {
            "https://index.docker.io/v1/": {"auth": b64("hubuser:hunter2")},
            "ghcr.io": {"username": "bot", "password": "ghp_x", "auth": b64("bot:ghp_x")},
            "http://127.0.0.1:5000": {"username": "ci", "password": "pw:with:colons"},
            "*.azurecr.io": {"identitytoken": "eyJ0"},
            "registry.example.com/team-a": {"auth": b64("team-a:pa")},
            "registry.example.com": {"auth": b64("other:pb")},
        }
    )
    cfg = docker_config(secret_from_object(s))
    assert cfg.secret == "flux-system/regcred"
    hub = cfg.lookup("docker.io")
    assert hub is not None and (hub.username, hub.password) == ("hubuser", "hunter2")
    assert cfg.lookup("index.docker.io") == hub and cfg.lookup("registry-1.docker.io") == hub
    assert cfg.lookup("GHCR.io") is not None
    local = cfg.lookup("127.0.0.1:5000")
    assert local is not None and local.password == "pw:with:colons"
    assert cfg.lookup("127.0.0.1:5001") is None, "a port is part of the host"
    acr = cfg.lookup("myreg.azurecr.io")
    assert acr is not None and acr.username == "<token>"
    assert cfg.lookup("a.b.azurecr.io") is None, "* matches one DNS label, as the kubelet does"
    team = cfg.lookup("registry.example.com", "team-a/app")
    other = cfg.lookup("registry.example.com", "team-ab/app")
    assert team is not None and team.username == "team-a", "the longest path prefix wins"
    assert other is not None and other.username == "other", "a path prefix matches whole components"
    assert "hunter2" not in repr(cfg) and "hunter2" not in repr(hub)


def test_legacy_dockercfg_is_read_too() -> None:
    s = secret({".dockercfg": json.dumps({"quay.io": {"auth": b64("u:p")}})}, type_="kubernetes.io/dockercfg")
    found = docker_config(secret_from_object(s)).lookup("quay.io")
    assert found is not None and found.username == "u"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("https://index.docker.io/v1/", ("docker.io", "")),
        ("index.docker.io", ("docker.io", "")),
        ("docker.io", ("docker.io", "")),
        ("registry-1.docker.io", ("docker.io", "")),
        ("https://GHCR.IO", ("ghcr.io", "")),
        ("http://localhost:5000/v2/", ("localhost:5000", "")),
        ("registry.example.com/team/", ("registry.example.com", "team")),
        ("[::1]:5000", ("[::1]:5000", "")),
    ],
)
def test_registry_keys_are_normalised_like_docker(key: str, expected: tuple[str, str]) -> None:
    assert normalize_registry(key) == expected


@pytest.mark.parametrize(
    ("auths", "needle"),
    [
        ({"ghcr.io": {"auth": "%%%"}}, "auths['ghcr.io'].auth is not base64"),
        ({"ghcr.io": {"auth": b64("no-colon-" + SECRET_VALUE)}}, "auths['ghcr.io'].auth is not base64 of 'username:password'"),
        ({"ghcr.io": {"auth": b64(b"\xff\xfe:x")}}, "auths['ghcr.io'].auth"),
        ({"ghcr.io": {"username": "u"}}, "auths['ghcr.io'].password is missing"),
        ({"ghcr.io": {}}, "auths['ghcr.io'] has no credentials"),
        ({"ghcr.io": "u:" + SECRET_VALUE}, "auths['ghcr.io'] must be an object"),
        ({"ghcr.io": {"password": 12}}, "auths['ghcr.io'].password must be a string"),
        ({"user@evil.example": {"auth": b64("u:p")}}, "not a registry host"),
        (
            {"https://index.docker.io/v1/": {"auth": b64("a:1")}, "docker.io": {"auth": b64("b:2")}},
            "both name docker.io with different credentials",
        ),
    ],
)
def test_malformed_docker_config_names_secret_and_key(auths: dict[str, Any], needle: str) -> None:
    msg = fails(dockerconfig(auths), docker_config)
    assert "Secret flux-system/regcred" in msg and needle in msg


def test_docker_config_missing_or_not_json() -> None:
    assert "key '.dockerconfigjson' is missing" in fails(secret({"username": "x"}, name="regcred"), docker_config)
    bad = secret({".dockerconfigjson": "{" + SECRET_VALUE}, name="regcred")
    assert "key '.dockerconfigjson' is not valid JSON" in fails(bad, docker_config)
    notmap = secret({".dockerconfigjson": json.dumps({"auths": ["x"]})}, name="regcred")
    assert "must be an object with an 'auths' map" in fails(notmap, docker_config)
    deep = secret({".dockerconfigjson": "[" * 100_000}, name="regcred")
    assert "not valid JSON" in fails(deep, docker_config)


# --- the Secret object itself -------------------------------------------------------------------------


def test_data_is_strict_base64_and_bounded() -> None:
    bad = {"metadata": {"name": "creds", "namespace": "ns"}, "data": {"password": SECRET_VALUE + "!"}}
    assert "Secret ns/creds: key 'password' is not valid base64" in fails(bad, lambda s: s)
    unicode = {"metadata": {"name": "creds", "namespace": "ns"}, "data": {"password": "aGk=é"}}
    assert "key 'password' is not valid base64" in fails(unicode, lambda s: s)
    wrapped = {"metadata": {"name": "c"}, "data": {"k": "aGVs\nbG8="}}  # base64 -w76 output is accepted
    assert secret_from_object(wrapped).data["k"] == b"hello"
    huge = {"metadata": {"name": "big", "namespace": "ns"}, "data": {"a": b64(b"x" * (MAX_SECRET_BYTES // 2 + 1)),
                                                                     "b": b64(b"y" * (MAX_SECRET_BYTES // 2 + 1))}}  # fmt: skip
    assert "larger than" in fails(huge, lambda s: s) and "'b'" in fails(huge, lambda s: s)
    enormous = {"metadata": {"name": "big", "namespace": "ns"}, "data": {"a": "A" * (3 * MAX_SECRET_BYTES)}}
    assert "key 'a' is larger than" in fails(enormous, lambda s: s)
    assert "must be a map" in fails({"metadata": {"name": "x"}, "data": ["a"]}, lambda s: s)
    assert "must be a map" in fails({"metadata": {"name": "x"}, "data": {"a": 1}}, lambda s: s)


def test_string_data_of_a_manifest_wins_over_data() -> None:
    obj = {"metadata": {"name": "x"}, "data": {"username": b64("old")}, "stringData": {"username": "new", "password": "p"}}
    creds = git_credentials(secret_from_object(obj), "https://git.example/repo.git")
    assert (creds.kind, creds.username, creds.password) == (GitAuthKind.BASIC, "new", "p")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=20), st.one_of(st.text(max_size=50), st.binary(max_size=50).map(b64))))
def test_any_data_map_decodes_or_fails_cleanly(data: dict[str, str]) -> None:
    obj = {"metadata": {"name": "fuzz", "namespace": "ns"}, "data": data}
    try:
        s = secret_from_object(obj)
    except SecretError as exc:
        assert str(exc).startswith("Secret ns/fuzz: ")
        return
    for fn in (docker_config, tls_material, signing_key):
        try:
            fn(s)
        except SecretError as exc:
            assert "Secret ns/fuzz" in str(exc)
    try:
        git_credentials(s, "ssh://git@host/repo")
    except SecretError as exc:
        assert "Secret ns/fuzz" in str(exc)


# --- Git -------------------------------------------------------------------------------------------------


def test_git_basic_auth_bearer_and_ssh() -> None:
    basic = secret_from_object(secret({"username": "git", "password": "hunter2\n", "ca.crt": CERT}))
    c = git_credentials(basic, "https://git.example/org/repo")
    assert (c.kind, c.username, c.password, c.ca) == (GitAuthKind.BASIC, "git", "hunter2\n", CERT)
    assert "hunter2" not in repr(c)
    bearer = git_credentials(secret_from_object(secret({"bearerToken": "tok"})), "https://git.example/r")
    assert (bearer.kind, bearer.bearer_token) == (GitAuthKind.BEARER, "tok")
    ssh = git_credentials(
        secret_from_object(secret({"identity": OPENSSH, "known_hosts": KNOWN_HOSTS, "password": "pp"})),
        "ssh://git@127.0.0.1:2222/repo.git",
    )
    assert (ssh.kind, ssh.identity, ssh.known_hosts, ssh.password) == (GitAuthKind.SSH, OPENSSH, KNOWN_HOSTS, "pp")
    scp = git_credentials(secret_from_object(secret({"identity": KEY, "known_hosts": KNOWN_HOSTS})), "git@github.com:o/r")
    assert scp.kind is GitAuthKind.SSH
    only_ca = git_credentials(secret_from_object(secret({"ca.crt": CERT})), "https://git.example/r")
    assert (only_ca.kind, only_ca.ca) == (GitAuthKind.NONE, CERT)


@pytest.mark.parametrize(
    ("data", "url", "needle"),
    [
        ({"username": "git"}, "https://h/r", "key 'password' is missing"),
        ({"password": SECRET_VALUE}, "https://h/r", "key 'username' is missing (key 'password' is set)"),
        ({"username": " ", "password": SECRET_VALUE}, "https://h/r", "key 'username' is empty"),
        ({"bearerToken": SECRET_VALUE, "username": "u", "password": "p"}, "https://h/r", "mutually exclusive"),
        ({"username": "u", "password": b"\xff" + SECRET_VALUE.encode()}, "https://h/r", "key 'password' is not UTF-8 text"),
        ({"username": "u", "password": "p", "ca.crt": SECRET_VALUE}, "https://h/r", "key 'ca.crt' is not a PEM certificate"),
        ({"known_hosts": KNOWN_HOSTS}, "ssh://git@h/r", "key 'identity' is missing"),
        ({"identity": OPENSSH}, "ssh://git@h/r", "key 'known_hosts' is missing"),
        ({"identity": SECRET_VALUE, "known_hosts": KNOWN_HOSTS}, "ssh://git@h/r", "key 'identity' is not a PEM or OpenSSH"),
        ({"identity": OPENSSH, "known_hosts": "h " + SECRET_VALUE}, "ssh://git@h/r", "key 'known_hosts' line 1"),
        ({"identity": OPENSSH, "known_hosts": ""}, "ssh://git@h/r", "key 'known_hosts' is empty"),
        ({"username": "u", "password": "p"}, "file:///srv/repo", "scheme 'file' takes no credentials"),
    ],
)
def test_malformed_git_secrets_name_the_key(data: dict[str, str | bytes], url: str, needle: str) -> None:
    msg = fails(secret(data), git_credentials, url)
    assert msg.startswith("Secret flux-system/creds: ") and needle in msg


# --- TLS -------------------------------------------------------------------------------------------------


def test_cert_secret_ref_formats() -> None:
    assert tls_material(secret_from_object(secret({"ca.crt": CERT}))).ca == CERT
    mtls = tls_material(secret_from_object(secret({"ca.crt": CERT, "tls.crt": CERT, "tls.key": KEY}, type_="kubernetes.io/tls")))
    assert (mtls.cert, mtls.key) == (CERT, KEY) and SECRET_VALUE not in repr(mtls)
    legacy = tls_material(secret_from_object(secret({"caFile": CERT, "certFile": CERT, "keyFile": KEY})))
    assert (legacy.ca, legacy.cert, legacy.key) == (CERT, CERT, KEY)
    assert "key 'tls.key' is missing" in fails(secret({"tls.crt": CERT}), tls_material)
    assert "key 'tls.crt' is missing" in fails(secret({"tls.key": KEY}), tls_material)
    assert "key 'tls.key' is not a PEM private key" in fails(secret({"tls.crt": CERT, "tls.key": SECRET_VALUE}), tls_material)
    assert "key 'ca.crt' is missing" in fails(secret({"other": "x"}), tls_material)
    assert "key 'ca.crt' is empty" in fails(secret({"ca.crt": "\n"}), tls_material)


# --- signing keys --------------------------------------------------------------------------------------


def test_signing_key_gpg_and_ssh() -> None:
    gpg = signing_key(secret_from_object(secret({"git.asc": PGP, "passphrase": "pp"})))
    assert (gpg.type, gpg.key, gpg.passphrase) == (SigningKeyType.GPG, PGP, "pp") and SECRET_VALUE not in repr(gpg)
    assert signing_key(secret_from_object(secret({"git.asc": PGP}))).passphrase == ""
    ssh = signing_key(secret_from_object(secret({"identity": OPENSSH, "password": "pp"})), "ssh")
    assert (ssh.type, ssh.passphrase) == (SigningKeyType.SSH, "pp")
    assert "key 'git.asc' is missing" in fails(secret({"identity": OPENSSH}), signing_key)
    assert "not an ASCII-armored OpenPGP private key" in fails(secret({"git.asc": SECRET_VALUE}), signing_key)
    public = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n" + SECRET_VALUE + "\n-----END PGP PUBLIC KEY BLOCK-----"
    assert "not an ASCII-armored OpenPGP private key" in fails(secret({"git.asc": public}), signing_key)
    assert "key 'git.asc' is not UTF-8" in fails(secret({"git.asc": b"\x80\x81"}), signing_key)
    assert "key 'identity' is not an OpenSSH private key" in fails(secret({"identity": KEY}), signing_key, "ssh")
    assert "signingKey.type 'x509'" in fails(secret({"git.asc": PGP}), signing_key, "x509")
