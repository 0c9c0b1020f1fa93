"""The Images page's Hold / Release / Approve on the imagebot controller's Flux ImagePolicies: the same annotations
`imagebot hold|release|approve --policy` writes, under the same login and CSRF rules as every action, honoured by
the running controller (real test API server, real registry), recorded with who did it; and every request it makes
is granted by deploy/dashboard."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from dashboard.auth import Auth
from dashboard.cluster import ClusterView
from dashboard.server import Dashboard, serve
from imagebot.controller.controller import ImageController
from tests.dashboard.test_rbac import DEPLOY, VIEW, granted
from tests.dashboard.test_server import TOKEN, login
from tests.fixtures.browser import DashboardServer, start_dashboard
from tests.fixtures.cluster import TestCluster
from tests.fixtures.registry import RegistryServer
from tests.integration import test_image_controller as base
from tests.integration.test_deploy import _attributes, _record, docs
from tests.integration.test_image_controller import Cluster, flux, ready, until

pytestmark = [pytest.mark.cluster]
kube, controller = base.kube, base.controller  # the image controller tests' fixtures: a namespace, a controller on it

HOLD, APPROVE = "imagebot.dev/hold", "imagebot.dev/approve"


@pytest.fixture
def dash(cluster: TestCluster, kube: Cluster, tmp_path: Path) -> Iterator[DashboardServer]:
    server = start_dashboard(tmp_path / "dash", cluster.kubeconfig, token=TOKEN, extra=["--namespace", kube.ns])
    try:
        yield server
    finally:
        server.stop()


def policy(kube: Cluster, name: str) -> dict[str, Any]:
    return kube.get("ImagePolicy", name)


def tag_of(obj: dict[str, Any]) -> str | None:
    return ((obj.get("status") or {}).get("latestRef") or {}).get("tag")


def annotations(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def create_policy(kube: Cluster, name: str, annotations: dict[str, str]) -> None:
    obj = flux("ImagePolicy", name, {"imageRepositoryRef": {"name": "shop"}, "policy": {"semver": {"range": "^1"}}})
    obj["metadata"]["annotations"] = annotations
    kube.create(obj)


def row(page: str, key: str) -> str:
    start = page.index(f'data-key="{key}"')
    return page[start : page.index("</tr>", start)]


def row_says(dash: DashboardServer, key: str, text: str) -> str:
    def got() -> str:
        page = requests.get(f"{dash.url}/images", timeout=30).text
        return row(page, key) if f'data-key="{key}"' in page and text in row(page, key) else ""

    return str(until(got, what=f"{text!r} on {key}'s row"))


def test_hold_release_and_approve_on_flux_policies_write_the_annotations_the_controller_honours(
    kube: Cluster, controller: ImageController, dash: DashboardServer, registry_plain: RegistryServer
) -> None:
    ns, reg = kube.ns, registry_plain
    reg.pusher().push(f"{ns}/shop", ["1.4.0"], distinct=True)
    kube.create(flux("ImageRepository", "shop", {"image": f"{reg.host}/{ns}/shop", "interval": "1h", "insecure": True}))
    create_policy(kube, "web", {})
    create_policy(kube, "prod", {"imagebot.dev/promote-from": "web", "imagebot.dev/soak": "24h"})
    until(lambda: tag_of(policy(kube, "web")) == "1.4.0", what="web at 1.4.0")
    base = f"{dash.url}/imagepolicies/{ns}"

    # not logged in: the buttons are disabled and a POST is refused; logged in without CSRF token: refused
    anonymous = requests.Session()
    page = anonymous.get(f"{dash.url}/images", timeout=30).text
    assert 'data-test="flux-action-hold" disabled' in row_says(dash, f"{ns}/web", "flux-action-hold")
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert anonymous.post(f"{base}/web/hold", data={"csrf": csrf}, allow_redirects=False, timeout=30).status_code == 401
    s, csrf = login(dash)
    assert s.post(f"{base}/web/hold", data={"csrf": "0" * 64}, allow_redirects=False, timeout=30).status_code == 403
    assert HOLD not in annotations(policy(kube, "web")), "nothing refused was written"

    # hold: the annotation, the controller's Held, the row with who can release
    r = s.post(f"{base}/web/hold", data={"csrf": csrf, "reason": "incident 42", "next": "/images"}, allow_redirects=False,
               timeout=30)  # fmt: skip
    assert r.status_code == 303 and r.headers["Location"] == "/images", r.text
    assert annotations(policy(kube, "web"))[HOLD] == "incident 42"
    until(lambda: "held (imagebot.dev/hold): incident 42" in ready(policy(kube, "web")).get("message", ""), what="Held")
    held = row_says(dash, f"{ns}/web", "flux-action-release")
    assert "on hold" in held and "incident 42" in held
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    again = requests.post(f"{base}/web/hold", headers=bearer, timeout=30)
    assert again.status_code == 200 and again.json()["written"] is False, again.text
    assert again.json()["result"] == f"{ns}/web: already held (incident 42)"

    # a newer tag does not move the held policy; the release lets it
    reg.pusher().push(f"{ns}/shop", ["1.5.0"], distinct=True)
    kube.annotate("ImageRepository", "shop", "reconcile.fluxcd.io/requestedAt", f"{time.time_ns()}")
    until(lambda: ((kube.get("ImageRepository", "shop").get("status") or {}).get("lastScanResult") or {}).get("tagCount")
          == 2, what="the rescan")  # fmt: skip
    time.sleep(1.0)  # not a timing assertion: give a wrong move the chance to show
    assert tag_of(policy(kube, "web")) == "1.4.0"
    r = requests.post(f"{base}/web/release", headers=bearer, timeout=30)
    assert r.status_code == 200 and r.json()["written"] is True and r.json()["by"] == "token (dashboard API)", r.text
    until(lambda: tag_of(policy(kube, "web")) == "1.5.0", what="web released to 1.5.0")
    assert HOLD not in annotations(policy(kube, "web"))

    # prod soaks web's 1.5.0: the row offers to approve exactly that tag, which the controller then promotes
    until(lambda: "1.5.0 soaking in web" in ready(policy(kube, "prod")).get("message", ""), what="prod soaking 1.5.0")
    offer = row_says(dash, f"{ns}/prod", "Approve 1.5.0 now")
    assert 'name="tag" value="1.5.0"' in offer and "promoted from web" in offer
    r = s.post(f"{base}/prod/approve", data={"csrf": csrf, "tag": "1.5.0"}, allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    assert annotations(policy(kube, "prod"))[APPROVE] == "1.5.0"
    until(lambda: tag_of(policy(kube, "prod")) == "1.5.0", what="prod promoted at once")

    # refused: approve without promote-from (400), an unknown policy (404); nothing written
    r = requests.post(f"{base}/web/approve", headers=bearer, timeout=30)
    assert r.status_code == 400 and "does not promote from another ImagePolicy" in r.text, r.text
    assert APPROVE not in annotations(policy(kube, "web"))
    assert requests.post(f"{base}/nope/hold", headers=bearer, timeout=30).status_code == 404
    assert requests.post(f"{dash.url}/imagepolicies/Bad_NS/web/hold", headers=bearer, timeout=30).status_code == 404

    # who did what: an Event on each policy, in the timeline
    timeline = s.get(f"{dash.url}/activity", timeout=30).text
    for line in (f"{ns}/web: Held", f"{ns}/web: Released", f"{ns}/prod: Approved"):
        assert line in timeline, timeline
    assert "token (dashboard)" in timeline and "token (dashboard API)" in timeline


def test_every_request_of_the_policy_actions_is_granted_by_the_dashboards_deploy(cluster: TestCluster, kube: Cluster) -> None:
    create_policy(kube, "web", {})
    dash_api = cluster.api_client()
    seen = _record(dash_api)
    view = ClusterView(dash_api, (kube.ns,))
    d = Dashboard(view, None, Auth({TOKEN: "rbac"}))
    server = serve("127.0.0.1:0", d)
    view.start()
    d.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        until(lambda: f'data-key="{kube.ns}/web"' in requests.get(f"{url}/images", timeout=30).text, what="the policy listed")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for action in ("hold", "release"):
            r = requests.post(f"{url}/imagepolicies/{kube.ns}/web/{action}", headers=auth, timeout=30)
            assert r.status_code == 200 and r.json()["written"] is True, r.text
    finally:
        server.shutdown()
        d.stop()
        view.stop()
    rules = [r for doc in docs(DEPLOY) if doc["kind"] == "ClusterRole" for r in doc["rules"]] + VIEW
    asked = {a for m, u in seen if (a := _attributes(m, u)) is not None}
    assert ("patch", "image.toolkit.fluxcd.io", "imagepolicies", kube.ns, "web") in asked
    refused = sorted(a for a in asked if not granted(rules, a))
    assert not refused, f"requests deploy/dashboard would refuse (403 in a real cluster): {refused}"


def test_a_read_only_dashboard_offers_no_policy_action_and_refuses_one(
    cluster: TestCluster, kube: Cluster, tmp_path: Path
) -> None:
    create_policy(kube, "web", {})
    server = start_dashboard(tmp_path / "ro", cluster.kubeconfig, read_only=True, extra=["--namespace", kube.ns])
    try:
        assert 'data-test="flux-action-hold" disabled' in row_says(server, f"{kube.ns}/web", "flux-action-hold")
        r = requests.post(f"{server.url}/imagepolicies/{kube.ns}/web/hold", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=30)  # fmt: skip
        assert r.status_code == 403, r.text
    finally:
        server.stop()
    assert HOLD not in annotations(policy(kube, "web"))
