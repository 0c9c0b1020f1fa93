"""File mode (`imagebot run --config` Flux objects) honours an ImagePolicy's `imagebot.dev/cosign-secret` as the
controller does: with the Secret among the loaded files only a tag signed by one of its `*.pub` keys is selected;
without it, `config validate` warns and `run` fails naming the Secret — never an unsigned tag selected silently."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagebot.cli import main
from tests.fixtures.cosign import Cosign
from tests.fixtures.git import GitHttp, make_bare, read_file
from tests.fixtures.registry import PASSWORD, USER, RegistryServer
from tests.integration.test_flux_file_mode import DEPLOY, objects, secrets

pytestmark = pytest.mark.git

FILE = "clusters/production/podinfo.yaml"


@pytest.fixture
def gated(registry_basic: RegistryServer, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """podinfo 5.0.0 (deployed), 5.0.1 signed with the release key, 5.0.3 unsigned; the policy annotated."""
    name = f"flux/signed{os.urandom(3).hex()}"
    image = f"{registry_basic.host}/{name}"
    d = registry_basic.pusher().push(name, ["5.0.0", "5.0.1", "5.0.3"], distinct=True)
    tool = Cosign(tmp_path / "cosign", ca=registry_basic.pki.ca_cert, user=USER, password=PASSWORD)
    key = tool.generate_key_pair("release")
    tool.sign(f"{image}@{d['5.0.1']}", key)
    bare = make_bare(git_http.root, f"f{os.urandom(4).hex()}", {FILE: DEPLOY.format(image=image)})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    docs = objects(registry_basic, git_http.url(bare), image)
    policy = next(o for o in docs if o["kind"] == "ImagePolicy")
    policy["metadata"]["annotations"] = {"imagebot.dev/cosign-secret": "cosign-pub"}
    docs += list(secrets(registry_basic).values())
    flux_file = tmp_path / "flux.yaml"
    flux_file.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return {"image": image, "bare": bare, "flux": flux_file, "tmp": tmp_path, "pub": key.public.read_text()}


def cosign_secret(s: dict[str, Any], data: dict[str, str]) -> Path:
    f = s["tmp"] / "cosign-secret.yaml"
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cosign-pub", "namespace": "flux-system"},
           "stringData": data}  # fmt: skip
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    return f


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_with_the_secret_loaded_the_newest_signed_tag_is_committed(
    gated: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli("run", "--once", "--config", str(gated["flux"]), str(cosign_secret(gated, {"cosign.pub": gated["pub"]})))
    assert code == 0, err + capfd.readouterr().err
    text = read_file(gated["bare"], "main", FILE)
    assert f"{gated['image']}:5.0.1 " in text, "5.0.3 is unsigned: the newest signed tag is 5.0.1"


def test_without_the_secret_validate_warns_and_run_fails_naming_it_with_nothing_written(
    gated: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli("config", "validate", str(gated["flux"]))
    assert code == 0, err
    assert "1 warning(s)" in out
    assert "ImagePolicy flux-system/podinfo.metadata.annotations[imagebot.dev/cosign-secret]: Secret flux-system/cosign-pub " \
           "(cosign public keys) is read from the cluster: not among the loaded files" in err, err  # fmt: skip
    code, _, err = cli("run", "--once", "--config", str(gated["flux"]))
    text = err + capfd.readouterr().err
    assert code == 2, text
    assert "ImagePolicy flux-system/podinfo: metadata.annotations[imagebot.dev/cosign-secret]: a tag must be verified" in text
    assert "Traceback" not in text
    assert f"{gated['image']}:5.0.0 " in read_file(gated["bare"], "main", FILE), "nothing written"


def test_a_loaded_secret_without_a_public_key_is_a_validation_error(gated: dict[str, Any]) -> None:
    code, _, err = cli("config", "validate", str(gated["flux"]), str(cosign_secret(gated, {"cosign.key": "private"})))
    assert code == 2
    assert "ImagePolicy flux-system/podinfo.metadata.annotations[imagebot.dev/cosign-secret]: Secret flux-system/cosign-pub: " \
           "no *.pub entry" in err, err  # fmt: skip
