"""`imagebot update` on real remotes: smart HTTP with basic auth, SSH with a deploy key, PRs on a
GitHub stand-in backed by the same bare repository, concurrency and failures."""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from gitopskit.errors import GitError
from gitopskit.workspace import GitAuth, Identity, Workspace
from imagebot import refs
from imagebot.cli import main
from imagebot.errors import ForgeError
from imagebot.forge.github import GitHubForge
from imagebot.gitops.writer import Delivery, Mode, Status, deliver
from imagebot.update import EditRequest
from tests.fixtures.fake_github import TOKEN, FakeGitHub
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, Sshd, chown_for_ssh, commit_files, log, make_bare, read_file

pytestmark = pytest.mark.git

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: app   # keep this comment
spec:
  template:
    spec:
      containers:
      - name: app
        image: ghcr.io/org/app:1.0.0 # {"$imagepolicy": "apps:app"}
"""
HTTP_AUTH = GitAuth(GIT_USER, GIT_PASSWORD)


def request(tag: str) -> EditRequest:
    return EditRequest(policies={"apps:app": refs.parse(f"ghcr.io/org/app:{tag}")})


def run_cli(argv: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def repo(git_http: GitHttp, tmp_path: Path) -> Path:
    return make_bare(git_http.root, f"r{os.urandom(4).hex()}", {"apps/deploy.yaml": DEPLOY, "README.md": "config\n"})


def test_push_over_http_commits_exactly_the_edit_and_second_run_does_nothing(
    git_http: GitHttp, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"IMAGEBOT_GIT_USERNAME": GIT_USER, "IMAGEBOT_GIT_TOKEN": GIT_PASSWORD}
    argv = [
        "update",
        "--repo",
        git_http.url(repo),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--environment",
        "prod",
        "--policy",
        "apps:app=ghcr.io/org/app:1.1.0",
    ]
    code, out, err = run_cli(argv, env, monkeypatch)
    assert code == 0, err
    sha = out.strip()
    assert read_file(repo, "main", "apps/deploy.yaml") == DEPLOY.replace("app:1.0.0", "app:1.1.0")
    head = log(repo, "main")[0]
    assert head.startswith(sha) and head.endswith("|chore(images): app 1.0.0 → 1.1.0 (prod)")
    msg = subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(repo), "log", "-1", "--format=%an <%ae>%n%B"], capture_output=True, text=True
    ).stdout
    assert msg.startswith("imagebot <imagebot@users.noreply.invalid>") and "apps/deploy.yaml" in msg
    requests_before = git_http.requests
    code, out, _ = run_cli(argv, env, monkeypatch)
    assert (code, out) == (0, "no change\n")
    assert len(log(repo, "main")) == 2
    assert git_http.requests - requests_before <= 4, "a no-op run fetches, and pushes nothing"
    (workspace,) = [d for d in (tmp_path / "cache").iterdir() if (d / ".git").is_dir()]
    assert GIT_PASSWORD not in (workspace / ".git" / "config").read_text()


def test_bad_credentials_are_a_git_error_with_secret_redacted(
    git_http: GitHttp, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"IMAGEBOT_GIT_USERNAME": GIT_USER, "IMAGEBOT_GIT_TOKEN": "wrong-token-zzz"}
    code, out, err = run_cli(
        [
            "update",
            "--repo",
            git_http.url(repo),
            "--cache-dir",
            str(tmp_path / "c"),
            "--policy",
            "apps:app=ghcr.io/org/app:1.1.0",
        ],
        env,
        monkeypatch,
    )
    assert code == 5 and out == ""
    assert "wrong-token-zzz" not in err and "check the credentials" in err


def test_unreachable_remote_is_exit_5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_cli(
        [
            "update",
            "--repo",
            "http://127.0.0.1:9/none.git",
            "--cache-dir",
            str(tmp_path / "c"),
            "--policy",
            "apps:app=ghcr.io/org/app:1.1.0",
        ],
        {},
        monkeypatch,
    )
    assert code == 5 and "unreachable" in err


def test_push_branch_is_created_from_checkout_then_extended(git_http: GitHttp, repo: Path, tmp_path: Path) -> None:
    ws = Workspace(git_http.url(repo), "main", tmp_path / "c", HTTP_AUTH)
    d = Delivery(Mode.PUSH_BRANCH, "main", push_branch="auto/images")
    r1 = deliver(ws, d, request("1.1.0"))
    r2 = deliver(ws, d, request("1.2.0"))
    assert (r1.status, r2.status) == (Status.PUSHED, Status.PUSHED)
    assert read_file(repo, "auto/images", "apps/deploy.yaml") == DEPLOY.replace("1.0.0", "1.2.0")
    assert read_file(repo, "main", "apps/deploy.yaml") == DEPLOY
    assert len(log(repo, "auto/images")) == 3


def test_protected_branch_rejection_is_a_clear_git_error_and_workspace_is_clean(
    git_http: GitHttp, repo: Path, tmp_path: Path
) -> None:
    hook = repo / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected: open a pull request' >&2\nexit 1\n")
    hook.chmod(0o755)
    ws = Workspace(git_http.url(repo), "main", tmp_path / "c", HTTP_AUTH)
    with pytest.raises(GitError, match=r"pre-receive hook declined|protected"):
        deliver(ws, Delivery(), request("1.1.0"))
    hook.unlink()
    # the next run starts from the remote tip, not from the failed local commit
    assert deliver(ws, Delivery(), request("1.1.0")).status is Status.PUSHED
    assert len(log(repo, "main")) == 2


def test_ssh_with_deploy_key_and_strict_host_keys(sshd: Sshd, tmp_path: Path) -> None:
    repo = make_bare(sshd.root, f"s{os.urandom(3).hex()}", {"apps/deploy.yaml": DEPLOY})
    chown_for_ssh(repo)
    auth = GitAuth(ssh_key=sshd.client_key, known_hosts=sshd.known_hosts)
    ws = Workspace(sshd.url(repo), "main", tmp_path / "c", auth)
    assert deliver(ws, Delivery(), request("2.0.0")).status is Status.PUSHED
    assert read_file(repo, "main", "apps/deploy.yaml") == DEPLOY.replace("1.0.0", "2.0.0")
    unknown = tmp_path / "empty_known_hosts"
    unknown.write_text("")
    ws2 = Workspace(sshd.url(repo), "main", tmp_path / "c2", GitAuth(ssh_key=sshd.client_key, known_hosts=unknown))
    with pytest.raises(GitError, match="host key"):
        deliver(ws2, Delivery(), request("2.1.0"))


def test_signed_commits_verify(git_http: GitHttp, repo: Path, tmp_path: Path) -> None:
    key = tmp_path / "signing"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ws = Workspace(git_http.url(repo), "main", tmp_path / "c", HTTP_AUTH, Identity(signing_key=key, signing_format="ssh"))
    result = deliver(ws, Delivery(), request("1.1.0"))
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"imagebot@users.noreply.invalid {(tmp_path / 'signing.pub').read_text()}")
    verify = subprocess.run(
        [
            "git",
            "-c",
            "safe.directory=*",
            "-c",
            f"gpg.ssh.allowedSignersFile={allowed}",
            "-C",
            str(repo),
            "verify-commit",
            result.commit or "",
        ],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr
    assert "Good" in verify.stderr


def test_five_concurrent_writers_land_100_updates_exactly_once_linear(git_http: GitHttp, tmp_path: Path) -> None:
    n = 100
    doc = "".join(f'app{i}: ghcr.io/org/app{i}:0 # {{"$imagepolicy": "apps:app{i}"}}\n' for i in range(n))
    bare = make_bare(git_http.root, f"c{os.urandom(4).hex()}", {"images.yaml": doc})
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        ws = Workspace(git_http.url(bare), "main", tmp_path / f"w{w}", HTTP_AUTH)
        try:
            for i in range(w, n, 5):
                req = EditRequest(policies={f"apps:app{i}": refs.parse(f"ghcr.io/org/app{i}:1")})
                r = deliver(ws, Delivery(), req, attempts=30)
                assert r.status is Status.PUSHED
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    history = log(bare, "main")
    assert len(history) == n + 1, "every update landed exactly once"
    assert all(len(line.split("|")[0].split()) <= 2 for line in history), "linear: no merge commits"
    assert read_file(bare, "main", "images.yaml") == doc.replace(":0 #", ":1 #")


@pytest.fixture
def github(repo: Path) -> FakeGitHub:
    gh = FakeGitHub({"org/config": repo}, prefix="/api/v3")
    yield gh
    gh.stop()


def test_pull_request_opened_then_superseded_in_place(git_http: GitHttp, repo: Path, github: FakeGitHub, tmp_path: Path) -> None:
    forge = GitHubForge("org/config", TOKEN, github.base, throttle=False)
    ws = Workspace(git_http.url(repo), "main", tmp_path / "c", HTTP_AUTH)
    d = Delivery(Mode.PULL_REQUEST, "main", environment="staging", group="apps", labels=("images",), reviewers=("alice",))
    r1 = deliver(ws, d, request("1.1.0"), forge)
    assert r1.status is Status.PR_OPENED and r1.pr is not None
    assert r1.pr.title == "chore(images): app 1.0.0 → 1.1.0 (staging)"
    assert "| `ghcr.io/org/app` | 1.0.0 | 1.1.0 |" in r1.pr.body
    assert read_file(repo, "imagebot/staging/apps", "apps/deploy.yaml") == DEPLOY.replace("1.0.0", "1.1.0")
    assert read_file(repo, "main", "apps/deploy.yaml") == DEPLOY, "base branch untouched"
    pr = github.pulls[1]
    assert pr["labels"] == ["images"] and pr["reviewers"] == ["alice"]
    r2 = deliver(ws, d, request("1.2.0"), forge)
    assert r2.status is Status.PR_UPDATED and r2.pr is not None and r2.pr.number == 1
    assert len(github.pulls) == 1 and github.pulls[1]["title"] == "chore(images): app 1.0.0 → 1.2.0 (staging)"
    assert read_file(repo, "imagebot/staging/apps", "apps/deploy.yaml") == DEPLOY.replace("1.0.0", "1.2.0")
    assert len(log(repo, "imagebot/staging/apps")) == 2, "the head is rebuilt on the base: one commit, no pile-up"
    writes_before = [e for e in github.log if e[0] != "GET"]
    r3 = deliver(ws, d, request("1.2.0"), forge)
    assert r3.status is Status.PR_UNCHANGED
    assert [e for e in github.log if e[0] != "GET"] == writes_before, "nothing new: no API write"


def test_duplicate_pr_422_is_answered_by_updating_the_existing_one(
    git_http: GitHttp, repo: Path, github: FakeGitHub, tmp_path: Path
) -> None:
    forge = GitHubForge("org/config", TOKEN, github.base, throttle=False)
    ws = Workspace(git_http.url(repo), "main", tmp_path / "c", HTTP_AUTH)
    d = Delivery(Mode.PULL_REQUEST, "main", environment="dev")
    deliver(ws, d, request("1.1.0"), forge)
    pr = forge.open(d.head_branch, "main", "other title", "b", (), ())  # the API says 422: already exists
    assert pr.number == 1 and github.pulls[1]["title"] == "other title" and len(github.pulls) == 1


def test_forge_errors_are_exit_6_with_message(
    git_http: GitHttp, repo: Path, github: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    github.fail_next.append((403, "API rate limit exceeded for installation"))
    env = {
        "IMAGEBOT_GIT_USERNAME": GIT_USER,
        "IMAGEBOT_GIT_TOKEN": GIT_PASSWORD,
        "IMAGEBOT_GITHUB_TOKEN": TOKEN,
        "IMAGEBOT_GITHUB_THROTTLE": "0",
    }
    code, _, err = run_cli(
        [
            "update",
            "--repo",
            git_http.url(repo),
            "--cache-dir",
            str(tmp_path / "c"),
            "--pull-request",
            "--github-api",
            github.base,
            "--github-repo",
            "org/config",
            "--policy",
            "apps:app=ghcr.io/org/app:1.1.0",
        ],
        env,
        monkeypatch,
    )
    assert code == 6 and "rate limit" in err and TOKEN not in err
    code, out, err = run_cli(
        [
            "update",
            "--repo",
            git_http.url(repo),
            "--cache-dir",
            str(tmp_path / "c"),
            "--pull-request",
            "--github-api",
            github.base,
            "--github-repo",
            "org/config",
            "--json",
            "--policy",
            "apps:app=ghcr.io/org/app:1.1.0",
        ],
        env,
        monkeypatch,
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["status"] == "pr-opened" and doc["pull_request"]["number"] == 1, "the lost PR is opened on the next run"


def test_bad_github_token_is_forge_error(github: FakeGitHub) -> None:
    with pytest.raises(ForgeError, match="401"):
        GitHubForge("org/config", "nope", github.base, throttle=False).find_open("x", "main")


def test_gpg_signed_commits_verify(git_http: GitHttp, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "imagebot <imagebot@users.noreply.invalid>",
            "ed25519",
            "sign",
            "1d",
        ],
        check=True,
        capture_output=True,
    )
    keyid = (
        subprocess.run(["gpg", "--batch", "--list-secret-keys", "--with-colons"], capture_output=True, text=True, check=True)
        .stdout.split("fpr:::::::::")[1]
        .split(":")[0]
    )
    ws = Workspace(
        git_http.url(repo), "main", tmp_path / "c", HTTP_AUTH, Identity(signing_key=Path(keyid), signing_format="openpgp")
    )
    result = deliver(ws, Delivery(), request("1.1.0"))
    verify = subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(repo), "verify-commit", result.commit or ""], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stderr
    assert "Good signature" in verify.stderr


def test_the_token_header_goes_to_the_remote_origin_only(git_http: GitHttp, repo: Path) -> None:
    """A redirect, or any other URL git is sent to, never receives the token."""
    from tests.fixtures.net import QuietHandler, ThreadServer

    seen: list[str | None] = []

    class Elsewhere(QuietHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_body(404, b"no\n", content_type="text/plain")

    other = ThreadServer(Elsewhere)
    try:
        env = {**os.environ, **HTTP_AUTH.environment(git_http.url(repo))}
        ok = subprocess.run(["git", "ls-remote", git_http.url(repo)], env=env, capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr  # the remote's origin still authenticates
        subprocess.run(["git", "ls-remote", f"http://127.0.0.1:{other.port}/x.git"], env=env, capture_output=True)
        assert seen and not any(seen), "another origin got no Authorization header"
    finally:
        other.stop()
    assert "extraHeader" in HTTP_AUTH.environment(git_http.url(repo))["GIT_CONFIG_KEY_0"]
    assert "@" not in HTTP_AUTH.environment("https://user:pw@git.example:8443/x.git")["GIT_CONFIG_KEY_0"]


def test_a_workspace_left_by_a_crash_is_cleaned_before_the_next_delivery(git_http: GitHttp, repo: Path, tmp_path: Path) -> None:
    ws = Workspace(git_http.url(repo), "main", tmp_path / "c", HTTP_AUTH)
    assert deliver(ws, Delivery(), request("1.1.0")).status is Status.PUSHED
    # what a process killed mid-delivery leaves behind
    (ws.dir / "apps" / "deploy.yaml").write_text("half-written: [\n")
    (ws.dir / "junk.txt").write_text("untracked\n")
    (ws.dir / "README.md").write_text("staged but never committed\n")
    subprocess.run(["git", "-C", str(ws.dir), "add", "README.md"], check=True)
    (ws.dir / ".git" / "index.lock").write_text("")
    fresh = Workspace(git_http.url(repo), "main", tmp_path / "c", HTTP_AUTH)  # the restarted process
    r = deliver(fresh, Delivery(), request("1.2.0"))
    assert r.status is Status.PUSHED
    assert read_file(repo, "main", "apps/deploy.yaml") == DEPLOY.replace("1.0.0", "1.2.0")
    assert read_file(repo, "main", "README.md") == "config\n", "nothing the crash left is committed"
    tree = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "main"], capture_output=True, text=True)
    assert tree.stdout.split() == ["README.md", "apps/deploy.yaml"]
    assert not (ws.dir / ".git" / "index.lock").exists()


def test_one_user_of_a_workspace_directory_at_a_time(git_http: GitHttp, repo: Path, tmp_path: Path) -> None:
    holder = Workspace(git_http.url(repo), "main", tmp_path / "c", HTTP_AUTH)
    other = Workspace(git_http.url(repo), "main", tmp_path / "c", HTTP_AUTH)  # e.g. `imagebot update` beside `serve`
    results: list[Status] = []
    with holder.exclusive():
        t = threading.Thread(target=lambda: results.append(deliver(other, Delivery(), request("1.1.0")).status))
        t.start()
        t.join(0.5)
        assert t.is_alive() and not results, "the second user waits while the first holds the workspace"
        assert read_file(repo, "main", "apps/deploy.yaml") == DEPLOY
    t.join(30)
    assert results == [Status.PUSHED]


def test_a_prefetched_tip_that_moved_before_the_delivery_costs_one_rejected_push_and_loses_nothing(
    git_http: GitHttp, repo: Path, tmp_path: Path
) -> None:
    ws = Workspace(git_http.url(repo), "main", tmp_path / "cache", HTTP_AUTH)
    ws.prefetch()  # cloned while the registries would be scanned
    assert ws.cloned
    commit_files(repo, "main", {"README.md": "moved meanwhile\n"})
    requests_before = git_http.requests
    result = deliver(ws, Delivery(Mode.PUSH, "main", "apps", None, "prod"), request("1.1.0"))
    assert result.status is Status.PUSHED and result.attempts == 2  # the stale tip's push was rejected, then re-synced
    assert read_file(repo, "main", "README.md") == "moved meanwhile\n"
    assert read_file(repo, "main", "apps/deploy.yaml") == DEPLOY.replace("app:1.0.0", "app:1.1.0")
    assert git_http.requests > requests_before


def test_a_sync_right_after_a_clone_or_prefetch_does_not_fetch_again(git_http: GitHttp, repo: Path, tmp_path: Path) -> None:
    ws = Workspace(git_http.url(repo), "main", tmp_path / "cache", HTTP_AUTH)
    ws.prefetch()
    after_clone = git_http.requests
    ws.sync()
    assert git_http.requests == after_clone  # the clone brought this tip
    ws.sync()
    assert git_http.requests > after_clone  # a second sync fetches: its freshness is used once


def test_git_gc_never_runs_detached_beside_the_next_command(git_http: GitHttp, repo: Path, tmp_path: Path) -> None:
    # A detached auto-gc rewrote .git/shallow while the next fetch ran: "shallow file has changed since we read it".
    ws = Workspace(git_http.url(repo), "main", tmp_path / "cache", HTTP_AUTH)
    ws.sync()
    detach = subprocess.run(["git", "-C", str(ws.dir), "config", "gc.autoDetach"], capture_output=True, text=True).stdout
    assert detach.strip() == "false"
