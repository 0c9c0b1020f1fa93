"""imagebot's own settings on Flux ImagePolicies (annotations), on the real test API server, a real registry and a
real git remote: promotion with soak (surviving a controller restart), minimum age, the downgrade guard, hold.

The controller's clock is injected (no sleeping): a soak "passes" when the test moves the clock and asks for a
reconcile with Flux's ``reconcile.fluxcd.io/requestedAt``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitopskit.kube import request_json
from imagebot.controller.controller import IMAGE_PATH, ImageController
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare, read_file
from tests.fixtures.registry import RegistryServer
from tests.integration import test_image_controller as base
from tests.integration.test_image_controller import Cluster, flux, ready, secret, until

pytestmark = [pytest.mark.cluster, pytest.mark.git]
kube = base.kube  # the image controller tests' fixture: the test API server with the CRDs, in a namespace of its own

T0 = 1_900_000_000.0
H = 3600.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Controllers:
    """Start (and restart) controllers on one namespace, each with the shared injectable clock."""

    def __init__(self, kube: Cluster, cache: Path, clock: Clock) -> None:
        self.kube, self.cache, self.clock, self.running = kube, cache, clock, []

    def start(self) -> ImageController:
        ctl = ImageController(self.kube.api, (self.kube.ns,), workers=4, cache=self.cache, clock=self.clock)
        ctl.start()
        assert ctl.wait_synced(30)
        self.running.append(ctl)
        return ctl

    def stop(self, ctl: ImageController) -> None:
        self.running.remove(ctl)
        ctl.stop()


@pytest.fixture
def controllers(kube: Cluster, tmp_path: Path) -> Iterator[Controllers]:
    c = Controllers(kube, tmp_path / "cache", Clock(T0))
    yield c
    for ctl in list(c.running):
        c.stop(ctl)


def poke(kube: Cluster, kind: str, name: str) -> None:
    """``flux reconcile``: a new requestedAt makes the controller look at the object now."""
    kube.annotate(kind, name, "reconcile.fluxcd.io/requestedAt", f"{time.time_ns()}")


def policy(kube: Cluster, name: str) -> dict[str, Any]:
    return kube.get("ImagePolicy", name)


def tag_of(obj: dict[str, Any]) -> str | None:
    return ((obj.get("status") or {}).get("latestRef") or {}).get("tag")


def wait_message(kube: Cluster, name: str, text: str, timeout: float = 90.0) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        obj = policy(kube, name)
        if text in ready(obj).get("message", ""):
            return obj
        if time.monotonic() > end:
            pytest.fail(f"ImagePolicy {name}'s Ready never said {text!r}; it says {ready(obj)}")
        time.sleep(0.1)


def unannotate(kube: Cluster, name: str, *keys: str) -> None:
    body = {"metadata": {"annotations": dict.fromkeys(keys)}}
    path = f"{IMAGE_PATH}/namespaces/{kube.ns}/imagepolicies/{name}"
    request_json(kube.api, "PATCH", path, body=body, content_type="application/merge-patch+json")


def create_policy(kube: Cluster, name: str, annotations: dict[str, str], **spec: Any) -> None:
    obj = flux("ImagePolicy", name, {"imageRepositoryRef": {"name": "shop"}, "policy": {"semver": {"range": "^1"}}, **spec})
    obj["metadata"]["annotations"] = annotations
    kube.create(obj)


def delete_tag(reg: RegistryServer, name: str, digest: str) -> None:
    pusher = reg.pusher()
    r = pusher.session.delete(f"{reg.url}/v2/{name}/manifests/{digest}", timeout=30)
    assert r.status_code == 202, r.text


def test_prod_takes_stagings_tag_after_the_soak_which_a_restart_does_not_reset_and_hold_pins_it(
    kube: Cluster, controllers: Controllers, registry_plain: RegistryServer, git_http: GitHttp
) -> None:
    ns, reg, clock = kube.ns, registry_plain, controllers.clock
    image = f"{reg.host}/{ns}/shop"
    reg.pusher().push(f"{ns}/shop", ["1.4.0"], distinct=True)
    files = {
        "staging.yaml": f'image: {image}:1.0.0 # {{"$imagepolicy": "{ns}:staging"}}\n',
        "prod.yaml": f'image: {image}:1.0.0 # {{"$imagepolicy": "{ns}:prod"}}\n',
    }
    bare = make_bare(git_http.root, f"promo-{ns}", files)
    kube.create(secret("git-auth", {"username": GIT_USER, "password": GIT_PASSWORD}))
    kube.create(flux("GitRepository", "cfg", {"url": git_http.url(bare), "interval": "1h", "ref": {"branch": "main"},
                                              "secretRef": {"name": "git-auth"}}, "source.toolkit.fluxcd.io/v1"))  # fmt: skip
    kube.create(flux("ImageRepository", "shop", {"image": image, "interval": "1h", "insecure": True}))
    create_policy(kube, "staging", {}, digestReflectionPolicy="IfNotPresent")
    create_policy(kube, "prod", {"imagebot.dev/promote-from": "staging", "imagebot.dev/soak": "1h"})
    kube.create(flux("ImageUpdateAutomation", "cfg", {
        "interval": "1h", "sourceRef": {"kind": "GitRepository", "name": "cfg"},
        "git": {"commit": {"author": {"name": "bot", "email": "bot@example.org"}}, "push": {"branch": "main"}},
        "update": {"path": "./", "strategy": "Setters"},
    }))  # fmt: skip
    first = controllers.start()

    # staging resolves at once; prod has nothing that soaked yet and says so
    until(lambda: tag_of(policy(kube, "staging")) == "1.4.0", what="staging at 1.4.0")
    waiting = wait_message(kube, "prod", "1.4.0 soaking in staging: 1h00m left")
    assert ready(waiting)["status"] == "False" and ready(waiting)["reason"] == "PromotionSoaking"
    assert tag_of(waiting) is None
    assert "imagebot.dev/latest-since" in policy(kube, "staging")["metadata"]["annotations"], "the soak's start is kept"

    clock.t = T0 + 2 * H
    poke(kube, "ImagePolicy", "prod")
    until(lambda: tag_of(policy(kube, "prod")) == "1.4.0", what="prod promoted to 1.4.0")
    assert policy(kube, "staging")["status"]["latestRef"]["digest"].startswith("sha256:")
    assert "digest" not in policy(kube, "prod")["status"]["latestRef"], "prod reflects no digest (Never): the tag only"
    until(lambda: ":1.4.0 " in read_file(bare, "main", "prod.yaml"), what="prod's 1.4.0 committed")

    # a new tag: staging takes it at once, prod keeps 1.4.0 (Ready) and says how long 1.5.0 still soaks
    reg.pusher().push(f"{ns}/shop", ["1.5.0"], distinct=True)
    poke(kube, "ImageRepository", "shop")
    until(lambda: tag_of(policy(kube, "staging")) == "1.5.0", what="staging at 1.5.0")
    until(lambda: ":1.5.0@sha256:" in read_file(bare, "main", "staging.yaml"), what="staging's 1.5.0 committed, pinned")
    waiting = wait_message(kube, "prod", "1.5.0 soaking in staging: 1h00m left")
    assert ready(waiting)["status"] == "True" and ready(waiting)["reason"] == "PromotionSoaking" and tag_of(waiting) == "1.4.0"
    events = [e["message"] for e in kube.events() if e["involvedObject"]["name"] == "prod"]
    assert any("1.5.0 soaking in staging" in m for m in events), events

    # the controller goes away mid-soak; a new one (another process, no memory of the first) continues the soak
    controllers.stop(first)
    clock.t = T0 + 2 * H + 40 * 60
    second = controllers.start()
    poke(kube, "ImagePolicy", "prod")
    wait_message(kube, "prod", "1.5.0 soaking in staging: 20m00s left")
    assert tag_of(policy(kube, "prod")) == "1.4.0"

    clock.t = T0 + 3 * H + 60
    poke(kube, "ImagePolicy", "prod")
    until(lambda: tag_of(policy(kube, "prod")) == "1.5.0", what="prod promoted to 1.5.0 after the soak")
    until(lambda: ":1.5.0 " in read_file(bare, "main", "prod.yaml"), what="prod's 1.5.0 committed")

    # hold pins a tag (a rollback that sticks); releasing it lets the promotion move prod again
    kube.annotate("ImagePolicy", "prod", "imagebot.dev/hold-tag", "1.4.0")
    wait_message(kube, "prod", "metadata.annotations[imagebot.dev/hold-tag]: needs imagebot.dev/hold")
    assert tag_of(policy(kube, "prod")) == "1.5.0", "an invalid annotation writes nothing"
    kube.annotate("ImagePolicy", "prod", "imagebot.dev/hold", "incident 42")
    held = wait_message(kube, "prod", "held (imagebot.dev/hold): incident 42; pinned at 1.4.0")
    assert tag_of(held) == "1.4.0" and ready(held)["reason"] == "Held"
    until(lambda: ":1.4.0 " in read_file(bare, "main", "prod.yaml"), what="the pinned 1.4.0 committed")
    unannotate(kube, "prod", "imagebot.dev/hold", "imagebot.dev/hold-tag")
    until(lambda: tag_of(policy(kube, "prod")) == "1.5.0", what="released: prod back at staging's 1.5.0")
    assert second in controllers.running


def test_min_age_refuses_a_fresh_tag_and_a_deleted_newer_tag_does_not_downgrade(
    kube: Cluster, controllers: Controllers, registry_plain: RegistryServer
) -> None:
    ns, reg, clock = kube.ns, registry_plain, controllers.clock
    image = f"{reg.host}/{ns}/shop"
    digests = reg.pusher().push(f"{ns}/shop", ["1.4.0"], distinct=True)
    kube.create(flux("ImageRepository", "shop", {"image": image, "interval": "1h", "insecure": True}))
    create_policy(kube, "latest", {})
    create_policy(kube, "aged", {"imagebot.dev/min-age": "2h"})
    create_policy(kube, "lenient", {"imagebot.dev/allow-downgrade": "true"})
    create_policy(kube, "broken", {"imagebot.dev/min-age": "two hours"})
    ctl = controllers.start()

    broken = wait_message(kube, "broken", "metadata.annotations[imagebot.dev/min-age]: invalid duration 'two hours'")
    assert ready(broken)["reason"] == "InvalidPolicy" and tag_of(broken) is None
    aged = wait_message(kube, "aged", "no tag is older than the minimum age yet (1.4.0 waits)")
    assert ready(aged)["reason"] == "MinimumAgeNotReached" and tag_of(aged) is None
    assert "1.4.0" in policy(kube, "aged")["metadata"]["annotations"]["imagebot.dev/first-seen"]

    clock.t = T0 + 2 * H
    poke(kube, "ImagePolicy", "aged")
    until(lambda: tag_of(policy(kube, "aged")) == "1.4.0", what="1.4.0 old enough")
    digests |= reg.pusher().push(f"{ns}/shop", ["1.5.0"], distinct=True)
    poke(kube, "ImageRepository", "shop")
    until(lambda: tag_of(policy(kube, "latest")) == "1.5.0", what="the unguarded policy takes 1.5.0 at once")
    aged = wait_message(kube, "aged", "1.5.0 reaches the minimum age in 2h00m")
    assert tag_of(aged) == "1.4.0" and ready(aged)["status"] == "True"

    # restarted: the first-seen time of 1.5.0 is in the cluster, so its age keeps counting
    controllers.stop(ctl)
    clock.t = T0 + 3 * H
    controllers.start()
    poke(kube, "ImagePolicy", "aged")
    wait_message(kube, "aged", "1.5.0 reaches the minimum age in 1h00m")
    clock.t = T0 + 4 * H + 60
    poke(kube, "ImagePolicy", "aged")
    until(lambda: tag_of(policy(kube, "aged")) == "1.5.0", what="1.5.0 old enough")

    # 1.5.0 deleted from the registry: the guard keeps it (Ready=False saying why); allow-downgrade moves back
    until(lambda: tag_of(policy(kube, "lenient")) == "1.5.0", what="lenient at 1.5.0")
    delete_tag(reg, f"{ns}/shop", digests["1.5.0"])
    poke(kube, "ImageRepository", "shop")
    refused = wait_message(kube, "latest", "downgrade guard: 1.4.0 ranks below the current 1.5.0")
    assert ready(refused)["status"] == "False" and ready(refused)["reason"] == "DowngradeRefused"
    assert tag_of(refused) == "1.5.0"
    until(lambda: tag_of(policy(kube, "lenient")) == "1.4.0", what="allow-downgrade follows the registry")

    # another image is no downgrade: the policy now selecting from a repository at 1.0.0 moves there
    reg.pusher().push(f"{ns}/other", ["1.0.0"], distinct=True)
    kube.create(flux("ImageRepository", "other", {"image": f"{reg.host}/{ns}/other", "interval": "1h", "insecure": True}))
    path = f"{IMAGE_PATH}/namespaces/{ns}/imagepolicies/latest"
    request_json(kube.api, "PATCH", path, body={"spec": {"imageRepositoryRef": {"name": "other"}}},
                 content_type="application/merge-patch+json")  # fmt: skip
    until(lambda: tag_of(policy(kube, "latest")) == "1.0.0", what="latest at the other image's 1.0.0")


def test_a_soak_survives_kill_9_of_the_controller_process(
    kube: Cluster, cluster: TestCluster, registry_plain: RegistryServer, tmp_path: Path
) -> None:
    """The real process, killed with SIGKILL mid-soak: the next one reads the soak's start from the cluster (here an
    annotated ``since`` 50 minutes in the past, as a first process would have written it) and does not restart it."""
    import re
    import signal
    import subprocess
    import sys

    from imagebot.controller.promotion import rfc3339

    ns, reg = kube.ns, registry_plain
    image = f"{reg.host}/{ns}/shop"
    reg.pusher().push(f"{ns}/shop", ["1.5.0"], distinct=True)
    kube.create(flux("ImageRepository", "shop", {"image": image, "interval": "1h", "insecure": True}))
    started = rfc3339(time.time() - 50 * 60)
    create_policy(kube, "staging", {"imagebot.dev/latest-since": json.dumps([{"tag": "1.5.0", "digest": "", "since": started}])})
    create_policy(kube, "prod", {"imagebot.dev/promote-from": "staging", "imagebot.dev/soak": "1h"})
    cmd = [sys.executable, "-m", "imagebot", "controller", "--kubeconfig", str(cluster.kubeconfig), "--namespace", ns,
           "--cache", str(tmp_path / "cache")]  # fmt: skip

    def left_minutes(obj: dict[str, Any]) -> int:
        m = re.search(r"soaking in staging: (?:(\d+)h)?(\d+)m", ready(obj).get("message", ""))
        assert m is not None, ready(obj)
        return int(m.group(1) or 0) * 60 + int(m.group(2))

    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert left_minutes(wait_message(kube, "prod", "1.5.0 soaking in staging")) <= 10
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    second = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        kube.annotate("ImagePolicy", "prod", "reconcile.fluxcd.io/requestedAt", "after-kill")

        def reconciled() -> dict[str, Any] | None:  # by the second process, after its scan (before it: "not scanned yet")
            obj = policy(kube, "prod")
            done = (obj.get("status") or {}).get("lastHandledReconcileAt") == "after-kill"
            return obj if done and "soaking in staging" in ready(obj).get("message", "") else None

        assert left_minutes(until(reconciled, what="the second process's soak")) <= 10, "its start kept across kill -9"
        history = policy(kube, "staging")["metadata"]["annotations"]["imagebot.dev/latest-since"]
        assert json.loads(history) == [{"tag": "1.5.0", "digest": "", "since": started}], "kept as it was"
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
