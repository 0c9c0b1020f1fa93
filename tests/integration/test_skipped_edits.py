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
from imagebot.errors import ExitCode
from imagebot.gitops.writer import Delivery, Status, deliver
from imagebot.update import EditRequest
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, log, make_bare, read_file

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

