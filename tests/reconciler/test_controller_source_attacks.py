"""A user and a hostile Git remote against the controller's GitRepositories: bursts of commits, history rewritten,
a branch deleted and re-created, repositories moved or suspended, two GitRepositories on one source, remotes that
redirect — on the real test API server and a real git remote over HTTP."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gitopskit.kube import request_json
from reconciler.controller import AppKey
from reconciler.controller_cli import KS_PATH
from tests.fixtures.git import GitHttp, git, make_bare
from tests.reconciler import test_controller_flux as base
from tests.reconciler.test_controller_flux import REPO_PATH, Flux, cm, ready, request, tag_commit, until
from tests.reconciler.test_controller_sources import cond, get_repo, head, passes

pytestmark = [pytest.mark.cluster, pytest.mark.git]
flux = base.flux  # the fixture: a namespace's Flux objects and a controller over it


def patch(flux: Flux, path: str, body: dict[str, Any]) -> None:
    request_json(flux.api, "PATCH", path, body=body, content_type="application/merge-patch+json")


def patch_repo(flux: Flux, name: str, body: dict[str, Any]) -> None:
    patch(flux, f"{REPO_PATH}/namespaces/{flux.ns}/gitrepositories/{name}", body)


def patch_ks(flux: Flux, name: str, body: dict[str, Any]) -> None:
    patch(flux, f"{KS_PATH}/namespaces/{flux.ns}/kustomizations/{name}", body)


def gitrepository(flux: Flux, name: str, url: str, interval: str = "1s", **spec: Any) -> None:
    """A GitRepository on ``url``'s main with the Secret ``basic`` (flux.repo made it)."""
    spec = {"url": url, "interval": interval, "secretRef": {"name": "basic"}, "ref": {"branch": "main"}, **spec}
    body = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": name}, "spec": spec}
    request_json(flux.api, "POST", f"{REPO_PATH}/namespaces/{flux.ns}/gitrepositories", body=body)


def applied(flux: Flux, name: str, sha: str, timeout: float = 60.0) -> dict[str, Any]:
    return until(lambda: (o := flux.get_ks(name)).get("status", {}).get("lastAppliedRevision") == f"main@sha1:{sha}" and o,
                 timeout, f"{name} at {sha[:8]}")  # fmt: skip


def applies(flux: Flux, name: str) -> float:
    """The app's reconciles that applied (result ok)."""
    return sum(s.value for m in flux.ctl.metrics.reconciles.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels["name"] == name and s.labels["result"] == "ok")  # fmt: skip


def clone(bare: Path) -> Path:
    work = bare.parent / f"{bare.stem}-work"
    git("clone", "-q", "-b", "main", str(bare), str(work))
    return work


def commit(work: Path, files: dict[str, str], delete: tuple[str, ...] = (), push: str = "") -> str:
    for rel, text in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    for rel in delete:
        (work / rel).unlink()
    git("-C", str(work), "add", "-A")
    git("-C", str(work), "commit", "-q", "-m", "attack")
    if push:
        git("-C", str(work), "push", "-q", *(["-f"] if push == "force" else []), "origin", "HEAD:refs/heads/main")
    return git("-C", str(work), "rev-parse", "HEAD").strip()


def test_a_burst_of_commits_ends_at_the_last_one_without_a_queue_storm(flux: Flux, git_http: GitHttp) -> None:
    bare = make_bare(git_http.root, f"burst-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="0")})
    flux.repo("repo", bare, ref={"branch": "main"}, interval="1s")
    flux.ks("a", "./apps/a", interval="1h", retryInterval="1h")
    flux.ctl.start()
    applied(flux, "a", head(bare))
    before = applies(flux, "a")
    work = clone(bare)
    for i in range(1, 31):
        last = commit(work, {"apps/a/cm.yaml": cm("a", v=str(i))}, push="yes")
    applied(flux, "a", last)
    assert (flux.cm("a") or {}).get("data") == {"v": "30"}
    until(lambda: get_repo(flux, "repo")["status"]["artifact"]["revision"] == f"main@sha1:{last}", what="repo at the last")
    n = applies(flux, "a") - before
    assert 1 <= n < 15, f"{n} applies for a burst of 30 commits"
    # settled: more fetches at the same revision write nothing
    time.sleep(1.1)
    rv, seen = flux.get_ks("a")["metadata"]["resourceVersion"], passes(flux, "repo")
    repo_rv = get_repo(flux, "repo")["metadata"]["resourceVersion"]
    until(lambda: passes(flux, "repo") >= seen + 2, what="two more passes")
    assert flux.get_ks("a")["metadata"]["resourceVersion"] == rv
    assert get_repo(flux, "repo")["metadata"]["resourceVersion"] == repo_rv
    assert applies(flux, "a") - before == n


def test_history_rewritten_is_followed_and_the_prune_rails_still_hold(flux: Flux, git_http: GitHttp) -> None:
    bare = make_bare(git_http.root, f"rewrite-{flux.ns}", {f"apps/a/{c}.yaml": cm(c, v="1") for c in "abcd"})
    first = head(bare)
    flux.repo("repo", bare, ref={"branch": "main"}, interval="1s")
    flux.ks("a", "./apps/a", interval="1h", retryInterval="1h")
    flux.ctl.start()
    applied(flux, "a", first)
    work = clone(bare)
    # a commit that deletes three of four objects: more than half the inventory — the rail holds, nothing is deleted
    gutted = commit(work, {}, delete=("apps/a/b.yaml", "apps/a/c.yaml", "apps/a/d.yaml"), push="yes")
    refused = until(lambda: (r := ready(flux.get_ks("a"))).get("status") == "False" and r, what="the gutting commit refused")
    assert "prune refused: pruning 3 of 4 objects exceeds 50%" in refused["message"], refused
    st = flux.get_ks("a")["status"]  # as Flux: the revision that failed is the one attempted, the applied one stays
    assert (st["lastAttemptedRevision"], st["lastAppliedRevision"]) == (f"main@sha1:{gutted}", f"main@sha1:{first}"), st
    assert all(flux.cm(c) is not None for c in "abcd"), "the 50 % rail did not hold on a followed revision"
    # the refusal is retried with a growing backoff, not every time the app fetches for itself (each fetch's
    # FetchPending ended that pass cleanly, which reset the backoff: retried about every second, forever)
    key = AppKey("Kustomization", flux.ns, "a")
    until(lambda: flux.ctl.queue.failures(key) >= 3, 60, "the backoff growing")
    # force-pushed back to the first commit: followed, everything there
    git("-C", str(work), "push", "-q", "-f", "origin", f"{first}:refs/heads/main")
    obj = until(lambda: (o := flux.get_ks("a"))["status"].get("lastAttemptedRevision") == f"main@sha1:{first}" and o,
                what="the force-push followed")  # fmt: skip
    until(lambda: ready(flux.get_ks("a")).get("status") == "True", what="Ready again")
    assert all(flux.cm(c) is not None for c in "abcd")
    # a rewrite dropping one object of four: pruned
    git("-C", str(work), "reset", "-q", "--hard", first)
    dropped = commit(work, {}, delete=("apps/a/d.yaml",), push="force")
    applied(flux, "a", dropped)
    until(lambda: flux.cm("d") is None, what="d pruned")
    assert all(flux.cm(c) is not None for c in "abc")
    assert obj


def test_a_branch_deleted_fails_the_fetch_keeps_every_object_and_recovers_when_it_returns(flux: Flux, git_http: GitHttp) -> None:
    bare = make_bare(git_http.root, f"gone-{flux.ns}", {f"apps/a/{c}.yaml": cm(c, v="1") for c in "ab"})
    first = head(bare)
    flux.repo("repo", bare, ref={"branch": "main"}, interval="1s")
    flux.ks("a", "./apps/a", interval="1h", retryInterval="2s")
    flux.ctl.start()
    applied(flux, "a", first)
    git("--git-dir", str(bare), "update-ref", "-d", "refs/heads/main")
    obj = until(lambda: (o := get_repo(flux, "repo")) and cond(o, "Ready").get("status") == "False" and o, what="repo failed")
    r = cond(obj, "Ready")
    assert r["reason"] == "GitOperationFailed" and "main" in r["message"], r
    assert cond(obj, "FetchFailed")["status"] == "True"
    assert obj["status"]["artifact"]["revision"] == f"main@sha1:{first}", "the last artifact stays"
    request(flux, "a", "while-gone")  # the app fetches itself: fails, applies nothing, prunes nothing
    ks = until(lambda: (o := flux.get_ks("a")) and ready(o).get("status") == "False" and o, what="a failed")
    assert ready(ks)["reason"] == "ArtifactFailed", ready(ks)
    assert ks["status"]["lastAppliedRevision"] == f"main@sha1:{first}"
    time.sleep(1)
    assert flux.cm("a") is not None and flux.cm("b") is not None, "objects pruned because the source vanished"
    # re-created with one object less: followed (and pruned as Git says now)
    work = bare.parent / f"{bare.stem}-again"
    git("init", "-q", "-b", "main", str(work))
    (work / "apps/a").mkdir(parents=True)
    (work / "apps/a/a.yaml").write_text(cm("a", v="2"))
    (work / "apps/a/b.yaml").write_text(cm("b", v="2"))
    git("-C", str(work), "add", "-A")
    git("-C", str(work), "commit", "-q", "-m", "again")
    git("-C", str(work), "push", "-q", str(bare), "HEAD:refs/heads/main")
    again = git("-C", str(work), "rev-parse", "HEAD").strip()
    applied(flux, "a", again)
    assert (flux.cm("b") or {}).get("data") == {"v": "2"}
    obj = until(lambda: (o := get_repo(flux, "repo")) and cond(o, "Ready").get("status") == "True" and o, what="repo recovered")
    assert not cond(obj, "FetchFailed") and obj["status"]["artifact"]["revision"] == f"main@sha1:{again}"


def test_an_app_on_a_suspended_gitrepository_is_not_moved_by_another_on_the_same_source(flux: Flux, git_http: GitHttp) -> None:
    bare = make_bare(git_http.root, f"twin-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="1"), "apps/b/cm.yaml": cm("b", v="1")})
    first = head(bare)
    flux.repo("repo", bare, ref={"branch": "main"}, interval="1h")

    gitrepository(flux, "twin", git_http.url(bare))
    flux.ks("a", "./apps/a", interval="1h", retryInterval="1h")
    flux.ks("b", "./apps/b", source="twin", interval="1h", retryInterval="1h")
    flux.ctl.start()
    applied(flux, "a", first)
    applied(flux, "b", first)
    # suspended, then a commit at once: the twin's next fetch (a second away) may come before a's pass
    patch_repo(flux, "repo", {"spec": {"suspend": True}})
    new = tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="2"), "apps/b/cm.yaml": cm("b", v="2")})
    applied(flux, "b", new)
    until(lambda: get_repo(flux, "twin")["status"]["artifact"]["revision"] == f"main@sha1:{new}", what="twin at new")
    time.sleep(1.5)
    assert flux.get_ks("a")["status"]["lastAppliedRevision"] == f"main@sha1:{first}"
    assert (flux.cm("a") or {}).get("data") == {"v": "1"}, "an app on a suspended GitRepository moved"
    request(flux, "a", "r1")
    until(lambda: flux.get_ks("a")["status"].get("lastHandledReconcileAt") == "r1", what="request handled")
    assert (flux.cm("a") or {}).get("data") == {"v": "1"}, "an app on a suspended GitRepository moved on request"
    assert get_repo(flux, "repo")["status"]["artifact"]["revision"] == f"main@sha1:{first}"
    patch_repo(flux, "repo", {"spec": {"suspend": False}})
    applied(flux, "a", new)


def test_a_gitrepository_moved_to_another_url_and_an_app_moved_to_another_gitrepository_follow_the_new_source_only(
    flux: Flux, git_http: GitHttp
) -> None:
    one = make_bare(git_http.root, f"one-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="one"), "apps/b/cm.yaml": cm("b", v="one")})
    two = make_bare(git_http.root, f"two-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="two"), "apps/b/cm.yaml": cm("b", v="two")})
    flux.repo("repo", one, ref={"branch": "main"}, interval="1s")
    gitrepository(flux, "other", git_http.url(one), ignore="nothing-ignored/")  # its own source: other ignore rules
    flux.ks("a", "./apps/a", interval="1h", retryInterval="1h")
    flux.ks("b", "./apps/b", interval="1h", retryInterval="1h")
    flux.ctl.start()
    applied(flux, "a", head(one))
    applied(flux, "b", head(one))
    patch_repo(flux, "repo", {"spec": {"url": git_http.url(two)}})  # the GitRepository moved: both apps re-point
    applied(flux, "a", head(two))
    applied(flux, "b", head(two))
    until(lambda: get_repo(flux, "repo")["status"]["artifact"]["revision"] == f"main@sha1:{head(two)}", what="repo moved")
    patch_ks(flux, "b", {"spec": {"sourceRef": {"name": "other"}}})  # b moved to the other GitRepository (on one)
    applied(flux, "b", head(one))
    assert (flux.cm("b") or {}).get("data") == {"v": "one"}
    done_a = applies(flux, "a")
    newer_one = tag_commit(one, {"apps/a/cm.yaml": cm("a", v="one-2"), "apps/b/cm.yaml": cm("b", v="one-2")})
    applied(flux, "b", newer_one)  # b follows the other GitRepository
    until(lambda: get_repo(flux, "other")["status"]["artifact"]["revision"] == f"main@sha1:{newer_one}", what="other")
    assert applies(flux, "a") == done_a, "a commit on the old URL woke an app"
    assert (flux.cm("a") or {}).get("data") == {"v": "two"}
    newer_two = tag_commit(two, {"apps/a/cm.yaml": cm("a", v="two-2"), "apps/b/cm.yaml": cm("b", v="two-2")})
    applied(flux, "a", newer_two)
    time.sleep(1)
    assert (flux.cm("b") or {}).get("data") == {"v": "one-2"}, "b was moved by its old GitRepository"


def test_suspend_flipped_rapidly_settles_on_the_last_word_and_resuming_fetches_anew(flux: Flux, git_http: GitHttp) -> None:
    """Flips while fetches are in flight: a fetch the GitRepository started before its suspension ended during it
    and its answer waited for the GitRepository — resumed, it took that answer for its fresh fetch and stayed at the
    old revision (its apps with it) until its interval."""
    bare = make_bare(git_http.root, f"flip-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="1")})
    flux.repo("repo", bare, ref={"branch": "main"}, interval="1h")
    flux.ks("a", "./apps/a", interval="1h", retryInterval="1h")
    flux.ctl.start()
    applied(flux, "a", head(bare))
    new = tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="2")})
    for i in range(10):
        patch_repo(flux, "repo", {"spec": {"suspend": i % 2 == 0}})
    patch_repo(flux, "repo", {"spec": {"suspend": True}})  # the last word: suspended
    time.sleep(2)
    fetched = git_http.requests
    newest = tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="3")})
    request(flux, "a", "r1")
    until(lambda: flux.get_ks("a")["status"].get("lastHandledReconcileAt") == "r1", what="r1 handled")
    assert git_http.requests == fetched, "a suspended GitRepository was fetched"
    assert (flux.cm("a") or {}).get("data") in ({"v": "1"}, {"v": "2"})
    patch_repo(flux, "repo", {"spec": {"suspend": False}})
    applied(flux, "a", newest)  # resumed: fetched now — not answered with a fetch from before the suspension
    until(lambda: get_repo(flux, "repo")["status"]["artifact"]["revision"] == f"main@sha1:{newest}", what="repo at newest")
    assert new


def test_a_gitrepository_deleted_while_apps_use_it_prunes_nothing_and_its_return_is_followed(
    flux: Flux, git_http: GitHttp
) -> None:
    bare = make_bare(git_http.root, f"del-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="1")})
    flux.repo("repo", bare, ref={"branch": "main"}, interval="1s")
    flux.ks("a", "./apps/a", interval="1h", retryInterval="1h")
    flux.ctl.start()
    applied(flux, "a", head(bare))
    request_json(flux.api, "DELETE", f"{REPO_PATH}/namespaces/{flux.ns}/gitrepositories/repo")
    r = until(lambda: (x := ready(flux.get_ks("a"))).get("status") == "False" and x, what="a without its source")
    assert r["reason"] == "ArtifactFailed" and "not found" in r["message"], r
    assert not cond(flux.get_ks("a"), "Stalled")
    assert (flux.cm("a") or {}).get("data") == {"v": "1"}, "the app's objects went with its GitRepository"
    new = tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="2")})
    gitrepository(flux, "repo", git_http.url(bare))
    applied(flux, "a", new)
    assert (flux.cm("a") or {}).get("data") == {"v": "2"}


class Redirector:
    """Answers every request with a 301 to the same path on another server."""

    def __init__(self, target: str) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(301)
                self.send_header("Location", target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_remotes_that_redirect_or_hang_fail_their_gitrepository_with_a_reason_and_leave_the_others_alone(
    flux: Flux, git_http: GitHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.reconciler.test_controller_hostile import SilentServer

    monkeypatch.setenv("GITOPSKIT_GIT_TIMEOUT", "4")  # the overall deadline of each git command, short for the test
    bare = make_bare(git_http.root, f"good-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="1")})
    silent, redirect = SilentServer(), Redirector(f"http://127.0.0.1:{git_http.server.port}")
    try:
        flux.repo("repo", bare, ref={"branch": "main"}, interval="1m")
        for name, url in (("hung", f"http://127.0.0.1:{silent.port}/x.git"),
                          ("moved", f"http://127.0.0.1:{redirect.port}/{bare.name}")):  # fmt: skip
            gitrepository(flux, name, url, interval="1m")
        flux.ks("a", "./apps/a")
        flux.ks("h", "./apps/a", source="hung")
        flux.ctl.start()
        applied(flux, "a", head(bare))

        def failed(name: str) -> dict[str, Any]:
            obj = until(lambda: (o := get_repo(flux, name)) and cond(o, "Ready").get("status") == "False" and o, 90, name)
            assert cond(obj, "FetchFailed")["status"] == "True"
            return cond(obj, "Ready")

        moved = failed("moved")
        assert moved["reason"] == "GitOperationFailed" and "redirected" in moved["message"], moved
        hung = failed("hung")
        assert hung["reason"] == "GitOperationFailed" and "timed out" in hung["message"], hung
        h = until(lambda: (r := ready(flux.get_ks("h"))).get("status") == "False" and r, 60, "h failed")
        assert h["reason"] == "ArtifactFailed", h
        assert cond(get_repo(flux, "repo"), "Ready")["status"] == "True"
    finally:
        silent.stop()
        redirect.stop()
