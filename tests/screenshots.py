"""`make screenshots`: the README's pictures of the dashboard, taken with headless Chromium from the demo.

    python -m tests.screenshots                 # runs `tests/demo.py --keep`, captures, stops the demo
    python -m tests.screenshots --demo DIR      # reuses a kept demo (make demo DEMO_ARGS=--keep); leaves it running
    python -m tests.screenshots --url URL       # any running dashboard

Writes docs/screenshots/{apps,app,images,activity,apps-phone}.png (``--out`` moves them): the Apps page, the demo
app's detail page, Images and Activity at 1280×800 (a longer page whole, up to 1600 px), and the Apps page at a
phone's 390×844. Pages are found by following the dashboard's own navigation links (their text: Apps, Images,
Activity; the demo app's link), so a renamed route needs no change here. Each capture waits until the page has
loaded and its fonts are ready.

Exit: 0 written; 1 the demo or a page failed (the message says which); 2 usage.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selenium.common.exceptions import WebDriverException  # noqa: E402

from tests.fixtures.browser import BrowserUnavailable, chrome  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
DEMO = ROOT / "tests" / "demo.py"
DESKTOP, PHONE = (1280, 800), (390, 844)
TALLEST = 1600
DEMO_TIMEOUT = 600.0


class ScreenshotsFailed(Exception):
    pass


def start_demo() -> tuple[Path, str]:
    """Run the demo with --keep; (its work folder, the dashboard's URL) from the lines it prints."""
    proc = subprocess.run(
        [sys.executable, str(DEMO), "--keep"], capture_output=True, text=True, timeout=DEMO_TIMEOUT, stdin=subprocess.DEVNULL
    )
    work = re.search(r"^work folder: (\S+)$", proc.stdout, re.M)
    url = re.search(r"^dashboard: (http://\S+)$", proc.stdout, re.M)
    if proc.returncode != 0 or not work:
        raise ScreenshotsFailed(f"the demo failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    if not url:
        stop_demo(Path(work[1]))
        raise ScreenshotsFailed("the demo printed no `dashboard: http://…` line")
    return Path(work[1]), url[1]


def stop_demo(work: Path) -> None:
    subprocess.run([sys.executable, str(DEMO), "--stop", str(work)], capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


def kept_url(work: Path) -> str:
    """A kept demo's dashboard URL: the first line `dashboard serve` logged in WORK/dashboard.log."""
    if not (work / "demo.json").is_file():
        raise ScreenshotsFailed(f"{work} is not a kept demo (no demo.json): start one with make demo DEMO_ARGS=--keep")
    try:
        found = re.search(r"^dashboard: (http://\S+)", (work / "dashboard.log").read_text(errors="replace"), re.M)
    except OSError as exc:
        raise ScreenshotsFailed(f"{work}: no dashboard log ({exc}): pass --url") from exc
    if not found:
        raise ScreenshotsFailed(f"{work}/dashboard.log names no dashboard URL: pass --url")
    return found[1]


def settle(driver: Any) -> None:
    """Wait until the page has loaded and its fonts are ready (a capture of half-laid-out text is useless)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    driver.execute_async_script("const done = arguments[0]; document.fonts.ready.then(() => done(true));")
    two_frames = "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done(true)));"
    driver.execute_async_script(two_frames)  # what the page changed on load is painted


def link(driver: Any, text: str) -> str:
    """The href of the navigation link whose text is TEXT."""
    for a in driver.find_elements("css selector", "a[href]"):
        if a.text.strip().lower() == text.lower():
            return str(a.get_attribute("href"))
    raise ScreenshotsFailed(f"no link named {text!r} on {driver.current_url}")


def app_link(driver: Any, prefer: str) -> str:
    """The href of the app detail link for PREFER (the demo's app), else of the first app in the table."""
    hrefs = [str(a.get_attribute("href")) for a in driver.find_elements("css selector", "table a[href]")]
    for h in hrefs:
        if h.rstrip("/").endswith("/" + prefer):
            return h
    if not hrefs:
        raise ScreenshotsFailed(f"no app links in the table on {driver.current_url}")
    return hrefs[0]


def viewport(driver: Any, width: int, height: int, mobile: bool = False) -> None:
    """Exactly WIDTH×HEIGHT CSS pixels at scale 1 (a window size would include the browser's own frame)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})  # fmt: skip


def shoot(driver: Any, url: str, path: Path, size: tuple[int, int], mobile: bool = False) -> Path:
    """Load URL at SIZE; a page longer than that is taken whole up to TALLEST (the app page's drift and history)."""
    viewport(driver, *size, mobile=mobile)
    driver.get(url)
    settle(driver)
    height = int(driver.execute_script("return document.documentElement.scrollHeight;"))
    if height > size[1]:
        viewport(driver, size[0], min(height, TALLEST), mobile=mobile)
        settle(driver)
    return _save(driver, path)


def capture(url: str, out: Path, app: str = "demo") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        driver = chrome(Path(tmp), width=DESKTOP[0], height=DESKTOP[1])
        try:
            viewport(driver, *DESKTOP)
            driver.get(url)
            settle(driver)
            pages = {"apps": driver.current_url, "images": link(driver, "Images"), "activity": link(driver, "Activity"),
                     "app": app_link(driver, app)}  # fmt: skip
            for name in ("apps", "app", "images", "activity"):
                written.append(shoot(driver, pages[name], out / f"{name}.png", DESKTOP))
            written.append(shoot(driver, pages["apps"], out / "apps-phone.png", PHONE, mobile=True))
        finally:
            driver.quit()
    return written


def _save(driver: Any, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    if not driver.save_screenshot(str(tmp)):
        raise ScreenshotsFailed(f"Chromium took no screenshot of {driver.current_url}")
    os.replace(tmp, path)  # never a half-written picture in the README
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="make screenshots", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--demo", metavar="DIR", type=Path, help="a kept demo's work folder (left running)")
    src.add_argument("--url", help="a running dashboard's base URL")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where the PNGs go (default {OUT.relative_to(ROOT)})")
    ap.add_argument("--app", default="demo", help="the app whose detail page is shown (default: demo)")
    args = ap.parse_args(argv)
    started: Path | None = None
    try:
        if args.url:
            url = args.url
        elif args.demo:
            url = kept_url(args.demo)
        else:
            print("running the demo (tests/demo.py --keep) …", file=sys.stderr, flush=True)
            started, url = start_demo()
        for p in capture(url, args.out, args.app):
            print(f"{p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}  {p.stat().st_size // 1024} KiB")
        return 0
    except (ScreenshotsFailed, BrowserUnavailable, WebDriverException, subprocess.TimeoutExpired, OSError) as exc:
        print(f"make screenshots: {exc}", file=sys.stderr)
        return 1
    finally:
        if started is not None:
            stop_demo(started)


if __name__ == "__main__":
    sys.exit(main())
