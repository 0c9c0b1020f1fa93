"""Shared fixtures: real servers started on 127.0.0.1 and stopped by PID (or in-process threads)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.fixtures.cluster import cluster, namespace  # noqa: F401
from tests.fixtures.git import GitHttp, Sshd, start_sshd
from tests.fixtures.pager import Pager
from tests.fixtures.pki import PKI, make_pki
from tests.fixtures.registry import RegistryServer, start_registry
from tests.tools.kubectl import KubectlUnavailable, put_on_path

# Hypothesis' per-example deadline (200 ms) is a timed assertion: on the shared 2-core machine a correct property
# failed with DeadlineExceeded (tests/unit/reconciler/test_pure.py, 271 ms once, 0.04 ms on replay). Properties are
# bounded by their example counts instead.
settings.register_profile("imagebot", deadline=None)
settings.load_profile("imagebot")


def pytest_sessionstart(session: pytest.Session) -> None:
    # Tests (and `kubectl kustomize` in the code under test) run plain `kubectl`: on a machine without one
    # (Debian 12 has no package) it is Debian sid's, fetched once by tests/tools/kubectl.sh. A failed fetch
    # fails only the tests that run kubectl, with the script's reason above.
    try:
        put_on_path()
    except KubectlUnavailable as exc:
        print(f"conftest: {exc}", file=sys.stderr)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _registry(mode: str, tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Iterator[RegistryServer]:
    server = start_registry(mode, tmp_path_factory.mktemp(f"registry-{mode}"), pki)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def registry_plain(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Iterator[RegistryServer]:
    yield from _registry("plain", tmp_path_factory, pki)


@pytest.fixture(scope="session")
def registry_basic(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Iterator[RegistryServer]:
    yield from _registry("basic", tmp_path_factory, pki)


@pytest.fixture(scope="session")
def registry_mtls(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Iterator[RegistryServer]:
    yield from _registry("mtls", tmp_path_factory, pki)


@pytest.fixture(scope="session")
def registry_token(tmp_path_factory: pytest.TempPathFactory, pki: PKI) -> Iterator[RegistryServer]:
    yield from _registry("token", tmp_path_factory, pki)


@pytest.fixture
def pager() -> Iterator[Pager]:
    p = Pager()
    yield p
    p.stop()


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    d = tmp_path / "docker"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def git_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttp]:
    server = GitHttp(tmp_path_factory.mktemp("git-http"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    # pytest's temporary root is private to root (0700): the git-shell user needs a path it can traverse
    repos = Path(tempfile.mkdtemp(prefix="imagebot-ssh-repos-"))
    repos.chmod(0o755)
    work = Path(tempfile.mkdtemp(prefix="imagebot-sshd-"))
    server = start_sshd(work, repos)
    yield server
    server.stop()
    shutil.rmtree(repos, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
