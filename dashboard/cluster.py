"""What the dashboard reads from the cluster: shared informers (gitopskit.informer), one list+watch per type.

Apps in three dialects (Flux Kustomization, native App, Argo CD Application), GitRepositories, the inventory
ConfigMaps the reconciler keeps (its per-app status: last prune and the guards that held), Events, Leases (the
controllers' heartbeats), Flux image objects and — lazily, per kind an app's inventory names — the managed
objects themselves (by the tracking label). Secrets are never watched: their values never enter this process
through an informer.

Every change is handed to ``on_change(topic, key)``; the server turns that into server-sent events. Nothing here
writes, except :meth:`ClusterView.patch` and :meth:`ClusterView.event` used by the actions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

from gitopskit.informer import ApiTransport, EventType, Informer, Key
from gitopskit.kube import request_json

log = logging.getLogger(__name__)

Obj = dict[str, Any]

KS = ("Kustomization", "/apis/kustomize.toolkit.fluxcd.io/v1", "kustomizations")
APP = ("App", "/apis/reconciler.imagebot.dev/v1alpha1", "apps")
ARGO = ("Application", "/apis/argoproj.io/v1alpha1", "applications")
APP_KINDS = {k[0]: k for k in (KS, APP, ARGO)}
REPO = ("GitRepository", "/apis/source.toolkit.fluxcd.io/v1", "gitrepositories")
IMAGE_KINDS = (
    ("ImageRepository", "/apis/image.toolkit.fluxcd.io/v1", "imagerepositories"),
    ("ImagePolicy", "/apis/image.toolkit.fluxcd.io/v1", "imagepolicies"),
    ("ImageUpdateAutomation", "/apis/image.toolkit.fluxcd.io/v1", "imageupdateautomations"),
)
TRACKING_LABEL = "reconciler.imagebot.dev/app"
INVENTORY_LABEL = "reconciler.imagebot.dev/inventory"
NEVER_WATCHED = frozenset({("", "Secret")})  # their values must never reach the dashboard


def _typed(obj: Obj, kind: tuple[str, str, str]) -> Obj:
    """A listed item carries no kind or apiVersion (only watch events do): give it its informer's."""
    if obj.get("kind") == kind[0]:
        return obj
    return {**obj, "kind": kind[0], "apiVersion": kind[1].removeprefix("/apis/")}


class _Watched(ApiTransport):
    """The real transport, remembering whether its watch is connected and when it last heard the server: the
    page says its data is stale when a watch has been down for a while."""

    def __init__(self, api: Any, view: ClusterView) -> None:
        super().__init__(api)
        self.view = view
        self.on_connect = lambda path: view._heard(path, True)

    def list(self, path: str, query: dict[str, str]) -> Obj:
        got = super().list(path, query)
        self.view._heard(path, True)
        return got

    def watch(self, path: str, query: dict[str, str], stop: threading.Event) -> Iterator[Obj]:
        try:
            it = super().watch(path, query, stop)
            for ev in it:
                self.view._heard(path, True)
                yield ev
        except Exception:
            self.view._heard(path, False)
            raise


class ClusterView:
    def __init__(
        self, api: Any, namespaces: tuple[str, ...] = (), on_change: Callable[[str, str], None] | None = None
    ) -> None:
        self.api = api
        self.namespaces = namespaces
        self.on_change = on_change or (lambda topic, key: None)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._down: dict[str, float] = {}  # informer path → since when its watch has been failing
        self.transport = _Watched(api, self)
        scopes = [f"/namespaces/{ns}" for ns in namespaces] or [""]
        self.apps: dict[str, list[Informer]] = {}
        for kind, base, plural in (KS, APP, ARGO):
            self.apps[kind] = [self._informer(f"{base}{s}/{plural}", self._app_handler(kind)) for s in scopes]
        self.repos = [self._informer(f"{REPO[1]}{s}/{REPO[2]}", self._repo_handler) for s in scopes]
        self.inventories = [
            self._informer(f"/api/v1{s}/configmaps", self._inventory_handler, INVENTORY_LABEL) for s in scopes
        ]
        self.events = [self._informer(f"/api/v1{s}/events", self._event_handler) for s in scopes]
        self.leases = [self._informer(f"/apis/coordination.k8s.io/v1{s}/leases", self._lease_handler) for s in scopes]
        self.images: dict[str, list[Informer]] = {
            kind: [self._informer(f"{base}{s}/{plural}", self._image_handler) for s in scopes]
            for kind, base, plural in IMAGE_KINDS
        }
        self.managed: dict[tuple[str, str], Informer] = {}  # (apiVersion, kind) → informer by tracking label
        self._plurals: dict[str, dict[str, tuple[str, bool]]] = {}  # apiVersion → kind → (plural, namespaced)
        self.started = False

    def _informer(self, path: str, handler: Callable[[EventType, Obj, Obj | None], None], label: str | None = None) -> Informer:
        inf = Informer(self.transport, path, label_selector=label, not_served_retry=10.0)
        inf.add_handler(handler)
        return inf

    def all_informers(self) -> list[Informer]:
        with self._lock:
            return self.all_informers_locked()

    def all_informers_locked(self) -> list[Informer]:
        out = [i for infs in self.apps.values() for i in infs]
        out += [*self.repos, *self.inventories, *self.events, *self.leases]
        out += [i for infs in self.images.values() for i in infs]
        return out + list(self.managed.values())

    def start(self) -> None:
        with self._lock:
            self.started = True  # from now on, ensure_managed starts the informers it adds
            infs = self.all_informers_locked()
        for inf in infs:
            inf.start(self._stop)

    def stop(self) -> None:
        self._stop.set()

    def wait_synced(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        return all(inf.wait_synced(max(end - time.monotonic(), 0)) for inf in self.all_informers())

    # ------------------------------------------------------------------ freshness
    def _heard(self, path: str, ok: bool) -> None:
        """A list or watch answered (ok), or a watch failed: remember since when each path has been down."""
        with self._lock:
            if ok:
                self._down.pop(path, None)
            else:
                self._down.setdefault(path, time.time())

    def stale(self, grace: float = 5.0) -> tuple[bool, list[str]]:
        """(True when a watch has been failing for over ``grace`` seconds — it retries meanwhile, and one that
        reconnects at once is not news — or an informer has not listed yet, the paths that are down)."""
        now = time.time()
        with self._lock:
            down = sorted(p for p, since in self._down.items() if now - since > grace)
        return bool(down) or not all(inf.has_synced() for inf in self.all_informers()), down

    # ------------------------------------------------------------------ readers
    def app_objects(self) -> list[Obj]:
        out: list[Obj] = []
        for kind, infs in self.apps.items():
            for inf in infs:
                out.extend(_typed(o, APP_KINDS[kind]) for o in inf.objects())
        return out

    def app(self, kind: str, namespace: str, name: str) -> Obj | None:
        for inf in self.apps.get(kind, []):
            obj = inf.get(Key(namespace, name))
            if obj is not None:
                return _typed(obj, APP_KINDS[kind])
        return None

    def repo(self, namespace: str, name: str) -> Obj | None:
        for inf in self.repos:
            obj = inf.get(Key(namespace, name))
            if obj is not None:
                return obj
        return None

    def inventory(self, namespace: str, app_key: str) -> Obj | None:
        for inf in self.inventories:
            obj = inf.get(Key(namespace, f"reconciler-{app_key}"))
            if obj is not None:
                return obj
        return None

    def all_events(self) -> list[Obj]:
        return [o for inf in self.events for o in inf.objects()]

    def all_leases(self) -> list[Obj]:
        return [o for inf in self.leases for o in inf.objects()]

    def image_objects(self, kind: str) -> list[Obj]:
        return [o for inf in self.images.get(kind, []) for o in inf.objects()]

    def managed_objects(self, app_key: str) -> list[Obj]:
        with self._lock:
            infs = list(self.managed.items())
        out = []
        for (api_version, kind), inf in infs:
            for obj in inf.objects():
                if ((obj.get("metadata") or {}).get("labels") or {}).get(TRACKING_LABEL) == app_key:
                    out.append({**obj, "apiVersion": api_version, "kind": kind})  # list items carry neither
        return out

    def managed_synced(self, api_version: str, kind: str) -> bool:
        with self._lock:
            inf = self.managed.get((api_version, kind))
        return inf is not None and inf.has_synced()

    # ------------------------------------------------------------------ managed kinds, found from app statuses
    def ensure_managed(self, kinds: set[tuple[str, str]]) -> None:
        """Start one informer (by the tracking label) per (apiVersion, kind) not yet watched; Secrets never."""
        for api_version, kind in kinds:
            group = api_version.split("/")[0] if "/" in api_version else ""
            if (group, kind) in NEVER_WATCHED or not api_version or not kind:
                continue
            with self._lock:
                if (api_version, kind) in self.managed:
                    continue
            found = self._resource(api_version, kind)
            if found is None:
                continue
            plural, _ = found
            prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            inf = self._informer(f"{prefix}/{plural}", self._managed_handler, TRACKING_LABEL)
            with self._lock:
                if (api_version, kind) in self.managed:
                    continue
                self.managed[(api_version, kind)] = inf
                started = self.started
            if started:
                inf.start(self._stop)

    def _resource(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        known = self._plurals.get(api_version)
        if known is None:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            try:
                doc = request_json(self.api, "GET", path, timeout=15) or {}
            except (ApiException, OSError, ValueError) as exc:
                log.info("discovery of %s failed: %s", api_version, exc)
                return None
            except Exception as exc:  # urllib3 errors: the next status change asks again
                log.info("discovery of %s failed: %s", api_version, exc)
                return None
            known = {
                r["kind"]: (r["name"], bool(r.get("namespaced")))
                for r in doc.get("resources") or []
                if isinstance(r, dict) and "/" not in str(r.get("name", "")) and r.get("kind")
            }
            self._plurals[api_version] = known
        return known.get(kind)

    # ------------------------------------------------------------------ writes (the actions)
    def patch(self, path: str, body: Obj) -> Obj:
        return request_json(self.api, "PATCH", path, body=body, content_type="application/merge-patch+json", timeout=15) or {}

    def event(self, namespace: str, involved: Obj, reason: str, message: str, annotations: dict[str, str]) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": "dashboard-", "namespace": namespace, "annotations": annotations},
            "involvedObject": involved,
            "reason": reason,
            "message": message[:1000],
            "type": "Normal",
            "source": {"component": "dashboard"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        request_json(self.api, "POST", f"/api/v1/namespaces/{namespace}/events", body=body, timeout=15)

    # ------------------------------------------------------------------ change → topic
    def _app_handler(self, kind: str) -> Callable[[EventType, Obj, Obj | None], None]:
        def handler(etype: EventType, obj: Obj, prev: Obj | None) -> None:
            k = Key.of(obj)
            self._want_kinds(obj)
            self.on_change("app-deleted" if etype is EventType.DELETED else "app", f"{kind}/{k.namespace}/{k.name}")

        return handler

    def _want_kinds(self, obj: Obj) -> None:
        """The kinds an app's status names (Flux inventory ids with their versions, Argo CD resources)."""
        st = obj.get("status") or {}
        kinds: set[tuple[str, str]] = set()
        for e in (st.get("inventory") or {}).get("entries") or []:
            parts = str(e.get("id", "")).split("_")
            if len(parts) >= 4:
                group, kind = parts[-2], parts[-1]
                kinds.add((f"{group}/{e.get('v', '')}" if group else str(e.get("v", "")), kind))
        for r in st.get("resources") or []:
            group, version = r.get("group") or "", r.get("version") or ""
            kinds.add((f"{group}/{version}" if group else version, str(r.get("kind") or "")))
        missing = {k for k in kinds if k not in self.managed}
        if missing:
            threading.Thread(target=self.ensure_managed, args=(missing,), name="discover", daemon=True).start()

    def _repo_handler(self, etype: EventType, obj: Obj, prev: Obj | None) -> None:
        self.on_change("repo", str(Key.of(obj)))

    def _inventory_handler(self, etype: EventType, obj: Obj, prev: Obj | None) -> None:
        app = ((obj.get("metadata") or {}).get("labels") or {}).get(INVENTORY_LABEL, "")
        self.on_change("inventory", f"{Key.of(obj).namespace}/{app}")

    def _event_handler(self, etype: EventType, obj: Obj, prev: Obj | None) -> None:
        if etype is EventType.DELETED:
            return
        self.on_change("event", str(Key.of(obj)))

    def _lease_handler(self, etype: EventType, obj: Obj, prev: Obj | None) -> None:
        self.on_change("lease", str(Key.of(obj)))

    def _image_handler(self, etype: EventType, obj: Obj, prev: Obj | None) -> None:
        self.on_change("image", str(Key.of(obj)))

    def _managed_handler(self, etype: EventType, obj: Obj, prev: Obj | None) -> None:
        label = ((obj.get("metadata") or {}).get("labels") or {}).get(TRACKING_LABEL, "")
        self.on_change("managed", label)
