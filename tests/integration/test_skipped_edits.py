"""A skipped edit is a failure with its reason, never "no change" — and never recorded as current.

Skipped: a value behind a YAML alias, a file that is not valid YAML, a link leaving the tree, a
value the reference grammar refuses. `imagebot update` exits 4 and says why on stderr; the loop
records the failure (status, errors metric) and not the tag, so neither the downgrade guard nor
a promotion trusts a tag Git does not hold. Real git over smart HTTP and the Debian registry.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from gitopskit.workspace import GitAuth, Identity, Workspace
from imagebot import refs
from imagebot.cli import main
from imagebot.config.load import load
from imagebot.errors import ExitCode
from imagebot.gitops.writer import Delivery, Status, deliver
from imagebot.runtime.runner import Runner
from imagebot.runtime.state import RuntimeState
from imagebot.update import EditRequest
from tests.fixtures.botconfig import git_env, imagebot_config
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, commit_files, log, make_bare, read_file
from tests.fixtures.registry import RegistryServer

pytestmark = pytest.mark.git

MARKER = '# {"$imagepolicy": "apps:app"}'
PLAIN = f"""kind: Deployment
spec:
  template:
    spec:
      containers:
      - name: app
        image: ghcr.io/org/app:1.0.0 {MARKER}
"""
ALIASED = f"""kind: Deployment
metadata:
  annotations:
    image: &img ghcr.io/org/app:1.0.0 {MARKER}
spec:
  template:
    spec:
      containers:
      - name: app
        image: *img
"""
BROKEN = f"""kind: Deployment
spec:
  containers: [
  - image: ghcr.io/org/app:1.0.0 {MARKER}
"""

SKIPS = {
    "alias": ({"apps/deploy.yaml": ALIASED}, {}, "anchored and used through an alias"),
    "not-yaml": ({"apps/deploy.yaml": BROKEN}, {}, "not valid YAML"),
    "link-out-of-tree": ({"shared/deploy.yaml": PLAIN}, {"apps/deploy.yaml": "../shared/deploy.yaml"}, "leads outside the tree"),
}


def update(git_http: GitHttp, bare: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> tuple[int, str, str]:
    monkeypatch.setenv("IMAGEBOT_GIT_USERNAME", GIT_USER)
    monkeypatch.setenv("IMAGEBOT_GIT_TOKEN", GIT_PASSWORD)
    argv = ["update", "--repo", git_http.url(bare), "--cache-dir", str(cache), "--path", "apps", *extra]
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--policy", "apps:app=ghcr.io/org/app:1.1.0"], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("files", "links", "why"), SKIPS.values(), ids=SKIPS.keys())
def test_update_exits_4_and_says_why_when_the_only_reference_cannot_be_edited(
    files: dict[str, str], links: dict[str, str], why: str, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = make_bare(git_http.root, f"skip{os.urandom(4).hex()}", files, links=links)
    before = log(bare, "main")
    code, out, err = update(git_http, bare, tmp_path / "cache", monkeypatch)
    assert code == int(ExitCode.EDIT), (out, err)
    assert "no change" not in out
    assert "apps:app not updated" in err and why in err, err
    assert "Traceback" not in err
    assert log(bare, "main") == before, "nothing committed"


def test_update_exits_1_like_set_when_nothing_names_the_requested_reference(
    git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = make_bare(git_http.root, f"none{os.urandom(4).hex()}", {"apps/deploy.yaml": PLAIN.replace("apps:app", "apps:other")})
    code, out, err = update(git_http, bare, tmp_path / "cache", monkeypatch)
    assert (code, out) == (int(ExitCode.NOTHING), "")
    assert "apps:app not updated: no reference to apps:app found" in err


def test_update_commits_what_it_can_and_still_fails_for_the_reference_it_skipped(
    git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = make_bare(git_http.root, f"part{os.urandom(4).hex()}", {"apps/a.yaml": PLAIN, "apps/b.yaml": ALIASED})
    code, out, err = update(git_http, bare, tmp_path / "cache", monkeypatch, "--json")
    assert code == int(ExitCode.EDIT), err
    assert read_file(bare, "main", "apps/a.yaml") == PLAIN.replace("1.0.0", "1.1.0")
    assert read_file(bare, "main", "apps/b.yaml") == ALIASED
    assert '"subject": "apps:app"' in out and "b.yaml:4: metadata.annotations.image is anchored" in err


def test_a_value_the_reference_grammar_refuses_is_never_written(git_http: GitHttp, tmp_path: Path) -> None:
    bare = make_bare(git_http.root, f"gram{os.urandom(4).hex()}", {"apps/deploy.yaml": PLAIN})
    before = log(bare, "main")
    ws = Workspace(git_http.url(bare), "main", tmp_path / "cache", GitAuth(GIT_USER, GIT_PASSWORD), Identity("t", "t@t"))
    injected = refs.parse("ghcr.io/org/app:1.0.0").with_version('1.1.0\n        command: ["sh"]', None)  # unvalidated
    result = deliver(ws, Delivery(path="apps"), EditRequest(policies={"apps:app": injected}))
    assert result.status is Status.NO_CHANGE and result.commit is None
    ((subject, reason),) = [(s.subject, s.reason) for s in result.skipped]
    assert subject == "apps:app" and reason.startswith("refused: invalid image reference")
    assert log(bare, "main") == before


def deploy(env: str, registry: str, aliased: bool = False) -> str:
    marker = f'# {{"$imagepolicy": "rt:app-{env}"}}'
    if aliased:
        return f"metadata:\n  annotations:\n    image: &img {registry}/skip/app:1.0.0 {marker}\nspec:\n  image: *img\n"
    return f"spec:\n  image: {registry}/skip/app:1.0.0 {marker}\n"


IMAGES = """images:
  - name: app
    repository: {registry}/skip/app
    environments:
      staging:
        policy: {{semver: "^1 || ^2"}}
        setter: rt:app-staging
        target: {{git: config, path: staging}}
      prod:
        promote: {{from: staging, soak: 1h}}
        setter: rt:app-prod
        target: {{git: config, path: prod}}
"""


def config(tmp_path: Path, registry: str, url: str) -> str:
    return imagebot_config(IMAGES.format(registry=registry), state=tmp_path / "s.db", cache=tmp_path / "cache",
                           registries=[registry], url=url, env="RT", branch=None)  # fmt: skip


def test_the_loop_records_a_skipped_edit_as_a_failure_so_promotion_and_the_downgrade_guard_are_not_fooled(
    registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = registry_plain.host
    bare = make_bare(
        git_http.root,
        f"loop{os.urandom(4).hex()}",
        {"staging/deploy.yaml": deploy("staging", host, aliased=True), "prod/deploy.yaml": deploy("prod", host)},
    )
    for k, v in git_env("RT").items():
        monkeypatch.setenv(k, v)
    cfg = tmp_path / "imagebot.yaml"
    cfg.write_text(config(tmp_path, host, git_http.url(bare)))
    registry_plain.pusher().push("skip/app", ["1.0.0", "2.0.0"], distinct=True)
    now = [1_000_000.0]
    runner = Runner(load([cfg]), clock=lambda: now[0])
    repo = runner.cfg.images[0].repository.canonical_name
    state = RuntimeState(runner.cfg.state_file)

    def rows() -> dict[str, object]:
        return {r.environment: r for r in state.all()}

    first = runner.run_pass(only=[repo])
    assert first.codes == [ExitCode.EDIT], first.errors
    assert "alias" in first.errors[0] and "staging" in first.errors[0]
    staging = rows()["staging"]
    assert staging.tag is None, "Git does not hold 2.0.0 in staging: it is not current"  # type: ignore[attr-defined]
    assert "alias" in staging.reason  # type: ignore[attr-defined]
    assert runner.metrics.registry.get_sample_value("imagebot_errors_total", {"kind": "edit"}) == 1

    now[0] += 2 * 3600  # past prod's soak: a bogus current tag in staging would be promoted now
    second = runner.run_pass(only=[repo])
    assert second.codes == [ExitCode.EDIT]
    assert rows()["prod"].tag is None  # type: ignore[attr-defined]
    assert read_file(bare, "main", "prod/deploy.yaml") == deploy("prod", host), "prod never gets what staging never ran"

    commit_files(bare, "main", {"staging/deploy.yaml": deploy("staging", host)})  # a person removes the alias
    now[0] += 3600
    third = runner.run_pass(only=[repo])
    assert not third.codes, third.errors
    assert "skip/app:2.0.0 #" in read_file(bare, "main", "staging/deploy.yaml"), "no bogus 'already at 2.0.0'"
    assert rows()["staging"].tag == "2.0.0"  # type: ignore[attr-defined]


def test_run_once_exits_4_and_logs_why_when_an_edit_is_skipped(
    registry_plain: RegistryServer, git_http: GitHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = registry_plain.host
    bare = make_bare(
        git_http.root,
        f"once{os.urandom(4).hex()}",
        {"staging/deploy.yaml": deploy("staging", host, aliased=True), "prod/deploy.yaml": deploy("prod", host)},
    )
    for k, v in git_env("RT").items():
        monkeypatch.setenv(k, v)
    cfg = tmp_path / "imagebot.yaml"
    cfg.write_text(config(tmp_path, host, git_http.url(bare)))
    registry_plain.pusher().push("skip/app", ["1.0.0", "2.0.0"], distinct=True)
    out, err = io.StringIO(), io.StringIO()
    assert main(["run", "--once", "--config", str(cfg)], out=out, err=err) == int(ExitCode.EDIT)
    out = io.StringIO()
    assert main(["status", "--config", str(cfg)], out=out, err=io.StringIO()) == 0
    assert "app staging: current -" in out.getvalue() and "anchored and used through an alias" in out.getvalue()
