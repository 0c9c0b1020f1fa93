"""After a restart or a leader change the controller judged apps while its informers were still listing: a
Kustomization whose GitRepository informer had not synced yet was made Stalled ('GitRepository … not found',
InvalidSpec — 'nothing changes until the spec does'), with an Event. Now nothing is judged before every cache is
listed, as controller-runtime waits for its caches."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.git import GitHttp, make_bare
from tests.reconciler import test_controller_flux as base
from tests.reconciler.test_controller_flux import Flux, cm, ready, until

pytestmark = [pytest.mark.cluster, pytest.mark.git]
flux = base.flux  # the fixture: a namespace's Flux objects and a controller over it


@pytest.fixture
def gate(flux: Flux) -> Iterator[threading.Event]:
    """The GitRepository informers start listing only when the test says (the others at once)."""
    opened = threading.Event()
    for inf in flux.ctl.repos:
        real = inf.start

        def late(stop: threading.Event, real: Any = real) -> None:
            threading.Thread(target=lambda: (opened.wait(120), real(stop)), daemon=True).start()

        inf.start = late  # type: ignore[method-assign]
    yield opened
    opened.set()


def test_no_app_is_judged_before_the_gitrepository_cache_is_listed(flux: Flux, git_http: GitHttp, gate: threading.Event) -> None:
    bare = make_bare(git_http.root, f"caches-{flux.ns}", {"apps/a/cm.yaml": cm("a", v="1")})
    flux.repo("repo", bare, ref={"branch": "main"})
    flux.ks("a", "./apps/a")
    flux.ctl.start()
    until(lambda: all(inf.wait_synced(0) for inf in flux.ctl.kustomizations), 60, "the Kustomization informer")
    end = time.monotonic() + 3.0  # time enough for a worker to judge the app (it took milliseconds)
    while time.monotonic() < end:
        cond = ready(flux.get_ks("a"))
        assert "not found" not in cond.get("message", ""), cond
        time.sleep(0.1)
    gate.set()
    flux.ready_ks("a")
    assert (flux.cm("a") or {}).get("data") == {"v": "1"}
