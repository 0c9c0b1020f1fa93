"""`run` on real parts with a registry of ours: invalid registry data never reaches Git.

Before, a tag such as ``zz: x`` (greatest by code point) was selected by an alphabetical policy
and written into the YAML, and a ``Docker-Content-Digest`` of ``zz #x`` was pinned.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imagebot.config.load import load
from imagebot.errors import ExitCode
from imagebot.runtime.runner import Runner
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, log, make_bare, read_file
from tests.fixtures.net import QuietHandler
from tests.fixtures.scripted import Hostile, json_answer

pytestmark = pytest.mark.git

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  template:
    spec:
      containers:
        - name: app
          image: {registry}/rb/app:1.0.0 # {{"$imagepolicy": "rb:app"}}
"""

CONFIG = """apiVersion: imagebot.dev/v1
kind: Config
interval: 1h
stateFile: {state}
cacheDir: {cache}
registries:
  - host: {registry}
    plainHTTP: true
git:
  - name: config
    url: {url}
    branch: main
    auth: {{usernameEnv: RB_GIT_USER, tokenEnv: RB_GIT_TOKEN}}
images:
  - name: app
    repository: {registry}/rb/app
    environments:
      dev:
        policy: {{alphabetical: asc}}
        setter: rb:app
        digest: {digest}
        target: {{git: config, path: dev}}
"""

TAGS = ["1.0.0", "2.0.0", "zz: x", "zz #x", 'zz"q', "zz\u2028x", "z/../../x", "zz" + "x" * 10_000]


def runner_for(
    hostile: Hostile, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digest: bool
) -> tuple[Runner, Path]:
    bare = make_bare(git_http.root, f"rb{os.urandom(4).hex()}", {"dev/deploy.yaml": DEPLOY.format(registry=hostile.host)})
    monkeypatch.setenv("RB_GIT_USER", GIT_USER)
    monkeypatch.setenv("RB_GIT_TOKEN", GIT_PASSWORD)
    cfg = tmp_path / "imagebot.yaml"
    cfg.write_text(
        CONFIG.format(
            state=tmp_path / "state.db",
            cache=tmp_path / "cache",
            registry=hostile.host,
            url=git_http.url(bare),
            digest="true" if digest else "false",
        )
    )
    return Runner(load([cfg])), bare


@pytest.fixture
def hostile() -> Hostile:
    h = Hostile()
    yield h  # type: ignore[misc]
    h.stop()


def test_run_never_writes_a_tag_outside_the_oci_grammar(
    hostile: Hostile, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile.on("/v2/rb/app/tags/list", json_answer(200, json.dumps({"name": "rb/app", "tags": TAGS}).encode()))
    runner, bare = runner_for(hostile, git_http, tmp_path, monkeypatch, digest=False)
    report = runner.run_pass(only=[runner.cfg.images[0].repository.canonical_name])
    assert not report.errors, report.errors
    assert f"{hostile.host}/rb/app:2.0.0 #" in read_file(bare, "main", "dev/deploy.yaml")
    assert "zz" not in read_file(bare, "main", "dev/deploy.yaml")


def test_run_never_pins_a_malformed_digest(
    hostile: Hostile, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile.on("/v2/rb/app/tags/list", json_answer(200, json.dumps({"name": "rb/app", "tags": ["1.0.0", "2.0.0"]}).encode()))

    def manifest(h: QuietHandler) -> None:
        h.send_body(200, b"{}", {"Docker-Content-Digest": "zz #x"})

    hostile.on("/v2/rb/app/manifests/2.0.0", manifest)
    runner, bare = runner_for(hostile, git_http, tmp_path, monkeypatch, digest=True)
    before = log(bare, "main")
    report = runner.run_pass(only=[runner.cfg.images[0].repository.canonical_name])
    assert report.codes and report.codes[0] is ExitCode.REGISTRY, report.errors
    assert "is not a digest" in report.errors[0]
    assert log(bare, "main") == before, "nothing written"
