"""Apps follow their source: a fetch (whoever made it) that yields a new revision wakes every Kustomization and App
reading that source at once — they apply the snapshot that fetch made, without fetching again — while a fetch at
the same revision wakes none and writes nothing. On the real test API server and a real git remote over HTTP."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gitopskit.kube import request_json
from gitopskit.workspace import GitAuth
from reconciler import apps as A
from reconciler.controller import FetchPending, SourceCache
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare
from tests.reconciler import test_controller_flux as base
from tests.reconciler.test_controller_flux import REPO_PATH, Flux, cm, ready, request, tag_commit, until
from tests.reconciler.test_controller_sources import cond, get_repo, head, passes

pytestmark = [pytest.mark.git]
flux = base.flux  # the fixture: a namespace's Flux objects and a controller over it


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_fetch_at_a_new_revision_tells_the_sources_other_users_to_read_its_snapshot_and_the_same_revision_tells_none(
    git_http: GitHttp, tmp_path: Path
) -> None:
    bare = make_bare(git_http.root, f"follow-{tmp_path.name}", {"a/cm.yaml": cm("a", v="1")})
    spec = A.SourceSpec(git_http.url(bare), A.RefKind.BRANCH, "main")
    auth = GitAuth(GIT_USER, GIT_PASSWORD)
    clock = Clock()
    cache = SourceCache(tmp_path / "c", clock)
    ended: list[tuple[set[Any], set[Any]]] = []
    cache.on_fetched = lambda users, moved: ended.append((users, moved))
    cache.follows = lambda who: who != "other"
    fetches = 0
    fetch = cache._fetch

    def counted(*args: Any) -> None:
        nonlocal fetches
        fetches += 1
        fetch(*args)

    cache._fetch = counted  # type: ignore[method-assign]

    def get(who: str, max_age: float) -> Any:
        n = len(ended)
        try:
            return cache.fetch(spec, auth, max_age, who, lambda: None)
        except FetchPending:
            until(lambda: len(ended) > n, 60, "the fetch")
            return cache.fetch(spec, auth, max_age, who, lambda: None)

    first = get("repo", 0.0)
    assert get("app", 60.0) == first and get("other", 60.0) == first and fetches == 1

    new = tag_commit(bare, {"a/cm.yaml": cm("a", v="2")})
    clock.now += 3600  # the app's and the other's snapshots are an hour old
    assert get("repo", 1.0).sha == new and fetches == 2
    users, moved = ended[-1]
    assert users == {"repo", "app", "other"} and moved == {"app"}, "the app it moved and follows, not the waiter"
    clock.now += 3600  # the app is slow to come: it still reads that fetch's snapshot, no fetch of its own
    got = get("app", 1.0)
    assert (got.sha, fetches) == (new, 2)
    cache.release("app")

    clock.now += 10
    assert get("repo", 1.0).sha == new and fetches == 3
    assert ended[-1][1] == set(), "the same revision again moves nobody"
    clock.now += 10
    with pytest.raises(FetchPending):  # told once: the app's next pass, an interval later, fetches as before
        cache.fetch(spec, auth, 1.0, "app", lambda: None)
    until(lambda: fetches == 4 and len(ended) == 4, 60, "the app's own fetch")
    assert ended[-1][1] == set()
    cache.close()


@pytest.mark.cluster
def test_an_app_with_a_long_interval_applies_its_sources_new_commit_at_once_and_a_fetch_at_the_same_revision_writes_nothing(
    flux: Flux, git_http: GitHttp
) -> None:
    bare = make_bare(git_http.root, f"follow-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="1")})
    flux.repo("repo", bare, ref={"branch": "main"}, interval="1s")
    flux.ks("a", "./apps/a", interval="1h", retryInterval="1h")
    flux.ctl.start()
    assert flux.ready_ks("a")["status"]["lastAppliedRevision"] == f"main@sha1:{head(bare)}"
    assert (flux.cm("a") or {}).get("data") == {"v": "1"}

    def reconciles() -> float:
        return sum(s.value for m in flux.ctl.metrics.reconciles.collect() for s in m.samples
                   if s.name.endswith("_total") and s.labels["name"] == "a")  # fmt: skip

    # the GitRepository is fetched every second at the same revision: no app is woken, nothing is written
    until(lambda: passes(flux, "repo") >= 1, what="a repository pass")
    time.sleep(1.1)  # (a status written now would carry another timestamp)
    rv, done, seen = flux.get_ks("a")["metadata"]["resourceVersion"], reconciles(), passes(flux, "repo")
    repo_rv = get_repo(flux, "repo")["metadata"]["resourceVersion"]
    until(lambda: passes(flux, "repo") >= seen + 3, what="three more fetches of the repository")
    assert reconciles() == done, "a fetch at the same revision enqueued the app"
    assert flux.get_ks("a")["metadata"]["resourceVersion"] == rv
    assert get_repo(flux, "repo")["metadata"]["resourceVersion"] == repo_rv

    # a new commit: applied within a few of the repository's intervals, not the app's hour, with no request
    new = tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="2")})
    obj = until(lambda: (o := flux.get_ks("a"))["status"].get("lastAppliedRevision") == f"main@sha1:{new}" and o,
                what="the new revision applied")  # fmt: skip
    assert (flux.cm("a") or {}).get("data") == {"v": "2"}
    assert ready(obj)["status"] == "True" and ready(obj)["message"] == f"Applied revision: main@sha1:{new}"
    assert obj["status"]["lastAttemptedRevision"] == f"main@sha1:{new}"
    assert "lastHandledReconcileAt" not in obj["status"], "no request was made"


def patch_repo(flux: Flux, body: dict[str, Any]) -> None:
    request_json(flux.api, "PATCH", f"{REPO_PATH}/namespaces/{flux.ns}/gitrepositories/repo", body=body,
                 content_type="application/merge-patch+json")  # fmt: skip


@pytest.mark.cluster
def test_a_suspended_gitrepository_is_not_fetched_its_status_stays_its_apps_keep_their_snapshot_and_resuming_fetches_at_once(
    flux: Flux, git_http: GitHttp
) -> None:
    bare = make_bare(git_http.root, f"suspend-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="1")})
    flux.repo("repo", bare, ref={"branch": "main"}, interval="1h")
    flux.ks("a", "./apps/a", interval="1h")
    flux.ctl.start()
    v1 = f"main@sha1:{head(bare)}"
    assert flux.ready_ks("a")["status"]["lastAppliedRevision"] == v1
    until(lambda: cond(get_repo(flux, "repo"), "Ready").get("status") == "True", what="repo Ready")

    patch_repo(flux, {"spec": {"suspend": True}})
    until(lambda: suspended(flux) >= 1, what="the suspension seen")
    repo = get_repo(flux, "repo")
    new = tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="2")})
    fetched = git_http.requests
    request(flux, "a", "while-suspended")  # the app's own request: handled from the snapshot it has, no fetch
    obj = until(lambda: (o := flux.get_ks("a"))["status"].get("lastHandledReconcileAt") == "while-suspended" and o,
                what="the request handled")  # fmt: skip
    assert obj["status"]["lastAppliedRevision"] == v1 and (flux.cm("a") or {}).get("data") == {"v": "1"}
    assert ready(obj)["status"] == "True" and "not supported" not in ready(obj)["message"], ready(obj)
    assert git_http.requests == fetched, "a suspended GitRepository was fetched"
    after = get_repo(flux, "repo")
    assert after["metadata"]["resourceVersion"] == repo["metadata"]["resourceVersion"], "its status is left as it is"
    assert cond(after, "Ready")["status"] == "True" and after["status"]["artifact"]["revision"] == v1

    patch_repo(flux, {"spec": {"suspend": False}})  # resumed: fetched now (not in an hour), its apps follow
    obj = until(lambda: (o := flux.get_ks("a"))["status"].get("lastAppliedRevision") == f"main@sha1:{new}" and o,
                what="the new revision applied")  # fmt: skip
    assert (flux.cm("a") or {}).get("data") == {"v": "2"}
    until(lambda: get_repo(flux, "repo")["status"]["artifact"]["revision"] == f"main@sha1:{new}", what="repo at the new one")


def suspended(flux: Flux) -> float:
    return sum(s.value for m in flux.ctl.metrics.sources.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels["name"] == "repo" and s.labels["result"] == "suspended")  # fmt: skip


def test_the_apps_naming_a_gitrepository_or_an_app_are_found_by_index_not_by_a_scan_of_every_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gitopskit.informer import EventType
    from reconciler.controller import REPO_KIND, AppController, AppKey

    ctl = AppController(object(), ("ns",), cache=tmp_path / "c")
    for inf in (*ctl.kustomizations, *ctl.apps, *ctl.applications):  # a scan per event is what this forbids
        monkeypatch.setattr(inf, "objects", lambda: pytest.fail("scanned every app"))
    ks, app = ctl._on_app(A.Dialect.FLUX), ctl._on_app(A.Dialect.NATIVE)

    def obj(name: str, ns: str = "ns", **spec: Any) -> dict[str, Any]:
        return {"metadata": {"name": name, "namespace": ns, "generation": 1}, "spec": spec}

    ks(EventType.ADDED, obj("a", sourceRef={"kind": "GitRepository", "name": "repo"}), None)
    ks(EventType.ADDED, obj("b", sourceRef={"name": "repo", "namespace": "other"}, dependsOn=[{"name": "a"}]), None)
    app(EventType.ADDED, obj("c", sourceRef={"name": "repo"}, dependsOn=[{"name": "a", "namespace": "ns"}]), None)
    drained: list[AppKey] = []

    def woken() -> set[str]:
        while len(ctl.queue):
            k = ctl.queue.get(timeout=1)
            assert k is not None
            drained.append(k)
            ctl.queue.done(k)
        out = {f"{k.kind}/{k.name}" for k in drained if k.kind != REPO_KIND}
        drained.clear()
        return out

    woken()
    repo = {"metadata": {"name": "repo", "namespace": "ns", "generation": 2}, "spec": {}}
    ctl._on_repo(EventType.MODIFIED, repo, {**repo, "metadata": {**repo["metadata"], "generation": 1}})
    assert woken() == {"Kustomization/a", "App/c"}
    ctl._enqueue_dependents(AppKey("Kustomization", "ns", "a"))
    assert woken() == {"Kustomization/b", "App/c"}

    ks(EventType.MODIFIED, obj("a", sourceRef={"name": "elsewhere"}), None)  # moved to another GitRepository
    app(EventType.DELETED, obj("c"), None)
    assert woken() == {"Kustomization/a"}  # (its own change)
    ctl._on_repo(EventType.DELETED, repo, None)
    assert woken() == set()
    ctl._on_repo(EventType.ADDED, {**repo, "metadata": {**repo["metadata"], "name": "elsewhere"}}, None)
    assert woken() == {"Kustomization/a"}
    ctl._enqueue_dependents(AppKey("Kustomization", "ns", "a"))
    assert woken() == {"Kustomization/b"}
    ctl.sources.close()


def test_an_app_on_a_gitrepository_seen_suspended_keeps_its_revision_when_a_twin_on_the_same_source_moves_it(
    git_http: GitHttp, tmp_path: Path
) -> None:
    """Two GitRepositories on one URL and ref share one fetch. One is suspended; before its app's first pass under
    the suspension, the twin's fetch finds a new commit: that app was told to follow (its own spec is not suspended)
    and its pass, finding no snapshot pinned yet, read the twin's new one. Seen suspended, its apps are pinned at
    once to what they read."""
    from gitopskit.informer import EventType
    from reconciler.controller import AppController, AppKey

    bare = make_bare(git_http.root, f"twin-{tmp_path.name}", {"a/cm.yaml": cm("a", v="1")})
    ctl = AppController(object(), ("ns",), cache=tmp_path / "c")
    ctl.mine = lambda key: True  # type: ignore[method-assign]
    app = {"metadata": {"name": "a", "namespace": "ns", "generation": 1}, "spec": {"sourceRef": {"name": "repo"}}}
    ctl._on_app(A.Dialect.FLUX)(EventType.ADDED, app, None)
    a, twin = AppKey("Kustomization", "ns", "a"), AppKey("GitRepository", "ns", "twin")
    spec = A.SourceSpec(git_http.url(bare), A.RefKind.BRANCH, "main")
    auth = GitAuth(GIT_USER, GIT_PASSWORD)
    done: list[int] = []
    ctl.sources.on_fetched = lambda users, moved: done.append(1)

    def get(who: Any, source: A.SourceSpec, max_age: float) -> Any:
        n = len(done)
        try:
            return ctl.sources.fetch(source, auth, max_age, who, lambda: None)
        except FetchPending:
            until(lambda: len(done) > n, 60, "the fetch")
            return ctl.sources.fetch(source, auth, max_age, who, lambda: None)

    first = get(a, spec, 0.0)
    ctl.sources.release(a)
    repo = {"metadata": {"name": "repo", "namespace": "ns", "generation": 2}, "spec": {"suspend": True}}
    ctl._on_repo(EventType.MODIFIED, repo, {**repo, "metadata": {**repo["metadata"], "generation": 1}, "spec": {}})
    new = tag_commit(bare, {"a/cm.yaml": cm("a", v="2")})
    assert get(twin, spec, 0.0).sha == new
    got = get(a, replace(spec, suspend=True), 60.0)
    assert got.sha == first.sha and got.root.is_dir(), "an app on a suspended GitRepository was moved by its twin"
    ctl.sources.release(a)
    assert get(a, spec, 60.0).sha == new, "resumed, it reads the twin's fetch"
    ctl.sources.close()
