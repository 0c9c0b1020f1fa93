"""`imagebot run --once` on Flux's objects as files, against a real registry (TLS with our own CA + htpasswd) and a
real git remote (smart HTTP + basic auth): with the Secrets as manifests beside them the whole loop runs and the
commit carries the rendered messageTemplate; without them, the run fails (exit 2) only where a Secret is needed,
with a line naming the object and field."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import certifi
import pytest
import yaml

from imagebot.cli import main
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, git, make_bare, read_file
from tests.fixtures.registry import PASSWORD, USER, RegistryServer

pytestmark = pytest.mark.git

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: apps
spec:
  template:
    spec:
      containers:
      - name: podinfo
        image: {image}:5.0.0 # {{"$imagepolicy": "flux-system:podinfo"}}
"""
TEMPLATE = """Automated image update

Automation name: {{ .AutomationObject }}

{{ range $filename, $objchange := .Changed.FileChanges -}}
- File: {{ $filename }}
{{- range $obj, $changes := $objchange }}
  - Object: {{ $obj.Kind }}/{{ $obj.Namespace }}/{{ $obj.Name }}
    Changes:
{{- range $_ , $change := $changes }}
    - {{ $change.OldValue }} -> {{ $change.NewValue }} ({{ $change.Setter }})
{{ end -}}
{{ end -}}
{{ end -}}
"""


def objects(registry: RegistryServer, url: str, image: str) -> list[dict[str, Any]]:
    meta = lambda name: {"name": name, "namespace": "flux-system"}  # noqa: E731
    return [
        {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": meta("fleet"),
         "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}, "secretRef": {"name": "git-auth"}}},
        {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository", "metadata": meta("podinfo"),
         "spec": {"image": image, "interval": "5m", "secretRef": {"name": "regcred"},
                  "certSecretRef": {"name": "registry-ca"}}},
        {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImagePolicy", "metadata": meta("podinfo"),
         "spec": {"imageRepositoryRef": {"name": "podinfo"}, "policy": {"semver": {"range": "5.0.x"}}}},
        {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageUpdateAutomation", "metadata": meta("fleet"),
         "spec": {"interval": "30m", "sourceRef": {"kind": "GitRepository", "name": "fleet"},
                  "git": {"checkout": {"ref": {"branch": "main"}},
                          "commit": {"author": {"name": "fluxcdbot", "email": "fluxcdbot@users.noreply.github.com"},
                                     "messageTemplate": TEMPLATE},
                          "push": {"branch": "main"}},
                  "update": {"path": "./clusters/production", "strategy": "Setters"}}},
    ]  # fmt: skip


def secrets(registry: RegistryServer) -> dict[str, dict[str, Any]]:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    meta = lambda name: {"name": name, "namespace": "flux-system"}  # noqa: E731
    return {
        "git-auth": {"apiVersion": "v1", "kind": "Secret", "metadata": meta("git-auth"),
                     "stringData": {"username": GIT_USER, "password": GIT_PASSWORD}},
        "regcred": {"apiVersion": "v1", "kind": "Secret", "metadata": meta("regcred"), "type": "kubernetes.io/dockerconfigjson",
                    "stringData": {".dockerconfigjson": json.dumps({"auths": {registry.host: {"auth": auth}}})}},
        "registry-ca": {"apiVersion": "v1", "kind": "Secret", "metadata": meta("registry-ca"),
                        "stringData": {"ca.crt": registry.pki.ca_cert.read_text()}},
    }  # fmt: skip


@pytest.fixture
def setup(registry_basic: RegistryServer, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    name = f"flux/podinfo{os.urandom(3).hex()}"
    image = f"{registry_basic.host}/{name}"
    registry_basic.pusher().push(name, ["5.0.0", "5.0.3", "5.1.0"])
    bare = make_bare(git_http.root, f"f{os.urandom(4).hex()}", {"clusters/production/podinfo.yaml": DEPLOY.format(image=image)})
    monkeypatch.chdir(tmp_path)  # file mode keeps its state file in the working directory
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    flux_file = tmp_path / "flux.yaml"
    flux_file.write_text(yaml.safe_dump_all(objects(registry_basic, git_http.url(bare), image), sort_keys=False))
    url = git_http.url(bare)
    return {"image": image, "bare": bare, "url": url, "flux": flux_file, "secrets": secrets(registry_basic), "tmp": tmp_path}


def run(*files: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["run", "--once", "--config", *map(str, files)], out=out, err=err)
    return code, err.getvalue()


def secrets_file(s: dict[str, Any], *names: str) -> Path:
    f = s["tmp"] / "secrets.yaml"
    f.write_text(yaml.safe_dump_all([s["secrets"][n] for n in names], sort_keys=False))
    return f


def test_with_the_secrets_as_manifests_the_run_commits_the_rendered_message(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # requests would take REQUESTS_CA_BUNDLE over verify=True: the certSecretRef's CA must still be the one used
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    code, err = run(setup["flux"], secrets_file(setup, "git-auth", "regcred", "registry-ca"))
    assert code == 0, err + capfd.readouterr().err
    bare, image = setup["bare"], setup["image"]
    assert read_file(bare, "main", "clusters/production/podinfo.yaml") == DEPLOY.format(image=image).replace(":5.0.0", ":5.0.3")
    message = git("-C", str(bare), "log", "-1", "--format=%B", "main")
    assert message == (
        "Automated image update\n\nAutomation name: flux-system/fleet\n\n- File: podinfo.yaml\n"
        "  - Object: Deployment/apps/podinfo\n    Changes:\n"
        f"    - {image}:5.0.0 -> {image}:5.0.3 (flux-system:podinfo)\n"
    ) + "\n"  # git log --format=%B ends the body with a newline of its own
    author = git("-C", str(bare), "log", "-1", "--format=%an <%ae>", "main").strip()
    assert author == "fluxcdbot <fluxcdbot@users.noreply.github.com>"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ((), "ImageRepository flux-system/podinfo: spec.certSecretRef: the TLS certificate of registry {host} did not verify; "
             "Secret flux-system/registry-ca (registry TLS) is read from the cluster and is not among the loaded files"),
        (("registry-ca",), "ImageRepository flux-system/podinfo: spec.secretRef: registry {host} asked for credentials; "
                           "Secret flux-system/regcred (registry credentials) is read from the cluster"),
        (("registry-ca", "regcred"), "GitRepository flux-system/fleet: spec.secretRef: the remote {url} asked for "
                                     "credentials; Secret flux-system/git-auth (git credentials) is read from the cluster"),
    ],
    ids=["no-ca", "no-registry-credentials", "no-git-credentials"],
)  # fmt: skip
def test_without_a_secret_the_run_fails_only_where_it_is_needed_naming_object_and_field(
    setup: dict[str, Any], capfd: pytest.CaptureFixture[str], given: tuple[str, ...], expected: str
) -> None:
    files = [setup["flux"], secrets_file(setup, *given)] if given else [setup["flux"]]
    code, err = run(*files)
    text = err + capfd.readouterr().err  # the run logs to the process's stderr
    assert code == 2, text
    wanted = expected.format(host=setup["image"].split("/")[0], url=setup["url"])
    assert any(" ERROR " in line and wanted in line for line in text.splitlines()), text
    assert "Traceback" not in text
    assert read_file(setup["bare"], "main", "clusters/production/podinfo.yaml").count(":5.0.0") == 1, "nothing written"
