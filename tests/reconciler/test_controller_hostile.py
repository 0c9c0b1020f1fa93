"""`reconciler controller` against hostile and unlucky input, on the real test API server and real git remotes:
source URLs that point into the controller's own filesystem, apps whose names collide once flattened into a
tracking label, names too long for a label, credentials fixed after a failure, an app deleted mid-reconcile."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from gitopskit.kube import request_json
from reconciler.controller import AppController, AppKey
from reconciler.controller_cli import APP_PATH, KS_PATH
from reconciler.model import TRACKING_LABEL
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, make_bare
from tests.integration.test_crds import install
from tests.reconciler.test_controller import REPO_PATH, cm, create, ready, until

pytestmark = [pytest.mark.cluster, pytest.mark.git]


def b64(**data: str) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


def secret(api: Any, ns: str, name: str = "git-auth", password: str = GIT_PASSWORD) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": b64(username=GIT_USER, password=password)}
    create(api, f"/api/v1/namespaces/{ns}/secrets", body)


def app(api: Any, ns: str, name: str, url: str, path: str, **spec: Any) -> None:
    body = {"apiVersion": "reconciler.imagebot.dev/v1alpha1", "kind": "App", "metadata": {"name": name},
            "spec": {"source": {"url": url, "secretRef": {"name": "git-auth"}}, "path": path, "prune": True, **spec}}  # fmt: skip
    create(api, f"{APP_PATH}/namespaces/{ns}/apps", body)


def get(api: Any, path: str) -> dict[str, Any]:
    return request_json(api, "GET", path)


def configmap(api: Any, ns: str, name: str) -> dict[str, Any] | None:
    items = request_json(api, "GET", f"/api/v1/namespaces/{ns}/configmaps")["items"]
    return next((c for c in items if c["metadata"]["name"] == name), None)


def test_a_source_url_into_the_controllers_own_filesystem_is_refused(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> None:
    """A tenant may not make the controller render its own disk (a directory, or another tenant's cached clone
    through file://): only remote URLs are sources; the app is Stalled and nothing is applied."""
    api = cluster.api_client()
    install(api)
    ns = namespace
    bare = make_bare(git_http.root, f"local-{ns}", {"apps/x/cm.yaml": cm("stolen", n="1")})
    secret(api, ns)
    with pytest.raises(ApiException) as info:  # the App's schema allows remote URLs only
        app(api, ns, "by-file-url", bare.as_uri(), "apps/x")
    assert info.value.status == 422
    argo = f"/apis/argoproj.io/v1alpha1/namespaces/{ns}/applications"
    for name, url in (("argo-path", str(bare)), ("argo-file-url", bare.as_uri()), ("argo-dir", str(tmp_path))):
        create(api, argo, {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name},
                           "spec": {"project": "default", "source": {"repoURL": url, "path": "apps/x"},
                                    "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
                                    "syncPolicy": {"automated": {}}}})  # fmt: skip
    ctl = AppController(api, (ns,), workers=2, cache=tmp_path / "cache")
    ctl.start()
    try:
        for name in ("argo-path", "argo-file-url", "argo-dir"):
            conds = until(lambda n=name: (get(api, f"{argo}/{n}").get("status") or {}).get("conditions"), what=name)
            assert conds[0]["type"] == "InvalidSpecError" and "not a remote Git URL" in conds[0]["message"], conds
        assert configmap(api, ns, "stolen") is None
    finally:
        assert ctl.stop(30)


def test_apps_whose_names_flatten_alike_keep_their_own_objects_and_long_names_work(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> None:
    """A Kustomization and an App of one name in one namespace, an App ``NS.web`` in ``default`` beside ``web``
    in NS, a 250-character name and a dotted one: each app's tracking label is its own (and a valid label value),
    so no app prunes or claims another's objects."""
    api = cluster.api_client()
    install(api)
    ns = namespace
    files = {f"apps/p{i}/cm.yaml": json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                               "metadata": {"name": f"c{i}", "namespace": ns}, "data": {"n": str(i)}})
             for i in range(5)}  # fmt: skip
    bare = make_bare(git_http.root, f"names-{ns}", files)
    url = git_http.url(bare)
    secret(api, ns)
    if get_secret(api) is None:
        secret(api, "default")
    repo = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "r"},
            "spec": {"url": url, "interval": "1m", "ref": {"branch": "main"},
                     "secretRef": {"name": "git-auth"}}}  # fmt: skip
    create(api, f"{REPO_PATH}/namespaces/{ns}/gitrepositories", repo)
    ks = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "web"},
          "spec": {"interval": "10m", "prune": True, "path": "./apps/p0", "targetNamespace": ns,
                   "sourceRef": {"kind": "GitRepository", "name": "r"}}}  # fmt: skip
    create(api, f"{KS_PATH}/namespaces/{ns}/kustomizations", ks)
    long = "long-" + "x" * 245
    apps = {(ns, "web"): "apps/p1", ("default", f"{ns}.web"): "apps/p2", (ns, long): "apps/p3", (ns, "dotted.name"): "apps/p4"}
    for (where, name), path in apps.items():
        app(api, where, name, url, path, allowedNamespaces=[ns])
    ctl = AppController(api, (ns, "default"), workers=4, cache=tmp_path / "cache")
    ctl.start()
    try:
        until(lambda: ready(get(api, f"{KS_PATH}/namespaces/{ns}/kustomizations/web")).get("status") == "True", what="ks")
        for where, name in apps:
            until(lambda w=where, n=name: ready(get(api, f"{APP_PATH}/namespaces/{w}/apps/{n}")).get("status") == "True",
                  what=f"{where}/{name[:20]} Ready")  # fmt: skip
        done = sum(s.value for m in ctl.metrics.reconciles.collect() for s in m.samples if s.name.endswith("_total"))
        ctl.refresh()  # every app once more: none may prune another's objects now
        until(lambda: sum(s.value for m in ctl.metrics.reconciles.collect() for s in m.samples
                          if s.name.endswith("_total")) >= done + 5, what="a second pass")  # fmt: skip
        labels = {}
        for i in range(5):
            obj = until(lambda i=i: configmap(api, ns, f"c{i}"), what=f"c{i}")
            labels[i] = obj["metadata"]["labels"][TRACKING_LABEL]
        assert len(set(labels.values())) == 5, labels
        assert all(len(v) <= 63 for v in labels.values()), labels
        for where, name in [*apps, (ns, "web")]:
            kind = "apps" if (where, name) in apps else "kustomizations"
            st = get(api, f"{APP_PATH if kind == 'apps' else KS_PATH}/namespaces/{where}/{kind}/{name}")
            assert ready(st).get("status") == "True", (name[:20], ready(st))
    finally:
        assert ctl.stop(30)


def get_secret(api: Any) -> dict[str, Any] | None:
    items = request_json(api, "GET", "/api/v1/namespaces/default/secrets")["items"]
    return next((s for s in items if s["metadata"]["name"] == "git-auth"), None)


def test_an_app_deleted_while_it_reconciles_leaves_no_engine_behind(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> None:
    """The app object is deleted (and the informer has seen it) in the middle of its reconcile: when the
    reconcile ends, the controller holds no engine for it, so its objects are no longer drift-corrected by a
    ghost."""
    api = cluster.api_client()
    install(api)
    ns = namespace
    bare = make_bare(git_http.root, f"del-{ns}", {"apps/x/cm.yaml": cm("x", n="1")})
    secret(api, ns)
    app(api, ns, "doomed", git_http.url(bare), "apps/x")
    key = AppKey("App", ns, "doomed")
    finished = threading.Event()

    class Deleting(AppController):
        def _engine(self, k: AppKey, spec: Any, project: Any) -> Any:  # the source is fetched, the sync is next
            request_json(api, "DELETE", k.path)
            until(lambda: self._object(k) is None, what="the informer saw the deletion")
            finished.set()
            return super()._engine(k, spec, project)

    ctl = Deleting(api, (ns,), workers=1, cache=tmp_path / "cache")
    ctl.start()
    try:
        assert finished.wait(60)
        until(lambda: configmap(api, ns, "x"), what="the object applied by the last sync")
        until(lambda: key not in ctl.engines, what="no engine left for the deleted app")
        assert key not in set(ctl.by_label.values())
    finally:
        assert ctl.stop(30)


def test_credentials_fixed_after_a_failure_are_used_on_the_next_fetch(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> None:
    """A Secret with a wrong password, then corrected: the app recovers without a controller restart (the fetch
    uses the Secret as it is now, not as it was the first time the repository was fetched)."""
    api = cluster.api_client()
    install(api)
    ns = namespace
    bare = make_bare(git_http.root, f"creds-{ns}", {"apps/x/cm.yaml": cm("x", n="1")})
    secret(api, ns, password="wrong")
    app(api, ns, "a", git_http.url(bare), "apps/x")
    ctl = AppController(api, (ns,), workers=2, cache=tmp_path / "cache")
    ctl.start()
    try:
        cond = until(lambda: ready(get(api, f"{APP_PATH}/namespaces/{ns}/apps/a")), what="first failure")
        assert (cond["status"], cond["reason"]) == ("False", "ArtifactFailed"), cond
        request_json(api, "PATCH", f"/api/v1/namespaces/{ns}/secrets/git-auth", body={"data": b64(password=GIT_PASSWORD)},
                     content_type="application/merge-patch+json")  # fmt: skip
        request_json(api, "PATCH", f"{APP_PATH}/namespaces/{ns}/apps/a",
                     body={"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "now"}}},
                     content_type="application/merge-patch+json")  # fmt: skip
        until(lambda: ready(get(api, f"{APP_PATH}/namespaces/{ns}/apps/a")).get("status") == "True", 90, "recovered")
        assert configmap(api, ns, "x") is not None
    finally:
        assert ctl.stop(30)


class SilentServer:
    """Accepts TCP connections and never answers; counts the connections the client gave up on."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = self.abandoned = 0
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        self.abandoned += 1

    def stop(self) -> None:
        self.sock.close()
        for c in self._conns:
            c.close()


def test_repositories_that_hang_hold_no_worker(cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path) -> None:
    """Four apps on repositories whose server accepts and never answers, four good ones, two workers: the good
    apps are Ready while the hung fetches are still waiting (no worker waits on a fetch)."""
    api = cluster.api_client()
    install(api)
    ns = namespace
    bare = make_bare(git_http.root, f"hang-{ns}", {f"apps/g{i}/cm.yaml": cm(f"g{i}", n=str(i)) for i in range(4)})
    secret(api, ns)
    silent = SilentServer()
    try:
        for i in range(4):
            app(api, ns, f"hung{i}", f"http://127.0.0.1:{silent.port}/repo{i % 2}.git", "apps/g0")
        ctl = AppController(api, (ns,), workers=2, cache=tmp_path / "cache")
        ctl.start()
        try:
            until(lambda: silent.accepted >= 2, what="the hung fetches started")
            for i in range(4):
                app(api, ns, f"good{i}", git_http.url(bare), f"apps/g{i}")
            for i in range(4):
                until(lambda i=i: ready(get(api, f"{APP_PATH}/namespaces/{ns}/apps/good{i}")).get("status") == "True",
                      120, f"good{i} Ready")  # fmt: skip
            assert silent.abandoned == 0, "the good apps waited for the hung fetches to give up"
        finally:
            assert ctl.stop(30)
    finally:
        silent.stop()


def test_a_pass_with_nothing_new_writes_nothing(cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path) -> None:
    """Every dialect, once Ready/Synced: a full resync with nothing new moves no resourceVersion — not the apps'
    status (Argo CD's operationState included), not their objects."""
    api = cluster.api_client()
    install(api)
    ns = namespace
    bare = make_bare(git_http.root, f"idem-{ns}", {f"apps/p{i}/cm.yaml": cm(f"c{i}", n=str(i)) for i in range(3)})
    url = git_http.url(bare)
    secret(api, ns)
    create(api, f"/api/v1/namespaces/{ns}/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "repo", "labels": {"argocd.argoproj.io/secret-type": "repository"}},
        "data": b64(url=url, username=GIT_USER, password=GIT_PASSWORD)})  # fmt: skip
    app(api, ns, "native", url, "apps/p0")
    argo = f"/apis/argoproj.io/v1alpha1/namespaces/{ns}/applications"
    for name, path, policy in (
        ("heal", "apps/p1", {"automated": {"prune": True, "selfHeal": True}}),
        ("auto", "apps/p2", {"automated": {}}),
    ):
        create(api, argo, {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name},
                           "spec": {"project": "default", "source": {"repoURL": url, "path": path},
                                    "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
                                    "syncPolicy": policy}})  # fmt: skip
    ctl = AppController(api, (ns,), workers=2, cache=tmp_path / "cache")
    ctl.start()

    def passes() -> float:
        return sum(s.value for m in ctl.metrics.reconciles.collect() for s in m.samples if s.name.endswith("_total"))

    def versions() -> dict[str, str]:
        objs = [get(api, f"{APP_PATH}/namespaces/{ns}/apps/native"), get(api, f"{argo}/heal"), get(api, f"{argo}/auto")]
        objs += request_json(api, "GET", f"/api/v1/namespaces/{ns}/configmaps")["items"]
        return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in objs}

    try:
        until(lambda: ready(get(api, f"{APP_PATH}/namespaces/{ns}/apps/native")).get("status") == "True", what="native")
        for name in ("heal", "auto"):
            until(lambda n=name: ((get(api, f"{argo}/{n}").get("status") or {}).get("sync") or {}).get("status") == "Synced",
                  what=f"{name} Synced")  # fmt: skip
        for _ in range(2):  # settle: the first pass after Ready may still record what it just did
            done = passes()
            ctl.refresh()
            until(lambda d=done: passes() >= d + 3, what="a full pass")
        before, done = versions(), passes()
        time.sleep(1.1)  # the next pass runs in another second: a timestamp it writes would differ
        ctl.refresh()
        until(lambda: passes() >= done + 3, what="another full pass")
        assert versions() == before
    finally:
        assert ctl.stop(30)
    # a restarted controller (cold caches, no engine state) finds everything in place: it writes nothing either
    ctl = AppController(api, (ns,), workers=2, cache=tmp_path / "cache2")
    ctl.start()
    try:
        until(lambda: passes() >= 3, what="the first pass after a restart")
        assert versions() == before
    finally:
        assert ctl.stop(30)


def test_dependency_cycles_are_named(cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path) -> None:
    """dependsOn a -> b -> a, and an app that depends on itself, pass the schema; they would wait forever: their
    message names the cycle. An app waiting on the cycle says it waits; breaking the cycle lets all run."""
    api = cluster.api_client()
    install(api)
    ns = namespace
    bare = make_bare(git_http.root, f"cyc-{ns}", {f"apps/{n}/cm.yaml": cm(n, n="1") for n in ("a", "b", "c", "s")})
    url = git_http.url(bare)
    secret(api, ns)
    app(api, ns, "a", url, "apps/a", dependsOn=[{"name": "b"}])
    app(api, ns, "b", url, "apps/b", dependsOn=[{"name": "a", "namespace": ns}])
    app(api, ns, "c", url, "apps/c", dependsOn=[{"name": "a"}])
    app(api, ns, "s", url, "apps/s", dependsOn=[{"name": "s"}])
    ctl = AppController(api, (ns,), workers=2, cache=tmp_path / "cache")
    ctl.start()

    def message(name: str) -> str:
        return str(ready(get(api, f"{APP_PATH}/namespaces/{ns}/apps/{name}")).get("message") or "")

    try:
        until(lambda: "dependency cycle" in message("a"), what="a names the cycle")
        assert message("a") == f"dependency cycle: {ns}/a -> {ns}/b -> {ns}/a"
        until(lambda: message("b") == f"dependency cycle: {ns}/b -> {ns}/a -> {ns}/b", what="b names the cycle")
        until(lambda: message("s") == f"dependency cycle: {ns}/s -> {ns}/s", what="s names itself")
        until(lambda: message("c") == f"dependencies not ready: {ns}/a", what="c waits")
        request_json(api, "PATCH", f"{APP_PATH}/namespaces/{ns}/apps/b", body={"spec": {"dependsOn": None}},
                     content_type="application/merge-patch+json")  # fmt: skip
        for name in ("a", "b", "c"):
            until(lambda n=name: ready(get(api, f"{APP_PATH}/namespaces/{ns}/apps/{n}")).get("status") == "True",
                  90, f"{name} Ready once the cycle is broken")  # fmt: skip
    finally:
        assert ctl.stop(30)


def test_a_gitrepository_changed_or_deleted_wakes_every_app_naming_it(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> None:
    """A native App's sourceRef to a GitRepository: the repository's url changed, the App follows now (not at its
    10m interval); the repository deleted, the App says so now."""
    api = cluster.api_client()
    install(api)
    ns = namespace
    one = make_bare(git_http.root, f"one-{ns}", {"apps/x/cm.yaml": cm("x", n="1")})
    two = make_bare(git_http.root, f"two-{ns}", {"apps/x/cm.yaml": cm("x", n="2")})
    secret(api, ns)
    repo = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "r"},
            "spec": {"url": git_http.url(one), "interval": "10m", "ref": {"branch": "main"},
                     "secretRef": {"name": "git-auth"}}}  # fmt: skip
    create(api, f"{REPO_PATH}/namespaces/{ns}/gitrepositories", repo)
    body = {"apiVersion": "reconciler.imagebot.dev/v1alpha1", "kind": "App", "metadata": {"name": "follows"},
            "spec": {"sourceRef": {"kind": "GitRepository", "name": "r"}, "path": "apps/x", "interval": "10m",
                     "prune": True}}  # fmt: skip
    create(api, f"{APP_PATH}/namespaces/{ns}/apps", body)
    ctl = AppController(api, (ns,), workers=2, cache=tmp_path / "cache")
    ctl.start()
    try:
        until(lambda: ((configmap(api, ns, "x") or {}).get("data") or {}).get("n") == "1", what="applied from one")
        request_json(api, "PATCH", f"{REPO_PATH}/namespaces/{ns}/gitrepositories/r", body={"spec": {"url": git_http.url(two)}},
                     content_type="application/merge-patch+json")  # fmt: skip
        until(lambda: ((configmap(api, ns, "x") or {}).get("data") or {}).get("n") == "2", what="applied from two")
        request_json(api, "DELETE", f"{REPO_PATH}/namespaces/{ns}/gitrepositories/r")
        path = f"{APP_PATH}/namespaces/{ns}/apps/follows"
        until(lambda: "GitRepository r not found" in str(ready(get(api, path)).get("message")), what="repository gone")
    finally:
        assert ctl.stop(30)


@pytest.mark.parametrize("command", ["controller", "run"], ids=["controller", "run"])
def test_a_taken_listen_port_is_a_usage_error_not_a_traceback(
    cluster: TestCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """A restarted receiver whose port is still held (the old process not yet gone): exit 2, one clear line —
    for every receiver, since the kit's httpd.start says it (ListenError)."""
    from tests.reconciler.test_controller import cli

    monkeypatch.setenv("RECONCILER_WEBHOOK_SECRET", "s3cret")
    src = tmp_path / "src"
    src.mkdir()
    extra = ["--cache", str(tmp_path / "c")] if command == "controller" else ["--source", str(src), "--name", "x", "--once"]
    held = socket.create_server(("127.0.0.1", 0))
    try:
        port = held.getsockname()[1]
        code, _, err = cli(cluster, command, "--listen", f"127.0.0.1:{port}", *extra)
    finally:
        held.close()
    assert code == 2, err
    assert f"--listen: cannot listen on 127.0.0.1:{port}: Address already in use" in err and "Traceback" not in err


def test_no_cross_namespace_refs_keeps_a_tenant_off_another_namespaces_repository(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> None:
    """By default, as in Flux, a Kustomization may name a GitRepository in another namespace (and so use that
    namespace's Secret). With --no-cross-namespace-refs it is refused, nothing applied; same-namespace apps run."""
    api = cluster.api_client()
    install(api)
    owner, tenant = namespace, f"{namespace}-t"
    create(api, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": tenant}})
    bare = make_bare(git_http.root, f"private-{owner}", {"apps/x/cm.yaml": cm("private", n="1")})
    secret(api, owner)
    repo = {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "private"},
            "spec": {"url": git_http.url(bare), "interval": "10m", "ref": {"branch": "main"},
                     "secretRef": {"name": "git-auth"}}}  # fmt: skip
    create(api, f"{REPO_PATH}/namespaces/{owner}/gitrepositories", repo)

    def ks(ns: str, name: str, **ref: str) -> None:
        create(api, f"{KS_PATH}/namespaces/{ns}/kustomizations", {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": name},
            "spec": {"interval": "10m", "prune": True, "path": "./apps/x", "targetNamespace": ns,
                     "sourceRef": {"kind": "GitRepository", "name": "private", **ref}}})  # fmt: skip

    ks(tenant, "steal", namespace=owner)
    ks(owner, "own")
    ctl = AppController(api, (owner, tenant), workers=2, cache=tmp_path / "cache", no_cross_namespace_refs=True)
    ctl.start()
    try:
        until(lambda: ready(get(api, f"{KS_PATH}/namespaces/{owner}/kustomizations/own")).get("status") == "True", what="own")
        cond = until(lambda: ready(get(api, f"{KS_PATH}/namespaces/{tenant}/kustomizations/steal")), what="steal status")
        assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec"), cond
        assert "cross-namespace references are not allowed" in cond["message"]
        assert configmap(api, tenant, "private") is None
    finally:
        assert ctl.stop(30)
