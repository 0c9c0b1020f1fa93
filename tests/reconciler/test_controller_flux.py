"""Flux's GitRepository and Kustomization fields the controller runs, on the real test API server and real git
remotes: bearer-token Secrets, ``ref.semver``/``ref.name``, ``ignore``, ``patches``, ``force``, ``timeout``/``wait``,
deletion through the finalizer (and Argo CD's), and the source snapshots' garbage collection."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitopskit.kube import request_json
from gitopskit.workspace import GitAuth
from reconciler.controller import AppController
from reconciler.controller_cli import KS_PATH
from tests.fixtures.cluster import TestCluster
from tests.fixtures.git import GIT_BEARER, GIT_PASSWORD, GIT_USER, GitHttp, make_bare
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
