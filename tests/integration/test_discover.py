"""Discovery (`imagebot set --discover LEVEL`): every reference found moves within its semver policy,
against a registry of ours; non-semver tags, digest pins and a failing registry are reported, never fatal."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from imagebot.cli import main
from imagebot.update.discover import Level, newest
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, log, make_bare, read_file
from tests.fixtures.pager import Pager

PIN = "sha256:" + "a" * 64
_HOST: list[str] = []  # the pager of the running test


def _tree(root: Path, host: str) -> None:
    (root / "prod").mkdir(parents=True)
    (root / "staging").mkdir()
    (root / "prod" / "deploy.yaml").write_text(
        f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      initContainers:
        - name: init
          image: {host}/ok/init:1.0.0
      containers:
        - name: web
          image: {host}/ok/web:1.2.3
        - name: side
          image: {host}/ok/side:latest
        - name: pinned
          image: {host}/ok/pinned:1.0.0@{PIN}
        - name: down
          image: {host}/down/app:1.0.0
"""
    )
    (root / "prod" / "cron.yaml").write_text(
        f"""apiVersion: batch/v1
kind: CronJob
metadata:
  name: job
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - name: job
              image: {host}/ok/job:v2.0.1
"""
    )
    (root / "staging" / "kustomization.yaml").write_text(
        f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
images:
  - name: {host}/ok/web
    newTag: 1.2.3
"""
    )
    (root / "staging" / "values.yaml").write_text(
        f"""image:
  registry: {host}
  repository: ok/chart
  tag: "3.1.0"
"""
    )


@pytest.fixture
def tree(pager: Pager, tmp_path: Path) -> Path:
    pager.repos["ok/init"] = ["1.0.0", "1.0.1", "1.1.0", "2.0.0"]
    pager.repos["ok/web"] = ["1.2.3", "1.2.9", "1.3.0", "1.4.0-rc.1", "2.0.0", "latest"]
    pager.repos["ok/side"] = ["latest", "1.0.0"]
    pager.repos["ok/pinned"] = ["1.0.0", "1.0.5"]
    pager.repos["ok/job"] = ["v2.0.1", "v2.0.2", "v2.5.0", "2.9.0", "v3.0.0"]
    pager.repos["ok/chart"] = ["3.1.0", "3.1.4", "3.2.0", "4.0.0"]
    root = tmp_path / "tree"
    _HOST[:] = [pager.host]
    _tree(root, pager.host)
    return root


def _run(root: Path, level: str, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    host = _HOST[0]
    code = main(["set", str(root), "--discover", level, "--insecure-registry", host, "--timeout", "20", *extra], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


EXPECTED = {
    "patch": {"init": "1.0.1", "web": "1.2.9", "job": "v2.0.2", "chart": "3.1.4"},
    "minor": {"init": "1.1.0", "web": "1.3.0", "job": "v2.5.0", "chart": "3.2.0"},
    "major": {"init": "2.0.0", "web": "2.0.0", "job": "v3.0.0", "chart": "4.0.0"},
}


@pytest.mark.parametrize("level", ["patch", "minor", "major"])
def test_discovery_moves_exactly_the_semver_references_within_the_policy(tree: Path, pager: Pager, level: str) -> None:
    host = pager.host
    code, _, err = _run(tree, level)
    assert code == 0, err
    want = EXPECTED[level]
    deploy = (tree / "prod" / "deploy.yaml").read_text()
    assert f"image: {host}/ok/init:{want['init']}\n" in deploy
    assert f"image: {host}/ok/web:{want['web']}\n" in deploy
    assert f"image: {host}/ok/side:latest\n" in deploy  # not semver: skipped, reported
    assert f"image: {host}/ok/pinned:1.0.0@{PIN}\n" in deploy  # pinned: kept
    assert f"image: {host}/down/app:1.0.0\n" in deploy  # registry failure: reported
    assert f"image: {host}/ok/job:{want['job']}\n" in (tree / "prod" / "cron.yaml").read_text()
    assert f"newTag: {want['web']}\n" in (tree / "staging" / "kustomization.yaml").read_text()
    assert f'tag: "{want["chart"]}"\n' in (tree / "staging" / "values.yaml").read_text()
    assert "ok/side:latest is not a semver tag" in err
    assert "ok/pinned is pinned by digest" in err
    assert "down/app: registry:" in err
    assert pager.hits["ok/web"] == 1  # one listing per repository, shared by its two references
    assert "pinned" not in str(dict(pager.hits)) and "side" not in str(dict(pager.hits))  # pinned, not semver: no listing
    # a second run finds nothing to move
    code, _, _ = _run(tree, level)
    assert code == 1


def test_include_and_exclude_globs_select_repositories(tree: Path, pager: Pager) -> None:
    code, _, err = _run(tree, "minor", "--include", "*/ok/*", "--exclude", "*/ok/web")
    assert code == 0, err
    assert f"{pager.host}/ok/web:1.2.3\n" in (tree / "prod" / "deploy.yaml").read_text()
    assert f"{pager.host}/ok/init:1.1.0\n" in (tree / "prod" / "deploy.yaml").read_text()
    assert "down/app" not in err and "ok/web" not in dict(pager.hits)


def test_bad_policy_value_is_a_usage_error_naming_the_allowed_values(tree: Path) -> None:
    out, errs = io.StringIO(), io.StringIO()
    code = main(["set", str(tree), "--discover", "newest"], out=out, err=errs)
    assert code == 2
    err = errs.getvalue()
    assert "'patch', 'minor', 'major'" in err


def test_newest_follows_renovate_levels_and_skips_non_semver() -> None:
    tags = ["1.2.3", "1.2.4", "1.3.0", "2.0.0", "1.2.5-rc.1", "v1.2.9"]
    assert newest("1.2.3", tags, Level.PATCH) == "1.2.4"
    assert newest("1.2.3", tags, Level.MINOR) == "1.3.0"
    assert newest("1.2.3", tags, Level.MAJOR) == "2.0.0"
    assert newest("latest", tags, Level.MAJOR) is None
    assert newest("2.0.0", tags, Level.MAJOR) is None


@pytest.mark.git
def test_update_discover_commits_once_and_a_second_run_does_nothing(
    git_http: GitHttp, pager: Pager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pager.repos["ok/init"] = ["1.0.0", "1.1.0", "2.0.0"]
    pager.repos["ok/web"] = ["1.2.3", "1.3.0", "2.0.0"]
    pager.repos["ok/job"] = ["v2.0.1", "v2.5.0"]
    pager.repos["ok/chart"] = ["3.1.0", "3.2.0"]
    seed = tmp_path / "seed"
    _tree(seed, pager.host)
    files = {p.relative_to(seed).as_posix(): p.read_text() for p in seed.rglob("*.yaml")}
    repo = make_bare(git_http.root, f"disc{os.urandom(4).hex()}", files)
    monkeypatch.setenv("IMAGEBOT_GIT_USERNAME", GIT_USER)
    monkeypatch.setenv("IMAGEBOT_GIT_TOKEN", GIT_PASSWORD)
    argv = ["update", "--repo", git_http.url(repo), "--cache-dir", str(tmp_path / "cache"), "--discover", "minor"]
    argv += ["--insecure-registry", pager.host, "--timeout", "20"]
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, out=out, err=err) == 0, err.getvalue()
    host = pager.host
    want = {
        "prod/deploy.yaml": files["prod/deploy.yaml"]
        .replace("ok/init:1.0.0", "ok/init:1.1.0")
        .replace("ok/web:1.2.3", "ok/web:1.3.0"),
        "prod/cron.yaml": files["prod/cron.yaml"].replace("ok/job:v2.0.1", "ok/job:v2.5.0"),
        "staging/kustomization.yaml": files["staging/kustomization.yaml"].replace("newTag: 1.2.3", "newTag: 1.3.0"),
        "staging/values.yaml": files["staging/values.yaml"].replace('"3.1.0"', '"3.2.0"'),
    }
    for path, text in want.items():
        assert read_file(repo, "main", path) == text, path
    assert f"{host}/ok/side:latest is not a semver tag" in err.getvalue()
    assert len(log(repo, "main")) == 2  # one commit
    message = subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(repo), "log", "-1", "--format=%B"], capture_output=True, text=True
    ).stdout
    assert message.strip() + "\n" == (
        "chore(images): discovered 5 updates in prod, staging\n\n"
        "prod:\n"
        f"- {host}/ok/init: 1.0.0 → 1.1.0 (prod/deploy.yaml)\n"
        f"- {host}/ok/job: v2.0.1 → v2.5.0 (prod/cron.yaml)\n"
        f"- {host}/ok/web: 1.2.3 → 1.3.0 (prod/deploy.yaml)\n\n"
        "staging:\n"
        f"- {host}/ok/chart: 3.1.0 → 3.2.0 (staging/values.yaml)\n"
        f"- {host}/ok/web: 1.2.3 → 1.3.0 (staging/kustomization.yaml)\n"
    )
    out2, err2 = io.StringIO(), io.StringIO()
    assert main(argv, out=out2, err=err2) == 0, err2.getvalue()
    assert out2.getvalue() == "no change\n"
    assert len(log(repo, "main")) == 2
