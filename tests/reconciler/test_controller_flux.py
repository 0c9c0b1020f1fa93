"""Flux's GitRepository and Kustomization fields the controller runs, on the real test API server and real git
remotes: bearer-token Secrets, ``ref.semver``/``ref.name``, ``ignore``, ``patches``, ``force``, ``timeout``/``wait``,
deletion through the finalizer (and Argo CD's), and the source snapshots' garbage collection."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from gitopskit.kube import request_json
from gitopskit.workspace import GitAuth
from reconciler.controller import AppController
from reconciler.controller_cli import KS_PATH
from reconciler.engine import Engine
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import GIT_BEARER, GIT_PASSWORD, GIT_USER, GitHttp, git, make_bare
from tests.integration.test_crds import install
from tests.reconciler.test_controller import cm, create, ready, until

pytestmark = [pytest.mark.cluster, pytest.mark.git]

REPO_PATH = "/apis/source.toolkit.fluxcd.io/v1"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Flux:
    """One namespace's Flux objects and a controller over it."""

    def __init__(self, api: Any, ns: str, git_http: GitHttp, cache: Path) -> None:
        self.api, self.ns, self.git_http = api, ns, git_http
        self.ctl = AppController(api, (ns,), workers=2, cache=cache)

    def secret(self, name: str, **data: str) -> None:
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": {k: b64(v) for k, v in data.items()}}
        create(self.api, f"/api/v1/namespaces/{self.ns}/secrets", body)

    def repo(self, name: str, bare: Path, secret: str = "basic", **spec: Any) -> None:
        if secret == "basic":
            self.secret("basic", username=GIT_USER, password=GIT_PASSWORD)
        body = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": name},
                "spec": {"url": self.git_http.url(bare), "interval": "1m", "secretRef": {"name": secret}, **spec}}  # fmt: skip
        create(self.api, f"{REPO_PATH}/namespaces/{self.ns}/gitrepositories", body)

    def ks(self, name: str, path: str, source: str = "repo", **spec: Any) -> None:
        body = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": name},
                "spec": {"interval": "10m", "prune": True, "path": path, "targetNamespace": self.ns,
                         "sourceRef": {"kind": "GitRepository", "name": source}, **spec}}  # fmt: skip
        create(self.api, f"{KS_PATH}/namespaces/{self.ns}/kustomizations", body)

    def get_ks(self, name: str) -> dict[str, Any]:
        return request_json(self.api, "GET", f"{KS_PATH}/namespaces/{self.ns}/kustomizations/{name}")

    def ready_ks(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        return until(lambda: (o := self.get_ks(name)) and ready(o).get("status") == "True" and o, timeout, f"{name} Ready")

    def cm(self, name: str) -> dict[str, Any] | None:
        try:
            return request_json(self.api, "GET", f"/api/v1/namespaces/{self.ns}/configmaps/{name}")
        except Exception:
            return None


@pytest.fixture
def flux(cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path) -> Iterator[Flux]:
    api = cluster.api_client()
    install(api)
    f = Flux(api, namespace, git_http, tmp_path / "cache")
    yield f
    assert f.ctl.stop(30)


def test_a_bearer_token_secret_reaches_the_git_server_as_an_authorization_bearer_header(flux: Flux, git_http: GitHttp) -> None:
    bare = make_bare(git_http.root, f"bearer-{flux.ns}", {"apps/a/cm.yaml": cm("a", n="1")})
    flux.secret("token", bearerToken=GIT_BEARER)
    flux.repo("repo", bare, secret="token", ref={"branch": "main"})
    flux.ks("a", "./apps/a")
    before = git_http.schemes.get("Bearer", 0)
    flux.ctl.start()
    st = flux.ready_ks("a")["status"]
    assert st["lastAppliedRevision"].startswith("main@sha1:")
    assert (flux.cm("a") or {}).get("data") == {"n": "1"}
    assert git_http.schemes.get("Bearer", 0) > before


def test_a_bearer_token_is_scoped_to_the_urls_origin_and_never_logged() -> None:
    env = GitAuth(bearer_token="s3cret").environment("https://git.example:8443/org/repo.git")
    config = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))}
    assert config["http.https://git.example:8443/.extraHeader"] == "Authorization: Bearer s3cret"
    assert config["http.followRedirects"] == "false"
    assert "s3cret" not in repr(GitAuth(bearer_token="s3cret"))
    assert json.dumps(config).count("s3cret") == 1


def tag_commit(bare: Path, files: dict[str, str], *tags: str, branch: str = "main", annotated: bool = False) -> str:
    """A commit on ``branch`` writing ``files``, tagged with ``tags``; its SHA."""
    work = bare.parent / f"{bare.stem}-w{len(list(bare.parent.iterdir()))}"
    git("clone", "-q", "-b", branch, str(bare), str(work))
    for rel, text in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    git("-C", str(work), "add", "-A")
    git("-C", str(work), "commit", "-q", "-m", f"release {' '.join(tags)}")
    for t in tags:
        git("-C", str(work), "tag", *(["-a", "-m", t] if annotated else []), t)
    git("-C", str(work), "push", "-q", "origin", f"HEAD:refs/heads/{branch}", *(f"refs/tags/{t}" for t in tags))
    return git("-C", str(work), "rev-parse", "HEAD").strip()


def request(flux: Flux, name: str, when: str) -> None:
    request_json(flux.api, "PATCH", f"{KS_PATH}/namespaces/{flux.ns}/kustomizations/{name}",
                 body={"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": when}}},
                 content_type="application/merge-patch+json")  # fmt: skip


def test_ref_semver_applies_the_newest_tag_in_the_range_and_reports_tag_at_sha(flux: Flux, git_http: GitHttp) -> None:
    bare = make_bare(git_http.root, f"semver-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="0")})
    tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="1.0.0")}, "v1.0.0")
    v11 = tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="1.1.0")}, "v1.1.0")
    tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="2.0.0")}, "v2.0.0")
    tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="1.2.0-rc.1")}, "v1.2.0-rc.1")  # a pre-release: not for this range
    flux.repo("repo", bare, ref={"semver": ">=1.0.0 <2.0.0", "branch": "main"})  # semver wins over branch
    flux.ks("a", "./apps/a")
    flux.ctl.start()
    obj = flux.ready_ks("a")
    assert obj["status"]["lastAppliedRevision"] == f"v1.1.0@sha1:{v11}"
    assert "not supported" not in ready(obj)["message"]
    assert (flux.cm("a") or {}).get("data") == {"v": "1.1.0"}
    v12 = tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="1.2.0")}, "v1.2.0", annotated=True)  # its commit's SHA
    request(flux, "a", "1")
    until(lambda: flux.get_ks("a")["status"].get("lastAppliedRevision") == f"v1.2.0@sha1:{v12}", what="v1.2.0")
    assert (flux.cm("a") or {}).get("data") == {"v": "1.2.0"}


def test_ref_name_and_a_semver_range_nothing_matches(flux: Flux, git_http: GitHttp) -> None:
    bare = make_bare(git_http.root, f"refname-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="main"), "apps/b/cm.yaml": cm("b")})
    sha = tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="tagged")}, "release-1")
    tag_commit(bare, {"apps/a/cm.yaml": cm("a", v="later")}, "later")
    flux.repo("repo", bare, ref={"name": "refs/tags/release-1"})
    flux.repo("none", bare, secret="basic2", ref={"semver": ">=5.0.0"})
    flux.secret("basic2", username=GIT_USER, password=GIT_PASSWORD)
    flux.ks("a", "./apps/a")
    flux.ks("b", "./apps/b", source="none")
    flux.ctl.start()
    assert flux.ready_ks("a")["status"]["lastAppliedRevision"] == f"refs/tags/release-1@sha1:{sha}"
    assert (flux.cm("a") or {}).get("data") == {"v": "tagged"}
    b = until(lambda: ready(flux.get_ks("b")).get("status") == "False" and ready(flux.get_ks("b")), what="b not Ready")
    assert "no tag of" in b["message"] and "matches semver range '>=5.0.0'" in b["message"]


def test_ignore_leaves_files_out_of_the_artifact_with_fluxs_defaults_and_sourceignore(flux: Flux, git_http: GitHttp) -> None:
    files = {
        "apps/a/cm.yaml": cm("kept"),
        "apps/a/skip-me.yaml": cm("skipped-by-spec-ignore"),
        "apps/a/.sops.yaml": cm("skipped-by-default"),  # **/.sops.yaml is one of Flux's default exclusions
        "apps/a/local/.sourceignore": "*.yaml\n!keep.yaml\n",
        "apps/a/local/x.yaml": cm("skipped-by-sourceignore"),
        "apps/a/local/keep.yaml": cm("included-again"),
        "apps/a/drafts/d.yaml": cm("skipped-dir"),
        "apps/a/drafts/final.yaml": cm("re-included-below-an-excluded-dir"),
    }
    bare = make_bare(git_http.root, f"ignore-{flux.ns}", files)
    ignore = "# not a pattern\nskip-me.yaml\n/apps/a/drafts/\n!/apps/a/drafts/final.yaml\n"
    flux.repo("repo", bare, ref={"branch": "main"}, ignore=ignore)
    flux.ks("a", "./apps/a")
    flux.ctl.start()
    obj = flux.ready_ks("a")
    names = sorted(e["id"].split("_")[1] for e in obj["status"]["inventory"]["entries"])
    assert names == ["included-again", "kept", "re-included-below-an-excluded-dir"]
    assert "not supported" not in ready(obj)["message"]


def _fetch_now(cache: Any, spec: Any, who: str, auth: GitAuth) -> Any:
    """SourceCache.fetch, waiting out its FetchPending (the fetch runs on its own thread)."""
    from reconciler.controller import FetchPending

    woke: list[int] = []
    for _ in range(2):
        try:
            return cache.fetch(spec, auth, 0.0 if not woke else 1e9, who, lambda: woke.append(1))
        except FetchPending:
            until(lambda: woke, 60, "the fetch")
    raise AssertionError("no snapshot")


def test_snapshots_no_app_references_are_deleted_but_never_one_being_read(git_http: GitHttp, tmp_path: Path) -> None:
    from reconciler import apps as A
    from reconciler.controller import SourceCache

    bare = make_bare(git_http.root, f"gc-{tmp_path.name}", {"a/cm.yaml": cm("a", v="1")})
    spec = A.SourceSpec(git_http.url(bare), A.RefKind.BRANCH, "main")
    auth = GitAuth(GIT_USER, GIT_PASSWORD)
    cache = SourceCache(tmp_path / "c")
    s1 = _fetch_now(cache, spec, "app1", auth)
    s2 = _fetch_now(cache, spec, "app2", auth)
    assert s1.root == s2.root and s1.root.is_dir()
    cache.release("app2")
    tag_commit(bare, {"a/cm.yaml": cm("a", v="2")})
    s3 = _fetch_now(cache, spec, "app2", auth)  # a new revision; app1's reconcile still reads the old one
    assert s3.root != s1.root and s1.root.is_dir(), "a snapshot being read is never deleted"
    cache.release("app1")
    assert not s1.root.exists(), "the old revision, which no app references any more, is deleted"
    assert s3.root.is_dir() and (s3.root / "a/cm.yaml").is_file(), "the current one is kept"
    cache.release("app2")
    assert s3.root.is_dir(), "a source's current snapshot stays while apps use it"

    other = SourceCache(tmp_path / "c")  # a second process on the same directory deletes only its own snapshots
    assert other.collect() == [] and s3.root.is_dir()
    other.close()
    cache.forget("app1")
    cache.forget("app2")  # no app uses the source any more: its snapshot goes
    assert not s3.root.exists()

    leftover = tmp_path / "c" / "snapshots" / "0123456789ab-deadbeef"  # an earlier process's
    leftover.mkdir()
    cache.close()
    restarted = SourceCache(tmp_path / "c")
    restarted.collect()
    assert not leftover.exists(), "the directory's owner deletes what earlier processes left"
    restarted.close()


def deploy(name: str) -> str:
    return json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"tier": "web"}},
                       "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                                "template": {"metadata": {"labels": {"app": name}},
                                             "spec": {"containers": [{"name": "web", "image": "web:1"},
                                                                     {"name": "side", "image": "side:1"}]}}}})  # fmt: skip


def test_patches_strategic_merge_and_json6902_with_targets_reach_the_cluster(flux: Flux, git_http: GitHttp) -> None:
    files = {"apps/a/web.yaml": deploy("web"), "apps/a/web-2.yaml": deploy("web-2"), "apps/a/cm.yaml": cm("settings", a="1")}
    bare = make_bare(git_http.root, f"patches-{flux.ns}", files)
    flux.repo("repo", bare, ref={"branch": "main"})
    patches = [
        {"patch": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: any}\nspec:\n  replicas: 3\n"
                  "  template: {spec: {containers: [{name: web, image: 'web:2'}]}}\n",
         "target": {"kind": "Deployment", "name": "web", "labelSelector": "tier=web"}},  # anchored: not web-2
        {"patch": "- {op: add, path: /data/b, value: '2'}\n- {op: replace, path: /data/a, value: '10'}",
         "target": {"version": "v1", "kind": "ConfigMap"}},
        {"patch": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web-2}\nspec: {replicas: 2}\n"},
    ]  # fmt: skip
    flux.ks("a", "./apps/a", patches=patches)
    flux.ctl.start()
    assert "not supported" not in ready(flux.ready_ks("a"))["message"]
    apps = f"/apis/apps/v1/namespaces/{flux.ns}/deployments"
    web, web2 = (request_json(flux.api, "GET", f"{apps}/{n}") for n in ("web", "web-2"))
    assert web["spec"]["replicas"] == 3 and web2["spec"]["replicas"] == 2
    containers = {c["name"]: c["image"] for c in web["spec"]["template"]["spec"]["containers"]}
    assert containers == {"web": "web:2", "side": "side:1"}, "containers merge by name"
    assert (flux.cm("settings") or {}).get("data") == {"a": "10", "b": "2"}


def test_a_bad_patch_stalls_the_app_naming_it(flux: Flux, git_http: GitHttp) -> None:
    bare = make_bare(git_http.root, f"badpatch-{flux.ns}", {"apps/a/cm.yaml": cm("a", a="1")})
    flux.repo("repo", bare, ref={"branch": "main"})
    flux.ks("a", "./apps/a", patches=[{"patch": "- {op: add, path: /data/b, value: x}"}])
    flux.ctl.start()
    cond = until(lambda: "patches" in (c := ready(flux.get_ks("a"))).get("message", "") and c, what="stalled")
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec")
    assert "spec.patches[0]: a JSON 6902 patch needs a target" in cond["message"]


def frozen_crd(api: Any, group: str) -> None:
    """A custom resource whose spec.value is immutable (a CEL transition rule, as real CRDs declare it): the test
    API server, which has no built-in kinds' immutability checks, refuses its change with 422 "field is immutable"."""
    value = {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "field is immutable"}]}
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"value": value}}}}
    names = {"plural": "frozens", "singular": "frozen", "kind": "Frozen"}
    version = {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": f"frozens.{group}"},
           "spec": {"group": group, "scope": "Namespaced", "names": names, "versions": [version]}}  # fmt: skip
    create(api, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    until(lambda: any(c.get("type") == "Established" and c.get("status") == "True" for c in (request_json(
        api, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/frozens.{group}").get("status") or {})
        .get("conditions") or []), what="CRD established")  # fmt: skip


@pytest.mark.parametrize("force", [True, False])
def test_force_recreates_an_object_whose_immutable_field_changed(flux: Flux, git_http: GitHttp, force: bool) -> None:
    group = f"{flux.ns}.force.example.com"
    frozen_crd(flux.api, group)

    def frozen(value: str) -> str:
        return json.dumps({"apiVersion": f"{group}/v1", "kind": "Frozen", "metadata": {"name": "f"}, "spec": {"value": value}})

    def live() -> dict[str, Any]:
        try:
            return request_json(flux.api, "GET", f"/apis/{group}/v1/namespaces/{flux.ns}/frozens/f")
        except ApiException as exc:  # between the delete and the create of a forced recreate it is briefly gone
            if exc.status != 404:
                raise
            return {}

    bare = make_bare(git_http.root, f"force-{force}-{flux.ns}", {"apps/a/f.yaml": frozen("1"), "apps/a/cm.yaml": cm("c", v="1")})
    flux.repo("repo", bare, ref={"branch": "main"})
    flux.ks("a", "./apps/a", force=force)
    flux.ctl.start()
    flux.ready_ks("a")
    uid = live()["metadata"]["uid"]
    tag_commit(bare, {"apps/a/f.yaml": frozen("2"), "apps/a/cm.yaml": cm("c", v="2")})
    request(flux, "a", "1")
    if force:
        until(lambda: live().get("spec") == {"value": "2"}, what="recreated with the new value")
        assert live()["metadata"]["uid"] != uid
        assert (flux.cm("c") or {}).get("data") == {"v": "2"}, "the rest is applied as usual"
        assert "not supported" not in ready(flux.ready_ks("a"))["message"]
    else:
        cond = until(lambda: (c := ready(flux.get_ks("a"))).get("status") == "False" and c, what="a failed apply")
        assert "field is immutable" in cond["message"] and live()["spec"] == {"value": "1"}


def test_wait_with_a_timeout_is_progressing_then_health_check_failed(flux: Flux, git_http: GitHttp) -> None:
    """No controller runs on the test API server: a Deployment never becomes available, so the wait times out."""
    files = {"apps/a/web.yaml": deploy("web"), "apps/b/cm.yaml": cm("b"), "apps/c/cm.yaml": cm("c")}
    bare = make_bare(git_http.root, f"wait-{flux.ns}", files)
    flux.repo("repo", bare, ref={"branch": "main"})
    flux.ks("a", "./apps/a", wait=True, timeout="3s", retryInterval="1h")
    flux.ks("b", "./apps/b", wait=True, timeout="3s")
    flux.ks("c", "./apps/c", timeout="1ms", retryInterval="1h")  # the apply itself cannot finish in time
    flux.ctl.start()
    flux.ready_ks("b")  # what is Healthy at once is Ready at once
    c = until(lambda: "timeout" in (c := ready(flux.get_ks("c"))).get("message", "") and c, what="c timed out")
    assert (c["reason"], c["message"]) == ("ReconciliationFailed", "timeout: the deadline passed before applying finished")
    seen: list[str] = []

    def failed() -> dict[str, Any] | None:
        c = ready(flux.get_ks("a"))
        seen.append(c.get("reason", ""))
        return c if c.get("reason") == "HealthCheckFailed" else None

    cond = until(failed, what="HealthCheckFailed")
    assert cond["status"] == "False"
    want = f"Health check failed after 3s: timeout waiting for: [Deployment/{flux.ns}/web status: 'Progressing']"
    assert want in cond["message"]
    assert "Progressing" in seen or seen[0] == "HealthCheckFailed"  # (Ready Unknown, Progressing, while it waited)


def test_a_drift_worker_never_corrects_a_forced_recreates_delete_nor_a_prune(
    flux: Flux, git_http: GitHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic, no timing: the sync's delete of a forced recreate holds until a drift worker has handled the
    DELETED event. Before the fence the worker "corrected" the deletion (recreated the object under the sync, whose
    wait for it to be gone then spun to its 60 s deadline); a prune's deletion handed to the app's previous engine
    (which a drift worker may still hold: its desired state names the pruned object) was recreated too."""
    group = f"{flux.ns}.race.example.com"
    frozen_crd(flux.api, group)
    path = f"/apis/{group}/v1/namespaces/{flux.ns}/frozens/f"

    def frozen(value: str) -> str:
        return json.dumps({"apiVersion": f"{group}/v1", "kind": "Frozen", "metadata": {"name": "f"}, "spec": {"value": value}})

    def live() -> dict[str, Any] | None:
        try:
            return request_json(flux.api, "GET", path)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None

    handled: list[tuple[str, str]] = []  # (event type, name) the drift path has finished with
    on_event = Engine.on_event

    def spy(self: Engine, etype: str, obj: dict[str, Any], received: float, correct: bool) -> Any:
        try:
            return on_event(self, etype, obj, received, correct)
        finally:
            handled.append((etype, obj["metadata"]["name"]))

    monkeypatch.setattr(Engine, "on_event", spy)
    back_under_the_sync: list[bool] = []
    delete = flux.ctl.cluster.delete

    def held_delete(api_version: str, key: Any, *args: Any, **kwargs: Any) -> Any:
        out = delete(api_version, key, *args, **kwargs)
        if key.kind == "Frozen":  # the forced recreate's delete: let the drift worker handle the deletion first
            until(lambda: ("DELETED", "f") in handled, what="a drift worker to handle the DELETED event")
            back_under_the_sync.append(live() is not None)
        return out

    monkeypatch.setattr(flux.ctl.cluster, "delete", held_delete)
    bare = make_bare(git_http.root, f"race-{flux.ns}", {"apps/a/f.yaml": frozen("1"), "apps/a/b.yaml": cm("b", v="1")})
    flux.repo("repo", bare, ref={"branch": "main"})
    flux.ks("a", "./apps/a", force=True)
    flux.ctl.start()
    flux.ready_ks("a")
    old_f = live() or {}
    uid = old_f["metadata"]["uid"]
    key = next(k for k in flux.ctl.engines if k.name == "a")
    old_engine = flux.ctl.engines[key][0]
    b = flux.cm("b")
    assert b is not None and old_engine.desired.get(next(k for k in old_engine.desired if k.name == "b")) is not None
    # a new revision: f's immutable value changes (a forced recreate) and b is gone (pruned); a spec change gives the
    # app a new engine, so the old one still names b
    tag_commit(bare, {"apps/a/f.yaml": frozen("2"), "apps/a/b.yaml": ""})
    request_json(flux.api, "PATCH", f"{KS_PATH}/namespaces/{flux.ns}/kustomizations/a", body={
        "metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "1"}}, "spec": {"retryInterval": "2m"}},
                 content_type="application/merge-patch+json")  # fmt: skip
    until(lambda: back_under_the_sync, what="the forced recreate's delete")
    assert back_under_the_sync == [False], "the drift path recreated the object between the sync's delete and create"
    until(lambda: (live() or {}).get("spec") == {"value": "2"}, what="recreated with the new value")
    assert (live() or {})["metadata"]["uid"] != uid
    until(lambda: flux.cm("b") is None, what="b pruned")
    assert flux.ctl.engines[key][0] is not old_engine
    # the drift worker that took the old engine before the swap handles b's deletion now: not "corrected" back
    old_engine.on_event("DELETED", b, time.monotonic(), correct=True)
    assert flux.cm("b") is None, "the prune's deletion was corrected back"
    # a deletion handled only after the recreate (a worker took it before the new object's event came) is stale:
    # judged by its uid before anything is said — no DriftDetected notification, no Event, no correction
    engine = flux.ctl.engines[key][0]
    told: list[Any] = []
    monkeypatch.setattr(flux.ctl.notices.emitter, "emit", told.append)
    monkeypatch.setattr(engine, "record_event", lambda *a, **k: told.append(a))
    corrections = len(engine.corrections)
    for correct in (True, False):
        assert engine.on_event("DELETED", old_f, time.monotonic(), correct=correct) == []
    assert len(engine.corrections) == corrections, "a deletion of the object's previous incarnation was corrected"
    assert told == [], "a deletion of the object's previous incarnation was told as drift"
    assert not [k for k in engine.drift if k[0].name == "f"]
    assert "not supported" not in ready(flux.ready_ks("a"))["message"]
