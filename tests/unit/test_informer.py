"""The shared informer's cache and relist logic, against a scripted transport (the real one is tested on the
test API server in tests/integration/test_informer.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from gitopskit.informer import EventType, Gone, Informer, Key, NotServed


def cm(name: str, rv: int, ns: str = "a") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv)}}


class Scripted:
    """Lists answer from ``pages`` in turn; watches replay ``watches`` in turn (an exception is raised)."""

    def __init__(self, lists: list[list[dict[str, Any]]], watches: list[list[Any]]) -> None:
        self.lists, self.watches = lists, watches
        self.list_queries: list[dict[str, str]] = []
        self.watch_queries: list[dict[str, str]] = []

    def list(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        self.list_queries.append(query)
        pages = self.lists[0]
        i = int(query.get("continue") or 0)
        page = pages[i]
        if i + 1 < len(pages):
            return {"items": page["items"], "metadata": {"continue": str(i + 1)}}
        self.lists.pop(0)
        return {"items": page["items"], "metadata": {"resourceVersion": page["rv"]}}

    def watch(self, path: str, query: dict[str, str], stop: threading.Event) -> Iterator[dict[str, Any]]:
        self.watch_queries.append(query)
        if not self.watches:
            stop.set()
            return
        for ev in self.watches.pop(0):
            if isinstance(ev, Exception):
                raise ev
            yield ev


def run(inf: Informer) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    inf.add_handler(lambda t, o, p: seen.append((str(t), str(Key.of(o)))))
    inf.run(threading.Event())
    return seen


def test_a_paged_list_fills_the_cache_and_the_watch_resumes_from_its_resource_version() -> None:
    t = Scripted(
        [[{"items": [cm("x", 1), cm("y", 2)]}, {"items": [cm("z", 3)], "rv": "10"}]],
        [[{"type": "MODIFIED", "object": cm("x", 11)}, {"type": "BOOKMARK", "object": cm("", 15)}], []],
    )
    inf = Informer(t, "/api/v1/configmaps", label_selector="app=1", page_size=2)
    seen = run(inf)
    assert [q.get("continue") for q in t.list_queries] == [None, "1"]
    assert all(q["labelSelector"] == "app=1" and q["limit"] == "2" for q in t.list_queries)
    assert t.watch_queries[0]["resourceVersion"] == "10"
    assert t.watch_queries[1]["resourceVersion"] == "15", "a bookmark moves the resume point"
    assert seen == [("ADDED", "a/x"), ("ADDED", "a/y"), ("ADDED", "a/z"), ("MODIFIED", "a/x")]
    assert inf.get(Key("a", "x"))["metadata"]["resourceVersion"] == "11"  # type: ignore[index]
    assert inf.has_synced() and inf.lists == 1


def test_gone_lists_again_and_reports_what_changed_and_what_was_deleted_meanwhile() -> None:
    t = Scripted(
        [[{"items": [cm("x", 1), cm("y", 2)], "rv": "10"}], [{"items": [cm("x", 1), cm("z", 30)], "rv": "40"}]],
        [[{"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}], []],
    )
    inf = Informer(t, "/api/v1/configmaps")
    seen = run(inf)
    assert inf.lists == 2
    assert seen[2:] == [("ADDED", "a/z"), ("DELETED", "a/y")], "x unchanged: no event; y's deletion was missed"
    assert sorted(map(str, inf.cached_keys())) == ["a/x", "a/z"]
    assert t.watch_queries[-1]["resourceVersion"] == "40"


def test_an_http_410_from_the_transport_is_gone_too_and_a_broken_stream_resumes_without_relisting() -> None:
    t = Scripted(
        [[{"items": [cm("x", 1)], "rv": "10"}], [{"items": [], "rv": "50"}]],
        [[{"type": "ADDED", "object": cm("y", 12)}, ConnectionResetError("peer closed")], [Gone("410")], []],
    )
    inf = Informer(t, "/api/v1/configmaps")
    seen = run(inf)
    assert t.watch_queries[1]["resourceVersion"] == "12", "resume from the last event seen, no relist"
    assert inf.lists == 2
    assert seen == [("ADDED", "a/x"), ("ADDED", "a/y"), ("DELETED", "a/x"), ("DELETED", "a/y")]


def test_a_failing_handler_does_not_stop_the_others() -> None:
    t = Scripted([[{"items": [cm("x", 1)], "rv": "1"}]], [[{"type": "DELETED", "object": cm("x", 2)}], []])
    inf = Informer(t, "/p")
    got: list[str] = []

    def bad(t: EventType, o: dict[str, Any], p: dict[str, Any] | None) -> None:
        raise ValueError("bug")

    inf.add_handler(bad)
    inf.add_handler(lambda t, o, p: got.append(str(t)))
    inf.run(threading.Event())
    assert got == ["ADDED", "DELETED"] and inf.get(Key("a", "x")) is None


def test_a_resource_not_served_yet_is_an_empty_synced_cache_and_is_listed_again_later() -> None:
    calls: list[int] = []

    class Later(Scripted):
        def list(self, path: str, query: dict[str, str]) -> dict[str, Any]:
            calls.append(1)
            if len(calls) == 1:
                raise NotServed(path)  # the CRD is not installed yet
            return super().list(path, query)

    t = Later([[{"items": [cm("x", 1)], "rv": "5"}]], [[]])
    inf = Informer(t, "/apis/argoproj.io/v1alpha1/applications", not_served_retry=0)
    seen = run(inf)
    assert len(calls) == 2 and seen == [("ADDED", "a/x")] and inf.has_synced()


def test_the_index_follows_adds_label_moves_deletions_and_relists() -> None:
    def labelled(name: str, rv: int, app: str, ns: str = "a") -> dict[str, Any]:
        return {"metadata": {**cm(name, rv, ns)["metadata"], "labels": {"app": app}}}

    t = Scripted(
        [[{"items": [labelled("x", 1, "one"), labelled("y", 2, "one"), labelled("z", 3, "two", ns="b")], "rv": "3"}],
         [{"items": [labelled("w", 9, "three")], "rv": "9"}]],
        [[{"type": "MODIFIED", "object": labelled("x", 4, "two")}, {"type": "DELETED", "object": labelled("y", 5, "one")},
          {"type": "ADDED", "object": labelled("v", 6, "one")}],
         [Gone("410")], []],
    )  # fmt: skip
    inf = Informer(t, "/api/v1/configmaps", index=lambda o: o["metadata"]["labels"]["app"])
    snapshots: list[dict[str, list[str]]] = []

    def look(etype: EventType, o: dict[str, Any], p: dict[str, Any] | None) -> None:
        snapshots.append({v: sorted(str(Key.of(x)) for x in inf.indexed(v)) for v in ("one", "two", "three")})
        snapshots[-1]["two in b"] = [str(Key.of(x)) for x in inf.indexed("two", namespace="b")]

    inf.add_handler(look)
    inf.run(threading.Event())
    after_list, after_watch = snapshots[2], snapshots[5]
    assert after_list == {"one": ["a/x", "a/y"], "two": ["b/z"], "three": [], "two in b": ["b/z"]}
    assert after_watch == {"one": ["a/v"], "two": ["a/x", "b/z"], "three": [], "two in b": ["b/z"]}, (
        "x moved to two; y deleted; v added"
    )
    assert {v: [str(Key.of(x)) for x in inf.indexed(v)] for v in ("one", "two", "three")} == {
        "one": [], "two": [], "three": ["a/w"]}, "a relist rebuilds the index"  # fmt: skip
