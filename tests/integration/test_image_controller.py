"""`imagebot controller` on the real test API server, a real registry (htpasswd auth, TLS with our own CA) and a real
git remote (basic auth): Flux's image objects applied as written end in a commit on the remote and Flux's status
fields; wrong credentials end in Ready=False naming the cause and no commit; one unreachable registry never delays
the other objects."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gitopskit.kube import request_json
from imagebot.controller.controller import IMAGE_PATH, ImageController
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, git, log, make_bare, read_file
from tests.fixtures.registry import PASSWORD, USER, RegistryServer
from tests.integration.test_crds import install
from tests.integration.test_flux_file_mode import GpgKey, _gen_key

pytestmark = [pytest.mark.cluster, pytest.mark.git]

FLUX_IMAGE = "image.toolkit.fluxcd.io/v1"


def until(cond: Callable[[], Any], timeout: float = 90.0, what: str = "") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what or cond}")


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


class Cluster:
    def __init__(self, api: Any, ns: str) -> None:
        self.api, self.ns = api, ns

    def create(self, obj: dict[str, Any]) -> None:
        api_version, kind = obj["apiVersion"], obj["kind"]
        plural = {"Secret": "secrets", "ServiceAccount": "serviceaccounts", "GitRepository": "gitrepositories",
                  "ImageRepository": "imagerepositories", "ImagePolicy": "imagepolicies",
                  "ImageUpdateAutomation": "imageupdateautomations"}[kind]  # fmt: skip
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        request_json(self.api, "POST", f"{base}/namespaces/{self.ns}/{plural}", body=obj)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        plural = {"ImageRepository": "imagerepositories", "ImagePolicy": "imagepolicies",
                  "ImageUpdateAutomation": "imageupdateautomations"}[kind]  # fmt: skip
        return request_json(self.api, "GET", f"{IMAGE_PATH}/namespaces/{self.ns}/{plural}/{name}")

    def annotate(self, kind: str, name: str, key: str, value: str) -> None:
        plural = {"ImageRepository": "imagerepositories", "ImagePolicy": "imagepolicies",
                  "ImageUpdateAutomation": "imageupdateautomations"}[kind]  # fmt: skip
        request_json(self.api, "PATCH", f"{IMAGE_PATH}/namespaces/{self.ns}/{plural}/{name}",
                     body={"metadata": {"annotations": {key: value}}}, content_type="application/merge-patch+json")  # fmt: skip

    def events(self) -> list[dict[str, Any]]:
        return (request_json(self.api, "GET", f"/api/v1/namespaces/{self.ns}/events") or {}).get("items") or []


@pytest.fixture
def kube(cluster: TestCluster, namespace: str) -> Cluster:
    api = cluster.api_client()
    install(api)
    return Cluster(api, namespace)


@pytest.fixture
def controller(kube: Cluster, tmp_path: Path) -> Iterator[ImageController]:
    ctl = ImageController(kube.api, (kube.ns,), workers=4, cache=tmp_path / "cache")
    ctl.start()
    try:
        assert ctl.wait_synced(30)
        yield ctl
    finally:
        ctl.stop()


def secret(name: str, data: dict[str, str], type_: str = "Opaque") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": type_,
            "data": {k: b64(v) for k, v in data.items()}}  # fmt: skip


def dockerconfig(host: str, user: str, password: str) -> dict[str, Any]:
    auths = {"auths": {host: {"username": user, "password": password, "auth": b64(f"{user}:{password}")}}}
    return secret("regcred", {".dockerconfigjson": json.dumps(auths)}, "kubernetes.io/dockerconfigjson")


def flux(kind: str, name: str, spec: dict[str, Any], api_version: str = FLUX_IMAGE) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": spec}


MESSAGE = """Automated image update

Automation name: {{ .AutomationObject }}

Files:
{{ range $filename, $_ := .Changed.FileChanges -}}
- {{ $filename }}
{{ end -}}

Objects:
{{ range $resource, $changes := .Changed.Objects -}}
- {{ $resource.Kind }} {{ $resource.Name }}
  Changes:
{{- range $_, $change := $changes }}
    - {{ $change.OldValue }} -> {{ $change.NewValue }}
{{ end -}}
{{ end -}}
"""


def realistic_set(kube: Cluster, registry: RegistryServer, bare_url: str, user: str, password: str,
                  git_password: str, signing: GpgKey | None = None, team: str = "team") -> None:  # fmt: skip
    """Flux's objects of a realistic setup, as a team would have them: a GitRepository with a basic-auth Secret,
    ImageRepositories with a dockerconfigjson Secret and certSecretRef, three kinds of policy, one automation.
    ``team``: the repositories' path prefix (the registry is shared by the whole session)."""
    kube.create(dockerconfig(registry.host, user, password))
    kube.create(secret("registry-ca", {"ca.crt": registry.pki.ca_cert.read_text()}))
    kube.create(secret("git-auth", {"username": GIT_USER, "password": git_password}))
    kube.create(flux("GitRepository", "config", {"url": bare_url, "interval": "1m", "ref": {"branch": "main"},
                                                  "secretRef": {"name": "git-auth"}}, "source.toolkit.fluxcd.io/v1"))  # fmt: skip
    for name in ("app", "builds", "minio"):
        kube.create(flux("ImageRepository", name, {
            "image": f"{registry.host}/{team}/{name}", "interval": "1h", "timeout": "30s", "provider": "generic",
            "secretRef": {"name": "regcred"}, "certSecretRef": {"name": "registry-ca"},
            "exclusionList": ["^.*\\.sig$", "^.*-debug$"],
        }))  # fmt: skip
    kube.create(flux("ImagePolicy", "app", {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": "^1.0"}}}))
    kube.create(flux("ImagePolicy", "builds", {
        "imageRepositoryRef": {"name": "builds"}, "policy": {"numerical": {"order": "asc"}},
        "filterTags": {"pattern": "^main-[a-f0-9]+-(?P<ts>[0-9]+)$", "extract": "$ts"},
    }))  # fmt: skip
    kube.create(flux("ImagePolicy", "minio", {
        "imageRepositoryRef": {"name": "minio"}, "policy": {"alphabetical": {"order": "asc"}},
        "filterTags": {"pattern": "^RELEASE\\.(?P<ts>.*)Z$", "extract": "$ts"},
    }))  # fmt: skip
    commit: dict[str, Any] = {"author": {"name": "fluxcdbot", "email": "fluxcdbot@users.noreply.github.com"},
                              "messageTemplate": MESSAGE}  # fmt: skip
    if signing is not None:
        kube.create(secret("signing-key", {"git.asc": signing.armored, "passphrase": signing.passphrase}))
        commit["signingKey"] = {"secretRef": {"name": "signing-key"}}
    kube.create(flux("ImageUpdateAutomation", "config", {
        "interval": "1h",
        "sourceRef": {"kind": "GitRepository", "name": "config"},
        "git": {"checkout": {"ref": {"branch": "main"}}, "commit": commit, "push": {"branch": "main"}},
        "update": {"path": "./clusters/prod", "strategy": "Setters"},
    }))  # fmt: skip


def manifests(host: str, ns: str, team: str = "team") -> dict[str, str]:
    return {
        "clusters/prod/app.yaml": (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n  namespace: prod\nspec:\n  template:\n"
            "    spec:\n      containers:\n"
            f'      - name: app\n        image: {host}/{team}/app:1.0.0 # {{"$imagepolicy": "{ns}:app"}}\n'
            f'      - name: builds\n        image: {host}/{team}/builds:main-aaa-100 # {{"$imagepolicy": "{ns}:builds"}}\n'
        ),
        "clusters/prod/minio.yaml": (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: minio\n  namespace: prod\nspec:\n  template:\n"
            "    spec:\n      containers:\n"
            f"      - name: minio\n        image: {host}/{team}/minio:RELEASE.2024-01-01T00-00-00Z"
            f' # {{"$imagepolicy": "{ns}:minio"}}\n'
        ),
        "README.md": "not edited\n",
    }


@pytest.fixture(scope="module")
def gpg_key() -> Iterator[GpgKey]:
    root = Path(tempfile.mkdtemp(prefix="ibc-"))  # short: gpg-agent's socket lives in the home directory
    yield _gen_key(root, "flux", "open sesame")
    for d in root.iterdir():
        subprocess.run(["gpgconf", "--homedir", str(d), "--kill", "gpg-agent"], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)


def test_a_realistic_flux_set_applied_as_written_ends_in_a_signed_commit_and_every_status_field(
    kube: Cluster, controller: ImageController, registry_basic: RegistryServer, git_http: GitHttp, gpg_key: GpgKey
) -> None:
    reg, ns = registry_basic, kube.ns
    team = ns  # repositories of this test's own: another test's pushes to team/app must not show here
    pusher = reg.pusher()
    pusher.push(f"{team}/app", ["1.0.0", "1.0.1-debug", "2.0.0"])
    pusher.push(f"{team}/builds", ["main-aaa-100", "main-bbb-99"])
    pusher.push(f"{team}/minio", ["RELEASE.2024-01-01T00-00-00Z", "latest"])
    bare = make_bare(git_http.root, f"cfg-{ns}", manifests(reg.host, ns, team))
    realistic_set(kube, reg, git_http.url(bare), USER, PASSWORD, GIT_PASSWORD, gpg_key, team)

    # first pass: what the registry holds is what Git holds → up to date, no commit
    auto = until(lambda: (o := kube.get("ImageUpdateAutomation", "config")) and ready(o).get("status") == "True" and o,
                 what="automation Ready")  # fmt: skip
    assert ready(auto)["message"] == "repository up-to-date"
    assert len(log(bare, "main")) == 1
    repo = kube.get("ImageRepository", "app")
    assert repo["status"]["lastScanResult"]["tagCount"] == 2, "exclusionList applied at scan time"
    assert repo["status"]["lastScanResult"]["latestTags"] == ["2.0.0", "1.0.0"]
    assert repo["status"]["canonicalImageName"] == f"{reg.host}/{team}/app"
    assert repo["status"]["observedExclusionList"] == ["^.*\\.sig$", "^.*-debug$"]
    assert ready(repo) == {**ready(repo), "status": "True", "reason": "Succeeded", "message": "successful scan: found 2 tags"}

    # CI pushes new tags; `flux reconcile image repository` (requestedAt) makes the controller look now
    pusher.push(f"{team}/app", ["1.1.0"])
    pusher.push(f"{team}/builds", ["main-ccc-101"])
    pusher.push(f"{team}/minio", ["RELEASE.2024-02-01T00-00-00Z"])
    for name in ("app", "builds", "minio"):
        kube.annotate("ImageRepository", name, "reconcile.fluxcd.io/requestedAt", f"now-{name}")
    until(lambda: "RELEASE.2024-02-01T00-00-00Z" in read_file(bare, "main", "clusters/prod/minio.yaml")
          and "main-ccc-101" in read_file(bare, "main", "clusters/prod/app.yaml"), what="the new tags committed")  # fmt: skip
    text = read_file(bare, "main", "clusters/prod/app.yaml")
    assert f"{reg.host}/{team}/app:1.1.0 # " in text and f"{reg.host}/{team}/builds:main-ccc-101 # " in text
    assert "RELEASE.2024-02-01T00-00-00Z" in read_file(bare, "main", "clusters/prod/minio.yaml")
    assert read_file(bare, "main", "README.md") == "not edited\n"

    for name, tag in (("app", "1.1.0"), ("builds", "main-ccc-101"), ("minio", "RELEASE.2024-02-01T00-00-00Z")):
        pol = until(lambda n=name, t=tag: (o := kube.get("ImagePolicy", n))["status"].get("latestRef", {}).get("tag") == t and o,
                    what=f"{name} latestRef")  # fmt: skip
        assert pol["status"]["latestRef"]["name"] == f"{reg.host}/{team}/{name}"
        assert pol["status"]["observedPreviousRef"]["tag"] != tag
        assert ready(pol)["status"] == "True" and ready(pol)["reason"] == "Succeeded"
        r = kube.get("ImageRepository", name)
        assert r["status"]["lastHandledReconcileAt"] == f"now-{name}"
        assert r["status"]["observedGeneration"] == r["metadata"]["generation"]
    sha = log(bare, "main")[0].split()[0]
    for line in log(bare, "main")[:-1]:  # every commit of the automation carries the rendered messageTemplate, signed
        assert line.split("|", 1)[1] == "Automated image update"
        verified = subprocess.run(["git", "-C", str(bare), "verify-commit", line.split()[0]], capture_output=True, text=True,
                                  env={**os.environ, "GNUPGHOME": str(gpg_key.public)})  # fmt: skip
        assert verified.returncode == 0 and "Good signature" in verified.stderr, verified.stderr
    body = git("-C", str(bare), "log", "-1", "--format=%B", "main")
    assert f"Automation name: {ns}/config\n" in body
    assert "Files:\n- " in body and "Objects:\n- Deployment " in body
    assert "    - " in body and " -> " in body, body
    assert "{{" not in body
    author = git("-C", str(bare), "log", "-1", "--format=%an <%ae>", "main").strip()
    assert author == "fluxcdbot <fluxcdbot@users.noreply.github.com>"
    auto = until(lambda: (o := kube.get("ImageUpdateAutomation", "config"))["status"].get("lastPushCommit") == sha and o,
                 what="lastPushCommit")  # fmt: skip
    st = auto["status"]
    assert st["lastPushTime"] and st["lastAutomationRunTime"]
    assert st["observedPolicies"]["app"] == {"name": f"{reg.host}/{team}/app", "tag": "1.1.0"}
    assert set(st["observedPolicies"]) == {"app", "builds", "minio"}
    assert st["observedSourceRevision"] == f"main@sha1:{sha}"
    # the push's run says so; a later run (another policy's status write enqueues the automation) finds nothing new and
    # says "repository up-to-date", as Flux does, keeping lastPushCommit — both are this push's state
    said = ready(auto)["message"]
    assert ready(auto)["reason"] == "Succeeded" and (sha in said or said == "repository up-to-date"), said
    reasons = {(e["involvedObject"]["kind"], e["reason"], e["type"]) for e in kube.events()}
    assert ("ImageUpdateAutomation", "Succeeded", "Normal") in reasons
    assert ("ImagePolicy", "Succeeded", "Normal") in reasons
    pushed = [e for e in kube.events() if e["involvedObject"]["kind"] == "ImageUpdateAutomation" and sha in e["message"]]
    assert pushed and pushed[0]["involvedObject"]["name"] == "config" and pushed[0]["source"]["component"]


def test_wrong_passwords_are_ready_false_naming_the_cause_and_nothing_is_committed(
    kube: Cluster, controller: ImageController, registry_basic: RegistryServer, git_http: GitHttp
) -> None:
    reg, ns = registry_basic, kube.ns
    reg.pusher().push("team/app", ["1.0.0", "1.1.0"])
    bare = make_bare(git_http.root, f"cfg-{ns}", manifests(reg.host, ns))
    realistic_set(kube, reg, git_http.url(bare), USER, "wrong-password", GIT_PASSWORD)
    repo = until(lambda: (o := kube.get("ImageRepository", "app")) and ready(o).get("status") == "False" and o,
                 what="ImageRepository Ready=False")  # fmt: skip
    assert ready(repo)["reason"] == "AuthenticationFailed", ready(repo)
    assert "401" in ready(repo)["message"] or "auth" in ready(repo)["message"].lower()
    assert "wrong-password" not in json.dumps(repo)
    pol = until(lambda: (o := kube.get("ImagePolicy", "app")) and ready(o).get("status") == "False" and o, what="policy")
    assert ready(pol)["reason"] == "DependencyNotReady"
    until(lambda: "AuthenticationFailed" in ready(kube.get("ImagePolicy", "app")).get("message", ""),
          what="the policy names its repository's failure")  # fmt: skip
    assert "latestRef" not in pol["status"]
    warnings = [e for e in kube.events() if e["type"] == "Warning" and e["involvedObject"]["kind"] == "ImageRepository"]
    assert warnings and warnings[0]["reason"] == "AuthenticationFailed"
    assert len(log(bare, "main")) == 1, "nothing committed"


def test_a_missing_or_malformed_secret_is_named_and_a_wrong_git_password_commits_nothing(
    kube: Cluster, controller: ImageController, registry_basic: RegistryServer, git_http: GitHttp
) -> None:
    reg, ns = registry_basic, kube.ns
    reg.pusher().push("team/app", ["1.0.0", "1.1.0"])
    bare = make_bare(git_http.root, f"cfg-{ns}", manifests(reg.host, ns))
    realistic_set(kube, reg, git_http.url(bare), USER, PASSWORD, "not-the-git-password")
    kube.create(flux("ImageRepository", "no-secret", {"image": f"{reg.host}/team/app", "interval": "1h",
                                                     "secretRef": {"name": "absent"}}))  # fmt: skip
    kube.create(secret("broken", {".dockerconfigjson": "{not json"}, "kubernetes.io/dockerconfigjson"))
    kube.create(flux("ImageRepository", "bad-secret", {"image": f"{reg.host}/team/app", "interval": "1h",
                                                          "secretRef": {"name": "broken"}}))
    kube.create(flux("ImageRepository", "bad-regex", {"image": f"{reg.host}/team/app", "interval": "1h",
                                                         "exclusionList": ["(unclosed"]}))
    for name, reason, needle in (("no-secret", "AuthenticationFailed", "absent"),
                                 ("bad-secret", "AuthenticationFailed", "broken"),
                                 ("bad-regex", "ImageURLInvalid", "exclusionList")):  # fmt: skip
        o = until(lambda n=name: (x := kube.get("ImageRepository", n)) and ready(x).get("status") == "False" and x, what=name)
        assert ready(o)["reason"] == reason and needle in ready(o)["message"], ready(o)
    auto = until(lambda: (o := kube.get("ImageUpdateAutomation", "config")) and ready(o).get("status") == "False" and o,
                 what="automation Ready=False")  # fmt: skip
    assert ready(auto)["reason"] == "GitOperationFailed", ready(auto)
    assert "not-the-git-password" not in json.dumps(auto)
    app = kube.get("ImagePolicy", "app")
    assert app["status"]["latestRef"]["tag"] == "1.1.0", "the registry side works: only git is refused"
    assert len(log(bare, "main")) == 1, "nothing committed"


def test_fifty_policies_with_one_unreachable_registry_the_other_49_update(
    kube: Cluster, controller: ImageController, registry_plain: RegistryServer, git_http: GitHttp
) -> None:
    ns, reg = kube.ns, registry_plain
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers: a hung registry
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    dead = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        files = {}
        pusher = reg.pusher()
        for i in range(50):
            host = dead if i == 0 else reg.host
            if i:
                pusher.push(f"fleet/app{i}", ["1.0.0"])
            files[f"apps/app{i}.yaml"] = f'image: {host}/fleet/app{i}:1.0.0 # {{"$imagepolicy": "{ns}:app{i}"}}\n'
        bare = make_bare(git_http.root, f"fleet-{ns}", files)
        kube.create(secret("git-auth", {"username": GIT_USER, "password": GIT_PASSWORD}))
        spec = {"url": git_http.url(bare), "interval": "1m", "ref": {"branch": "main"}, "secretRef": {"name": "git-auth"}}
        kube.create(flux("GitRepository", "fleet", spec, "source.toolkit.fluxcd.io/v1"))
        kube.create(flux("ImageUpdateAutomation", "fleet", {
            "interval": "1h", "sourceRef": {"kind": "GitRepository", "name": "fleet"},
            "git": {"checkout": {"ref": {"branch": "main"}}, "commit": {"author": {"name": "bot", "email": "bot@example.org"}},
                    "push": {"branch": "main"}},
            "update": {"path": "./apps", "strategy": "Setters"},
        }))  # fmt: skip
        for i in range(50):
            host = dead if i == 0 else reg.host
            kube.create(flux("ImageRepository", f"app{i}", {"image": f"{host}/fleet/app{i}", "interval": "1h",
                                                            "timeout": "600s", "insecure": True}))  # fmt: skip
            kube.create(flux("ImagePolicy", f"app{i}", {"imageRepositoryRef": {"name": f"app{i}"},
                                                        "policy": {"semver": {"range": ">=1.0.0"}}}))  # fmt: skip
        until(lambda: all(kube.get("ImagePolicy", f"app{i}").get("status", {}).get("latestRef") for i in range(1, 50)),
              what="49 policies resolved")  # fmt: skip
        for i in range(1, 50):
            pusher.push(f"fleet/app{i}", ["1.1.0"])
            kube.annotate("ImageRepository", f"app{i}", "reconcile.fluxcd.io/requestedAt", "t1")

        def updated() -> int:
            return sum(f"app{i}:1.1.0" in read_file(bare, "main", f"apps/app{i}.yaml") for i in range(1, 50))

        until(lambda: updated() == 49, timeout=180, what="the 49 reachable images updated in Git")
        hung = kube.get("ImageRepository", "app0")
        assert not ready(hung) or ready(hung).get("status") != "True", "the silent registry never scanned"
        assert "lastScanResult" not in (hung.get("status") or {}), "its scan is still hanging (deadline 600 s)"
        assert "app0:1.0.0" in read_file(bare, "main", "apps/app0.yaml")
    finally:
        silent.close()


def test_suspend_is_honoured_and_requested_at_runs_an_automation_now(
    kube: Cluster, controller: ImageController, registry_plain: RegistryServer, git_http: GitHttp
) -> None:
    ns, reg = kube.ns, registry_plain
    reg.pusher().push("team/app", ["1.0.0", "1.2.0"])
    marker = f'image: {reg.host}/team/app:1.0.0 # {{"$imagepolicy": "{ns}:app"}}\n'
    bare = make_bare(git_http.root, f"sus-{ns}", {"app.yaml": marker})
    kube.create(flux("GitRepository", "cfg", {"url": git_http.url(bare), "interval": "1h", "ref": {"branch": "main"},
                                              "secretRef": {"name": "git-auth"}}, "source.toolkit.fluxcd.io/v1"))  # fmt: skip
    kube.create(secret("git-auth", {"username": GIT_USER, "password": GIT_PASSWORD}))
    kube.create(flux("ImageRepository", "app", {"image": f"{reg.host}/team/app", "interval": "1h", "insecure": True}))
    kube.create(flux("ImageRepository", "held", {"image": f"{reg.host}/team/app", "interval": "1h", "insecure": True,
                                                 "suspend": True}))  # fmt: skip
    kube.create(flux("ImagePolicy", "app", {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": "^1"}}}))
    kube.create(flux("ImageUpdateAutomation", "cfg", {
        "interval": "1h", "suspend": True, "sourceRef": {"kind": "GitRepository", "name": "cfg"},
        "git": {"commit": {"author": {"name": "bot", "email": "bot@example.org"}}, "push": {"branch": "main"}},
        "update": {"path": "./", "strategy": "Setters"},
    }))  # fmt: skip
    until(lambda: kube.get("ImagePolicy", "app").get("status", {}).get("latestRef", {}).get("tag") == "1.2.0", what="policy")

    def suspended(kind: str) -> float:
        got = controller.metrics.registry.get_sample_value("imagebot_reconciles_total", {"kind": kind, "result": "suspended"})
        return got or 0.0

    until(lambda: suspended("ImageUpdateAutomation") and suspended("ImageRepository"), what="both looked at")
    assert "status" not in kube.get("ImageUpdateAutomation", "cfg") and "status" not in kube.get("ImageRepository", "held")
    assert len(log(bare, "main")) == 1, "a suspended automation commits nothing"

    request_json(kube.api, "PATCH", f"{IMAGE_PATH}/namespaces/{ns}/imageupdateautomations/cfg", body={"spec": {"suspend": False}},
                 content_type="application/merge-patch+json")  # fmt: skip
    until(lambda: "app:1.2.0" in read_file(bare, "main", "app.yaml"), what="resumed: the commit")
    first = until(lambda: kube.get("ImageUpdateAutomation", "cfg").get("status", {}).get("lastAutomationRunTime"), what="run")
    kube.annotate("ImageUpdateAutomation", "cfg", "reconcile.fluxcd.io/requestedAt", "2030-01-01T00:00:00Z")
    auto = until(lambda: (o := kube.get("ImageUpdateAutomation", "cfg"))["status"].get("lastHandledReconcileAt") and o,
                 what="requestedAt handled")  # fmt: skip
    assert auto["status"]["lastHandledReconcileAt"] == "2030-01-01T00:00:00Z"
    assert auto["status"]["lastAutomationRunTime"] >= first
    assert ready(auto)["message"] == "repository up-to-date"


def controller_key(kind: str, ns: str, name: str) -> Any:
    from imagebot.controller.controller import ObjKey

    return ObjKey(kind, ns, name)


def test_the_controller_process_serves_health_and_metrics_and_stops_cleanly_on_sigterm(
    kube: Cluster, cluster: TestCluster, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys
    import urllib.request

    from tests.fixtures.net import free_port

    port = free_port()
    kube.create(flux("ImageRepository", "bad", {"image": "127.0.0.1:1/team/app", "interval": "1h", "insecure": True,
                                                "timeout": "2s"}))  # fmt: skip
    cmd = [sys.executable, "-m", "imagebot", "controller", "--kubeconfig", str(cluster.kubeconfig), "--namespace", kube.ns,
           "--listen", f"127.0.0.1:{port}", "--cache", str(tmp_path / "cache")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, r.read().decode()
            except OSError:
                return 0, ""

        until(lambda: get("/readyz")[0] == 200, what="/readyz")
        assert get("/healthz") == (200, "ok\n")
        until(lambda: ready(kube.get("ImageRepository", "bad")).get("reason") == "ReadOperationFailed", what="a failed scan")
        failed = 'imagebot_reconciles_total{kind="ImageRepository",result="failed"}'
        until(lambda: failed in get("/metrics")[1], what="the failure counted")  # counted after the status write
        taken = subprocess.run([*cmd[:-2], "--cache", str(tmp_path / "c2")], capture_output=True, text=True, timeout=60)
        assert taken.returncode == 2 and taken.stderr.count("\n") == 1 and "--listen" in taken.stderr, taken.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    zero = subprocess.run([sys.executable, "-m", "imagebot", "controller", "--workers", "0"], capture_output=True, text=True)
    assert zero.returncode == 2 and "--workers" in zero.stderr


def test_the_pull_request_annotation_opens_one_pull_request_instead_of_pushing(
    kube: Cluster, controller: ImageController, registry_plain: RegistryServer, git_http: GitHttp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.fixtures.fake_github import TOKEN, FakeGitHub

    monkeypatch.setenv("IMAGEBOT_GITHUB_THROTTLE", "0")
    ns, reg = kube.ns, registry_plain
    reg.pusher().push("team/web", ["1.0.0", "1.3.0"])
    marker = f'image: {reg.host}/team/web:1.0.0 # {{"$imagepolicy": "{ns}:web"}}\n'
    bare = make_bare(git_http.root, f"pr-{ns}", {"web.yaml": marker})
    github = FakeGitHub({"org/config": bare}, prefix="/api/v3")
    try:
        kube.create(secret("git-auth", {"username": GIT_USER, "password": GIT_PASSWORD}))
        kube.create(secret("github", {"token": TOKEN}))
        kube.create(flux("GitRepository", "cfg", {"url": git_http.url(bare), "interval": "1h", "ref": {"branch": "main"},
                                                  "secretRef": {"name": "git-auth"}}, "source.toolkit.fluxcd.io/v1"))  # fmt: skip
        kube.create(flux("ImageRepository", "web", {"image": f"{reg.host}/team/web", "interval": "1h", "insecure": True}))
        kube.create(flux("ImagePolicy", "web", {"imageRepositoryRef": {"name": "web"}, "policy": {"semver": {"range": "^1"}}}))
        auto = flux("ImageUpdateAutomation", "staging", {
            "interval": "1h", "sourceRef": {"kind": "GitRepository", "name": "cfg"},
            "git": {"commit": {"author": {"name": "bot", "email": "bot@example.org"}}, "push": {"branch": "main"}},
            "update": {"path": "./", "strategy": "Setters"},
        })  # fmt: skip
        auto["metadata"]["annotations"] = {
            "imagebot.dev/pull-request": "true", "imagebot.dev/github-repository": "org/config",
            "imagebot.dev/github-api": github.base, "imagebot.dev/github-token-secret": "github",
            "imagebot.dev/pull-request-labels": "images, automated",
        }  # fmt: skip
        kube.create(auto)

        def opened() -> dict[str, Any] | None:
            o = kube.get("ImageUpdateAutomation", "staging")
            return o if "pull request #1 opened" in ready(o).get("message", "") else None

        got = until(opened, what="the pull request")
        assert github.pulls[1]["head"] == "imagebot/staging/default" and github.pulls[1]["base"] == "main"
        assert github.pulls[1]["labels"] == ["images", "automated"]
        assert "web:1.3.0" in read_file(bare, "imagebot/staging/default", "web.yaml")
        assert read_file(bare, "main", "web.yaml") == marker, "the base branch is untouched"
        assert got["status"]["lastPushCommit"] == git("-C", str(bare), "rev-parse", "imagebot/staging/default").strip()
    finally:
        github.stop()


def test_shards_auto_spreads_namespaces_over_two_replicas_and_a_survivor_takes_over(
    kube: Cluster, cluster: TestCluster, registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path
) -> None:
    from kubernetes import client

    from gitopskit.lease import LeaseTiming
    from gitopskit.sharding import AutoShards

    reg = registry_plain
    core = client.CoreV1Api(kube.api)
    namespaces = [kube.ns] + [f"{kube.ns}-{i}" for i in range(1, 4)]
    for ns in namespaces[1:]:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    bares = {}
    for ns in namespaces:
        k = Cluster(kube.api, ns)
        reg.pusher().push(f"{ns}/app", ["1.0.0"])
        marker = f'image: {reg.host}/{ns}/app:1.0.0 # {{"$imagepolicy": "{ns}:app"}}\n'
        bares[ns] = make_bare(git_http.root, f"shard-{ns}", {"app.yaml": marker})
        k.create(secret("git-auth", {"username": GIT_USER, "password": GIT_PASSWORD}))
        k.create(flux("GitRepository", "cfg", {"url": git_http.url(bares[ns]), "interval": "1h", "ref": {"branch": "main"},
                                               "secretRef": {"name": "git-auth"}}, "source.toolkit.fluxcd.io/v1"))  # fmt: skip
        k.create(flux("ImageRepository", "app", {"image": f"{reg.host}/{ns}/app", "interval": "1h", "insecure": True}))
        k.create(flux("ImagePolicy", "app", {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": "^1"}}}))
        k.create(flux("ImageUpdateAutomation", "cfg", {
            "interval": "1h", "sourceRef": {"kind": "GitRepository", "name": "cfg"},
            "git": {"commit": {"author": {"name": "bot", "email": "bot@example.org"}}, "push": {"branch": "main"}},
            "update": {"path": "./", "strategy": "Setters"},
        }))  # fmt: skip
    timing = LeaseTiming(3.0, 2.0, 0.5)

    def replica(name: str) -> ImageController:
        shards = AutoShards(cluster.api_client(), kube.ns, name, 8, timing, prefix="imagebot-controller")
        return ImageController(cluster.api_client(), tuple(namespaces), workers=2, cache=tmp_path / name, shards=shards)

    a, b = replica("a"), replica("b")
    a.start()
    b.start()
    try:
        def scanned(ctl: ImageController) -> set[str]:
            return {ns for ns, _ in ctl.scans}

        def resolved(ns: str) -> bool:
            return bool(Cluster(kube.api, ns).get("ImagePolicy", "app").get("status", {}).get("latestRef"))

        until(lambda: all(resolved(ns) for ns in namespaces), what="every namespace resolved")
        def spread() -> bool:  # each namespace held by one replica (slots move while the two settle their shares)
            sa, sb = scanned(a), scanned(b)
            return bool(sa | sb == set(namespaces) and not sa & sb)

        until(spread, what="every namespace served by one replica")
        gone = b if scanned(b) else a
        moved = sorted(scanned(gone))
        gone.stop()
        for ns in moved:
            reg.pusher().push(f"{ns}/app", ["1.1.0"])
            Cluster(kube.api, ns).annotate("ImageRepository", "app", "reconcile.fluxcd.io/requestedAt", "after-b")
        for ns in moved:
            until(lambda n=ns: f"{n}/app:1.1.0" in read_file(bares[n], "main", "app.yaml"), what=f"{ns} taken over")
    finally:
        a.stop()
        b.stop()
        for ns in namespaces[1:]:
            core.delete_namespace(ns)


def test_a_git_bearer_token_secret_is_sent_as_a_bearer_header(
    kube: Cluster, controller: ImageController, registry_plain: RegistryServer, git_http: GitHttp
) -> None:
    from tests.fixtures.git import GIT_BEARER

    ns, reg = kube.ns, registry_plain
    reg.pusher().push("team/tok", ["1.0.0", "1.0.1"])
    marker = f'image: {reg.host}/team/tok:1.0.0 # {{"$imagepolicy": "{ns}:tok"}}\n'
    bare = make_bare(git_http.root, f"bearer-{ns}", {"tok.yaml": marker})
    kube.create(secret("git-token", {"bearerToken": GIT_BEARER}))
    kube.create(flux("GitRepository", "cfg", {"url": git_http.url(bare), "interval": "1h", "ref": {"branch": "main"},
                                              "secretRef": {"name": "git-token"}}, "source.toolkit.fluxcd.io/v1"))  # fmt: skip
    kube.create(flux("ImageRepository", "tok", {"image": f"{reg.host}/team/tok", "interval": "1h", "insecure": True}))
    kube.create(flux("ImagePolicy", "tok", {"imageRepositoryRef": {"name": "tok"}, "policy": {"semver": {"range": "^1"}}}))
    kube.create(flux("ImageUpdateAutomation", "cfg", {
        "interval": "1h", "sourceRef": {"kind": "GitRepository", "name": "cfg"},
        "git": {"commit": {"author": {"name": "bot", "email": "bot@example.org"}}, "push": {"branch": "main"}},
        "update": {"path": "./", "strategy": "Setters"},
    }))  # fmt: skip
    until(lambda: "tok:1.0.1" in read_file(bare, "main", "tok.yaml"), what="the commit over bearer auth")
    auto = kube.get("ImageUpdateAutomation", "cfg")
    assert GIT_BEARER not in json.dumps(auto)


def test_an_ssh_signing_key_signs_the_automation_commit_and_a_wrong_password_pushes_nothing(
    kube: Cluster, controller: ImageController, registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path
) -> None:
    ns, reg = kube.ns, registry_plain
    key = tmp_path / "sig"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "open sesame", "-C", "sig", "-f", str(key)], check=True,
                   capture_output=True)  # fmt: skip
    reg.pusher().push("team/sig", ["1.0.0", "1.0.1"])
    kube.create(secret("git-auth", {"username": GIT_USER, "password": GIT_PASSWORD}))
    kube.create(secret("ssh-sig", {"identity": key.read_text(), "password": "open sesame"}))
    kube.create(secret("ssh-sig-wrong", {"identity": key.read_text(), "password": "wrong"}))
    kube.create(flux("ImageRepository", "sig", {"image": f"{reg.host}/team/sig", "interval": "1h", "insecure": True}))
    kube.create(flux("ImagePolicy", "sig", {"imageRepositoryRef": {"name": "sig"}, "policy": {"semver": {"range": "^1"}}}))
    bares = {}
    for name, secret_name in (("good", "ssh-sig"), ("wrong", "ssh-sig-wrong")):
        marker = f'image: {reg.host}/team/sig:1.0.0 # {{"$imagepolicy": "{ns}:sig"}}\n'
        bares[name] = make_bare(git_http.root, f"ssh-{name}-{ns}", {"sig.yaml": marker})
        kube.create(flux("GitRepository", name, {"url": git_http.url(bares[name]), "interval": "1h", "ref": {"branch": "main"},
                                                 "secretRef": {"name": "git-auth"}}, "source.toolkit.fluxcd.io/v1"))  # fmt: skip
        kube.create(flux("ImageUpdateAutomation", name, {
            "interval": "1h", "sourceRef": {"kind": "GitRepository", "name": name},
            "git": {"commit": {"author": {"name": "bot", "email": "bot@example.org"},
                               "signingKey": {"type": "ssh", "secretRef": {"name": secret_name}}},
                    "push": {"branch": "main"}},
            "update": {"path": "./", "strategy": "Setters"},
        }))  # fmt: skip
    until(lambda: "sig:1.0.1" in read_file(bares["good"], "main", "sig.yaml"), what="the signed commit")
    signers = tmp_path / "allowed_signers"
    signers.write_text(f"bot@example.org {(tmp_path / 'sig.pub').read_text().strip()}\n")
    verified = subprocess.run(["git", "-C", str(bares["good"]), "-c", f"gpg.ssh.allowedSignersFile={signers}", "verify-commit",
                               "main"], capture_output=True, text=True)  # fmt: skip
    assert verified.returncode == 0 and 'Good "git" signature for bot@example.org' in verified.stderr, verified.stderr
    # judged before its GitRepository reached the cache, it is briefly "not found": wait for the push's own verdict
    wrong = until(lambda: (o := kube.get("ImageUpdateAutomation", "wrong")) and ready(o).get("reason") == "GitOperationFailed"
                  and o, what="the wrong password refused")  # fmt: skip
    assert ready(wrong)["reason"] == "GitOperationFailed" and "wrong password" in ready(wrong)["message"], ready(wrong)
    assert len(log(bares["wrong"], "main")) == 1, "nothing pushed"
