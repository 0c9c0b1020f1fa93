"""The automation runtime on real parts: the Debian registry, a bare repo over smart HTTP and the
GitHub stand-in backed by it. A push in one environment and a PR in another from one pass; a
second pass with nothing new writes nothing; a newer tag updates the same PR; metrics count it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from imagebot.config.load import load
from imagebot.errors import ExitCode
from imagebot.gitops.writer import Status
from imagebot.registry.limits import RetryPolicy
from imagebot.runtime.runner import Runner
from imagebot.runtime.state import RuntimeState
from tests.fixtures.botconfig import git_env, imagebot_config
from tests.fixtures.fake_github import FakeGitHub
from tests.fixtures.git import GitHttp, log, make_bare, read_file
from tests.fixtures.registry import RegistryServer

pytestmark = pytest.mark.git


def deploy(registry: str, env: str) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{env}   # hand-written comment stays
spec:
  template:
    spec:
      containers:
        - name: app
          image: {registry}/rt/app:1.0.0 # {{"$imagepolicy": "rt:app-{env}"}}
"""


IMAGES = """images:
  - name: app
    repository: {registry}/rt/app
    environments:
      dev:
        policy: {{semver: ">=1.0.0-0"}}
        setter: rt:app-dev
        target: {{git: config, path: dev}}
      staging:
        policy: {{semver: "^1"}}
        setter: rt:app-staging
        target: {{git: config, path: staging, mode: pull-request, group: apps, labels: [images]}}
"""


@pytest.fixture
def world(
    registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Runner, Path, FakeGitHub, RegistryServer]]:
    host = registry_plain.host
    bare = make_bare(
        git_http.root,
        f"rt{os.urandom(4).hex()}",
        {"dev/deploy.yaml": deploy(host, "dev"), "staging/deploy.yaml": deploy(host, "staging")},
    )
    github = FakeGitHub({"org/config": bare}, prefix="/api/v3")
    for k, v in git_env("RT", github=True).items():
        monkeypatch.setenv(k, v)
    cfg_file = tmp_path / "imagebot.yaml"
    cfg_file.write_text(imagebot_config(IMAGES.format(registry=host), state=tmp_path / "state.db", cache=tmp_path / "cache",
                                        registries=[host], url=git_http.url(bare), env="RT", github_api=github.base))  # fmt: skip
    try:
        yield Runner(load([cfg_file])), bare, github, registry_plain
    finally:
        github.stop()


def metric(runner: Runner, name: str, **labels: str) -> float:
    return runner.metrics.registry.get_sample_value(name, labels) or 0.0


def test_one_pass_pushes_dev_and_opens_a_pr_for_staging_then_goes_quiet(
    world: tuple[Runner, Path, FakeGitHub, RegistryServer],
) -> None:
    runner, bare, github, registry = world
    repo = runner.cfg.images[0].repository.canonical_name
    registry.pusher().push("rt/app", ["1.0.0"])
    first = runner.run_pass(only=[repo])
    assert not first.errors and {r.status for _, r in first.results} <= {Status.NO_CHANGE}
    start = log(bare, "main")

    registry.pusher().push("rt/app", ["1.1.0", "1.2.0-rc.1"], distinct=True)
    second = runner.run_pass(only=[repo])
    assert not second.errors, second.errors
    statuses = {env: r.status for env, r in second.results}
    assert statuses == {"dev": Status.PUSHED, "staging": Status.PR_OPENED}, statuses
    assert len(log(bare, "main")) == len(start) + 1, "dev: exactly one commit on main"
    assert "rt/app:1.2.0-rc.1 #" in read_file(bare, "main", "dev/deploy.yaml"), "dev takes the pre-release"
    assert "rt/app:1.0.0 #" in read_file(bare, "main", "staging/deploy.yaml"), "staging waits for its PR"
    staged = read_file(bare, "imagebot/staging/apps", "staging/deploy.yaml")
    assert staged == deploy(registry.host, "staging").replace("1.0.0", "1.1.0"), "only the value bytes changed"
    (pr,) = github.pulls.values()
    assert pr["labels"] == ["images"] and "1.0.0 → 1.1.0" in pr["title"]

    assert metric(runner, "imagebot_commits_total") == 1
    assert metric(runner, "imagebot_pull_requests_total", action="pr-opened") == 1
    assert metric(runner, "imagebot_scans_total", result="ok") == 2
    assert metric(runner, "imagebot_tags_seen", repository=repo) == 3
    assert metric(runner, "imagebot_selections_total", image="app", environment="dev") >= 1
    assert metric(runner, "imagebot_errors_total", kind="registry") == 0

    head, writes = log(bare, "main"), [e for e in github.log if e[0] != "GET"]
    third = runner.run_pass(only=[repo])
    assert not third.errors
    assert {r.status for _, r in third.results} <= {Status.NO_CHANGE, Status.PR_UNCHANGED}
    assert log(bare, "main") == head and [e for e in github.log if e[0] != "GET"] == writes, "nothing new: no write"

    registry.pusher().push("rt/app", ["1.1.1"], distinct=True)
    fourth = runner.run_pass(only=[repo])
    assert {env: r.status for env, r in fourth.results}.get("staging") is Status.PR_UPDATED
    assert len(github.pulls) == 1 and "1.0.0 → 1.1.1" in github.pulls[1]["title"], "superseded in the same PR"
    assert log(bare, "main") == head, "dev keeps 1.2.0-rc.1 (higher than 1.1.1): no commit"

    rows = {(r.image, r.environment): r for r in RuntimeState(runner.cfg.state_file).all()}
    assert rows[("app", "dev")].tag == "1.2.0-rc.1"
    assert rows[("app", "staging")].last_pr, "status knows the open PR"


def test_a_registry_outage_is_counted_and_writes_nothing(
    world: tuple[Runner, Path, FakeGitHub, RegistryServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, bare, github, _ = world
    repo = runner.cfg.images[0].repository.canonical_name
    head = log(bare, "main")
    client = runner.registries.client(runner.cfg.images[0].repository.canonical_registry)
    down = replace(client.settings, host="127.0.0.1:9", retry=RetryPolicy(attempts=2, base=0.01))  # nothing listens there
    monkeypatch.setattr(client, "settings", down)
    report = runner.run_pass(only=[repo])
    assert report.errors and not report.results
    assert report.codes == [ExitCode.REGISTRY]
    assert metric(runner, "imagebot_errors_total", kind="registry") == 1
    assert log(bare, "main") == head and not github.pulls


def test_the_receiver_takes_signed_and_token_webhooks_and_refuses_the_rest(
    world: tuple[Runner, Path, FakeGitHub, RegistryServer],
) -> None:
    import json
    import urllib.error
    import urllib.request

    from gitopskit import httpd
    from imagebot.runtime import webhooks
    from imagebot.runtime.serve import Service

    runner, _, _, registry = world
    service = Service(runner, "s3cret", debounce=60)
    server = httpd.start("127.0.0.1:0", service.handler())
    base = f"http://127.0.0.1:{server.server_address[1]}"
    distribution = json.dumps(
        {"events": [{"action": "push", "target": {"repository": "rt/app", "tag": "2.0.0"}, "request": {"host": registry.host}}]}
    ).encode()

    def post(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        req = urllib.request.Request(base + path, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    try:
        assert post("/", distribution, {})[0] == 401
        assert post("/?token=wrong", distribution, {})[0] == 401
        assert not service._queue, "a refused webhook triggers nothing"
        repo = runner.cfg.images[0].repository.canonical_name
        assert post("/", distribution, {"Authorization": "Bearer s3cret"}) == (202, f"scanning {repo}\n")
        assert post("/?token=s3cret", distribution, {})[0] == 202
        assert post("/", distribution, {"X-Imagebot-Signature-256": webhooks.sign("s3cret", distribution)})[0] == 202
        assert list(service._queue) == [repo]
    finally:
        server.shutdown()


@pytest.mark.parametrize(("registry_up", "code"), [(False, ExitCode.REGISTRY), (True, ExitCode.GIT)])
def test_run_once_exits_with_the_failures_documented_code(
    registry_up: bool, code: ExitCode, registry_plain: RegistryServer, tmp_path: Path
) -> None:
    """The code comes from the failure's type: 3 for the registry, 5 for Git (here: no Git server at all)."""
    import io

    from imagebot.cli import main

    host = registry_plain.host if registry_up else "127.0.0.1:9"
    if registry_up:
        registry_plain.pusher().push("gitops/app", ["1.0.0", "9.0.0"], distinct=True)
    cfg = tmp_path / "c.yaml"
    images = IMAGES.format(registry=host).replace("/rt/app", "/gitops/app")
    images = images.replace(", mode: pull-request, group: apps, labels: [images]", "")
    cfg.write_text(imagebot_config(images, state=tmp_path / "s.db", cache=tmp_path / "cache", registries=[host],
                                   url="http://127.0.0.1:9/x.git", env="RT"))  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    assert main(["run", "--once", "--config", str(cfg)], out=out, err=err) == int(code), err.getvalue()


def test_a_tag_proposed_in_a_pull_request_is_current_only_once_merged(
    world: tuple[Runner, Path, FakeGitHub, RegistryServer], tmp_path: Path
) -> None:
    """Promotion and soak trust the current tag: an open PR's tag is pending, not what staging runs."""
    from tests.fixtures.git import git

    runner, bare, _, registry = world
    repo = runner.cfg.images[0].repository.canonical_name
    registry.pusher().push("rt/app", ["1.0.0", "1.1.0"], distinct=True)  # (the registry is shared: maybe more)
    opened = runner.run_pass(only=[repo])
    assert dict((env, r.status) for env, r in opened.results)["staging"] is Status.PR_OPENED
    staging = {r.environment: r for r in RuntimeState(runner.cfg.state_file).all()}["staging"]
    proposed = staging.pending
    assert staging.tag is None and proposed, "the PR is not merged: staging does not run its tag"
    assert staging.last_pr and "current once merged" in staging.reason
    assert f"rt/app:{proposed} #" in read_file(bare, "imagebot/staging/apps", "staging/deploy.yaml")

    clone = tmp_path / "merge"
    git("clone", "-q", str(bare), str(clone))
    git("-C", str(clone), "merge", "-q", "--no-edit", "origin/imagebot/staging/apps")
    git("-C", str(clone), "push", "-q", "origin", "HEAD:main")
    merged = runner.run_pass(only=[repo])
    assert not merged.errors, merged.errors
    staging = {r.environment: r for r in RuntimeState(runner.cfg.state_file).all()}["staging"]
    assert (staging.tag, staging.pending) == (proposed, None), "merged: now it is current"
