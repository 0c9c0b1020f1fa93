"""Pull requests and commits that explain themselves, on real parts: images pushed to Debian's registry with
OCI annotations (on an index with two platforms, and as config labels), `run` delivering one environment by
push (trailers read back with `git log`) and one by pull request (the GitHub stand-in receives the body)."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagebot.cli import main
from imagebot.config.load import load
from imagebot.gitops.writer import Status
from imagebot.runtime.runner import Runner
from tests.fixtures.botconfig import deployment, git_env, imagebot_config
from tests.fixtures.fake_github import FakeGitHub
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare
from tests.fixtures.registry import RegistryServer

pytestmark = pytest.mark.git

OLD_REV = "1" * 40
NEW_REV = "2" * 40
PLATFORMS: list[tuple[str, str, str | None]] = [("linux", "amd64", None), ("linux", "arm64", "v8")]


IMAGES = """images:
  - name: app
    repository: {image}
    environments:
      dev:
        policy: {{semver: "^1"}}
        setter: ex:app-dev
        target: {{git: config, path: dev}}
      staging:
        policy: {{semver: "^1"}}
        setter: ex:app-staging
        digest: true
        target: {{git: config, path: staging, mode: pull-request, group: apps}}
"""


@pytest.fixture
def world(
    registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Runner, Path, FakeGitHub, str]]:
    name = f"ex{os.urandom(4).hex()}/app"  # this test's own repository: no other test's pushes change what it sees
    image = f"{registry_plain.host}/{name}"
    files = {f"{e}/deploy.yaml": deployment(f"{image}:1.0.0", f"ex:app-{e}", f"app-{e}") for e in ("dev", "staging")}
    bare = make_bare(git_http.root, f"ex{os.urandom(4).hex()}", files)
    github = FakeGitHub({"org/config": bare}, prefix="/api/v3")
    for k, v in git_env("EX", github=True).items():
        monkeypatch.setenv(k, v)
    cfg_file = tmp_path / "imagebot.yaml"
    cfg_file.write_text(imagebot_config(IMAGES.format(image=image), state=tmp_path / "state.db", cache=tmp_path / "cache",
                                        registries=[registry_plain.host], url=git_http.url(bare), env="EX",
                                        github_api=github.base))  # fmt: skip
    try:
        yield Runner(load([cfg_file])), bare, github, name
    finally:
        github.stop()


def _annotations(rev: str, version: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.source": "https://github.com/example/app",
        "org.opencontainers.image.revision": rev,
        "org.opencontainers.image.version": version,
    }


def test_a_pull_request_body_and_push_trailers_explain_the_change(
    world: tuple[Runner, Path, FakeGitHub, str], registry_plain: RegistryServer
) -> None:
    runner, bare, github, name = world
    repo = runner.cfg.images[0].repository.canonical_name
    pusher = registry_plain.pusher()
    pusher.push_index(name, "1.0.0", PLATFORMS, annotations=_annotations(OLD_REV, "1.0.0"))
    first = {env: r.status for env, r in runner.run_pass(only=[repo]).results}
    assert first == {"dev": Status.NO_CHANGE, "staging": Status.PR_OPENED}, "staging opens a PR to pin the digest"

    created = {"org.opencontainers.image.created": "2026-11-28T10:00:00Z"}  # a label only: read from the config blob
    new_digest, _ = pusher.push_index(name, "1.1.0", PLATFORMS, labels=created, annotations=_annotations(NEW_REV, "1.1.0"))
    pusher.push(name, ["2.0.0", "1.2.0-rc.1"], distinct=True)  # newer, refused by ^1: passed over, with the reason
    report = runner.run_pass(only=[repo])
    assert not report.errors, report.errors
    assert {env: r.status for env, r in report.results} == {"dev": Status.PUSHED, "staging": Status.PR_UPDATED}

    (pr,) = github.pulls.values()
    body = pr["body"]
    compare = f"https://github.com/example/app/compare/{OLD_REV}...{NEW_REV}"
    # staging's current image is not known yet (its first PR was never merged): the new commit's page
    assert f"](https://github.com/example/app/commit/{NEW_REV})" in body, body
    assert "- **platforms**: linux/amd64, linux/arm64/v8" in body
    assert "- **created**: 2026-11-28T10:00:00Z" in body
    assert "- **version**: 1.1.0" in body
    assert "- **signature**: not required" in body
    assert f"`{new_digest}`" in body, "staging pins the digest"
    assert "- **newer tags passed over**: 2.0.0: outside ^1; 1.2.0-rc.1: a pre-release" in body
    assert "git revert -m 1 <merge-sha>" in body

    trailers = subprocess.run(
        ["git", "-C", str(bare), "log", "-1", "--format=%(trailers:unfold)", "main"], capture_output=True, text=True, check=True
    ).stdout
    lines = dict(line.split(": ", 1) for line in trailers.splitlines() if line)
    assert lines["Image"].endswith(f"/{name}")
    assert lines["Image-Environment"] == "dev" and lines["Image-From"].startswith("1.0.0") and lines["Image-To"] == "1.1.0"
    assert lines["Image-Source"] == compare and lines["Image-Revision"] == NEW_REV
    assert lines["Image-Platforms"] == "linux/amd64, linux/arm64/v8"
    assert lines["Rollback"].startswith("git revert <this commit>")

    # cached per repository and digest in the scan state: reading it again asks the registry nothing
    client = runner.registries.client(runner.cfg.images[0].repository.canonical_registry)
    before = client.requests_made
    again = runner._provenance.read(client, repo, runner.cfg.images[0].repository.canonical_path, new_digest)
    assert again.revision == NEW_REV and client.requests_made == before
    by_tag = runner._provenance.read(client, repo, runner.cfg.images[0].repository.canonical_path, "1.1.0")
    assert by_tag == again and client.requests_made == before + 1, "a tag costs its manifest, which names its digest"
    # a tag whose digest is new: its manifest and config, no HEAD before them
    body, mt = pusher.image(name, labels={"org.opencontainers.image.revision": "f" * 40})
    pusher.manifest(name, "1.2.0", body, mt)
    before = client.requests_made
    fresh = runner._provenance.read(client, repo, runner.cfg.images[0].repository.canonical_path, "1.2.0")
    assert fresh.revision == "f" * 40 and client.requests_made == before + 2


def test_annotations_that_cannot_be_read_never_block_the_update(
    world: tuple[Runner, Path, FakeGitHub, str], registry_plain: RegistryServer
) -> None:
    runner, bare, github, name = world
    repo = runner.cfg.images[0].repository.canonical_name
    pusher = registry_plain.pusher()
    pusher.push(name, ["1.0.0"])
    runner.run_pass(only=[repo])
    body, mt = pusher.image(name, labels={"huge": "x" * (1100 * 1024)})  # a config blob over the 1 MiB read cap
    pusher.manifest(name, "1.1.0", body, mt)
    report = runner.run_pass(only=[repo])
    assert not report.errors, report.errors
    assert {env: r.status for env, r in report.results} == {"dev": Status.PUSHED, "staging": Status.PR_UPDATED}
    (pr,) = github.pulls.values()
    assert "- annotations unavailable: " in pr["body"], pr["body"]
    msg = subprocess.run(["git", "-C", str(bare), "log", "-1", "--format=%B", "main"], capture_output=True, text=True, check=True)
    assert "Image-Annotations: unavailable: " in msg.stdout


def test_imagebot_update_says_what_it_knows_in_trailers(
    git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand-given edit has no policy, scan or signature check: its trailers name the environment, the versions
    and that it was asked for — and how to roll it back."""
    files = {"apps/deploy.yaml": deployment("ghcr.io/org/app:1.0.0", "apps:app", "app-prod")}
    bare = make_bare(git_http.root, f"ex{os.urandom(4).hex()}", files)
    monkeypatch.setenv("IMAGEBOT_GIT_USERNAME", GIT_USER)
    monkeypatch.setenv("IMAGEBOT_GIT_TOKEN", GIT_PASSWORD)
    argv = ["update", "--repo", git_http.url(bare), "--cache-dir", str(tmp_path / "cache"), "--environment", "prod",
            "--policy", "apps:app=ghcr.io/org/app:1.1.0"]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, out=out, err=err) == 0, err.getvalue()
    trailers = subprocess.run(
        ["git", "-C", str(bare), "log", "-1", "--format=%(trailers:unfold)", "main"], capture_output=True, text=True, check=True
    ).stdout
    assert trailers.splitlines()[:5] == [
        "Image: ghcr.io/org/app",
        "Image-Environment: prod",
        "Image-From: 1.0.0",
        "Image-To: 1.1.0",
        "Image-Reason: requested with imagebot update",
    ], trailers
    assert trailers.strip().splitlines()[-1].startswith("Rollback: git revert <this commit>")
