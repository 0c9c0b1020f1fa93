"""imagebot's notifications end to end: the registry, a bare repo over smart HTTP, the GitHub stand-in, and a
signed webhook receiver of ours — commit pushed, promotion waiting then done, pull request opened then
superseded, a git remote failing for longer than failingAfter; and the config section through `imagebot run`."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitopskit import notify
from gitopskit.notifier import build_notifier
from imagebot.cli import main
from imagebot.config.load import load
from imagebot.runtime.runner import Runner
from tests.fixtures.botconfig import git_env, imagebot_config
from tests.fixtures.fake_github import FakeGitHub
from tests.fixtures.git import GitHttp, make_bare
from tests.fixtures.receiver import Receiver
from tests.fixtures.registry import RegistryServer
from tests.integration.test_runtime_loop import deploy

pytestmark = pytest.mark.git

IMAGES = """images:
  - name: app
    repository: {registry}/{path}
    environments:
      dev:
        policy: {{semver: ">=1.0.0"}}
        setter: rt:app-dev
        target: {{git: config, path: dev}}
      staging:
        policy: {{semver: "^1"}}
        setter: rt:app-staging
        target: {{git: config, path: staging, mode: pull-request, group: apps}}
      prod:
        promote: {{from: dev, soak: 1h}}
        setter: rt:app-prod
        target: {{git: config, path: prod}}
notifications:
  coalesceWindow: "0"
  failingAfter: 1m
  sinks:
    - name: ops
      type: webhook
      urlEnv: NB_NOTIFY_URL
      hmacKeyEnv: NB_NOTIFY_KEY
      timeout: 5s
      deadline: 1m
"""


@pytest.fixture
def world(
    registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, Receiver, RegistryServer, Path]]:
    host = registry_plain.host
    files = {f"{e}/deploy.yaml": deploy(host, e) for e in ("dev", "staging", "prod")}
    bare = make_bare(git_http.root, f"nb{os.urandom(4).hex()}", files)
    github = FakeGitHub({"org/config": bare}, prefix="/api/v3")
    receiver = Receiver()
    env = git_env("NB", github=True) | {"NB_NOTIFY_URL": receiver.url("/hooks/imagebot"), "NB_NOTIFY_KEY": "k3y"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg_file = tmp_path / "imagebot.yaml"
    path = f"nb/app{os.urandom(3).hex()}"  # the registry outlives the test: a repository of its own
    cfg_file.write_text(imagebot_config(IMAGES.format(registry=host, path=path), state=tmp_path / "s.db", cache=tmp_path / "c",
                                        registries=[host], url=git_http.url(bare), env="NB", github_api=github.base))  # fmt: skip
    try:
        yield cfg_file, receiver, registry_plain, bare
    finally:
        receiver.stop()
        github.stop()


def _path(cfg_file: Path) -> str:
    return load([cfg_file], environment=False).images[0].repository.canonical_path


def _events(receiver: Receiver, count: int) -> list[dict[str, object]]:
    got = receiver.wait(count)
    for r in got:
        assert notify.verify_signature(
            b"k3y", r.body, r.headers["x-imagebot-timestamp"], r.headers["x-imagebot-signature"], time.time()
        )
    return [r.json() for r in got]


def test_commits_pull_requests_and_promotions_are_notified_once_each(
    world: tuple[Path, Receiver, RegistryServer, Path],
) -> None:
    cfg_file, receiver, registry, _ = world
    clock = [time.time()]
    runner = Runner(load([cfg_file]), clock=lambda: clock[0])
    notifier = build_notifier(runner.cfg.notifications, source="imagebot", registry=runner.metrics.registry).start()
    runner.notifier = notifier
    repo = runner.cfg.images[0].repository.canonical_name
    try:
        registry.pusher().push(_path(cfg_file), ["1.0.0", "1.1.0"])
        runner.run_pass(only=[repo])  # dev pushes 1.1.0, staging opens a PR for 1.1.0
        runner.run_pass(only=[repo])  # prod: 1.1.0 soaks in dev (announced once, not once per pass)
        runner.run_pass(only=[repo])
        first = _events(receiver, 3)
        registry.pusher().push(_path(cfg_file), ["1.2.0"], distinct=True)
        clock[0] += 2 * 3600
        runner.run_pass(only=[repo])  # dev 1.2.0 (pushed), staging's PR superseded, prod promoted (1.1.0 after its soak)
        assert notifier.flush(20)
    finally:
        notifier.close(5)
    docs = [r.json() for r in receiver.delivered]
    seen = [(d["type"], dict(d["details"])["environment"]) for d in docs]  # type: ignore[call-overload]
    assert sorted(seen[:3]) == [("commit-pushed", "dev"), ("pr-opened", "staging"), ("promotion-waiting", "prod")], first
    assert sorted(seen[3:]) == [("commit-pushed", "dev"), ("commit-pushed", "prod"), ("pr-superseded", "staging"),
                                ("promotion-done", "prod")]  # fmt: skip
    by = {(d["type"], dict(d["details"])["environment"]): d for d in docs}  # type: ignore[call-overload]
    pushed = by[("commit-pushed", "dev")]
    assert pushed["subject"] == "app" and pushed["source"] == "imagebot" and len(pushed["details"]["commit"]) == 40  # type: ignore[index]
    assert "now proposes 1.2.0 for staging (was 1.1.0)" in str(by[("pr-superseded", "staging")]["message"])
    assert by[("promotion-done", "prod")]["message"] == "1.1.0 promoted from dev to prod"
    assert len({d["id"] for d in docs}) == len(docs) == 7


def test_a_git_remote_failing_longer_than_failing_after_is_one_event_and_its_recovery_another(
    world: tuple[Path, Receiver, RegistryServer, Path],
) -> None:
    cfg_file, receiver, registry, bare = world
    clock = [time.time()]
    runner = Runner(load([cfg_file]), clock=lambda: clock[0])
    notifier = build_notifier(runner.cfg.notifications, source="imagebot").start()
    runner.notifier = notifier
    repo = runner.cfg.images[0].repository.canonical_name
    hidden = bare.with_name(bare.name + ".away")
    try:
        registry.pusher().push(_path(cfg_file), ["1.0.0", "1.1.0"])
        bare.rename(hidden)  # the remote is gone: every delivery fails
        for _ in range(3):
            runner.run_pass(only=[repo])
            clock[0] += 45
        hidden.rename(bare)
        runner.run_pass(only=[repo])
        assert notifier.flush(20)
    finally:
        notifier.close(5)
        if hidden.exists():
            hidden.rename(bare)
    docs = [r.json() for r in receiver.delivered]
    peer = [(d["type"], d["subject"]) for d in docs if str(d["type"]).startswith("peer-")]
    assert peer == [("peer-failing", "git config"), ("peer-recovered", "git config")]


def test_run_once_delivers_its_notifications_before_it_exits_and_a_missing_secret_is_exit_2(
    world: tuple[Path, Receiver, RegistryServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg_file, receiver, registry, _ = world
    registry.pusher().push(_path(cfg_file), ["1.0.0", "1.1.0"])
    out, err = io.StringIO(), io.StringIO()
    assert main(["run", "--once", "--config", str(cfg_file)], out=out, err=err) == 0, err.getvalue()
    assert {d["type"] for d in (r.json() for r in receiver.delivered)} == {"commit-pushed", "pr-opened"}
    monkeypatch.delenv("NB_NOTIFY_KEY")
    err = io.StringIO()
    assert main(["run", "--once", "--config", str(cfg_file)], out=io.StringIO(), err=err) == 2
    assert "NB_NOTIFY_KEY is not set" in err.getvalue() and "Traceback" not in err.getvalue()


def test_a_promotion_proposed_in_a_pull_request_is_done_with_its_url(world: tuple[Path, Receiver, RegistryServer, Path]) -> None:
    cfg_file, receiver, registry, _ = world
    text = cfg_file.read_text()
    cfg_file.write_text(
        text.replace("target: {git: config, path: prod}", "target: {git: config, path: prod, mode: pull-request}")
    )
    clock = [time.time()]
    runner = Runner(load([cfg_file]), clock=lambda: clock[0])
    notifier = build_notifier(runner.cfg.notifications, source="imagebot").start()
    runner.notifier = notifier
    repo = runner.cfg.images[0].repository.canonical_name
    try:
        registry.pusher().push(_path(cfg_file), ["1.0.0", "1.1.0"])
        runner.run_pass(only=[repo])
        clock[0] += 2 * 3600
        runner.run_pass(only=[repo])
        assert notifier.flush(20)
    finally:
        notifier.close(5)
    docs = [r.json() for r in receiver.delivered]
    done = [d for d in docs if d["type"] == "promotion-done"]
    assert len(done) == 1 and str(done[0]["message"]).startswith("1.1.0 promoted from dev to prod in http")
    assert (
        done[0]["details"]["pr"]
        == next(d for d in docs if d["type"] == "pr-opened" and "prod" in str(d["message"]))["details"]["pr"]
    )  # type: ignore[index]
