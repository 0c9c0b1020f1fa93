"""A source whose fetch fails is not fetched again before its backoff: the FetchPending of every new fetch ended that
reconcile cleanly and reset the app's backoff, so an app on a remote answering 403 or a redirect was fetched again
about every second, forever (seen from outside: `redirauth` failing 'retry in 1.0s' in a loop). The error stands
1 s, then 2 s, 4 s … (to 5 min); a requested reconcile, or a changed Secret, fetches at once. An injected clock,
a server of ours that refuses every request and counts them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from gitopskit.workspace import GitAuth
from reconciler import apps as A
from reconciler.controller import FetchPending, SourceCache
from reconciler.errors import SourceError
from tests.fixtures.net import QuietHandler, ThreadServer


class Refusing:
    """Every request answered 403 at once; ``hits`` counts them."""

    def __init__(self) -> None:
        self.hits = 0
        outer = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_body(403, b"no\n", content_type="text/plain")

        self.server = ThreadServer(Handler)
        self.url = f"http://127.0.0.1:{self.server.port}/config.git"


@pytest.fixture
def refusing() -> Any:
    r = Refusing()
    try:
        yield r
    finally:
        r.server.httpd.shutdown()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def ask(cache: SourceCache, spec: A.SourceSpec, auth: GitAuth | None, max_age: float = 60.0) -> str:
    """One reconcile's view: 'fetched' (a new fetch ran, its answer was an error), 'cached' (an error without a fetch)."""
    woke = threading.Event()
    try:
        cache.fetch(spec, auth, max_age, "app", woke.set)
    except FetchPending:
        assert woke.wait(60), "the fetch never ended"
        with pytest.raises(SourceError):
            cache.fetch(spec, auth, max_age, "app", woke.set)
        return "fetched"
    except SourceError:
        return "cached"
    raise AssertionError("a refused fetch gave a snapshot")


def test_a_failing_source_is_fetched_again_only_after_its_backoff(refusing: Refusing, tmp_path: Path) -> None:
    clock = Clock()
    cache = SourceCache(tmp_path / "c", clock=clock)
    spec = A.SourceSpec(refusing.url, A.RefKind.BRANCH, "main")
    assert ask(cache, spec, None) == "fetched"
    hits = refusing.hits
    assert [ask(cache, spec, None) for _ in range(5)] == ["cached"] * 5, "retries within a second fetch nothing"
    assert refusing.hits == hits
    expected = []
    for wait in (1.0, 2.0, 4.0, 8.0):  # each failure doubles how long its error stands
        clock.t += wait - 0.01
        expected.append(ask(cache, spec, None))
        clock.t += 0.02
        expected.append(ask(cache, spec, None))
    assert expected == ["cached", "fetched"] * 4


def test_a_requested_reconcile_or_a_changed_secret_fetches_at_once(refusing: Refusing, tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "c", clock=Clock())
    spec = A.SourceSpec(refusing.url, A.RefKind.BRANCH, "main")
    assert ask(cache, spec, None) == "fetched"
    assert ask(cache, spec, None) == "cached"
    assert ask(cache, spec, None, max_age=0.0) == "fetched", "reconcile.fluxcd.io/requestedAt fetches now"
    assert ask(cache, spec, GitAuth("bot", "fixed-password")) == "fetched", "a fixed password is used at once"
    assert ask(cache, spec, GitAuth("bot", "fixed-password")) == "cached"
    cache.invalidate()  # a push webhook
    assert ask(cache, spec, GitAuth("bot", "fixed-password")) == "fetched"
