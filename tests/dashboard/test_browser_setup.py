"""The browser setup itself: Debian's Chromium through chromedriver loads a page from a loopback server, runs its
script, receives server-sent events while the page stays open, and sends a click back — what every dashboard
browser test relies on. Fails (never skips) with the install command when Chromium or chromedriver is missing."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.fixtures.net import QuietHandler, ThreadServer

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

PAGE = b"""<!doctype html><meta charset="utf-8"><title>setup</title>
<p id="state">loading</p><button id="go" onclick="fetch('/click', {method: 'POST'})">go</button>
<script>
const es = new EventSource('/events');
es.onopen = () => { document.getElementById('state').textContent = 'open'; };
es.onmessage = (e) => { document.getElementById('state').textContent = e.data; };
</script>"""


class _Pushes:
    events: queue.Queue[str] = queue.Queue()
    clicks: queue.Queue[str] = queue.Queue()


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        if self.path == "/":
            self.send_body(200, PAGE, content_type="text/html; charset=utf-8")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(b": hello\n\n")
        self.wfile.flush()
        while True:
            try:
                data = _Pushes.events.get(timeout=30)
            except queue.Empty:
                return
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()

    def do_POST(self) -> None:
        _Pushes.clicks.put(self.path)
        self.send_body(204, b"")


@pytest.fixture
def page_server() -> Iterator[str]:
    server = ThreadServer(_Handler)
    yield f"http://127.0.0.1:{server.port}"
    _Pushes.events.put("bye")  # ends the open stream's handler thread
    server.stop()


def test_headless_chromium_loads_a_page_receives_server_sent_events_and_clicks(browser: WebDriver, page_server: str) -> None:
    browser.get(page_server + "/")
    state = browser.find_element(By.ID, "state")
    WebDriverWait(browser, 30).until(lambda _: state.text == "open")
    _Pushes.events.put("changed on the server")
    WebDriverWait(browser, 30).until(lambda _: state.text == "changed on the server")
    browser.find_element(By.ID, "go").click()
    assert _Pushes.clicks.get(timeout=30) == "/click"
