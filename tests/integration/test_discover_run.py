"""`discover:` in the polling runtime (`imagebot run --once`, the runner serve drives) on real parts: the Debian
registry, a hostile registry of ours (one repository it does not know: a failing listing), a bare repository over
smart HTTP and the GitHub stand-in backed by it.

One pass moves every discovered reference within its level in one pull request whose body groups the moves by
environment path; the repository configured under `images:` follows its own policy only; the failing repository is
that repository's failure (reported, counted, shown in status) while the rest is delivered; a second pass writes
nothing; the state holds what Git holds."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagebot.cli import main
from imagebot.config.load import load
from imagebot.errors import ExitCode
from imagebot.gitops.writer import Status
from imagebot.runtime.runner import Runner
from imagebot.runtime.state import RuntimeState
from tests.fixtures.botconfig import git_env, imagebot_config
from tests.fixtures.fake_github import FakeGitHub
from tests.fixtures.git import GitHttp, commit_files, log, make_bare, read_file
from tests.fixtures.hostile import HostileRegistry
from tests.fixtures.registry import RegistryServer

pytestmark = pytest.mark.git


def app(images: list[str]) -> str:
    containers = "".join(f"        - name: c{n}\n          image: {image}\n" for n, image in enumerate(images))
    head = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\n"
    return f"{head}spec:\n  template:\n    spec:\n      containers:\n{containers}"


IMAGES = """images:
  - name: api
    repository: {plain}/{p}/api
    environments:
      staging:
        policy: {{semver: "~1.0"}}
        target: {{git: config, path: envs/staging}}
discover:
  - git: config
    path: envs
    policy: {{semver: minor}}
    mode: {mode}
    labels: [discovered]
"""


@dataclass
class World:
    bare: Path
    config: Path
    github: FakeGitHub
    hostile: HostileRegistry
    plain: str
    p: str  # this test's repository prefix on the session's registry

    def runner(self, clock: Callable[[], float] = time.time) -> Runner:
        return Runner(load([self.config]), clock)

    def rows(self) -> dict[tuple[str, str], tuple[str | None, str | None, str]]:
        state = RuntimeState(load([self.config]).state_file)
        return {(r.image, r.environment): (r.tag, r.pending, r.reason) for r in state.all()}

    def writes(self) -> list[tuple[str, str]]:
        return [e for e in self.github.log if e[0] != "GET"]


def world_for(mode: str, registry: RegistryServer, git_http: GitHttp, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    p = f"dr{os.urandom(3).hex()}"
    plain = registry.host
    pusher = registry.pusher()
    pusher.push(f"{p}/web", ["1.0.0", "1.0.3", "1.2.0", "2.0.0"], distinct=True)
    pusher.push(f"{p}/api", ["1.0.0", "1.0.5", "1.1.0", "2.0.0"], distinct=True)
    pusher.push(f"{p}/worker", ["v1.2.0", "v1.4.1", "v2.0.0"], distinct=True)
    hostile = HostileRegistry({"ok/tool": ["3.0.0", "3.1.0"]})  # "gone/app" is unknown to it: a failing listing
    h = hostile.host
    files = {
        "envs/staging/app.yaml": app([f"{plain}/{p}/web:1.0.0", f"{plain}/{p}/api:1.0.0", f"{h}/ok/tool:3.0.0"]),
        "envs/prod/app.yaml": app([f"{plain}/{p}/web:1.0.3", f"{plain}/{p}/api:1.0.0", f"{h}/gone/app:1.0.0"]),
        "envs/prod/worker.yaml": app([f"{plain}/{p}/worker:v1.2.0", f"{h}/ok/tool:3.0.0", f"{plain}/{p}/web:latest"]),
        "other/app.yaml": app([f"{plain}/{p}/web:1.0.0"]),  # outside the discovery path: never touched
    }
    bare = make_bare(git_http.root, f"dr{os.urandom(4).hex()}", files)
    github = FakeGitHub({"org/config": bare}, prefix="/api/v3")
    for k, v in git_env("DR", github=True).items():
        monkeypatch.setenv(k, v)
    config = tmp / "imagebot.yaml"
    config.write_text(imagebot_config(IMAGES.format(plain=plain, p=p, mode=mode), state=tmp / "state.db", cache=tmp / "cache",
                                      registries=[plain, h], url=git_http.url(bare), env="DR", branch=None,
                                      github_api=github.base))  # fmt: skip
    return World(bare, config, github, hostile, plain, p)


@pytest.fixture
def pr_world(
    registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    w = world_for("pull-request", registry_plain, git_http, tmp_path, monkeypatch)
    try:
        yield w
    finally:
        w.github.stop()
        w.hostile.stop()


@pytest.fixture
def push_world(
    registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    w = world_for("push", registry_plain, git_http, tmp_path, monkeypatch)
    try:
        yield w
    finally:
        w.github.stop()
        w.hostile.stop()


def run_once(w: World) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["run", "--once", "--config", str(w.config)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_run_once_opens_one_pr_grouped_by_environment_path_and_leaves_configured_images_alone(pr_world: World) -> None:
    w, plain, p, h = pr_world, pr_world.plain, pr_world.p, pr_world.hostile.host
    start = log(w.bare, "main")
    code, out, err = run_once(w)
    assert code == ExitCode.REGISTRY, (out, err)  # the failing repository's code, after everything else was done
    assert "discover config:envs: pr-opened" in out, out

    # the configured image: its own policy (~1.0), pushed to main; discovery never touches it, in any environment
    staging_main = read_file(w.bare, "main", "envs/staging/app.yaml")
    assert f"{plain}/{p}/api:1.0.5\n" in staging_main and f"{plain}/{p}/web:1.0.0\n" in staging_main
    assert len(log(w.bare, "main")) == len(start) + 1, "main: the configured image's commit only"

    head = "imagebot/discover/envs"
    staging = read_file(w.bare, head, "envs/staging/app.yaml")
    prod = read_file(w.bare, head, "envs/prod/app.yaml")
    worker = read_file(w.bare, head, "envs/prod/worker.yaml")
    assert f"{plain}/{p}/web:1.2.0\n" in staging and f"{h}/ok/tool:3.1.0\n" in staging
    assert f"{plain}/{p}/api:1.0.5\n" in staging, "the PR is made on main as the configured image left it"
    assert f"{plain}/{p}/web:1.2.0\n" in prod and f"{plain}/{p}/api:1.0.0\n" in prod, "api is configured: not discovered"
    assert f"{h}/gone/app:1.0.0\n" in prod, "its registry failed: kept"
    assert f"{plain}/{p}/worker:v1.4.1\n" in worker and f"{plain}/{p}/web:latest\n" in worker
    assert read_file(w.bare, head, "other/app.yaml") == read_file(w.bare, "main", "other/app.yaml"), "outside the path"
    assert w.hostile.hits["ok/tool"] == 1, "one listing per repository, however many references"

    (pr,) = w.github.pulls.values()
    assert pr["labels"] == ["discovered"]
    assert pr["title"] == "chore(images): discovered 5 updates in envs/prod, envs/staging"
    prod_moves = [
        f"- {h}/ok/tool: 3.0.0 → 3.1.0 (envs/prod/worker.yaml)",
        f"- {plain}/{p}/web: 1.0.3 → 1.2.0 (envs/prod/app.yaml)",
        f"- {plain}/{p}/worker: v1.2.0 → v1.4.1 (envs/prod/worker.yaml)",
    ]
    staging_moves = [
        f"- {h}/ok/tool: 3.0.0 → 3.1.0 (envs/staging/app.yaml)",
        f"- {plain}/{p}/web: 1.0.0 → 1.2.0 (envs/staging/app.yaml)",
    ]  # sorted by name within an environment: the two registries' ports decide which comes first
    want = ["envs/prod:", *sorted(prod_moves), "", "envs/staging:", *sorted(staging_moves)]
    assert pr["body"].strip().split("\n") == want

    # status: the discovered references, as Git holds them (the PR's tag is pending until merged), and the failure
    rows = w.rows()
    assert rows[(f"discover:{plain}/{p}/web", "config:envs/staging")][:2] == ("1.0.0", "1.2.0")
    assert rows[(f"discover:{plain}/{p}/web", "config:envs/prod")][:2] == ("1.0.3, latest", "1.2.0")
    gone = rows[(f"discover:{h}/gone/app", "config:envs/prod")]
    assert gone[:2] == ("1.0.0", None) and "registry" in gone[2], gone
    assert not any(image == f"discover:{plain}/{p}/api" for image, _ in rows), "configured: never a discovered row"
    assert rows[("api", "staging")][0] == "1.0.5"
    status = io.StringIO()
    assert main(["status", "--config", str(w.config)], out=status, err=io.StringIO()) == 0
    assert f"discover:{plain}/{p}/web config:envs/staging: current 1.0.0  pending 1.2.0" in status.getvalue()
    assert f"discover:{h}/gone/app config:envs/prod: current 1.0.0" in status.getvalue()

    # a second pass (a long-running runner this time) with nothing new writes nothing
    main_head, pr_head, writes = log(w.bare, "main"), log(w.bare, head), w.writes()
    runner = w.runner()
    report = runner.run_pass()
    assert dict(report.results)["discover config:envs"].status is Status.PR_UNCHANGED
    assert log(w.bare, "main") == main_head and log(w.bare, head) == pr_head and w.writes() == writes
    assert any("gone/app" in e for e in report.errors) and report.codes == [ExitCode.REGISTRY]
    assert runner.metrics.registry.get_sample_value("imagebot_errors_total", {"kind": "registry"}) == 1
    scans = runner.metrics.registry.get_sample_value
    assert scans("imagebot_scans_total", {"result": "ok"}) == 4 and scans("imagebot_scans_total", {"result": "error"}) == 1


def test_push_mode_records_what_the_branch_holds_and_a_second_pass_is_a_no_op(push_world: World) -> None:
    w, plain, p = push_world, push_world.plain, push_world.p
    w.hostile.repos["gone/app"] = ["1.0.0", "1.0.1"]  # every registry answers this time
    runner = w.runner()
    report = runner.run_pass()
    assert not report.errors, report.errors
    result = dict(report.results)["discover config:envs"]
    assert result.status is Status.PUSHED
    assert read_file(w.bare, "main", "envs/prod/app.yaml").count(f"{plain}/{p}/web:1.2.0\n") == 1
    message = json.dumps(log(w.bare, "main"))
    assert "discovered 6 updates in envs/prod, envs/staging" in message
    rows = w.rows()
    assert rows[(f"discover:{plain}/{p}/web", "config:envs/staging")][:2] == ("1.2.0", None)
    assert rows[(f"discover:{w.hostile.host}/gone/app", "config:envs/prod")][:2] == ("1.0.1", None)

    head = log(w.bare, "main")
    again = runner.run_pass(only=[f"{plain}/{p}/web"])  # a webhook for a discovered repository runs its entry
    assert dict(again.results)["discover config:envs"].status is Status.NO_CHANGE and log(w.bare, "main") == head
    assert w.rows()[(f"discover:{plain}/{p}/web", "config:envs/staging")][:2] == ("1.2.0", None)

    # someone takes the worker out of the tree: its row goes (Git no longer holds it), the others stay
    assert (f"discover:{plain}/{p}/worker", "config:envs/prod") in w.rows()
    commit_files(w.bare, "main", {"envs/prod/worker.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w\n"})
    third = runner.run_pass(only=[f"{plain}/{p}/worker"])
    assert dict(third.results)["discover config:envs"].status is Status.NO_CHANGE
    rows = w.rows()
    assert (f"discover:{plain}/{p}/worker", "config:envs/prod") not in rows
    assert rows[(f"discover:{plain}/{p}/web", "config:envs/prod")][:2] == ("1.2.0", None)


def test_a_repository_whose_registry_cannot_even_be_reached_is_only_that_repositorys_failure(
    push_world: World, tmp_path: Path
) -> None:
    """Not a registry's answer: its caFile vanished after validation (an OSError, not a RegistryError)."""
    w, plain, p = push_world, push_world.plain, push_world.p
    w.hostile.repos["gone/app"] = ["1.0.0"]
    ca = tmp_path / "ca.pem"
    ca.write_text("placeholder\n")
    alias = plain.replace("127.0.0.1", "localhost")
    w.config.write_text(w.config.read_text().replace("registries:\n", f'registries:\n  - {{host: "{alias}", caFile: "{ca}"}}\n'))
    commit_files(w.bare, "main", {"envs/qa/app.yaml": app([f"{alias}/{p}/web:1.0.0", f"{plain}/{p}/worker:v1.2.0"])})
    runner = w.runner()
    ca.unlink()
    report = runner.run_pass()
    assert dict(report.results)["discover config:envs"].status is Status.PUSHED
    qa = read_file(w.bare, "main", "envs/qa/app.yaml")
    assert f"{alias}/{p}/web:1.0.0\n" in qa and f"{plain}/{p}/worker:v1.4.1\n" in qa, "the rest still moves"
    assert f"{plain}/{p}/web:1.2.0\n" in read_file(w.bare, "main", "envs/staging/app.yaml")
    assert report.codes == [ExitCode.REGISTRY] and f"{alias}/{p}/web" in report.errors[0], report.errors
    ca.write_text("placeholder\n")  # the config loads again (for the state's path)
    reason = w.rows()[(f"discover:{alias}/{p}/web", "config:envs/qa")][2]
    assert "ca.pem" in reason, reason


def test_a_failing_discovered_repository_backs_off_unless_a_webhook_names_it(push_world: World) -> None:
    w, plain, p, h = push_world, push_world.plain, push_world.p, push_world.hostile.host
    now = [1000.0]
    runner = w.runner(lambda: now[0])
    first = runner.run_pass()
    assert first.codes == [ExitCode.REGISTRY] and w.hostile.hits["gone/app"] == 1
    again = runner.run_pass(only=[f"{plain}/{p}/web"])  # a webhook for another repository, before the retry is due
    assert w.hostile.hits["gone/app"] == 1 and not again.errors, "backing off: not listed, not a new failure"
    assert "backing off after 1 failure(s)" in w.rows()[(f"discover:{h}/gone/app", "config:envs/prod")][2]
    runner.run_pass(only=[f"{h}/gone/app"])  # a webhook naming it: listed at once
    assert w.hostile.hits["gone/app"] == 2
    now[0] += 7200.0  # the interval passed, and the retry is due
    w.hostile.repos["gone/app"] = ["1.0.0", "1.0.2"]
    last = runner.run_pass()
    assert not last.errors and w.hostile.hits["gone/app"] == 3
    assert f"{h}/gone/app:1.0.2\n" in read_file(w.bare, "main", "envs/prod/app.yaml")
    assert runner.backoff.get((f"discover:{h}/gone/app", "")) is None, "a success forgets the failures"
