"""A shared informer: one list+watch per resource type, a local cache readers use instead of the API server,
and handlers told of every change (usually: enqueue the object's key on a WorkQueue).

Like client-go's reflector + store: list (paged) to fill the cache at a resourceVersion, then watch from that
resourceVersion; on ``410 Gone`` (the version has been compacted away) list again and tell the handlers what
changed meanwhile (including deletions missed while disconnected). Bookmarks keep the resume point fresh. A
broken connection resumes from the last version seen after a short, growing pause. Every request has a
deadline: lists a total timeout, watches a read timeout just past the server-side ``timeoutSeconds``.

The transport is a Protocol, so the relist logic is tested without a server; ``ApiTransport`` is the real one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlencode

from gitopskit.kube import request_json

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class EventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class Key:
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Obj) -> Key:
        meta = obj.get("metadata") or {}
        return cls(meta.get("namespace") or "", meta.get("name") or "")

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


class NotServed(Exception):
    """The API server does not serve this resource (its CRD is not installed): an empty list, tried again later."""


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410 / an ERROR event with code 410): list again."""


class Transport(Protocol):
    def list(self, path: str, query: dict[str, str]) -> Obj:
        """One page of a list (``items``, ``metadata.resourceVersion``, ``metadata.continue``)."""

    def watch(self, path: str, query: dict[str, str], stop: threading.Event) -> Iterator[Obj]:
        """Watch events ({type, object}) until the server ends the stream or ``stop`` is set. Raises Gone."""


Handler = Callable[[EventType, Obj, Obj | None], None]  # (type, object, previous object or None)


class Informer:
    def __init__(
        self,
        transport: Transport,
        path: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        watch_seconds: int = 300,
        not_served_retry: float = 30.0,
        index: Callable[[Obj], str] | None = None,
    ) -> None:
        self.transport = transport
        self.path = path
        self._base: dict[str, str] = {}
        if label_selector:
            self._base["labelSelector"] = label_selector
        if field_selector:
            self._base["fieldSelector"] = field_selector
        self.page_size = page_size
        self.watch_seconds = watch_seconds
        self.not_served_retry = not_served_retry
        self._cache: dict[Key, Obj] = {}
        # ``index``: objects grouped by a value of theirs (a label) for ``indexed``, kept with the cache
        self._index_of = index
        self._index: dict[str, dict[Key, Obj]] = {}
        self._lock = threading.Lock()
        self._handlers: list[Handler] = []
        self._synced = threading.Event()
        self.resource_version = ""
        self.lists = 0  # how many full lists were made (1 + relists): for tests and metrics
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ readers
    def add_handler(self, handler: Handler) -> None:
        """Register before start(); the handler is told of every object the first list finds, too."""
        self._handlers.append(handler)

    def get(self, key: Key) -> Obj | None:
        with self._lock:
            return self._cache.get(key)

    def objects(self, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            return [o for k, o in self._cache.items() if namespace is None or k.namespace == namespace]

    def indexed(self, value: str, namespace: str | None = None) -> list[Obj]:
        """The objects whose ``index`` value is ``value`` (in ``namespace`` when given): no scan of the cache."""
        with self._lock:
            group = self._index.get(value) or {}
            return [o for k, o in group.items() if namespace is None or k.namespace == namespace]

    def cached_keys(self) -> list[Key]:
        with self._lock:
            return list(self._cache)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    # ------------------------------------------------------------------ the loop
    def start(self, stop: threading.Event) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, args=(stop,), name=f"informer {self.path}", daemon=True)
        self._thread.start()
        return self._thread

    def run(self, stop: threading.Event) -> None:
        pause = 0.2
        need_list = True
        while not stop.is_set():
            try:
                if need_list:
                    self.relist()
                    need_list = False
                self._watch_once(stop)
                pause = 0.2
            except NotServed:
                self._replace({}, "")  # nothing to inform about until the resource is served; look again later
                need_list = True
                stop.wait(self.not_served_retry)
            except Gone:
                log.info("watch of %s: resourceVersion %s expired; listing again", self.path, self.resource_version)
                need_list = True
            except Exception as exc:  # a broken peer must never end the informer: resume after a pause
                log.warning("watch of %s interrupted (%s); resuming in %.1fs", self.path, exc, pause)
                stop.wait(pause)
                pause = min(pause * 2, 10.0)

    def relist(self) -> None:
        """List everything, replace the cache, and tell the handlers what differs from what they knew."""
        items: dict[Key, Obj] = {}
        cont = ""
        while True:
            query = {**self._base, "limit": str(self.page_size)}
            if cont:
                query["continue"] = cont
            page = self.transport.list(self.path, query)
            for obj in page.get("items") or []:
                items[Key.of(obj)] = obj
            meta = page.get("metadata") or {}
            cont = meta.get("continue") or ""
            if not cont:
                rv = str(meta.get("resourceVersion") or "")
                break
        self._replace(items, rv)
        self.lists += 1

    def _replace(self, items: dict[Key, Obj], rv: str) -> None:
        with self._lock:
            old = self._cache
            self._cache = items
            self.resource_version = rv
            if self._index_of is not None:
                self._index = {}
                for key, obj in items.items():
                    self._index.setdefault(self._index_of(obj), {})[key] = obj
        for key, obj in items.items():
            prev = old.get(key)
            if prev is None:
                self._notify(EventType.ADDED, obj, None)
            elif _rv(prev) != _rv(obj):
                self._notify(EventType.MODIFIED, obj, prev)
        for key, prev in old.items():
            if key not in items:
                self._notify(EventType.DELETED, prev, prev)
        self._synced.set()

    def _watch_once(self, stop: threading.Event) -> None:
        query = {
            **self._base,
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": self.resource_version,
            "timeoutSeconds": str(self.watch_seconds),
        }
        for ev in self.transport.watch(self.path, query, stop):
            if stop.is_set():
                return
            etype, obj = str(ev.get("type") or ""), ev.get("object") or {}
            if etype == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(obj.get("message", ""))
                raise RuntimeError(f"watch error: {obj.get('message', obj)}")
            rv = _rv(obj)
            if etype == "BOOKMARK":
                self.resource_version = rv or self.resource_version
                continue
            if etype not in EventType.__members__:
                continue
            key = Key.of(obj)
            with self._lock:
                prev = self._cache.get(key)
                if etype == EventType.DELETED:
                    self._cache.pop(key, None)
                else:
                    self._cache[key] = obj
                if self._index_of is not None:
                    if prev is not None:  # its value may have moved (a label changed): out of the old group
                        was = self._index_of(prev)
                        self._index.get(was, {}).pop(key, None)
                        if not self._index.get(was, True):
                            del self._index[was]
                    if etype != EventType.DELETED:
                        self._index.setdefault(self._index_of(obj), {})[key] = obj
                self.resource_version = rv or self.resource_version
            self._notify(EventType(etype), obj, prev)

    def _notify(self, etype: EventType, obj: Obj, prev: Obj | None) -> None:
        for h in self._handlers:
            try:
                h(etype, obj, prev)
            except Exception:  # a handler's bug must not stop the informer for everyone else
                log.exception("informer handler failed for %s %s", etype, Key.of(obj))


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class ApiTransport:
    """The real transport: the official client's ApiClient (URL, TLS, auth), raw JSON, with deadlines."""

    def __init__(self, api: Any, list_timeout: float = 60.0, max_line: int = 16 << 20) -> None:
        self.api = api
        self.list_timeout = list_timeout
        self.max_line = max_line
        self.on_connect: Callable[[str], None] | None = None  # told of each watch the server accepted (its path)

    def _url(self, path: str, query: dict[str, str]) -> tuple[str, dict[str, str]]:
        _, url, headers, _, _ = self.api.param_serialize(
            method="GET",
            resource_path=path,
            query_params=[],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        return f"{url}?{urlencode(query)}", headers

    def list(self, path: str, query: dict[str, str]) -> Obj:
        from kubernetes.client.exceptions import ApiException

        try:
            return request_json(self.api, "GET", path, list(query.items()), timeout=self.list_timeout) or {}
        except ApiException as exc:
            if exc.status == 404:
                raise NotServed(path) from None
            raise

    def watch(self, path: str, query: dict[str, str], stop: threading.Event) -> Iterator[Obj]:
        import urllib3

        url, headers = self._url(path, query)
        server_seconds = float(query.get("timeoutSeconds", "300"))
        resp = self.api.rest_client.pool_manager.request(
            "GET",
            url,
            headers=headers,
            preload_content=False,
            timeout=urllib3.Timeout(connect=10.0, read=server_seconds + 30.0),
        )
        try:
            if resp.status == 410:
                raise Gone(resp.data.decode(errors="replace")[:500])
            if resp.status >= 400:
                raise RuntimeError(f"watch {path}: HTTP {resp.status}: {resp.data.decode(errors='replace')[:500]}")
            if self.on_connect is not None:
                self.on_connect(path)
            buf = b""
            for chunk in resp.stream(64 * 1024):
                if stop.is_set():
                    return
                buf += chunk
                if len(buf) > self.max_line and b"\n" not in buf:
                    raise RuntimeError(f"watch {path}: an event over {self.max_line} bytes")
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            resp.release_conn()
