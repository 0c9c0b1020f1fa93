"""The dashboard in a real browser: Debian's headless Chromium, driven by Selenium through chromedriver, on the
pages `dashboard serve` renders from the test API server, imagebot's state and the git remote (the `loop` fixture:
an App synced by the controller from the bot's commit). Everything waits by polling (WebDriverWait), never by time.

Live updates are checked on a page that is not reloaded: a mark set in the page's JavaScript before the change must
still be there when the change shows (a reload or a navigation would clear it)."""

from __future__ import annotations

import json
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from gitopskit.kube import request_json
from tests.dashboard.conftest import APP_PATH, TOKEN, Loop, until
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, commit_files, log
from tests.tools.kubectl import kubectl

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

pytestmark = [pytest.mark.cluster, pytest.mark.git, pytest.mark.registry]


# chromedriver reports an element whose node a live update replaced between find and read either as stale or, when
# the node id was already reused, as this "unknown error" (a plain WebDriverException): both mean "look again".
_DETACHED = "does not belong to the document"


def wait(browser: WebDriver, cond: Callable[[WebDriver], Any], what: str, timeout: float = 60) -> Any:
    """Poll COND until it is truthy; a page swapped under us (live update) is simply looked at again."""

    def look(b: WebDriver) -> Any:
        try:
            return cond(b)
        except WebDriverException as e:
            if isinstance(e, (NoSuchElementException, StaleElementReferenceException)) or _DETACHED in (e.msg or ""):
                return False
            raise

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(look, f"timed out waiting for {what}")


def click(browser: WebDriver, selector: str) -> None:
    """Click SELECTOR, finding it again if a live update replaced it under the click."""
    wait(browser, lambda b: css(b, selector).click() or True, f"a click on {selector}")


def css(browser: WebDriver, selector: str) -> Any:
    return browser.find_element(By.CSS_SELECTOR, selector)


def all_of(browser: WebDriver, selector: str) -> list[Any]:
    return browser.find_elements(By.CSS_SELECTOR, selector)


def app_url(loop: Loop) -> str:
    return f"{loop.dashboard.url}/apps/App/{loop.ns}/{loop.app}"


def open_live(browser: WebDriver, url: str) -> None:
    """Load URL, wait until its event stream is open, and mark the page (see the module's docstring)."""
    browser.get(url)
    wait(browser, lambda b: css(b, "#live-status").get_attribute("data-state") == "open", "the page's event stream")
    browser.execute_script("window.__notReloaded = true;")


def not_reloaded(browser: WebDriver) -> bool:
    return bool(browser.execute_script("return window.__notReloaded === true;"))


def login(browser: WebDriver, loop: Loop, token: str = TOKEN) -> None:
    browser.get(f"{loop.dashboard.url}/login?next=/apps/App/{loop.ns}/{loop.app}")
    css(browser, "#token").send_keys(token)
    css(browser, "#login-submit").click()


def test_the_pages_show_the_app_its_objects_the_images_and_the_activity(browser: WebDriver, loop: Loop) -> None:
    head = log(loop.bare, "main")[0].split()[0]
    open_live(browser, loop.dashboard.url + "/")
    key = f"App/{loop.ns}/{loop.app}"
    row = wait(browser, lambda b: css(b, f'#apps-body tr[data-key="{key}"]'), "the app's row")
    assert css(row, '[data-test="app-sync"]').get_attribute("data-value") == "Synced"
    assert head[:12] in css(row, '[data-test="app-revision"]').text, "the revision the controller applied: the bot's commit"
    assert css(browser, "#stale").get_attribute("data-stale") == "false"

    css(row, '[data-test="app-name"] a').click()
    wait(browser, lambda b: css(b, "#app-title").get_attribute("data-key") == key, "the app's page")
    objects = {o.get_attribute("data-object") for o in all_of(browser, '[data-test="object"]')}
    assert {f"Deployment/{loop.ns}/web", f"Deployment/{loop.ns}/web-dev", f"ConfigMap/{loop.ns}/settings"} <= objects

    click(browser, "#nav-images")
    wait(browser, lambda b: all_of(b, '[data-test="image-row"]'), "the Images page's rows")
    current = {r.get_attribute("data-key"): css(r, '[data-test="image-current"] code').text
               for r in all_of(browser, '[data-test="image-row"]')}  # fmt: skip
    by_env = {k.rsplit("/", 1)[-1] if "/" in k else k: v for k, v in current.items()}
    assert "1.1.0" in current.values() and "1.2.0-rc.1" in current.values(), by_env  # prod ^1, dev takes pre-releases

    click(browser, "#nav-activity")
    kinds = wait(browser, lambda b: {a.get_attribute("data-kind") for a in all_of(b, '[data-test="activity"]')}, "the timeline")
    assert {"commit", "sync"} <= kinds, kinds


def test_sync_now_applies_a_new_commit_and_the_page_shows_it_without_a_reload(browser: WebDriver, loop: Loop) -> None:
    # the App syncs hourly (spec.interval 1h): only the click makes the controller fetch this commit now
    commit_files(loop.bare, "main", {"apps/web/note.yaml": json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "note", "namespace": loop.ns}, "data": {"by": "sync"}})},
        message="a note for the Sync button")  # fmt: skip
    new = log(loop.bare, "main")[0].split()[0]
    login(browser, loop)
    wait(browser, lambda b: css(b, "#who").is_displayed(), "signed in")
    open_live(browser, app_url(loop))
    assert new[:12] not in css(browser, "#app-revision").text, "not applied before the click"
    click(browser, "#action-sync")
    # the form posts and comes back to this page (a navigation: the mark is gone); from there the change comes live
    wait(browser, lambda b: not not_reloaded(b) and css(b, "#live-status").get_attribute("data-state") == "open",
         "the page back after the form, live")  # fmt: skip
    browser.execute_script("window.__notReloaded = true;")
    wait(browser, lambda b: new in css(b, "#app-revision").text, "the new revision on the page", timeout=90)
    assert not_reloaded(browser), "the revision arrived live"
    objects = {o.get_attribute("data-object") for o in all_of(browser, '[data-test="object"]')}
    assert f"ConfigMap/{loop.ns}/note" in objects
    requested = '[data-test="event-row"][data-reason="SyncRequested"]'
    reasons = wait(browser, lambda b: [r.text for r in all_of(b, requested)], "the sync request event")
    assert "tester" in reasons[0], "the action names who did it"
    app = loop.app_object()
    assert app["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"] == app["status"]["lastHandledReconcileAt"]


def test_suspend_and_resume_show_live(browser: WebDriver, loop: Loop) -> None:
    login(browser, loop)
    open_live(browser, app_url(loop))
    click(browser, "#action-suspend")
    wait(browser, lambda b: css(b, "#app-suspended").get_attribute("data-value") == "true", "suspended")
    assert loop.app_object()["spec"]["suspend"] is True
    click(browser, "#action-resume")
    wait(browser, lambda b: css(b, "#app-suspended").get_attribute("data-value") == "false", "resumed")
    assert loop.app_object()["spec"]["suspend"] is False


def test_a_change_between_the_pages_render_and_its_subscription_is_not_lost(browser: WebDriver, loop: Loop) -> None:
    """A page subscribes to its event stream after it is rendered: a change in between was announced to nobody, so
    the page fetches its data once when the stream opens. The page's script is held back (blocked) while the app
    changes, then loaded: before, the page stayed at what it was rendered with until the next change."""
    path = f"{APP_PATH}/namespaces/{loop.ns}/apps/{loop.app}"

    def suspend(value: bool) -> None:
        request_json(loop.api, "PATCH", path, body={"spec": {"suspend": value}}, content_type="application/merge-patch+json")

    login(browser, loop)
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/static/app.js*"]})
    try:
        browser.get(app_url(loop))  # rendered; not subscribed (its script never ran)
        assert css(browser, "#app-suspended").get_attribute("data-value") == "false"
        suspend(True)
        headers, shown = {"Authorization": f"Bearer {TOKEN}"}, 'data-test="app-suspended" data-value="true"'
        until(lambda: shown in requests.get(app_url(loop), headers=headers, timeout=30).text, what="the dashboard's cache")
    finally:
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    try:
        assert css(browser, "#app-suspended").get_attribute("data-value") == "false", "the page was rendered before it"
        browser.execute_script("const s = document.createElement('script'); s.src = '/static/app.js'; document.body.append(s);")
        wait(browser, lambda b: css(b, "#live-status").get_attribute("data-state") == "open", "the page's event stream")
        wait(browser, lambda b: css(b, "#app-suspended").get_attribute("data-value") == "true", "the change made before")
    finally:
        suspend(False)


def test_kubectl_scale_shows_up_live_as_drift_with_its_field_manager(browser: WebDriver, loop: Loop) -> None:
    open_live(browser, app_url(loop))
    subprocess.run([kubectl(), "--kubeconfig", str(loop.cluster.kubeconfig), "-n", loop.ns, "scale", "deployment/web",
                    "--replicas=4"], check=True, capture_output=True, timeout=60)  # fmt: skip

    def replicas_drift(b: WebDriver) -> Any:
        rows = all_of(b, '[data-test="drift-row"]')
        return next((r for r in rows if r.get_attribute("data-field") == "/spec/replicas"), None)

    row = wait(browser, replicas_drift, "the replicas drift on the app's page")
    assert not_reloaded(browser), "the drift arrived live"
    assert (row.get_attribute("data-manager") or "").startswith("kubectl"), row.get_attribute("outerHTML")
    assert "1" in css(row, '[data-test="drift-values"]').text and "4" in css(row, '[data-test="drift-values"]').text


def test_an_action_without_the_token_is_refused(browser: WebDriver, loop: Loop) -> None:
    before = (loop.app_object()["metadata"].get("annotations") or {}).get("reconcile.fluxcd.io/requestedAt")
    open_live(browser, app_url(loop))
    button = css(browser, "#action-sync")
    assert not button.is_enabled() and button.get_attribute("aria-disabled") == "true", "no token: no live Sync button"
    assert css(browser, "#actions-login").is_displayed()
    # the form itself, sent anyway (with this browser's valid CSRF token): the server refuses it
    # enabled and clicked in one script: a live update re-rendering the actions in between would bring back a
    # disabled button and the click would do nothing (a 60 s wait for a refusal that never came, seen under load)
    browser.execute_script("const b = document.getElementById('action-sync'); b.disabled = false; b.click();")
    wait(browser, lambda b: "log in" in b.find_element(By.TAG_NAME, "main").text.lower(), "the refusal")
    refused = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[0], {method: 'POST', body: new URLSearchParams({csrf: 'forged'}), credentials: 'same-origin'})
          .then(r => done(r.status), e => done(String(e)));""", app_url(loop) + "/sync")  # fmt: skip
    assert refused == 403, "a wrong CSRF token is refused too"
    # a wrong token does not log in
    login(browser, loop, token="not-the-token")
    assert "wrong token" in wait(browser, lambda b: css(b, "#login-error").text, "the login error")
    after = (loop.app_object()["metadata"].get("annotations") or {}).get("reconcile.fluxcd.io/requestedAt")
    assert after == before, "nothing was written to the cluster"


def test_keyboard_alone_reaches_an_app_and_logs_in(browser: WebDriver, loop: Loop) -> None:
    open_live(browser, loop.dashboard.url + "/")
    body = css(browser, "body")
    body.send_keys(Keys.TAB)
    first = browser.switch_to.active_element
    assert first.get_attribute("class") == "skip" and first.text == "Skip to content", "the first Tab offers the skip link"
    target = f"/apps/App/{loop.ns}/{loop.app}"
    for _ in range(80):  # Tab through the page until the app's link has the focus
        focused = browser.switch_to.active_element
        if (focused.get_attribute("href") or "").endswith(target):
            break
        focused.send_keys(Keys.TAB)
    else:
        pytest.fail(f"Tab never reached the link to {target}")
    focused.send_keys(Keys.ENTER)
    wait(browser, lambda b: b.current_url.endswith(target), "the app's page, opened with Enter")
    css(browser, "#actions-login").send_keys(Keys.ENTER)
    wait(browser, lambda b: css(b, "#token"), "the login page")
    token = css(browser, "#token")
    for _ in range(20):  # Tab to the token field (the page starts with the skip link and the navigation)
        if browser.switch_to.active_element == token:
            break
        browser.switch_to.active_element.send_keys(Keys.TAB)
    token.send_keys(TOKEN, Keys.ENTER)
    wait(browser, lambda b: b.current_url.endswith(target) and css(b, "#who").is_displayed(), "signed in, back on the app")
    focus_style = browser.execute_script(
        "const b = document.getElementById('action-sync'); b.focus(); const s = getComputedStyle(b);"
        "return s.outlineStyle + ' ' + s.outlineWidth + ' ' + s.boxShadow;"
    )
    assert focus_style.split()[0] != "none" or "rgb" in focus_style, f"a focused button is visible: {focus_style}"


def test_secret_values_never_reach_the_page(browser: WebDriver, loop: Loop) -> None:
    secret = request_json(loop.api, "GET", f"/api/v1/namespaces/{loop.ns}/secrets/git-auth")
    values = [*secret["data"].values(), GIT_USER + ":" + GIT_PASSWORD, GIT_PASSWORD]
    for page in ("/", f"/apps/App/{loop.ns}/{loop.app}", "/activity", "/images"):
        browser.get(loop.dashboard.url + page)
        html = browser.page_source
        assert not [v for v in values if v in html], page


def test_the_screenshot_script_captures_every_page(loop: Loop, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests import screenshots

    assert screenshots.main(["--url", loop.dashboard.url + "/", "--out", str(tmp_path), "--app", loop.app]) == 0
    sizes = {}
    for name in ("apps", "app", "images", "activity", "apps-phone"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", name
        sizes[name] = struct.unpack(">II", png[16:24])  # IHDR: width, height
    assert sizes["apps"] == (1280, 800) and sizes["apps-phone"][0] == 390, sizes
    assert 800 <= sizes["app"][1] <= 1600, "a long page whole, within the cap"
    assert not list(tmp_path.glob(".*.tmp.png")), "no half-written file left"
    assert screenshots.main(["--demo", str(tmp_path)]) == 1
    assert "is not a kept demo" in capsys.readouterr().err
