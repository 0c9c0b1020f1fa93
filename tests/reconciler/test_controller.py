"""`reconciler controller` on the real test API server and real git remotes: Flux Kustomizations (with their
GitRepository and a Flux-format basic-auth Secret) and native Apps from two repositories, one controller; broken
apps fail alone; dependsOn, suspend, requestedAt, projects and drift correction through the shared informers."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from gitopskit.kube import request_json
from reconciler.cli import main
from reconciler.controller import AppController
from reconciler.controller_cli import APP_PATH, KS_PATH
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import GIT_PASSWORD, GIT_USER, GitHttp, git, make_bare
from tests.integration.test_crds import install

pytestmark = [pytest.mark.cluster, pytest.mark.git]

REPO_PATH = "/apis/source.toolkit.fluxcd.io/v1"


def until(cond: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what or cond}")


def cm(name: str, **data: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


def create(api: Any, path: str, body: dict[str, Any]) -> None:
    request_json(api, "POST", path, body=body)


def test_one_controller_runs_flux_and_native_apps_from_two_repos_and_isolates_failures(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> None:
    api = cluster.api_client()
    install(api)
    ns = namespace
    files_a = {f"apps/a{i}/cm.yaml": cm(f"a{i}", n=str(i)) for i in range(4)}
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "elsewhere"},
              "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
                       "spec": {"containers": [{"name": "web", "image": "ghcr.io/o/web:1.0"}]}}}}  # fmt: skip
    files_a["apps/a2/deploy.yaml"] = json.dumps(deploy)
    bare_a = make_bare(git_http.root, f"a-{ns}", files_a)
    bare_b = make_bare(git_http.root, f"b-{ns}", {f"apps/b{i}/cm.yaml": cm(f"b{i}", n=str(i)) for i in range(13)})
    secret = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git-auth"},
        "data": {"username": base64.b64encode(GIT_USER.encode()).decode(),
                 "password": base64.b64encode(GIT_PASSWORD.encode()).decode()},
    }  # fmt: skip
    create(api, f"/api/v1/namespaces/{ns}/secrets", secret)
    repo = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "repo-a"},
        "spec": {"url": git_http.url(bare_a), "interval": "1m", "ref": {"branch": "main"}, "secretRef": {"name": "git-auth"}},
    }
    create(api, f"{REPO_PATH}/namespaces/{ns}/gitrepositories", repo)
    nosecret = {**repo, "metadata": {"name": "repo-nosecret"}, "spec": {**repo["spec"], "secretRef": {"name": "missing"}}}
    create(api, f"{REPO_PATH}/namespaces/{ns}/gitrepositories", nosecret)

    def ks(name: str, path: str, source: str = "repo-a", **spec: Any) -> None:
        body = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": name},
                "spec": {"interval": "10m", "prune": True, "path": path, "targetNamespace": ns,
                         "sourceRef": {"kind": "GitRepository", "name": source}, **spec}}  # fmt: skip
        create(api, f"{KS_PATH}/namespaces/{ns}/kustomizations", body)

    def app(name: str, path: str, **spec: Any) -> None:
        body = {"apiVersion": "reconciler.imagebot.dev/v1alpha1", "kind": "App", "metadata": {"name": name},
                "spec": {"source": {"url": git_http.url(bare_b), "secretRef": {"name": "git-auth"}}, "path": path,
                         "prune": True, **spec}}  # fmt: skip
        create(api, f"{APP_PATH}/namespaces/{ns}/apps", body)

    ks("ks-a0", "./apps/a0")
    ks("ks-a1", "./apps/a1", dependsOn=[{"name": "ks-a0"}])
    ks("ks-a2", "./apps/a2", postBuild={"substitute": {"x": "y"}}, images=[{"name": "ghcr.io/o/web", "newTag": "2.0"}],
       commonMetadata={"labels": {"team": "a"}})  # fmt: skip
    ks("ks-a3", "./apps/a3", suspend=True)
    ks("ks-broken-path", "./apps/nowhere")
    ks("ks-no-secret", "./apps/a0", source="repo-nosecret")
    for i in range(13):  # with the 7 above: 20 apps from two repositories, mixed Flux and native
        app(f"app-b{i}", f"apps/b{i}")
    app("app-bad-mode", "apps/b0")  # valid, but its project is missing → refused
    request_json(api, "PATCH", f"{APP_PATH}/namespaces/{ns}/apps/app-bad-mode", body={"spec": {"project": "nope"}},
                 content_type="application/merge-patch+json")  # fmt: skip

    ctl = AppController(api, (ns,), workers=4, cache=tmp_path / "cache")
    ctl.start()
    try:
        assert ctl.wait_synced(30)

        def get(kind_path: str, name: str) -> dict[str, Any]:
            return request_json(api, "GET", f"{kind_path}/namespaces/{ns}/{name}")

        for name in ("ks-a0", "ks-a1", "ks-a2"):
            obj = until(lambda n=name: (o := get(KS_PATH, f"kustomizations/{n}")) and ready(o).get("status") == "True" and o,
                        what=f"{name} Ready")  # fmt: skip
            st = obj["status"]
            assert st["lastAppliedRevision"].startswith("main@sha1:")
            assert st["observedGeneration"] == obj["metadata"]["generation"]
            assert {"id": f"{ns}_{name[3:]}__ConfigMap", "v": "v1"} in st["inventory"]["entries"]
        assert "not supported, ignored: spec.postBuild" in ready(get(KS_PATH, "kustomizations/ks-a2"))["message"]
        web = request_json(api, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/web")  # targetNamespace overrides
        assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/o/web:2.0"
        assert web["metadata"]["labels"]["team"] == "a" and "team" not in web["spec"]["template"]["metadata"]["labels"]
        for i in range(13):
            until(lambda i=i: ready(get(APP_PATH, f"apps/app-b{i}")).get("status") == "True", what=f"app-b{i} Ready")
        cms = {c["metadata"]["name"] for c in request_json(api, "GET", f"/api/v1/namespaces/{ns}/configmaps")["items"]}
        assert {"a0", "a1", "a2", *(f"b{i}" for i in range(13))} <= cms and "a3" not in cms, "the suspended app wrote nothing"

        broken = until(lambda: ready(get(KS_PATH, "kustomizations/ks-broken-path")), what="broken app status")
        assert broken["status"] == "False" and "no such directory" in broken["message"]
        nosec = until(lambda: ready(get(KS_PATH, "kustomizations/ks-no-secret")), what="no-secret status")
        assert nosec["status"] == "False" and f"Secret {ns}/missing not found" in nosec["message"]
        denied = until(lambda: ready(get(APP_PATH, "apps/app-bad-mode")), what="denied status")
        assert (denied["status"], denied["reason"]) == ("False", "ProjectViolation")
        assert "project nope not found" in denied["message"]

        # drift: a hand edit of a managed object is undone through the shared informer
        request_json(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/b1?fieldManager=kubectl-edit",
                     body={"data": {"n": "999"}}, content_type="application/merge-patch+json")  # fmt: skip
        until(lambda: request_json(api, "GET", f"/api/v1/namespaces/{ns}/configmaps/b1")["data"] == {"n": "1"},
              what="drift corrected")  # fmt: skip

        # a Git change reaches the app on request (reconcile.fluxcd.io/requestedAt), and only that app
        work = tmp_path / "work"
        git("clone", "-q", str(bare_a), str(work))
        (work / "apps/a0/cm.yaml").write_text(cm("a0", n="changed"))
        git("-C", str(work), "commit", "-qam", "change a0")
        git("-C", str(work), "push", "-q", "origin", "HEAD:main")
        code, out, err = cli(cluster, "reconcile", "ks-a0", "-n", ns, "--timeout", "60")
        assert code == 0, err
        assert f"Kustomization {ns}/ks-a0: Ready=True Applied revision: main@sha1:" in out
        assert request_json(api, "GET", f"/api/v1/namespaces/{ns}/configmaps/a0")["data"] == {"n": "changed"}
        code, out, _ = cli(cluster, "get", "-n", ns, "--json")
        rows = {r["name"]: r for r in json.loads(out)}
        assert code == 0 and len(rows) == 20
        assert rows["ks-a0"]["ready"] == "True" and rows["ks-a0"]["revision"].startswith("main@sha1:")
        assert rows["ks-a3"]["suspended"] and rows["ks-no-secret"]["ready"] == "False"
        code, out, _ = cli(cluster, "get", "-n", ns)
        assert out.splitlines()[0].split() == ["NAMESPACE", "NAME", "KIND", "READY", "REVISION", "HEALTH", "DRIFT", "MESSAGE"]
        assert cli(cluster, "reconcile", "nope", "-n", ns)[0] == 2
        assert cli(cluster, "reconcile", "ks-broken-path", "-n", ns, "--timeout", "30")[0] == 7
    finally:
        assert ctl.stop(30)


def cli(cluster: TestCluster, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([argv[0], "--kubeconfig", str(cluster.kubeconfig), *argv[1:]], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_bad_app_specs_are_refused_by_the_api_server_before_the_controller_sees_them(
    cluster: TestCluster, namespace: str
) -> None:
    api = cluster.api_client()
    install(api)
    with pytest.raises(ApiException) as info:
        create(api, f"{KS_PATH}/namespaces/{namespace}/kustomizations",
               {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "x"},
                "spec": {"interval": "1m", "sourceRef": {"kind": "GitRepository", "name": "r"}}})  # fmt: skip
    assert info.value.status == 422 and "spec.prune" in str(info.value.body)


def test_a_resync_of_unchanged_apps_writes_nothing_and_reads_live_objects_from_the_informers(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> None:
    api = cluster.api_client()
    install(api)
    ns = namespace
    bare = make_bare(git_http.root, f"r-{ns}", {f"apps/a{i}/cm.yaml": cm(f"a{i}", n=str(i)) for i in range(5)})
    data = {k: base64.b64encode(v.encode()).decode() for k, v in (("username", GIT_USER), ("password", GIT_PASSWORD))}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "g"}, "data": data}
    create(api, f"/api/v1/namespaces/{ns}/secrets", secret)
    source = {"url": git_http.url(bare), "secretRef": {"name": "g"}}
    for i in range(5):
        spec = {"source": source, "path": f"apps/a{i}", "prune": True}
        app = {"apiVersion": "reconciler.imagebot.dev/v1alpha1", "kind": "App", "metadata": {"name": f"a{i}"}, "spec": spec}
        create(api, f"{APP_PATH}/namespaces/{ns}/apps", app)
    ctl = AppController(api, (ns,), workers=2, cache=tmp_path / "cache")
    seen: list[tuple[str, str]] = []
    pool = ctl.api.rest_client.pool_manager
    real = pool.request

    def recording(method: str, url: str, *a: Any, **kw: Any) -> Any:
        if "watch=" not in url:
            seen.append((method, url))
        return real(method, url, *a, **kw)

    pool.request = recording
    ctl.start()
    try:
        for i in range(5):
            until(lambda i=i: ready(request_json(api, "GET", f"{APP_PATH}/namespaces/{ns}/apps/a{i}")).get("status") == "True",
                  what=f"a{i} Ready")  # fmt: skip
        informers = ctl.drift_informers
        until(lambda: len(informers) >= 1 and all(i.has_synced() for i in informers.values()), what="informers")
        time.sleep(1)  # let the first pass finish
        seen.clear()
        done: list[int] = []
        real_reconcile = ctl.controller.reconcile

        def counted(key: Any) -> Any:
            r = real_reconcile(key)
            done.append(1)
            return r

        ctl.controller.reconcile = counted
        ctl.refresh()
        until(lambda: len(done) >= 5, what="a full resync")
        writes = [(m, u) for m, u in seen if m in ("POST", "PUT", "PATCH", "DELETE")]
        lists = [u for m, u in seen if m == "GET" and "labelSelector=reconciler.imagebot.dev/app" in u]
        assert not writes, writes
        assert not lists, f"live objects are read from the informer cache, not listed per app: {lists}"
    finally:
        assert ctl.stop(30)


def test_a_cold_start_reads_live_objects_and_other_apps_claims_from_the_shared_informers_not_one_list_per_app(
    cluster: TestCluster, namespace: str, git_http: GitHttp, tmp_path: Path
) -> None:
    """Each app's first sync once listed every kind it declares — all apps' objects of that kind each time — up to
    four times (its live state, who else owns what is missing, health twice): O(apps × objects) on a cold start.
    Now the shared informers answer (one list per kind for the whole process), and health comes from the apply's
    answers; another app's object is still found and reported as a conflict."""
    api = cluster.api_client()
    install(api)
    ns = namespace
    files = {f"apps/a{i}/cm-{j}.yaml": cm(f"a{i}-{j}", n=str(j)) for i in range(6) for j in range(3)}
    files["apps/a0/shared.yaml"] = files["apps/late/shared.yaml"] = cm("shared", by="both")
    bare = make_bare(git_http.root, f"c-{ns}", files)
    data = {k: base64.b64encode(v.encode()).decode() for k, v in (("username", GIT_USER), ("password", GIT_PASSWORD))}
    create(api, f"/api/v1/namespaces/{ns}/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "g"},
                                                     "data": data})  # fmt: skip

    def app(name: str, path: str) -> None:
        spec = {"source": {"url": git_http.url(bare), "secretRef": {"name": "g"}}, "path": path, "prune": True}
        body = {"apiVersion": "reconciler.imagebot.dev/v1alpha1", "kind": "App", "metadata": {"name": name}, "spec": spec}
        create(api, f"{APP_PATH}/namespaces/{ns}/apps", body)

    for i in range(6):
        app(f"a{i}", f"apps/a{i}")
    ctl = AppController(api, (ns,), workers=3, cache=tmp_path / "cache")
    seen: list[tuple[str, str]] = []
    pool = ctl.api.rest_client.pool_manager
    real = pool.request

    def recording(method: str, url: str, *a: Any, **kw: Any) -> Any:
        if "watch=" not in url:
            seen.append((method, url))
        return real(method, url, *a, **kw)

    pool.request = recording
    ctl.start()
    try:

        def get(name: str) -> dict[str, Any]:
            return request_json(api, "GET", f"{APP_PATH}/namespaces/{ns}/apps/{name}")

        for i in range(6):
            until(lambda i=i: ready(get(f"a{i}")).get("status") == "True", what=f"a{i} Ready")
        obj = get("a0")
        assert len(obj["status"]["inventory"]["entries"]) == 4 and obj["status"]["health"] == "Healthy"
        app("late", "apps/late")  # declares a0's ConfigMap: a conflict, found in the informer's cache
        cond = until(lambda: (c := ready(get("late"))) and c.get("status") == "False" and c, what="late's conflict")
        assert "owned by another app" in cond["message"] and "shared" in cond["message"], cond
        shared = request_json(api, "GET", f"/api/v1/namespaces/{ns}/configmaps/shared")
        assert ".a0-" in shared["metadata"]["labels"]["reconciler.imagebot.dev/app"], "a0's object is left alone"
        lists = [u for m, u in seen if m == "GET" and "labelSelector=reconciler.imagebot.dev" in u and "configmaps" in u]
        inventory_lists = [u for u in lists if "labelSelector=reconciler.imagebot.dev/inventory" in u]  # the claims
        assert len(lists) - len(inventory_lists) <= 1, f"one list of ConfigMaps for all 7 apps (the informer's): {lists}"
    finally:
        assert ctl.stop(30)
