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
from tests.fixtures.botconfig import deployment, git_env, imagebot_config
from tests.fixtures.git import GitHttp, log, make_bare, read_file
from tests.fixtures.net import QuietHandler
from tests.fixtures.scripted import Hostile, json_answer

pytestmark = pytest.mark.git


IMAGES = """images:
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
    files = {"dev/deploy.yaml": deployment(f"{hostile.host}/rb/app:1.0.0", "rb:app")}
    bare = make_bare(git_http.root, f"rb{os.urandom(4).hex()}", files)
    for k, v in git_env("RB").items():
        monkeypatch.setenv(k, v)
    cfg = tmp_path / "imagebot.yaml"
    images = IMAGES.format(registry=hostile.host, digest="true" if digest else "false")
    cfg.write_text(imagebot_config(images, state=tmp_path / "state.db", cache=tmp_path / "cache", registries=[hostile.host],
                                   url=git_http.url(bare), env="RB"))  # fmt: skip
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
