"""GitRepositories as the controller sees them, on the real test API server and real git remotes: a Kustomization
created before its GitRepository waits for it (ArtifactFailed, retried — never Stalled) and becomes Ready without a
nudge."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gitopskit.informer import ApiTransport, EventType, Informer
from reconciler.controller_cli import KS_PATH
from tests.fixtures.git import GitHttp, make_bare
from tests.reconciler import test_controller_flux as base
from tests.reconciler.test_controller_flux import Flux, cm, ready, until

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
