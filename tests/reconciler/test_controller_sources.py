"""GitRepositories as the controller sees them, on the real test API server and real git remotes: their status as
Flux's source-controller writes it (Ready at ``main@sha1:<sha>``, or the fetch's failure by kind), written only when
something changed and only by the controller of their shard; a Kustomization created before its GitRepository
waits for it (ArtifactFailed, retried — never Stalled) and becomes Ready without a nudge."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gitopskit.informer import ApiTransport, EventType, Informer
from gitopskit.kube import request_json
from reconciler.controller_cli import KS_PATH
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, git, make_bare
from tests.reconciler import test_controller_flux as base
from tests.reconciler.test_controller_flux import REPO_PATH, Flux, cm, create, ready, tag_commit, until

pytestmark = [pytest.mark.cluster, pytest.mark.git]
flux = base.flux  # the fixture: a namespace's Flux objects and a controller over it


class Seen:
    """Every version of the namespace's Kustomizations' conditions, as a watch of our own delivers them."""

    def __init__(self, flux: Flux) -> None:
        self.conditions: list[tuple[str, list[dict[str, Any]]]] = []
        self._stop = threading.Event()
        self.inf = Informer(ApiTransport(flux.api), f"{KS_PATH}/namespaces/{flux.ns}/kustomizations")
        self.inf.add_handler(self._on)
        self.inf.start(self._stop)
        assert self.inf.wait_synced(30)

    def _on(self, etype: EventType, obj: dict[str, Any], prev: dict[str, Any] | None) -> None:
        self.conditions.append((obj["metadata"]["name"], list((obj.get("status") or {}).get("conditions") or [])))

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def seen(flux: Flux) -> Iterator[Seen]:
    s = Seen(flux)
    yield s
    s.stop()


def test_a_kustomization_created_before_its_gitrepository_waits_for_it_and_is_never_stalled(
    flux: Flux, git_http: GitHttp, seen: Seen
) -> None:
    bare = make_bare(git_http.root, f"late-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="1")})
    flux.ks("a", "./apps/a")
    flux.ctl.start()
    waiting = until(lambda: ready(flux.get_ks("a")), what="a judged without its GitRepository")
    assert (waiting["status"], waiting["reason"]) == ("False", "ArtifactFailed")
    assert waiting["message"] == f"GitRepository {flux.ns}/repo not found"
    flux.repo("repo", bare, ref={"branch": "main"})
    st = flux.ready_ks("a")["status"]  # no request, no spec change: the GitRepository's creation wakes it
    assert st["lastAppliedRevision"].startswith("main@sha1:")
    assert (flux.cm("a") or {}).get("data") == {"v": "1"}
    conds = [c for name, cs in seen.conditions if name == "a" for c in cs]
    assert conds, "the watch saw the statuses"
    assert not [c for c in conds if c["type"] == "Stalled" or c.get("reason") == "InvalidSpec"], conds


def get_repo(flux: Flux, name: str) -> dict[str, Any]:
    return request_json(flux.api, "GET", f"{REPO_PATH}/namespaces/{flux.ns}/gitrepositories/{name}")


def cond(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), {})


def passes(flux: Flux, name: str) -> float:
    """The GitRepository status passes that ran to the end (any result)."""
    return sum(s.value for m in flux.ctl.metrics.sources.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels["name"] == name)  # fmt: skip


def head(bare: Any) -> str:
    return git("--git-dir", str(bare), "rev-parse", "refs/heads/main").strip()


def test_a_gitrepository_is_ready_at_its_revision_as_flux_writes_it_and_a_pass_with_nothing_new_writes_nothing(
    flux: Flux, git_http: GitHttp
) -> None:
    bare = make_bare(git_http.root, f"st-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="1")})
    flux.repo("repo", bare, ref={"branch": "main"})
    flux.ks("a", "./apps/a")
    flux.ctl.start()
    sha = head(bare)
    obj = until(lambda: (o := get_repo(flux, "repo")) and cond(o, "Ready").get("status") == "True" and o, what="repo Ready")
    want = f"stored artifact for revision 'main@sha1:{sha}'"
    assert (cond(obj, "Ready")["reason"], cond(obj, "Ready")["message"]) == ("Succeeded", want)
    assert (cond(obj, "ArtifactInStorage")["status"], cond(obj, "ArtifactInStorage")["message"]) == ("True", want)
    st = obj["status"]
    assert st["artifact"]["revision"] == f"main@sha1:{sha}" and st["artifact"]["lastUpdateTime"]
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    assert not cond(obj, "FetchFailed")
    assert flux.ready_ks("a")["status"]["lastAppliedRevision"] == f"main@sha1:{sha}"  # the same fetch, one revision

    # a pass with nothing new writes nothing (a second later: a timestamp it wrote would differ)
    until(lambda: passes(flux, "repo") >= 1, what="a finished pass")
    before, done = get_repo(flux, "repo")["metadata"]["resourceVersion"], passes(flux, "repo")
    time.sleep(1.1)
    flux.ctl.refresh()  # every source fetched again, every app and repository looked at
    until(lambda: passes(flux, "repo") > done, what="another pass")
    assert get_repo(flux, "repo")["metadata"]["resourceVersion"] == before

    # a new commit and `flux reconcile source git repo`'s request: the new revision, the request handled
    new = tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="2")})
    request_json(flux.api, "PATCH", f"{REPO_PATH}/namespaces/{flux.ns}/gitrepositories/repo",
                 body={"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "r1"}}},
                 content_type="application/merge-patch+json")  # fmt: skip
    obj = until(lambda: (o := get_repo(flux, "repo")) and (o.get("status") or {}).get("lastHandledReconcileAt") == "r1" and o,
                what="the request handled")  # fmt: skip
    assert obj["status"]["artifact"]["revision"] == f"main@sha1:{new}"
    assert cond(obj, "Ready")["message"] == f"stored artifact for revision 'main@sha1:{new}'"


def test_a_gitrepository_that_cannot_be_fetched_says_why_and_recovers_when_fixed(flux: Flux, git_http: GitHttp) -> None:
    bare = make_bare(git_http.root, f"bad-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="1")})
    flux.secret("basic", username=GIT_USER, password=GIT_PASSWORD)
    flux.secret("wrong", username=GIT_USER, password="not-the-password")

    def repo(name: str, url: str, secret: str | None = "basic", labels: dict[str, str] | None = None, **ref: str) -> None:
        spec: dict[str, Any] = {"url": url, "interval": "10m", "ref": ref or {"branch": "main"}}
        if secret:
            spec["secretRef"] = {"name": secret}
        create(flux.api, f"{REPO_PATH}/namespaces/{flux.ns}/gitrepositories", {"apiVersion": "source.toolkit.fluxcd.io/v1",
               "kind": "GitRepository", "metadata": {"name": name, "labels": labels or {}}, "spec": spec})  # fmt: skip

    repo("auth", git_http.url(bare), secret="wrong")
    repo("nosecret", git_http.url(bare), secret="missing")
    repo("unreachable", "http://127.0.0.1:1/nothing.git")
    repo("noref", git_http.url(bare), branch="nope")
    repo("other-shard", git_http.url(bare), labels={"sharding.imagebot.dev/key": "shard1"})
    flux.ctl.start()

    def failed(name: str) -> dict[str, Any]:
        obj = until(lambda: (o := get_repo(flux, name)) and cond(o, "Ready").get("status") == "False" and o, what=name)
        ready_, fetch = cond(obj, "Ready"), cond(obj, "FetchFailed")
        assert fetch["status"] == "True" and (fetch["reason"], fetch["message"]) == (ready_["reason"], ready_["message"])
        assert GIT_PASSWORD not in ready_["message"] and "not-the-password" not in ready_["message"]
        return ready_

    auth = failed("auth")
    assert auth["reason"] == "AuthenticationFailed" and "check the credentials" in auth["message"], auth
    nosecret = failed("nosecret")
    assert nosecret["reason"] == "AuthenticationFailed" and f"Secret {flux.ns}/missing not found" in nosecret["message"]
    unreachable = failed("unreachable")
    assert unreachable["reason"] == "GitOperationFailed" and "unreachable" in unreachable["message"], unreachable
    noref = failed("noref")
    assert noref["reason"] == "GitOperationFailed" and "nope" in noref["message"], noref
    assert noref["message"].startswith("failed to checkout and determine revision: ")
    assert "status" not in get_repo(flux, "other-shard"), "another shard's GitRepository is that shard's to write"

    # the ref fixed: Ready, the failure gone
    request_json(flux.api, "PATCH", f"{REPO_PATH}/namespaces/{flux.ns}/gitrepositories/noref",
                 body={"spec": {"ref": {"branch": "main"}}}, content_type="application/merge-patch+json")  # fmt: skip
    obj = until(lambda: (o := get_repo(flux, "noref")) and cond(o, "Ready").get("status") == "True" and o, what="noref fixed")
    assert not cond(obj, "FetchFailed") and obj["status"]["artifact"]["revision"] == f"main@sha1:{head(bare)}"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 2
