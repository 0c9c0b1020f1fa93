"""`imagebot controller` as found from outside (a fresh clone, the demo's cluster, Flux's objects applied by hand):

- a second ImagePolicy in the automation's namespace that no marker under its path names (another automation's,
  or one whose marker is not in Git yet — ordinary Flux usage) failed the whole automation: 'not written: … no
  reference found', Ready=False and a Warning at every run;
- a restarted controller judged objects before its caches were listed: 'GitRepository … not found' written to
  the status (and an Event) of every automation whose GitRepository informer had not synced yet."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagebot.controller.controller import ImageController
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, log, make_bare, read_file
from tests.fixtures.registry import RegistryServer
from tests.integration import test_image_controller as base
from tests.integration.test_image_controller import Cluster, flux, ready, secret, until

pytestmark = [pytest.mark.cluster, pytest.mark.git]
kube = base.kube  # the fixture: the test API server with the CRDs, in a namespace of its own


def automation(kube: Cluster, reg: RegistryServer, git_http: GitHttp, name: str) -> Any:
    reg.pusher().push(f"{name}/app", ["1.0.0", "1.1.0"])
    marker = f'image: {reg.host}/{name}/app:1.0.0 # {{"$imagepolicy": "{kube.ns}:app"}}\n'
    bare = make_bare(git_http.root, f"{name}-{kube.ns}", {"apps/app.yaml": marker})
    kube.create(secret("git-auth", {"username": GIT_USER, "password": GIT_PASSWORD}))
    kube.create(flux("GitRepository", "cfg", {"url": git_http.url(bare), "interval": "1h", "ref": {"branch": "main"},
                                              "secretRef": {"name": "git-auth"}}, "source.toolkit.fluxcd.io/v1"))  # fmt: skip
    kube.create(flux("ImageRepository", "app", {"image": f"{reg.host}/{name}/app", "interval": "1h", "insecure": True}))
    kube.create(flux("ImagePolicy", "app", {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": "^1"}}}))
    kube.create(flux("ImageUpdateAutomation", "cfg", {
        "interval": "1h", "sourceRef": {"kind": "GitRepository", "name": "cfg"},
        "git": {"commit": {"author": {"name": "bot", "email": "bot@example.org"}}, "push": {"branch": "main"}},
        "update": {"path": "./apps", "strategy": "Setters"},
    }))  # fmt: skip
    return bare


def test_a_policy_no_marker_names_does_not_fail_the_automation_of_its_namespace(
    kube: Cluster, registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path
) -> None:
    bare = automation(kube, registry_plain, git_http, "unref")
    # the namespace's other policy: no marker under ./apps names it (another automation's, or not in Git yet)
    kube.create(flux("ImagePolicy", "other", {"imageRepositoryRef": {"name": "app"}, "policy": {"semver": {"range": "*"}}}))
    ctl = ImageController(kube.api, (kube.ns,), workers=4, cache=tmp_path / "cache")
    ctl.start()
    try:
        until(lambda: kube.get("ImagePolicy", "other").get("status", {}).get("latestRef"), what="the other policy resolved")
        until(lambda: "app:1.1.0" in read_file(bare, "main", "apps/app.yaml"), what="the commit")
        auto = until(lambda: (o := kube.get("ImageUpdateAutomation", "cfg")).get("status", {}).get("lastPushCommit") and o,
                     what="the automation's status")  # fmt: skip
        assert ready(auto)["status"] == "True", ready(auto)
        assert len(log(bare, "main")) == 2, "one commit"
        kube.annotate("ImageUpdateAutomation", "cfg", "reconcile.fluxcd.io/requestedAt", "again")
        again = until(lambda: (o := kube.get("ImageUpdateAutomation", "cfg"))["status"].get("lastHandledReconcileAt") and o,
                      what="a second run")  # fmt: skip
        assert (ready(again)["status"], ready(again)["message"]) == ("True", "repository up-to-date"), ready(again)
        warnings = [e for e in kube.events() if e.get("type") == "Warning" and "not written" in e.get("message", "")]
        assert not warnings, warnings[0]["message"]
    finally:
        ctl.stop()


@pytest.fixture
def slow_gitrepos(kube: Cluster, tmp_path: Path) -> Iterator[tuple[ImageController, threading.Event]]:
    """A controller whose GitRepository informer starts listing only when the test says (the others at once)."""
    ctl = ImageController(kube.api, (kube.ns,), workers=4, cache=tmp_path / "cache")
    gate = threading.Event()
    for inf in ctl.gitrepos:
        real = inf.start

        def late(stop: threading.Event, real: Any = real) -> None:
            threading.Thread(target=lambda: (gate.wait(120), real(stop)), daemon=True).start()

        inf.start = late  # type: ignore[method-assign]
    try:
        yield ctl, gate
    finally:
        gate.set()
        ctl.stop()


def test_nothing_is_judged_before_every_cache_is_listed(
    kube: Cluster, registry_plain: RegistryServer, git_http: GitHttp, slow_gitrepos: tuple[ImageController, threading.Event]
) -> None:
    bare = automation(kube, registry_plain, git_http, "sync")
    ctl, gate = slow_gitrepos
    ctl.start()
    until(lambda: all(inf.wait_synced(0) for infs in ctl.informers.values() for inf in infs), what="the image informers")
    end = time.monotonic() + 3.0  # time enough for a worker to judge the automation (it took milliseconds)
    while time.monotonic() < end:
        status = kube.get("ImageUpdateAutomation", "cfg").get("status") or {}
        assert "not found" not in ready({"status": status}).get("message", ""), ready({"status": status})
        time.sleep(0.1)
    gate.set()
    until(lambda: "app:1.1.0" in read_file(bare, "main", "apps/app.yaml"), what="the commit once every cache is listed")
    assert not [e for e in kube.events() if "not found" in e.get("message", "")]
