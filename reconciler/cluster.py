"""The cluster adapter: the official ``kubernetes`` client behind one small protocol.

Discovery through the dynamic client; reads, server-side apply and deletes as raw JSON calls
on the client's ApiClient (the typed/dynamic deserialisation costs more than the network on a
local apiserver). Every ``kubernetes``/``urllib3`` exception becomes a ClusterError carrying the
API server's message, truncated and never containing Secret data.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import urllib3
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from gitopskit import kube
from gitopskit.errors import KitError, KubeConfigError
from gitopskit.kube import request_json
from reconciler.errors import ClusterError
from reconciler.model import Manifest, ResourceKey

log = logging.getLogger(__name__)

# kube-apiserver's default limit on a request body (3 MiB; etcd's default object limit is lower still, 1.5 MiB)
MAX_REQUEST_BYTES = 3 * 1024 * 1024


class Cluster(Protocol):
    def namespaced(self, api_version: str, kind: str) -> bool: ...

    def list_managed(
        self, api_version: str, kind: str, selector: str, namespace: str | None = None
    ) -> dict[ResourceKey, dict[str, Any]]: ...

    def get(self, api_version: str, key: ResourceKey) -> dict[str, Any] | None: ...

    def apply(self, manifest: Manifest, force: bool = True, dry_run: bool = False) -> dict[str, Any]: ...

    def delete(self, api_version: str, key: ResourceKey) -> None: ...


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class EventRecorder:
    """Kubernetes Events written in the background, as client-go's event broadcaster writes them: whoever records
    one (a drift worker that has just corrected, an app's sync) goes on at once instead of waiting for a round trip
    of its own; the Event keeps the time it was recorded. Events are best effort: a full queue drops one (counted,
    logged) rather than hold anyone up."""

    def __init__(self, write: Callable[..., None], capacity: int = 1000, owns: Callable[[str], bool] | None = None) -> None:
        self._write = write
        # an Event recorded for an app (``record(app=...)``) is written only while this replica still owns the app
        # at write time: one that lost the app's shard or lease meanwhile writes none for it
        self._owns = owns
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(capacity)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped = 0
        self.fenced = 0  # Events not written: their app was no longer this replica's

    def record(
        self, namespace: str, involved: dict[str, Any], reason: str, message: str, type_: str = "Normal",
        annotations: dict[str, str] | None = None, app: str = "",
    ) -> None:
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="events", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((namespace, involved, reason, message, type_, annotations, _now(), app))
        except queue.Full:
            with self._lock:
                self.dropped += 1
                n = self.dropped
            if n == 1 or n % 100 == 0:
                log.warning("events arrive faster than they can be written: %d dropped so far (%s)", n, reason)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            namespace, involved, reason, message, type_, annotations, at, app = item
            try:
                if app and self._owns is not None and not self._owns(app):
                    with self._lock:
                        self.fenced += 1
                    log.debug("event %s for %s not written: this replica no longer owns it", reason, app)
                    continue
                self._write(namespace, involved, reason, message, type_, annotations, at)
            except Exception as exc:  # one unwritable Event must not end the writer
                log.debug("event not recorded: %s", exc)

    def close(self, timeout: float = 10.0) -> bool:
        """No more Events; those queued are written within ``timeout`` (else left). True when all were."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            return True
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return False
        thread.join(timeout)
        return not thread.is_alive()


def _message(exc: ApiException) -> str:
    try:
        doc = json.loads(exc.body or "{}")
        msg = doc.get("message") or exc.reason
    except (ValueError, AttributeError):
        msg = exc.reason or str(exc)
    msg = str(msg)
    return msg if len(msg) <= 400 else msg[:399] + "…"


def load_api_client(kubeconfig: str | None = None, context: str | None = None, pool: int = 16) -> client.ApiClient:
    """The kit's standard kubeconfig resolution, its failure as a ClusterError."""
    try:
        return kube.load_api_client(kubeconfig, context, pool)
    except KubeConfigError as exc:
        raise ClusterError(str(exc)) from None


class KubeCluster:
    def __init__(self, api: client.ApiClient, field_manager: str = "reconciler") -> None:
        self.api = api
        self.field_manager = field_manager
        self._dyn: dynamic.DynamicClient | None = None
        self._resources: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self.calls = 0
        self.writes = 0
        self.max_request_bytes = MAX_REQUEST_BYTES
        # set by a leader-elected controller: raises unless still leader (with margin), right before each write
        self.fence: Callable[[], None] | None = None

    # ------------------------------------------------------------ discovery
    @property
    def dyn(self) -> dynamic.DynamicClient:
        if self._dyn is None:
            try:
                self._dyn = dynamic.DynamicClient(self.api)
            except (ApiException, urllib3.exceptions.HTTPError) as exc:
                raise ClusterError(f"cannot reach the API server: {exc}") from exc
        return self._dyn

    def resource(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        with self._lock:
            if key in self._resources:
                return self._resources[key]
        try:
            res = self.dyn.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            self.refresh()
            try:
                res = self.dyn.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                raise ClusterError(f"the API server does not serve {kind} in {api_version} (a CRD not installed yet?)") from None
        except (ApiException, urllib3.exceptions.HTTPError) as exc:
            raise ClusterError(f"discovery of {api_version} {kind} failed: {exc}") from exc
        with self._lock:
            self._resources[key] = res
        return res

    def refresh(self) -> None:
        with self._lock:
            self._resources.clear()
        try:
            self.dyn.resources.invalidate_cache()
        except Exception:
            self._dyn = None

    def namespaced(self, api_version: str, kind: str) -> bool:
        return bool(self.resource(api_version, kind).namespaced)

    # ------------------------------------------------------------ raw calls
    def _call(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
        what: str = "",
    ) -> Any:
        """One raw request (URL, TLS and auth from the client's configuration); JSON in, JSON out.

        A body over the API server's limit is not sent: the server answers 413 and closes the connection
        while the client is still writing, which would surface as a broken connection ("unreachable")."""
        payload = json.dumps(body).encode() if body is not None else None  # encoded once: its size is checked, then sent
        size = len(payload) if payload is not None else 0
        if size > self.max_request_bytes:
            raise ClusterError(
                f"{what or method + ' ' + path}: the request is {size} bytes; the API server refuses requests over "
                f"{self.max_request_bytes} bytes (HTTP 413 Request Entity Too Large); not sent"
            )
        writing = method in ("PATCH", "PUT", "POST", "DELETE") and ("dryRun", "All") not in (query or [])
        if writing and self.fence is not None:
            try:
                self.fence()
            except KitError as exc:
                raise ClusterError(str(exc)) from None
        self.calls += 1
        if writing:
            self.writes += 1  # a dry run changes nothing
        try:
            return request_json(self.api, method, path, query, payload, content_type, timeout)
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            connected = not isinstance(reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)
            if connected and size > 256 * 1024:
                raise ClusterError(
                    f"{what or method + ' ' + path}: the API server closed the connection while receiving a {size}-byte "
                    f"request (a request over its size limit is refused with HTTP 413): {exc}"
                ) from exc
            raise ClusterError(f"the API server is unreachable: {exc}") from exc

    def _path(self, api_version: str, key: ResourceKey, with_name: bool = True) -> str:
        res = self.resource(api_version, key.kind)
        ns = key.namespace if res.namespaced else None
        return str(res.path(name=key.name if with_name else None, namespace=ns))

    def list_managed(
        self, api_version: str, kind: str, selector: str, namespace: str | None = None
    ) -> dict[ResourceKey, dict[str, Any]]:
        """Every object of a kind carrying ``selector``: one call per kind, in all namespaces, or in
        ``namespace`` only (what a namespaced Role allows)."""
        res = self.resource(api_version, kind)
        try:
            path = res.path(namespace=namespace) if namespace and res.namespaced else res.path()
            doc = self._call("GET", str(path), [("labelSelector", selector)])
        except ApiException as exc:
            raise ClusterError(f"list {kind}: HTTP {exc.status}: {_message(exc)}") from exc
        group = res.group or ""
        out = {}
        for item in doc.get("items") or []:
            meta = item.get("metadata") or {}
            out[ResourceKey(group, kind, meta.get("namespace") or "", meta["name"])] = item
        return out

    def get(self, api_version: str, key: ResourceKey) -> dict[str, Any] | None:
        try:
            return dict(self._call("GET", self._path(api_version, key)))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise ClusterError(f"get {key}: HTTP {exc.status}: {_message(exc)}") from exc

    def apply(self, manifest: Manifest, force: bool = True, dry_run: bool = False) -> dict[str, Any]:
        query = [("fieldManager", self.field_manager)]
        if force:
            query.append(("force", "true"))
        if dry_run:
            query.append(("dryRun", "All"))
        try:
            return dict(
                self._call(
                    "PATCH",
                    self._path(manifest.api_version, manifest.key),
                    query,
                    manifest.body,
                    "application/apply-patch+yaml",
                    what=f"apply {manifest.key}",
                )
            )
        except ApiException as exc:
            raise ClusterError(f"apply {manifest.key}: HTTP {exc.status}: {_message(exc)}") from exc

    def remove_fields(
        self, api_version: str, key: ResourceKey, pointers: list[str], resource_version: str, dry_run: bool = False
    ) -> dict[str, Any]:
        """Remove out-of-band fields Git does not declare: one JSON patch, guarded by the resourceVersion the
        paths were computed from (list indices are only valid for that version; a newer one fails, nothing changes).
        ``dry_run``: only ask the server what the object would be (which fields its defaulting puts back)."""
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}]
        ops += [{"op": "remove", "path": p} for p in pointers]
        query = [("fieldManager", self.field_manager)] + ([("dryRun", "All")] if dry_run else [])
        try:
            return dict(
                self._call(
                    "PATCH",
                    self._path(api_version, key),
                    query,
                    ops,
                    "application/json-patch+json",
                )
            )
        except ApiException as exc:
            if exc.status in (409, 422):  # the test op failed, or a path is already gone: the patch changed nothing
                raise ClusterError(
                    f"remove fields {pointers} of {key}: the object changed since it was read (resourceVersion "
                    f"{resource_version}); nothing removed, the next sync or watch event tries again"
                ) from exc
            raise ClusterError(f"remove fields {pointers} of {key}: HTTP {exc.status}: {_message(exc)}") from exc

    def delete(self, api_version: str, key: ResourceKey) -> None:
        try:
            self._call("DELETE", self._path(api_version, key), [("propagationPolicy", "Background")])
        except ApiException as exc:
            if exc.status != 404:
                raise ClusterError(f"delete {key}: HTTP {exc.status}: {_message(exc)}") from exc

    def wait_established(self, crd_name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            obj = self.get(
                "apiextensions.k8s.io/v1", ResourceKey("apiextensions.k8s.io", "CustomResourceDefinition", "", crd_name)
            )
            conds = ((obj or {}).get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
                self.refresh()
                return
            time.sleep(0.05)
        raise ClusterError(f"CRD {crd_name} not Established after {timeout:.0f}s")

    def watch(
        self,
        api_version: str,
        kind: str,
        selector: str,
        resource_version: str | None,
        stop: threading.Event,
        timeout: int = 30,
        namespace: str | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) events for managed objects of a kind (in ``namespace`` only when given);
        ends when ``stop`` is set."""
        from kubernetes import watch as kwatch

        res = self.resource(api_version, kind)
        while not stop.is_set():
            w = kwatch.Watch()
            try:
                scope = namespace if namespace and res.namespaced else None
                events = res.watch(
                    namespace=scope, label_selector=selector, resource_version=resource_version, timeout=timeout, watcher=w
                )
                for ev in events:
                    if stop.is_set():
                        w.stop()
                        return
                    obj = ev["raw_object"]
                    resource_version = (obj.get("metadata") or {}).get("resourceVersion") or resource_version
                    if ev["type"] == "ERROR":
                        resource_version = None  # expired: start over from now
                        break
                    yield ev["type"], obj
            except (ApiException, urllib3.exceptions.HTTPError, ValueError) as exc:
                if stop.is_set():
                    return
                log.warning("watch of %s interrupted (%s); restarting", kind, exc)
                resource_version = None
                time.sleep(0.5)

    def event(
        self, namespace: str, involved: dict[str, Any], reason: str, message: str, type_: str = "Normal",
        annotations: dict[str, str] | None = None, at: str = "",
    ) -> None:
        """Record a Kubernetes Event (best effort: an Event that cannot be written is logged); ``at``: when it
        happened (now when not given)."""
        now = at or _now()
        meta: dict[str, Any] = {"generateName": "reconciler-", "namespace": namespace}
        if annotations:
            meta["annotations"] = annotations
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": meta,
            "involvedObject": involved,
            "reason": reason,
            "message": message[:1000],
            "type": type_,
            "source": {"component": self.field_manager},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._call("POST", f"/api/v1/namespaces/{namespace}/events", None, body)
        except (ApiException, ClusterError) as exc:
            log.debug("event not recorded: %s", exc)
