"""The demo as a person meets it: the full loop as an end-to-end test (registry → bot → Git → the controller
reconciling the demo's Flux Kustomization → drift healed), ``--keep`` leaving a loop that works without the demo
and one line that stops it all, and every way a demo can end (a failed step, an error, Ctrl-C, SIGTERM) stopping
whatever it had started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.demo import APP_NS, KS, ROOT, Demo
from tests.e2e.helpers import path_without_kubectl, processes_mentioning
from tests.fixtures.git import git

pytestmark = [pytest.mark.cluster, pytest.mark.registry, pytest.mark.git]
DEMO = [sys.executable, str(ROOT / "tests/demo.py")]


def wait_for(what: str, check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def assert_all_gone(work: Path) -> None:
    # stopping is done when the demo returns: no waiting here
    assert processes_mentioning(str(work)) == []
    assert not work.exists()


def test_full_loop_from_ci_push_to_healed_drift(capsys: pytest.CaptureFixture[str]) -> None:
    demo = Demo(keep=False)
    assert demo.run() == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "chore(images): app 1.0.0 → 1.1.0 (prod)" in out
    assert "chore(images): app 1.0.0 → 1.2.0-rc.1 (dev)" in out
    assert "live: app-prod app:1.1.0, app-dev app:1.2.0-rc.1" in out
    assert "healed back to 1" in out and "; on the dashboard" in out
    # who and when: a /scale update has no time in managedFields, so the reconciler dates it when seen
    assert re.search(r"kubectl \d\d:\d\d:\d\d /spec/replicas 1 → 4", out), out
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/$", out, re.M), out
    assert "generation +1 each" in out
    # the Kustomization's status, as kubectl and `reconciler get -A` print it: Ready at the bot's last commit
    revision = f"main@sha1:{demo.bot_commit}"
    assert re.search(rf"^    {APP_NS} +{KS} +True +{revision} ", out, re.M), out
    assert re.search(rf"^    {APP_NS} +{KS} +Kustomization +True +{revision} ", out, re.M), out
    assert_all_gone(demo.work)


def test_keep_on_a_machine_without_kubectl_leaves_a_loop_that_works_after_the_demo_exits_and_one_stop_line(
    tmp_path: Path,
) -> None:
    # a fresh Debian 12: no kubectl anywhere on PATH, so the demo runs the one tests/tools/kubectl.sh fetches
    env = {**os.environ, "PATH": path_without_kubectl(tmp_path / "bin")}
    env.pop("IMAGEBOT_KUBECTL", None)
    done = subprocess.run([*DEMO, "--keep"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    work = Path(re.search(r"^work folder: (\S+)$", done.stdout, re.M).group(1))  # type: ignore[union-attr]
    stop_lines = [ln for ln in done.stdout.splitlines() if ln.startswith("stop: ")]
    try:
        assert len(stop_lines) == 1, done.stdout
        state = json.loads((work / "demo.json").read_text())
        kubectl, kubeconfig, bare = state["kubectl"], state["kubeconfig"], state["bare"]
        assert "/.cache/imagebot/kubectl/" in kubectl, kubectl
        assert f"\n  export PATH={Path(kubectl).parent}:$PATH\n" in done.stdout
        assert "\n  kubectl -n demo get deploy -o 'custom-columns=NAME:.metadata.name," in done.stdout
        assert "\n  kubectl get kustomizations -A\n" in done.stdout
        assert re.search(r"^  \S*reconciler get -A$", done.stdout, re.M), done.stdout
        pids = {f.stem for f in (work / "pids").glob("*.pid")}
        assert pids == {"dashboard", "imagebot", "controller", "git-http", "registry"}, pids
        urls = re.findall(r"^dashboard: (http://127\.0\.0\.1:\d+/)$", done.stdout, re.M)
        assert len(set(urls)) == 1 and len(urls) == 2, done.stdout  # when it starts, and again beside the stop line
        with urllib.request.urlopen(urls[0] + "apps", timeout=10) as r:  # still serving after the demo exited
            assert f"{APP_NS}/{KS}".encode() in r.read()

        # the demo process is gone; CI publishes again, the way the printed hint says
        pushed = subprocess.run([*DEMO, "--push", str(work), "1.3.0"], env=env, capture_output=True, text=True, timeout=60)
        assert pushed.returncode == 0, pushed.stderr
        wait_for(
            "the bot to commit 1.3.0 for prod and dev",
            lambda: all("app:1.3.0 " in git("-C", bare, "show", f"main:clusters/demo/{e}/deploy.yaml") for e in ("prod", "dev")),
        )

        def live_images() -> str:
            return subprocess.run(
                [kubectl, "--kubeconfig", kubeconfig, "-n", "demo", "get", "deploy", "-o",
                 "jsonpath={.items[*].spec.template.spec.containers[0].image}"],
                capture_output=True, text=True,
            ).stdout  # fmt: skip

        wait_for("the controller to apply 1.3.0", lambda: [i.rsplit(":", 1)[1] for i in live_images().split()] == ["1.3.0"] * 2)

        def kustomization() -> tuple[str, str]:
            obj = json.loads(subprocess.run(
                [kubectl, "--kubeconfig", kubeconfig, "-n", APP_NS, "get", "kustomization", KS, "-o", "json"],
                capture_output=True, text=True, check=True,
            ).stdout)  # fmt: skip
            ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
            return ready["status"], obj["status"]["lastAppliedRevision"]

        head = git("-C", bare, "rev-parse", "main").strip()  # the bot's 1.3.0 commit
        wait_for("the Kustomization Ready at the bot's commit", lambda: kustomization() == ("True", f"main@sha1:{head}"))
        log = (work / "controller.log").read_text()
        assert "reconciler: error:" not in log and "ERROR" not in log  # its source stayed up
    finally:
        stop = subprocess.run(stop_lines[0].removeprefix("stop: "), shell=True, capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0, stop.stderr
    assert_all_gone(work)
    with pytest.raises(OSError):  # the stop line stopped the dashboard too
        urllib.request.urlopen(urls[0], timeout=5)


def test_a_step_that_breaks_stops_everything_started_and_says_what_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(self: Demo) -> str:
        raise FileNotFoundError(2, "No such file or directory", "kubectl")  # what a missing tool looked like

    monkeypatch.setattr(Demo, "start_bot", broken)
    demo = Demo(keep=True)  # --keep keeps only a demo that worked
    assert demo.run() == 1
    err = capsys.readouterr().err
    assert "✗ DEMO FAILED: FileNotFoundError: [Errno 2] No such file or directory: 'kubectl' (at test_demo.py:" in err
    assert "Traceback" not in err
    assert_all_gone(demo.work)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_mid_demo_stops_everything_started(sig: signal.Signals) -> None:
    proc = subprocess.Popen([*DEMO, "--keep"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    work = Path(proc.stdout.readline().removeprefix("work folder: ").strip())
    try:
        for line in proc.stdout:  # by step 2a the registry, git server, apiserver, etcd and controller run
            if line.startswith("▶ 2a."):
                break
        assert len(processes_mentioning(str(work))) >= 5
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + sig, err
        assert f"interrupted ({sig.name})" in err and "Traceback" not in err
    finally:
        proc.kill()
    assert_all_gone(work)
