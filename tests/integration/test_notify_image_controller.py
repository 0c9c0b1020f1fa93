"""`imagebot controller` notifications: the realistic Flux set's automation pushes, and a webhook receiver of ours
is told (subject NAMESPACE/NAME of the automation, the commit, the object); `--notify-config` is checked first."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from gitopskit.notifier import Notifier, WebhookSink
from gitopskit.notify import NotifyConfig, SinkConfig, SinkKind
from gitopskit.workqueue import Backoff
from imagebot.cli import main
from imagebot.controller.controller import ImageController
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, log, make_bare
from tests.fixtures.receiver import Receiver
from tests.fixtures.registry import PASSWORD, USER, RegistryServer
from tests.integration.test_image_controller import Cluster, flux, kube, manifests, realistic_set, secret  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.git]


def test_a_push_by_the_image_controller_is_notified_with_its_commit_and_object(
    kube: Cluster,  # noqa: F811
    registry_basic: RegistryServer,
    git_http: GitHttp,
    tmp_path: Path,
) -> None:
    reg, ns = registry_basic, kube.ns
    reg.pusher().push("team/app", ["1.0.0"])
    reg.pusher().push("team/builds", ["main-aaa-100"])
    reg.pusher().push("team/minio", ["RELEASE.2024-01-01T00-00-00Z", "RELEASE.2024-03-01T00-00-00Z"])  # one update
    bare = make_bare(git_http.root, f"ncfg-{ns}", manifests(reg.host, ns))
    receiver = Receiver()
    hook = SinkConfig("ops", SinkKind.WEBHOOK, url=receiver.url(), timeout=5.0, deadline=30.0)
    notifier = Notifier(NotifyConfig((hook,)), [(hook, WebhookSink("ops", receiver.url()))], source="imagebot",
                        backoff=Backoff(base=0.05, cap=0.2)).start()  # fmt: skip
    ctl = ImageController(kube.api, (ns,), workers=4, cache=tmp_path / "cache")
    ctl.notifier = notifier
    ctl.start()
    try:
        assert ctl.wait_synced(30)
        realistic_set(kube, reg, git_http.url(bare), USER, PASSWORD, GIT_PASSWORD)
        (got,) = receiver.wait(1, timeout=90)
        assert notifier.flush(20)
    finally:
        ctl.stop()
        notifier.close(5)
        receiver.stop()
    doc = got.json()
    sha = log(bare, "main")[0].split()[0]
    assert (doc["type"], doc["subject"], doc["source"]) == ("commit-pushed", f"{ns}/config", "imagebot")
    assert doc["details"] == {"commit": sha, "branch": "main"}
    assert doc["object"] == {"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageUpdateAutomation", "namespace": ns,
                             "name": "config"}  # fmt: skip


def test_a_pull_request_opened_by_the_image_controller_is_notified_as_such(
    kube: Cluster,  # noqa: F811
    registry_plain: RegistryServer,
    git_http: GitHttp,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.fixtures.fake_github import TOKEN, FakeGitHub

    monkeypatch.setenv("IMAGEBOT_GITHUB_THROTTLE", "0")
    ns, reg = kube.ns, registry_plain
    reg.pusher().push("team/nweb", ["1.0.0", "1.3.0"])
    bare = make_bare(
        git_http.root, f"npr-{ns}", {"web.yaml": f'image: {reg.host}/team/nweb:1.0.0 # {{"$imagepolicy": "{ns}:web"}}\n'}
    )
    github = FakeGitHub({"org/config": bare}, prefix="/api/v3")
    receiver = Receiver()
    hook = SinkConfig("ops", SinkKind.WEBHOOK, url=receiver.url(), timeout=5.0, deadline=30.0)
    notifier = Notifier(NotifyConfig((hook,)), [(hook, WebhookSink("ops", receiver.url()))], source="imagebot").start()
    ctl = ImageController(kube.api, (ns,), workers=4, cache=tmp_path / "cache")
    ctl.notifier = notifier
    ctl.start()
    try:
        kube.create(secret("git-auth", {"username": GIT_USER, "password": GIT_PASSWORD}))
        kube.create(secret("github", {"token": TOKEN}))
        kube.create(flux("GitRepository", "cfg", {"url": git_http.url(bare), "interval": "1h", "ref": {"branch": "main"},
                                                  "secretRef": {"name": "git-auth"}}, "source.toolkit.fluxcd.io/v1"))  # fmt: skip
        kube.create(flux("ImageRepository", "web", {"image": f"{reg.host}/team/nweb", "interval": "1h", "insecure": True}))
        kube.create(flux("ImagePolicy", "web", {"imageRepositoryRef": {"name": "web"}, "policy": {"semver": {"range": "^1"}}}))
        auto = flux("ImageUpdateAutomation", "staging", {
            "interval": "1h", "sourceRef": {"kind": "GitRepository", "name": "cfg"},
            "git": {"commit": {"author": {"name": "bot", "email": "bot@example.org"}}, "push": {"branch": "main"}},
            "update": {"path": "./", "strategy": "Setters"},
        })  # fmt: skip
        auto["metadata"]["annotations"] = {
            "imagebot.dev/pull-request": "true", "imagebot.dev/github-repository": "org/config",
            "imagebot.dev/github-api": github.base, "imagebot.dev/github-token-secret": "github",
        }  # fmt: skip
        kube.create(auto)
        (got,) = receiver.wait(1, timeout=90)
        assert notifier.flush(20)
    finally:
        ctl.stop()
        notifier.close(5)
        receiver.stop()
        github.stop()
    doc = got.json()
    assert (doc["type"], doc["subject"]) == ("pr-opened", f"{ns}/staging")
    assert "pull request #1 opened" in doc["message"] and doc["details"]["pr"].endswith("/pull/1")
    assert doc["details"]["branch"] == "imagebot/staging/default"


def test_a_bad_notify_config_is_exit_2_before_the_controller_starts(tmp_path: Path) -> None:
    bad = tmp_path / "notify.yaml"
    bad.write_text("notifications:\n  sinks:\n    - {name: x, type: pager}\n")
    err = io.StringIO()
    code = main(["controller", "--kubeconfig", str(tmp_path / "none"), "--notify-config", str(bad)], out=io.StringIO(), err=err)
    assert code == 2 and "type: one of webhook, slack, kubernetes" in err.getvalue() and "Traceback" not in err.getvalue()
