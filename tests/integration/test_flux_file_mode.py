"""`imagebot run --once` on Flux's objects as files, against a real registry (TLS with our own CA + htpasswd) and a
real git remote (smart HTTP + basic auth): with the Secrets as manifests beside them the whole loop runs and the
commit carries the rendered messageTemplate; without them, the run fails (exit 2) only where a Secret is needed,
with a line naming the object and field."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import certifi
import pytest
import yaml

from imagebot.cli import main
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, commit_files, git, make_bare, read_file
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
    assert any(" WARNING " in line and "is read from the cluster: not among the loaded files" in line
               for line in text.splitlines()), "the run names what only the cluster holds when it starts"  # fmt: skip
    assert "Traceback" not in text
    assert read_file(setup["bare"], "main", "clusters/production/podinfo.yaml").count(":5.0.0") == 1, "nothing written"


# --- commit signing: signingKey.secretRef → git.asc (+ passphrase), keys generated here, never committed ------------


@dataclass(frozen=True)
class GpgKey:
    armored: str  # the secret key, as a Flux Secret's git.asc holds it
    public: Path  # a GNUPGHOME holding only the public key: what verifies
    passphrase: str


def _gen_key(root: Path, name: str, passphrase: str) -> GpgKey:
    home = root / f"{name}-gen"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--homedir", str(home), "--pinentry-mode", "loopback", "--passphrase", passphrase]
    subprocess.run([*gpg, "--quick-gen-key", f"{name} <{name}@example.invalid>", "ed25519", "sign", "never"], check=True,
                   capture_output=True)  # fmt: skip
    armored = subprocess.run([*gpg, "--armor", "--export-secret-keys"], check=True, capture_output=True, text=True).stdout
    public = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout
    verify = root / f"{name}-verify"
    verify.mkdir(mode=0o700)
    subprocess.run(["gpg", "--batch", "--homedir", str(verify), "--import"], input=public, check=True, capture_output=True)
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False)
    shutil.rmtree(home, ignore_errors=True)  # the agent removes its sockets as it stops: a race with rmtree
    return GpgKey(armored, verify, passphrase)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, GpgKey]]:
    root = Path(tempfile.mkdtemp(prefix="ibk-"))  # short: gpg-agent's socket lives in the home directory
    yield {"plain": _gen_key(root, "plain", ""), "protected": _gen_key(root, "protected", "open sesame")}
    for d in root.iterdir():
        subprocess.run(["gpgconf", "--homedir", str(d), "--kill", "gpg-agent"], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)


def _signed_setup(setup: dict[str, Any], armored: str, passphrase: str | None) -> Path:
    docs = list(yaml.safe_load_all(setup["flux"].read_text()))
    docs[-1]["spec"]["git"]["commit"]["signingKey"] = {"secretRef": {"name": "signing-key"}}
    setup["flux"].write_text(yaml.safe_dump_all(docs, sort_keys=False))
    data = {"git.asc": armored} | ({"passphrase": passphrase} if passphrase is not None else {})
    meta = {"name": "signing-key", "namespace": "flux-system"}
    setup["secrets"]["signing-key"] = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": data}
    return secrets_file(setup, "git-auth", "regcred", "registry-ca", "signing-key")


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary directory of this test's own (short: gpg-agent's socket lives in a GNUPGHOME made there), so
    what is left in it is this run's, not another process's signing the same moment."""
    d = Path(tempfile.mkdtemp(prefix="ibt-"))
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _gpg_homes() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("imagebot-gpg-*")}


@pytest.mark.parametrize("which", ["plain", "protected"])
def test_the_commit_is_signed_with_the_secret_key_and_verifies_on_the_remote(
    setup: dict[str, Any], keys: dict[str, GpgKey], capfd: pytest.CaptureFixture[str], which: str, private_tmp: Path
) -> None:
    key = keys[which]
    before = _gpg_homes()
    code, err = run(setup["flux"], _signed_setup(setup, key.armored, key.passphrase or None))
    assert code == 0, err + capfd.readouterr().err
    bare = setup["bare"]
    assert read_file(bare, "main", "clusters/production/podinfo.yaml").count(":5.0.3") == 1
    verified = subprocess.run(["git", "-C", str(bare), "verify-commit", "main"], env={**os.environ, "GNUPGHOME": str(key.public)},
                              capture_output=True, text=True)  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "Good signature" in verified.stderr
    assert git("-C", str(bare), "log", "-1", "--format=%B", "main").startswith("Automated image update\n\nAutomation name:")
    assert _gpg_homes() == before, "each signature's GNUPGHOME is removed"


@pytest.mark.parametrize(
    ("which", "passphrase", "armored", "expected"),
    [
        ("protected", "wrong", None, "ImageUpdateAutomation flux-system/fleet: spec.git.commit.signingKey: wrong passphrase"),
        ("protected", None, None, "ImageUpdateAutomation flux-system/fleet: spec.git.commit.signingKey: wrong passphrase"),
        ("plain", None, "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nbm90IGEga2V5\n=abcd\n-----END PGP PRIVATE KEY BLOCK-----\n",
         "ImageUpdateAutomation flux-system/fleet: spec.git.commit.signingKey: the key does not import"),
    ],
    ids=["wrong-passphrase", "missing-passphrase", "malformed-key"],
)  # fmt: skip
def test_a_bad_key_or_passphrase_is_a_clear_error_and_nothing_is_pushed(
    setup: dict[str, Any], keys: dict[str, GpgKey], capfd: pytest.CaptureFixture[str], which: str, passphrase: str | None,
    armored: str | None, expected: str,
) -> None:  # fmt: skip
    before = git("-C", str(setup["bare"]), "rev-parse", "main")
    code, err = run(setup["flux"], _signed_setup(setup, armored or keys[which].armored, passphrase))
    text = err + capfd.readouterr().err
    assert code == 5, text
    assert any(" ERROR " in line and expected in line for line in text.splitlines()), text
    assert "open sesame" not in text and "BEGIN PGP" not in text
    assert git("-C", str(setup["bare"]), "rev-parse", "main") == before, "nothing pushed"


@pytest.fixture(scope="module")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str, str]]:
    """name → (OpenSSH private key, public key line, passphrase), generated here."""
    root = tmp_path_factory.mktemp("sshsig")
    out = {}
    for name, passphrase in (("plain", ""), ("protected", "open sesame")):
        key = root / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(key)], check=True,
                       capture_output=True)  # fmt: skip
        out[name] = (key.read_text(), (root / f"{name}.pub").read_text().strip(), passphrase)
    return out


def _ssh_signed_setup(setup: dict[str, Any], key: str, password: str | None) -> Path:
    docs = list(yaml.safe_load_all(setup["flux"].read_text()))
    docs[-1]["spec"]["git"]["commit"]["signingKey"] = {"type": "ssh", "secretRef": {"name": "signing-key"}}
    setup["flux"].write_text(yaml.safe_dump_all(docs, sort_keys=False))
    data = {"identity": key} | ({"password": password} if password is not None else {})
    meta = {"name": "signing-key", "namespace": "flux-system"}
    setup["secrets"]["signing-key"] = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": data}
    return secrets_file(setup, "git-auth", "regcred", "registry-ca", "signing-key")


@pytest.mark.parametrize("which", ["plain", "protected"])
def test_an_ssh_signing_key_signs_the_commit_as_git_verifies_it(
    setup: dict[str, Any], ssh_keys: dict[str, tuple[str, str, str]], capfd: pytest.CaptureFixture[str], which: str,
    private_tmp: Path,
) -> None:
    private, public, passphrase = ssh_keys[which]
    before = set(Path(tempfile.gettempdir()).glob("imagebot-sshsig-*"))
    code, err = run(setup["flux"], _ssh_signed_setup(setup, private, passphrase or None))
    assert code == 0, err + capfd.readouterr().err
    signers = setup["tmp"] / "allowed_signers"
    signers.write_text(f"fluxcdbot@users.noreply.github.com {public}\n")
    verified = subprocess.run(["git", "-C", str(setup["bare"]), "-c", f"gpg.ssh.allowedSignersFile={signers}", "verify-commit",
                               "main"], capture_output=True, text=True)  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert 'Good "git" signature for fluxcdbot@users.noreply.github.com' in verified.stderr
    assert set(Path(tempfile.gettempdir()).glob("imagebot-sshsig-*")) == before, "the key's directory is removed"


def test_an_ssh_key_with_a_wrong_password_is_refused_and_nothing_is_pushed(
    setup: dict[str, Any], ssh_keys: dict[str, tuple[str, str, str]], capfd: pytest.CaptureFixture[str]
) -> None:
    before = git("-C", str(setup["bare"]), "rev-parse", "main")
    code, err = run(setup["flux"], _ssh_signed_setup(setup, ssh_keys["protected"][0], "wrong"))
    text = err + capfd.readouterr().err
    assert code == 5, text
    assert (
        "commit not signed, nothing pushed: ImageUpdateAutomation flux-system/fleet: spec.git.commit.signingKey: "
        "wrong password for the SSH signing key" in text
    ), text
    assert "open sesame" not in text and "PRIVATE KEY" not in text
    assert git("-C", str(setup["bare"]), "rev-parse", "main") == before


def test_imagebots_annotations_are_honoured_by_a_file_mode_run(
    setup: dict[str, Any], registry_basic: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ImagePolicy annotations `imagebot controller` reads steer `imagebot run` the same way (decide() in both):
    a promotion takes its source's tag once it soaked (here 0s: the next pass), a minimum age holds a fresh tag back."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    docs = objects(registry_basic, setup["url"], setup["image"])
    prod = copy.deepcopy(docs[2])
    prod["metadata"] = {"name": "podinfo-prod", "namespace": "flux-system",
                        "annotations": {"imagebot.dev/promote-from": "podinfo", "imagebot.dev/soak": "0s"}}  # fmt: skip
    aged = copy.deepcopy(docs[2])
    aged["metadata"] = {"name": "podinfo-aged", "namespace": "flux-system", "annotations": {"imagebot.dev/min-age": "2h"}}
    setup["flux"].write_text(yaml.safe_dump_all([*docs, prod, aged], sort_keys=False))
    bare, image = setup["bare"], setup["image"]
    files = {"clusters/production/podinfo.yaml": DEPLOY.format(image=image)}
    for name in ("podinfo-prod", "podinfo-aged"):
        files[f"clusters/production/{name}.yaml"] = DEPLOY.format(image=image).replace(":podinfo", f":{name}")
    commit_files(bare, "main", files, "one Deployment per policy")
    secrets = secrets_file(setup, "git-auth", "regcred", "registry-ca")
    assert run(setup["flux"], secrets)[0] == 0
    assert ":5.0.3 " in read_file(bare, "main", "clusters/production/podinfo.yaml")
    assert ":5.0.0 " in read_file(bare, "main", "clusters/production/podinfo-prod.yaml"), "promoted in a later pass"
    assert run(setup["flux"], secrets)[0] == 0
    assert ":5.0.3 " in read_file(bare, "main", "clusters/production/podinfo-prod.yaml"), "the source's tag, soaked"
    assert ":5.0.0 " in read_file(bare, "main", "clusters/production/podinfo-aged.yaml"), "every tag is younger than 2h"
