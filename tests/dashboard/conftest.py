"""Browser fixtures: one headless Chromium per test session (tests/fixtures/browser.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.fixtures.browser import BrowserUnavailable, chrome

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver


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
    chromium.delete_all_cookies()
    return chromium
