"""One image's failure is that image's (or that environment's) failure, not the pass's.

Real parts: the Debian registry, git over smart HTTP, and a hostile registry of ours (a tag list
held open, an unknown repository, a manifest that cannot be found). With one image's registry
slow or failing, the other images are committed in the same pass; the failure is in the report,
in status and in the errors metric; the failing key backs off (an injected clock: nothing
sleeps); `run --once` exits with the first failure's code only after everything else was done.
"""

from __future__ import annotations

import io
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from imagebot.cli import main
from imagebot.config.load import load
from imagebot.errors import ExitCode
from imagebot.registry.limits import RetryPolicy
from imagebot.runtime.backoff import Backoff
from imagebot.runtime.runner import PassReport, Runner
from imagebot.runtime.state import RuntimeState, Selection
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare, read_file
from tests.fixtures.hostile import HostileRegistry
from tests.fixtures.registry import RegistryServer

pytestmark = pytest.mark.git


def deploy(repository: str, setter: str) -> str:
    return f'spec:\n  image: {repository}:1.0.0 # {{"$imagepolicy": "iso:{setter}"}}\n'


def image(name: str, repository: str, envs: dict[str, str]) -> str:
    """``envs``: environment → extra keys (flow mapping body)."""
    lines = [f"  - name: {name}", f"    repository: {repository}", "    interval: 1h", "    environments:"]
    for env, extra in envs.items():
        target = f"{{git: config, path: {name}-{env}}}"
        lines.append(f'      {env}: {{policy: {{semver: "^1"}}, setter: "iso:{name}-{env}", target: {target}{extra}}}')
    return "\n".join(lines) + "\n"


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    h = HostileRegistry({"iso/pinned": ["1.0.0", "1.1.0"]})
    yield h
    h.stop()


class World:
    def __init__(
        self, registry: RegistryServer, hostile: HostileRegistry, git_http: GitHttp, tmp: Path, images: dict[str, str]
    ) -> None:
        """``images``: name → repository (``{plain}``/``{hostile}``/``{alias}`` filled in); one env ``dev``
        each, ``pinned`` also ``qa`` (dev pins digests)."""
        hosts = {"plain": registry.host, "hostile": hostile.host, "alias": registry.host.replace("127.0.0.1", "localhost")}
        self.repos = {name: repo.format(**hosts) for name, repo in images.items()}
        envs = {name: {"dev": ""} for name in images}
        if "pinned" in envs:
            envs["pinned"] = {"dev": ", digest: true", "qa": ""}
        files = {f"{n}-{e}/deploy.yaml": deploy(self.repos[n], f"{n}-{e}") for n in images for e in envs[n]}
        self.bare = make_bare(git_http.root, f"iso{os.urandom(4).hex()}", files)
        self.state_file = tmp / "state.db"
        self.config = tmp / "imagebot.yaml"
        self.config.write_text(
            f"""apiVersion: imagebot.dev/v1
kind: Config
interval: 1h
stateFile: {self.state_file}
cacheDir: {tmp / "cache"}
registries:
  - {{host: "{hosts["plain"]}", plainHTTP: true}}
  - {{host: "{hosts["hostile"]}", plainHTTP: true}}
  - {{host: "{hosts["alias"]}"}}
git:
  - {{name: config, url: "{git_http.url(self.bare)}", auth: {{usernameEnv: RT_GIT_USER, tokenEnv: RT_GIT_TOKEN}}}}
images:
"""
            + "".join(image(n, self.repos[n], envs[n]) for n in images)
        )
        self.alias = hosts["alias"]

    def holds(self, name: str, env: str, tag: str) -> bool:
        return f"{self.repos[name]}:{tag} #" in read_file(self.bare, "main", f"{name}-{env}/deploy.yaml")

    def rows(self) -> dict[tuple[str, str], Selection]:
        return {(r.image, r.environment): r for r in RuntimeState(self.state_file).all()}


@pytest.fixture
def env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_GIT_USER", GIT_USER)
    monkeypatch.setenv("RT_GIT_TOKEN", GIT_PASSWORD)


def errors_metric(runner: Runner, kind: str) -> float:
    return runner.metrics.registry.get_sample_value("imagebot_errors_total", {"kind": kind}) or 0.0


def poll(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.usefixtures("env_vars")
def test_a_slow_registry_does_not_hold_up_the_other_images_commit(
    registry_plain: RegistryServer, hostile: HostileRegistry, git_http: GitHttp, tmp_path: Path
) -> None:
    """Three images on a registry that goes quiet, two workers: the quiet registry may hold one
    worker, never all, so the image on the healthy registry is committed meanwhile."""
    registry_plain.pusher().push("iso/good", ["1.0.0", "1.1.0"], distinct=True)
    slow = {f"slow{n}": f"{{hostile}}/iso/slow{n}" for n in range(3)}
    world = World(registry_plain, hostile, git_http, tmp_path, {**slow, "good": "{plain}/iso/good"})
    runner = Runner(load([world.config]), workers=2)
    quiet = runner.registries.per_host[hostile.host]
    runner.registries.per_host[hostile.host] = replace(quiet, timeout=3600, retry=RetryPolicy(attempts=1))  # it waits
    hostile.hold.set()
    reports: list[PassReport] = []
    running = threading.Thread(target=lambda: reports.append(runner.run_pass()), daemon=True)
    running.start()
    try:
        poll(lambda: world.holds("good", "dev", "1.1.0"), "the good image's commit")
        assert hostile.waiting >= 1 and running.is_alive(), "committed while the slow registry still held a scan"
    finally:
        hostile.down = True
        hostile.release.set()
    running.join(90)
    (report,) = reports
    assert report.codes == [ExitCode.REGISTRY] * 3 and all(f"iso/slow{n}" in report.errors[n] for n in range(3))
    rows = world.rows()
    assert all(rows[(name, "dev")].reason.startswith("failed (1x") for name in slow)
    assert rows[("good", "dev")].tag == "1.1.0"
    assert errors_metric(runner, "registry") == 3


@pytest.mark.usefixtures("env_vars")
def test_failures_stay_with_their_image_and_environment_and_the_rest_is_committed_in_the_same_pass(
    registry_plain: RegistryServer, hostile: HostileRegistry, git_http: GitHttp, tmp_path: Path
) -> None:
    registry_plain.pusher().push("iso/good", ["1.0.0", "1.1.0"], distinct=True)
    world = World(
        registry_plain,
        hostile,
        git_http,
        tmp_path,
        {
            "cafile": "{alias}/iso/good",  # its caFile is missing: requests raises OSError, not a RegistryError
            "gone": "{hostile}/iso/gone",  # the registry does not know it
            "pinned": "{hostile}/iso/pinned",  # dev pins digests and the manifest lookup fails; qa does not
            "good": "{plain}/iso/good",
        },
    )
    runner = Runner(load([world.config]))
    settings = runner.registries.per_host[world.alias]
    runner.registries.per_host[world.alias] = replace(settings, ca_file=tmp_path / "missing-ca.pem")

    report = runner.run_pass()

    assert world.holds("good", "dev", "1.1.0") and world.holds("pinned", "qa", "1.1.0"), "the rest is committed"
    assert world.holds("pinned", "dev", "1.0.0")
    assert report.codes == [ExitCode.REGISTRY] * 3, report.errors
    cafile, gone, pinned = report.errors  # in config order, whichever registry answered first
    assert "missing-ca.pem" in cafile or "CA" in cafile
    assert "iso/gone" in gone and "pinned dev" in pinned and "1.1.0" in pinned
    rows = world.rows()
    assert rows[("good", "dev")].tag == "1.1.0" and rows[("pinned", "qa")].tag == "1.1.0"
    for key in [("cafile", "dev"), ("gone", "dev"), ("pinned", "dev")]:
        assert rows[key].tag is None and rows[key].reason.startswith("failed (1x"), rows[key]
    assert errors_metric(runner, "registry") == 3
    retry = runner.backoff.get(("pinned", "dev"))
    assert retry is not None and retry.failures == 1
    assert "pinned" not in {i.name for i in runner.due(retry.at - 0.5)}, "its environment backs off"
    assert {i.name for i in runner.due(retry.at)} >= {"pinned"}, "and is retried when due, before the 1h interval"
    assert "good" not in {i.name for i in runner.due(retry.at)}
    out = io.StringIO()
    assert main(["status", "--config", str(world.config)], out=out, err=io.StringIO()) == 0
    assert "pinned dev: current -" in out.getvalue() and "manifest iso/pinned:1.1.0: not found" in out.getvalue()


@pytest.mark.usefixtures("env_vars")
def test_a_failing_image_backs_off_exponentially_and_a_webhook_still_reaches_it(
    registry_plain: RegistryServer, hostile: HostileRegistry, git_http: GitHttp, tmp_path: Path
) -> None:
    world = World(registry_plain, hostile, git_http, tmp_path, {"gone": "{hostile}/iso/gone"})
    now = [1_000_000.0]
    runner = Runner(load([world.config]), clock=lambda: now[0], backoff=Backoff(base=10, cap=60, rnd=random.Random(7)))
    repo = runner.cfg.images[0].repository.canonical_name
    delays = []
    for attempt in range(1, 5):
        report = runner.run_pass()
        assert report.codes == [ExitCode.REGISTRY] and hostile.hits["iso/gone"] == attempt
        retry = runner.backoff.waiting(("gone", ""), now[0])
        assert retry is not None and retry.failures == attempt
        delays.append(retry.at - now[0])
        now[0] = retry.at - 0.5
        assert runner.run_pass().codes == [] and hostile.hits["iso/gone"] == attempt, "not retried before it is due"
        now[0] = retry.at
    assert [d >= min(60, 10 * 2 ** (n - 1)) / 2 for n, d in enumerate(delays, 1)] == [True] * 4
    assert [d <= min(60, 10 * 2 ** (n - 1)) for n, d in enumerate(delays, 1)] == [True] * 4
    assert delays[2] > delays[0], "the delay grows"
    assert errors_metric(runner, "registry") == 4
    assert world.rows()[("gone", "dev")].reason.startswith("failed (4x")
    runner.run_pass(only=[repo])  # a webhook says there is something new: try now
    assert hostile.hits["iso/gone"] == 5


@pytest.mark.usefixtures("env_vars")
def test_run_once_exits_with_the_first_failures_code_after_everything_else_was_done(
    registry_plain: RegistryServer, hostile: HostileRegistry, git_http: GitHttp, tmp_path: Path
) -> None:
    registry_plain.pusher().push("iso/good", ["1.0.0", "1.1.0"], distinct=True)
    world = World(registry_plain, hostile, git_http, tmp_path, {"pinned": "{hostile}/iso/pinned", "good": "{plain}/iso/good"})
    out, err = io.StringIO(), io.StringIO()
    assert main(["run", "--once", "--config", str(world.config)], out=out, err=err) == int(ExitCode.REGISTRY), err.getvalue()
    assert world.holds("good", "dev", "1.1.0") and world.holds("pinned", "qa", "1.1.0")
    assert "Traceback" not in err.getvalue()
