"""The browser setup itself: Debian's Chromium through chromedriver loads a page from a loopback server, runs its
script, receives server-sent events while the page stays open, and sends a click back — what every dashboard
browser test relies on. Fails (never skips) with the install command when Chromium or chromedriver is missing.
And tests/system/install.sh --browser (make browser): nothing done when all is installed, what is missing installed
without a question (CI has no stdin)."""

from __future__ import annotations

import os
import queue
import subprocess
from collections.abc import Iterator
from pathlib import Path
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


INSTALL = Path(__file__).resolve().parents[1] / "system" / "install.sh"


def fake_bin(tmp_path: Path, **scripts: str) -> dict[str, str]:
    """PATH with fake commands first (each a shell body); the environment to run install.sh with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in scripts.items():
        exe = bin_dir / name.replace("_", "-")
        exe.write_text(f"#!/bin/sh\n{body}\n")
        exe.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_install_browser_does_nothing_when_everything_is_installed(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    env = fake_bin(tmp_path, dpkg_query="echo 'install ok installed'", apt_get=f'echo "$@" >> {calls}; exit 1')
    proc = subprocess.run([str(INSTALL), "--browser"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not calls.exists(), proc.stderr


def test_install_browser_installs_what_is_missing_without_asking(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    env = fake_bin(tmp_path, dpkg_query="exit 1", apt_get=f'echo "$@" >> {calls}; cat >> {calls}', id="echo 0")
    proc = subprocess.run([str(INSTALL), "--browser"], env=env, capture_output=True, text=True, timeout=60, input="y\n")
    assert proc.returncode == 0, proc.stderr
    update, install = calls.read_text().splitlines()  # install read nothing from stdin (it is /dev/null, not ours)
    assert update == "update -qq"
    assert install.startswith("install -y") and install.endswith("chromium chromium-driver fonts-dejavu-core fonts-symbola")
    assert "installing: chromium chromium-driver" in proc.stderr


def test_install_refuses_an_unknown_option(tmp_path: Path) -> None:
    proc = subprocess.run([str(INSTALL), "--chrome"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage:" in proc.stderr
