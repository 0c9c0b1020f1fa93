"""The registry client and CLI against Debian's real docker-registry in three auth modes."""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import pytest

from imagebot.cli import main
from imagebot.registry import Platform, RegistryClient, RegistrySettings
from imagebot.registry.auth import DockerConfigCredentials, FileCredentials
from imagebot.registry.errors import RegistryAuthError, RegistryNotFound, RegistryUnreachable
from tests.fixtures.registry import PASSWORD, USER, RegistryServer

pytestmark = pytest.mark.registry


def run(
    argv: list[str], env: dict[str, str] | None = None, monkeypatch: pytest.MonkeyPatch | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def write_docker_config(d: Path, host: str, user: str, password: str) -> None:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (d / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))


def test_plain_http_registry_lists_unsorted_tags_sorted_and_selects(registry_plain: RegistryServer) -> None:
    tags = [f"1.{i}.0" for i in random.Random(3).sample(range(30), 30)] + ["latest", "1.31.0-rc.1"]
    registry_plain.pusher().push("plain/app", tags)
    code, out, err = run(["tags", f"{registry_plain.host}/plain/app", "--insecure-registry", registry_plain.host])
    assert code == 0, err
    assert out.splitlines() == sorted(tags)
    code, out, err = run(
        ["select", "--image", f"{registry_plain.host}/plain/app", "--semver", "^1", "--insecure-registry", registry_plain.host]
    )
    assert (code, out) == (0, "1.29.0\n"), err


def test_plain_http_needs_explicit_opt_in(registry_plain: RegistryServer) -> None:
    code, _, err = run(["tags", f"{registry_plain.host}/plain/app"])
    assert code == 3
    assert registry_plain.host in err and ("TLS" in err or "unreachable" in err)


def test_tls_basic_auth_with_docker_config_and_ca_file(registry_basic: RegistryServer, docker_config: Path) -> None:
    digests = registry_basic.pusher().push("basic/app", ["1.0.0", "1.1.0"], distinct=True)
    write_docker_config(docker_config, registry_basic.host, USER, PASSWORD)
    args = ["--ca-file", str(registry_basic.pki.ca_cert), "--docker-config", str(docker_config)]
    code, out, err = run(["tags", f"{registry_basic.host}/basic/app", *args])
    assert (code, out) == (0, "1.0.0\n1.1.0\n"), err
    code, out, err = run(["digest", f"{registry_basic.host}/basic/app:1.1.0", *args])
    assert (code, out) == (0, digests["1.1.0"] + "\n"), err


def test_wrong_password_is_exit_3_naming_registry_and_cause_without_the_secret(
    registry_basic: RegistryServer, docker_config: Path
) -> None:
    write_docker_config(docker_config, registry_basic.host, USER, "wrong-password-xyz")
    code, out, err = run(
        [
            "tags",
            f"{registry_basic.host}/basic/app",
            "--ca-file",
            str(registry_basic.pki.ca_cert),
            "--docker-config",
            str(docker_config),
        ]
    )
    assert code == 3 and out == ""
    assert registry_basic.host in err and "credentials rejected" in err
    assert "wrong-password-xyz" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_credentials_say_so(registry_basic: RegistryServer, docker_config: Path) -> None:
    (docker_config / "config.json").write_text("{}")
    code, _, err = run(
        [
            "tags",
            f"{registry_basic.host}/basic/app",
            "--ca-file",
            str(registry_basic.pki.ca_cert),
            "--docker-config",
            str(docker_config),
        ]
    )
    assert code == 3 and "authentication required" in err


def test_token_auth_flow_caches_tokens(registry_token: RegistryServer, tmp_path: Path) -> None:
    registry_token.pusher().push("tok/app", ["2.0.0", "2.1.0", "3.0.0-beta.1"])
    creds = tmp_path / "creds"
    creds.write_text(f"{USER}:{PASSWORD}\n")
    client = RegistryClient(
        RegistrySettings(host=registry_token.host, ca_file=registry_token.pki.ca_cert, credentials=FileCredentials(creds))
    )
    handler = registry_token.token.httpd.RequestHandlerClass  # type: ignore[union-attr]
    before = handler.requests_seen
    assert sorted(client.list_tags("tok/app")) == ["2.0.0", "2.1.0", "3.0.0-beta.1"]
    assert client.manifest_digest("tok/app", "2.1.0").startswith("sha256:")
    client.list_tags("tok/app")
    assert handler.requests_seen - before == 1, "one token for the scope, reused until it expires"


def test_token_auth_wrong_password_and_unknown_repository(registry_token: RegistryServer, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.write_text(f"{USER}:nope")
    bad = RegistryClient(
        RegistrySettings(host=registry_token.host, ca_file=registry_token.pki.ca_cert, credentials=FileCredentials(creds))
    )
    with pytest.raises(RegistryAuthError, match="token service refused user 'bot'"):
        bad.list_tags("tok/app")
    creds.write_text(f"{USER}:{PASSWORD}")
    good = RegistryClient(
        RegistrySettings(host=registry_token.host, ca_file=registry_token.pki.ca_cert, credentials=FileCredentials(creds))
    )
    with pytest.raises(RegistryNotFound, match="not found"):
        good.list_tags("tok/nothing-here")


def test_unknown_repository_is_exit_3(registry_plain: RegistryServer) -> None:
    code, _, err = run(["tags", f"{registry_plain.host}/no/such", "--insecure-registry", registry_plain.host])
    assert code == 3 and "not found" in err and registry_plain.host in err


def test_digest_of_index_and_of_a_platform(registry_plain: RegistryServer) -> None:
    index, per_platform = registry_plain.pusher().push_index(
        "multi/app", "1.0.0", [("linux", "amd64", None), ("linux", "arm64", "v8")]
    )
    client = RegistryClient(RegistrySettings(host=registry_plain.host, plain_http=True))
    assert client.manifest_digest("multi/app", "1.0.0") == index
    assert client.manifest_digest("multi/app", "1.0.0", Platform.parse("linux/arm64/v8")) == per_platform["linux/arm64/v8"]
    assert client.manifest_digest("multi/app", "1.0.0", Platform.parse("linux/amd64")) == per_platform["linux/amd64"]
    with pytest.raises(RegistryNotFound, match="no manifest for platform linux/s390x"):
        client.manifest_digest("multi/app", "1.0.0", Platform.parse("linux/s390x"))
    code, out, err = run(
        [
            "digest",
            f"{registry_plain.host}/multi/app:1.0.0",
            "--platform",
            "linux/arm64/v8",
            "--json",
            "--insecure-registry",
            registry_plain.host,
        ]
    )
    assert code == 0 and json.loads(out)["digest"] == per_platform["linux/arm64/v8"], err


def test_tls_without_the_ca_fails_with_a_hint(registry_basic: RegistryServer) -> None:
    client = RegistryClient(RegistrySettings(host=registry_basic.host))
    with pytest.raises(RegistryUnreachable, match="--ca-file"):
        client.list_tags("basic/app")


def test_docker_config_cred_helper_is_used(
    registry_basic: RegistryServer, docker_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper_dir = tmp_path / "bin"
    helper_dir.mkdir()
    helper = helper_dir / "docker-credential-testhelper"
    helper.write_text(
        f'#!/bin/sh\nread server\necho \'{{"ServerURL":"\'$server\'","Username":"{USER}","Secret":"{PASSWORD}"}}\'\n'
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper_dir}:{__import__('os').environ['PATH']}")
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {registry_basic.host: "testhelper"}}))
    creds = DockerConfigCredentials(docker_config).lookup(registry_basic.host)
    assert creds is not None and creds.username == USER and PASSWORD not in repr(creds)
