"""Browser fixtures: one headless Chromium per test session, and one real GitOps loop per test module for the
dashboard to show — the test API server with the CRDs, an App synced by `reconciler controller` (in-process, as
tests/reconciler runs it) from a bare repository over smart HTTP, imagebot's state from a real pass against
Debian's registry (the bot's commit is what the App applies), and `dashboard serve` as a process stopped by PID."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gitopskit.kube import request_json
from tests.fixtures.botconfig import git_env, imagebot_config
from tests.fixtures.browser import BrowserUnavailable, DashboardDidNotStart, DashboardServer, chrome, start_dashboard
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare
from tests.fixtures.registry import RegistryServer

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

APP_PATH = "/apis/reconciler.imagebot.dev/v1alpha1"
TOKEN = "dashb0ard-t0ken-for-tests"


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    try:
        driver = chrome(tmp_path_factory.mktemp("chromium"))
    except BrowserUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)  # never a silent skip: the setup installs Chromium
    try:
        yield driver
    finally:
        driver.quit()  # ends chromedriver (by its PID) and the browser with it


@pytest.fixture
def browser(chromium: WebDriver) -> WebDriver:
    """The session's browser on a blank page with no cookies: each test starts logged out."""
    chromium.get("about:blank")
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})  # every site's (delete_all_cookies: the page's only)
    return chromium


def until(cond: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what or cond}")


def deployment(name: str, ns: str, registry: str, env: str) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {ns}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: {registry}/dash/web:1.0.0 # {{"$imagepolicy": "dash:web-{env}"}}
"""


BOT_IMAGES = """images:
  - name: web
    repository: {registry}/dash/web
    environments:
      prod:
        policy: {{semver: "^1"}}
        setter: dash:web-prod
        target: {{git: config, path: apps/web}}
      dev:
        policy: {{semver: ">=1.0.0-0"}}
        setter: dash:web-dev
        target: {{git: config, path: apps/web}}
"""


@dataclass(frozen=True)
class Loop:
    """What a dashboard test looks at: the namespace of the app, the app, and the running dashboard."""

    api: Any
    cluster: TestCluster
    ns: str
    app: str
    bare: Path
    state: Path
    dashboard: DashboardServer

    def app_object(self, name: str | None = None) -> dict[str, Any]:
        return request_json(self.api, "GET", f"{APP_PATH}/namespaces/{self.ns}/apps/{name or self.app}")


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


@pytest.fixture(scope="module")
def loop(cluster: TestCluster, git_http: GitHttp, registry_plain: RegistryServer) -> Iterator[Loop]:
    from imagebot.config.load import load
    from imagebot.runtime.runner import Runner
    from reconciler.controller import AppController
    from tests.integration.test_crds import install

    api = cluster.api_client()
    install(api)
    ns = f"dash-{uuid.uuid4().hex[:8]}"
    request_json(api, "POST", "/api/v1/namespaces", body={"metadata": {"name": ns}})
    work = Path(tempfile.mkdtemp(prefix="dashboard-test-"))
    host = registry_plain.host
    files = {
        "apps/web/web.yaml": deployment("web", ns, host, "prod"),
        "apps/web/web-dev.yaml": deployment("web-dev", ns, host, "dev"),
        "apps/web/settings.yaml": json.dumps(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns}, "data": {"a": "1"}}
        ),
    }
    bare = make_bare(git_http.root, f"dash-{ns}", files)
    # imagebot's real pass: the registry has 1.0.0, 1.1.0 and a pre-release; the bot commits them to the repo
    registry_plain.pusher().push("dash/web", ["1.0.0", "1.1.0", "1.2.0-rc.1"], distinct=True)
    cfg = work / "imagebot.yaml"
    state = work / "state.db"
    cfg.write_text(imagebot_config(BOT_IMAGES.format(registry=host), state=state, cache=work / "bot-cache", registries=[host],
                                   url=git_http.url(bare), env="DASH"))  # fmt: skip
    credentials = git_env("DASH")
    saved = {k: os.environ.get(k) for k in credentials}
    os.environ.update(credentials)
    try:
        result = Runner(load([cfg])).run_pass()
        assert not result.errors, result.errors
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)

    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git-auth"},
              "data": {"username": base64.b64encode(GIT_USER.encode()).decode(),
                       "password": base64.b64encode(GIT_PASSWORD.encode()).decode()}}  # fmt: skip
    request_json(api, "POST", f"/api/v1/namespaces/{ns}/secrets", body=secret)
    app = {"apiVersion": "reconciler.imagebot.dev/v1alpha1", "kind": "App", "metadata": {"name": "web"},
           "spec": {"source": {"url": git_http.url(bare), "secretRef": {"name": "git-auth"}}, "path": "apps/web",
                    "prune": True, "interval": "1h"}}  # fmt: skip
    request_json(api, "POST", f"{APP_PATH}/namespaces/{ns}/apps", body=app)
    ctl = AppController(api, (ns,), workers=2, cache=work / "controller-cache")
    ctl.start()
    server = None
    try:
        until(lambda: ready(request_json(api, "GET", f"{APP_PATH}/namespaces/{ns}/apps/web")).get("status") == "True",
              what="the App Ready")  # fmt: skip
        failed = ""
        try:
            server = start_dashboard(work / "dashboard", cluster.kubeconfig, state=state, token=TOKEN, token_name="tester",
                                     extra=["--namespace", ns])  # fmt: skip
        except DashboardDidNotStart as exc:
            failed = str(exc)
        if server is None:
            pytest.fail(failed, pytrace=False)
        yield Loop(api, cluster, ns, "web", bare, state, server)
    finally:
        if server is not None:
            server.stop()
        assert ctl.stop(30)
